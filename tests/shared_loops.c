/*
 * Several event loops on one listening socket. See shared_loops.h.
 *
 * SPDX-License-Identifier: BSD-3-Clause
 */
#include "shared_loops.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* What the run's loops are, in this process (the mapping is shared with
 * children; these are not). */
struct shared_loop {
	struct shared_run *run;
	int idx;
	pthread_t tid;
	pid_t pid;
};

static struct {
	int fd;                     /* the listening socket */
	int stop[2];                /* closing stop[1] ends every loop */
	int fds_before;             /* threads: fd count before the run */
	struct shared_loop loops[SHARED_MAX_LOOPS];
	struct event_base *base;    /* fork-listener: made before fork */
	struct evconnlistener *lev;
	struct shared_loop *lev_loop; /* its callback's argument */
} S;

long long shared_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

const char *shared_pattern_name(enum shared_pattern p)
{
	switch (p) {
	case SHARED_THREADS: return "threads";
	case SHARED_FORK_SOCKET: return "fork-socket";
	case SHARED_FORK_LISTENER: return "fork-listener";
	}
	return "?";
}

int shared_pattern_parse(const char *s)
{
	for (int p = SHARED_THREADS; p <= SHARED_FORK_LISTENER; p++)
		if (!strcmp(s, shared_pattern_name((enum shared_pattern)p)))
			return p;
	return -1;
}

int shared_has_candidate(void)
{
	const char *pre = getenv("LD_PRELOAD");

	return !harness_is_reference() || (pre && strstr(pre, "libevuring"));
}

double shared_reference_once(const char *exe, enum shared_pattern pattern, const char *key)
{
	char out[512] = "", want[64];
	int pfd[2], status;
	double v = -1;
	ssize_t got, len = 0;
	pid_t pid;
	const char *s;

	if (!exe)
		exe = "/proc/self/exe";
	REQUIRE_SYS(pipe(pfd));
	fflush(NULL);
	pid = fork();
	REQUIRE_SYS(pid);
	if (pid == 0) {
		dup2(pfd[1], 1);
		close(pfd[0]);
		unsetenv("LD_PRELOAD");
		execl(exe, exe, "--once", shared_pattern_name(pattern), (char *)NULL);
		_exit(127);
	}
	close(pfd[1]);
	while (len < (ssize_t)sizeof out - 1 &&
	       (got = read(pfd[0], out + len, sizeof out - 1 - (size_t)len)) > 0)
		len += got;
	out[len] = 0;
	close(pfd[0]);
	CHECK(waitpid(pid, &status, 0) == pid);
	CHECKF(WIFEXITED(status) && WEXITSTATUS(status) == 0,
	       "reference run %s failed (status %#x): %s", exe, status, out);
	snprintf(want, sizeof want, "%s=", key);
	s = strstr(out, want);
	CHECKF(s && sscanf(s + strlen(want), "%lf", &v) == 1, "no %s from %s: %s", key, exe, out);
	return v;
}

void shared_each_pattern(int argc, char **argv, void (*fn)(enum shared_pattern))
{
	if (argc > 1) {
		int p = shared_pattern_parse(argv[1]);

		CHECKF(p >= 0, "unknown pattern %s", argv[1]);
		fn((enum shared_pattern)p);
		return;
	}
	for (int p = SHARED_THREADS; p <= SHARED_FORK_LISTENER; p++)
		fn((enum shared_pattern)p);
}

static void shared_cb(struct evconnlistener *lev, evutil_socket_t fd, struct sockaddr *sa,
		      int socklen, void *arg)
{
	struct shared_loop *l = arg;
	struct shared_run *run = l->run;
	long long now = shared_now_ns();
	struct shared_conn *c;
	int block;

	(void)lev;
	if (sa->sa_family != AF_INET || socklen != (int)sizeof(struct sockaddr_in)) {
		atomic_store(&run->child_failed, 1);
		close(fd);
		return;
	}
	/* the block is known before the delivery is counted */
	block = atomic_exchange(&run->block_next, 0);
	if (block) {
		atomic_store(&run->block_start_ns, now);
		atomic_store(&run->blocked_loop, l->idx);
	}
	c = &run->conns[harness_port(sa)];
	atomic_store(&c->cb_ns, now);
	atomic_store(&c->loop, l->idx);
	atomic_fetch_add(&c->calls, 1);
	atomic_fetch_add(&run->per_loop[l->idx], 1);
	atomic_fetch_add(&run->delivered, 1);
	if (block) {
		harness_sleep_ms(run->block_ms);
		atomic_store(&run->block_end_ns, shared_now_ns());
	} else if (run->cb_sleep_us) {
		usleep((useconds_t)run->cb_sleep_us);
	}
	close(fd);
}

static void shared_stop_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	event_base_loopbreak(arg);
}

static void shared_ready_cb(evutil_socket_t fd, short what, void *arg)
{
	struct shared_loop *l = arg;

	(void)fd;
	(void)what;
	atomic_fetch_add(&l->run->ready, 1);
}

/* Run @p base until the stop pipe closes. */
static void shared_dispatch(struct shared_loop *l, struct event_base *base)
{
	struct event *stop = event_new(base, S.stop[0], EV_READ, shared_stop_cb, base);
	struct timeval tv = { 0, 10 * 1000 };

	CHECK(stop != NULL);
	CHECK(event_add(stop, NULL) == 0);
	/* counted ready from inside the loop, once it has run */
	CHECK(event_base_once(base, -1, EV_TIMEOUT, shared_ready_cb, l, &tv) == 0);
	CHECK(event_base_dispatch(base) == 0);
	event_free(stop);
}

/* A loop with its own base and listener (threads, fork-socket). */
static void shared_loop_run(struct shared_loop *l)
{
	struct event_base *base = harness_base();
	struct evconnlistener *lev = harness_new(base, shared_cb, l, 0, 0, S.fd);

	shared_dispatch(l, base);
	evconnlistener_free(lev);
	event_base_free(base);
}

static void *shared_thread(void *arg)
{
	shared_loop_run(arg);
	return NULL;
}

/* A forked loop: fork-socket makes its listener, fork-listener re-inits
 * the base it inherited. Exits, never returns. */
static void shared_child(struct shared_loop *l)
{
	if (S.base) {
		S.lev_loop->idx = l->idx; /* this child's copy */
		CHECK(event_reinit(S.base) == 0);
		shared_dispatch(l, S.base);
		evconnlistener_free(S.lev);
		event_base_free(S.base);
	} else {
		shared_loop_run(l);
	}
	_exit(atomic_load(&l->run->child_failed) ? 1 : 0);
}

static int shared_listen_socket(struct sockaddr_in *out)
{
	struct sockaddr_in sin = harness_sin("127.0.0.1", 0);
	struct sockaddr_storage ss;
	int one = 1;
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

	REQUIRE_SYS(fd);
	REQUIRE_SYS(setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one));
	REQUIRE_SYS(bind(fd, (struct sockaddr *)&sin, sizeof sin));
	REQUIRE_SYS(listen(fd, 1024));
	harness_sockname(fd, &ss);
	memcpy(out, &ss, sizeof *out);
	return fd;
}

struct shared_run *shared_start(enum shared_pattern pattern, int nloops, int cb_sleep_us,
				int block_ms)
{
	struct shared_run *run;

	CHECK(nloops > 0 && nloops <= SHARED_MAX_LOOPS);
	memset(&S, 0, sizeof S);
	S.fds_before = harness_fd_count();
	run = mmap(NULL, sizeof *run, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	CHECK(run != MAP_FAILED);
	run->pattern = pattern;
	run->nloops = nloops;
	run->cb_sleep_us = cb_sleep_us;
	run->block_ms = block_ms;
	atomic_store(&run->blocked_loop, -1);
	S.fd = shared_listen_socket(&run->addr);
	REQUIRE_SYS(pipe2(S.stop, O_CLOEXEC));
	if (pattern == SHARED_FORK_LISTENER) {
		S.lev_loop = calloc(1, sizeof *S.lev_loop);
		CHECK(S.lev_loop != NULL);
		S.lev_loop->run = run;
		S.base = harness_base();
		S.lev = harness_new(S.base, shared_cb, S.lev_loop, 0, 0, S.fd);
	}
	fflush(NULL); /* nothing buffered is written twice by the children */
	for (int i = 0; i < nloops; i++) {
		struct shared_loop *l = &S.loops[i];

		l->run = run;
		l->idx = i;
		if (pattern == SHARED_THREADS) {
			CHECK(pthread_create(&l->tid, NULL, shared_thread, l) == 0);
			continue;
		}
		l->pid = fork();
		REQUIRE_SYS(l->pid);
		if (l->pid == 0) {
			close(S.stop[1]);
			shared_child(l);
		}
	}
	for (int i = 0; atomic_load(&run->ready) < nloops; i++) {
		CHECKF(i < 5000, "%d of %d loops running after 5 s", atomic_load(&run->ready),
		       nloops);
		harness_sleep_ms(1);
	}
	return run;
}

void shared_stop(struct shared_run *run)
{
	close(S.stop[1]);
	for (int i = 0; i < run->nloops; i++) {
		struct shared_loop *l = &S.loops[i];
		int status;

		if (run->pattern == SHARED_THREADS) {
			CHECK(pthread_join(l->tid, NULL) == 0);
			continue;
		}
		CHECK(waitpid(l->pid, &status, 0) == l->pid);
		CHECKF(WIFEXITED(status) && WEXITSTATUS(status) == 0,
		       "loop %d (pid %d) ended with status %#x", i, (int)l->pid, status);
	}
	CHECKF(!atomic_load(&run->child_failed), "a callback got a bad peer address");
	if (S.lev) {
		evconnlistener_free(S.lev);
		event_base_free(S.base);
		free(S.lev_loop);
	}
	close(S.fd);
	close(S.stop[0]);
	if (run->pattern == SHARED_THREADS)
		CHECK_EQ(harness_fd_count(), S.fds_before);
	munmap(run, sizeof *run);
}

int shared_connect(struct shared_run *run)
{
	long long start = shared_now_ns();
	struct sockaddr_storage ss;
	struct shared_conn *c;
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	if (fd < 0)
		return -1;
	if (connect(fd, (struct sockaddr *)&run->addr, sizeof run->addr) < 0) {
		close(fd);
		return -1;
	}
	harness_sockname(fd, &ss);
	c = &run->conns[harness_port((struct sockaddr *)&ss)];
	atomic_store(&c->start_ns, start);
	atomic_fetch_add(&c->connects, 1);
	return fd;
}

int shared_wait_delivered(struct shared_run *run, int n, int ms)
{
	long long end = harness_now_ms() + ms;

	while (atomic_load(&run->delivered) < n) {
		if (harness_now_ms() > end)
			return 0;
		harness_sleep_ms(1);
	}
	return 1;
}

void shared_check_once(struct shared_run *run)
{
	for (int port = 0; port < 65536; port++) {
		struct shared_conn *c = &run->conns[port];

		CHECKF(atomic_load(&c->calls) == atomic_load(&c->connects),
		       "client port %d: %d connects, %d callbacks (a connection lost or "
		       "delivered twice)", port, atomic_load(&c->connects),
		       atomic_load(&c->calls));
	}
}
