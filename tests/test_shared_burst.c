/*
 * shared_burst: four loops accept on one socket (threads, prefork children
 * with a listener each, a listener made before fork() in every child), each
 * callback busy for 2 ms; 400 connections, 8 at a time. As with libevent's
 * listener the burst must spread: every loop takes at least 15% of it, each
 * connection is delivered once, and the burst takes at most 1.2 times as
 * long as libevent's listener takes in the same run (interleaved rounds of
 * the reference build, test_shared_burst_ref, or of this binary without a
 * preloaded evuring).
 * Usage: test_shared_burst [threads|fork-socket|fork-listener]  (default: all)
 *        test_shared_burst --once PATTERN   one burst, prints burst_ms=
 */
#include "shared_loops.h"

#include <unistd.h>

#define NLOOPS 4
#define CONNS 400
#define CLIENTS 8
#define CB_US 2000
#define MIN_SHARE 0.15
#define MAX_RATIO 1.2
#define ROUNDS 3

struct clients {
	struct shared_run *run;
	atomic_int next;
	atomic_int failed;
};

/* Connect, wait for the server's close, again. */
static void *client(void *arg)
{
	struct clients *cl = arg;

	while (atomic_fetch_add(&cl->next, 1) < CONNS) {
		int fd = shared_connect(cl->run);

		if (fd < 0 || !harness_wait_peer_closed(fd, 5000))
			atomic_fetch_add(&cl->failed, 1);
		if (fd >= 0)
			close(fd);
	}
	return NULL;
}

/* One burst: its time in ms, each loop's count in counts[]. */
static double burst(enum shared_pattern pattern, int counts[NLOOPS])
{
	struct clients cl = { 0 };
	pthread_t tids[CLIENTS];
	long long t0, t1;

	cl.run = shared_start(pattern, NLOOPS, CB_US, 0);
	t0 = shared_now_ns();
	for (int i = 0; i < CLIENTS; i++)
		CHECK(pthread_create(&tids[i], NULL, client, &cl) == 0);
	for (int i = 0; i < CLIENTS; i++)
		CHECK(pthread_join(tids[i], NULL) == 0);
	t1 = shared_now_ns();
	CHECKF(atomic_load(&cl.failed) == 0, "%d connections failed or were not closed by the server",
	       atomic_load(&cl.failed));
	CHECKF(shared_wait_delivered(cl.run, CONNS, 2000), "%d of %d delivered",
	       atomic_load(&cl.run->delivered), CONNS);
	shared_check_once(cl.run);
	for (int i = 0; i < NLOOPS; i++)
		counts[i] = atomic_load(&cl.run->per_loop[i]);
	shared_stop(cl.run);
	return (t1 - t0) / 1e6;
}

/* The same burst by libevent's own listener. */
static double reference_burst(enum shared_pattern pattern)
{
#ifdef EVU_TEST_REF_EXE
	return shared_reference_once(EVU_TEST_REF_EXE, pattern, "burst_ms");
#else
	return shared_reference_once(NULL, pattern, "burst_ms");
#endif
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

static void spread(enum shared_pattern pattern)
{
	double self[ROUNDS], ref[ROUNDS];
	int counts[NLOOPS], compare = shared_has_candidate();

	harness_phase(shared_pattern_name(pattern));
	for (int r = 0; r < ROUNDS; r++) {
		/* alternate which goes first: the machine is shared and noisy */
		if (compare && r % 2 == 0)
			ref[r] = reference_burst(pattern);
		self[r] = burst(pattern, counts);
		if (compare && r % 2 == 1)
			ref[r] = reference_burst(pattern);
		printf("[%s] round %d: %.1f ms, per loop", shared_pattern_name(pattern), r, self[r]);
		for (int i = 0; i < NLOOPS; i++)
			printf(" %d", counts[i]);
		if (compare)
			printf("; libevent's listener %.1f ms", ref[r]);
		printf("\n");
		for (int i = 0; i < NLOOPS; i++)
			CHECKF(counts[i] >= MIN_SHARE * CONNS,
			       "loop %d took %d of %d connections (at least %.0f%% expected)", i,
			       counts[i], CONNS, MIN_SHARE * 100);
		harness_watchdog_reset();
	}
	if (!compare)
		return;
	qsort(self, ROUNDS, sizeof self[0], cmp_double);
	qsort(ref, ROUNDS, sizeof ref[0], cmp_double);
	printf("[%s] median %.1f ms against libevent's %.1f ms: %.3f\n",
	       shared_pattern_name(pattern), self[ROUNDS / 2], ref[ROUNDS / 2],
	       self[ROUNDS / 2] / ref[ROUNDS / 2]);
	CHECKF(self[ROUNDS / 2] <= MAX_RATIO * ref[ROUNDS / 2],
	       "the burst took %.1f ms (median), libevent's listener %.1f ms: more than %.1fx",
	       self[ROUNDS / 2], ref[ROUNDS / 2], MAX_RATIO);
}

int main(int argc, char **argv)
{
	if (argc > 2 && !strcmp(argv[1], "--once")) {
		int p = shared_pattern_parse(argv[2]), counts[NLOOPS];

		CHECKF(p >= 0, "unknown pattern %s", argv[2]);
		printf("burst_ms=%.3f\n", burst((enum shared_pattern)p, counts));
		return 0;
	}
	harness_init("shared_burst");
	shared_each_pattern(argc, argv, spread);
	printf("PASS\n");
	return 0;
}
