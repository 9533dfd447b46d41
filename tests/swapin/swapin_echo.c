/*
 * swapin_echo: an echo server written only against libevent's public API
 * (<event2/listener.h>, event, bufferevent); no evuring header.
 *
 *   swapin_echo [--conns=N] [--expect-ring=0|1]
 *
 * Listens on 127.0.0.1:0 with evconnlistener_new_bind() and prints
 * "PORT <n>". A client thread in this process opens N connections (four at
 * a time), sends a line on each and reads the echo back. On every accepted
 * connection, while the listener is alive, the server checks whether an
 * io_uring fd is open in the process (see ringcheck.h). After the N-th
 * connection closes it frees the listener and leaves the loop.
 *
 * Built twice: swapin_echo_linked (evuring ahead of libevent on the link
 * line) and swapin_echo_plain (libevent only; LD_PRELOAD swaps evuring in).
 * With libevent's own listener no ring ever exists, so --expect-ring=1
 * passes only if evuring accepted the connections.
 *
 * Exit: 0 if all N connections were echoed and the ring was present at every
 * accept (--expect-ring=1) or at none (--expect-ring=0); 1 otherwise.
 *
 * SPDX-License-Identifier: BSD-3-Clause
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>

#include "ringcheck.h"

#define MAX_CONNS 256
#define BATCH 4
#define IO_TIMEOUT_SEC 10
#define SERVER_TIMEOUT_SEC 40

static struct event_base *base;
static struct evconnlistener *listener;
static int nconns = 16;
static int port;

/* server side (loop thread) */
static int accepted, served, server_errors, listener_errors;
static int ring_checks, ring_hits, ring_fd = -1;
static int bad_accepts; /* blocking fd, wrong address */
static int timed_out;

/* client side (client thread; read after join) */
static int client_ok;
static char client_err[256];

static void stop_listening(void)
{
	if (listener) {
		evconnlistener_free(listener);
		listener = NULL;
	}
	event_base_loopexit(base, NULL);
}

static void conn_done(struct bufferevent *bev, int ok)
{
	bufferevent_free(bev);
	if (ok)
		served++;
	else
		server_errors++;
	if (served + server_errors >= nconns)
		stop_listening();
}

static void echo_read(struct bufferevent *bev, void *arg)
{
	(void)arg;
	evbuffer_add_buffer(bufferevent_get_output(bev), bufferevent_get_input(bev));
}

static void echo_event(struct bufferevent *bev, short what, void *arg)
{
	(void)arg;
	if (what & BEV_EVENT_EOF)
		conn_done(bev, 1);
	else if (what & BEV_EVENT_ERROR)
		conn_done(bev, 0);
}

static void on_accept(struct evconnlistener *lev, evutil_socket_t fd,
		      struct sockaddr *sa, int socklen, void *arg)
{
	(void)arg;
	accepted++;

	/* The listener is alive and has just delivered: is a ring open? */
	int first = -1;
	int rings = swapin_count_rings(&first);
	ring_checks++;
	if (rings > 0) {
		ring_hits++;
		if (ring_fd < 0) {
			ring_fd = first;
			printf("RING fd=%d at accept #%d (anon_inode:[io_uring], fdinfo present)\n",
			       first, accepted);
		}
	} else if (accepted == 1) {
		printf("NORING at accept #1 (%s)\n",
		       rings < 0 ? "cannot read /proc/self/fd" : "no anon_inode:[io_uring] fd");
	}

	/* libevent's contract, as a swapped-in listener must keep it. */
	const struct sockaddr_in *sin = (const struct sockaddr_in *)sa;
	if (!(fcntl(fd, F_GETFL) & O_NONBLOCK) || lev != listener ||
	    socklen != (int)sizeof(struct sockaddr_in) || sa->sa_family != AF_INET ||
	    sin->sin_addr.s_addr != htonl(INADDR_LOOPBACK)) {
		bad_accepts++;
		printf("BAD accept #%d: nonblock=%d socklen=%d family=%d\n", accepted,
		       !!(fcntl(fd, F_GETFL) & O_NONBLOCK), socklen, sa->sa_family);
	}

	struct bufferevent *bev = bufferevent_socket_new(base, fd, BEV_OPT_CLOSE_ON_FREE);
	if (!bev) {
		evutil_closesocket(fd);
		server_errors++;
		return;
	}
	bufferevent_setcb(bev, echo_read, NULL, echo_event, NULL);
	bufferevent_enable(bev, EV_READ | EV_WRITE);
}

static void on_listener_error(struct evconnlistener *lev, void *arg)
{
	(void)lev;
	(void)arg;
	int err = EVUTIL_SOCKET_ERROR();
	listener_errors++;
	printf("listener error: %s\n", evutil_socket_error_to_string(err));
	if (listener_errors > 10)
		stop_listening();
}

static void on_timeout(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
	timed_out = 1;
	stop_listening();
}

static int client_conn_open(void)
{
	struct sockaddr_in sin;
	struct timeval tv = { IO_TIMEOUT_SEC, 0 };
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	if (fd < 0)
		return -1;
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_port = htons((unsigned short)port);
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (connect(fd, (struct sockaddr *)&sin, sizeof(sin)) != 0) {
		close(fd);
		return -1;
	}
	return fd;
}

static int client_echo(int fd, int i)
{
	char msg[64], got[64];
	int len = snprintf(msg, sizeof(msg), "swapin echo %d\n", i);
	int have = 0;

	if (send(fd, msg, (size_t)len, MSG_NOSIGNAL) != len)
		return -1;
	while (have < len) {
		ssize_t r = recv(fd, got + have, (size_t)(len - have), 0);
		if (r <= 0)
			return -1;
		have += (int)r;
	}
	return memcmp(msg, got, (size_t)len) == 0 ? 0 : -1;
}

static void *client_main(void *arg)
{
	(void)arg;
	for (int i = 0; i < nconns; i += BATCH) {
		int fds[BATCH], n = 0;
		for (; n < BATCH && i + n < nconns; n++) {
			fds[n] = client_conn_open();
			if (fds[n] < 0) {
				snprintf(client_err, sizeof(client_err), "connect #%d: %s",
					 i + n, strerror(errno));
				break;
			}
		}
		for (int k = 0; k < n; k++) {
			if (!client_err[0] && client_echo(fds[k], i + k) == 0)
				client_ok++;
			else if (!client_err[0])
				snprintf(client_err, sizeof(client_err), "echo #%d: %s", i + k,
					 errno ? strerror(errno) : "mismatch or EOF");
			close(fds[k]);
		}
		if (client_err[0])
			break;
	}
	return NULL;
}

int main(int argc, char **argv)
{
	int expect_ring = -1;

	for (int i = 1; i < argc; i++) {
		if (strncmp(argv[i], "--conns=", 8) == 0)
			nconns = atoi(argv[i] + 8);
		else if (strcmp(argv[i], "--expect-ring=0") == 0)
			expect_ring = 0;
		else if (strcmp(argv[i], "--expect-ring=1") == 0)
			expect_ring = 1;
		else {
			fprintf(stderr, "usage: %s [--conns=N] [--expect-ring=0|1]\n", argv[0]);
			return 2;
		}
	}
	if (nconns < 1 || nconns > MAX_CONNS) {
		fprintf(stderr, "--conns must be 1..%d\n", MAX_CONNS);
		return 2;
	}
	setvbuf(stdout, NULL, _IOLBF, 0);

	base = event_base_new();
	if (!base) {
		printf("FAIL: event_base_new\n");
		return 1;
	}
	struct sockaddr_in sin;
	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	listener = evconnlistener_new_bind(base, on_accept, NULL,
					   LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE, -1,
					   (struct sockaddr *)&sin, sizeof(sin));
	if (!listener) {
		printf("FAIL: evconnlistener_new_bind: %s\n", strerror(errno));
		return 1;
	}
	evconnlistener_set_error_cb(listener, on_listener_error);

	struct sockaddr_in bound;
	socklen_t blen = sizeof(bound);
	if (getsockname(evconnlistener_get_fd(listener), (struct sockaddr *)&bound, &blen) != 0) {
		printf("FAIL: getsockname: %s\n", strerror(errno));
		return 1;
	}
	port = ntohs(bound.sin_port);
	printf("PORT %d\n", port);

	struct timeval limit = { SERVER_TIMEOUT_SEC, 0 };
	struct event *timer = evtimer_new(base, on_timeout, NULL);
	evtimer_add(timer, &limit);

	pthread_t client;
	if (pthread_create(&client, NULL, client_main, NULL) != 0) {
		printf("FAIL: pthread_create\n");
		return 1;
	}
	event_base_dispatch(base);
	pthread_join(client, NULL);

	if (listener)
		evconnlistener_free(listener);
	event_free(timer);
	event_base_free(base);

	printf("REPORT conns=%d accepted=%d served=%d server_errors=%d listener_errors=%d "
	       "client_ok=%d ring_checks=%d ring_hits=%d bad_accepts=%d timed_out=%d\n",
	       nconns, accepted, served, server_errors, listener_errors, client_ok,
	       ring_checks, ring_hits, bad_accepts, timed_out);
	if (client_err[0])
		printf("client: %s\n", client_err);

	int ok = 1;
	if (served != nconns || client_ok != nconns || accepted != nconns) {
		printf("FAIL: not every connection was served\n");
		ok = 0;
	}
	if (bad_accepts || listener_errors || timed_out) {
		printf("FAIL: bad accepted sockets, listener errors or timeout\n");
		ok = 0;
	}
	if (expect_ring == 1 && (ring_checks == 0 || ring_hits != ring_checks)) {
		printf("FAIL: expected an io_uring ring at every accept (evuring's listener), "
		       "saw one at %d of %d\n", ring_hits, ring_checks);
		ok = 0;
	}
	if (expect_ring == 0 && ring_hits != 0) {
		printf("FAIL: expected no io_uring ring, saw one at %d of %d accepts\n",
		       ring_hits, ring_checks);
		ok = 0;
	}
	printf("%s\n", ok ? "PASS" : "FAIL");
	return ok ? 0 : 1;
}
