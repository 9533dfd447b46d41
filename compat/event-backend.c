/*
 * The event backend: a persistent libevent read event on the listening
 * socket and an accept4() loop, as libevent's own listener does. Used where
 * io_uring multishot accept is unavailable or not wanted.
 *
 * One difference from libevent, on purpose: after a non-retriable accept
 * error (EMFILE, ...) the read event is paused for a short, growing delay
 * instead of firing again at once, so an exhausted listener does not spin.
 *
 * SPDX-License-Identifier: BSD-3-Clause
 */
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <unistd.h>

#include "evu-internal.h"

struct evu_event_lev {
	struct event *read_ev;
	struct event *backoff_ev; /* made on first error */
	bool paused;              /* read_ev removed while backing off */
};

static void evu_event_read_cb(evutil_socket_t fd, short what, void *arg);

static int evu_event_attach(struct evconnlistener *lev)
{
	struct evu_event_lev *el = calloc(1, sizeof(*el));

	if (!el)
		return -ENOMEM;
	el->read_ev = event_new(lev->base, lev->fd, EV_READ | EV_PERSIST,
				evu_event_read_cb, lev);
	if (!el->read_ev) {
		free(el);
		return -ENOMEM;
	}
	lev->backend = el;
	return 0;
}

static int evu_event_start(struct evconnlistener *lev)
{
	struct evu_event_lev *el = lev->backend;

	if (el->paused)
		return 0; /* the backoff timer re-adds the read event */
	return event_add(el->read_ev, NULL) < 0 ? -ENOMEM : 0;
}

static int evu_event_stop(struct evconnlistener *lev)
{
	struct evu_event_lev *el = lev->backend;

	/* Non-blocking: a callback that already fired waits for our lock and
	 * then finds the listener disabled, so none starts after we return. */
	if (el->backoff_ev)
		event_del_noblock(el->backoff_ev);
	el->paused = false;
	return event_del_noblock(el->read_ev) < 0 ? -ENOENT : 0;
}

static void evu_event_finalize(struct event *ev, void *arg)
{
	(void)ev;
	evu_listener_release(arg);
}

static bool evu_event_destroy(struct evconnlistener *lev)
{
	struct evu_event_lev *el = lev->backend;
	bool threaded = lev->lock != NULL;

	if (el->backoff_ev)
		event_free(el->backoff_ev);
	lev->backend = NULL;
	if (!threaded) {
		event_free(el->read_ev);
		free(el);
		return true;
	}
	/* Another thread may be about to run our callback: let libevent free
	 * the listener once it is sure the callback is not running. */
	event_free_finalize(0, el->read_ev, evu_event_finalize);
	free(el);
	return false;
}

static void evu_event_backoff_cb(evutil_socket_t fd, short what, void *arg)
{
	struct evconnlistener *lev = arg;
	struct evu_event_lev *el;

	evu_lock(lev);
	el = lev->backend;
	if (el && el->paused) {
		el->paused = false;
		if (evu_wants_accept(lev))
			event_add(el->read_ev, NULL);
	}
	evu_unlock(lev);
}

/* Stop reading for a while after an error the next accept would repeat. */
static void evu_event_pause(struct evconnlistener *lev)
{
	struct evu_event_lev *el = lev->backend;
	struct timeval tv = { 0, 0 };

	if (!el->backoff_ev) {
		el->backoff_ev = evtimer_new(lev->base, evu_event_backoff_cb, lev);
		if (!el->backoff_ev)
			return; /* keep libevent's behaviour: retry on readiness */
	}
	tv.tv_usec = evu_backoff_next(lev) * 1000;
	event_del_noblock(el->read_ev);
	el->paused = true;
	evtimer_add(el->backoff_ev, &tv);
}

static void evu_event_read_cb(evutil_socket_t fd, short what, void *arg)
{
	struct evconnlistener *lev = arg;
	int err;

	(void)fd;
	(void)what;
	evu_lock(lev);
	if (!lev->enabled || lev->freed) {
		evu_unlock(lev); /* disabled or freed meanwhile by another thread */
		return;
	}
	lev->stats.batches++;
	lev->refcnt++; /* callbacks may free the listener */
	err = evu_accept_drain(lev, INT_MAX, NULL);
	if (err && !lev->freed) {
		evu_report_error(lev, -err);
		if (evu_wants_accept(lev))
			evu_event_pause(lev);
	}
	evu_decref_and_unlock(lev);
}

const struct evu_backend_ops evu_event_ops = {
	.name = "event",
	.id = EVURING_BACKEND_EVENT,
	.attach = evu_event_attach,
	.start = evu_event_start,
	.stop = evu_event_stop,
	.destroy = evu_event_destroy,
};
