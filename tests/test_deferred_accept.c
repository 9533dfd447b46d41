/*
 * deferred_accept: LEV_OPT_DEFERRED_ACCEPT sets TCP_DEFER_ACCEPT (libevent
 * uses 1 s; unset without the flag). A client that connects and sends
 * nothing gets no callback within 300 ms; once it writes a byte the
 * callback comes within 2 s and the byte is already readable.
 */
#include "harness.h"

#include <netinet/tcp.h>
#include <unistd.h>

struct rec {
	int n;
	long long when;
	ssize_t got; /* recv() on the accepted fd inside the callback */
	uint16_t port;
};

static void rec_cb(struct evconnlistener *lev, evutil_socket_t fd,
		   struct sockaddr *sa, int socklen, void *arg)
{
	struct rec *r = arg;
	char b;
	r->n++;
	r->when = harness_now_ms();
	r->port = harness_port(sa);
	r->got = recv(fd, &b, 1, MSG_DONTWAIT);
	close(fd);
}

static int got_one(void *arg) { return ((struct rec *)arg)->n >= 1; }

static int defer(struct evconnlistener *lev)
{
	int v = -1;
	socklen_t l = sizeof v;
	REQUIRE_SYS(getsockopt(evconnlistener_get_fd(lev), IPPROTO_TCP,
			       TCP_DEFER_ACCEPT, &v, &l));
	return v;
}

int main(void)
{
	struct event_base *base;
	struct evconnlistener *lev;
	struct sockaddr_in sin;
	struct rec r;
	long long wrote;
	uint16_t port;
	int c;

	harness_init("deferred_accept");
	base = harness_base();

	harness_phase("without the flag: TCP_DEFER_ACCEPT unset");
	lev = harness_listen_ipv4(base, rec_cb, &r, LEV_OPT_CLOSE_ON_FREE, -1, NULL);
	CHECK_EQ(defer(lev), 0);
	evconnlistener_free(lev);

	harness_phase("LEV_OPT_DEFERRED_ACCEPT: silent client not delivered");
	memset(&r, 0, sizeof r);
	lev = harness_listen_ipv4(base, rec_cb, &r,
				  LEV_OPT_CLOSE_ON_FREE | LEV_OPT_DEFERRED_ACCEPT,
				  -1, &sin);
	CHECK(defer(lev) > 0);
	c = harness_connect((struct sockaddr *)&sin, sizeof sin, 0, &port);
	harness_run_for(base, 300);
	CHECKF(r.n == 0, "callback for a client that sent nothing");

	harness_phase("LEV_OPT_DEFERRED_ACCEPT: delivered once data arrives");
	wrote = harness_now_ms();
	CHECK_EQ(send(c, "x", 1, 0), 1);
	CHECKF(harness_run_until(base, got_one, &r, 2000),
	       "no callback within 2 s of the client's first byte");
	CHECK_EQ(r.n, 1);
	CHECK_EQ(r.port, port);
	CHECK_EQ(r.got, 1);
	printf("delivered %lld ms after the write\n", r.when - wrote);
	close(c);
	evconnlistener_free(lev);

	event_base_free(base);
	printf("PASS\n");
	return 0;
}
