/*
 * tcp-proxy: a TCP relay in the style of libevent's sample/le-proxy.c, on
 * evuring's listener.
 *
 *   tcp-proxy [OPTIONS] LISTEN_PORT BACKEND_HOST BACKEND_PORT
 *   tcp-proxy [OPTIONS] --port N BACKEND_HOST BACKEND_PORT
 *
 *   --bind ADDR           listen address (default 127.0.0.1)
 *   --max-connections N   stop after N client connections have come and gone
 *   --seconds S           stop after S seconds
 *
 * Every accepted client gets a bufferevent, and a second bufferevent that
 * connects to BACKEND_HOST:BACKEND_PORT; bytes are copied both ways, with
 * back-pressure (a side stops reading while its peer has more than 512 KiB
 * queued), and when one side closes, what is still queued for the other is
 * flushed before it is closed too. LISTEN_PORT 0 picks a free port; the
 * port is printed as "PORT <n>", the listener's backend as "BACKEND <name>".
 *
 * SPDX-License-Identifier: BSD-3-Clause
 */
#define _POSIX_C_SOURCE 200809L
#include <arpa/inet.h>
#include <getopt.h>
#include <netdb.h>
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
#include <event2/util.h>
#include <evuring.h>

#define MAX_OUTPUT (512 * 1024)

/* One proxied connection: side[0] the client, side[1] the backend. */
struct conn {
	struct bufferevent *side[2];
};

static struct event_base *base;
static struct evconnlistener *listener;
static struct sockaddr_storage backend_addr;
static int backend_len;
static long max_connections, accepted, open_conns;

static void readcb(struct bufferevent *bev, void *ctx);
static void eventcb(struct bufferevent *bev, short what, void *ctx);

static struct bufferevent *partner_of(struct conn *c, struct bufferevent *bev)
{
	return c->side[0] == bev ? c->side[1] : c->side[0];
}

static void maybe_finish(void)
{
	if (max_connections && accepted >= max_connections) {
		evconnlistener_disable(listener);
		if (open_conns == 0)
			event_base_loopexit(base, NULL);
	}
}

/* Free one side; the connection goes when both sides have. */
static void close_side(struct conn *c, struct bufferevent *bev)
{
	c->side[c->side[0] == bev ? 0 : 1] = NULL;
	bufferevent_free(bev);
	if (!c->side[0] && !c->side[1]) {
		free(c);
		open_conns--;
		maybe_finish();
	}
}

static void close_on_finished_writecb(struct bufferevent *bev, void *ctx)
{
	if (evbuffer_get_length(bufferevent_get_output(bev)) == 0)
		close_side(ctx, bev);
}

/* The partner drained below the watermark: read from this side again. */
static void drained_writecb(struct bufferevent *bev, void *ctx)
{
	struct bufferevent *partner = partner_of(ctx, bev);

	bufferevent_setcb(bev, readcb, NULL, eventcb, ctx);
	bufferevent_setwatermark(bev, EV_WRITE, 0, 0);
	if (partner)
		bufferevent_enable(partner, EV_READ);
}

static void readcb(struct bufferevent *bev, void *ctx)
{
	struct bufferevent *partner = partner_of(ctx, bev);
	struct evbuffer *src = bufferevent_get_input(bev), *dst;

	if (!partner) {
		evbuffer_drain(src, evbuffer_get_length(src));
		return;
	}
	dst = bufferevent_get_output(partner);
	evbuffer_add_buffer(dst, src);
	if (evbuffer_get_length(dst) >= MAX_OUTPUT) {
		/* Stop reading until the partner has written half of it. */
		bufferevent_setcb(partner, readcb, drained_writecb, eventcb, ctx);
		bufferevent_setwatermark(partner, EV_WRITE, MAX_OUTPUT / 2, MAX_OUTPUT);
		bufferevent_disable(bev, EV_READ);
	}
}

static void eventcb(struct bufferevent *bev, short what, void *ctx)
{
	struct conn *c = ctx;
	struct bufferevent *partner = partner_of(c, bev);

	if (what & BEV_EVENT_CONNECTED)
		return; /* the backend answered */
	if (!(what & (BEV_EVENT_EOF | BEV_EVENT_ERROR)))
		return;
	if (what & BEV_EVENT_ERROR) {
		int err = EVUTIL_SOCKET_ERROR();

		fprintf(stderr, "tcp-proxy: %s: %s\n", bev == c->side[0] ? "client" : "backend",
			err ? evutil_socket_error_to_string(err) : "error");
	}
	if (partner) {
		/* Flush what is left to the partner, then close it. */
		readcb(bev, ctx);
		if (evbuffer_get_length(bufferevent_get_output(partner))) {
			bufferevent_setcb(partner, NULL, close_on_finished_writecb, eventcb, ctx);
			bufferevent_disable(partner, EV_READ);
		} else {
			/* Not the last side (bev still is): c stays. */
			c->side[c->side[0] == partner ? 0 : 1] = NULL;
			bufferevent_free(partner);
		}
	}
	close_side(c, bev);
}

static void accept_cb(struct evconnlistener *lev, evutil_socket_t fd,
		      struct sockaddr *sa, int socklen, void *arg)
{
	struct conn *c = calloc(1, sizeof(*c));

	if (!c) {
		evutil_closesocket(fd);
		return;
	}
	c->side[0] = bufferevent_socket_new(base, fd, BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS);
	c->side[1] = bufferevent_socket_new(base, -1, BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS);
	if (!c->side[0] || !c->side[1]) {
		if (c->side[0])
			bufferevent_free(c->side[0]);
		else
			evutil_closesocket(fd);
		if (c->side[1])
			bufferevent_free(c->side[1]);
		free(c);
		return;
	}
	accepted++;
	open_conns++;
	bufferevent_setcb(c->side[0], readcb, NULL, eventcb, c);
	bufferevent_setcb(c->side[1], readcb, NULL, eventcb, c);
	if (bufferevent_socket_connect(c->side[1], (struct sockaddr *)&backend_addr, backend_len) < 0) {
		perror("tcp-proxy: connect to backend");
		bufferevent_free(c->side[1]);
		bufferevent_free(c->side[0]);
		free(c);
		open_conns--;
		maybe_finish();
		return;
	}
	bufferevent_enable(c->side[0], EV_READ | EV_WRITE);
	bufferevent_enable(c->side[1], EV_READ | EV_WRITE);
	maybe_finish();
}

static void accept_error_cb(struct evconnlistener *lev, void *ctx)
{
	int err = EVUTIL_SOCKET_ERROR();

	fprintf(stderr, "tcp-proxy: accept error: %s\n", evutil_socket_error_to_string(err));
}

static void stop_cb(evutil_socket_t sig, short events, void *ctx)
{
	event_base_loopexit(base, NULL);
}

static void usage(FILE *to)
{
	fprintf(to,
		"usage: tcp-proxy [--bind ADDR] [--max-connections N] [--seconds S]\n"
		"                 LISTEN_PORT BACKEND_HOST BACKEND_PORT\n"
		"       tcp-proxy [...] --port N BACKEND_HOST BACKEND_PORT\n");
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
	const char *bind_addr = "127.0.0.1", *host, *service;
	int port = -1, seconds = 0, c, err;
	struct evutil_addrinfo hints, *ai = NULL;
	struct sockaddr_storage ss;
	int sslen = sizeof(ss);
	socklen_t len;
	char spec[128];
	struct event *sigint, *sigterm, *timer = NULL;

	while ((c = getopt_long(argc, argv, "b:p:n:s:h", opts, NULL)) != -1) {
		switch (c) {
		case 'b': bind_addr = optarg; break;
		case 'p': port = atoi(optarg); break;
		case 'n': max_connections = atol(optarg); break;
		case 's': seconds = atoi(optarg); break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (port < 0 && argc - optind == 3)
		port = atoi(argv[optind++]);
	if (port < 0 || port > 65535 || argc - optind != 2) {
		usage(stderr);
		return 2;
	}
	host = argv[optind];
	service = argv[optind + 1];

	/* Resolve the backend once, at start-up. */
	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = EVUTIL_AI_ADDRCONFIG;
	err = evutil_getaddrinfo(host, service, &hints, &ai);
	if (err || !ai) {
		fprintf(stderr, "tcp-proxy: %s:%s: %s\n", host, service, evutil_gai_strerror(err));
		return 2;
	}
	memcpy(&backend_addr, ai->ai_addr, ai->ai_addrlen);
	backend_len = (int)ai->ai_addrlen;
	evutil_freeaddrinfo(ai);

	snprintf(spec, sizeof(spec), strchr(bind_addr, ':') ? "[%s]" : "%s", bind_addr);
	memset(&ss, 0, sizeof(ss));
	if (evutil_parse_sockaddr_port(spec, (struct sockaddr *)&ss, &sslen) < 0) {
		fprintf(stderr, "tcp-proxy: bad listen address %s\n", bind_addr);
		return 2;
	}
	if (ss.ss_family == AF_INET6)
		((struct sockaddr_in6 *)&ss)->sin6_port = htons((unsigned short)port);
	else
		((struct sockaddr_in *)&ss)->sin_port = htons((unsigned short)port);

	base = event_base_new();
	if (!base)
		return 1;
	listener = evconnlistener_new_bind(base, accept_cb, NULL,
					   LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC | LEV_OPT_REUSEABLE,
					   -1, (struct sockaddr *)&ss, sslen);
	if (!listener) {
		perror("tcp-proxy: evconnlistener_new_bind");
		return 1;
	}
	evconnlistener_set_error_cb(listener, accept_error_cb);

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

	printf("PROXIED %ld\n", accepted);
	if (timer)
		event_free(timer);
	event_free(sigint);
	event_free(sigterm);
	evconnlistener_free(listener);
	event_base_free(base);
	return 0;
}
