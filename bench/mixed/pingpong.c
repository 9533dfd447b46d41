/*
 * pingpong: a loop that is busy with other fds as well as accepting. The
 * server thread (pinned to one CPU) runs a libevent base with a listener and
 * echoes one byte on every accepted connection; client threads (pinned to
 * the other CPU) keep C connections open, each sending one byte and waiting
 * for the echo, and replace a connection by a new one every R round trips
 * (R = 0: never). So the server wakes for data, and for an accept every R
 * messages. Prints the server thread's CPU time per message (getrusage
 * RUSAGE_THREAD) and per accepted connection. Linked with libevent only: run
 * it plain, or with LD_PRELOAD=libevuring.so and EVURING_WAIT=epoll|ring
 * (bench/mixed/run.sh runs them side by side).
 *
 * Usage: pingpong [--messages N] [--conns C] [--reconnect R] [--cpus S,C]
 *
 * SPDX-License-Identifier: BSD-3-Clause
 */
#define _GNU_SOURCE
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>
#include <event2/listener.h>

static long messages = 200000, reconnect_every = 50;
static int nconns = 4, server_cpu = 1, client_cpu = 0;
static struct sockaddr_in server_addr;
static atomic_long done_msgs;
static atomic_int ready;
static long accepted;

static void pin(int cpu)
{
	cpu_set_t set;

	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	pthread_setaffinity_np(pthread_self(), sizeof(set), &set);
}

static void echo_cb(evutil_socket_t fd, short what, void *arg)
{
	struct event *ev = *(struct event **)arg;
	char buf[64];
	ssize_t n = read(fd, buf, sizeof(buf));

	(void)what;
	if (n > 0) {
		if (write(fd, buf, (size_t)n) != n)
			n = 0;
	}
	if (n == 0 || (n < 0 && errno != EAGAIN)) {
		event_free(ev);
		free(arg);
		close(fd);
	}
}

static void accept_cb(struct evconnlistener *lev, evutil_socket_t fd,
		      struct sockaddr *sa, int socklen, void *arg)
{
	struct event_base *base = arg;
	struct event **slot = malloc(sizeof(*slot));
	int one = 1;

	(void)lev;
	(void)sa;
	(void)socklen;
	accepted++;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	*slot = event_new(base, fd, EV_READ | EV_PERSIST, echo_cb, slot);
	event_add(*slot, NULL);
}

static int client_connect(void)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0), one = 1;

	if (fd < 0 || connect(fd, (struct sockaddr *)&server_addr, sizeof(server_addr)) < 0) {
		perror("connect");
		exit(1);
	}
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	return fd;
}

/* One thread drives all connections round-robin, one byte in flight each. */
static void *client_main(void *arg)
{
	int *fds = calloc((size_t)nconns, sizeof(int));
	long *count = calloc((size_t)nconns, sizeof(long));
	char c = 'x';

	(void)arg;
	pin(client_cpu);
	while (!atomic_load(&ready))
		usleep(100);
	for (int i = 0; i < nconns; i++)
		fds[i] = client_connect();
	for (long m = 0; m < messages; m++) {
		int i = (int)(m % nconns);

		if (write(fds[i], &c, 1) != 1 || read(fds[i], &c, 1) != 1) {
			perror("client");
			exit(1);
		}
		if (reconnect_every && ++count[i] % reconnect_every == 0) {
			close(fds[i]);
			fds[i] = client_connect();
		}
		atomic_store(&done_msgs, m + 1);
	}
	for (int i = 0; i < nconns; i++)
		close(fds[i]);
	free(fds);
	free(count);
	return NULL;
}

static void check_done(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	if (atomic_load(&done_msgs) >= messages)
		event_base_loopbreak(arg);
}

static double thread_cpu_us(void)
{
	struct rusage ru;

	getrusage(RUSAGE_THREAD, &ru);
	return (ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1e6 + ru.ru_utime.tv_usec +
	       ru.ru_stime.tv_usec;
}

int main(int argc, char **argv)
{
	struct event_base *base;
	struct evconnlistener *lev;
	struct event *tick;
	struct timeval tv = { 0, 20 * 1000 };
	socklen_t len = sizeof(server_addr);
	pthread_t tid;
	double cpu0, cpu1;
	const char *wait = getenv("EVURING_WAIT");

	for (int i = 1; i + 1 < argc; i += 2) {
		if (!strcmp(argv[i], "--messages"))
			messages = atol(argv[i + 1]);
		else if (!strcmp(argv[i], "--conns"))
			nconns = atoi(argv[i + 1]);
		else if (!strcmp(argv[i], "--reconnect"))
			reconnect_every = atol(argv[i + 1]);
		else if (!strcmp(argv[i], "--cpus"))
			sscanf(argv[i + 1], "%d,%d", &server_cpu, &client_cpu);
	}
	pin(server_cpu);
	base = event_base_new();
	memset(&server_addr, 0, sizeof(server_addr));
	server_addr.sin_family = AF_INET;
	server_addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	lev = evconnlistener_new_bind(base, accept_cb, base,
				      LEV_OPT_REUSEABLE | LEV_OPT_CLOSE_ON_FREE, 1024,
				      (struct sockaddr *)&server_addr, sizeof(server_addr));
	if (!lev) {
		perror("listener");
		return 1;
	}
	getsockname(evconnlistener_get_fd(lev), (struct sockaddr *)&server_addr, &len);
	tick = event_new(base, -1, EV_PERSIST, check_done, base);
	event_add(tick, &tv);
	pthread_create(&tid, NULL, client_main, NULL);
	cpu0 = thread_cpu_us();
	atomic_store(&ready, 1);
	event_base_dispatch(base);
	cpu1 = thread_cpu_us();
	pthread_join(tid, NULL);
	printf("{\"wait\":\"%s\",\"messages\":%ld,\"accepted\":%ld,\"conns\":%d,"
	       "\"reconnect\":%ld,\"server_cpu_us\":%.0f,\"cpu_per_msg_us\":%.3f}\n",
	       wait ? wait : "", messages, accepted, nconns, reconnect_every, cpu1 - cpu0,
	       (cpu1 - cpu0) / (double)messages);
	event_free(tick);
	evconnlistener_free(lev);
	event_base_free(base);
	return 0;
}
