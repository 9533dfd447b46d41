/*
 * evuring: libevent's evconnlistener on io_uring multishot accept.
 *
 * The listener API itself is libevent's <event2/listener.h>; evuring provides
 * its nine functions. This header adds only what libevent lacks: which backend
 * a listener runs on, per-listener counters, backend selection and the library
 * version.
 *
 * SPDX-License-Identifier: BSD-3-Clause
 */
#ifndef EVURING_H
#define EVURING_H

#include <stdint.h>
#include <event2/listener.h>

#ifdef __cplusplus
extern "C" {
#endif

/** Marks a declaration as part of evuring's exported ABI. */
#if defined(EVURING_BUILDING) && defined(__GNUC__)
#define EVURING_API __attribute__((visibility("default")))
#else
#define EVURING_API
#endif

#ifndef LEV_OPT_BIND_IPV4_AND_IPV6
/** libevent 2.2 flag: clear IPV6_V6ONLY so an IPv6 listener also takes IPv4.
 *  Defined here because libevent 2.1 headers lack it; evuring honours it. */
#define LEV_OPT_BIND_IPV4_AND_IPV6 (1u << 9)
#endif

/** Major version of evuring. */
#define EVURING_VERSION_MAJOR 0
/** Minor version of evuring. */
#define EVURING_VERSION_MINOR 1
/** Patch version of evuring. */
#define EVURING_VERSION_PATCH 0

/** How a listener accepts connections. */
enum evuring_backend {
	/** Let evuring choose: io_uring when usable, otherwise the event backend. */
	EVURING_BACKEND_AUTO = 0,
	/** io_uring multishot accept, reaped from a ring per event_base. */
	EVURING_BACKEND_URING = 1,
	/** A persistent libevent read event and an accept4() loop, as libevent does. */
	EVURING_BACKEND_EVENT = 2
};

/** Per-listener counters. All counts start at zero when the listener is made. */
struct evuring_stats {
	/** Connections handed to the accept callback. */
	uint64_t accepted;
	/** Accept errors reported (error callback or warning). */
	uint64_t errors;
	/** Accepted sockets closed without a callback: NULL callback, no peer
	 *  address, or left over when a listener was freed. */
	uint64_t closed;
	/** Times a multishot accept had ended and was submitted again (io_uring). */
	uint64_t rearms;
	/** Completion batches reaped that held work for this listener (io_uring);
	 *  readiness wakeups (event backend). */
	uint64_t batches;
	/** Of `accepted`, the connections taken by a plain accept4() on the
	 *  socket's readiness, as libevent's listener takes them: all of them on
	 *  the event backend; on io_uring, those of a socket other loops or
	 *  processes accept from too (accepted - direct came from io_uring). */
	uint64_t direct;
	/** Reserved for future counters; zero. */
	uint64_t reserved[2];
};

/**
 * The backend a listener runs on.
 * @param lev a listener made by evconnlistener_new() or evconnlistener_new_bind()
 * @return EVURING_BACKEND_URING or EVURING_BACKEND_EVENT; -1 with errno EINVAL
 *         if @p lev is NULL.
 */
EVURING_API int evuring_listener_backend(struct evconnlistener *lev);

/**
 * Copy a listener's counters.
 * @param lev the listener
 * @param out where to write them
 * @return 0, or -1 with errno EINVAL if an argument is NULL.
 */
EVURING_API int evuring_listener_get_stats(struct evconnlistener *lev,
					   struct evuring_stats *out);

/**
 * A short name for a backend value: "auto", "uring" or "event".
 * @return the name, or "unknown" for any other value.
 */
EVURING_API const char *evuring_backend_name(int backend);

/**
 * Choose the backend for listeners created from now on, overriding the
 * EVURING_BACKEND environment variable. EVURING_BACKEND_URING makes
 * evconnlistener_new*() fail (NULL, errno from the probe) where io_uring
 * multishot accept is unavailable; EVURING_BACKEND_AUTO restores the default.
 * @return 0, or -1 with errno EINVAL for an unknown value.
 */
EVURING_API int evuring_set_backend(int backend);

/**
 * Whether io_uring multishot accept is usable in this process (probed once,
 * cached).
 * @param why if not NULL, receives a static string saying why or why not
 * @return 1 if usable, 0 if not.
 */
EVURING_API int evuring_uring_available(const char **why);

/**
 * Whether a base's loop sleeps in evuring's io_uring instead of epoll_wait
 * (epoll_pwait2 for a libevent 2.2 that calls it) right now. Only on the io_uring backend with DEFER_TASKRUN (Linux 6.1+),
 * for a base on libevent's epoll method with an accepting listener and no
 * LEV_OPT_THREADSAFE one on its ring, and not with EVURING_WAIT=epoll. With
 * EVURING_WAIT=ring the switch happens in the base's loop, in the first
 * iteration that sleeps after a listener is armed; with the default
 * EVURING_WAIT=auto the loop goes to the ring once 64 wakeups show that it
 * wakes mostly for connections, and back to epoll_wait when it wakes mostly
 * for its other fds.
 * @param base an event_base
 * @return 1 if it does, 0 if not, -1 with errno EINVAL if @p base is NULL.
 */
EVURING_API int evuring_base_sleeps_in_ring(struct event_base *base);

/** The library version as "MAJOR.MINOR.PATCH". */
EVURING_API const char *evuring_version(void);

#ifdef __cplusplus
}
#endif

#endif /* EVURING_H */
