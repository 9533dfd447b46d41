/*
 * plain_listener: a libevent-only program (no evuring header, linked only
 * with libevent) for the evuring-run test. evuring reaches it only through
 * LD_PRELOAD.
 *
 * Makes a listener on 127.0.0.1:0, connects to itself, accepts one
 * connection, then prints:
 *   ACCEPTED <n>
 *   ENV LD_PRELOAD=<value>  and  ENV EVURING_BACKEND=<value>
 *   MAPPED <path>           every mapped file whose name contains "evu"
 * Exit 0 after exactly one accepted connection; 1 otherwise (10 s bound).
 *
 * SPDX-License-Identifier: BSD-3-Clause
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/event.h>
#include <event2/listener.h>

static int accepted;

static void on_accept(struct evconnlistener *lev, evutil_socket_t fd,
		      struct sockaddr *sa, int socklen, void *arg)
{
	accepted++;
	close(fd);
	event_base_loopbreak(evconnlistener_get_base(lev));
}

static void print_env(const char *name)
{
	const char *v = getenv(name);

	printf("ENV %s=%s\n", name, v ? v : "");
}

static void print_mapped(void)
{
	char line[4096], last[4096] = "";
	FILE *f = fopen("/proc/self/maps", "r");

	if (!f)
		return;
	while (fgets(line, sizeof(line), f)) {
		char *path = strchr(line, '/');

		if (!path || !strstr(path, "evu"))
			continue;
		path[strcspn(path, "\n")] = 0;
		if (strcmp(path, last) != 0)
			printf("MAPPED %s\n", path);
		snprintf(last, sizeof(last), "%s", path);
	}
	fclose(f);
}

int main(void)
{
	struct event_base *base = event_base_new();
	struct sockaddr_in sin;
	socklen_t len = sizeof(sin);
	struct timeval limit = { 10, 0 };
	struct evconnlistener *lev;
	int c;

	if (!base)
		return 1;
	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	lev = evconnlistener_new_bind(base, on_accept, NULL,
				      LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE, -1,
				      (struct sockaddr *)&sin, sizeof(sin));
	if (!lev || getsockname(evconnlistener_get_fd(lev), (struct sockaddr *)&sin, &len) < 0) {
		perror("listener");
		return 1;
	}
	c = socket(AF_INET, SOCK_STREAM, 0);
	if (c < 0 || connect(c, (struct sockaddr *)&sin, sizeof(sin)) < 0) {
		perror("connect");
		return 1;
	}
	event_base_loopexit(base, &limit);
	event_base_dispatch(base);

	printf("ACCEPTED %d\n", accepted);
	print_env("LD_PRELOAD");
	print_env("EVURING_BACKEND");
	print_mapped();
	close(c);
	evconnlistener_free(lev);
	event_base_free(base);
	return accepted == 1 ? 0 : 1;
}
