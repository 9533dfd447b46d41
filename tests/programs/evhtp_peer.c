/*
 * prog-evhtp: the smallest server on Debian's libevhtp (libevhtp0 1.2.18),
 * for programs.evhtp. libevhtp, not this file, makes the listener: its
 * evhtp_bind_socket() creates the socket and calls evconnlistener_new() on
 * it (LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE) through its own PLT; its
 * accept callback copies the callback's sockaddr into the connection and,
 * with evhtp_use_threads_wexit(), hands the fd to a worker thread's base.
 *
 *   prog-evhtp ADDRESS PORT THREADS
 *
 * ADDRESS as libevhtp takes it ("ipv4:127.0.0.1", "ipv6:::1"). Prints
 * "READY" once bound. GET /peer answers "<host> <port>": the peer address
 * libevhtp kept from the listener callback. GET /quit (answered, from a
 * worker thread when THREADS > 0) breaks the main loop: unbind (frees the
 * listener), free everything, exit 0. (Not SIGTERM: where the signal lands
 * among libevhtp's threads is the kernel's choice, and this must not vary.)
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

#include <event2/event.h>
#include <event2/thread.h>
#include <evhtp/evhtp.h>

static void on_peer(evhtp_request_t *req, void *arg)
{
	const struct sockaddr *sa = evhtp_request_get_connection(req)->saddr;
	char host[INET6_ADDRSTRLEN] = "?";
	unsigned port = 0;

	(void)arg;
	if (sa && sa->sa_family == AF_INET) {
		const struct sockaddr_in *sin = (const void *)sa;
		inet_ntop(AF_INET, &sin->sin_addr, host, sizeof(host));
		port = ntohs(sin->sin_port);
	} else if (sa && sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *sin6 = (const void *)sa;
		inet_ntop(AF_INET6, &sin6->sin6_addr, host, sizeof(host));
		port = ntohs(sin6->sin6_port);
	}
	evbuffer_add_printf(req->buffer_out, "%s %u\n", host, port);
	evhtp_send_reply(req, EVHTP_RES_OK);
}

static void on_quit(evhtp_request_t *req, void *arg)
{
	struct timeval flush = { 0, 100 * 1000 }; /* let the answer go out */

	evbuffer_add_printf(req->buffer_out, "bye\n");
	evhtp_send_reply(req, EVHTP_RES_OK);
	event_base_loopexit(arg, &flush); /* the main base; evthread locking is on */
}

int main(int argc, char **argv)
{
	struct event_base *base;
	evhtp_t *htp;

	if (argc != 4) {
		fprintf(stderr, "usage: %s ADDRESS PORT THREADS\n", argv[0]);
		return 2;
	}
	signal(SIGPIPE, SIG_IGN);
	if (evthread_use_pthreads() < 0 || !(base = event_base_new()) ||
	    !(htp = evhtp_new(base, NULL))) {
		fprintf(stderr, "prog-evhtp: setup failed\n");
		return 1;
	}
	evhtp_set_cb(htp, "/peer", on_peer, NULL);
	evhtp_set_cb(htp, "/quit", on_quit, base);
	if (atoi(argv[3]) > 0 &&
	    evhtp_use_threads_wexit(htp, NULL, NULL, atoi(argv[3]), NULL) != 0) {
		fprintf(stderr, "prog-evhtp: evhtp_use_threads_wexit failed\n");
		return 1;
	}
	if (evhtp_bind_socket(htp, argv[1], (uint16_t)atoi(argv[2]), 1024) != 0) {
		perror("prog-evhtp: evhtp_bind_socket");
		return 1;
	}
	printf("READY\n");
	fflush(stdout);
	event_base_dispatch(base);

	evhtp_unbind_socket(htp);
	evhtp_free(htp);
	event_base_free(base);
	libevent_global_shutdown();
	return 0;
}
