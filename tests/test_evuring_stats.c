/*
 * evuring_stats: evuring's extension API (no libevent counterpart, so no
 * reference run). After N connections evuring_listener_get_stats() reports
 * accepted == N and no errors; batches >= 1 (uring: completion batches,
 * event: readiness wakeups) and never more than the wakeups needed; accept
 * errors are counted; NULL arguments give -1/EINVAL. `direct`: every
 * connection on the event backend, none on io_uring.
 */
#include "harness.h"

#include <unistd.h>

#define N 10

static int calls;

static void cb(struct evconnlistener *lev, evutil_socket_t fd,
	       struct sockaddr *sa, int socklen, void *arg)
{
	calls++;
	close(fd);
}

static void errcb(struct evconnlistener *lev, void *arg)
{
	evconnlistener_disable(lev);
}

static int all_in(void *arg) { return calls >= N; }

int main(void)
{
	struct event_base *base;
	struct evconnlistener *lev;
	struct evuring_stats st;
	struct sockaddr_in sin;
	int clients[N], pair[2], backend;

	harness_init("evuring_stats");
	base = harness_base();

	harness_phase("argument checks");
	errno = 0;
	CHECK_EQ(evuring_listener_backend(NULL), -1);
	CHECK_EQ(errno, EINVAL);
	errno = 0;
	CHECK_EQ(evuring_listener_get_stats(NULL, &st), -1);
	CHECK_EQ(errno, EINVAL);
	CHECK(!strcmp(evuring_backend_name(EVURING_BACKEND_URING), "uring"));
	CHECK(!strcmp(evuring_backend_name(EVURING_BACKEND_EVENT), "event"));
	CHECK(!strcmp(evuring_backend_name(EVURING_BACKEND_AUTO), "auto"));
	CHECK(!strcmp(evuring_backend_name(42), "unknown"));

	harness_phase("counters start at zero");
	lev = harness_listen_ipv4(base, cb, NULL, LEV_OPT_CLOSE_ON_FREE, -1, &sin);
	backend = evuring_listener_backend(lev);
	errno = 0;
	CHECK_EQ(evuring_listener_get_stats(lev, NULL), -1);
	CHECK_EQ(errno, EINVAL);
	memset(&st, 0xff, sizeof st);
	CHECK_EQ(evuring_listener_get_stats(lev, &st), 0);
	CHECK_EQ(st.accepted, 0);
	CHECK_EQ(st.errors, 0);
	CHECK_EQ(st.closed, 0);

	harness_phase("N connections: accepted == N");
	for (int i = 0; i < N; i++)
		clients[i] = harness_connect((struct sockaddr *)&sin, sizeof sin, 0,
					     NULL);
	CHECK(harness_run_until(base, all_in, NULL, 3000));
	CHECK_EQ(evuring_listener_get_stats(lev, &st), 0);
	printf("%s: accepted %llu errors %llu closed %llu rearms %llu "
	       "batches %llu direct %llu\n", evuring_backend_name(backend),
	       (unsigned long long)st.accepted, (unsigned long long)st.errors,
	       (unsigned long long)st.closed, (unsigned long long)st.rearms,
	       (unsigned long long)st.batches, (unsigned long long)st.direct);
	CHECK_EQ(st.accepted, N);
	CHECK_EQ(st.errors, 0);
	CHECK_EQ(st.closed, 0);
	CHECK(st.batches >= 1);
	CHECK_EQ(st.direct, backend == EVURING_BACKEND_EVENT ? N : 0);
	for (int i = 0; i < 2; i++)
		CHECK_EQ(st.reserved[i], 0);
	for (int i = 0; i < N; i++)
		close(clients[i]);
	evconnlistener_free(lev);

	harness_phase("accept errors are counted");
	REQUIRE_SYS(socketpair(AF_UNIX, SOCK_STREAM, 0, pair));
	CHECK_EQ(send(pair[1], "x", 1, 0), 1);
	lev = harness_new(base, cb, NULL, LEV_OPT_CLOSE_ON_FREE, 0, pair[0]);
	evconnlistener_set_error_cb(lev, errcb);
	CHECK(event_base_dispatch(base) >= 0);
	CHECK_EQ(evuring_listener_get_stats(lev, &st), 0);
	CHECK(st.errors >= 1);
	CHECK_EQ(st.accepted, 0);
	evconnlistener_free(lev);
	close(pair[1]);

	event_base_free(base);
	printf("PASS\n");
	return 0;
}
