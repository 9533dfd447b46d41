/*
 * bad_input: table-driven. Every case gets NULL (or -1) with errno set,
 * leaks nothing (fd count unchanged) and leaves the caller's fd open unless
 * CLOSE_ON_FREE; or, where libevent accepts the input at creation, the
 * listener is made and reports accept's error through the error callback
 * (libevent's documented behaviour, proved by the reference run).
 *
 * Cases where libevent 2.1.12 itself crashes or is sloppier (NULL base,
 * backlog 0 without errno, NULL listener pointers, fd -1 with backlog 0) are
 * asserted only in the evuring build (#ifndef EVU_TEST_REFERENCE): evuring
 * may be kinder, never harsher.
 */
#include "rel_common.h"

#include <sys/stat.h>

static int errs, err_errno, accepts;

static void acc_cb(struct evconnlistener *lev, evutil_socket_t fd,
		   struct sockaddr *sa, int socklen, void *arg)
{
	accepts++;
	close(fd);
}

static void err_cb(struct evconnlistener *lev, void *arg)
{
	int e = EVUTIL_SOCKET_ERROR();
	if (!errs++)
		err_errno = e;
	evconnlistener_disable(lev); /* libevent would call it again each iteration */
}

static struct event_base *base;
static int ncases;

/* ---- evconnlistener_new_bind cases --------------------------------------- */

static void bind_must_fail(const char *name, unsigned flags, int backlog,
			   const struct sockaddr *sa, int len, int want_errno)
{
	int before = harness_fd_count();
	struct evconnlistener *lev;
	harness_phase(name);
	errno = 0;
	lev = evconnlistener_new_bind(base, acc_cb, NULL, flags, backlog, sa, len);
	CHECKF(lev == NULL, "%s: listener made", name);
	if (want_errno)
		CHECKF(errno == want_errno, "%s: errno %d (%s), expected %d (%s)",
		       name, errno, strerror(errno), want_errno,
		       strerror(want_errno));
	else
		CHECKF(errno != 0, "%s: NULL without errno", name);
	CHECKF(harness_fd_count() == before, "%s: fd count %d -> %d", name,
	       before, harness_fd_count());
	ncases++;
}

/* ---- evconnlistener_new on the caller's fd ------------------------------ */

static void new_must_fail(const char *name, int fd, unsigned flags,
			  int backlog, int want_errno)
{
	int before = harness_fd_count();
	int was_open = fd >= 0 && harness_fd_is_open(fd);
	struct evconnlistener *lev;
	harness_phase(name);
	errno = 0;
	lev = evconnlistener_new(base, acc_cb, NULL, flags, backlog, fd);
	CHECKF(lev == NULL, "%s: listener made", name);
	CHECKF(errno == want_errno, "%s: errno %d (%s), expected %d (%s)", name,
	       errno, strerror(errno), want_errno, strerror(want_errno));
	CHECKF(harness_fd_count() == before, "%s: fd count %d -> %d", name,
	       before, harness_fd_count());
	if (was_open)
		CHECKF(harness_fd_is_open(fd), "%s: the caller's fd was closed", name);
	ncases++;
}

/*
 * libevent accepts the fd at creation (backlog 0: no listen call, fd not
 * validated); once it is readable, accept fails and the error callback gets
 * @p want_errno. Nothing is delivered. The fd stays open after free unless
 * CLOSE_ON_FREE.
 */
static void new_reports_error(const char *name, int fd, int want_errno,
			      unsigned flags)
{
	int before = harness_fd_count();
	struct evconnlistener *lev;
	harness_phase(name);
	errs = err_errno = accepts = 0;
	lev = evconnlistener_new(base, acc_cb, NULL, flags, 0, fd);
	CHECKF(lev != NULL, "%s: refused at creation: %s (libevent accepts it)",
	       name, strerror(errno));
	harness_check_backend(lev);
	evconnlistener_set_error_cb(lev, err_cb);
	for (int i = 0; i < 200 && !errs; i++)
		event_base_loop(base, EVLOOP_NONBLOCK), harness_sleep_ms(1);
	CHECKF(errs >= 1, "%s: the error callback never ran", name);
	CHECKF(err_errno == want_errno, "%s: error callback errno %d (%s), "
	       "expected %d (%s)", name, err_errno, strerror(err_errno),
	       want_errno, strerror(want_errno));
	CHECK_EQ(accepts, 0);
	evconnlistener_free(lev);
	harness_run_for(base, 5);
	if (flags & LEV_OPT_CLOSE_ON_FREE)
		CHECKF(!harness_fd_is_open(fd), "%s: CLOSE_ON_FREE left fd open", name);
	else
		CHECKF(harness_fd_is_open(fd), "%s: fd closed without CLOSE_ON_FREE",
		       name);
	CHECKF(harness_fd_count() == before - ((flags & LEV_OPT_CLOSE_ON_FREE) ? 1 : 0),
	       "%s: fd count %d -> %d", name, before, harness_fd_count());
	ncases++;
}

/* What the kernel says to SO_REUSEADDR / SO_REUSEPORT on an AF_UNIX socket. */
static int kernel_unix_sockopt(int opt)
{
	int fd = socket(AF_UNIX, SOCK_STREAM, 0), one = 1, r;
	REQUIRE_SYS(fd);
	r = setsockopt(fd, SOL_SOCKET, opt, &one, sizeof one) < 0 ? errno : 0;
	close(fd);
	return r;
}

static void unix_flag_case(const char *name, unsigned flag, int opt)
{
	struct sockaddr_un sun;
	int kerr = kernel_unix_sockopt(opt), before = harness_fd_count();
	struct evconnlistener *lev;
	memset(&sun, 0, sizeof sun);
	sun.sun_family = AF_UNIX;
	harness_temp_path(sun.sun_path, sizeof sun.sun_path, "bad");
	harness_phase(name);
	errno = 0;
	lev = evconnlistener_new_bind(base, acc_cb, NULL, flag | LEV_OPT_CLOSE_ON_FREE,
				      -1, (struct sockaddr *)&sun, sizeof sun);
	printf("%s: kernel says %s; listener %s (errno %s)\n", name,
	       kerr ? strerror(kerr) : "ok", lev ? "made" : "NULL",
	       lev ? "-" : strerror(errno));
	if (kerr) {
		CHECKF(lev == NULL && errno == kerr, "%s: expected NULL with %s",
		       name, strerror(kerr));
	} else {
		int c;
		CHECKF(lev != NULL, "%s: %s", name, strerror(errno));
		c = harness_connect((struct sockaddr *)&sun, sizeof sun, 0, NULL);
		accepts = 0;
		for (int i = 0; i < 2000 && !accepts; i++)
			event_base_loop(base, EVLOOP_NONBLOCK), harness_sleep_ms(1);
		CHECKF(accepts == 1, "%s: connection not accepted", name);
		close(c);
		evconnlistener_free(lev);
		unlink(sun.sun_path);
	}
	CHECK_EQ(harness_fd_count(), before);
	ncases++;
}

int main(void)
{
	struct sockaddr_in sin = harness_sin("127.0.0.1", 0), busy;
	struct sockaddr_in6 sin6 = harness_sin6("::1", 0);
	struct sockaddr_storage big;
	struct sockaddr bogus;
	int baseline, fd, p[2];

	harness_init("bad_input");
	baseline = harness_fd_count();
	base = harness_base();

	/* ---- new_bind: bad addresses ---- */
	bind_must_fail("new_bind: NULL sockaddr (AF_UNSPEC socket)", 0, -1, NULL,
		       0, EAFNOSUPPORT);
	bind_must_fail("new_bind: truncated sockaddr_in (socklen 4)", 0, -1,
		       (struct sockaddr *)&sin, 4, EINVAL);
	memset(&bogus, 0, sizeof bogus);
	bogus.sa_family = 255;
	bind_must_fail("new_bind: unknown family 255", 0, -1, &bogus, sizeof bogus,
		       EAFNOSUPPORT);
	if (harness_have_ipv6())
		bind_must_fail("new_bind: AF_INET6 family with a sockaddr_in length",
			       0, -1, (struct sockaddr *)&sin6,
			       sizeof(struct sockaddr_in), EINVAL);
	bind_must_fail("new_bind: socklen 0", 0, -1, (struct sockaddr *)&sin, 0,
		       EINVAL);
	memset(&big, 0, sizeof big);
	memcpy(&big, &sin, sizeof sin);
	bind_must_fail("new_bind: socklen 1 MiB", 0, -1, (struct sockaddr *)&big,
		       1 << 20, EINVAL);
	bind_must_fail("new_bind: socklen -1", 0, -1, (struct sockaddr *)&big, -1,
		       EINVAL);
	{
		/* a port already in use by a listening socket */
		struct evconnlistener *holder = harness_listen_ipv4(
			base, acc_cb, NULL, LEV_OPT_CLOSE_ON_FREE, -1, &busy);
		bind_must_fail("new_bind: port already in use", 0, -1,
			       (struct sockaddr *)&busy, sizeof busy, EADDRINUSE);
		bind_must_fail("new_bind: port already in use (REUSEABLE)",
			       LEV_OPT_REUSEABLE, -1, (struct sockaddr *)&busy,
			       sizeof busy, EADDRINUSE);
		evconnlistener_free(holder);
	}
#ifndef EVU_TEST_REFERENCE
	/* libevent 2.1.12 returns NULL for backlog 0 but leaves errno as it
	 * was; evuring sets EINVAL. */
	bind_must_fail("new_bind: backlog 0", 0, 0, (struct sockaddr *)&sin,
		       sizeof sin, EINVAL);
	/* libevent 2.1.12 makes, binds and listens a socket for a NULL base
	 * and hands it to an event with no base (event_add fails, the
	 * listener is returned anyway); evuring refuses. */
	{
		struct event_base *b = base;
		base = NULL;
		bind_must_fail("new_bind: NULL base", 0, -1, (struct sockaddr *)&sin,
			       sizeof sin, EINVAL);
		base = b;
	}
#endif

	/* ---- new: bad fds ---- */
	new_must_fail("new: fd -1, backlog -1", -1, 0, -1, EBADF);
	fd = socket(AF_INET, SOCK_STREAM, 0);
	REQUIRE_SYS(fd);
	close(fd);
	new_must_fail("new: closed fd, backlog 16", fd, 0, 16, EBADF);
	new_must_fail("new: closed fd, CLOSE_ON_FREE", fd, LEV_OPT_CLOSE_ON_FREE, 16,
		      EBADF);
	REQUIRE_SYS(pipe(p));
	new_must_fail("new: a pipe, backlog 16", p[0], LEV_OPT_CLOSE_ON_FREE, 16,
		      ENOTSOCK);
	fd = open("/proc/self/exe", O_RDONLY | O_CLOEXEC);
	REQUIRE_SYS(fd);
	new_must_fail("new: a regular file, backlog 16", fd, LEV_OPT_CLOSE_ON_FREE,
		      16, ENOTSOCK);
	close(fd);
	fd = socket(AF_INET, SOCK_DGRAM, 0);
	REQUIRE_SYS(fd);
	new_must_fail("new: a UDP socket, backlog 16", fd, LEV_OPT_CLOSE_ON_FREE,
		      16, EOPNOTSUPP);
	close(fd);
	{
		/* listen() on a connected TCP socket fails with EINVAL */
		struct evconnlistener *l = harness_listen_ipv4(
			base, acc_cb, NULL, LEV_OPT_CLOSE_ON_FREE, -1, &busy);
		int c = harness_connect((struct sockaddr *)&busy, sizeof busy, 0, NULL);
		new_must_fail("new: a connected TCP socket, backlog 16", c,
			      LEV_OPT_CLOSE_ON_FREE, 16, EINVAL);
		close(c);
		evconnlistener_free(l);
		harness_run_for(base, 5);
	}
#ifndef EVU_TEST_REFERENCE
	/* libevent 2.1.12 makes a listener on fd -1 with backlog 0 (its
	 * event_add then fails); evuring refuses with EBADF. */
	new_must_fail("new: fd -1, backlog 0", -1, 0, 0, EBADF);
	{
		struct event_base *b = base;
		fd = socket(AF_INET, SOCK_STREAM, 0);
		base = NULL; /* libevent 2.1.12: listener with no base */
		new_must_fail("new: NULL base", fd, LEV_OPT_CLOSE_ON_FREE, 16, EINVAL);
		base = b;
		close(fd);
	}
#endif

	/* ---- accepted at creation (backlog 0), error via the callback ---- */
	/* a pipe with data: readable, accept() says ENOTSOCK */
	CHECK_EQ(write(p[1], "x", 1), 1);
	new_reports_error("new: a readable pipe, backlog 0", p[0], ENOTSOCK, 0);
	close(p[0]);
	close(p[1]);
	{
		/* a UDP socket with a datagram: accept() says EOPNOTSUPP */
		struct sockaddr_storage ss;
		socklen_t l;
		int u = socket(AF_INET, SOCK_DGRAM, 0), s2;
		REQUIRE_SYS(u);
		REQUIRE_SYS(bind(u, (struct sockaddr *)&sin, sizeof sin));
		l = harness_sockname(u, &ss);
		s2 = socket(AF_INET, SOCK_DGRAM, 0);
		CHECK_EQ(sendto(s2, "x", 1, 0, (struct sockaddr *)&ss, l), 1);
		close(s2);
		new_reports_error("new: a UDP socket with a datagram, backlog 0", u,
				  EOPNOTSUPP, LEV_OPT_CLOSE_ON_FREE);
	}
	/* an unbound TCP socket (not listening; epoll reports it readable
	 * (HUP)): accept() says EINVAL */
	fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
	REQUIRE_SYS(fd);
	new_reports_error("new: an unbound TCP socket, backlog 0", fd, EINVAL, 0);
	close(fd);
	fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
	REQUIRE_SYS(fd);
	REQUIRE_SYS(bind(fd, (struct sockaddr *)&sin, sizeof sin));
	new_reports_error("new: a bound, non-listening TCP socket, backlog 0", fd,
			  EINVAL, LEV_OPT_CLOSE_ON_FREE);

	/* ---- AF_UNIX with REUSEABLE / REUSEABLE_PORT: as the kernel says ---- */
	unix_flag_case("new_bind: AF_UNIX with REUSEABLE", LEV_OPT_REUSEABLE,
		       SO_REUSEADDR);
	unix_flag_case("new_bind: AF_UNIX with REUSEABLE_PORT",
		       LEV_OPT_REUSEABLE_PORT, SO_REUSEPORT);

	/* ---- unknown flag bits are ignored, as libevent ---- */
	{
		int before = harness_fd_count(), c;
		struct evconnlistener *l;
		harness_phase("new_bind: unknown flag bits ignored");
		l = harness_listen_ipv4(base, acc_cb, NULL,
					LEV_OPT_CLOSE_ON_FREE | (1u << 20) | (1u << 30) |
						(1u << 31), -1, &busy);
		c = harness_connect((struct sockaddr *)&busy, sizeof busy, 0, NULL);
		accepts = 0;
		for (int i = 0; i < 2000 && !accepts; i++)
			event_base_loop(base, EVLOOP_NONBLOCK), harness_sleep_ms(1);
		CHECKF(accepts == 1, "listener with unknown flags does not accept");
		close(c);
		evconnlistener_free(l);
		CHECK_EQ(harness_fd_count(), before);
		ncases++;
	}

#ifndef EVU_TEST_REFERENCE
	/* ---- NULL listener: libevent crashes; evuring fails cleanly ---- */
	harness_phase("NULL listener pointers (evuring only: libevent crashes)");
	errno = 0;
	CHECK(evconnlistener_enable(NULL) == -1 && errno == EINVAL);
	errno = 0;
	CHECK(evconnlistener_disable(NULL) == -1 && errno == EINVAL);
	errno = 0;
	CHECK(evconnlistener_get_fd(NULL) == -1 && errno == EINVAL);
	errno = 0;
	CHECK(evconnlistener_get_base(NULL) == NULL && errno == EINVAL);
	evconnlistener_set_cb(NULL, acc_cb, NULL);
	evconnlistener_set_error_cb(NULL, err_cb);
	evconnlistener_free(NULL);
	errno = 0;
	CHECK(evuring_listener_backend(NULL) == -1 && errno == EINVAL);
	ncases++;
#endif

	harness_phase("fd count back at baseline");
	event_base_free(base);
	CHECK_EQ(harness_fd_count(), baseline);
	printf("%d cases; PASS\n", ncases);
	return 0;
}
