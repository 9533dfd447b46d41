/*
 * storm_toggle: a storm of connections from 4 client threads while a 2 ms
 * timer keeps disabling and re-enabling the listener. Every connection a
 * client completed is accepted exactly once (matched by client port: no
 * misses, no duplicates), none is delivered while the listener is disabled,
 * and after everything is freed the process's fd count equals its baseline.
 */
#include "harness.h"

#include <unistd.h>

#define THREADS 4
#define WANT 3000
#define PACE_US 150 /* per client thread: the loop must see many toggles */

struct ctx {
	struct evconnlistener *lev;
	struct harness_storm storm;
	unsigned short seen[65536];
	int accepted, while_disabled, enabled, toggles;
};

static void storm_cb(struct evconnlistener *lev, evutil_socket_t fd,
		     struct sockaddr *sa, int socklen, void *arg)
{
	struct ctx *c = arg;
	if (!c->enabled)
		c->while_disabled++;
	c->seen[harness_port(sa)]++;
	c->accepted++;
	close(fd);
}

static void toggle_cb(evutil_socket_t fd, short what, void *arg)
{
	struct ctx *c = arg;
	if (c->enabled)
		CHECK_EQ(evconnlistener_disable(c->lev), 0);
	else
		CHECK_EQ(evconnlistener_enable(c->lev), 0);
	c->enabled = !c->enabled;
	c->toggles++;
}

static int storm_done(void *arg)
{
	struct ctx *c = arg;
	return harness_storm_finished(&c->storm) &&
	       c->accepted >= atomic_load(&c->storm.completed);
}

static int somaxconn(void)
{
	FILE *f = fopen("/proc/sys/net/core/somaxconn", "r");
	int v = 128;
	if (f) {
		if (fscanf(f, "%d", &v) != 1)
			v = 128;
		fclose(f);
	}
	return v;
}

int main(void)
{
	static struct ctx c;
	struct timeval every = {0, 2000};
	struct event_base *base;
	struct event *toggle;
	struct sockaddr_in sin;
	int baseline, total, missed = 0, dups = 0;

	harness_init("storm_toggle");
	baseline = harness_fd_count();
	base = harness_base();
	/* The accept queue must hold the whole storm even while the listener
	 * is disabled: an overflowing queue would drop completed handshakes,
	 * which is the kernel's doing, not the listener's. */
	total = WANT;
	if (somaxconn() - 64 < total)
		total = somaxconn() - 64;
	CHECKF(total >= 500, "net.core.somaxconn %d is too small", somaxconn());
	c.lev = harness_listen_ipv4(base, storm_cb, &c,
				    LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE,
				    total + 32, &sin);
	c.enabled = 1;
	toggle = event_new(base, -1, EV_PERSIST, toggle_cb, &c);
	CHECK(toggle && event_add(toggle, &every) == 0);

	harness_phase("storm while toggling");
	harness_storm_start(&c.storm, (struct sockaddr *)&sin, sizeof sin, total,
			    THREADS, PACE_US);
	CHECKF(harness_run_until(base, storm_done, &c, 20000),
	       "storm not drained in 20 s: %d completed, %d accepted, "
	       "%d failed, threads done %d", atomic_load(&c.storm.completed),
	       c.accepted, atomic_load(&c.storm.failed),
	       atomic_load(&c.storm.threads_done));
	event_free(toggle);
	if (!c.enabled) {
		CHECK_EQ(evconnlistener_enable(c.lev), 0);
		c.enabled = 1;
	}
	harness_run_for(base, 100); /* late duplicates would show here */
	harness_storm_join(&c.storm);

	harness_phase("every completed connection accepted exactly once");
	for (int p = 0; p < 65536; p++) {
		int want = atomic_load(&c.storm.by_port[p]), got = c.seen[p];
		if (got < want)
			missed += want - got;
		else if (got > want)
			dups += got - want;
	}
	printf("%d connections, %d completed, %d failed (first errno %d), "
	       "%d accepted, %d toggles\n", total,
	       atomic_load(&c.storm.completed), atomic_load(&c.storm.failed),
	       atomic_load(&c.storm.first_errno), c.accepted, c.toggles);
	CHECKF(atomic_load(&c.storm.failed) == 0, "%d client connects failed",
	       atomic_load(&c.storm.failed));
	CHECKF(!missed && !dups, "%d missed, %d duplicated", missed, dups);
	CHECK_EQ(c.accepted, atomic_load(&c.storm.completed));
	CHECKF(c.while_disabled == 0, "%d delivered while disabled",
	       c.while_disabled);
	/* Sanity of the test itself: the toggling really overlapped the storm. */
	CHECKF(c.toggles >= 10, "only %d toggles during the storm", c.toggles);

	harness_phase("fd count back at baseline");
	harness_storm_free(&c.storm);
	evconnlistener_free(c.lev);
	event_base_free(base);
	CHECK_EQ(harness_fd_count(), baseline);
	printf("PASS\n");
	return 0;
}
