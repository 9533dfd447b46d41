/*
 * Accept-storm benchmark: what every server variant and the client share.
 *
 * The runner creates a file in /dev/shm (struct storm_shm followed by three
 * arrays of STORM_PORTS nanosecond timestamps, CLOCK_MONOTONIC). The client
 * binds each connection to its own source port (unique within a round) and
 * writes when connect() was called and when it returned; the server writes
 * when its accept callback ran, at the index of the peer's port. The runner
 * joins the arrays afterwards.
 *
 * SPDX-License-Identifier: BSD-3-Clause
 */
#ifndef STORM_H
#define STORM_H

#include <stdint.h>
#include <stdio.h>
#include <sys/resource.h>
#include <time.h>
#include <sys/socket.h>
#include <netinet/in.h>

#define STORM_MAGIC 0x4d524f5453555645ull /* "EVUSTORM" */
#define STORM_PORTS 65536u
#define STORM_MAX_WORKERS 64 /* --workers: server-reuseport only */

struct storm_shm {
	uint64_t magic;
	uint64_t srv_window_start_ns; /* after the last warm-up connection */
	uint64_t srv_window_end_ns;   /* after the last measured connection */
	uint64_t srv_accepted;        /* total callbacks, warm-up included */
	uint64_t pad[508];            /* header is 4096 bytes */
	uint64_t srv_cb[STORM_PORTS];     /* server callback time, by peer port */
	uint64_t cli_start[STORM_PORTS];  /* client: before connect() */
	uint64_t cli_end[STORM_PORTS];    /* client: connect() returned */
};

_Static_assert(sizeof(uint64_t) * 512 == 4096, "header size");

/* Server configuration, from the command line (storm_server_init). */
struct storm_server {
	const char *variant;
	const char *shm_path;
	int port;          /* 0: let the kernel choose */
	int backlog;
	uint64_t warmup;   /* connections before the measured window */
	uint64_t measured; /* connections in the measured window */
	double work_us;    /* busy work per connection */
	double timeout_s;  /* give up after this long */
	const char *opt;   /* variant-specific option string (--opt) */
	int workers;       /* --workers (server-reuseport; the others use 1) */

	struct storm_shm *shm;
	uint64_t count;
	int done;
	int timed_out;
	uint64_t dummy_slot; /* for servers that cannot know the peer port */

	struct rusage ru_start, ru_end;
	uint64_t t_start, t_end;
	uint64_t window_conns;
};

static inline uint64_t storm_now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* Parse argv; exits with a message on a bad option. */
void storm_server_init(struct storm_server *s, const char *variant, int argc, char **argv);

/* A bound, listening, nonblocking-or-not TCP socket on 127.0.0.1:s->port. */
int storm_listen_socket(struct storm_server *s, int nonblocking);

/* Tell the runner we listen: "READY <port>" on stdout. */
void storm_ready(struct storm_server *s, int fd);

/* The callback's work: timestamp at the peer port's index, then busy work.
 * The caller closes the fd afterwards and calls storm_conn_done(). */
void storm_on_conn(struct storm_server *s, const struct sockaddr *peer);

/* Record a connection without a known peer (raw-uring without getpeername). */
void storm_on_conn_noaddr(struct storm_server *s);

/* Count one connection (after the close); returns 1 once all are done. */
int storm_conn_done(struct storm_server *s);

/* Stop early (signal or timeout): close the window now. */
void storm_stop(struct storm_server *s, int timed_out);

/* Print the one-line JSON result on stdout. extra: more JSON members
 * ("\"k\":v,...") or NULL. */
void storm_report(struct storm_server *s, const char *backend, const char *extra);

#endif
