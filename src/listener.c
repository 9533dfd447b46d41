/*
 * The façade: libevent's nine evconnlistener functions, reference counting,
 * locking and delivery to the user. Backends do the accepting.
 *
 * SPDX-License-Identifier: BSD-3-Clause
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "evu-internal.h"

#define EVU_DEFAULT_BACKLOG 128

static int evu_lock_new(pthread_mutex_t **out)
{
	pthread_mutexattr_t attr;
	pthread_mutex_t *mu;
	int rc;

	mu = malloc(sizeof(*mu));
	if (!mu)
		return -ENOMEM;
	pthread_mutexattr_init(&attr);
	pthread_mutexattr_settype(&attr, PTHREAD_MUTEX_RECURSIVE);
	rc = pthread_mutex_init(mu, &attr);
	pthread_mutexattr_destroy(&attr);
	if (rc) {
		free(mu);
		return -rc;
	}
	*out = mu;
	return 0;
}

static void evu_no_event_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
}

/*
 * libevent takes a NULL base to mean the legacy current base (the one
 * event_init() made): event_assign() picks it up. The base itself is private
 * to libevent, so ask event_assign() for it; with no current base this
 * stays NULL (libevent would hand back a listener that never fires).
 */
struct event_base *evu_base_or_current(struct event_base *base)
{
	struct event *probe;

	if (base)
		return base;
	probe = malloc(event_get_struct_event_size());
	if (!probe)
		return NULL;
	if (event_assign(probe, NULL, -1, 0, evu_no_event_cb, NULL) == 0) {
		base = event_get_base(probe);
		event_debug_unassign(probe);
	}
	free(probe);
	return base;
}

void evu_listener_release(struct evconnlistener *lev)
{
	if (lev->lock) {
		/* Whoever held it last (evconnlistener_free in another thread)
		 * has let go once we get it. */
		pthread_mutex_lock(lev->lock);
		pthread_mutex_unlock(lev->lock);
		pthread_mutex_destroy(lev->lock);
		free(lev->lock);
	}
	free(lev);
}

bool evu_decref_and_unlock(struct evconnlistener *lev)
{
	bool release;

	if (--lev->refcnt > 0) {
		evu_unlock(lev);
		return false;
	}
	/* Last reference: the backend lets go of the socket; it may keep the
	 * memory until in-flight kernel work on it has completed. */
	release = lev->ops->destroy(lev);
	evu_share_leave(lev);
	if (lev->flags & LEV_OPT_CLOSE_ON_FREE)
		close(lev->fd);
	evu_unlock(lev);
	if (release)
		evu_listener_release(lev);
	return true;
}

void evu_deliver(struct evconnlistener *lev, int fd, struct sockaddr *addr,
		 socklen_t addrlen)
{
	lev->stats.accepted++;
	/* As in libevent 2.2.1 the lock stays held across the callback, so a
	 * disable or free from another thread waits for it to return. */
	lev->cb(lev, fd, addr, (int)addrlen, lev->user_data);
}

int evu_accept_drain(struct evconnlistener *lev, int max, bool *empty)
{
	struct sockaddr_storage ss;
	socklen_t len;
	int fd;

	if (empty)
		*empty = false;
	for (int n = 0; n < max && lev->enabled && !lev->freed; n++) {
		len = sizeof(ss);
		fd = accept4(lev->fd, (struct sockaddr *)&ss, &len, lev->accept_flags);
		if (fd < 0) {
			if (empty && n == 0)
				*empty = errno == EAGAIN || errno == EWOULDBLOCK;
			return evu_accept_err_retriable(errno) ? 0 : -errno;
		}
		if (len == 0) { /* old kernels under port scans */
			close(fd);
			continue;
		}
		if (!lev->cb) { /* as libevent: accepted and closed, one per wakeup */
			close(fd);
			lev->stats.closed++;
			return 0;
		}
		lev->backoff_ms = 0;
		lev->stats.direct++;
		evu_deliver(lev, fd, (struct sockaddr *)&ss, len);
	}
	return 0;
}

void evu_report_error(struct evconnlistener *lev, int err)
{
	lev->stats.errors++;
	if (lev->errorcb) {
		errno = err; /* the callback reads EVUTIL_SOCKET_ERROR() */
		lev->errorcb(lev, lev->user_data);
	} else {
		evu_warn("Error from accept() call: %s", strerror(err));
	}
}

struct evconnlistener *evu_listener_new(struct event_base *base, evconnlistener_cb cb,
					void *ptr, unsigned flags, int backlog,
					evutil_socket_t fd, bool own_socket)
{
	const struct evu_backend_ops *ops;
	struct evconnlistener *lev;
	const char *why = "";
	int err = 0;

	base = evu_base_or_current(base);
	if (!base || fd < 0) {
		errno = base ? EBADF : EINVAL;
		return NULL;
	}
	if (backlog > 0) {
		if (listen(fd, backlog) < 0)
			return NULL;
	} else if (backlog < 0) {
		if (listen(fd, EVU_DEFAULT_BACKLOG) < 0)
			return NULL;
	}

	ops = evu_backend_choose(&err, &why);
	if (!ops) {
		errno = -err;
		return NULL;
	}

	lev = calloc(1, sizeof(*lev));
	if (!lev) {
		errno = ENOMEM;
		return NULL;
	}
	lev->ops = ops;
	lev->base = base;
	lev->cb = cb;
	lev->user_data = ptr;
	lev->flags = flags;
	lev->fd = fd;
	lev->own_socket = own_socket;
	lev->refcnt = 1;
	lev->enabled = !(flags & LEV_OPT_DISABLED);
	if (!(flags & LEV_OPT_LEAVE_SOCKETS_BLOCKING))
		lev->accept_flags |= SOCK_NONBLOCK;
	if (flags & LEV_OPT_CLOSE_ON_EXEC)
		lev->accept_flags |= SOCK_CLOEXEC;
	if (flags & LEV_OPT_THREADSAFE) {
		err = evu_lock_new(&lev->lock);
		if (err)
			goto fail;
	}
	err = evu_share_join(lev);
	if (err)
		goto fail;

	err = ops->attach(lev);
	if (err) {
		/* The io_uring backend may refuse a base (ring setup failed for
		 * it alone); unless io_uring was demanded, fall back. */
		if (ops == &evu_event_ops || evu_backend_forced() == EVURING_BACKEND_URING)
			goto fail;
		why = err == -ENOTCONN ? "socket is not listening: libevent's behaviour needs the event backend"
				       : "no io_uring ring for this event_base";
		evu_debug("listener fd %d: io_uring backend not used (%s)", fd, strerror(-err));
		lev->ops = ops = &evu_event_ops;
		err = ops->attach(lev);
		if (err)
			goto fail;
	}
	evu_debug("listener fd %d: %s backend (%s)", fd, ops->name, why);

	if (evu_wants_accept(lev)) {
		err = ops->start(lev);
		if (err) {
			lev->ops->destroy(lev);
			goto fail;
		}
	}
	return lev;

fail:
	evu_share_leave(lev);
	if (lev->lock) {
		pthread_mutex_destroy(lev->lock);
		free(lev->lock);
	}
	free(lev);
	errno = -err;
	return NULL;
}

EVURING_API struct evconnlistener *evconnlistener_new(struct event_base *base,
					  evconnlistener_cb cb, void *ptr,
					  unsigned flags, int backlog,
					  evutil_socket_t fd)
{
	return evu_listener_new(base, cb, ptr, flags, backlog, fd, false);
}

EVURING_API void evconnlistener_free(struct evconnlistener *lev)
{
	if (!lev)
		return;
	evu_lock(lev);
	lev->cb = NULL;
	lev->errorcb = NULL;
	lev->freed = true;
	lev->ops->stop(lev);
	if (lev->ops->quiesce) {
		/* Our reference keeps lev alive; the backend may need the
		 * loop thread, which may need the lock. */
		evu_unlock(lev);
		lev->ops->quiesce(lev);
		evu_lock(lev);
	}
	evu_decref_and_unlock(lev);
}

EVURING_API int evconnlistener_enable(struct evconnlistener *lev)
{
	int r = 0;

	if (!lev) {
		errno = EINVAL;
		return -1;
	}
	evu_lock(lev);
	lev->enabled = true;
	if (lev->cb)
		r = lev->ops->start(lev);
	evu_unlock(lev);
	if (r) {
		errno = -r;
		return -1;
	}
	return 0;
}

EVURING_API int evconnlistener_disable(struct evconnlistener *lev)
{
	int r;

	if (!lev) {
		errno = EINVAL;
		return -1;
	}
	evu_lock(lev);
	lev->enabled = false;
	r = lev->ops->stop(lev);
	evu_unlock(lev);
	if (r) {
		errno = -r;
		return -1;
	}
	return 0;
}

EVURING_API struct event_base *evconnlistener_get_base(struct evconnlistener *lev)
{
	struct event_base *base;

	if (!lev) {
		errno = EINVAL;
		return NULL;
	}
	evu_lock(lev);
	base = lev->base;
	evu_unlock(lev);
	return base;
}

EVURING_API evutil_socket_t evconnlistener_get_fd(struct evconnlistener *lev)
{
	evutil_socket_t fd;

	if (!lev) {
		errno = EINVAL;
		return -1;
	}
	evu_lock(lev);
	fd = lev->fd;
	evu_unlock(lev);
	return fd;
}

EVURING_API void evconnlistener_set_cb(struct evconnlistener *lev, evconnlistener_cb cb,
			   void *arg)
{
	bool start;

	if (!lev)
		return;
	evu_lock(lev);
	start = lev->enabled && !lev->cb && cb && !lev->freed;
	lev->cb = cb;
	lev->user_data = arg;
	if (start)
		lev->ops->start(lev);
	evu_unlock(lev);
}

EVURING_API void evconnlistener_set_error_cb(struct evconnlistener *lev,
				 evconnlistener_errorcb errorcb)
{
	if (!lev)
		return;
	evu_lock(lev);
	lev->errorcb = errorcb;
	evu_unlock(lev);
}

/* --- extension API --- */

EVURING_API int evuring_listener_backend(struct evconnlistener *lev)
{
	int id;

	if (!lev) {
		errno = EINVAL;
		return -1;
	}
	evu_lock(lev);
	id = lev->ops->id;
	evu_unlock(lev);
	return id;
}

EVURING_API int evuring_listener_get_stats(struct evconnlistener *lev,
			       struct evuring_stats *out)
{
	if (!lev || !out) {
		errno = EINVAL;
		return -1;
	}
	evu_lock(lev);
	*out = lev->stats;
	evu_unlock(lev);
	return 0;
}

EVURING_API const char *evuring_version(void)
{
#define EVU_STR2(x) #x
#define EVU_STR(x) EVU_STR2(x)
	return EVU_STR(EVURING_VERSION_MAJOR) "." EVU_STR(EVURING_VERSION_MINOR)
		"." EVU_STR(EVURING_VERSION_PATCH);
}
