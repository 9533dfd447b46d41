/*
 * shared_stall: four loops accept on one socket (threads, prefork children
 * with a listener each, and a listener made before fork() in every child);
 * one loop's callback blocks for 2 s. Every connection made meanwhile, three
 * at a time, must reach another loop's callback within 50 ms (libevent's
 * loops each wake for the socket and whichever is free takes it), each
 * exactly once, and the blocked loop must take nothing more. An evuring run
 * also runs libevent's listener the same way (the reference build, or this
 * binary without a preloaded evuring) and prints both figures.
 * Usage: test_shared_stall [threads|fork-socket|fork-listener]  (default: all)
 *        test_shared_stall --once PATTERN   one run, prints worst_ms=
 */
#include "shared_loops.h"

#include <unistd.h>

#define NLOOPS 4
#define BLOCK_MS 2000
#define ROUNDS 10
#define PER_ROUND 3
#define ROUND_GAP_MS 100
#define LIMIT_MS 50

/* One run: the worst connect-to-callback of the connections made while a
 * loop was blocked, in ns; all checks done. */
static long long stall_once(enum shared_pattern pattern)
{
	struct shared_run *run;
	int fds[ROUNDS * PER_ROUND], blocker, n = 0, blocked;
	long long worst = 0;
	int worst_port = -1;

	run = shared_start(pattern, NLOOPS, 0, BLOCK_MS);
	atomic_store(&run->block_next, 1);
	blocker = shared_connect(run);
	CHECK(blocker >= 0);
	CHECKF(shared_wait_delivered(run, 1, 2000), "the first connection was not delivered in 2 s");
	blocked = atomic_load(&run->blocked_loop);
	CHECK(blocked >= 0);

	for (int r = 0; r < ROUNDS; r++) {
		for (int k = 0; k < PER_ROUND; k++) {
			fds[n] = shared_connect(run);
			CHECK(fds[n] >= 0);
			n++;
		}
		harness_sleep_ms(ROUND_GAP_MS);
	}
	CHECKF(atomic_load(&run->block_end_ns) == 0,
	       "the connections took longer than the blocked callback");
	CHECKF(shared_wait_delivered(run, 1 + n, 3000), "%d of %d connections delivered",
	       atomic_load(&run->delivered), 1 + n);

	for (int port = 0; port < 65536; port++) {
		struct shared_conn *c = &run->conns[port];
		long long lat;

		if (!atomic_load(&c->connects) || atomic_load(&c->cb_ns) == atomic_load(&run->block_start_ns))
			continue; /* no connection, or the blocker's */
		lat = atomic_load(&c->cb_ns) - atomic_load(&c->start_ns);
		if (lat > worst) {
			worst = lat;
			worst_port = port;
		}
	}
	printf("[%s] loop %d blocked %d ms; worst connect-to-callback of the other %d "
	       "connections: %.3f ms; per loop:", shared_pattern_name(pattern), blocked, BLOCK_MS,
	       n, worst / 1e6);
	for (int i = 0; i < NLOOPS; i++)
		printf(" %d", atomic_load(&run->per_loop[i]));
	printf("\n");
	CHECKF(worst <= LIMIT_MS * 1000000LL,
	       "client port %d waited %.1f ms for its callback (limit %d ms) while loop %d was "
	       "blocked", worst_port, worst / 1e6, LIMIT_MS, blocked);
	CHECKF(atomic_load(&run->per_loop[blocked]) == 1,
	       "the blocked loop took %d connections", atomic_load(&run->per_loop[blocked]));
	shared_check_once(run);

	close(blocker);
	for (int i = 0; i < n; i++)
		close(fds[i]);
	shared_stop(run);
	return worst;
}

static void stall(enum shared_pattern pattern)
{
	harness_phase(shared_pattern_name(pattern));
	stall_once(pattern);
	if (shared_has_candidate()) {
#ifdef EVU_TEST_REF_EXE
		const char *ref = EVU_TEST_REF_EXE;
#else
		const char *ref = NULL;
#endif
		printf("[%s] libevent's listener in the same run: %.3f ms\n",
		       shared_pattern_name(pattern), shared_reference_once(ref, pattern, "worst_ms"));
	}
	harness_watchdog_reset();
}

int main(int argc, char **argv)
{
	if (argc > 2 && !strcmp(argv[1], "--once")) {
		int p = shared_pattern_parse(argv[2]);

		CHECKF(p >= 0, "unknown pattern %s", argv[2]);
		printf("worst_ms=%.3f\n", stall_once((enum shared_pattern)p) / 1e6);
		return 0;
	}
	harness_init("shared_stall");
	shared_each_pattern(argc, argv, stall);
	printf("PASS\n");
	return 0;
}
