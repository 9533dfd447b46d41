/*
 * Shared harness for evuring's behaviour tests.
 *
 * Every test file is built twice: against evuring (its listener replaces
 * libevent's) and, with -DEVU_TEST_REFERENCE, against plain libevent, so the
 * same assertions prove the behaviour of libevent's own listener.
 *
 * Exit codes: 0 pass, 1 failure, 77 skip (capability truly absent).
 *
 * SPDX-License-Identifier: BSD-3-Clause
 */
#ifndef EVU_TEST_HARNESS_H
#define EVU_TEST_HARNESS_H

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <netinet/in.h>

#include <event2/event.h>
#include <event2/listener.h>
#include <event2/thread.h>
#include <event2/util.h>

#ifndef EVU_TEST_REFERENCE
#include "evuring.h"
#endif

#ifndef LEV_OPT_BIND_IPV4_AND_IPV6
/* libevent 2.2 flag, absent from 2.1.12 headers (2.1.12 ignores it). */
#define LEV_OPT_BIND_IPV4_AND_IPV6 (1u << 9)
#endif

/* ---- assertions --------------------------------------------------------- */

void harness_fail(const char *file, int line, const char *fmt, ...)
	__attribute__((format(printf, 3, 4), noreturn));
void harness_skip(const char *fmt, ...)
	__attribute__((format(printf, 1, 2), noreturn));

/* CHECK(cond): fail (exit 1) with file:line, the condition and errno. */
#define CHECK(cond)                                                         \
	do {                                                                \
		if (!(cond)) {                                              \
			int e_ = errno;                                     \
			harness_fail(__FILE__, __LINE__,                    \
				     "CHECK(%s) failed (errno %d: %s)", #cond, \
				     e_, strerror(e_));                     \
		}                                                           \
	} while (0)

/* CHECKF(cond, fmt, ...): as CHECK with an explanation. */
#define CHECKF(cond, ...)                                                   \
	do {                                                                \
		if (!(cond))                                                \
			harness_fail(__FILE__, __LINE__, __VA_ARGS__);      \
	} while (0)

/* CHECK_EQ(a, b): integers, both values printed. */
#define CHECK_EQ(a, b)                                                      \
	do {                                                                \
		long long a_ = (long long)(a), b_ = (long long)(b);         \
		if (a_ != b_)                                               \
			harness_fail(__FILE__, __LINE__,                    \
				     "CHECK_EQ(%s, %s) failed: %lld != %lld", \
				     #a, #b, a_, b_);                       \
	} while (0)

/* REQUIRE_SYS(expr): a system call that must not return -1. */
#define REQUIRE_SYS(expr)                                                   \
	do {                                                                \
		if ((expr) == -1) {                                         \
			int e_ = errno;                                     \
			harness_fail(__FILE__, __LINE__,                    \
				     "%s failed (errno %d: %s)", #expr, e_, \
				     strerror(e_));                         \
		}                                                           \
	} while (0)

#define SKIP(...) harness_skip(__VA_ARGS__)

/* ---- setup -------------------------------------------------------------- */

/* Call first: prints the test name and backend, arms the watchdog (env
 * EVU_TEST_TIMEOUT seconds, default 30), ignores SIGPIPE. */
void harness_init(const char *name);
/* Name the current phase; the watchdog prints it if the test hangs. */
void harness_phase(const char *phase);
/* Re-arm the watchdog with the default timeout. */
void harness_watchdog_reset(void);
/* Whether this binary runs libevent's own listener (reference build). */
int harness_is_reference(void);

/* Assert @p lev runs the expected evuring backend (no-op in the reference
 * build or when no backend is expected). */
void harness_check_backend(struct evconnlistener *lev);

/* Where a base's loop should sleep in this run, for a listener on @p
 * backend (evuring_listener_backend()): 'a' where its traffic says
 * (EVURING_WAIT=auto, the default), 'r' in the ring (=ring), 'e' in epoll
 * (=epoll; the event backend; a kernel before 6.1, without DEFER_TASKRUN,
 * or that ring mode forced off; auto under valgrind). */
int harness_wait_policy(int backend);

/* event_base_new(), checked. */
struct event_base *harness_base(void);
/* evthread_use_pthreads(), checked; call before harness_base(). */
void harness_use_threads(void);

/* ---- listeners ---------------------------------------------------------- */

/* evconnlistener_new / _new_bind that must succeed; backend checked. */
struct evconnlistener *harness_new(struct event_base *base, evconnlistener_cb cb,
				   void *arg, unsigned flags, int backlog,
				   evutil_socket_t fd);
struct evconnlistener *harness_new_bind(struct event_base *base,
					evconnlistener_cb cb, void *arg,
					unsigned flags, int backlog,
					const struct sockaddr *sa, socklen_t len);

/* Loopback listeners made with new_bind on port 0; *out receives the bound
 * address (getsockname of the listening fd). backlog as in the API. */
struct evconnlistener *harness_listen_ipv4(struct event_base *base,
					   evconnlistener_cb cb, void *arg,
					   unsigned flags, int backlog,
					   struct sockaddr_in *out);
/* ::1. Exits 77 if IPv6 is not usable on loopback. */
struct evconnlistener *harness_listen_ipv6(struct event_base *base,
					   evconnlistener_cb cb, void *arg,
					   unsigned flags, int backlog,
					   struct sockaddr_in6 *out);
/* AF_UNIX: the caller's way (socket + bind, then evconnlistener_new with
 * the given backlog); path in a private temp dir removed at exit. */
struct evconnlistener *harness_listen_unix(struct event_base *base,
					   evconnlistener_cb cb, void *arg,
					   unsigned flags, int backlog,
					   struct sockaddr_un *out);

/* 1 if an AF_INET6 socket can bind ::1. */
int harness_have_ipv6(void);
/* A fresh path in the harness temp dir (unlinked at exit). */
void harness_temp_path(char *buf, size_t len, const char *stem);

/* Address helpers. */
struct sockaddr_in harness_sin(const char *ip, uint16_t port);
struct sockaddr_in6 harness_sin6(const char *ip, uint16_t port);
/* Port (host order) of an AF_INET/AF_INET6 address. */
uint16_t harness_port(const struct sockaddr *sa);
/* Bound address of a socket, checked. */
socklen_t harness_sockname(int fd, struct sockaddr_storage *ss);
/* Length of a sockaddr for its family. */
socklen_t harness_salen(const struct sockaddr *sa);

/* ---- clients ------------------------------------------------------------ */

/* Connect a client. Blocking: returns once connect() completed (at most
 * 5 s), fd left blocking. Nonblocking: connect() may be in progress. *local_port (if not
 * NULL) gets the client's port (0 for AF_UNIX). Fails the test on error. */
int harness_connect(const struct sockaddr *sa, socklen_t len, int nonblock,
		    uint16_t *local_port);
/* As harness_connect but returns -1 with errno instead of failing. */
int harness_try_connect(const struct sockaddr *sa, socklen_t len);
/* Whether the peer closed/reset @p fd within @p ms (reads and discards data). */
int harness_wait_peer_closed(int fd, int ms);

/* ---- client storm ------------------------------------------------------- */

struct harness_storm {
	struct sockaddr_storage target;
	socklen_t target_len;
	int total, nthreads;
	int pace_us;              /* pause between a thread's connects */
	atomic_int next;          /* connections handed out */
	atomic_int completed;     /* connect() succeeded */
	atomic_int failed;        /* connect() failed */
	atomic_int first_errno;
	atomic_int threads_done;
	atomic_ushort *by_port;   /* completed connects per local port */
	pthread_t tids[16];
};

/* Start @p nthreads threads making @p total connections (connect then close)
 * to @p sa, each thread pausing @p pace_us microseconds between connects;
 * returns at once. */
void harness_storm_start(struct harness_storm *s, const struct sockaddr *sa,
			 socklen_t len, int total, int nthreads, int pace_us);
int harness_storm_finished(struct harness_storm *s);
void harness_storm_join(struct harness_storm *s);
void harness_storm_free(struct harness_storm *s);

/* Connections counted by the port of their client, from a listener's
 * callback: each must be delivered once, with its own client's address. */
struct harness_ports {
	atomic_int conns;         /* callbacks */
	atomic_int bad;           /* not an IPv4 address of the right length */
	atomic_ushort *seen;      /* callbacks per client port */
};

void harness_ports_init(struct harness_ports *p);
void harness_ports_free(struct harness_ports *p);
/* From the listener's callback (IPv4 listeners). */
void harness_ports_accepted(struct harness_ports *p, const struct sockaddr *sa, int socklen);
/* A listener callback that counts into the harness_ports @p arg and closes. */
void harness_ports_cb(struct evconnlistener *lev, evutil_socket_t fd, struct sockaddr *sa,
		      int socklen, void *arg);
/* @p n connections from one client thread, @p pace_us apart, while the loop
 * runs (up to 20 s); checks each was delivered once, by its client's port,
 * then runs the loop 20 ms more (a mode switch decided at the last wakeup). */
void harness_ports_paced(struct harness_ports *p, struct event_base *base,
			 const struct sockaddr_in *sin, int n, int pace_us);

/* ---- loop helpers ------------------------------------------------------- */

/* Run the loop for @p ms milliseconds (loopexit timer), then return. */
void harness_run_for(struct event_base *base, int ms);
/* Run the loop until pred(arg) is true (checked every millisecond) or
 * @p ms elapsed. Returns pred's final value. */
int harness_run_until(struct event_base *base, int (*pred)(void *), void *arg,
		      int ms);
/* With the loop running in another thread: return once that thread has
 * run a callback queued now, so whatever callback it was running has
 * finished (libevent 2.1.12 deadlocks when a listener is disabled or freed
 * from another thread while its callback runs). Needs threads enabled. */
void harness_loop_barrier(struct event_base *base);
/* Monotonic milliseconds. */
long long harness_now_ms(void);
void harness_sleep_ms(int ms);

/* ---- resources ---------------------------------------------------------- */

/* Number of open fds of this process (/proc/self/fd). */
int harness_fd_count(void);
/* Whether @p fd is an open descriptor. */
int harness_fd_is_open(int fd);

#endif /* EVU_TEST_HARNESS_H */
