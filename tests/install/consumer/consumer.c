/*
 * evuring install-tree consumer: built against an installed evuring only
 * (find_package(evuring) or pkg-config), never against the source tree.
 *
 * Makes a listener on 127.0.0.1:0, connects to itself, accepts that one
 * connection and prints:
 *   BACKEND <uring|event>   evuring_backend_name(evuring_listener_backend())
 *   VERSION <x.y.z>         evuring_version()
 *   LIB <path>              the object evuring's code was loaded from
 *   ACCEPTED <n>            evuring's own counter for the listener
 * Exit 0 after exactly one accepted connection; 1 on any error or after 10 s.
 *
 * SPDX-License-Identifier: BSD-3-Clause
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <dlfcn.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/event.h>
#include <event2/listener.h>
#include <evuring.h>

static int accepted;

static void on_accept(struct evconnlistener *lev, evutil_socket_t fd,
		      struct sockaddr *sa, int socklen, void *arg)
{
	accepted++;
	close(fd);
	event_base_loopbreak(evconnlistener_get_base(lev));
}

int main(void)
{
	struct event_base *base = event_base_new();
	struct sockaddr_in sin;
	socklen_t len = sizeof(sin);
	struct timeval limit = { 10, 0 };
	struct evuring_stats st;
	struct evconnlistener *lev;
	Dl_info info;
	int c, ok;

	if (!base)
		return 1;
	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	lev = evconnlistener_new_bind(base, on_accept, NULL,
				      LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE, -1,
				      (struct sockaddr *)&sin, sizeof(sin));
	if (!lev) {
		perror("evconnlistener_new_bind");
		return 1;
	}
	if (getsockname(evconnlistener_get_fd(lev), (struct sockaddr *)&sin, &len) < 0) {
		perror("getsockname");
		return 1;
	}
	/* A loopback connect completes in the kernel; the connection then waits
	 * in the listener's queue until the loop accepts it. */
	c = socket(AF_INET, SOCK_STREAM, 0);
	if (c < 0 || connect(c, (struct sockaddr *)&sin, sizeof(sin)) < 0) {
		perror("connect");
		return 1;
	}
	event_base_loopexit(base, &limit);
	event_base_dispatch(base);

	printf("BACKEND %s\n", evuring_backend_name(evuring_listener_backend(lev)));
	printf("VERSION %s\n", evuring_version());
	if (dladdr((void *)evuring_version, &info) && info.dli_fname)
		printf("LIB %s\n", info.dli_fname);
	if (evuring_listener_get_stats(lev, &st) == 0)
		printf("ACCEPTED %llu\n", (unsigned long long)st.accepted);
	ok = accepted == 1 && evuring_listener_get_stats(lev, &st) == 0 && st.accepted == 1;
	if (!ok)
		fprintf(stderr, "consumer: accepted %d connection(s), wanted 1\n", accepted);
	close(c);
	evconnlistener_free(lev);
	event_base_free(base);
	return ok ? 0 : 1;
}
