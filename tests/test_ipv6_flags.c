/*
 * ipv6_flags: LEV_OPT_BIND_IPV6ONLY and LEV_OPT_BIND_IPV4_AND_IPV6 on a
 * listener bound to [::].
 * - BIND_IPV6ONLY: IPV6_V6ONLY is 1; an IPv4 connect to the port fails,
 *   an IPv6 one is accepted.
 * - BIND_IPV4_AND_IPV6: IPV6_V6ONLY is 0; an IPv4 connect is accepted and
 *   the callback sees the IPv4-mapped address (::ffff:127.0.0.1, the
 *   client's port, socklen sizeof(sockaddr_in6)).
 *   libevent 2.1.12 does not know this flag (added in 2.2) and ignores it,
 *   so in the reference run the socket keeps the kernel default
 *   (net.ipv6.bindv6only) and the test only checks that the outcome is
 *   consistent with that default. Linked with evuring the strict 2.2.1
 *   behaviour is asserted.
 */
#include "harness.h"

#include <arpa/inet.h>
#include <unistd.h>

struct rec {
	int n, len;
	struct sockaddr_in6 sa;
};

static void rec_cb(struct evconnlistener *lev, evutil_socket_t fd,
		   struct sockaddr *sa, int socklen, void *arg)
{
	struct rec *r = arg;
	r->n++;
	r->len = socklen;
	memcpy(&r->sa, sa, socklen < (int)sizeof r->sa ? (size_t)socklen
						     : sizeof r->sa);
	close(fd);
}

static int got_one(void *arg) { return ((struct rec *)arg)->n >= 1; }

static int v6only(struct evconnlistener *lev)
{
	int v = -1;
	socklen_t l = sizeof v;
	REQUIRE_SYS(getsockopt(evconnlistener_get_fd(lev), IPPROTO_IPV6,
			       IPV6_V6ONLY, &v, &l));
	return v;
}

int main(void)
{
	struct event_base *base;
	struct evconnlistener *lev;
	struct sockaddr_in6 any = harness_sin6("::", 0), bound;
	struct sockaddr_storage ss;
	struct sockaddr_in sin;
	struct rec r;
	uint16_t port;
	int c;

	harness_init("ipv6_flags");
	if (!harness_have_ipv6())
		SKIP("IPv6 is not usable on loopback (cannot bind ::1)");
	base = harness_base();

	harness_phase("LEV_OPT_BIND_IPV6ONLY");
	memset(&r, 0, sizeof r);
	lev = harness_new_bind(base, rec_cb, &r,
			       LEV_OPT_CLOSE_ON_FREE | LEV_OPT_BIND_IPV6ONLY, -1,
			       (struct sockaddr *)&any, sizeof any);
	CHECK_EQ(v6only(lev), 1);
	harness_sockname(evconnlistener_get_fd(lev), &ss);
	memcpy(&bound, &ss, sizeof bound);
	sin = harness_sin("127.0.0.1", ntohs(bound.sin6_port));
	c = harness_try_connect((struct sockaddr *)&sin, sizeof sin);
	CHECKF(c < 0 && errno == ECONNREFUSED,
	       "IPv4 connect to an IPv6-only listener: fd %d, errno %d", c, errno);
	{
		struct sockaddr_in6 lo = harness_sin6("::1", ntohs(bound.sin6_port));
		c = harness_connect((struct sockaddr *)&lo, sizeof lo, 0, &port);
		CHECK(harness_run_until(base, got_one, &r, 2000));
		CHECK_EQ(r.len, sizeof(struct sockaddr_in6));
		CHECK_EQ(r.sa.sin6_family, AF_INET6);
		CHECK(IN6_IS_ADDR_LOOPBACK(&r.sa.sin6_addr));
		CHECK_EQ(ntohs(r.sa.sin6_port), port);
		close(c);
	}
	evconnlistener_free(lev);

	harness_phase("LEV_OPT_BIND_IPV4_AND_IPV6");
	memset(&r, 0, sizeof r);
	lev = harness_new_bind(base, rec_cb, &r,
			       LEV_OPT_CLOSE_ON_FREE | LEV_OPT_BIND_IPV4_AND_IPV6,
			       -1, (struct sockaddr *)&any, sizeof any);
	harness_sockname(evconnlistener_get_fd(lev), &ss);
	memcpy(&bound, &ss, sizeof bound);
	sin = harness_sin("127.0.0.1", ntohs(bound.sin6_port));
#ifdef EVU_TEST_REFERENCE
	/* 2.1.12 ignores the flag: the kernel default decides. */
	if (v6only(lev)) {
		printf("reference: IPV6_V6ONLY defaults to 1 here; 2.1.12 ignores "
		       "LEV_OPT_BIND_IPV4_AND_IPV6, IPv4 must be refused\n");
		c = harness_try_connect((struct sockaddr *)&sin, sizeof sin);
		CHECK(c < 0 && errno == ECONNREFUSED);
		evconnlistener_free(lev);
		event_base_free(base);
		printf("PASS\n");
		return 0;
	}
#else
	CHECKF(v6only(lev) == 0, "IPV6_V6ONLY is %d with LEV_OPT_BIND_IPV4_AND_IPV6",
	       v6only(lev));
#endif
	c = harness_connect((struct sockaddr *)&sin, sizeof sin, 0, &port);
	CHECK(harness_run_until(base, got_one, &r, 2000));
	CHECK_EQ(r.n, 1);
	CHECK_EQ(r.len, sizeof(struct sockaddr_in6));
	CHECK_EQ(r.sa.sin6_family, AF_INET6);
	{
		char txt[INET6_ADDRSTRLEN];
		inet_ntop(AF_INET6, &r.sa.sin6_addr, txt, sizeof txt);
		CHECKF(IN6_IS_ADDR_V4MAPPED(&r.sa.sin6_addr) &&
			       !memcmp(&r.sa.sin6_addr.s6_addr[12], "\x7f\0\0\x01", 4),
		       "peer address %s, want ::ffff:127.0.0.1", txt);
	}
	CHECK_EQ(ntohs(r.sa.sin6_port), port);
	close(c);
	evconnlistener_free(lev);

	event_base_free(base);
	printf("PASS\n");
	return 0;
}
