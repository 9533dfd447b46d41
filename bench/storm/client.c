/*
 * Accept-storm client: T threads, each: socket, bind to the next source port
 * of the round (so every connection has its own index), connect to
 * 127.0.0.1:PORT, optionally write a few bytes, close. Exactly --count
 * connections succeed (a failed bind or connect moves on to the next port),
 * unless the deadline passes first. Timestamps go to the shared file.
 * --pace-us US: each thread starts a connection every US microseconds (an
 * open-loop client for the paced mode) instead of as fast as it can.
 * Prints one JSON line.
 *
 * SPDX-License-Identifier: BSD-3-Clause
 */
#define _GNU_SOURCE
#include "storm.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static struct storm_shm *shm;
static int dport;
static unsigned port_first, port_last;
static uint64_t target;
static int write_bytes;
static uint64_t deadline_ns;
static int connect_timeout_ms = 5000;
static uint64_t pace_ns; /* 0: closed loop; else each thread starts a connection every pace_ns */

static atomic_uint_fast64_t tickets;   /* successful connections claimed */
static atomic_uint next_port;
static atomic_ulong err_bind, err_connect, err_connect_timeout, err_write, err_socket;
static atomic_ulong connected;
static atomic_int out_of_ports, past_deadline;

static void *worker(void *arg)
{
	(void)arg;
	struct sockaddr_in dst = {.sin_family = AF_INET, .sin_port = htons((uint16_t)dport)};
	dst.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	char buf[256];
	memset(buf, 'x', sizeof(buf));
	struct timeval tmo = {connect_timeout_ms / 1000, (connect_timeout_ms % 1000) * 1000};
	uint64_t next_ns = storm_now_ns();

	while (atomic_fetch_add(&tickets, 1) < target) {
		if (pace_ns) {
			/* An absolute schedule: a late connection does not push
			 * the later ones back. */
			struct timespec ts;

			next_ns += pace_ns;
			ts.tv_sec = (time_t)(next_ns / 1000000000u);
			ts.tv_nsec = (long)(next_ns % 1000000000u);
			if (pace_ns < 200000) {
				/* Short gaps: spin (this CPU is the client's); a
				 * timer sleep costs tens of us in some VMs. */
				while (storm_now_ns() < next_ns)
					;
			} else {
				while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
					;
			}
		}
		for (;;) {
			if (storm_now_ns() > deadline_ns) {
				atomic_store(&past_deadline, 1);
				return NULL;
			}
			unsigned port = atomic_fetch_add(&next_port, 1);
			if (port > port_last) {
				atomic_store(&out_of_ports, 1);
				return NULL;
			}
			int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
			if (fd < 0) {
				atomic_fetch_add(&err_socket, 1);
				continue;
			}
			int one = 1;
			setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
			setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tmo, sizeof(tmo));
			struct sockaddr_in src = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
			src.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
			if (bind(fd, (struct sockaddr *)&src, sizeof(src)) < 0) {
				atomic_fetch_add(&err_bind, 1);
				close(fd);
				continue;
			}
			uint64_t t0 = storm_now_ns();
			int rc = connect(fd, (struct sockaddr *)&dst, sizeof(dst));
			uint64_t t1 = storm_now_ns();
			if (rc < 0) {
				if (errno == EINPROGRESS || errno == EAGAIN || errno == ETIMEDOUT)
					atomic_fetch_add(&err_connect_timeout, 1);
				else
					atomic_fetch_add(&err_connect, 1);
				close(fd);
				continue;
			}
			shm->cli_start[port] = t0;
			shm->cli_end[port] = t1;
			if (write_bytes > 0 && write(fd, buf, (size_t)write_bytes) != write_bytes)
				atomic_fetch_add(&err_write, 1);
			close(fd);
			atomic_fetch_add(&connected, 1);
			break;
		}
	}
	return NULL;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{"shm", required_argument, NULL, 's'},
		{"port", required_argument, NULL, 'p'},
		{"threads", required_argument, NULL, 'T'},
		{"count", required_argument, NULL, 'n'},
		{"port-base", required_argument, NULL, 'B'},
		{"port-last", required_argument, NULL, 'L'},
		{"write", required_argument, NULL, 'w'},
		{"timeout", required_argument, NULL, 't'},
		{"connect-timeout-ms", required_argument, NULL, 'c'},
		{"pace-us", required_argument, NULL, 'P'},
		{NULL, 0, NULL, 0}};
	const char *shm_path = NULL;
	int threads = 8;
	double timeout_s = 30;
	port_first = 10000;
	port_last = 32767;
	int c;
	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (c) {
		case 's': shm_path = optarg; break;
		case 'p': dport = atoi(optarg); break;
		case 'T': threads = atoi(optarg); break;
		case 'n': target = strtoull(optarg, NULL, 10); break;
		case 'B': port_first = (unsigned)atoi(optarg); break;
		case 'L': port_last = (unsigned)atoi(optarg); break;
		case 'w': write_bytes = atoi(optarg); break;
		case 't': timeout_s = atof(optarg); break;
		case 'c': connect_timeout_ms = atoi(optarg); break;
		case 'P': pace_ns = (uint64_t)(atof(optarg) * 1000.0); break;
		default:
			fprintf(stderr, "usage: %s --shm FILE --port N --count N [--threads N] "
					"[--port-base N] [--port-last N] [--write BYTES] [--timeout S] "
					"[--connect-timeout-ms MS] [--pace-us US]\n", argv[0]);
			return 2;
		}
	}
	if (!shm_path || dport <= 0 || target == 0 || threads < 1 || threads > 256 ||
	    port_first < 1024 || port_last >= STORM_PORTS || port_first > port_last ||
	    write_bytes < 0 || write_bytes > 256) {
		fprintf(stderr, "client: bad arguments\n");
		return 2;
	}
	int fd = open(shm_path, O_RDWR | O_CLOEXEC);
	if (fd < 0) {
		perror("client: open shm");
		return 1;
	}
	void *p = mmap(NULL, sizeof(struct storm_shm), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (p == MAP_FAILED) {
		perror("client: mmap");
		return 1;
	}
	close(fd);
	shm = p;
	if (shm->magic != STORM_MAGIC) {
		fprintf(stderr, "client: bad magic\n");
		return 1;
	}
	memset(shm->cli_start, 0, sizeof(shm->cli_start));
	memset(shm->cli_end, 0, sizeof(shm->cli_end));
	signal(SIGPIPE, SIG_IGN);
	next_port = port_first;

	uint64_t t0 = storm_now_ns();
	deadline_ns = t0 + (uint64_t)(timeout_s * 1e9);
	pthread_t tids[256];
	for (int i = 0; i < threads; i++)
		if (pthread_create(&tids[i], NULL, worker, NULL) != 0) {
			fprintf(stderr, "client: pthread_create failed\n");
			return 1;
		}
	for (int i = 0; i < threads; i++)
		pthread_join(tids[i], NULL);
	uint64_t t1 = storm_now_ns();

	printf("{\"connected\":%lu,\"target\":%llu,\"ports_used\":%u,\"elapsed_us\":%.1f,"
	       "\"err_bind\":%lu,\"err_connect\":%lu,\"err_connect_timeout\":%lu,"
	       "\"err_write\":%lu,\"err_socket\":%lu,\"out_of_ports\":%s,\"past_deadline\":%s}\n",
	       atomic_load(&connected), (unsigned long long)target,
	       atomic_load(&next_port) - port_first, (double)(t1 - t0) / 1000.0,
	       atomic_load(&err_bind), atomic_load(&err_connect), atomic_load(&err_connect_timeout),
	       atomic_load(&err_write), atomic_load(&err_socket),
	       atomic_load(&out_of_ports) ? "true" : "false",
	       atomic_load(&past_deadline) ? "true" : "false");
	return (atomic_load(&connected) == target) ? 0 : 3;
}
