/*
 * Internal interface shared by the façade (src/) and the backends (uring/,
 * compat/). Everything here is hidden; internal calls return -errno.
 *
 * SPDX-License-Identifier: BSD-3-Clause
 */
#ifndef EVU_INTERNAL_H
#define EVU_INTERNAL_H

#include <pthread.h>
#include <errno.h>
#include <stdbool.h>
#include <sys/socket.h>

#include <event2/event.h>
#include <event2/listener.h>

#include "evuring.h"

#define EVU_HIDDEN __attribute__((visibility("hidden")))

/*
 * libevuring binds to the program's own libevent at run time (it records no
 * dependency on one). Weak references: preloaded into a program without
 * libevent under LD_BIND_NOW=1, where every reference is resolved at start,
 * the program must still start (nothing calls them there).
 */
#pragma weak event_active
#pragma weak event_add
#pragma weak event_assign
#pragma weak event_debug_unassign
#pragma weak event_del_noblock
#pragma weak event_free
#pragma weak event_free_finalize
#pragma weak event_get_base
#pragma weak event_get_struct_event_size
#pragma weak event_new

struct evu_backend_ops;
struct evu_share;

/*
 * The listener. libevent keeps it opaque, so the layout is ours. Backends keep
 * their own state behind `backend`; the façade never looks inside it.
 */
struct evconnlistener {
	const struct evu_backend_ops *ops;
	void *backend;
	struct event_base *base;
	evconnlistener_cb cb;
	evconnlistener_errorcb errorcb;
	void *user_data;
	unsigned flags;
	evutil_socket_t fd;
	int accept_flags;       /* SOCK_NONBLOCK / SOCK_CLOEXEC for accepted fds */
	int refcnt;             /* creator + each running callback */
	bool enabled;           /* the user's wish (libevent's lev->enabled) */
	bool freed;             /* evconnlistener_free() has been called */
	int backoff_ms;         /* pause after a non-retriable accept error */
	bool own_socket;        /* made by evconnlistener_new_bind */
	struct evu_share *share; /* this process's listeners on the socket */
	pthread_mutex_t *lock;  /* recursive; only with LEV_OPT_THREADSAFE */
	struct evuring_stats stats;
};

/*
 * One backend. The façade calls these with the listener lock held.
 * start/stop follow "enabled && cb": start begins accepting, stop guarantees
 * that no callback starts after it returns. destroy releases backend state
 * and runs once, when the last reference goes.
 */
struct evu_backend_ops {
	const char *name;
	int id;                                        /* EVURING_BACKEND_* */
	int (*attach)(struct evconnlistener *lev);     /* -errno */
	int (*start)(struct evconnlistener *lev);      /* -errno */
	int (*stop)(struct evconnlistener *lev);       /* -errno */
	/* Last reference gone (lock held): let go of the socket so the façade
	 * may close it. Returns true if the memory may be released now, false
	 * if the backend releases it later (kernel work still in flight). */
	bool (*destroy)(struct evconnlistener *lev);
	/* Optional. evconnlistener_free(), unlocked, before the last
	 * reference goes: wait until the socket no longer accepts. */
	void (*quiesce)(struct evconnlistener *lev);
};

EVU_HIDDEN extern const struct evu_backend_ops evu_uring_ops;
EVU_HIDDEN extern const struct evu_backend_ops evu_event_ops;

/* --- locking (no-ops unless LEV_OPT_THREADSAFE) --- */
static inline void evu_lock(struct evconnlistener *lev)
{
	if (lev->lock)
		pthread_mutex_lock(lev->lock);
}

static inline void evu_unlock(struct evconnlistener *lev)
{
	if (lev->lock)
		pthread_mutex_unlock(lev->lock);
}

/* Whether the listener should be accepting right now. */
static inline bool evu_wants_accept(const struct evconnlistener *lev)
{
	return lev->enabled && lev->cb && !lev->freed;
}

/* Drop a reference taken with the lock held; unlocks. Returns true if that
 * was the last one: the listener is then gone for the caller. */
EVU_HIDDEN bool evu_decref_and_unlock(struct evconnlistener *lev);

/* Free the listener's memory (after destroy returned false, once the
 * backend's in-flight work is over). */
EVU_HIDDEN void evu_listener_release(struct evconnlistener *lev);
/* @p base, or for NULL libevent's legacy current base (event_init()), or
 * NULL when there is none. */
EVU_HIDDEN struct event_base *evu_base_or_current(struct event_base *base);

/* Hand one accepted fd to the user callback. The caller holds the lock and
 * a reference, and has checked evu_wants_accept(). */
EVU_HIDDEN void evu_deliver(struct evconnlistener *lev, int fd,
			    struct sockaddr *addr, socklen_t addrlen);

/*
 * libevent's accept loop, for a listening socket found readable: accept4()
 * and hand each connection to the callback before taking the next, until
 * @p max were taken, the socket is drained, an error, or the listener no
 * longer accepts (a callback disabled or freed it). The caller holds the
 * lock and a reference of its own. Returns 0, or -errno of a non-retriable
 * error for the caller to report. *empty (if not NULL): the first accept
 * found no connection.
 */
EVU_HIDDEN int evu_accept_drain(struct evconnlistener *lev, int max, bool *empty);

/* Report a non-retriable accept error: error callback (errno set) or a
 * warning on stderr, as libevent. Caller holds the lock and a reference. */
EVU_HIDDEN void evu_report_error(struct evconnlistener *lev, int err);

/* After a non-retriable error a backend pauses accepting for this many ms
 * (growing), instead of retrying in a busy loop; reset on success. */
static inline int evu_backoff_next(struct evconnlistener *lev)
{
	lev->backoff_ms = lev->backoff_ms ? lev->backoff_ms * 2 : 10;
	if (lev->backoff_ms > 80)
		lev->backoff_ms = 80;
	return lev->backoff_ms;
}

/* Accept errors libevent treats as "try again later" (quietly). */
static inline bool evu_accept_err_retriable(int err)
{
	return err == EAGAIN || err == EWOULDBLOCK || err == EINTR ||
	       err == ECONNABORTED;
}

/* Accept errors that mean "out of fds or memory for now". */
static inline bool evu_accept_err_resource(int err)
{
	return err == EMFILE || err == ENFILE || err == ENOBUFS || err == ENOMEM;
}

/* --- who else accepts from the socket (src/share.c) --- */

/* Count @p lev among its socket's listeners in this process. -errno. */
EVU_HIDDEN int evu_share_join(struct evconnlistener *lev);
EVU_HIDDEN void evu_share_leave(struct evconnlistener *lev);
/* Bumped whenever a socket gains a second (third, ...) listener: a loop
 * that saw the same value last time need not look at its listeners. */
EVU_HIDDEN unsigned evu_share_generation(void);
/* No other listener of this process accepts from @p lev's socket now. */
EVU_HIDDEN bool evu_share_alone(const struct evconnlistener *lev);
/* The socket was handed to evconnlistener_new() in a process forked since
 * evuring was loaded: it may be a prefork child's, accepted from by its
 * parent and siblings too. */
EVU_HIDDEN bool evu_share_handed_after_fork(const struct evconnlistener *lev);

/* evconnlistener_new(); @p own_socket: made by evconnlistener_new_bind. */
EVU_HIDDEN struct evconnlistener *evu_listener_new(struct event_base *base,
						   evconnlistener_cb cb, void *ptr,
						   unsigned flags, int backlog,
						   evutil_socket_t fd, bool own_socket);

/* --- backend choice (src/backend.c) --- */

/* The backend for a new listener: explicit override, cached probe, fallback.
 * *why says why. Returns NULL with *err set (-errno) only when io_uring was
 * demanded but is unavailable. */
EVU_HIDDEN const struct evu_backend_ops *evu_backend_choose(int *err, const char **why);
/* The user's explicit choice (env or evuring_set_backend), or AUTO. */
EVU_HIDDEN int evu_backend_forced(void);

/* EVURING_TEST_FAULT=name: fault injection, compiled into the tests' own
 * build of the library only (libevuring-testhooks, EVU_TEST_HOOKS). */
#ifdef EVU_TEST_HOOKS
EVU_HIDDEN bool evu_test_fault(const char *name);
#else
static inline bool evu_test_fault(const char *name)
{
	(void)name;
	return false;
}
#endif

/* Whether EVURING_DEBUG is set; evu_debug() prints a line to stderr if so. */
EVU_HIDDEN bool evu_debug_enabled(void);
EVU_HIDDEN void evu_debug(const char *fmt, ...)
	__attribute__((format(printf, 1, 2)));
EVU_HIDDEN void evu_warn(const char *fmt, ...)
	__attribute__((format(printf, 1, 2)));

/* Switch a listener to the event backend mid-life (multishot accept refused
 * on first arm). Called with the lock held, from the loop thread. */
EVU_HIDDEN int evu_switch_to_event(struct evconnlistener *lev);

/* --- io_uring availability probe (uring/probe.c) --- */
/* 0 if usable, else -errno; *why gets a static explanation. Cached. */
EVU_HIDDEN int evu_uring_probe(const char **why);

#endif /* EVU_INTERNAL_H */
