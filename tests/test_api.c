/*
 * api: every function of <event2/listener.h> at its edges.
 * - get_fd / get_base return what was given; enable / disable return 0
 * - evconnlistener_new: backlog > 0 and < 0 make the socket listen; backlog 0
 *   makes no listen() call (works on a listening socket, and leaves a
 *   non-listening one refusing connections)
 * - listen() failure (non-socket): NULL, errno from listen, caller's fd open
 * - new_bind: backlog 0 -> NULL without a socket; port in use -> NULL with
 *   EADDRINUSE and no fd leaked; sa NULL -> NULL and no fd leaked
 */
#include "harness.h"

#include <fcntl.h>
#include <unistd.h>

static void count_cb(struct evconnlistener *lev, evutil_socket_t fd,
		     struct sockaddr *sa, int socklen, void *arg)
{
	(*(int *)arg)++;
	close(fd);
}

static int is_one(void *arg) { return *(int *)arg >= 1; }

/* A bound, not yet listening TCP socket on 127.0.0.1; *sin gets its address. */
static int bound_socket(struct sockaddr_in *sin)
{
	struct sockaddr_in any = harness_sin("127.0.0.1", 0);
	struct sockaddr_storage ss;
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
	REQUIRE_SYS(fd);
	REQUIRE_SYS(bind(fd, (struct sockaddr *)&any, sizeof any));
	harness_sockname(fd, &ss);
	memcpy(sin, &ss, sizeof *sin);
	return fd;
}

static int accepting(int fd)
{
	int v = -1;
	socklen_t l = sizeof v;
	REQUIRE_SYS(getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &v, &l));
	return v;
}

/* evconnlistener_new on a caller's socket with @backlog; one connection
 * must be delivered. */
static void new_accepts(struct event_base *base, int backlog, int pre_listen)
{
	struct sockaddr_in sin;
	int n = 0, fd = bound_socket(&sin), c;
	struct evconnlistener *lev;

	if (pre_listen)
		REQUIRE_SYS(listen(fd, 16));
	lev = harness_new(base, count_cb, &n, 0, backlog, fd);
	CHECK_EQ(evconnlistener_get_fd(lev), fd);
	CHECK(evconnlistener_get_base(lev) == base);
	CHECK_EQ(accepting(fd), 1);
	c = harness_connect((struct sockaddr *)&sin, sizeof sin, 0, NULL);
	CHECKF(harness_run_until(base, is_one, &n, 2000),
	       "backlog %d: connection not delivered", backlog);
	CHECK_EQ(n, 1);
	close(c);

	/* disable / enable return 0 and still work */
	CHECK_EQ(evconnlistener_disable(lev), 0);
	CHECK_EQ(evconnlistener_enable(lev), 0);
	c = harness_connect((struct sockaddr *)&sin, sizeof sin, 0, NULL);
	n = 0;
	CHECK(harness_run_until(base, is_one, &n, 2000));
	close(c);

	evconnlistener_free(lev);
	CHECKF(harness_fd_is_open(fd), "fd closed without LEV_OPT_CLOSE_ON_FREE");
	close(fd);
}

int main(void)
{
	struct event_base *base;
	struct evconnlistener *lev;
	struct sockaddr_in sin;
	int fd, before, p[2];

	harness_init("api");
	base = harness_base();

	harness_phase("new, backlog > 0");
	new_accepts(base, 5, 0);
	harness_phase("new, backlog < 0 (listen 128)");
	new_accepts(base, -1, 0);
	harness_phase("new, backlog 0 on a listening socket");
	new_accepts(base, 0, 1);

	harness_phase("new, backlog 0 makes no listen() call");
	fd = bound_socket(&sin);
	lev = harness_new(base, count_cb, NULL, 0, 0, fd);
	CHECK_EQ(evconnlistener_get_fd(lev), fd);
	CHECK_EQ(accepting(fd), 0);
	{
		int c = harness_try_connect((struct sockaddr *)&sin, sizeof sin);
		CHECKF(c < 0 && errno == ECONNREFUSED,
		       "connect to a never-listened socket: fd %d errno %d", c,
		       errno);
	}
	evconnlistener_free(lev);
	close(fd);

	harness_phase("new: listen() fails on a non-socket");
	REQUIRE_SYS(pipe(p));
	before = harness_fd_count();
	errno = 0;
	CHECK(evconnlistener_new(base, count_cb, NULL, LEV_OPT_CLOSE_ON_FREE, 5,
				 p[0]) == NULL);
	CHECK_EQ(errno, ENOTSOCK);
	CHECK(harness_fd_is_open(p[0]));
	errno = 0;
	CHECK(evconnlistener_new(base, count_cb, NULL, LEV_OPT_CLOSE_ON_FREE, -1,
				 p[0]) == NULL);
	CHECK_EQ(errno, ENOTSOCK);
	CHECK(harness_fd_is_open(p[0]));
	CHECK_EQ(harness_fd_count(), before);
	close(p[0]);
	close(p[1]);

	harness_phase("new_bind: backlog 0 returns NULL");
	sin = harness_sin("127.0.0.1", 0);
	before = harness_fd_count();
	CHECK(evconnlistener_new_bind(base, count_cb, NULL, LEV_OPT_CLOSE_ON_FREE,
				      0, (struct sockaddr *)&sin,
				      sizeof sin) == NULL);
	CHECK_EQ(harness_fd_count(), before);

	harness_phase("new_bind: sa NULL returns NULL");
	CHECK(evconnlistener_new_bind(base, count_cb, NULL, LEV_OPT_CLOSE_ON_FREE,
				      -1, NULL, 0) == NULL);
	CHECK_EQ(harness_fd_count(), before);

	harness_phase("new_bind: port in use");
	fd = bound_socket(&sin);
	REQUIRE_SYS(listen(fd, 8));
	before = harness_fd_count();
	errno = 0;
	CHECK(evconnlistener_new_bind(base, count_cb, NULL, LEV_OPT_CLOSE_ON_FREE,
				      -1, (struct sockaddr *)&sin,
				      sizeof sin) == NULL);
	CHECK_EQ(errno, EADDRINUSE);
	CHECK_EQ(harness_fd_count(), before);
	errno = 0;
	CHECK(evconnlistener_new_bind(base, count_cb, NULL,
				      LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE,
				      -1, (struct sockaddr *)&sin,
				      sizeof sin) == NULL);
	CHECK_EQ(errno, EADDRINUSE);
	CHECK_EQ(harness_fd_count(), before);
	close(fd);

	harness_phase("new_bind: get_fd is the bound socket, get_base the base");
	{
		struct sockaddr_in got;
		int n = 0, c;
		lev = harness_listen_ipv4(base, count_cb, &n, LEV_OPT_CLOSE_ON_FREE,
					  -1, &got);
		CHECK(evconnlistener_get_base(lev) == base);
		CHECK_EQ(ntohl(got.sin_addr.s_addr), 0x7f000001);
		CHECK(got.sin_port != 0);
		CHECK_EQ(accepting(evconnlistener_get_fd(lev)), 1);
		c = harness_connect((struct sockaddr *)&got, sizeof got, 0, NULL);
		CHECK(harness_run_until(base, is_one, &n, 2000));
		close(c);
		evconnlistener_free(lev);
	}

	event_base_free(base);
	printf("PASS\n");
	return 0;
}
