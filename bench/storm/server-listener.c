/*
 * Accept-storm server written against libevent's listener API only
 * (<event2/listener.h>). Built twice from this one source: linked with
 * libevent alone (variant "libevent", and "preload" under
 * LD_PRELOAD=libevuring.so) and linked with evuring ahead of libevent
 * (variants "evuring" and "fallback").
 *
 * It learns at run time, through dlsym, whether evuring is in the process
 * and which backend the listener got, so the runner can check that each
 * variant really ran the code it claims to measure.
 *
 * SPDX-License-Identifier: BSD-3-Clause
 */
#define _GNU_SOURCE
#include "storm.h"

#include <arpa/inet.h>
#include <dlfcn.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>
#include <event2/listener.h>

/* evuring's extension API, looked up at run time (not linked). */
struct evu_stats {
	uint64_t accepted, errors, closed, rearms, batches, direct, reserved[2];
};
typedef int (*backend_fn)(struct evconnlistener *);
typedef int (*stats_fn)(struct evconnlistener *, struct evu_stats *);
typedef const char *(*name_fn)(int);

static struct storm_server S;
static struct event_base *base;
static unsigned long accept_errors;

static void on_accept(struct evconnlistener *lev, evutil_socket_t fd,
		      struct sockaddr *addr, int socklen, void *arg)
{
	(void)lev; (void)socklen; (void)arg;
	storm_on_conn(&S, addr);
	close(fd);
	if (storm_conn_done(&S))
		event_base_loopbreak(base);
}

static void on_error(struct evconnlistener *lev, void *arg)
{
	(void)lev; (void)arg;
	accept_errors++;
}

static void on_stop(evutil_socket_t sig, short what, void *arg)
{
	(void)what; (void)arg;
	storm_stop(&S, sig < 0);
	event_base_loopbreak(base);
}

int main(int argc, char **argv)
{
	storm_server_init(&S, "listener", argc, argv);
	signal(SIGPIPE, SIG_IGN);

	base = event_base_new();
	if (!base) {
		fprintf(stderr, "event_base_new failed\n");
		return 1;
	}
	struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons((uint16_t)S.port)};
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	struct evconnlistener *lev = evconnlistener_new_bind(
		base, on_accept, NULL, LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE | LEV_OPT_CLOSE_ON_EXEC,
		S.backlog, (struct sockaddr *)&sin, sizeof(sin));
	if (!lev) {
		perror("evconnlistener_new_bind");
		return 1;
	}
	evconnlistener_set_error_cb(lev, on_error);

	struct event *ev_usr1 = evsignal_new(base, SIGUSR1, on_stop, NULL);
	struct event *ev_term = evsignal_new(base, SIGTERM, on_stop, NULL);
	struct event *ev_timeout = event_new(base, -1, 0, on_stop, NULL);
	struct timeval tv = {(time_t)S.timeout_s, (suseconds_t)((S.timeout_s - (long)S.timeout_s) * 1e6)};
	evsignal_add(ev_usr1, NULL);
	evsignal_add(ev_term, NULL);
	event_add(ev_timeout, &tv);

	/* Which implementation of the listener is this process running? */
	backend_fn get_backend = (backend_fn)(uintptr_t)dlsym(RTLD_DEFAULT, "evuring_listener_backend");
	stats_fn get_stats = (stats_fn)(uintptr_t)dlsym(RTLD_DEFAULT, "evuring_listener_get_stats");
	name_fn backend_name = (name_fn)(uintptr_t)dlsym(RTLD_DEFAULT, "evuring_backend_name");
	const char *backend = "libevent";
	if (get_backend && backend_name)
		backend = backend_name(get_backend(lev));

	storm_ready(&S, evconnlistener_get_fd(lev));
	event_base_dispatch(base);
	if (!S.done)
		storm_stop(&S, 0);

	char extra[256];
	int n = snprintf(extra, sizeof(extra), "\"accept_errors\":%lu,\"event_method\":\"%s\"",
			 accept_errors, event_base_get_method(base));
	struct evu_stats st;
	if (get_stats && get_stats(lev, &st) == 0 && n > 0 && (size_t)n < sizeof(extra))
		snprintf(extra + n, sizeof(extra) - (size_t)n,
			 ",\"evu_accepted\":%llu,\"evu_errors\":%llu,\"evu_closed\":%llu,"
			 "\"evu_rearms\":%llu,\"evu_batches\":%llu,\"evu_direct\":%llu",
			 (unsigned long long)st.accepted, (unsigned long long)st.errors,
			 (unsigned long long)st.closed, (unsigned long long)st.rearms,
			 (unsigned long long)st.batches, (unsigned long long)st.direct);
	storm_report(&S, backend, extra);

	evconnlistener_free(lev);
	event_free(ev_usr1);
	event_free(ev_term);
	event_free(ev_timeout);
	event_base_free(base);
	return 0;
}
