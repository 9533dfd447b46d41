/*
 * forced_uring: run where io_uring is denied (ctest runs it under
 * evu-no-uring). With EVURING_BACKEND=uring, evconnlistener_new_bind fails:
 * NULL, errno saying why (EVU_TEST_EXPECT_ERRNO), no fd leaked, and one line
 * on stderr (checked by the ctest wrapper). evuring_uring_available() says
 * why; evuring_set_backend(AUTO) then gives working listeners on the event
 * backend. evuring-only: libevent has no backend choice.
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

static int got_one(void *arg) { return calls >= 1; }

int main(void)
{
	const char *expect = getenv("EVU_TEST_EXPECT_ERRNO");
	struct sockaddr_in sin = harness_sin("127.0.0.1", 0);
	struct event_base *base;
	struct evconnlistener *lev;
	const char *why = NULL;
	int fds0, c;

	harness_init("forced_uring");
	if (!expect)
		SKIP("needs EVU_TEST_EXPECT_ERRNO and io_uring denied (set by ctest)");
	base = harness_base();
	fds0 = harness_fd_count();

	harness_phase("EVURING_BACKEND=uring where io_uring is denied: NULL + errno");
	errno = 0;
	lev = evconnlistener_new_bind(base, cb, NULL, LEV_OPT_CLOSE_ON_FREE, -1,
				      (struct sockaddr *)&sin, sizeof sin);
	CHECK(lev == NULL);
	CHECKF(errno == atoi(expect), "errno %d (%s), expected %s", errno,
	       strerror(errno), expect);
	CHECK_EQ(harness_fd_count(), fds0);

	harness_phase("evuring_uring_available says why");
	CHECK_EQ(evuring_uring_available(&why), 0);
	CHECK(why != NULL && *why);
	printf("why: %s\n", why);

	harness_phase("back to auto: the event backend serves");
	CHECK_EQ(evuring_set_backend(EVURING_BACKEND_AUTO), 0);
	lev = harness_new_bind(base, cb, NULL, LEV_OPT_CLOSE_ON_FREE, -1,
			       (struct sockaddr *)&sin, sizeof sin);
	CHECK_EQ(evuring_listener_backend(lev), EVURING_BACKEND_EVENT);
	{
		struct sockaddr_storage ss;

		harness_sockname(evconnlistener_get_fd(lev), &ss);
		memcpy(&sin, &ss, sizeof sin);
	}
	c = harness_connect((struct sockaddr *)&sin, sizeof sin, 0, NULL);
	CHECK(harness_run_until(base, got_one, NULL, 2000));
	close(c);
	evconnlistener_free(lev);
	CHECK_EQ(evuring_set_backend(99), -1);
	CHECK_EQ(errno, EINVAL);
	event_base_free(base);
	printf("PASS\n");
	return 0;
}
