/*
 * swapin_http: an evhttp server written only against libevent's public API;
 * no evuring header.
 *
 *   swapin_http [--requests=N] [--expect-ring=0|1]
 *
 * Binds 127.0.0.1:0 with evhttp_bind_socket_with_handle() (libevent itself
 * then calls evconnlistener_new, _set_cb, and later _get_fd and _free),
 * prints "PORT <n>" and answers "hello\n" on "/". On every request to "/"
 * (the listener is alive then) it checks whether an io_uring fd is open in
 * the process. SIGTERM (or SIGINT) ends the loop; evhttp_free() then frees
 * the listener. A 40 s safety timer ends it too, as a failure.
 *
 * Exit: 0 if at least N requests were answered and the ring was present at
 * every one (--expect-ring=1) or at none (--expect-ring=0); 1 otherwise.
 *
 * SPDX-License-Identifier: BSD-3-Clause
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>

#include "ringcheck.h"

#define SERVER_TIMEOUT_SEC 40

static int requests, ring_checks, ring_hits, timed_out;

static void on_hello(struct evhttp_request *req, void *arg)
{
	(void)arg;
	int first = -1;
	int rings = swapin_count_rings(&first);

	requests++;
	ring_checks++;
	if (rings > 0) {
		if (ring_hits++ == 0)
			printf("RING fd=%d at request #%d (anon_inode:[io_uring], fdinfo present)\n",
			       first, requests);
	} else if (requests == 1) {
		printf("NORING at request #1\n");
	}

	struct evbuffer *body = evbuffer_new();
	evbuffer_add(body, "hello\n", 6);
	evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type",
			  "text/plain");
	evhttp_send_reply(req, HTTP_OK, "OK", body);
	evbuffer_free(body);
}

static void on_stop(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	event_base_loopexit(arg, NULL);
}

static void on_timeout(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	timed_out = 1;
	event_base_loopexit(arg, NULL);
}

int main(int argc, char **argv)
{
	int want = 1, expect_ring = -1;

	for (int i = 1; i < argc; i++) {
		if (strncmp(argv[i], "--requests=", 11) == 0)
			want = atoi(argv[i] + 11);
		else if (strcmp(argv[i], "--expect-ring=0") == 0)
			expect_ring = 0;
		else if (strcmp(argv[i], "--expect-ring=1") == 0)
			expect_ring = 1;
		else {
			fprintf(stderr, "usage: %s [--requests=N] [--expect-ring=0|1]\n", argv[0]);
			return 2;
		}
	}
	setvbuf(stdout, NULL, _IOLBF, 0);
	signal(SIGPIPE, SIG_IGN);

	struct event_base *base = event_base_new();
	struct evhttp *http = base ? evhttp_new(base) : NULL;
	if (!http) {
		printf("FAIL: event_base_new/evhttp_new\n");
		return 1;
	}
	evhttp_set_cb(http, "/", on_hello, NULL);

	struct evhttp_bound_socket *bound = evhttp_bind_socket_with_handle(http, "127.0.0.1", 0);
	if (!bound) {
		printf("FAIL: evhttp_bind_socket_with_handle\n");
		return 1;
	}
	struct sockaddr_in sin;
	socklen_t slen = sizeof(sin);
	if (getsockname(evhttp_bound_socket_get_fd(bound), (struct sockaddr *)&sin, &slen) != 0) {
		printf("FAIL: getsockname on evhttp_bound_socket_get_fd()\n");
		return 1;
	}
	printf("PORT %d\n", ntohs(sin.sin_port));

	struct event *term = evsignal_new(base, SIGTERM, on_stop, base);
	struct event *intr = evsignal_new(base, SIGINT, on_stop, base);
	struct event *timer = evtimer_new(base, on_timeout, base);
	struct timeval limit = { SERVER_TIMEOUT_SEC, 0 };
	evsignal_add(term, NULL);
	evsignal_add(intr, NULL);
	evtimer_add(timer, &limit);

	event_base_dispatch(base);

	evhttp_free(http); /* frees the listener through evconnlistener_free */
	event_free(term);
	event_free(intr);
	event_free(timer);
	event_base_free(base);

	printf("REPORT requests=%d want=%d ring_checks=%d ring_hits=%d timed_out=%d\n",
	       requests, want, ring_checks, ring_hits, timed_out);
	int ok = 1;
	if (requests < want || timed_out) {
		printf("FAIL: %s\n", timed_out ? "timed out" : "too few requests answered");
		ok = 0;
	}
	if (expect_ring == 1 && (ring_checks == 0 || ring_hits != ring_checks)) {
		printf("FAIL: expected an io_uring ring at every request, saw one at %d of %d\n",
		       ring_hits, ring_checks);
		ok = 0;
	}
	if (expect_ring == 0 && ring_hits != 0) {
		printf("FAIL: expected no io_uring ring, saw one at %d of %d requests\n",
		       ring_hits, ring_checks);
		ok = 0;
	}
	printf("%s\n", ok ? "PASS" : "FAIL");
	return ok ? 0 : 1;
}
