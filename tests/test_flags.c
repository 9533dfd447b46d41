/*
 * flags: what each simple LEV_OPT_* flag does to the sockets.
 * - LEAVE_SOCKETS_BLOCKING: accepted fd lacks O_NONBLOCK (has it without)
 * - CLOSE_ON_EXEC: FD_CLOEXEC on the accepted fd and on new_bind's listening
 *   fd (neither without)
 * - CLOSE_ON_FREE: listening fd closed by free (new and new_bind); without
 *   it the fd stays open, still listening, the caller's to close
 * - REUSEABLE: SO_REUSEADDR on new_bind's socket (off without); new_bind
 *   sockets are nonblocking and have SO_KEEPALIVE
 * - DISABLED: nothing pending (dispatch returns 1 at once), no callback
 *   until enable; then the queued connection is delivered
 */
#include "harness.h"

#include <fcntl.h>
#include <unistd.h>

struct rec {
	int n;
	int fl, fdfl; /* F_GETFL / F_GETFD of the accepted fd */
	uint16_t port;
};

static void rec_cb(struct evconnlistener *lev, evutil_socket_t fd,
		   struct sockaddr *sa, int socklen, void *arg)
{
	struct rec *r = arg;
	r->n++;
	r->fl = fcntl(fd, F_GETFL);
	r->fdfl = fcntl(fd, F_GETFD);
	r->port = harness_port(sa);
	close(fd);
}

static int got_one(void *arg) { return ((struct rec *)arg)->n >= 1; }

static int sockopt(int fd, int level, int name)
{
	int v = -1;
	socklen_t l = sizeof v;
	REQUIRE_SYS(getsockopt(fd, level, name, &v, &l));
	return v;
}

/* One connection to a new 127.0.0.1 listener with @flags; fills *r. */
static void accept_one(struct event_base *base, unsigned flags, struct rec *r,
		       int *lfd_fdfl, int *lfd_fl)
{
	struct sockaddr_in sin;
	struct evconnlistener *lev;
	uint16_t port;
	int c;

	memset(r, 0, sizeof *r);
	lev = harness_listen_ipv4(base, rec_cb, r, flags | LEV_OPT_CLOSE_ON_FREE,
				  -1, &sin);
	*lfd_fdfl = fcntl(evconnlistener_get_fd(lev), F_GETFD);
	*lfd_fl = fcntl(evconnlistener_get_fd(lev), F_GETFL);
	c = harness_connect((struct sockaddr *)&sin, sizeof sin, 0, &port);
	CHECK(harness_run_until(base, got_one, r, 2000));
	CHECK_EQ(r->n, 1);
	CHECK_EQ(r->port, port);
	CHECK(r->fl != -1 && r->fdfl != -1);
	close(c);
	evconnlistener_free(lev);
}

int main(void)
{
	struct event_base *base;
	struct evconnlistener *lev;
	struct sockaddr_in sin;
	struct rec r;
	int lfdfl, lfl, fd, c;
	uint16_t port;

	harness_init("flags");
	base = harness_base();

	harness_phase("default: nonblocking, no cloexec");
	accept_one(base, 0, &r, &lfdfl, &lfl);
	CHECKF(r.fl & O_NONBLOCK, "accepted fd is blocking without the flag");
	CHECKF(!(r.fdfl & FD_CLOEXEC), "accepted fd has FD_CLOEXEC without flag");
	CHECKF(!(lfdfl & FD_CLOEXEC), "listening fd has FD_CLOEXEC without flag");
	CHECKF(lfl & O_NONBLOCK, "new_bind's listening fd is blocking");

	harness_phase("LEV_OPT_LEAVE_SOCKETS_BLOCKING");
	accept_one(base, LEV_OPT_LEAVE_SOCKETS_BLOCKING, &r, &lfdfl, &lfl);
	CHECKF(!(r.fl & O_NONBLOCK), "accepted fd is nonblocking");

	harness_phase("LEV_OPT_CLOSE_ON_EXEC");
	accept_one(base, LEV_OPT_CLOSE_ON_EXEC, &r, &lfdfl, &lfl);
	CHECKF(r.fdfl & FD_CLOEXEC, "accepted fd lacks FD_CLOEXEC");
	CHECKF(lfdfl & FD_CLOEXEC, "listening fd lacks FD_CLOEXEC");
	CHECKF(r.fl & O_NONBLOCK, "accepted fd is blocking");

	harness_phase("both");
	accept_one(base, LEV_OPT_CLOSE_ON_EXEC | LEV_OPT_LEAVE_SOCKETS_BLOCKING,
		   &r, &lfdfl, &lfl);
	CHECK(r.fdfl & FD_CLOEXEC);
	CHECK(!(r.fl & O_NONBLOCK));

	harness_phase("LEV_OPT_REUSEABLE, SO_KEEPALIVE");
	sin = harness_sin("127.0.0.1", 0);
	lev = harness_new_bind(base, rec_cb, &r, LEV_OPT_CLOSE_ON_FREE, -1,
			       (struct sockaddr *)&sin, sizeof sin);
	CHECK_EQ(sockopt(evconnlistener_get_fd(lev), SOL_SOCKET, SO_REUSEADDR), 0);
	CHECK(sockopt(evconnlistener_get_fd(lev), SOL_SOCKET, SO_KEEPALIVE) != 0);
	evconnlistener_free(lev);
	lev = harness_new_bind(base, rec_cb, &r,
			       LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE, -1,
			       (struct sockaddr *)&sin, sizeof sin);
	CHECK(sockopt(evconnlistener_get_fd(lev), SOL_SOCKET, SO_REUSEADDR) != 0);
	evconnlistener_free(lev);

	harness_phase("LEV_OPT_CLOSE_ON_FREE with new_bind");
	lev = harness_new_bind(base, rec_cb, &r, LEV_OPT_CLOSE_ON_FREE, -1,
			       (struct sockaddr *)&sin, sizeof sin);
	fd = evconnlistener_get_fd(lev);
	evconnlistener_free(lev);
	CHECKF(!harness_fd_is_open(fd), "fd %d open after free", fd);

	harness_phase("no LEV_OPT_CLOSE_ON_FREE with new_bind");
	lev = harness_new_bind(base, rec_cb, &r, 0, -1, (struct sockaddr *)&sin,
			       sizeof sin);
	fd = evconnlistener_get_fd(lev);
	evconnlistener_free(lev);
	CHECKF(harness_fd_is_open(fd), "fd %d closed by free", fd);
	CHECK_EQ(sockopt(fd, SOL_SOCKET, SO_ACCEPTCONN), 1);
	REQUIRE_SYS(close(fd));

	harness_phase("LEV_OPT_CLOSE_ON_FREE with new on the caller's socket");
	fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
	REQUIRE_SYS(fd);
	REQUIRE_SYS(bind(fd, (struct sockaddr *)&sin, sizeof sin));
	lev = harness_new(base, rec_cb, &r, LEV_OPT_CLOSE_ON_FREE, -1, fd);
	evconnlistener_free(lev);
	CHECKF(!harness_fd_is_open(fd), "fd %d open after free", fd);

	harness_phase("LEV_OPT_DISABLED");
	memset(&r, 0, sizeof r);
	lev = harness_listen_ipv4(base, rec_cb, &r,
				  LEV_OPT_CLOSE_ON_FREE | LEV_OPT_DISABLED, -1,
				  &sin);
	c = harness_connect((struct sockaddr *)&sin, sizeof sin, 0, &port);
	/* A disabled listener is no pending event: dispatch returns at once. */
	CHECK_EQ(event_base_dispatch(base), 1);
	harness_run_for(base, 200);
	CHECKF(r.n == 0, "callback ran on a LEV_OPT_DISABLED listener");
	CHECK_EQ(evconnlistener_enable(lev), 0);
	CHECK(harness_run_until(base, got_one, &r, 2000));
	CHECK_EQ(r.n, 1);
	CHECK_EQ(r.port, port);
	close(c);
	evconnlistener_free(lev);

	event_base_free(base);
	printf("PASS\n");
	return 0;
}
