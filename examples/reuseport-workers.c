/*
 * reuseport-workers: N threads, each with its own event_base and its own
 * listener on the same port (LEV_OPT_REUSEABLE_PORT, i.e. SO_REUSEPORT): the
 * kernel spreads incoming connections over the workers' accept queues, and
 * with evuring each worker accepts with its own io_uring multishot accept.
 *
 *   reuseport-workers [--bind ADDR] [--port N] [--workers N]
 *                     [--max-connections M] [--seconds S]
 *
 * Each worker greets a connection with "worker <i>\n" and closes it. The
 * first worker binds (with --port 0, a free port), the others join its port;
 * once all listen, "PORT <n>" is printed. Stops on SIGINT/SIGTERM, after S
 * seconds, or once M connections have been accepted in total; then prints
 * "WORKER <i> ACCEPTED <count> BACKEND <name>" per worker and
 * "TOTAL <sum>".
 *
 * SPDX-License-Identifier: BSD-3-Clause
 */
#define _POSIX_C_SOURCE 200809L
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>
#include <event2/listener.h>
#include <event2/thread.h>
#include <evuring.h>

#define MAX_WORKERS 64

struct worker {
	int id;
	pthread_t thread;
	struct event_base *base;
	struct evconnlistener *listener;
	struct event *stop;  /* made active by main to end the loop */
	int started;
	long accepted;     /* only this worker's thread writes it */
	const char *backend;
	int failed;
};

static struct worker workers[MAX_WORKERS];
static int nworkers = 4;
static long max_connections;
static struct sockaddr_storage listen_addr; /* port filled in by worker 0 */
static int listen_len;

/* Start-up hand-shake and the global count, under one mutex. */
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cond = PTHREAD_COND_INITIALIZER;
static int listening;      /* workers whose listener exists (or failed) */
static long total;         /* connections accepted by all workers */

static void set_port(struct sockaddr_storage *ss, int port)
{
	if (ss->ss_family == AF_INET6)
		((struct sockaddr_in6 *)ss)->sin6_port = htons((unsigned short)port);
	else
		((struct sockaddr_in *)ss)->sin_port = htons((unsigned short)port);
}

static int get_port(const struct sockaddr_storage *ss)
{
	return ntohs(ss->ss_family == AF_INET6 ? ((const struct sockaddr_in6 *)ss)->sin6_port
					       : ((const struct sockaddr_in *)ss)->sin_port);
}

static void accept_cb(struct evconnlistener *lev, evutil_socket_t fd,
		      struct sockaddr *sa, int socklen, void *arg)
{
	struct worker *w = arg;
	char greeting[32];
	int n = snprintf(greeting, sizeof(greeting), "worker %d\n", w->id);

	/* A fresh socket's send buffer is empty: a short greeting fits. */
	if (send(fd, greeting, (size_t)n, MSG_NOSIGNAL) < 0)
		perror("reuseport-workers: send");
	evutil_closesocket(fd);
	w->accepted++;

	pthread_mutex_lock(&lock);
	total++;
	pthread_cond_broadcast(&cond);
	pthread_mutex_unlock(&lock);
}

/* Runs in the worker's own loop: event_active() from main, which (unlike a
 * loopbreak) is not lost if it comes before the loop has started. */
static void stop_cb(evutil_socket_t fd, short events, void *arg)
{
	struct worker *w = arg;

	event_base_loopbreak(w->base);
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);

	/* The base and the listener are made in the thread that runs them. */
	w->base = event_base_new();
	if (w->base)
		w->stop = event_new(w->base, -1, 0, stop_cb, w);
	if (w->stop)
		w->listener = evconnlistener_new_bind(
			w->base, accept_cb, w,
			LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE | LEV_OPT_REUSEABLE_PORT, -1,
			(struct sockaddr *)&listen_addr, listen_len);

	pthread_mutex_lock(&lock);
	if (!w->listener) {
		fprintf(stderr, "reuseport-workers: worker %d: cannot listen: %s\n",
			w->id, strerror(errno));
		w->failed = 1;
	} else {
		w->backend = evuring_backend_name(evuring_listener_backend(w->listener));
		if (w->id == 0 &&
		    getsockname(evconnlistener_get_fd(w->listener), (struct sockaddr *)&ss, &len) == 0)
			set_port(&listen_addr, get_port(&ss)); /* the others join this port */
	}
	listening++;
	pthread_cond_broadcast(&cond);
	pthread_mutex_unlock(&lock);

	if (w->listener) {
		event_base_dispatch(w->base); /* until main activates w->stop */
		evconnlistener_free(w->listener);
	}
	if (w->stop)
		event_free(w->stop);
	if (w->base)
		event_base_free(w->base);
	return NULL;
}

static volatile sig_atomic_t stop_signal;

static void on_signal(int sig)
{
	stop_signal = sig;
}

static void usage(FILE *to)
{
	fprintf(to, "usage: reuseport-workers [--bind ADDR] [--port N] [--workers N] "
		    "[--max-connections M] [--seconds S]\n");
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "bind", required_argument, NULL, 'b' },
		{ "port", required_argument, NULL, 'p' },
		{ "workers", required_argument, NULL, 'w' },
		{ "max-connections", required_argument, NULL, 'n' },
		{ "seconds", required_argument, NULL, 's' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 }
	};
	const char *addr = "127.0.0.1";
	int port = 9996, seconds = 0, c, i, failed = 0;
	char spec[128];
	struct timespec deadline;
	struct sigaction sa;
	long sum = 0;

	while ((c = getopt_long(argc, argv, "b:p:w:n:s:h", opts, NULL)) != -1) {
		switch (c) {
		case 'b': addr = optarg; break;
		case 'p': port = atoi(optarg); break;
		case 'w': nworkers = atoi(optarg); break;
		case 'n': max_connections = atol(optarg); break;
		case 's': seconds = atoi(optarg); break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (optind != argc || port < 0 || port > 65535 || nworkers < 1 || nworkers > MAX_WORKERS) {
		usage(stderr);
		return 2;
	}
	snprintf(spec, sizeof(spec), strchr(addr, ':') ? "[%s]" : "%s", addr);
	listen_len = sizeof(listen_addr);
	if (evutil_parse_sockaddr_port(spec, (struct sockaddr *)&listen_addr, &listen_len) < 0) {
		fprintf(stderr, "reuseport-workers: bad address %s\n", addr);
		return 2;
	}
	set_port(&listen_addr, port);

	/* main stops the workers' loops from its own thread. */
	if (evthread_use_pthreads() < 0) {
		fprintf(stderr, "reuseport-workers: no libevent thread support\n");
		return 1;
	}
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);

	/* Worker 0 first: with --port 0 it picks the port the others join. */
	for (i = 0; i < nworkers; i++) {
		workers[i].id = i;
		if (pthread_create(&workers[i].thread, NULL, worker_main, &workers[i]) != 0) {
			fprintf(stderr, "reuseport-workers: pthread_create failed\n");
			failed = 1;
			break;
		}
		workers[i].started = 1;
		pthread_mutex_lock(&lock);
		while (listening <= i)
			pthread_cond_wait(&cond, &lock);
		failed |= workers[i].failed;
		pthread_mutex_unlock(&lock);
		if (failed)
			break;
	}
	if (!failed) {
		printf("PORT %d\n", get_port(&listen_addr));
		printf("WORKERS %d BACKEND %s\n", nworkers, workers[0].backend);
		fflush(stdout);

		/* Wait for M connections, the deadline or a signal, whichever
		 * comes first; wake every 100 ms to notice signals. */
		clock_gettime(CLOCK_REALTIME, &deadline);
		deadline.tv_sec += seconds > 0 ? seconds : 365L * 24 * 3600;
		pthread_mutex_lock(&lock);
		while (!stop_signal && !(max_connections && total >= max_connections)) {
			struct timespec now, tick;

			clock_gettime(CLOCK_REALTIME, &now);
			if (now.tv_sec > deadline.tv_sec ||
			    (now.tv_sec == deadline.tv_sec && now.tv_nsec >= deadline.tv_nsec))
				break;
			tick = now;
			tick.tv_nsec += 100 * 1000 * 1000;
			if (tick.tv_nsec >= 1000000000L) {
				tick.tv_sec++;
				tick.tv_nsec -= 1000000000L;
			}
			pthread_cond_timedwait(&cond, &lock, &tick);
		}
		pthread_mutex_unlock(&lock);
	}

	/* Stop every loop (event_active is thread-safe with
	 * evthread_use_pthreads), then join: each worker frees its own
	 * listener and base in its own thread. */
	for (i = 0; i < nworkers && workers[i].started; i++)
		if (!workers[i].failed)
			event_active(workers[i].stop, EV_READ, 0);
	for (i = 0; i < nworkers && workers[i].started; i++)
		pthread_join(workers[i].thread, NULL);

	for (i = 0; i < nworkers && workers[i].started; i++) {
		if (workers[i].failed)
			continue;
		printf("WORKER %d ACCEPTED %ld BACKEND %s\n", i, workers[i].accepted,
		       workers[i].backend);
		sum += workers[i].accepted;
	}
	printf("TOTAL %ld\n", sum);
	return failed ? 1 : 0;
}
