/*
 * peer_reset: connections whose clients reset them (SO_LINGER 0, close)
 * while they wait in the accept queue. Linux still accepts them, and
 * libevent hands each to the callback with its peer's address, as accept()
 * reports it even though getpeername() now fails with ENOTCONN. So must
 * evuring: every such connection delivered once, with the client's port and
 * a socklen of the address family's size. IPv4 and IPv6 (when available).
 */
#include "harness.h"

#include <unistd.h>

#define QUEUED 20

struct ctx {
	int n, bad, want_len;
	unsigned char expect[65536];
	char why[160];
};

static void reset_cb(struct evconnlistener *lev, evutil_socket_t fd,
		     struct sockaddr *sa, int socklen, void *arg)
{
	struct ctx *c = arg;
	uint16_t port = harness_port(sa);

	(void)lev;
	if (socklen != c->want_len && !c->bad++)
		snprintf(c->why, sizeof c->why, "socklen %d, want %d", socklen,
			 c->want_len);
	else if (!c->expect[port] && !c->bad++)
		snprintf(c->why, sizeof c->why, "port %u not expected", port);
	c->expect[port] = 0;
	c->n++;
	close(fd);
}

static int all_in(void *arg)
{
	return ((struct ctx *)arg)->n >= QUEUED;
}

static void reset_round(int v6)
{
	static struct ctx c;
	struct event_base *base = harness_base();
	struct evconnlistener *lev;
	struct sockaddr_storage addr;
	socklen_t alen;

	memset(&c, 0, sizeof c);
	if (v6) {
		lev = harness_listen_ipv6(base, reset_cb, &c, LEV_OPT_CLOSE_ON_FREE |
					  LEV_OPT_DISABLED, 64,
					  (struct sockaddr_in6 *)&addr);
		alen = c.want_len = sizeof(struct sockaddr_in6);
	} else {
		lev = harness_listen_ipv4(base, reset_cb, &c, LEV_OPT_CLOSE_ON_FREE |
					  LEV_OPT_DISABLED, 64,
					  (struct sockaddr_in *)&addr);
		alen = c.want_len = sizeof(struct sockaddr_in);
	}
	for (int i = 0; i < QUEUED; i++) {
		struct linger lg = { 1, 0 };
		uint16_t port;
		int fd = harness_connect((struct sockaddr *)&addr, alen, 0, &port);

		c.expect[port] = 1;
		REQUIRE_SYS(setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg));
		close(fd); /* RST */
	}
	harness_sleep_ms(20); /* the resets reach the queued connections */
	CHECK_EQ(evconnlistener_enable(lev), 0);
	CHECKF(harness_run_until(base, all_in, &c, 3000),
	       "%d of %d reset connections delivered", c.n, QUEUED);
	CHECKF(!c.bad, "%s", c.why);
	harness_run_for(base, 20);
	CHECK_EQ(c.n, QUEUED);
	evconnlistener_free(lev);
	event_base_free(base);
}

int main(void)
{
	int baseline;

	harness_init("peer_reset");
	baseline = harness_fd_count();
	harness_phase("IPv4 clients reset while queued");
	reset_round(0);
	if (harness_have_ipv6()) {
		harness_phase("IPv6 clients reset while queued");
		reset_round(1);
	} else {
		printf("IPv6 not usable on loopback: IPv6 round skipped\n");
	}
	CHECK_EQ(harness_fd_count(), baseline);
	printf("PASS\n");
	return 0;
}
