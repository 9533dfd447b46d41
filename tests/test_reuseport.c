/*
 * reuseport: LEV_OPT_REUSEABLE_PORT sets SO_REUSEPORT, so two listeners bind
 * the same port (without the flag the second bind fails with EADDRINUSE).
 * 64 connections queued before the loop runs: the two listeners together
 * accept exactly 64, each client port exactly once, both take a share.
 */
#include "harness.h"

#include <unistd.h>

#define N 64

struct rp_ctx {
	int total, per[2], dup;
	unsigned char expect[65536];
};

struct rp_arg {
	struct rp_ctx *c;
	int idx;
};

static void rp_cb(struct evconnlistener *lev, evutil_socket_t fd,
		  struct sockaddr *sa, int socklen, void *arg)
{
	struct rp_arg *a = arg;
	uint16_t port = harness_port(sa);
	if (!a->c->expect[port])
		a->c->dup++;
	a->c->expect[port] = 0;
	a->c->per[a->idx]++;
	a->c->total++;
	close(fd);
}

static int all_in(void *arg) { return ((struct rp_ctx *)arg)->total >= N; }

static int reuseport(struct evconnlistener *lev)
{
	int v = -1;
	socklen_t l = sizeof v;
	REQUIRE_SYS(getsockopt(evconnlistener_get_fd(lev), SOL_SOCKET,
			       SO_REUSEPORT, &v, &l));
	return v;
}

int main(void)
{
	static struct rp_ctx ctx;
	struct rp_arg a0 = {&ctx, 0}, a1 = {&ctx, 1};
	struct event_base *base;
	struct evconnlistener *l0, *l1;
	struct sockaddr_in sin;
	int clients[N], before;
	unsigned flags = LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE_PORT;

	harness_init("reuseport");
	base = harness_base();

	harness_phase("two listeners bind one port");
	l0 = harness_listen_ipv4(base, rp_cb, &a0, flags, 256, &sin);
	CHECK(reuseport(l0) != 0);
	before = harness_fd_count();
	errno = 0;
	CHECK(evconnlistener_new_bind(base, rp_cb, &a1, LEV_OPT_CLOSE_ON_FREE, 256,
				      (struct sockaddr *)&sin,
				      sizeof sin) == NULL);
	CHECK_EQ(errno, EADDRINUSE);
	CHECK_EQ(harness_fd_count(), before);
	l1 = harness_new_bind(base, rp_cb, &a1, flags, 256,
			      (struct sockaddr *)&sin, sizeof sin);
	CHECK(reuseport(l1) != 0);

	harness_phase("64 connections, each accepted exactly once");
	for (int i = 0; i < N; i++) {
		uint16_t port;
		clients[i] = harness_connect((struct sockaddr *)&sin, sizeof sin,
					     0, &port);
		ctx.expect[port] = 1;
	}
	CHECKF(harness_run_until(base, all_in, &ctx, 5000),
	       "only %d of %d accepted", ctx.total, N);
	harness_run_for(base, 100); /* nothing more may arrive */
	CHECK_EQ(ctx.total, N);
	CHECK_EQ(ctx.dup, 0);
	for (int p = 0; p < 65536; p++)
		CHECKF(!ctx.expect[p], "client port %d never accepted", p);
	printf("split: %d + %d\n", ctx.per[0], ctx.per[1]);
	CHECKF(ctx.per[0] > 0 && ctx.per[1] > 0,
	       "one listener took all %d connections", N);

	for (int i = 0; i < N; i++)
		close(clients[i]);
	evconnlistener_free(l0);
	evconnlistener_free(l1);
	event_base_free(base);
	printf("PASS\n");
	return 0;
}
