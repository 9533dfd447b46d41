/*
 * swapin_http_threads: an evhttp server with several loops on one socket,
 * written only against libevent's public API (no evuring header), the way
 * multi-threaded evhttp servers are: one listening socket, and in each of N
 * threads an event_base, an evhttp and evhttp_accept_socket() on a dup() of
 * it (evhttp_free closes the one it was given).
 *
 *   swapin_http_threads [--threads=N]
 *
 * Prints "PORT <n>". "/" answers "hello\n"; "/slow" blocks its thread for
 * 2 s, then answers. SIGTERM (or SIGINT) ends every loop; each thread frees
 * its evhttp (and so its listener). Prints "REPORT served=a/b/c/d", the
 * requests each thread answered. A 40 s safety timer fails it.
 *
 * SPDX-License-Identifier: BSD-3-Clause
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>

#define MAX_THREADS 8
#define SERVER_TIMEOUT_SEC 40

struct loop {
	pthread_t tid;
	int served;
	int failed;
};

static int listen_fd, stop_fd;
static struct loop loops[MAX_THREADS];

static void reply(struct evhttp_request *req)
{
	struct evbuffer *body = evbuffer_new();

	evbuffer_add(body, "hello\n", 6);
	evhttp_send_reply(req, HTTP_OK, "OK", body);
	evbuffer_free(body);
}

static void on_hello(struct evhttp_request *req, void *arg)
{
	((struct loop *)arg)->served++;
	reply(req);
}

static void on_slow(struct evhttp_request *req, void *arg)
{
	((struct loop *)arg)->served++;
	sleep(2); /* a busy loop: the others must serve meanwhile */
	reply(req);
}

static void on_stop(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	event_base_loopexit(arg, NULL);
}

static void *loop_main(void *arg)
{
	struct loop *l = arg;
	struct event_base *base = event_base_new();
	struct evhttp *http = base ? evhttp_new(base) : NULL;
	struct event *stop = http ? event_new(base, stop_fd, EV_READ, on_stop, base) : NULL;
	/* evhttp closes the socket it accepts on when freed: each its own dup */
	int fd = dup(listen_fd);

	if (!stop || fd < 0 || event_add(stop, NULL) < 0 || evhttp_accept_socket(http, fd) < 0) {
		l->failed = 1;
		return NULL;
	}
	evhttp_set_cb(http, "/", on_hello, l);
	evhttp_set_cb(http, "/slow", on_slow, l);
	event_base_dispatch(base);
	evhttp_free(http);
	event_free(stop);
	event_base_free(base);
	return NULL;
}

int main(int argc, char **argv)
{
	struct sockaddr_in sin = { .sin_family = AF_INET };
	socklen_t slen = sizeof(sin);
	int n = 4, one = 1, sig, failed = 0;
	sigset_t sigs;

	for (int i = 1; i < argc; i++) {
		if (strncmp(argv[i], "--threads=", 10) == 0) {
			n = atoi(argv[i] + 10);
		} else {
			fprintf(stderr, "usage: %s [--threads=N]\n", argv[0]);
			return 2;
		}
	}
	if (n < 1 || n > MAX_THREADS)
		return 2;
	setvbuf(stdout, NULL, _IOLBF, 0);
	/* signals to main's sigwait only */
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGTERM);
	sigaddset(&sigs, SIGINT);
	sigaddset(&sigs, SIGALRM);
	pthread_sigmask(SIG_BLOCK, &sigs, NULL);
	signal(SIGPIPE, SIG_IGN);

	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	listen_fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (listen_fd < 0 || stop_fd < 0 ||
	    setsockopt(listen_fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
	    bind(listen_fd, (struct sockaddr *)&sin, sizeof(sin)) < 0 || listen(listen_fd, 128) < 0 ||
	    getsockname(listen_fd, (struct sockaddr *)&sin, &slen) < 0) {
		printf("FAIL: listening socket\n");
		return 1;
	}
	for (int i = 0; i < n; i++)
		pthread_create(&loops[i].tid, NULL, loop_main, &loops[i]);
	printf("PORT %d\n", ntohs(sin.sin_port));

	alarm(SERVER_TIMEOUT_SEC);
	sigwait(&sigs, &sig);
	if (write(stop_fd, &(uint64_t){ 1 }, 8) != 8)
		failed = 1;
	printf("REPORT served=");
	for (int i = 0; i < n; i++) {
		pthread_join(loops[i].tid, NULL);
		failed |= loops[i].failed;
		printf("%s%d", i ? "/" : "", loops[i].served);
	}
	printf("\n");
	close(listen_fd);
	close(stop_fd);
	if (sig == SIGALRM)
		printf("FAIL: timed out\n");
	printf("%s\n", failed || sig == SIGALRM ? "FAIL" : "PASS");
	return failed || sig == SIGALRM;
}
