/*
 * Accept-storm benchmark: shared server code.
 * SPDX-License-Identifier: BSD-3-Clause
 */
#define _GNU_SOURCE
#include "storm.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static void usage(const char *prog)
{
	fprintf(stderr,
		"usage: %s --shm FILE [--port N] [--backlog N] [--warmup N] --measured N\n"
		"          [--work-us US] [--timeout S] [--opt STRING] [--workers N]\n", prog);
	exit(2);
}

static struct storm_shm *map_shm(const char *path)
{
	int fd = open(path, O_RDWR | O_CLOEXEC);
	if (fd < 0) {
		fprintf(stderr, "storm: open %s: %s\n", path, strerror(errno));
		exit(1);
	}
	struct stat st;
	if (fstat(fd, &st) < 0 || (size_t)st.st_size < sizeof(struct storm_shm)) {
		fprintf(stderr, "storm: %s is too small\n", path);
		exit(1);
	}
	void *p = mmap(NULL, sizeof(struct storm_shm), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (p == MAP_FAILED) {
		fprintf(stderr, "storm: mmap %s: %s\n", path, strerror(errno));
		exit(1);
	}
	close(fd);
	struct storm_shm *shm = p;
	if (shm->magic != STORM_MAGIC) {
		fprintf(stderr, "storm: %s: bad magic\n", path);
		exit(1);
	}
	/* Fault the server's pages in now, not inside the measured window. */
	memset(shm->srv_cb, 0, sizeof(shm->srv_cb));
	return shm;
}

void storm_server_init(struct storm_server *s, const char *variant, int argc, char **argv)
{
	static const struct option opts[] = {
		{"shm", required_argument, NULL, 's'},
		{"port", required_argument, NULL, 'p'},
		{"backlog", required_argument, NULL, 'b'},
		{"warmup", required_argument, NULL, 'w'},
		{"measured", required_argument, NULL, 'n'},
		{"work-us", required_argument, NULL, 'W'},
		{"timeout", required_argument, NULL, 't'},
		{"opt", required_argument, NULL, 'o'},
		{"workers", required_argument, NULL, 'N'},
		{NULL, 0, NULL, 0}};
	memset(s, 0, sizeof(*s));
	s->variant = variant;
	s->backlog = 128;
	s->timeout_s = 60;
	s->opt = "";
	s->workers = 1;
	int c;
	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (c) {
		case 's': s->shm_path = optarg; break;
		case 'p': s->port = atoi(optarg); break;
		case 'b': s->backlog = atoi(optarg); break;
		case 'w': s->warmup = strtoull(optarg, NULL, 10); break;
		case 'n': s->measured = strtoull(optarg, NULL, 10); break;
		case 'W': s->work_us = atof(optarg); break;
		case 't': s->timeout_s = atof(optarg); break;
		case 'o': s->opt = optarg; break;
		case 'N': s->workers = atoi(optarg); break;
		default: usage(argv[0]);
		}
	}
	if (!s->shm_path || s->measured == 0 || optind != argc || s->workers < 1 ||
	    s->workers > STORM_MAX_WORKERS)
		usage(argv[0]);
	s->shm = map_shm(s->shm_path);
	if (s->warmup == 0) {
		/* The window starts right away. */
		getrusage(RUSAGE_SELF, &s->ru_start);
		s->t_start = storm_now_ns();
		s->shm->srv_window_start_ns = s->t_start;
	}
}

int storm_listen_socket(struct storm_server *s, int nonblocking)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | (nonblocking ? SOCK_NONBLOCK : 0), 0);
	if (fd < 0) {
		perror("storm: socket");
		exit(1);
	}
	int one = 1;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons((uint16_t)s->port)};
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (bind(fd, (struct sockaddr *)&sin, sizeof(sin)) < 0 || listen(fd, s->backlog) < 0) {
		perror("storm: bind/listen");
		exit(1);
	}
	return fd;
}

void storm_ready(struct storm_server *s, int fd)
{
	struct sockaddr_in sin;
	socklen_t len = sizeof(sin);
	if (getsockname(fd, (struct sockaddr *)&sin, &len) < 0) {
		perror("storm: getsockname");
		exit(1);
	}
	s->port = ntohs(sin.sin_port);
	printf("READY %d\n", s->port);
	fflush(stdout);
}

static void busy(double us)
{
	uint64_t end = storm_now_ns() + (uint64_t)(us * 1000.0);
	while (storm_now_ns() < end)
		;
}

void storm_on_conn(struct storm_server *s, const struct sockaddr *peer)
{
	uint64_t t = storm_now_ns();
	if (peer && peer->sa_family == AF_INET) {
		const struct sockaddr_in *sin = (const struct sockaddr_in *)peer;
		s->shm->srv_cb[ntohs(sin->sin_port)] = t;
	} else {
		s->shm->srv_cb[0] = t; /* slot 0 is never a client port */
	}
	if (s->work_us > 0)
		busy(s->work_us);
}

void storm_on_conn_noaddr(struct storm_server *s)
{
	uint64_t t = storm_now_ns();
	/* Same store as storm_on_conn, into a slot no client uses. */
	s->shm->srv_cb[s->dummy_slot++ & 1023] = t;
	if (s->work_us > 0)
		busy(s->work_us);
}

int storm_conn_done(struct storm_server *s)
{
	s->count++;
	if (s->count == s->warmup) {
		getrusage(RUSAGE_SELF, &s->ru_start);
		s->t_start = storm_now_ns();
		s->shm->srv_window_start_ns = s->t_start;
	} else if (s->count == s->warmup + s->measured) {
		getrusage(RUSAGE_SELF, &s->ru_end);
		s->t_end = storm_now_ns();
		s->shm->srv_window_end_ns = s->t_end;
		s->window_conns = s->measured;
		s->shm->srv_accepted = s->count;
		s->done = 1;
		return 1;
	}
	return 0;
}

void storm_stop(struct storm_server *s, int timed_out)
{
	if (s->done)
		return;
	getrusage(RUSAGE_SELF, &s->ru_end);
	s->t_end = storm_now_ns();
	if (s->count < s->warmup) {
		s->ru_start = s->ru_end;
		s->t_start = s->t_end;
		s->window_conns = 0;
	} else {
		s->window_conns = s->count - s->warmup;
	}
	s->shm->srv_window_start_ns = s->t_start;
	s->shm->srv_window_end_ns = s->t_end;
	s->shm->srv_accepted = s->count;
	s->timed_out = timed_out;
	s->done = 1;
}

static double tv_us(struct timeval a, struct timeval b)
{
	return (double)(b.tv_sec - a.tv_sec) * 1e6 + (double)(b.tv_usec - a.tv_usec);
}

void storm_report(struct storm_server *s, const char *backend, const char *extra)
{
	if (!s->done)
		storm_stop(s, 0);
	double user = tv_us(s->ru_start.ru_utime, s->ru_end.ru_utime);
	double sys = tv_us(s->ru_start.ru_stime, s->ru_end.ru_stime);
	long nvcsw = s->ru_end.ru_nvcsw - s->ru_start.ru_nvcsw;
	long nivcsw = s->ru_end.ru_nivcsw - s->ru_start.ru_nivcsw;
	printf("{\"variant\":\"%s\",\"backend\":\"%s\",\"accepted\":%llu,\"window_conns\":%llu,"
	       "\"cpu_user_us\":%.1f,\"cpu_sys_us\":%.1f,\"wall_us\":%.1f,"
	       "\"vol_ctxsw\":%ld,\"invol_ctxsw\":%ld,\"timed_out\":%s%s%s}\n",
	       s->variant, backend, (unsigned long long)s->count,
	       (unsigned long long)s->window_conns, user, sys,
	       (double)(s->t_end - s->t_start) / 1000.0, nvcsw, nivcsw,
	       s->timed_out ? "true" : "false", extra && *extra ? "," : "", extra ? extra : "");
	fflush(stdout);
}
