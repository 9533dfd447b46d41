/*
 * Shared harness for evuring's behaviour tests. See harness.h.
 *
 * SPDX-License-Identifier: BSD-3-Clause
 */
#include "harness.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <dlfcn.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

static const char *test_name = "test";
static const char *volatile cur_phase = "setup";
static int watchdog_secs = 30;
#ifndef EVU_TEST_REFERENCE
static int expect_backend;              /* 0: no expectation */
static const char *expect_source = "";
static atomic_int backend_reported; /* loops in threads make listeners */
#endif
static char temp_dir[64];
static char temp_paths[128][108];
static int n_temp_paths;

/* ---- assertions --------------------------------------------------------- */

void harness_fail(const char *file, int line, const char *fmt, ...)
{
	va_list ap;
	fprintf(stderr, "%s:%d: [%s, phase '%s'] FAIL: ", file, line, test_name,
		cur_phase);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	fflush(stderr);
	exit(1);
}

void harness_skip(const char *fmt, ...)
{
	va_list ap;
	printf("SKIP [%s]: ", test_name);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	putchar('\n');
	fflush(stdout);
	exit(77);
}

/* ---- setup -------------------------------------------------------------- */

static void watchdog(int sig)
{
	char buf[256];
	const char *phase = cur_phase;
	int n = snprintf(buf, sizeof buf,
			 "\nWATCHDOG: [%s] no progress for %d s in phase '%s' "
			 "(hang or deadlock)\n", test_name, watchdog_secs, phase);
	(void)sig;
	if (n > 0 && write(2, buf, (size_t)n) < 0)
		_exit(1);
	_exit(1);
}

void harness_watchdog_reset(void)
{
	alarm((unsigned)watchdog_secs);
}

void harness_phase(const char *phase)
{
	cur_phase = phase;
	printf("-- %s\n", phase);
	fflush(stdout);
}

int harness_is_reference(void)
{
#ifdef EVU_TEST_REFERENCE
	return 1;
#else
	return 0;
#endif
}

static void cleanup_temp(void)
{
	for (int i = 0; i < n_temp_paths; i++)
		unlink(temp_paths[i]);
	if (temp_dir[0])
		rmdir(temp_dir);
}

#ifndef EVU_TEST_REFERENCE
static int backend_from_name(const char *s)
{
	if (!s)
		return 0;
	if (!strcmp(s, "uring"))
		return EVURING_BACKEND_URING;
	if (!strcmp(s, "event"))
		return EVURING_BACKEND_EVENT;
	return 0;
}
#endif

void harness_init(const char *name)
{
	const char *t = getenv("EVU_TEST_TIMEOUT");
	test_name = name;
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (t && atoi(t) > 0)
		watchdog_secs = atoi(t);
	signal(SIGPIPE, SIG_IGN);
	signal(SIGALRM, watchdog);
	harness_watchdog_reset();
	atexit(cleanup_temp);

#ifdef EVU_TEST_REFERENCE
	{
		Dl_info info;

		memset(&info, 0, sizeof info);
		if (dladdr((void *)evconnlistener_new, &info) && info.dli_fname &&
		    strstr(info.dli_fname, "libevuring"))
			printf("[%s] libevent %s's build with %s preloaded\n", name,
			       event_get_version(), info.dli_fname);
		else
			printf("[%s] reference run: libevent %s's own evconnlistener\n", name,
			       event_get_version());
	}
#else
	{
		const char *env = getenv("EVURING_BACKEND");
		const char *exp = getenv("EVU_TEST_EXPECT_BACKEND");
		Dl_info info;

		if (exp && *exp) {
			expect_backend = backend_from_name(exp);
			expect_source = "EVU_TEST_EXPECT_BACKEND";
		} else {
			expect_backend = backend_from_name(env);
			expect_source = "EVURING_BACKEND";
		}
		printf("[%s] evuring %s over libevent %s; EVURING_BACKEND=%s; "
		       "expecting backend: %s%s%s\n",
		       name, evuring_version(), event_get_version(),
		       env ? env : "(unset)",
		       expect_backend ? evuring_backend_name(expect_backend)
				      : "any",
		       expect_backend ? " from " : "", expect_source);
		/* The listener API must come from evuring, not libevent. */
		memset(&info, 0, sizeof info);
		CHECKF(dladdr((void *)evconnlistener_new, &info) &&
			       info.dli_fname &&
			       strstr(info.dli_fname, "libevuring"),
		       "evconnlistener_new resolves to %s, not libevuring",
		       info.dli_fname ? info.dli_fname : "?");
	}
#endif
	fflush(stdout);
}

void harness_check_backend(struct evconnlistener *lev)
{
#ifdef EVU_TEST_REFERENCE
	(void)lev;
#else
	int b = evuring_listener_backend(lev);
	CHECKF(b == EVURING_BACKEND_URING || b == EVURING_BACKEND_EVENT,
	       "evuring_listener_backend() returned %d", b);
	if (!atomic_exchange(&backend_reported, 1)) {
		printf("[%s] listeners run on the %s backend\n", test_name,
		       evuring_backend_name(b));
	}
	CHECKF(!expect_backend || b == expect_backend,
	       "listener runs backend '%s', expected '%s' (%s)",
	       evuring_backend_name(b), evuring_backend_name(expect_backend),
	       expect_source);
#endif
}

struct event_base *harness_base(void)
{
	struct event_base *base = event_base_new();
	CHECK(base != NULL);
	return base;
}

void harness_use_threads(void)
{
	CHECK(evthread_use_pthreads() == 0);
}

/* ---- addresses ---------------------------------------------------------- */

struct sockaddr_in harness_sin(const char *ip, uint16_t port)
{
	struct sockaddr_in sin;
	memset(&sin, 0, sizeof sin);
	sin.sin_family = AF_INET;
	sin.sin_port = htons(port);
	CHECK(inet_pton(AF_INET, ip, &sin.sin_addr) == 1);
	return sin;
}

struct sockaddr_in6 harness_sin6(const char *ip, uint16_t port)
{
	struct sockaddr_in6 sin6;
	memset(&sin6, 0, sizeof sin6);
	sin6.sin6_family = AF_INET6;
	sin6.sin6_port = htons(port);
	CHECK(inet_pton(AF_INET6, ip, &sin6.sin6_addr) == 1);
	return sin6;
}

uint16_t harness_port(const struct sockaddr *sa)
{
	if (sa->sa_family == AF_INET)
		return ntohs(((const struct sockaddr_in *)sa)->sin_port);
	if (sa->sa_family == AF_INET6)
		return ntohs(((const struct sockaddr_in6 *)sa)->sin6_port);
	return 0;
}

socklen_t harness_salen(const struct sockaddr *sa)
{
	switch (sa->sa_family) {
	case AF_INET: return sizeof(struct sockaddr_in);
	case AF_INET6: return sizeof(struct sockaddr_in6);
	case AF_UNIX: return sizeof(struct sockaddr_un);
	default: return sizeof(struct sockaddr_storage);
	}
}

socklen_t harness_sockname(int fd, struct sockaddr_storage *ss)
{
	socklen_t len = sizeof *ss;
	memset(ss, 0, sizeof *ss);
	REQUIRE_SYS(getsockname(fd, (struct sockaddr *)ss, &len));
	return len;
}

int harness_have_ipv6(void)
{
	struct sockaddr_in6 sin6 = harness_sin6("::1", 0);
	int fd = socket(AF_INET6, SOCK_STREAM, 0), ok;
	if (fd < 0)
		return 0;
	ok = bind(fd, (struct sockaddr *)&sin6, sizeof sin6) == 0;
	close(fd);
	return ok;
}

void harness_temp_path(char *buf, size_t len, const char *stem)
{
	if (!temp_dir[0]) {
		snprintf(temp_dir, sizeof temp_dir, "/tmp/evu-test-XXXXXX");
		CHECK(mkdtemp(temp_dir) != NULL);
	}
	CHECK(n_temp_paths < 128);
	snprintf(temp_paths[n_temp_paths], sizeof temp_paths[0], "%s/%s%d",
		 temp_dir, stem, n_temp_paths);
	CHECK(strlen(temp_paths[n_temp_paths]) < len);
	strcpy(buf, temp_paths[n_temp_paths]);
	n_temp_paths++;
}

/* ---- listeners ---------------------------------------------------------- */

struct evconnlistener *harness_new(struct event_base *base, evconnlistener_cb cb,
				   void *arg, unsigned flags, int backlog,
				   evutil_socket_t fd)
{
	struct evconnlistener *lev =
		evconnlistener_new(base, cb, arg, flags, backlog, fd);
	CHECKF(lev != NULL, "evconnlistener_new(flags %#x, backlog %d, fd %d) "
	       "failed: %s", flags, backlog, fd, strerror(errno));
	harness_check_backend(lev);
	return lev;
}

struct evconnlistener *harness_new_bind(struct event_base *base,
					evconnlistener_cb cb, void *arg,
					unsigned flags, int backlog,
					const struct sockaddr *sa, socklen_t len)
{
	struct evconnlistener *lev =
		evconnlistener_new_bind(base, cb, arg, flags, backlog, sa, len);
	CHECKF(lev != NULL, "evconnlistener_new_bind(family %d, flags %#x, "
	       "backlog %d) failed: %s", sa ? sa->sa_family : -1, flags,
	       backlog, strerror(errno));
	harness_check_backend(lev);
	return lev;
}

struct evconnlistener *harness_listen_ipv4(struct event_base *base,
					   evconnlistener_cb cb, void *arg,
					   unsigned flags, int backlog,
					   struct sockaddr_in *out)
{
	struct sockaddr_in sin = harness_sin("127.0.0.1", 0);
	struct sockaddr_storage ss;
	struct evconnlistener *lev = harness_new_bind(
		base, cb, arg, flags, backlog, (struct sockaddr *)&sin, sizeof sin);
	CHECK_EQ(harness_sockname(evconnlistener_get_fd(lev), &ss),
		 sizeof(struct sockaddr_in));
	if (out)
		memcpy(out, &ss, sizeof *out);
	return lev;
}

struct evconnlistener *harness_listen_ipv6(struct event_base *base,
					   evconnlistener_cb cb, void *arg,
					   unsigned flags, int backlog,
					   struct sockaddr_in6 *out)
{
	struct sockaddr_in6 sin6 = harness_sin6("::1", 0);
	struct sockaddr_storage ss;
	struct evconnlistener *lev;
	if (!harness_have_ipv6())
		SKIP("IPv6 is not usable on loopback (cannot bind ::1)");
	lev = harness_new_bind(base, cb, arg, flags, backlog,
			       (struct sockaddr *)&sin6, sizeof sin6);
	CHECK_EQ(harness_sockname(evconnlistener_get_fd(lev), &ss),
		 sizeof(struct sockaddr_in6));
	if (out)
		memcpy(out, &ss, sizeof *out);
	return lev;
}

struct evconnlistener *harness_listen_unix(struct event_base *base,
					   evconnlistener_cb cb, void *arg,
					   unsigned flags, int backlog,
					   struct sockaddr_un *out)
{
	struct sockaddr_un sun;
	int fd;
	memset(&sun, 0, sizeof sun);
	sun.sun_family = AF_UNIX;
	harness_temp_path(sun.sun_path, sizeof sun.sun_path, "listen");
	fd = socket(AF_UNIX, SOCK_STREAM, 0);
	REQUIRE_SYS(fd);
	REQUIRE_SYS(evutil_make_socket_nonblocking(fd));
	REQUIRE_SYS(bind(fd, (struct sockaddr *)&sun, sizeof sun));
	if (out)
		*out = sun;
	return harness_new(base, cb, arg, flags, backlog, fd);
}

/* ---- clients ------------------------------------------------------------ */

/* connect() bounded by 5 s: nonblocking connect + poll, so that the wait
 * does not depend on how the kernel restarts an interrupted blocking
 * connect (a socket with SO_SNDTIMEO returns EINTR instead of restarting;
 * test_loop_thread_syscalls covers that separately). Returns the fd left
 * blocking, or -1 with errno. */
static int connect_bounded(const struct sockaddr *sa, socklen_t len,
			   int nonblock)
{
	int fd = socket(sa->sa_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK,
			0), err = 0;
	socklen_t el = sizeof err;
	if (fd < 0)
		return -1;
	if (connect(fd, sa, len) == 0)
		goto done;
	if (errno != EINPROGRESS && errno != EAGAIN)
		goto fail;
	if (nonblock)
		return fd;
	{
		struct pollfd p = {fd, POLLOUT, 0};
		int r = poll(&p, 1, 5000);
		if (r <= 0) {
			errno = r == 0 ? ETIMEDOUT : errno;
			goto fail;
		}
	}
	if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &el) < 0)
		goto fail;
	if (err) {
		errno = err;
		goto fail;
	}
done:
	if (!nonblock && fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK) < 0)
		goto fail;
	return fd;
fail:
	err = errno;
	close(fd);
	errno = err;
	return -1;
}

int harness_try_connect(const struct sockaddr *sa, socklen_t len)
{
	return connect_bounded(sa, len, 0);
}

int harness_connect(const struct sockaddr *sa, socklen_t len, int nonblock,
		    uint16_t *local_port)
{
	struct sockaddr_storage ss;
	int fd = connect_bounded(sa, len, nonblock);
	CHECKF(fd >= 0, "client connect failed: %s", strerror(errno));
	harness_sockname(fd, &ss);
	if (local_port)
		*local_port = harness_port((struct sockaddr *)&ss);
	return fd;
}

int harness_wait_peer_closed(int fd, int ms)
{
	long long end = harness_now_ms() + ms;
	char buf[256];
	for (;;) {
		struct pollfd p = {fd, POLLIN, 0};
		long long left = end - harness_now_ms();
		ssize_t n;
		if (poll(&p, 1, left > 0 ? (int)left : 0) > 0) {
			n = recv(fd, buf, sizeof buf, MSG_DONTWAIT);
			if (n == 0 ||
			    (n < 0 && errno != EAGAIN && errno != EINTR))
				return 1;
			if (n > 0)
				continue;
		}
		if (harness_now_ms() >= end)
			return 0;
	}
}

/* ---- storm -------------------------------------------------------------- */

static void *storm_thread(void *arg)
{
	struct harness_storm *s = arg;
	while (atomic_fetch_add(&s->next, 1) < s->total) {
		struct sockaddr_storage ss;
		int fd = harness_try_connect((struct sockaddr *)&s->target,
					     s->target_len);
		if (fd < 0) {
			int zero = 0;
			atomic_compare_exchange_strong(&s->first_errno, &zero,
						       errno);
			atomic_fetch_add(&s->failed, 1);
			continue;
		}
		harness_sockname(fd, &ss);
		atomic_fetch_add(&s->by_port[harness_port((struct sockaddr *)&ss)],
				 1);
		atomic_fetch_add(&s->completed, 1);
		close(fd);
		if (s->pace_us > 0) {
			struct timespec ts = {0, (long)s->pace_us * 1000L};
			nanosleep(&ts, NULL);
		}
	}
	atomic_fetch_add(&s->threads_done, 1);
	return NULL;
}

void harness_storm_start(struct harness_storm *s, const struct sockaddr *sa,
			 socklen_t len, int total, int nthreads, int pace_us)
{
	memset(s, 0, sizeof *s);
	CHECK(nthreads > 0 && nthreads <= 16);
	CHECK(len <= sizeof s->target);
	memcpy(&s->target, sa, len);
	s->target_len = len;
	s->total = total;
	s->nthreads = nthreads;
	s->pace_us = pace_us;
	s->by_port = calloc(65536, sizeof *s->by_port);
	CHECK(s->by_port != NULL);
	for (int i = 0; i < nthreads; i++)
		CHECK(pthread_create(&s->tids[i], NULL, storm_thread, s) == 0);
}

int harness_storm_finished(struct harness_storm *s)
{
	return atomic_load(&s->threads_done) == s->nthreads;
}

void harness_storm_join(struct harness_storm *s)
{
	for (int i = 0; i < s->nthreads; i++)
		CHECK(pthread_join(s->tids[i], NULL) == 0);
	s->nthreads = 0;
	atomic_store(&s->threads_done, 0);
}

void harness_storm_free(struct harness_storm *s)
{
	free(s->by_port);
	s->by_port = NULL;
}

/* ---- loop helpers ------------------------------------------------------- */

long long harness_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void harness_sleep_ms(int ms)
{
	struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

struct until_ctx {
	struct event_base *base;
	int (*pred)(void *);
	void *arg;
	long long deadline;
	int done;
};

static void until_tick(evutil_socket_t fd, short what, void *arg)
{
	struct until_ctx *u = arg;
	(void)fd;
	(void)what;
	if ((u->pred && u->pred(u->arg)) || harness_now_ms() >= u->deadline) {
		u->done = 1;
		event_base_loopbreak(u->base);
	}
}

/* Dispatch with a private 1 ms ticker that breaks the loop when pred holds
 * or the deadline passes; nothing is left pending in the base afterwards. */
static void run_ticker(struct until_ctx *u)
{
	struct timeval tick = {0, 1000};
	struct event *ev = event_new(u->base, -1, EV_PERSIST, until_tick, u);
	CHECK(ev != NULL);
	CHECK(event_add(ev, &tick) == 0);
	while (!u->done) {
		CHECK(event_base_dispatch(u->base) >= 0);
		if (harness_now_ms() >= u->deadline ||
		    (u->pred && u->pred(u->arg)))
			break;
	}
	event_free(ev);
}

void harness_run_for(struct event_base *base, int ms)
{
	struct until_ctx u = {base, NULL, NULL, harness_now_ms() + ms, 0};
	run_ticker(&u);
}

int harness_run_until(struct event_base *base, int (*pred)(void *), void *arg,
		      int ms)
{
	struct until_ctx u = {base, pred, arg, harness_now_ms() + ms, 0};
	if (pred(arg))
		return 1;
	run_ticker(&u);
	return pred(arg);
}

int harness_wait_policy(int backend)
{
#ifdef EVU_TEST_REFERENCE
	return 'e'; /* libevent's loop: epoll_wait */
#else
	const char *w = getenv("EVURING_WAIT"), *f = getenv("EVURING_RING_FLAGS");
	struct utsname u;
	int major = 0, minor = 0;

	if (backend != EVURING_BACKEND_URING || (f && *f && strcmp(f, "defer")))
		return 'e';
	if (uname(&u) == 0)
		sscanf(u.release, "%d.%d", &major, &minor);
	if (major < 6 || (major == 6 && minor < 1))
		return 'e'; /* no DEFER_TASKRUN: no ring to sleep in */
	if (w && !strcmp(w, "ring"))
		return 'r';
	if (w && !strcmp(w, "epoll"))
		return 'e';
	/* under valgrind auto stays in epoll (uring/wait.c) */
	if (getenv("LD_PRELOAD") && strstr(getenv("LD_PRELOAD"), "/vgpreload_"))
		return 'e';
	return 'a';
#endif
}

void harness_ports_init(struct harness_ports *p)
{
	atomic_store(&p->conns, 0);
	atomic_store(&p->bad, 0);
	p->seen = calloc(65536, sizeof *p->seen);
	CHECK(p->seen != NULL);
}

void harness_ports_free(struct harness_ports *p)
{
	free(p->seen);
	p->seen = NULL;
}

void harness_ports_accepted(struct harness_ports *p, const struct sockaddr *sa, int socklen)
{
	/* Delivered once is judged against the client's own count per port
	 * (harness_ports_paced): a port may serve two connections of a phase,
	 * a SYN may reopen a TIME_WAIT pair on loopback. */
	if (socklen != (int)sizeof(struct sockaddr_in) || sa->sa_family != AF_INET)
		atomic_fetch_add(&p->bad, 1);
	else
		atomic_fetch_add(&p->seen[harness_port(sa)], 1);
	atomic_fetch_add(&p->conns, 1);
}

void harness_ports_cb(struct evconnlistener *lev, evutil_socket_t fd, struct sockaddr *sa,
		      int socklen, void *arg)
{
	(void)lev;
	harness_ports_accepted(arg, sa, socklen);
	close(fd);
}

struct ports_run {
	struct harness_ports *p;
	struct harness_storm *s;
	int before;
};

static int ports_delivered(void *arg)
{
	struct ports_run *r = arg;

	return harness_storm_finished(r->s) &&
	       atomic_load(&r->p->conns) - r->before >= atomic_load(&r->s->completed);
}

void harness_ports_paced(struct harness_ports *p, struct event_base *base,
			 const struct sockaddr_in *sin, int n, int pace_us)
{
	struct harness_storm s;
	struct ports_run r = { p, &s, atomic_load(&p->conns) };

	for (int i = 0; i < 65536; i++)
		atomic_store(&p->seen[i], 0);
	harness_storm_start(&s, (const struct sockaddr *)sin, sizeof *sin, n, 1, pace_us);
	CHECKF(harness_run_until(base, ports_delivered, &r, 20000),
	       "%d of %d connections delivered", atomic_load(&p->conns) - r.before,
	       atomic_load(&s.completed));
	harness_storm_join(&s);
	CHECK_EQ(atomic_load(&s.failed), 0);
	CHECK_EQ(atomic_load(&s.completed), n);
	CHECK_EQ(atomic_load(&p->conns) - r.before, n);
	CHECK_EQ(atomic_load(&p->bad), 0);
	for (int i = 0; i < 65536; i++)
		CHECKF(atomic_load(&p->seen[i]) == atomic_load(&s.by_port[i]),
		       "port %d: %d callbacks, %d connects", i, atomic_load(&p->seen[i]),
		       atomic_load(&s.by_port[i]));
	harness_storm_free(&s);
	harness_run_for(base, 20);
}

/* ---- resources ---------------------------------------------------------- */

int harness_fd_count(void)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *de;
	int n = 0;
	CHECK(d != NULL);
	while ((de = readdir(d)) != NULL)
		if (de->d_name[0] != '.')
			n++;
	closedir(d);
	return n - 1; /* the directory's own fd */
}

int harness_fd_is_open(int fd)
{
	return fcntl(fd, F_GETFD) != -1 || errno != EBADF;
}

static void harness_barrier_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	atomic_store((atomic_int *)arg, 1);
}

void harness_loop_barrier(struct event_base *base)
{
	static atomic_int passed;
	struct timeval zero = { 0, 0 };

	atomic_store(&passed, 0);
	CHECK(event_base_once(base, -1, EV_TIMEOUT, harness_barrier_cb, &passed,
			      &zero) == 0);
	for (int i = 0; i < 5000 && !atomic_load(&passed); i++)
		harness_sleep_ms(1);
	CHECKF(atomic_load(&passed), "the loop thread did not run a queued callback");
}
