/*
 * ring_wait: EVURING_WAIT=ring, where libevent's loop sleeps in evuring's
 * io_uring instead of epoll_wait (uring/wait.c), must leave everything else
 * in the loop as it was. Run on every backend; only .ringwait expects the
 * switch (evuring_base_sleeps_in_ring() == 1 on a kernel with
 * DEFER_TASKRUN), the others expect it off.
 * While the loop sleeps:
 * - a timer fires, not early;
 * - a socket event fed from another thread is delivered, interleaved with
 *   connections, every byte and every connection once;
 * - a libevent signal event fires;
 * - event_base_loopbreak() from another thread returns the loop;
 * - a listener freed from another thread (no THREADSAFE, as evhttp's users
 *   do with libevent's threads on) returns, releases its fd and its port,
 *   and the loop goes on serving the base's other listener. (On the
 *   io_uring backend that listener stopped accepting in about 1 run in 5,
 *   with or without the mode, while such a free retired the ring under the
 *   running loop.) The port: libevent's listener releases it before free
 *   returns; so does evuring when the loop thread completes the
 *   cancellation within 100 ms, else free retires the ring and the kernel's
 *   asynchronous teardown releases the port a few ms later: the test allows
 *   1 s and prints the delay.
 */
#include "harness.h"
#ifdef EVU_TEST_EPOLL_VIA
#include "epoll_via.h"
#endif

#include <signal.h>
#include <unistd.h>

#define NBYTES 50
#define NCONNS 50

static int conns;

static void acc_cb(struct evconnlistener *lev, evutil_socket_t fd,
		   struct sockaddr *sa, int socklen, void *arg)
{
	__atomic_add_fetch(&conns, 1, __ATOMIC_RELEASE); /* read from main while the loop runs in a thread */
	close(fd);
}

static int conns_at_least(void *arg) { return conns >= *(int *)arg; }

static void timer_cb(evutil_socket_t fd, short what, void *arg)
{
	*(long long *)arg = harness_now_ms();
}

static int bytes_read;

static void read_cb(evutil_socket_t fd, short what, void *arg)
{
	char buf[64];
	ssize_t n;

	while ((n = read(fd, buf, sizeof buf)) > 0)
		bytes_read += (int)n;
}

struct feeder {
	int wfd;
	struct sockaddr_in sin;
};

/* Bytes on a socketpair and connections to the listener, interleaved. */
static void *feed(void *arg)
{
	struct feeder *f = arg;

	for (int i = 0; i < NBYTES; i++) {
		int c = harness_connect((struct sockaddr *)&f->sin, sizeof f->sin, 0, NULL);

		close(c);
		CHECK_EQ(write(f->wfd, "b", 1), 1);
		harness_sleep_ms(1);
	}
	return NULL;
}

static int all_fed(void *arg)
{
	return bytes_read >= NBYTES && conns >= *(int *)arg;
}

static volatile sig_atomic_t signalled;

static void sig_cb(evutil_socket_t sig, short what, void *arg)
{
	signalled = 1;
}

static void *raise_later(void *arg)
{
	harness_sleep_ms(30);
	kill(getpid(), SIGUSR1);
	return NULL;
}

static void *run_loop(void *arg)
{
	event_base_dispatch(arg);
	return NULL;
}

int main(void)
{
	struct event_base *base;
	struct evconnlistener *lev, *lev2;
	struct sockaddr_in sin, sin2;
	struct event *tev, *rev, *sev;
	struct feeder f;
	pthread_t tid;
	long long t0, fired = 0;
	int want, expect, pair[2], fds_before, fd;

	harness_init("ring_wait");
	harness_use_threads();
	base = harness_base();

	harness_phase("the loop sleeps where it should");
	errno = 0;
	CHECK_EQ(evuring_base_sleeps_in_ring(NULL), -1);
	CHECK_EQ(errno, EINVAL);
	lev = harness_listen_ipv4(base, acc_cb, NULL, LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE,
				  -1, &sin);
	expect = harness_wait_policy(evuring_listener_backend(lev)) == 'r';
	CHECK_EQ(evuring_base_sleeps_in_ring(base), 0);
	close(harness_connect((struct sockaddr *)&sin, sizeof sin, 0, NULL));
	want = 1;
	CHECK(harness_run_until(base, conns_at_least, &want, 3000));
	harness_run_for(base, 20);
	printf("EVURING_WAIT=%s: the loop sleeps in %s\n",
	       getenv("EVURING_WAIT") ? getenv("EVURING_WAIT") : "(unset)",
	       evuring_base_sleeps_in_ring(base) ? "the ring" : "epoll");
	CHECK_EQ(evuring_base_sleeps_in_ring(base), expect);

	harness_phase("a timer fires, not early");
	tev = evtimer_new(base, timer_cb, &fired);
	{
		struct timeval tv = { 0, 60 * 1000 };

		t0 = harness_now_ms();
		evtimer_add(tev, &tv);
	}
	CHECK_EQ(event_base_loop(base, EVLOOP_ONCE), 0);
	CHECKF(fired, "one EVLOOP_ONCE pass returned without the timer");
	CHECKF(fired - t0 >= 59 && fired - t0 < 2000, "timer of 60 ms fired after %lld ms",
	       fired - t0);
	event_free(tev);

	harness_phase("socket events and connections, interleaved");
	REQUIRE_SYS(evutil_socketpair(AF_UNIX, SOCK_STREAM, 0, pair));
	REQUIRE_SYS(evutil_make_socket_nonblocking(pair[0]));
	rev = event_new(base, pair[0], EV_READ | EV_PERSIST, read_cb, NULL);
	event_add(rev, NULL);
	f.wfd = pair[1];
	f.sin = sin;
	want = conns + NBYTES;
	CHECK_EQ(pthread_create(&tid, NULL, feed, &f), 0);
	CHECK(harness_run_until(base, all_fed, &want, 10000));
	pthread_join(tid, NULL);
	harness_run_for(base, 20);
	CHECK_EQ(bytes_read, NBYTES);
	CHECK_EQ(conns, want);
	event_free(rev);
	close(pair[0]);
	close(pair[1]);

	harness_phase("a signal event fires");
	sev = evsignal_new(base, SIGUSR1, sig_cb, NULL);
	evsignal_add(sev, NULL);
	CHECK_EQ(pthread_create(&tid, NULL, raise_later, NULL), 0);
	t0 = harness_now_ms();
	while (!signalled && harness_now_ms() - t0 < 3000)
		event_base_loop(base, EVLOOP_ONCE);
	pthread_join(tid, NULL);
	CHECK(signalled);
	event_free(sev);

	harness_phase("loopbreak from another thread");
	CHECK_EQ(pthread_create(&tid, NULL, run_loop, base), 0);
	harness_sleep_ms(50);
	t0 = harness_now_ms();
	CHECK_EQ(event_base_loopbreak(base), 0);
	pthread_join(tid, NULL);
	CHECKF(harness_now_ms() - t0 < 2000, "loopbreak took %lld ms", harness_now_ms() - t0);

	harness_phase("free from another thread while the loop sleeps");
	lev2 = harness_listen_ipv4(base, acc_cb, NULL, LEV_OPT_CLOSE_ON_FREE, -1, &sin2);
	CHECK_EQ(pthread_create(&tid, NULL, run_loop, base), 0);
	close(harness_connect((struct sockaddr *)&sin, sizeof sin, 0, NULL));
	harness_sleep_ms(50);
	harness_loop_barrier(base);
	fd = evconnlistener_get_fd(lev);
	fds_before = harness_fd_count();
	t0 = harness_now_ms();
	evconnlistener_free(lev);
	CHECKF(harness_now_ms() - t0 < 2500, "free took %lld ms", harness_now_ms() - t0);
	CHECKF(!harness_fd_is_open(fd) || harness_fd_count() < fds_before,
	       "the freed listener's socket is still open");
	{
		int s = socket(AF_INET, SOCK_STREAM, 0), one = 1, tries = 0;

		REQUIRE_SYS(s);
		setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
		t0 = harness_now_ms();
		while (bind(s, (struct sockaddr *)&sin, sizeof sin) != 0 && tries++ < 1000)
			harness_sleep_ms(1);
		printf("port released %lld ms after free returned\n", harness_now_ms() - t0);
		CHECKF(tries <= 1000, "port %u still bound 1 s after free returned",
		       ntohs(sin.sin_port));
		close(s);
	}
	/* the loop, still running, serves the base's other listener */
	want = __atomic_load_n(&conns, __ATOMIC_ACQUIRE) + 1;
	close(harness_connect((struct sockaddr *)&sin2, sizeof sin2, 0, NULL));
	t0 = harness_now_ms();
	while (__atomic_load_n(&conns, __ATOMIC_ACQUIRE) < want && harness_now_ms() - t0 < 3000)
		harness_sleep_ms(1);
	harness_loop_barrier(base);
	CHECK_EQ(event_base_loopbreak(base), 0);
	pthread_join(tid, NULL);
	CHECKF(conns == want, "the other listener accepted %d of 1 connection after the free",
	       conns - want + 1);
	evconnlistener_free(lev2);

#ifdef EVU_TEST_EPOLL_VIA
	/* libevent's loop waited through the export under test */
	printf("%ld waits through %s\n", epoll_via_calls(), epoll_via_name());
	CHECK(epoll_via_calls() > 0);
#endif
	event_base_free(base);
	printf("PASS\n");
	return 0;
}
