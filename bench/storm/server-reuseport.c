/*
 * Accept-storm server for the scale-out measurement: --workers N threads,
 * each with its own event_base and its own listener on the same port
 * (LEV_OPT_REUSEABLE_PORT, i.e. SO_REUSEPORT: the kernel hashes each
 * incoming connection to one of the workers' accept queues); with --opt
 * shared, each worker's listener is on one socket the main thread made
 * (evconnlistener_new), so every worker's loop is woken for every connection
 * and whichever is free takes it (storm.py's shared mode). Written against
 * libevent's listener API only and built twice, like server-listener.c:
 * linked with libevent alone (variant "libevent", "preload" under
 * LD_PRELOAD=libevuring.so) and with evuring ahead of libevent ("evuring",
 * "fallback"). The callback is server-listener.c's: timestamp at the peer
 * port's index, close.
 *
 * Each base and listener is made, run and freed in its worker's thread (an
 * evuring io_uring ring belongs to the thread that runs the base). No
 * evthread locking: the workers share nothing but an atomic connection
 * count, and they are stopped through one eventfd that every base watches
 * (written once, it stays readable, so every loop wakes and breaks).
 *
 * --opt pin=C: worker i runs on CPU (C + i) mod nproc (sched_setaffinity of
 * its thread); without it the threads are not pinned. Options combine:
 * --opt pin=1,shared.
 *
 * The measured window is process-wide: it opens when the warm-up-th
 * connection (over all workers) has been handled and closes with the last
 * one; CPU is getrusage(RUSAGE_SELF), i.e. all threads. The JSON line adds
 * "workers" and "worker_accepted" (connections per worker, warm-up
 * included: the reuseport skew).
 *
 * SPDX-License-Identifier: BSD-3-Clause
 */
#define _GNU_SOURCE
#include "storm.h"

#include <arpa/inet.h>
#include <dlfcn.h>
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <event2/event.h>
#include <event2/listener.h>

/* evuring's extension API, looked up at run time (not linked). */
struct evu_stats {
	uint64_t accepted, errors, closed, rearms, batches, direct, reserved[2];
};
typedef int (*backend_fn)(struct evconnlistener *);
typedef int (*stats_fn)(struct evconnlistener *, struct evu_stats *);
typedef const char *(*name_fn)(int);

struct worker {
	int id;
	pthread_t thread;
	struct event_base *base;
	struct evconnlistener *lev;
	struct event *stop;
	int failed;
	const char *backend;
	const char *method;
	unsigned long accepted; /* written by this worker's thread only */
	unsigned long errors;
	int have_stats;
	struct evu_stats st;
	char pad[64];           /* keep workers' counters on their own lines */
};

static struct storm_server S;
static struct worker workers[STORM_MAX_WORKERS];
static int stop_fd = -1;
static int pin_first = -1; /* --opt pin=C */
static int shared_fd = -1; /* --opt shared: the one listening socket */
static backend_fn get_backend;
static stats_fn get_stats;
static name_fn backend_name;

static _Alignas(64) atomic_uint_fast64_t count; /* connections over all workers */
static atomic_int finished;                      /* window closed (once) */

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cond = PTHREAD_COND_INITIALIZER;
static int listening;            /* workers past listener creation */
static struct sockaddr_in listen_addr; /* port set by worker 0 */

static void wake_all(void)
{
	uint64_t one = 1;
	if (write(stop_fd, &one, sizeof(one)) != sizeof(one))
		perror("storm: write stop eventfd");
}

/* storm_conn_done() for several threads: the thread that handles the
 * warm-up-th connection opens the window, the one that handles the last
 * closes it and stops everyone. */
static void conn_done(void)
{
	uint64_t c = atomic_fetch_add_explicit(&count, 1, memory_order_relaxed) + 1;
	if (c == S.warmup) {
		getrusage(RUSAGE_SELF, &S.ru_start);
		S.t_start = storm_now_ns();
		S.shm->srv_window_start_ns = S.t_start;
	} else if (c == S.warmup + S.measured && !atomic_exchange(&finished, 1)) {
		getrusage(RUSAGE_SELF, &S.ru_end);
		S.t_end = storm_now_ns();
		S.shm->srv_window_end_ns = S.t_end;
		S.window_conns = S.measured;
		S.shm->srv_accepted = c;
		S.done = 1;
		wake_all();
	}
}

static void on_accept(struct evconnlistener *lev, evutil_socket_t fd,
		      struct sockaddr *addr, int socklen, void *arg)
{
	(void)lev; (void)socklen;
	struct worker *w = arg;
	storm_on_conn(&S, addr);
	close(fd);
	w->accepted++;
	conn_done();
}

static void on_error(struct evconnlistener *lev, void *arg)
{
	(void)lev;
	((struct worker *)arg)->errors++;
}

static void on_stop(evutil_socket_t fd, short what, void *arg)
{
	(void)fd; (void)what;
	event_base_loopbreak(((struct worker *)arg)->base);
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;

	if (pin_first >= 0) {
		long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
		cpu_set_t set;
		CPU_ZERO(&set);
		CPU_SET((int)((pin_first + w->id) % (ncpu > 0 ? ncpu : 1)), &set);
		int err = pthread_setaffinity_np(pthread_self(), sizeof(set), &set);
		if (err)
			fprintf(stderr, "storm: worker %d: pthread_setaffinity_np: %s\n", w->id,
				strerror(err));
	}
	w->base = event_base_new();
	if (w->base)
		w->stop = event_new(w->base, stop_fd, EV_READ, on_stop, w);
	if (w->stop && event_add(w->stop, NULL) == 0 && shared_fd >= 0)
		w->lev = evconnlistener_new(w->base, on_accept, w, LEV_OPT_CLOSE_ON_EXEC, 0,
					    shared_fd);
	else if (w->stop && event_add(w->stop, NULL) == 0)
		w->lev = evconnlistener_new_bind(
			w->base, on_accept, w,
			LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE | LEV_OPT_REUSEABLE_PORT |
				LEV_OPT_CLOSE_ON_EXEC,
			S.backlog, (struct sockaddr *)&listen_addr, sizeof(listen_addr));

	pthread_mutex_lock(&lock);
	if (!w->lev) {
		fprintf(stderr, "storm: worker %d cannot listen: %s\n", w->id, strerror(errno));
		w->failed = 1;
	} else {
		evconnlistener_set_error_cb(w->lev, on_error);
		w->backend = "libevent";
		if (get_backend && backend_name)
			w->backend = backend_name(get_backend(w->lev));
		w->method = event_base_get_method(w->base);
		if (w->id == 0) {
			struct sockaddr_in sin;
			socklen_t len = sizeof(sin);
			if (getsockname(evconnlistener_get_fd(w->lev), (struct sockaddr *)&sin,
					&len) == 0)
				listen_addr.sin_port = sin.sin_port; /* the others join it */
		}
	}
	listening++;
	pthread_cond_broadcast(&cond);
	pthread_mutex_unlock(&lock);

	if (w->lev) {
		event_base_dispatch(w->base);
		if (get_stats && get_stats(w->lev, &w->st) == 0)
			w->have_stats = 1;
		evconnlistener_free(w->lev);
	}
	if (w->stop)
		event_free(w->stop);
	if (w->base)
		event_base_free(w->base);
	return NULL;
}

int main(int argc, char **argv)
{
	storm_server_init(&S, "reuseport", argc, argv);
	int n = S.workers;
	int shared = 0;
	char opts[256];
	snprintf(opts, sizeof(opts), "%s", S.opt);
	for (char *tok = strtok(opts, ","); tok; tok = strtok(NULL, ",")) {
		if (strncmp(tok, "pin=", 4) == 0) {
			pin_first = atoi(tok + 4);
		} else if (!strcmp(tok, "shared")) {
			shared = 1;
		} else {
			fprintf(stderr, "storm: unknown --opt %s (known: pin=CPU, shared)\n", tok);
			return 2;
		}
	}

	get_backend = (backend_fn)(uintptr_t)dlsym(RTLD_DEFAULT, "evuring_listener_backend");
	get_stats = (stats_fn)(uintptr_t)dlsym(RTLD_DEFAULT, "evuring_listener_get_stats");
	backend_name = (name_fn)(uintptr_t)dlsym(RTLD_DEFAULT, "evuring_backend_name");

	/* Signals go to main's signalfd only: block them before the workers
	 * start (they inherit the mask). */
	sigset_t sigs;
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGUSR1);
	sigaddset(&sigs, SIGTERM);
	sigaddset(&sigs, SIGPIPE);
	pthread_sigmask(SIG_BLOCK, &sigs, NULL);
	int sig_fd = signalfd(-1, &sigs, SFD_CLOEXEC);
	stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (sig_fd < 0 || stop_fd < 0) {
		perror("storm: signalfd/eventfd");
		return 1;
	}

	listen_addr.sin_family = AF_INET;
	listen_addr.sin_port = htons((uint16_t)S.port);
	listen_addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (shared) {
		int one = 1;
		socklen_t len = sizeof(listen_addr);

		shared_fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		if (shared_fd < 0 ||
		    setsockopt(shared_fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
		    bind(shared_fd, (struct sockaddr *)&listen_addr, sizeof(listen_addr)) < 0 ||
		    listen(shared_fd, S.backlog) < 0 ||
		    getsockname(shared_fd, (struct sockaddr *)&listen_addr, &len) < 0) {
			perror("storm: shared listening socket");
			return 1;
		}
	}

	/* Worker 0 first (it picks the port), then the others, one at a time. */
	int started = 0, failed = 0;
	for (int i = 0; i < n && !failed; i++) {
		workers[i].id = i;
		if (pthread_create(&workers[i].thread, NULL, worker_main, &workers[i]) != 0) {
			fprintf(stderr, "storm: pthread_create failed\n");
			failed = 1;
			break;
		}
		started++;
		pthread_mutex_lock(&lock);
		while (listening <= i)
			pthread_cond_wait(&cond, &lock);
		failed = workers[i].failed;
		pthread_mutex_unlock(&lock);
	}

	int timed_out = 0;
	if (!failed) {
		printf("READY %d\n", ntohs(listen_addr.sin_port));
		fflush(stdout);
		struct pollfd pfd[2] = {{.fd = stop_fd, .events = POLLIN},
					{.fd = sig_fd, .events = POLLIN}};
		int rc;
		do
			rc = poll(pfd, 2, (int)(S.timeout_s * 1000));
		while (rc < 0 && errno == EINTR);
		timed_out = rc == 0;
	}
	if (!atomic_exchange(&finished, 1)) {
		/* Signal, time-out or a failed worker: close the window now. */
		S.count = atomic_load(&count);
		storm_stop(&S, timed_out);
	}
	wake_all();
	for (int i = 0; i < started; i++)
		pthread_join(workers[i].thread, NULL);
	if (failed)
		return 1;
	S.count = atomic_load(&count);

	/* One backend name if all workers agree, else "mixed". */
	const char *backend = workers[0].backend;
	for (int i = 1; i < n; i++)
		if (strcmp(workers[i].backend, backend) != 0)
			backend = "mixed";
	char extra[4096];
	size_t off = 0;
#define APPEND(...)                                                                     \
	do {                                                                            \
		int k_ = snprintf(extra + off, sizeof(extra) - off, __VA_ARGS__);       \
		if (k_ > 0 && (size_t)k_ < sizeof(extra) - off)                         \
			off += (size_t)k_;                                              \
	} while (0)
	unsigned long errors = 0;
	for (int i = 0; i < n; i++)
		errors += workers[i].errors;
	APPEND("\"accept_errors\":%lu,\"event_method\":\"%s\",\"workers\":%d,\"worker_accepted\":[",
	       errors, workers[0].method, n);
	for (int i = 0; i < n; i++)
		APPEND("%s%lu", i ? "," : "", workers[i].accepted);
	APPEND("],\"worker_backends\":[");
	for (int i = 0; i < n; i++)
		APPEND("%s\"%s\"", i ? "," : "", workers[i].backend);
	APPEND("]");
	if (workers[0].have_stats) {
		APPEND(",\"evu_batches\":[");
		for (int i = 0; i < n; i++)
			APPEND("%s%llu", i ? "," : "", (unsigned long long)workers[i].st.batches);
		APPEND("],\"evu_rearms\":[");
		for (int i = 0; i < n; i++)
			APPEND("%s%llu", i ? "," : "", (unsigned long long)workers[i].st.rearms);
		APPEND("],\"evu_direct\":[");
		for (int i = 0; i < n; i++)
			APPEND("%s%llu", i ? "," : "", (unsigned long long)workers[i].st.direct);
		APPEND("]");
	}
#undef APPEND
	storm_report(&S, backend, extra);
	if (shared_fd >= 0)
		close(shared_fd);
	close(stop_fd);
	close(sig_fd);
	return 0;
}
