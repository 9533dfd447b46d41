/*
 * free_releases_port: once evconnlistener_free() of a LEV_OPT_CLOSE_ON_FREE
 * listener has returned, its port is free again: a new socket can bind and
 * listen on it at once (SO_REUSEADDR does not let a second socket listen on
 * a port that is still listening). Programs that restart a listener on the
 * same port rely on this. Phases:
 *  A. free from a timer callback of the loop, the listener armed and having
 *     accepted, then bind at once, in that callback;
 *  B. free from the loop's own callback of the listener (libevent closes
 *     the socket once that callback has returned): bind in the next loop
 *     iteration;
 *  C. LEV_OPT_THREADSAFE, the loop running in another thread and busy with
 *     a second listener's slow callbacks: free from the main thread between
 *     connections, then bind at once; 40 rounds;
 *  D. free from another listener's callback (same base), the freed one armed
 *     and having accepted, then bind at once, in that callback.
 */
#include "harness.h"

#include <unistd.h>

#define ROUNDS 40

struct ctx {
	atomic_int calls;
	struct sockaddr_in sin;
	struct evconnlistener *lev;
	int bound;      /* phase A/B: bind result observed in the loop */
	int bind_errno;
};

static void accept_cb(struct evconnlistener *lev, evutil_socket_t fd,
		      struct sockaddr *sa, int socklen, void *arg)
{
	struct ctx *c = arg;

	(void)lev; (void)sa; (void)socklen;
	close(fd);
	atomic_fetch_add(&c->calls, 1);
}

/* A listening socket on @p sin's port, or -1 with errno. */
static int try_listen(const struct sockaddr_in *sin)
{
	int one = 1, fd = socket(AF_INET, SOCK_STREAM, 0), e;

	REQUIRE_SYS(fd);
	REQUIRE_SYS(setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one));
	if (bind(fd, (const struct sockaddr *)sin, sizeof *sin) == 0 &&
	    listen(fd, 8) == 0)
		return fd;
	e = errno;
	close(fd);
	errno = e;
	return -1;
}

static void note_bind(struct ctx *c)
{
	int fd = try_listen(&c->sin);

	c->bound = fd >= 0;
	c->bind_errno = fd >= 0 ? 0 : errno;
	if (fd >= 0)
		close(fd);
}

static int calls_at_least_one(void *arg)
{
	return atomic_load(&((struct ctx *)arg)->calls) > 0;
}

/* Connect, and wait (the loop running) until the listener has accepted. */
static void one_connection(struct event_base *base, struct ctx *c)
{
	int fd = harness_connect((struct sockaddr *)&c->sin, sizeof c->sin, 0, NULL);

	CHECKF(harness_run_until(base, calls_at_least_one, c, 5000),
	       "no callback for a connection");
	close(fd);
}

static void free_then_bind_cb(evutil_socket_t fd, short what, void *arg)
{
	struct ctx *c = arg;

	(void)fd; (void)what;
	evconnlistener_free(c->lev);
	c->lev = NULL;
	note_bind(c);
}

static void phase_a(void)
{
	struct event_base *base = harness_base();
	struct ctx c = { 0 };
	struct timeval zero = { 0, 0 };

	harness_phase("A: free from a timer callback, bind in it");
	c.lev = harness_listen_ipv4(base, accept_cb, &c,
				    LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE, -1,
				    &c.sin);
	one_connection(base, &c);
	c.bound = -1;
	CHECK(event_base_once(base, -1, EV_TIMEOUT, free_then_bind_cb, &c,
			      &zero) == 0);
	harness_run_for(base, 50);
	CHECKF(c.bound == 1, "bind after free in a timer callback: %s",
	       c.bound < 0 ? "never ran" : strerror(c.bind_errno));
	event_base_free(base);
}

static void free_in_cb(struct evconnlistener *lev, evutil_socket_t fd,
		       struct sockaddr *sa, int socklen, void *arg)
{
	struct ctx *c = arg;

	(void)sa; (void)socklen;
	close(fd);
	atomic_fetch_add(&c->calls, 1);
	evconnlistener_free(lev);
	c->lev = NULL;
}

static void bind_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd; (void)what;
	note_bind(arg);
}

static void phase_b(void)
{
	struct event_base *base = harness_base();
	struct ctx c = { 0 };
	struct timeval zero = { 0, 0 };
	int client;

	harness_phase("B: free in its own callback, bind in the next iteration");
	c.lev = harness_listen_ipv4(base, free_in_cb, &c,
				    LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE, -1,
				    &c.sin);
	client = harness_connect((struct sockaddr *)&c.sin, sizeof c.sin, 0, NULL);
	CHECKF(harness_run_until(base, calls_at_least_one, &c, 5000),
	       "no callback for a connection");
	c.bound = -1;
	CHECK(event_base_once(base, -1, EV_TIMEOUT, bind_cb, &c, &zero) == 0);
	harness_run_for(base, 50);
	CHECKF(c.bound == 1, "bind after free in the callback: %s",
	       c.bound < 0 ? "never ran" : strerror(c.bind_errno));
	close(client);
	event_base_free(base);
}

static struct event_base *loop_base;

static void *loop_thread(void *arg)
{
	(void)arg;
	CHECK(event_base_loop(loop_base, EVLOOP_NO_EXIT_ON_EMPTY) >= 0);
	return NULL;
}

static void slow_cb(struct evconnlistener *lev, evutil_socket_t fd,
		    struct sockaddr *sa, int socklen, void *arg)
{
	(void)lev; (void)sa; (void)socklen; (void)arg;
	close(fd);
	harness_sleep_ms(1);
}

static void phase_c(void)
{
	struct ctx c = { 0 }, busy = { 0 };
	struct evconnlistener *busy_lev;
	struct harness_storm storm;
	pthread_t tid;
	int port = 0;

	harness_phase("C: THREADSAFE, free from another thread, bind at once");
	loop_base = harness_base();
	busy_lev = harness_listen_ipv4(loop_base, slow_cb, NULL,
				       LEV_OPT_THREADSAFE | LEV_OPT_CLOSE_ON_FREE, -1,
				       &busy.sin);
	harness_storm_start(&storm, (struct sockaddr *)&busy.sin, sizeof busy.sin,
			    4000, 2, 200);
	CHECK(pthread_create(&tid, NULL, loop_thread, NULL) == 0);
	for (int r = 0; r < ROUNDS; r++) {
		long long deadline = harness_now_ms() + 5000;
		int client, fd;

		atomic_store(&c.calls, 0);
		if (r == 0) {
			c.lev = harness_listen_ipv4(loop_base, accept_cb, &c,
						    LEV_OPT_THREADSAFE |
						    LEV_OPT_CLOSE_ON_FREE |
						    LEV_OPT_REUSEABLE, -1, &c.sin);
			port = harness_port((struct sockaddr *)&c.sin);
		} else {
			c.lev = harness_new_bind(loop_base, accept_cb, &c,
						 LEV_OPT_THREADSAFE |
						 LEV_OPT_CLOSE_ON_FREE |
						 LEV_OPT_REUSEABLE, -1,
						 (struct sockaddr *)&c.sin, sizeof c.sin);
		}
		client = harness_connect((struct sockaddr *)&c.sin, sizeof c.sin, 0,
					 NULL);
		while (atomic_load(&c.calls) == 0 && harness_now_ms() < deadline)
			harness_sleep_ms(1);
		CHECKF(atomic_load(&c.calls) == 1, "round %d: %d callbacks", r,
		       atomic_load(&c.calls));
		close(client);
		harness_loop_barrier(loop_base);
		evconnlistener_free(c.lev);
		fd = try_listen(&c.sin);
		CHECKF(fd >= 0, "round %d: port %d still busy after free returned: %s",
		       r, port, strerror(errno));
		close(fd);
	}
	atomic_store(&storm.next, storm.total); /* no more connects */
	harness_storm_join(&storm);
	harness_storm_free(&storm);
	evconnlistener_free(busy_lev);
	CHECK(event_base_loopbreak(loop_base) == 0);
	CHECK(pthread_join(tid, NULL) == 0);
	event_base_free(loop_base);
}

struct pair {
	struct ctx victim;
	int calls;
};

static void free_other_cb(struct evconnlistener *lev, evutil_socket_t fd,
			  struct sockaddr *sa, int socklen, void *arg)
{
	struct pair *p = arg;

	(void)lev; (void)sa; (void)socklen;
	close(fd);
	if (p->calls++ == 0)
		free_then_bind_cb(-1, 0, &p->victim);
}

static int pair_called(void *arg)
{
	return ((struct pair *)arg)->calls > 0;
}

static void phase_d(void)
{
	struct event_base *base = harness_base();
	struct pair p = { 0 };
	struct evconnlistener *other;
	struct sockaddr_in other_sin;
	int client;

	harness_phase("D: free from another listener's callback, bind in it");
	p.victim.lev = harness_listen_ipv4(base, accept_cb, &p.victim,
					   LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE, -1,
					   &p.victim.sin);
	other = harness_listen_ipv4(base, free_other_cb, &p, LEV_OPT_CLOSE_ON_FREE,
				    -1, &other_sin);
	one_connection(base, &p.victim);
	p.victim.bound = -1;
	client = harness_connect((struct sockaddr *)&other_sin, sizeof other_sin, 0,
				 NULL);
	CHECKF(harness_run_until(base, pair_called, &p, 5000),
	       "no callback on the other listener");
	CHECKF(p.victim.bound == 1, "bind after free in another listener's callback: %s",
	       p.victim.bound < 0 ? "never ran" : strerror(p.victim.bind_errno));
	close(client);
	evconnlistener_free(other);
	event_base_free(base);
}

int main(void)
{
	int baseline;

	harness_init("free_releases_port");
	harness_use_threads();
	baseline = harness_fd_count();
	phase_a();
	phase_b();
	phase_c();
	phase_d();
	CHECK_EQ(harness_fd_count(), baseline);
	return 0;
}
