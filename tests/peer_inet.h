/*
 * Shared body of test_peer_ipv4.c and test_peer_ipv6.c: define PEER_V6 to 0
 * or 1, then include. Proves the accept callback's addr/socklen are the
 * client's own address (getsockname on the client), for one client and for a
 * burst of BURST clients all queued before the loop runs (several reaped in
 * one wakeup), each matched by client port; then, for a storm of clients
 * arriving while callbacks run and re-enable the listener (new accepts
 * while earlier ones are still being delivered), that each callback's
 * address is its own fd's peer.
 */
#include "harness.h"

#include <unistd.h>

#if PEER_V6
typedef struct sockaddr_in6 peer_sa;
#define PEER_NAME "peer_ipv6"
#define PEER_LISTEN harness_listen_ipv6
#else
typedef struct sockaddr_in peer_sa;
#define PEER_NAME "peer_ipv4"
#define PEER_LISTEN harness_listen_ipv4
#endif

#define BURST 200
#define STORM 3000

struct peer_ctx {
	int n, want, bad, toggle;
	unsigned char expect[65536]; /* client ports not yet delivered */
	peer_sa last;
	int last_len;
	char why[160];
};

/* Family, address and port of @a equal @b's. */
static int same_peer(const struct sockaddr *a, const struct sockaddr *b)
{
	if (a->sa_family != b->sa_family)
		return 0;
#if PEER_V6
	if (memcmp(&((const struct sockaddr_in6 *)a)->sin6_addr,
		   &((const struct sockaddr_in6 *)b)->sin6_addr,
		   sizeof(struct in6_addr)))
		return 0;
#else
	if (((const struct sockaddr_in *)a)->sin_addr.s_addr !=
	    ((const struct sockaddr_in *)b)->sin_addr.s_addr)
		return 0;
#endif
	return harness_port(a) == harness_port(b);
}

static void peer_cb(struct evconnlistener *lev, evutil_socket_t fd,
		    struct sockaddr *sa, int socklen, void *arg)
{
	struct peer_ctx *c = arg;
	struct sockaddr_storage peer;
	socklen_t plen = sizeof peer;
	uint16_t port;

	if (getpeername(fd, (struct sockaddr *)&peer, &plen) < 0) {
		/* The storm's clients may reset first: the kernel still
		 * knows the peer (as accept() reported it). */
		CHECKF(c->toggle && errno == ENOTCONN, "getpeername: %s",
		       strerror(errno));
		plen = sizeof(peer_sa); /* no longer than the address */
		REQUIRE_SYS(getsockopt(fd, SOL_SOCKET, SO_PEERNAME, &peer, &plen));
	}
	if (socklen != (int)sizeof(peer_sa) && !c->bad++)
		snprintf(c->why, sizeof c->why, "socklen %d, want %zu", socklen,
			 sizeof(peer_sa));
	else if (!same_peer(sa, (struct sockaddr *)&peer) && !c->bad++)
		snprintf(c->why, sizeof c->why,
			 "callback addr (family %d port %u) != getpeername "
			 "(family %d port %u)", sa->sa_family,
			 harness_port(sa), peer.ss_family,
			 harness_port((struct sockaddr *)&peer));
	port = harness_port(sa);
	/* A storm's client ports repeat (ports are reused): no bookkeeping. */
	if (!c->toggle && !c->expect[port] && !c->bad++)
		snprintf(c->why, sizeof c->why,
			 "port %u delivered but not expected (twice?)", port);
	c->expect[port] = 0;
	if (socklen > 0 && socklen <= (int)sizeof c->last)
		memcpy(&c->last, sa, (size_t)socklen);
	c->last_len = socklen;
	close(fd);
	if (++c->n == c->want)
		evconnlistener_disable(lev);
	else if (c->toggle && c->n % 3 == 0) {
		evconnlistener_disable(lev);
		evconnlistener_enable(lev);
	}
}

static int all_in(void *arg)
{
	struct peer_ctx *c = arg;
	return c->n >= c->want;
}

int main(void)
{
	static struct peer_ctx ctx;
	static int clients[BURST];
	struct event_base *base;
	struct evconnlistener *lev;
	struct sockaddr_storage cs;
	peer_sa addr;
	uint16_t port;
	int c;

	harness_init(PEER_NAME);
	base = harness_base();
	lev = PEER_LISTEN(base, peer_cb, &ctx, LEV_OPT_CLOSE_ON_FREE, 1024, &addr);

	harness_phase("one client: callback address == client's getsockname");
	ctx.want = 1;
	c = harness_connect((struct sockaddr *)&addr, sizeof addr, 0, &port);
	harness_sockname(c, &cs);
	ctx.expect[port] = 1;
	CHECK(harness_run_until(base, all_in, &ctx, 2000));
	CHECKF(!ctx.bad, "%s", ctx.why);
	CHECK_EQ(ctx.last_len, sizeof(peer_sa));
	CHECK(same_peer((struct sockaddr *)&ctx.last, (struct sockaddr *)&cs));
	close(c);

	harness_phase("burst of clients queued before the loop runs");
	memset(&ctx, 0, sizeof ctx);
	ctx.want = BURST;
	for (int i = 0; i < BURST; i++) {
		clients[i] = harness_connect((struct sockaddr *)&addr, sizeof addr,
					     0, &port);
		CHECKF(!ctx.expect[port], "client port %u reused", port);
		ctx.expect[port] = 1;
	}
	CHECK_EQ(evconnlistener_enable(lev), 0);
	/* The callback disables after BURST: dispatch returns by itself. */
	CHECK(event_base_dispatch(base) >= 0);
	CHECKF(!ctx.bad, "%s", ctx.why);
	CHECK_EQ(ctx.n, BURST);
	for (int p = 0; p < 65536; p++)
		CHECKF(!ctx.expect[p], "client port %d never delivered", p);
	for (int i = 0; i < BURST; i++)
		close(clients[i]);

	harness_phase("storm while callbacks run and re-enable the listener");
	{
		struct harness_storm storm;

		memset(&ctx, 0, sizeof ctx);
		ctx.want = STORM;
		ctx.toggle = 1;
		harness_storm_start(&storm, (struct sockaddr *)&addr, sizeof addr,
				    STORM, 4, 0);
		CHECK_EQ(evconnlistener_enable(lev), 0);
		CHECKF(harness_run_until(base, all_in, &ctx, 20000),
		       "%d of %d connections delivered (%d connects completed, %d failed)",
		       ctx.n, STORM, atomic_load(&storm.completed),
		       atomic_load(&storm.failed));
		harness_storm_join(&storm);
		CHECK_EQ(atomic_load(&storm.failed), 0);
		harness_storm_free(&storm);
		CHECKF(!ctx.bad, "%s", ctx.why);
		CHECK_EQ(ctx.n, STORM);
	}

	evconnlistener_free(lev);
	event_base_free(base);
	printf("PASS\n");
	return 0;
}
