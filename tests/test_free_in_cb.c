/*
 * free_in_cb (regress close_accepted_fd): the accept callback frees its own
 * listener (LEV_OPT_CLOSE_ON_FREE) with more connections queued.
 * event_base_dispatch returns by itself, no later callback runs, the
 * listening fd is closed, every queued connection is closed too (the
 * clients see EOF or RST, none is left open), and once the clients and the
 * base are gone the fd count is back at its baseline. Run without and with
 * LEV_OPT_THREADSAFE (evthread_use_pthreads()).
 */
#include "harness.h"

#include <unistd.h>

#define QUEUED 3

static int calls;

static void free_cb(struct evconnlistener *lev, evutil_socket_t fd,
		    struct sockaddr *sa, int socklen, void *arg)
{
	calls++;
	close(fd);
	evconnlistener_free(lev);
}

static void round_trip(unsigned flags)
{
	int baseline = harness_fd_count(), lfd, clients[QUEUED];
	struct event_base *base = harness_base();
	struct evconnlistener *lev;
	struct sockaddr_in sin;

	calls = 0;
	lev = harness_listen_ipv4(base, free_cb, NULL,
				  flags | LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE,
				  -1, &sin);
	lfd = evconnlistener_get_fd(lev);
	for (int i = 0; i < QUEUED; i++)
		clients[i] = harness_connect((struct sockaddr *)&sin, sizeof sin, 0,
					     NULL);
	CHECK(event_base_dispatch(base) >= 0); /* returns: nothing pending */
	CHECK_EQ(calls, 1);
	CHECKF(!harness_fd_is_open(lfd), "listening fd %d open after free", lfd);
	for (int i = 0; i < QUEUED; i++) {
		CHECKF(harness_wait_peer_closed(clients[i], 2000),
		       "client %d: its connection was never closed", i);
		close(clients[i]);
	}
	harness_run_for(base, 50);
	CHECK_EQ(calls, 1);
	event_base_free(base);
	CHECK_EQ(harness_fd_count(), baseline);
}

int main(void)
{
	harness_init("free_in_cb");
	harness_phase("free inside the callback");
	round_trip(0);
	harness_phase("free inside the callback, LEV_OPT_THREADSAFE");
	harness_use_threads();
	round_trip(LEV_OPT_THREADSAFE);
	printf("PASS\n");
	return 0;
}
