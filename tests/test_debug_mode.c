/*
 * debug_mode: libevent's event_enable_debug_mode() checks every event a
 * program (or a library inside it) makes: assigning an event that is still
 * added, using one that was never set up or already torn down, and putting a
 * blocking fd in an event all abort the program. A listener's whole life
 * must pass those checks: create, accept, disable/enable, set_cb to NULL and
 * back, free inside the callback, a THREADSAFE listener, and the base freed
 * after its listeners. (The io_uring backend adds its own events to the
 * base: the ring's wakeup fd, which must be nonblocking in every ring mode.)
 */
#include "harness.h"

#include <unistd.h>

struct counter {
	int calls, stop_at;
	int free_self;
};

static void count_cb(struct evconnlistener *lev, evutil_socket_t fd,
		     struct sockaddr *sa, int socklen, void *arg)
{
	struct counter *c = arg;

	close(fd);
	if (++c->calls < c->stop_at)
		return;
	if (c->free_self)
		evconnlistener_free(lev);
	else
		CHECK_EQ(evconnlistener_disable(lev), 0);
}

static int reached(void *arg)
{
	struct counter *c = arg;
	return c->calls >= c->stop_at;
}

/* Connect @p n clients and run the loop until @p c has seen them. */
static void deliver(struct event_base *base, const struct sockaddr_in *to,
		    struct counter *c, int n)
{
	int fds[8];

	c->stop_at = c->calls + n;
	for (int i = 0; i < n; i++)
		fds[i] = harness_connect((const struct sockaddr *)to, sizeof *to,
					 0, NULL);
	CHECKF(harness_run_until(base, reached, c, 3000),
	       "%d of %d connections delivered", c->calls, c->stop_at);
	for (int i = 0; i < n; i++)
		close(fds[i]);
}

static void lifecycle(unsigned flags)
{
	struct event_base *base = harness_base();
	struct counter c = { 0 }, d = { 0 };
	struct evconnlistener *lev, *self_freeing;
	struct sockaddr_in to, to2;

	flags |= LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE;
	lev = harness_listen_ipv4(base, count_cb, &c, flags, -1, &to);
	deliver(base, &to, &c, 2);

	harness_phase("disable, enable, deliver again");
	CHECK_EQ(evconnlistener_enable(lev), 0);
	CHECK_EQ(evconnlistener_disable(lev), 0);
	CHECK_EQ(evconnlistener_enable(lev), 0);
	deliver(base, &to, &c, 1);

	harness_phase("set_cb NULL, then back");
	CHECK_EQ(evconnlistener_enable(lev), 0);
	evconnlistener_set_cb(lev, NULL, NULL);
	harness_run_for(base, 5);
	evconnlistener_set_cb(lev, count_cb, &c);
	deliver(base, &to, &c, 1);

	harness_phase("a listener created disabled, freed in its callback");
	d.free_self = 1;
	self_freeing = harness_listen_ipv4(base, count_cb, &d,
					   flags | LEV_OPT_DISABLED, -1, &to2);
	CHECK_EQ(evconnlistener_enable(self_freeing), 0);
	deliver(base, &to2, &d, 1);

	harness_phase("the base freed after its last listener");
	evconnlistener_free(lev);
	event_base_free(base);
}

int main(void)
{
	harness_init("debug_mode");
	/* Threads first, then debug mode, then any event or base: the order
	 * libevent requires. */
	harness_use_threads();
	event_enable_debug_mode();
	harness_phase("listener lifecycle under libevent's debug mode");
	lifecycle(0);
	harness_phase("the same, LEV_OPT_THREADSAFE");
	lifecycle(LEV_OPT_THREADSAFE);
	printf("PASS\n");
	return 0;
}
