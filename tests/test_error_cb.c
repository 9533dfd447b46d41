/*
 * error_cb (regress error / error_ts): a listener on a connected socketpair
 * end (backlog 0: no listen call) that has readable data. accept() fails with
 * EINVAL: the error callback runs with errno EINVAL, the accept callback
 * never; the error callback disables and dispatch returns. With an error
 * callback that does not disable, and with none at all, one EVLOOP_ONCE
 * iteration returns, and that one iteration already ran the error callback
 * (libevent's regress disable_in_thread_error joins a thread that only the
 * error callback of that one iteration starts). Run without and with
 * LEV_OPT_THREADSAFE.
 */
#include "harness.h"

#include <unistd.h>

static int errs, errs_errno, accepts, disable_in_errcb;

static void acc_cb(struct evconnlistener *lev, evutil_socket_t fd,
		   struct sockaddr *sa, int socklen, void *arg)
{
	accepts++;
	close(fd);
}

static void err_cb(struct evconnlistener *lev, void *arg)
{
	int e = EVUTIL_SOCKET_ERROR();
	if (!errs++)
		errs_errno = e;
	CHECK(arg == (void *)&errs);
	if (disable_in_errcb)
		CHECK_EQ(evconnlistener_disable(lev), 0);
}

static struct evconnlistener *bogus(struct event_base *base, unsigned flags,
				    int pair[2])
{
	REQUIRE_SYS(socketpair(AF_UNIX, SOCK_STREAM, 0, pair));
	CHECK_EQ(send(pair[1], "hello", 5, 0), 5); /* pair[0] reads readable */
	return harness_new(base, acc_cb, &errs, flags, 0, pair[0]);
}

static void rounds(unsigned flags)
{
	struct event_base *base = harness_base();
	struct evconnlistener *lev;
	int pair[2];

	harness_phase("error callback disables: dispatch returns");
	errs = accepts = 0;
	errs_errno = 0;
	disable_in_errcb = 1;
	lev = bogus(base, flags, pair);
	evconnlistener_set_error_cb(lev, err_cb);
	CHECK(event_base_dispatch(base) >= 0);
	CHECK_EQ(errs, 1);
	CHECK_EQ(accepts, 0);
	CHECKF(errs_errno == EINVAL, "errno in the error callback: %d (%s)",
	       errs_errno, strerror(errs_errno));
	evconnlistener_free(lev);
	close(pair[1]);

	harness_phase("error callback keeps it enabled: EVLOOP_ONCE returns");
	errs = 0;
	disable_in_errcb = 0;
	lev = bogus(base, flags, pair);
	evconnlistener_set_error_cb(lev, err_cb);
	CHECK(event_base_loop(base, EVLOOP_ONCE) >= 0);
	CHECK(errs >= 1);
	CHECK_EQ(accepts, 0);
	evconnlistener_free(lev);
	close(pair[1]);

	harness_phase("no error callback: EVLOOP_ONCE returns");
	lev = bogus(base, flags, pair);
	CHECK(event_base_loop(base, EVLOOP_ONCE) >= 0);
	CHECK_EQ(accepts, 0);
	evconnlistener_free(lev);
	close(pair[1]);

	event_base_free(base);
}

int main(void)
{
	harness_init("error_cb");
	rounds(LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE);
	harness_use_threads();
	rounds(LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE | LEV_OPT_THREADSAFE);
	printf("PASS\n");
	return 0;
}
