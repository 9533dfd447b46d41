/*
 * wait_auto: where the loop sleeps follows what it sleeps for. With
 * EVURING_WAIT=auto (the default) on the io_uring backend, a base that wakes
 * mostly for connections goes to sleep in the ring, one that wakes mostly
 * for its other fds goes back to epoll, and back again; the forced modes
 * never move (ring: always the ring, epoll and the event backend: always
 * epoll). Whatever the mode, in every phase each connection is delivered
 * once with its client's address and every byte of the echo traffic comes
 * back: the switches lose nothing. And the base holds one added event for
 * the listener, as with libevent's listener, wherever the loop sleeps.
 *
 * Phases: 300 connections (paced, so the loop sleeps between them), then
 * 400 one-byte round trips on a socketpair with no connection, then 300
 * connections again.
 */
#include "harness.h"
#ifdef EVU_TEST_EPOLL_VIA
#include "epoll_via.h"
#endif

#include <unistd.h>

#define NCONNS 300
#define NTRIPS 400

static struct harness_ports ports;

/* one client thread, 200 us apart: the loop sleeps before most */
static void connections_phase(struct event_base *base, const struct sockaddr_in *sin)
{
	harness_ports_paced(&ports, base, sin, NCONNS, 200);
}

struct echo {
	int loop_fd, peer_fd;
	int trips;
	atomic_int echoed;
};

static void echo_cb(evutil_socket_t fd, short what, void *arg)
{
	struct echo *e = arg;
	char c;

	while (read(fd, &c, 1) == 1) {
		CHECK_EQ(write(fd, &c, 1), 1);
		atomic_fetch_add(&e->echoed, 1);
	}
}

static void *echo_peer(void *arg)
{
	struct echo *e = arg;

	for (int i = 0; i < e->trips; i++) {
		char c = (char)('a' + i % 26), r = 0;

		CHECK_EQ(write(e->peer_fd, &c, 1), 1);
		CHECK_EQ(read(e->peer_fd, &r, 1), 1);
		CHECK_EQ(r, c);
	}
	return NULL;
}

static int all_echoed(void *arg)
{
	struct echo *e = arg;

	return atomic_load(&e->echoed) >= e->trips;
}

static void data_phase(struct event_base *base)
{
	struct echo e = { .trips = NTRIPS };
	struct event *ev;
	pthread_t tid;
	int pair[2];

	REQUIRE_SYS(socketpair(AF_UNIX, SOCK_STREAM, 0, pair));
	e.loop_fd = pair[0];
	e.peer_fd = pair[1];
	evutil_make_socket_nonblocking(e.loop_fd);
	ev = event_new(base, e.loop_fd, EV_READ | EV_PERSIST, echo_cb, &e);
	CHECK(ev != NULL);
	event_add(ev, NULL);
	CHECK_EQ(pthread_create(&tid, NULL, echo_peer, &e), 0);
	CHECKF(harness_run_until(base, all_echoed, &e, 20000), "%d of %d bytes echoed",
	       atomic_load(&e.echoed), NTRIPS);
	CHECK_EQ(pthread_join(tid, NULL), 0);
	harness_run_for(base, 20);
	event_free(ev);
	close(pair[0]);
	close(pair[1]);
}

static void check_mode(struct event_base *base, const char *after, int want)
{
	int got = evuring_base_sleeps_in_ring(base);

	printf("after %s: the loop sleeps in %s\n", after, got ? "the ring" : "epoll");
	CHECKF(got == want, "after %s: sleeps_in_ring %d, expected %d", after, got, want);
	/* as libevent's listener: one event for the listener, wherever the
	 * loop sleeps (its socket's; asleep in the ring, one in its place) */
	CHECK_EQ(event_base_get_num_events(base, EVENT_BASE_COUNT_ADDED), 1);
}

int main(void)
{
	struct event_base *base;
	struct evconnlistener *lev;
	struct sockaddr_in sin;
	char policy;

	harness_init("wait_auto");
	harness_ports_init(&ports);
	base = harness_base();
	lev = harness_listen_ipv4(base, harness_ports_cb, &ports, LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE,
				  -1, &sin);
	policy = harness_wait_policy(evuring_listener_backend(lev));
	printf("EVURING_WAIT=%s: expected policy %s\n",
	       getenv("EVURING_WAIT") ? getenv("EVURING_WAIT") : "(unset)",
	       policy == 'a' ? "follow the traffic" : policy == 'r' ? "the ring" : "epoll");

	harness_phase("connections only");
	connections_phase(base, &sin);
	check_mode(base, "connections only", policy != 'e');

	harness_phase("data only");
	data_phase(base);
	check_mode(base, "data only", policy == 'r');

	harness_phase("connections again");
	connections_phase(base, &sin);
	check_mode(base, "connections again", policy != 'e');

	harness_phase("free");
	evconnlistener_free(lev);
	CHECK_EQ(event_base_dispatch(base), 1); /* nothing left pending */
	event_base_free(base);
#ifdef EVU_TEST_EPOLL_VIA
	/* libevent's loop waited through the export under test */
	printf("%ld waits through %s\n", epoll_via_calls(), epoll_via_name());
	CHECK(epoll_via_calls() > 0);
#endif
	harness_ports_free(&ports);
	printf("ok\n");
	return 0;
}
