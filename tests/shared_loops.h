/*
 * Several event loops accepting on one listening socket, as real programs
 * do it (for tests/test_shared_stall.c and tests/test_shared_burst.c):
 *   threads        one socket; a thread per loop, each with its own base and
 *                  evconnlistener_new() on that socket
 *   fork-socket    the socket made before fork(); a base and a listener in
 *                  each child (a prefork server)
 *   fork-listener  base and listener made before fork(); each child calls
 *                  event_reinit() and runs the loop
 * Every callback records, by client port, when and in which loop it ran, in
 * memory shared with forked children; the test's clients read it.
 *
 * SPDX-License-Identifier: BSD-3-Clause
 */
#ifndef EVU_TEST_SHARED_LOOPS_H
#define EVU_TEST_SHARED_LOOPS_H

#include "harness.h"

#define SHARED_MAX_LOOPS 8

enum shared_pattern { SHARED_THREADS, SHARED_FORK_SOCKET, SHARED_FORK_LISTENER };

/* One client port's connections. */
struct shared_conn {
	_Atomic long long start_ns; /* client: before its connect() */
	_Atomic long long cb_ns;    /* server: the callback began */
	atomic_int connects;        /* client: connects made from this port */
	atomic_int calls;           /* server: callbacks for this port */
	atomic_int loop;            /* server: the loop of the latest callback */
};

/* Shared with forked children (one mapping, MAP_SHARED). */
struct shared_run {
	enum shared_pattern pattern;
	int nloops;
	struct sockaddr_in addr;      /* where clients connect */
	int cb_sleep_us;              /* every callback sleeps this long, then closes */
	int block_ms;                 /* how long the blocking callback blocks */
	atomic_int block_next;        /* 1: the next callback blocks */
	atomic_int blocked_loop;      /* the loop that blocked, or -1 */
	_Atomic long long block_start_ns, block_end_ns;
	atomic_int ready;             /* loops running */
	atomic_int delivered;         /* callbacks, all loops */
	atomic_int per_loop[SHARED_MAX_LOOPS];
	atomic_int child_failed;      /* a forked loop found something wrong */
	struct shared_conn conns[65536];
};

/* Monotonic nanoseconds (comparable across the processes of a run). */
long long shared_now_ns(void);
/* Start @p nloops loops of @p pattern on a new loopback socket (backlog
 * 1024), whose callbacks sleep @p cb_sleep_us (the one that blocks:
 * @p block_ms); returns once each runs its loop with its listener made. */
struct shared_run *shared_start(enum shared_pattern pattern, int nloops, int cb_sleep_us,
				int block_ms);
/* Stop every loop, free their listeners and bases, reap children (each must
 * exit 0) and unmap; the threads pattern also checks that no fd is left. */
void shared_stop(struct shared_run *run);
/* Client: connect to the run's socket (blocking), recording the start time
 * and the connect for the client's port. Returns the fd, or -1. */
int shared_connect(struct shared_run *run);
/* Wait until @p n callbacks have run, at most @p ms; returns whether they did. */
int shared_wait_delivered(struct shared_run *run, int n, int ms);
/* Every port's callbacks equal its client connects: each connection was
 * delivered exactly once. Fails the test otherwise. */
void shared_check_once(struct shared_run *run);
/* Whether this run is evuring (linked, or preloaded into the reference
 * build), to be compared with libevent's listener in the same run. */
int shared_has_candidate(void);
/* Run @p exe (NULL: this binary) as "EXE --once PATTERN" without
 * LD_PRELOAD, i.e. libevent's own listener, and return the number it
 * prints as "@p key=...". */
double shared_reference_once(const char *exe, enum shared_pattern pattern, const char *key);
/* "threads" / "fork-socket" / "fork-listener". */
const char *shared_pattern_name(enum shared_pattern p);
/* @p fn for the pattern named by argv[1], or for each pattern without one. */
void shared_each_pattern(int argc, char **argv, void (*fn)(enum shared_pattern));
/* The pattern named @p s, or -1. */
int shared_pattern_parse(const char *s);

#endif /* EVU_TEST_SHARED_LOOPS_H */
