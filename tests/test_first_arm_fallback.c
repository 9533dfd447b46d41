/*
 * first_arm_fallback: if multishot accept turns out unsupported on a
 * listener's first arm (the kernel answers EINVAL, as kernels before 5.19
 * do), that listener moves to the event backend and loses no connection.
 * Run with EVURING_TEST_FAULT=first-arm-einval: the kernel itself returns
 * -EINVAL for the first arm (an injected NOP result), evuring alone sees it.
 * evuring-only (libevent has no such switch).
 */
#include "harness.h"

#include <stdlib.h>
#include <unistd.h>

#define N 40

static int calls, dup_or_bad;
static unsigned char seen[65536];

static void cb(struct evconnlistener *lev, evutil_socket_t fd,
	       struct sockaddr *sa, int socklen, void *arg)
{
	uint16_t port = harness_port(sa);

	if (socklen != (int)sizeof(struct sockaddr_in) || seen[port]++)
		dup_or_bad++;
	calls++;
	close(fd);
}

static int all_in(void *arg) { return calls >= *(int *)arg; }

int main(void)
{
	struct event_base *base;
	struct evconnlistener *lev;
	struct evuring_stats st;
	struct sockaddr_in sin;
	int clients[N], want = N, fds0;
	const char *fault = getenv("EVURING_TEST_FAULT");

	harness_init("first_arm_fallback");
	if (!fault || strcmp(fault, "first-arm-einval"))
		SKIP("needs EVURING_TEST_FAULT=first-arm-einval (set by ctest)");
	fds0 = harness_fd_count();
	base = harness_base();

	harness_phase("created on io_uring, connections queued before the first arm");
	lev = evconnlistener_new_bind(base, cb, NULL, LEV_OPT_CLOSE_ON_FREE, -1,
				      (struct sockaddr *)&(struct sockaddr_in){
					      .sin_family = AF_INET,
					      .sin_addr.s_addr = htonl(INADDR_LOOPBACK) },
				      sizeof(struct sockaddr_in));
	CHECK(lev != NULL);
	if (evuring_listener_backend(lev) != EVURING_BACKEND_URING)
		SKIP("io_uring backend not available here: nothing to fall back from");
	{
		struct sockaddr_storage ss;

		harness_sockname(evconnlistener_get_fd(lev), &ss);
		memcpy(&sin, &ss, sizeof sin);
	}
	for (int i = 0; i < N / 2; i++)
		clients[i] = harness_connect((struct sockaddr *)&sin, sizeof sin, 0, NULL);

	harness_phase("first arm refused: switched to the event backend");
	want = N / 2;
	CHECK(harness_run_until(base, all_in, &want, 3000));
	CHECK_EQ(evuring_listener_backend(lev), EVURING_BACKEND_EVENT);

	harness_phase("keeps accepting on the event backend");
	for (int i = N / 2; i < N; i++)
		clients[i] = harness_connect((struct sockaddr *)&sin, sizeof sin, 0, NULL);
	want = N;
	CHECK(harness_run_until(base, all_in, &want, 3000));
	CHECK_EQ(calls, N);
	CHECK_EQ(dup_or_bad, 0);
	CHECK_EQ(evuring_listener_get_stats(lev, &st), 0);
	CHECK_EQ(st.accepted, (uint64_t)N);

	harness_phase("cleanup: no ring, no fd left");
	evconnlistener_free(lev);
	for (int i = 0; i < N; i++)
		close(clients[i]);
	event_base_free(base);
	CHECK_EQ(harness_fd_count(), fds0);
	printf("PASS\n");
	return 0;
}
