/*
 * echo-server: the classic libevent echo server, on evuring's listener.
 *
 *   echo-server [--bind ADDR] [--port N] [--max-connections N] [--seconds S]
 *
 * Listens on ADDR:N (default 127.0.0.1:9995; --port 0 picks a free port),
 * prints "PORT <n>" and "BACKEND <uring|event>" on stdout, and echoes every
 * byte each client sends, one bufferevent per connection. It is an ordinary
 * libevent program: evconnlistener_new_bind() and bufferevents. Linked with
 * -levuring ahead of -levent, the listener accepts with io_uring multishot
 * accept; evuring.h is only used to print which backend that is.
 *
 * Stops on SIGINT/SIGTERM, after S seconds, or once N connections have been
 * accepted and closed again. Prints "SERVED <n>" on exit.
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
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <evuring.h>

static struct event_base *base;
static long max_connections; /* 0: no limit */
static long accepted, open_connections;

static void maybe_finish(struct evconnlistener *listener)
{
	if (max_connections && accepted >= max_connections) {
		evconnlistener_disable(listener);
		if (open_connections == 0)
			event_base_loopexit(base, NULL);
	}
}

static void echo_read_cb(struct bufferevent *bev, void *ctx)
{
	/* Move everything read to the output: that is the echo. */
	evbuffer_add_buffer(bufferevent_get_output(bev), bufferevent_get_input(bev));
}

static void close_connection(struct bufferevent *bev, struct evconnlistener *listener)
{
	bufferevent_free(bev);
	open_connections--;
	maybe_finish(listener);
}

/* After the client's EOF: close once the last echo has been written. */
static void close_when_flushed_cb(struct bufferevent *bev, void *ctx)
{
	if (evbuffer_get_length(bufferevent_get_output(bev)) == 0)
		close_connection(bev, ctx);
}

static void echo_event_cb(struct bufferevent *bev, short events, void *ctx)
{
	if (events & BEV_EVENT_ERROR) {
		int err = EVUTIL_SOCKET_ERROR();

		fprintf(stderr, "echo-server: connection error: %s\n",
			evutil_socket_error_to_string(err));
		close_connection(bev, ctx);
	} else if (events & BEV_EVENT_EOF) {
		/* The client closed its side: finish echoing, then close. */
		if (evbuffer_get_length(bufferevent_get_output(bev)) == 0) {
			close_connection(bev, ctx);
		} else {
			bufferevent_disable(bev, EV_READ);
			bufferevent_setcb(bev, NULL, close_when_flushed_cb, echo_event_cb, ctx);
		}
	}
}

static void accept_conn_cb(struct evconnlistener *listener, evutil_socket_t fd,
			   struct sockaddr *address, int socklen, void *ctx)
{
	struct bufferevent *bev =
		bufferevent_socket_new(base, fd, BEV_OPT_CLOSE_ON_FREE);

	if (!bev) {
		evutil_closesocket(fd);
		return;
	}
	accepted++;
	open_connections++;
	bufferevent_setcb(bev, echo_read_cb, NULL, echo_event_cb, listener);
	bufferevent_enable(bev, EV_READ | EV_WRITE);
	maybe_finish(listener);
}

static void accept_error_cb(struct evconnlistener *listener, void *ctx)
{
	int err = EVUTIL_SOCKET_ERROR();

	/* EMFILE and friends: libevent keeps the listener; so do we. */
	fprintf(stderr, "echo-server: accept error %d (%s)\n", err,
		evutil_socket_error_to_string(err));
}

static void stop_cb(evutil_socket_t sig, short events, void *ctx)
{
	event_base_loopexit(base, NULL);
}

static void usage(FILE *to)
{
	fprintf(to, "usage: echo-server [--bind ADDR] [--port N] [--max-connections N] [--seconds S]\n");
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "bind", required_argument, NULL, 'b' },
		{ "port", required_argument, NULL, 'p' },
		{ "max-connections", required_argument, NULL, 'n' },
		{ "seconds", required_argument, NULL, 's' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 }
	};
	const char *addr = "127.0.0.1";
	int port = 9995, seconds = 0, c;
	struct sockaddr_storage ss;
	int sslen = sizeof(ss);
	socklen_t len;
	struct evconnlistener *listener;
	struct event *sigint, *sigterm, *timer = NULL;

	while ((c = getopt_long(argc, argv, "b:p:n:s:h", opts, NULL)) != -1) {
		switch (c) {
		case 'b': addr = optarg; break;
		case 'p': port = atoi(optarg); break;
		case 'n': max_connections = atol(optarg); break;
		case 's': seconds = atoi(optarg); break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (optind != argc || port < 0 || port > 65535) {
		usage(stderr);
		return 2;
	}

	/* ADDR (IPv4, or IPv6 in brackets) to a sockaddr, then the port. */
	{
		char spec[128];

		snprintf(spec, sizeof(spec), strchr(addr, ':') ? "[%s]" : "%s", addr);
		memset(&ss, 0, sizeof(ss));
		if (evutil_parse_sockaddr_port(spec, (struct sockaddr *)&ss, &sslen) < 0) {
			fprintf(stderr, "echo-server: bad address %s\n", addr);
			return 2;
		}
	}
	if (ss.ss_family == AF_INET6)
		((struct sockaddr_in6 *)&ss)->sin6_port = htons((unsigned short)port);
	else
		((struct sockaddr_in *)&ss)->sin_port = htons((unsigned short)port);

	base = event_base_new();
	if (!base) {
		fprintf(stderr, "echo-server: cannot make an event_base\n");
		return 1;
	}
	listener = evconnlistener_new_bind(base, accept_conn_cb, NULL,
					   LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE, -1,
					   (struct sockaddr *)&ss, sslen);
	if (!listener) {
		perror("echo-server: evconnlistener_new_bind");
		return 1;
	}
	evconnlistener_set_error_cb(listener, accept_error_cb);

	/* The port actually bound: what --port 0 chose. */
	len = sizeof(ss);
	getsockname(evconnlistener_get_fd(listener), (struct sockaddr *)&ss, &len);
	printf("PORT %d\n", ntohs(ss.ss_family == AF_INET6
				  ? ((struct sockaddr_in6 *)&ss)->sin6_port
				  : ((struct sockaddr_in *)&ss)->sin_port));
	printf("BACKEND %s\n", evuring_backend_name(evuring_listener_backend(listener)));
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

	printf("SERVED %ld\n", accepted);
	if (timer)
		event_free(timer);
	event_free(sigint);
	event_free(sigterm);
	evconnlistener_free(listener);
	event_base_free(base);
	return 0;
}
