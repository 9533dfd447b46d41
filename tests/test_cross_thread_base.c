/*
 * cross_thread_base (evthread_use_pthreads()):
 * - a listener created and enabled in the main thread, its base dispatched
 *   in a second thread: connections are accepted there, the callback runs
 *   on the loop thread, and dispatch returns once the callback disabled it;
 * - a listener created in the main thread while the loop already runs in
 *   the other thread (EVLOOP_NO_EXIT_ON_EMPTY) starts accepting at once,
 *   again with callbacks on the loop thread.
 */
#include "harness.h"

#include <time.h>
#include <unistd.h>

#define N 5

static pthread_t loop_tid;
static atomic_int calls, wrong_thread, stop_at;

static void cb(struct evconnlistener *lev, evutil_socket_t fd,
	       struct sockaddr *sa, int socklen, void *arg)
{
	struct event_base *base = arg;
	if (!pthread_equal(pthread_self(), loop_tid))
		atomic_fetch_add(&wrong_thread, 1);
	close(fd);
	if (atomic_fetch_add(&calls, 1) + 1 == atomic_load(&stop_at)) {
		if (base)
			event_base_loopbreak(base);
		else
			evconnlistener_disable(lev);
	}
}

static void *dispatch_thread(void *arg)
{
	event_base_dispatch(arg);
	return NULL;
}

static void *loop_forever_thread(void *arg)
{
	event_base_loop(arg, EVLOOP_NO_EXIT_ON_EMPTY);
	return NULL;
}

static void join_within(pthread_t t, int secs, const char *what)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += secs;
	CHECKF(pthread_timedjoin_np(t, NULL, &ts) == 0,
	       "%s did not return within %d s (%d callbacks)", what, secs,
	       atomic_load(&calls));
}

int main(void)
{
	struct event_base *base;
	struct evconnlistener *lev;
	struct sockaddr_in sin;
	int clients[N];

	harness_init("cross_thread_base");
	harness_use_threads();
	base = harness_base();

	harness_phase("listener made here, base dispatched in another thread");
	atomic_store(&stop_at, N);
	lev = harness_listen_ipv4(base, cb, NULL, LEV_OPT_CLOSE_ON_FREE, -1, &sin);
	CHECK(pthread_create(&loop_tid, NULL, dispatch_thread, base) == 0);
	for (int i = 0; i < N; i++)
		clients[i] = harness_connect((struct sockaddr *)&sin, sizeof sin, 0,
					     NULL);
	join_within(loop_tid, 10, "event_base_dispatch in the loop thread");
	CHECK_EQ(atomic_load(&calls), N);
	CHECK_EQ(atomic_load(&wrong_thread), 0);
	for (int i = 0; i < N; i++)
		close(clients[i]);
	evconnlistener_free(lev);

	harness_phase("listener made while the loop runs in another thread");
	atomic_store(&calls, 0);
	CHECK(pthread_create(&loop_tid, NULL, loop_forever_thread, base) == 0);
	harness_sleep_ms(20); /* let the loop block first */
	lev = harness_listen_ipv4(base, cb, base,
				  LEV_OPT_CLOSE_ON_FREE | LEV_OPT_THREADSAFE, -1,
				  &sin);
	for (int i = 0; i < N; i++)
		clients[i] = harness_connect((struct sockaddr *)&sin, sizeof sin, 0,
					     NULL);
	join_within(loop_tid, 10, "the loop thread (loopbreak from the callback)");
	CHECK_EQ(atomic_load(&calls), N);
	CHECK_EQ(atomic_load(&wrong_thread), 0);
	for (int i = 0; i < N; i++)
		close(clients[i]);
	evconnlistener_free(lev);

	event_base_free(base);
	printf("PASS\n");
	return 0;
}
