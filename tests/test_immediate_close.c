/*
 * immediate_close (regress immediate_close, libevent 2.1.9+): connections
 * queued before the loop runs, the callback disables the listener after
 * each delivery. Each wakeup delivers exactly one, dispatch returns; after
 * enable + dispatch the next one is delivered: nothing is lost, nothing is
 * delivered twice, nothing is delivered while disabled.
 */
#include "harness.h"

#include <unistd.h>

#define QUEUED 5

struct ctx {
	int n;
	unsigned char expect[65536];
	int bad;
};

static void one_cb(struct evconnlistener *lev, evutil_socket_t fd,
		   struct sockaddr *sa, int socklen, void *arg)
{
	struct ctx *c = arg;
	uint16_t port = harness_port(sa);
	if (!c->expect[port])
		c->bad++;
	c->expect[port] = 0;
	c->n++;
	close(fd);
	CHECK_EQ(evconnlistener_disable(lev), 0);
}

int main(void)
{
	static struct ctx ctx;
	struct event_base *base;
	struct evconnlistener *lev;
	struct sockaddr_in sin;
	int clients[QUEUED];

	harness_init("immediate_close");
	base = harness_base();
	lev = harness_listen_ipv4(base, one_cb, &ctx,
				  LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE, -1,
				  &sin);
	for (int i = 0; i < QUEUED; i++) {
		uint16_t port;
		clients[i] = harness_connect((struct sockaddr *)&sin, sizeof sin, 0,
					     &port);
		ctx.expect[port] = 1;
	}

	harness_phase("first wakeup: one delivered, dispatch returns");
	CHECK(event_base_dispatch(base) >= 0);
	CHECK_EQ(ctx.n, 1);
	harness_run_for(base, 50);
	CHECK_EQ(ctx.n, 1);

	harness_phase("enable + dispatch: the next one each time");
	for (int i = 2; i <= QUEUED; i++) {
		CHECK_EQ(evconnlistener_enable(lev), 0);
		CHECK(event_base_dispatch(base) >= 0);
		CHECK_EQ(ctx.n, i);
	}
	CHECK_EQ(ctx.bad, 0);
	for (int p = 0; p < 65536; p++)
		CHECKF(!ctx.expect[p], "client port %d never delivered", p);

	harness_phase("disabled: a new connection waits");
	{
		int c = harness_connect((struct sockaddr *)&sin, sizeof sin, 0, NULL);
		harness_run_for(base, 100);
		CHECK_EQ(ctx.n, QUEUED);
		close(c);
	}
	for (int i = 0; i < QUEUED; i++)
		close(clients[i]);
	evconnlistener_free(lev);
	event_base_free(base);
	printf("PASS\n");
	return 0;
}
