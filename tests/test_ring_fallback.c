/*
 * ring_fallback: the probe says io_uring works, but the ring for this
 * event_base cannot be made (EVURING_TEST_FAULT=ring-setup-enomem, as a
 * memory lock limit would). In auto mode the listener runs on the event
 * backend and accepts; with EVURING_BACKEND=uring creation fails with
 * ENOMEM and leaks nothing. evuring-only.
 */
#include "harness.h"

#include <stdlib.h>
#include <unistd.h>

static int calls;

static void cb(struct evconnlistener *lev, evutil_socket_t fd,
	       struct sockaddr *sa, int socklen, void *arg)
{
	calls++;
	close(fd);
}

static int got(void *arg) { return calls >= 3; }

int main(void)
{
	const char *fault = getenv("EVURING_TEST_FAULT");
	struct sockaddr_in sin = harness_sin("127.0.0.1", 0);
	struct sockaddr_storage ss;
	struct event_base *base;
	struct evconnlistener *lev;
	int fds0, c[3];

	harness_init("ring_fallback");
	if (!fault || strcmp(fault, "ring-setup-enomem"))
		SKIP("needs EVURING_TEST_FAULT=ring-setup-enomem (set by ctest)");
	if (!evuring_uring_available(NULL))
		SKIP("io_uring unavailable here: no ring to fail");
	base = harness_base();
	fds0 = harness_fd_count();

	harness_phase("io_uring demanded: NULL, ENOMEM, nothing leaked");
	CHECK_EQ(evuring_set_backend(EVURING_BACKEND_URING), 0);
	errno = 0;
	lev = evconnlistener_new_bind(base, cb, NULL, LEV_OPT_CLOSE_ON_FREE, -1,
				      (struct sockaddr *)&sin, sizeof sin);
	CHECK(lev == NULL);
	CHECK_EQ(errno, ENOMEM);
	CHECK_EQ(harness_fd_count(), fds0);

	harness_phase("auto: this base's listener falls back to the event backend");
	CHECK_EQ(evuring_set_backend(EVURING_BACKEND_AUTO), 0);
	lev = evconnlistener_new_bind(base, cb, NULL, LEV_OPT_CLOSE_ON_FREE, -1,
				      (struct sockaddr *)&sin, sizeof sin);
	CHECK(lev != NULL);
	CHECK_EQ(evuring_listener_backend(lev), EVURING_BACKEND_EVENT);
	harness_sockname(evconnlistener_get_fd(lev), &ss);
	memcpy(&sin, &ss, sizeof sin);
	for (int i = 0; i < 3; i++)
		c[i] = harness_connect((struct sockaddr *)&sin, sizeof sin, 0, NULL);
	CHECK(harness_run_until(base, got, NULL, 2000));
	evconnlistener_free(lev);
	for (int i = 0; i < 3; i++)
		close(c[i]);
	CHECK_EQ(harness_fd_count(), fds0);
	event_base_free(base);
	printf("PASS\n");
	return 0;
}
