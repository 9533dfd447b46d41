/*
 * set_cb: callbacks installed and replaced after creation.
 * - NULL callback (as evhttp makes them: caller's listening socket, backlog
 *   0, REUSEABLE|CLOSE_ON_EXEC|CLOSE_ON_FREE): nothing pending (dispatch
 *   returns 1 at once), no delivery; set_cb installs one and the waiting
 *   connection is delivered with the new arg.
 * - set_cb replaces callback and arg: the next connection goes to the new one.
 * - set_cb(NULL) on an enabled listener: a connection that arrives is
 *   accepted and closed (the client sees EOF/RST), no callback.
 * - set_error_cb replaces the error callback; NULL removes it.
 */
#include "harness.h"

#include <unistd.h>

struct rec {
	int n;
	uint16_t port;
};

static void cb_a(struct evconnlistener *lev, evutil_socket_t fd,
		 struct sockaddr *sa, int socklen, void *arg)
{
	struct rec *r = arg;
	r->n++;
	r->port = harness_port(sa);
	close(fd);
}

/* Same body, different function: proves which one ran. */
static void cb_b(struct evconnlistener *lev, evutil_socket_t fd,
		 struct sockaddr *sa, int socklen, void *arg)
{
	struct rec *r = arg;
	r->n += 100;
	r->port = harness_port(sa);
	close(fd);
}

static int changed(void *arg) { return ((struct rec *)arg)->n != 0; }

static int errs_a, errs_b;
static void err_a(struct evconnlistener *lev, void *arg)
{
	errs_a++;
	evconnlistener_disable(lev);
}
static void err_b(struct evconnlistener *lev, void *arg)
{
	errs_b++;
	CHECK(arg == (void *)&errs_b);
	evconnlistener_disable(lev);
}

static int peer_closed(void *arg) { return harness_wait_peer_closed(*(int *)arg, 0); }

int main(void)
{
	struct event_base *base;
	struct evconnlistener *lev;
	struct sockaddr_in sin = harness_sin("127.0.0.1", 0);
	struct sockaddr_storage ss;
	struct rec ra, rb;
	uint16_t port;
	int fd, c, pair[2];

	harness_init("set_cb");
	base = harness_base();

	harness_phase("NULL callback: no delivery, nothing pending");
	fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	REQUIRE_SYS(fd);
	REQUIRE_SYS(bind(fd, (struct sockaddr *)&sin, sizeof sin));
	REQUIRE_SYS(listen(fd, 128));
	harness_sockname(fd, &ss);
	memcpy(&sin, &ss, sizeof sin);
	lev = harness_new(base, NULL, NULL,
			  LEV_OPT_REUSEABLE | LEV_OPT_CLOSE_ON_EXEC |
				  LEV_OPT_CLOSE_ON_FREE, 0, fd);
	c = harness_connect((struct sockaddr *)&sin, sizeof sin, 0, &port);
	CHECK_EQ(event_base_dispatch(base), 1);
	harness_run_for(base, 100);
	CHECKF(!harness_wait_peer_closed(c, 0),
	       "waiting connection was closed before a callback was set");

	harness_phase("set_cb delivers the waiting connection");
	memset(&ra, 0, sizeof ra);
	memset(&rb, 0, sizeof rb);
	evconnlistener_set_cb(lev, cb_a, &ra);
	CHECK(harness_run_until(base, changed, &ra, 2000));
	CHECK_EQ(ra.n, 1);
	CHECK_EQ(ra.port, port);
	close(c);

	harness_phase("set_cb replaces callback and arg");
	evconnlistener_set_cb(lev, cb_b, &rb);
	c = harness_connect((struct sockaddr *)&sin, sizeof sin, 0, &port);
	CHECK(harness_run_until(base, changed, &rb, 2000));
	CHECK_EQ(rb.n, 100);
	CHECK_EQ(rb.port, port);
	CHECK_EQ(ra.n, 1);
	close(c);

	harness_phase("set_cb(NULL) on an enabled listener closes arrivals");
	evconnlistener_set_cb(lev, NULL, NULL);
	c = harness_connect((struct sockaddr *)&sin, sizeof sin, 0, &port);
	CHECKF(harness_run_until(base, peer_closed, &c, 2000),
	       "connection arriving with a NULL callback was not closed");
	CHECK_EQ(ra.n, 1);
	CHECK_EQ(rb.n, 100);
	close(c);
	evconnlistener_set_cb(lev, cb_a, &ra);
	c = harness_connect((struct sockaddr *)&sin, sizeof sin, 0, &port);
	ra.n = 0;
	CHECK(harness_run_until(base, changed, &ra, 2000));
	CHECK_EQ(ra.port, port);
	close(c);
	evconnlistener_free(lev);

	harness_phase("set_error_cb replaces the error callback");
	REQUIRE_SYS(socketpair(AF_UNIX, SOCK_STREAM, 0, pair));
	CHECK_EQ(send(pair[1], "hello", 5, 0), 5);
	lev = harness_new(base, cb_a, &ra, LEV_OPT_CLOSE_ON_FREE, 0, pair[0]);
	evconnlistener_set_error_cb(lev, err_a);
	evconnlistener_set_error_cb(lev, err_b);
	evconnlistener_set_cb(lev, cb_a, &errs_b); /* error cb gets this arg */
	CHECK(event_base_dispatch(base) >= 0); /* err_b disables: returns */
	CHECK_EQ(errs_a, 0);
	CHECK(errs_b >= 1);

	harness_phase("set_error_cb(NULL): errors only logged");
	errs_b = 0;
	evconnlistener_set_error_cb(lev, NULL);
	CHECK_EQ(evconnlistener_enable(lev), 0);
	CHECK(event_base_loop(base, EVLOOP_ONCE) >= 0);
	CHECK_EQ(errs_a + errs_b, 0);
	evconnlistener_free(lev);
	close(pair[1]);

	event_base_free(base);
	printf("PASS\n");
	return 0;
}
