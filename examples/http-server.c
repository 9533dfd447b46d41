/*
 * http-server: an evhttp server; its listening socket is evuring's.
 *
 *   http-server [--bind ADDR] [--port N] [--max-requests N] [--seconds S]
 *
 * Answers GET / with 200 and "hello from evuring\n" (text/plain), anything
 * else with 404. The program never calls evconnlistener_* itself:
 * evhttp_bind_socket_with_handle() (what evhttp_bind_socket() calls, used
 * here to learn the port) makes its listener through libevent's
 * evconnlistener_new_bind(), which resolves to evuring's because evuring is
 * linked ahead of libevent. --port 0 picks a free port, printed as
 * "PORT <n>"; "BACKEND <name>" says how evhttp's listener accepts.
 *
 * Stops on SIGINT/SIGTERM, after S seconds, or once N requests have been
 * answered (after the N-th response is fully written). Prints "REQUESTS <n>".
 *
 * SPDX-License-Identifier: BSD-3-Clause
 */
#define _POSIX_C_SOURCE 200809L
#include <arpa/inet.h>
#include <getopt.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/listener.h>
#include <evuring.h>

static struct event_base *base;
static long max_requests, requests;

/* Called once a response has been written out completely. */
static void request_done_cb(struct evhttp_request *req, void *arg)
{
	if (max_requests && requests >= max_requests)
		event_base_loopexit(base, NULL);
}

static void count_request(struct evhttp_request *req)
{
	requests++;
	evhttp_request_set_on_complete_cb(req, request_done_cb, NULL);
}

static void root_cb(struct evhttp_request *req, void *arg)
{
	struct evbuffer *body;

	count_request(req);
	if (evhttp_request_get_command(req) != EVHTTP_REQ_GET &&
	    evhttp_request_get_command(req) != EVHTTP_REQ_HEAD) {
		evhttp_send_error(req, 405, "Method Not Allowed");
		return;
	}
	body = evbuffer_new();
	if (!body) {
		evhttp_send_error(req, HTTP_INTERNAL, NULL);
		return;
	}
	evbuffer_add_printf(body, "hello from evuring\n");
	evhttp_add_header(evhttp_request_get_output_headers(req),
			  "Content-Type", "text/plain; charset=utf-8");
	evhttp_send_reply(req, HTTP_OK, "OK", body);
	evbuffer_free(body);
}

static void not_found_cb(struct evhttp_request *req, void *arg)
{
	count_request(req);
	evhttp_send_error(req, HTTP_NOTFOUND, NULL);
}

static void stop_cb(evutil_socket_t sig, short events, void *ctx)
{
	event_base_loopexit(base, NULL);
}

static void usage(FILE *to)
{
	fprintf(to, "usage: http-server [--bind ADDR] [--port N] [--max-requests N] [--seconds S]\n");
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "bind", required_argument, NULL, 'b' },
		{ "port", required_argument, NULL, 'p' },
		{ "max-requests", required_argument, NULL, 'n' },
		{ "seconds", required_argument, NULL, 's' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 }
	};
	const char *addr = "127.0.0.1";
	int port = 8080, seconds = 0, c;
	struct evhttp *http;
	struct evhttp_bound_socket *handle;
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);
	struct event *sigint, *sigterm, *timer = NULL;

	while ((c = getopt_long(argc, argv, "b:p:n:s:h", opts, NULL)) != -1) {
		switch (c) {
		case 'b': addr = optarg; break;
		case 'p': port = atoi(optarg); break;
		case 'n': max_requests = atol(optarg); break;
		case 's': seconds = atoi(optarg); break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (optind != argc || port < 0 || port > 65535) {
		usage(stderr);
		return 2;
	}

	base = event_base_new();
	http = base ? evhttp_new(base) : NULL;
	if (!http) {
		fprintf(stderr, "http-server: cannot make an event_base/evhttp\n");
		return 1;
	}
	evhttp_set_cb(http, "/", root_cb, NULL);
	evhttp_set_gencb(http, not_found_cb, NULL);

	handle = evhttp_bind_socket_with_handle(http, addr, (ev_uint16_t)port);
	if (!handle) {
		fprintf(stderr, "http-server: cannot bind %s:%d\n", addr, port);
		return 1;
	}
	getsockname(evhttp_bound_socket_get_fd(handle), (struct sockaddr *)&ss, &len);
	printf("PORT %d\n", ntohs(ss.ss_family == AF_INET6
				  ? ((struct sockaddr_in6 *)&ss)->sin6_port
				  : ((struct sockaddr_in *)&ss)->sin_port));
	printf("BACKEND %s\n", evuring_backend_name(
		       evuring_listener_backend(evhttp_bound_socket_get_listener(handle))));
	fflush(stdout);

	sigint = evsignal_new(base, SIGINT, stop_cb, NULL);
	sigterm = evsignal_new(base, SIGTERM, stop_cb, NULL);
	event_add(sigint, NULL);
	event_add(sigterm, NULL);
	if (seconds > 0) {
		struct timeval tv = { seconds, 0 };

		timer = evtimer_new(base, stop_cb, NULL);
		evtimer_add(timer, &tv);
	}

	event_base_dispatch(base);

	printf("REQUESTS %ld\n", requests);
	if (timer)
		event_free(timer);
	event_free(sigint);
	event_free(sigterm);
	evhttp_free(http);
	event_base_free(base);
	return 0;
}
