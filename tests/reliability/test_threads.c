/*
 * threads: LEV_OPT_THREADSAFE listeners with evthread_use_pthreads(); the
 * loop runs in its own thread (EVLOOP_NO_EXIT_ON_EMPTY), the main thread
 * calls the listener API concurrently.
 *
 * A  enable/disable from the main thread, 300 cycles, while a client thread
 *    keeps connecting: no callback starts while the main thread holds the
 *    listener disabled (flag set after disable returned, cleared before
 *    enable), every connection is delivered exactly once in the end.
 * B  disable while a callback is running (it sleeps 150 ms): disable waits
 *    until the callback returned; no callback starts after disable returned
 *    (connections keep arriving); enable delivers them.
 * C  set_cb while a callback is running: set_cb waits for it; the old
 *    callback never runs again, the new one gets the next connections.
 * D  free while a callback is running: free waits for it; no callback after
 *    free returned; the port is released (CLOSE_ON_FREE).
 * E  create in the main thread while the loop runs in another, storm, free
 *    from the main thread; 40 rounds: no callback after free returned.
 * Nothing may deadlock: the harness watchdog bounds every phase, and waits
 * for other threads are bounded.
 *
 * B-E follow libevent 2.2.1, which holds the listener lock across the
 * callback. libevent 2.1.12 releases the lock around the callback, and a
 * disable/free from another thread then deadlocks against its event_del
 * waiting for that callback (fixed in 2.2, regress disable_in_thread): the
 * reference run does A without concurrent connections (toggles while the
 * loop is idle, connections afterwards), and skips B-E.
 */
#include "rel_common.h"

struct lctx {
	atomic_int stopped;     /* set once disable/free/set_cb returned */
	atomic_int in_cb, calls, late, sleep_ms;
	atomic_ushort seen[65536];
};

static struct event_base *base;
static pthread_t loop_tid;

static void *loop_thread(void *arg)
{
	CHECK(event_base_loop(base, EVLOOP_NO_EXIT_ON_EMPTY) >= 0);
	return NULL;
}

static void acc_cb(struct evconnlistener *lev, evutil_socket_t fd,
		   struct sockaddr *sa, int socklen, void *arg)
{
	struct lctx *c = arg;
	int ms;
	if (atomic_load(&c->stopped))
		atomic_fetch_add(&c->late, 1);
	atomic_store(&c->in_cb, 1);
	atomic_fetch_add(&c->seen[harness_port(sa)], 1);
	ms = atomic_load(&c->sleep_ms);
	if (ms)
		harness_sleep_ms(ms);
	atomic_fetch_add(&c->calls, 1); /* before the client can see the byte */
	rel_serve_and_close(fd, 'x');
	atomic_store(&c->in_cb, 0);
}

static int wait_flag(atomic_int *v, int want, int ms)
{
	long long end = harness_now_ms() + ms;
	while (atomic_load(v) < want) {
		if (harness_now_ms() >= end)
			return 0;
		harness_sleep_ms(1);
	}
	return 1;
}

/* Client: connect, then wait for the server's byte; returns the outcome. */
static enum rel_outcome client_once(const struct sockaddr_in *sin, int ms,
				    uint16_t *port)
{
	int fd = harness_try_connect((const struct sockaddr *)sin, sizeof *sin);
	struct pollfd p;
	char ch;
	enum rel_outcome o;
	if (fd < 0)
		return errno == ECONNREFUSED ? REL_REFUSED : REL_CONNECT_ERROR;
	if (port)
		*port = rel_local_port(fd);
	p.fd = fd;
	p.events = POLLIN;
	if (poll(&p, 1, ms) <= 0)
		o = REL_STUCK;
	else
		o = recv(fd, &ch, 1, 0) == 1 ? REL_DELIVERED : REL_DROPPED;
	close(fd);
	return o;
}

/* Nonblocking connect that must complete (queued in the backlog). */
static int client_start(const struct sockaddr_in *sin)
{
	return harness_connect((const struct sockaddr *)sin, sizeof *sin, 0, NULL);
}

static int got_byte(int fd, int ms)
{
	struct pollfd p = {fd, POLLIN, 0};
	char ch;
	return poll(&p, 1, ms) > 0 && recv(fd, &ch, 1, 0) == 1 && ch == 'x';
}

/* ---- A ------------------------------------------------------------------ */

struct trickle {
	struct sockaddr_in sin;
	atomic_int stop, delivered, other;
	atomic_ushort by_port[65536];
};

static void *trickle_thread(void *arg)
{
	struct trickle *t = arg;
	while (!atomic_load(&t->stop)) {
		uint16_t port = 0;
		enum rel_outcome o = client_once(&t->sin, 5000, &port);
		if (o == REL_DELIVERED) {
			atomic_fetch_add(&t->by_port[port], 1);
			atomic_fetch_add(&t->delivered, 1);
		} else {
			atomic_fetch_add(&t->other, 1);
		}
	}
	return NULL;
}

static void phase_a(void)
{
	static struct lctx c;
	static struct trickle t;
	struct evconnlistener *lev;
	pthread_t tid;
	int missed = 0, dups = 0, concurrent = !harness_is_reference();

	harness_phase("A: enable/disable from another thread while connections arrive");
	lev = harness_listen_ipv4(base, acc_cb, &c,
				  LEV_OPT_THREADSAFE | LEV_OPT_CLOSE_ON_FREE |
					  LEV_OPT_REUSEABLE, 128, &t.sin);
	if (concurrent)
		CHECK(pthread_create(&tid, NULL, trickle_thread, &t) == 0);
	for (int i = 0; i < 300; i++) {
		CHECK_EQ(evconnlistener_disable(lev), 0);
		atomic_store(&c.stopped, 1);
		if (i % 3 == 0)
			harness_sleep_ms(1);
		atomic_store(&c.stopped, 0);
		CHECK_EQ(evconnlistener_enable(lev), 0);
		if (i % 2 == 0)
			harness_sleep_ms(1);
	}
	if (!concurrent)
		CHECK(pthread_create(&tid, NULL, trickle_thread, &t) == 0);
	harness_sleep_ms(concurrent ? 20 : 200);
	atomic_store(&t.stop, 1);
	rel_join_within(tid, 10000, "client thread");
	harness_sleep_ms(50);
	for (int p = 0; p < 65536; p++) {
		int want = atomic_load(&t.by_port[p]), got = atomic_load(&c.seen[p]);
		missed += got < want ? want - got : 0;
		dups += got > want ? got - want : 0;
	}
	printf("A: %d delivered, %d not delivered, %d callbacks, %d late\n",
	       atomic_load(&t.delivered), atomic_load(&t.other),
	       atomic_load(&c.calls), atomic_load(&c.late));
	CHECKF(atomic_load(&c.late) == 0, "%d callbacks started while the "
	       "listener was disabled from another thread", atomic_load(&c.late));
	CHECKF(atomic_load(&t.other) == 0, "%d connections not delivered",
	       atomic_load(&t.other));
	CHECKF(!missed && !dups, "%d missed, %d duplicated", missed, dups);
	CHECK(atomic_load(&t.delivered) > 0);
	harness_loop_barrier(base);
	evconnlistener_free(lev);
}

/* ---- B, C, D ------------------------------------------------------------ */

static void phase_b(void)
{
	static struct lctx c;
	struct evconnlistener *lev;
	struct sockaddr_in sin;
	int fd, more[3], calls;
	long long t0, dt;

	harness_phase("B: disable from another thread while the callback runs");
	lev = harness_listen_ipv4(base, acc_cb, &c,
				  LEV_OPT_THREADSAFE | LEV_OPT_CLOSE_ON_FREE |
					  LEV_OPT_REUSEABLE, 128, &sin);
	atomic_store(&c.sleep_ms, 150);
	fd = client_start(&sin);
	CHECKF(wait_flag(&c.in_cb, 1, 3000), "callback never started");
	t0 = harness_now_ms();
	CHECK_EQ(evconnlistener_disable(lev), 0);
	dt = harness_now_ms() - t0;
	atomic_store(&c.stopped, 1);
	CHECKF(atomic_load(&c.in_cb) == 0,
	       "disable returned after %lld ms while the callback still runs", dt);
	CHECKF(atomic_load(&c.calls) == 1, "disable returned before the running "
	       "callback finished (%d calls)", atomic_load(&c.calls));
	printf("B: disable waited %lld ms for the running callback\n", dt);
	CHECK(got_byte(fd, 2000));
	close(fd);
	atomic_store(&c.sleep_ms, 0);
	for (int i = 0; i < 3; i++)
		more[i] = client_start(&sin);
	harness_sleep_ms(200);
	calls = atomic_load(&c.calls);
	CHECKF(calls == 1 && atomic_load(&c.late) == 0,
	       "%d callbacks after disable returned", calls - 1);
	atomic_store(&c.stopped, 0);
	CHECK_EQ(evconnlistener_enable(lev), 0);
	for (int i = 0; i < 3; i++) {
		CHECKF(got_byte(more[i], 3000), "connection %d queued while "
		       "disabled was not delivered after enable", i);
		close(more[i]);
	}
	evconnlistener_free(lev);
}

static void phase_c(void)
{
	static struct lctx c1, c2;
	struct evconnlistener *lev;
	struct sockaddr_in sin;
	int fd;

	harness_phase("C: set_cb from another thread while the callback runs");
	lev = harness_listen_ipv4(base, acc_cb, &c1,
				  LEV_OPT_THREADSAFE | LEV_OPT_CLOSE_ON_FREE |
					  LEV_OPT_REUSEABLE, 128, &sin);
	atomic_store(&c1.sleep_ms, 150);
	fd = client_start(&sin);
	CHECKF(wait_flag(&c1.in_cb, 1, 3000), "callback never started");
	evconnlistener_set_cb(lev, acc_cb, &c2);
	atomic_store(&c1.stopped, 1);
	CHECKF(atomic_load(&c1.in_cb) == 0 && atomic_load(&c1.calls) == 1,
	       "set_cb returned while the old callback still runs");
	CHECK(got_byte(fd, 2000));
	close(fd);
	for (int i = 0; i < 5; i++)
		CHECK_EQ(client_once(&sin, 3000, NULL), REL_DELIVERED);
	CHECKF(atomic_load(&c1.late) == 0 && atomic_load(&c1.calls) == 1,
	       "old callback ran %d times after set_cb returned",
	       atomic_load(&c1.calls) - 1);
	CHECK_EQ(atomic_load(&c2.calls), 5);
	evconnlistener_free(lev);
}

static void phase_d(void)
{
	static struct lctx c;
	struct evconnlistener *lev;
	struct sockaddr_in sin;
	int fd, refused = 0;

	harness_phase("D: free from another thread while the callback runs");
	lev = harness_listen_ipv4(base, acc_cb, &c,
				  LEV_OPT_THREADSAFE | LEV_OPT_CLOSE_ON_FREE |
					  LEV_OPT_REUSEABLE, 128, &sin);
	atomic_store(&c.sleep_ms, 150);
	fd = client_start(&sin);
	CHECKF(wait_flag(&c.in_cb, 1, 3000), "callback never started");
	evconnlistener_free(lev);
	atomic_store(&c.stopped, 1);
	CHECKF(atomic_load(&c.in_cb) == 0 && atomic_load(&c.calls) == 1,
	       "free returned while the callback still runs");
	CHECK(got_byte(fd, 2000));
	close(fd);
	for (int i = 0; i < 3; i++)
		refused += client_once(&sin, 1000, NULL) == REL_REFUSED;
	harness_sleep_ms(50);
	CHECKF(atomic_load(&c.late) == 0, "%d callbacks after free returned",
	       atomic_load(&c.late));
	CHECKF(refused == 3, "the port still accepts connections after free "
	       "(CLOSE_ON_FREE): %d of 3 refused", refused);
}

/* ---- E ------------------------------------------------------------------ */

struct storm_e {
	struct sockaddr_in sin;
	atomic_int stop, n;
};

static void *storm_e_thread(void *arg)
{
	struct storm_e *s = arg;
	while (!atomic_load(&s->stop)) {
		client_once(&s->sin, 2000, NULL);
		atomic_fetch_add(&s->n, 1);
	}
	return NULL;
}

static void phase_e(void)
{
	static struct lctx cs[40];
	static struct storm_e st;
	pthread_t tids[2];
	int total_calls = 0;
	struct sockaddr_in sin = harness_sin("127.0.0.1", 0);

	harness_phase("E: create and free from another thread during a storm");
	/* a fixed port for all rounds */
	{
		struct evconnlistener *lev = harness_listen_ipv4(
			base, acc_cb, &cs[0], LEV_OPT_THREADSAFE | LEV_OPT_DISABLED |
			LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE, 128, &sin);
		evconnlistener_free(lev);
	}
	st.sin = sin;
	for (int i = 0; i < 2; i++)
		CHECK(pthread_create(&tids[i], NULL, storm_e_thread, &st) == 0);
	for (int r = 0; r < 40; r++) {
		struct evconnlistener *lev = harness_new_bind(
			base, acc_cb, &cs[r], LEV_OPT_THREADSAFE |
			LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE, 128,
			(struct sockaddr *)&sin, sizeof sin);
		harness_sleep_ms(5 + r % 7);
		evconnlistener_free(lev);
		atomic_store(&cs[r].stopped, 1);
	}
	harness_sleep_ms(100);
	atomic_store(&st.stop, 1);
	for (int i = 0; i < 2; i++)
		rel_join_within(tids[i], 10000, "storm thread");
	for (int r = 0; r < 40; r++) {
		CHECKF(atomic_load(&cs[r].late) == 0, "round %d: %d callbacks "
		       "after free returned", r, atomic_load(&cs[r].late));
		total_calls += atomic_load(&cs[r].calls);
	}
	printf("E: %d client connects, %d delivered over 40 listeners\n",
	       atomic_load(&st.n), total_calls);
	CHECK(total_calls > 0);
}

int main(void)
{
	int baseline;

	harness_init("threads");
	harness_use_threads();
	baseline = harness_fd_count();
	base = harness_base();
	CHECK(pthread_create(&loop_tid, NULL, loop_thread, NULL) == 0);

	phase_a();
	if (harness_is_reference()) {
		printf("reference: phases B-E skipped (libevent 2.1.12 deadlocks "
		       "when a listener is disabled or freed from another thread "
		       "while its callback runs; fixed in 2.2)\n");
	} else {
		phase_b();
		phase_c();
		phase_d();
		phase_e();
	}

	harness_phase("loop thread stops, fd count back at baseline");
	CHECK(event_base_loopbreak(base) == 0);
	rel_join_within(loop_tid, 5000, "loop thread");
	event_base_free(base);
	CHECK_EQ(harness_fd_count(), baseline);
	printf("PASS\n");
	return 0;
}
