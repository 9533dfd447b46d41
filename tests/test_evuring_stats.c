/*
 * evuring_stats: evuring's extension API (no libevent counterpart, so no
 * reference run). After N connections evuring_listener_get_stats() reports
 * accepted == N and no errors; batches >= 1 (uring: completion batches,
 * event: readiness wakeups) and never more than the wakeups needed; accept
 * errors are counted; NULL arguments give -1/EINVAL. `direct`: on the event
 * backend every connection; on io_uring none while the listener is its
 * socket's sole accepter, every one while a second listener of this process
 * accepts from the socket too, and (almost) none again once that one is
 * freed. A listener made in a forked process on a socket it was handed may
 * be a prefork child's: it starts as libevent's, and goes to io_uring once
 * 256 wakeups in a row found its connection there for it (no other
 * accepter).
 */
#include "harness.h"

#include <sys/wait.h>
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

/* In a forked child: a socket of its own, handed to evconnlistener_new(). */
static void forked_listener(int backend)
{
	struct event_base *base = harness_base();
	struct sockaddr_in sin = harness_sin("127.0.0.1", 0);
	struct sockaddr_storage ss;
	struct harness_ports ports;
	struct evconnlistener *lev;
	struct evuring_stats st;
	uint64_t direct0;
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);

	REQUIRE_SYS(fd);
	REQUIRE_SYS(bind(fd, (struct sockaddr *)&sin, sizeof sin));
	harness_sockname(fd, &ss);
	memcpy(&sin, &ss, sizeof sin);
	harness_ports_init(&ports);
	lev = harness_new(base, harness_ports_cb, &ports, LEV_OPT_CLOSE_ON_FREE, -1, fd);
	/* one connection per wakeup */
	harness_ports_paced(&ports, base, &sin, 300, 1000);
	CHECK_EQ(evuring_listener_get_stats(lev, &st), 0);
	printf("%s, forked: accepted %llu, direct %llu\n", evuring_backend_name(backend),
	       (unsigned long long)st.accepted, (unsigned long long)st.direct);
	if (backend == EVURING_BACKEND_EVENT) {
		CHECK_EQ(st.direct, 300);
	} else {
		CHECKF(st.direct >= 200 && st.direct < 300, "%llu of 300 taken directly "
		       "(expected: the first 256 or so, then io_uring)",
		       (unsigned long long)st.direct);
	}
	direct0 = st.direct;
	harness_ports_paced(&ports, base, &sin, 20, 1000);
	CHECK_EQ(evuring_listener_get_stats(lev, &st), 0);
	CHECK_EQ(st.direct - direct0, backend == EVURING_BACKEND_EVENT ? 20 : 0);
	evconnlistener_free(lev);
	harness_ports_free(&ports);
	event_base_free(base);
}

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

	harness_phase("a second listener on the socket: both accept directly");
	{
		struct evconnlistener *lev2 =
			harness_new(base, cb, NULL, 0, 0, evconnlistener_get_fd(lev));
		struct evuring_stats st2 = { 0 };
		uint64_t direct0, accepted0;
		const char *flags = getenv("EVURING_RING_FLAGS");
		/* A COOP_TASKRUN ring runs an armed accept on the loop's way out
		 * of epoll_wait, before evuring sees the loop again: connections
		 * queued when the second listener came may go that way. */
		int coop = flags && !strcmp(flags, "coop");

		for (int round = 0; round < 2; round++) {
			direct0 = st.direct + st2.direct;
			accepted0 = st.accepted + st2.accepted;
			calls = 0;
			for (int i = 0; i < N; i++)
				clients[i] = harness_connect((struct sockaddr *)&sin, sizeof sin, 0,
							     NULL);
			CHECK(harness_run_until(base, all_in, NULL, 3000));
			CHECK_EQ(evuring_listener_get_stats(lev, &st), 0);
			CHECK_EQ(evuring_listener_get_stats(lev2, &st2), 0);
			printf("%s, shared, round %d: accepted %llu + %llu, direct %llu + %llu "
			       "(totals)\n", evuring_backend_name(backend), round,
			       (unsigned long long)st.accepted, (unsigned long long)st2.accepted,
			       (unsigned long long)st.direct, (unsigned long long)st2.direct);
			CHECK_EQ(st.accepted + st2.accepted - accepted0, N);
			if (round == 1 || !coop)
				CHECK_EQ(st.direct + st2.direct - direct0, N);
			for (int i = 0; i < N; i++)
				close(clients[i]);
		}
		evconnlistener_free(lev2);

		harness_phase("the second one freed: io_uring again");
		direct0 = st.direct;
		calls = 0;
		for (int i = 0; i < N; i++)
			clients[i] = harness_connect((struct sockaddr *)&sin, sizeof sin, 0, NULL);
		CHECK(harness_run_until(base, all_in, NULL, 3000));
		CHECK_EQ(evuring_listener_get_stats(lev, &st), 0);
		printf("%s, alone again: direct %llu of %d\n", evuring_backend_name(backend),
		       (unsigned long long)(st.direct - direct0), N);
		/* the wakeup that finds it alone again takes one itself */
		CHECKF(backend == EVURING_BACKEND_EVENT ? st.direct - direct0 == N
							 : st.direct - direct0 <= 1,
		       "%llu of %d connections taken directly",
		       (unsigned long long)(st.direct - direct0), N);
		for (int i = 0; i < N; i++)
			close(clients[i]);
	}
	evconnlistener_free(lev);

	harness_phase("a forked process's own listener: accept4() first, then io_uring");
	{
		pid_t pid;
		int status;

		fflush(NULL);
		pid = fork();
		REQUIRE_SYS(pid);
		if (pid == 0) {
			forked_listener(backend);
			fflush(NULL);
			_exit(0);
		}
		CHECK(waitpid(pid, &status, 0) == pid);
		CHECKF(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child status %#x", status);
	}

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
