/*
 * dispatch_returns (regress randport / randport_ts): two listeners on
 * 127.0.0.1 port 0 get distinct ports; get_fd / get_base are right; three
 * connections each; each callback disables its own listener once its count
 * is reached; event_base_dispatch then returns by itself (an enabled
 * listener is one pending event, a disabled one none). Run without and with
 * LEV_OPT_THREADSAFE.
 * Also: one event_base_loop(EVLOOP_ONCE) iteration delivers a connection
 * that was already queued (libevent's regress disable_in_thread relies on
 * it: it joins a thread that only the callback of that one iteration starts).
 * And one EVLOOP_NONBLOCK pass does too, connection after connection:
 * programs that poll the loop from their own (a game loop, another event
 * loop) see a connection as soon as connect() has returned, not when a
 * deferred wakeup arrives (evuring's earlier eventfd wakeup came 1-25 ms
 * late on some kernels: this pass found nothing).
 */
#include "harness.h"

#include <unistd.h>

#define EACH 3

static void count_cb(struct evconnlistener *lev, evutil_socket_t fd,
		     struct sockaddr *sa, int socklen, void *arg)
{
	int *left = arg;
	close(fd);
	CHECKF(*left > 0, "callback after its listener was disabled");
	if (--*left == 0)
		CHECK_EQ(evconnlistener_disable(lev), 0);
}

static void randport(unsigned flags)
{
	struct event_base *base = harness_base();
	struct evconnlistener *l1, *l2;
	struct sockaddr_in s1, s2;
	int left1 = EACH, left2 = EACH, fds[2 * EACH];

	flags |= LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE | LEV_OPT_CLOSE_ON_EXEC;
	l1 = harness_listen_ipv4(base, count_cb, &left1, flags, -1, &s1);
	l2 = harness_listen_ipv4(base, count_cb, &left2, flags, -1, &s2);
	CHECK(evconnlistener_get_fd(l1) >= 0 && evconnlistener_get_fd(l2) >= 0);
	CHECK(evconnlistener_get_fd(l1) != evconnlistener_get_fd(l2));
	CHECK(evconnlistener_get_base(l1) == base);
	CHECK(evconnlistener_get_base(l2) == base);
	CHECK_EQ(s1.sin_family, AF_INET);
	CHECK_EQ(ntohl(s1.sin_addr.s_addr), 0x7f000001);
	CHECK(s1.sin_port != s2.sin_port);

	for (int i = 0; i < EACH; i++) {
		fds[2 * i] = harness_connect((struct sockaddr *)&s1, sizeof s1, 1,
					     NULL);
		fds[2 * i + 1] = harness_connect((struct sockaddr *)&s2,
						 sizeof s2, 1, NULL);
	}
	CHECK(event_base_dispatch(base) >= 0);
	CHECK_EQ(left1, 0);
	CHECK_EQ(left2, 0);
	/* Nothing pending any more: another dispatch returns at once. */
	CHECK_EQ(event_base_dispatch(base), 1);

	for (int i = 0; i < 2 * EACH; i++)
		close(fds[i]);
	evconnlistener_free(l1);
	evconnlistener_free(l2);
	event_base_free(base);
}

static void once_cb(struct evconnlistener *lev, evutil_socket_t fd,
		    struct sockaddr *sa, int socklen, void *arg)
{
	(*(int *)arg)++;
	close(fd);
}

static void loop_once(void)
{
	struct event_base *base = harness_base();
	struct evconnlistener *lev;
	struct sockaddr_in sin;
	int n = 0, c;

	lev = harness_listen_ipv4(base, once_cb, &n, LEV_OPT_CLOSE_ON_FREE, -1,
				  &sin);
	c = harness_connect((struct sockaddr *)&sin, sizeof sin, 0, NULL);
	CHECK(event_base_loop(base, EVLOOP_ONCE) >= 0);
	CHECKF(n == 1, "one EVLOOP_ONCE iteration with a queued connection "
	       "delivered %d", n);
	close(c);
	evconnlistener_free(lev);
	event_base_free(base);
}

static void loop_nonblock(void)
{
	struct event_base *base = harness_base();
	struct evconnlistener *lev;
	struct sockaddr_in sin;
	int n = 0;

	lev = harness_listen_ipv4(base, once_cb, &n, LEV_OPT_CLOSE_ON_FREE, -1,
				  &sin);
	for (int i = 1; i <= 20; i++) {
		int c = harness_connect((struct sockaddr *)&sin, sizeof sin, 0, NULL);

		CHECK(event_base_loop(base, EVLOOP_NONBLOCK) >= 0);
		CHECKF(n == i, "connection %d: one EVLOOP_NONBLOCK pass after "
		       "connect() returned delivered %d of %d", i, n, i);
		close(c);
	}
	evconnlistener_free(lev);
	event_base_free(base);
}

int main(void)
{
	harness_init("dispatch_returns");
	harness_phase("EVLOOP_ONCE delivers a queued connection");
	loop_once();
	harness_phase("EVLOOP_NONBLOCK delivers each queued connection");
	loop_nonblock();
	harness_phase("randport");
	randport(0);
	harness_phase("randport, LEV_OPT_THREADSAFE");
	harness_use_threads();
	randport(LEV_OPT_THREADSAFE);
	printf("PASS\n");
	return 0;
}
