/*
 * The io_uring backend: each accepting listener that is its socket's sole
 * accepter keeps one multishot accept armed on its base's ring. Per
 * connection the hot path is: one CQE reaped from shared memory, the peer
 * address (below), the callback. A socket other loops or processes accept
 * from too is served as libevent serves it (enum evu_path).
 *
 * SPDX-License-Identifier: BSD-3-Clause
 */
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "uring.h"

static void evu_ulev_arm_cb(evutil_socket_t fd, short what, void *arg);

#ifndef IORING_NOP_INJECT_RESULT
#define IORING_NOP_INJECT_RESULT (1U << 0) /* kernel 6.9+, not in liburing 2.3 */
#endif

/*
 * Test-only fault: EVURING_TEST_FAULT=first-arm-einval makes the kernel
 * answer a listener's first arm with -EINVAL (an injected NOP result), as a
 * kernel without multishot accept would, to prove the switch to the event
 * backend loses nothing. Read once; never set in production.
 */
static bool evu_fault_first_arm(void)
{
	static int state = -1;

	if (state < 0)
		state = evu_test_fault("first-arm-einval");
	return state;
}

/* The connection's own peer address. getpeername() refuses a connection
 * the peer already reset; SO_PEERNAME still reports it, as accept() would,
 * but only into a buffer no longer than the address (else EINVAL). */
static int evu_peer_address(int fd, int family, struct sockaddr_storage *ss,
			    socklen_t *len)
{
	*len = sizeof(*ss);
	if (getpeername(fd, (struct sockaddr *)ss, len) == 0 && *len > 0)
		return 0;
	if (errno != ENOTCONN)
		return -errno;
	if (family == AF_INET)
		*len = sizeof(struct sockaddr_in);
	else if (family == AF_INET6)
		*len = sizeof(struct sockaddr_in6);
	else
		return -ENOTCONN;
	if (getsockopt(fd, SOL_SOCKET, SO_PEERNAME, ss, len) == 0 && *len > 0)
		return 0;
	return -ENOTCONN;
}

/* RING on DEFER_TASKRUN rings: the socket wakes the loop while the accept
 * is live (armed, not cancelled); `door_wanted` tells the wait module, which
 * may sleep in the ring instead. DIRECT: the socket's read event, pending
 * while started, as libevent's. Lock held. */
static void evu_ulev_update_door(struct evu_ulev *ul)
{
	bool wanted = ul->path == EVU_PATH_RING && ul->ring && ul->ring->defer &&
		      ul->inflight && !ul->cancelled && !ul->cancel_delegated && !ul->lev->freed;
	bool want = ul->path == EVU_PATH_DIRECT
			    ? ul->started && !ul->backing_off && !ul->lev->freed
			    : wanted && !evu_ring_sleeps_in_ring(ul->ring);

	if (wanted != ul->door_wanted) {
		ul->door_wanted = wanted;
		evu_wait_door_wanted(ul->ring, wanted);
	}
	if (want == ul->door_on)
		return;
	ul->door_on = want;
	if (want)
		event_add(ul->door_ev, NULL);
	else
		event_del_noblock(ul->door_ev);
}

int evu_ring_any_door_fd(struct evu_ring *r)
{
	int fd = -1;

	pthread_mutex_lock(&r->mu);
	for (struct evu_ulev *ul = r->ulevs; ul && fd < 0; ul = ul->ring_next) {
		evu_lock(ul->lev);
		if (ul->door_on && ul->door_wanted)
			fd = ul->lev->fd;
		evu_unlock(ul->lev);
	}
	pthread_mutex_unlock(&r->mu);
	return fd;
}

void evu_ring_update_doors(struct evu_ring *r)
{
	pthread_mutex_lock(&r->mu);
	for (struct evu_ulev *ul = r->ulevs; ul; ul = ul->ring_next) {
		evu_lock(ul->lev);
		evu_ulev_update_door(ul);
		evu_unlock(ul->lev);
	}
	pthread_mutex_unlock(&r->mu);
}

/* Rings without DEFER_TASKRUN: the ring event stays pending while some
 * listener may still get completions. DEFER_TASKRUN rings are woken by each
 * listener's door_ev instead (evu_ulev_update_door). */
static void evu_ulev_update_interest(struct evu_ulev *ul)
{
	struct evconnlistener *lev = ul->lev;
	bool interest;

	if (!ul->ring || ul->ring->defer)
		return;
	interest = ul->inflight || (!lev->freed && !ul->backing_off && evu_wants_accept(lev));
	evu_ring_set_interest(ul->ring, ul, interest);
}

/* Prepare the multishot accept; the caller submits (loop thread only). */
static int evu_ulev_arm(struct evu_ulev *ul)
{
	struct evconnlistener *lev = ul->lev;
	struct io_uring_sqe *sqe = evu_ring_get_sqe(ul->ring);

	if (!sqe)
		return -EBUSY;
	if (!ul->proven && evu_fault_first_arm()) {
		io_uring_prep_nop(sqe);
		sqe->rw_flags = IORING_NOP_INJECT_RESULT;
		sqe->len = (__u32)-EINVAL;
		ul->fault_armed = true;
	} else if (ul->addr_in_accept && ul->ring->defer) {
		ul->accept_addrlen = sizeof(ul->accept_addr);
		io_uring_prep_multishot_accept(sqe, lev->fd,
					       (struct sockaddr *)&ul->accept_addr,
					       &ul->accept_addrlen, lev->accept_flags);
	} else {
		io_uring_prep_multishot_accept(sqe, lev->fd, NULL, NULL, lev->accept_flags);
	}
	io_uring_sqe_set_data(sqe, ul);
	__atomic_store_n(&ul->inflight, true, __ATOMIC_RELEASE);
	ul->accepted_in_arm = 0;
	ul->cancelled = false;
	ul->cancel_delegated = false;
	evu_ulev_update_door(ul);
	return 0;
}

static void evu_ulev_cancel(struct evu_ulev *ul)
{
	bool may_submit;
	int ret;

	if (!ul->inflight || ul->cancelled || !ul->ring)
		return;
	may_submit = !ul->lev->lock || evu_ring_in_loop_thread(ul->ring);
	ret = evu_ring_cancel(ul->ring, ul, may_submit);
	if (ret == -EAGAIN) {
		/* Not the ring's thread (single issuer, or no synchronous
		 * cancel before 6.0): the loop thread cancels; delivery has
		 * already stopped. */
		ul->cancel_delegated = true;
		evu_ulev_update_door(ul);
		event_active(ul->arm_ev, EV_READ, 0);
		return;
	}
	ul->cancelled = true;
	evu_ulev_update_door(ul);
	/* Its final completion is announced by no socket: collect it. */
	evu_ring_kick(ul->ring);
}

/* The path the listener should take now. */
static enum evu_path evu_ulev_path_wanted(const struct evu_ulev *ul)
{
	return evu_share_alone(ul->lev) && !ul->others_outside ? EVU_PATH_RING
							       : EVU_PATH_DIRECT;
}

/*
 * The one place a listener's path changes; loop thread, lock held. To
 * DIRECT: its multishot accept is cancelled (what it accepted meanwhile is
 * still delivered) and the door becomes the socket's read event. To RING:
 * the caller arms it.
 */
static void evu_ulev_sync_path(struct evu_ulev *ul)
{
	enum evu_path want = evu_ulev_path_wanted(ul);

	if (want == ul->path)
		return;
	evu_debug("listener fd %d: %s", ul->lev->fd,
		  want == EVU_PATH_DIRECT
			  ? "its socket has other accepters: accept4() on readiness"
			  : "sole accepter of its socket: multishot accept");
	ul->path = want;
	ul->win_wakes = ul->win_misses = 0;
	if (want == EVU_PATH_DIRECT)
		evu_ulev_cancel(ul);
	evu_ulev_update_door(ul);
}

/*
 * Evidence of accepters this process cannot see (a socket passed to other
 * processes at exec or over a UNIX socket), per door wakeup, loop thread.
 * RING: a wakeup the ring brought nothing for since the last one (another
 * accept holds io_uring's wakeup; or, rarely, the socket woke us just before
 * our accept's work was queued): a quarter of a window of 64 and the socket
 * has others. DIRECT: a wakeup whose first accept found the queue empty
 * (another accepter was first); 256 in a row without one and the others
 * are gone, unless this process has other listeners on the socket.
 */
#define EVU_RING_WINDOW 64
#define EVU_DIRECT_WINDOW 256

static void evu_ulev_note_wakeup(struct evu_ulev *ul, bool miss)
{
	ul->win_wakes++;
	ul->win_misses += miss;
	if (ul->path == EVU_PATH_RING) {
		if (ul->win_misses >= EVU_RING_WINDOW / 4)
			ul->others_outside = true;
		else if (ul->win_wakes < EVU_RING_WINDOW)
			return;
	} else if (!miss) {
		if (ul->win_wakes < EVU_DIRECT_WINDOW)
			return;
		ul->others_outside = false;
	}
	ul->win_wakes = ul->win_misses = 0;
}

/* Ask for arm/stash delivery: now if we are the loop thread and nothing is
 * stashed, else through arm_ev in the loop thread. Returns true if an SQE
 * was prepared here (the caller or the reaper submits it). */
static bool evu_ulev_request_arm(struct evu_ulev *ul)
{
	if (ul->inflight || ul->backing_off)
		return false;
	if (ul->ring && !ul->ring->closing && ul->nstash == ul->stash_head &&
	    evu_ring_in_loop_thread(ul->ring)) {
		evu_ulev_sync_path(ul);
		return ul->path == EVU_PATH_RING && evu_ulev_arm(ul) == 0;
	}
	event_active(ul->arm_ev, EV_READ, 0);
	return false;
}

static void evu_ulev_stash(struct evu_ulev *ul, int fd)
{
	if (ul->stash_head == ul->nstash)
		ul->stash_head = ul->nstash = 0;
	if (ul->nstash == ul->capstash) {
		unsigned cap = ul->capstash ? ul->capstash * 2 : 16;
		int *p = realloc(ul->stash, cap * sizeof(*p));

		if (!p) {
			close(fd);
			ul->lev->stats.closed++;
			return;
		}
		ul->stash = p;
		ul->capstash = cap;
	}
	ul->stash[ul->nstash++] = fd;
}

static void evu_ulev_close_stash(struct evu_ulev *ul)
{
	while (ul->stash_head < ul->nstash) {
		close(ul->stash[ul->stash_head++]);
		ul->lev->stats.closed++;
	}
}

void evu_ulev_note_accept(struct evu_ulev *ul, int fd, uint64_t seq)
{
	if (!ul->addr_in_accept || ul->peer_seq == seq)
		return; /* not ours, or a later fd of this batch was noted */
	ul->peer_seq = seq;
	ul->peer_fd = -1;
	if (ul->accept_addrlen > sizeof(ul->accept_addr) ||
	    ul->accept_addr.ss_family != ul->family)
		return;
	ul->peer_fd = fd;
	ul->peer_len = ul->accept_addrlen;
	memcpy(&ul->peer, &ul->accept_addr, ul->accept_addrlen);
}

/* Deliver one fd to the user. Lock and a reference held. */
static void evu_ulev_deliver(struct evu_ulev *ul, int fd)
{
	struct evconnlistener *lev = ul->lev;
	struct sockaddr_storage ss;
	socklen_t len;

	if (fd == ul->peer_fd && ul->peer_seq == ul->ring->batch_seq) {
		ul->peer_fd = -1;
		lev->backoff_ms = 0;
		evu_deliver(lev, fd, (struct sockaddr *)&ul->peer, ul->peer_len);
		return;
	}
	if (evu_peer_address(fd, ul->family, &ss, &len) < 0) {
		/* libevent never hands out a connection without an address */
		close(fd);
		lev->stats.closed++;
		return;
	}
	lev->backoff_ms = 0;
	evu_deliver(lev, fd, (struct sockaddr *)&ss, len);
}

/* Stashed connections first, in order, while the user still accepts. */
static void evu_ulev_flush_stash(struct evu_ulev *ul)
{
	struct evconnlistener *lev = ul->lev;

	while (ul->stash_head < ul->nstash && evu_wants_accept(lev))
		evu_ulev_deliver(ul, ul->stash[ul->stash_head++]);
}

static void evu_ulev_take_fd(struct evu_ulev *ul, int fd, bool deliver)
{
	struct evconnlistener *lev = ul->lev;

	if (!lev->enabled) {
		evu_ulev_stash(ul, fd); /* delivered after a later enable */
	} else if (!lev->cb) {
		close(fd); /* libevent accepts and closes without a callback */
		lev->stats.closed++;
	} else if (!deliver || ul->stash_head < ul->nstash) {
		evu_ulev_stash(ul, fd);
		event_active(ul->arm_ev, EV_READ, 0);
	} else {
		evu_ulev_deliver(ul, fd);
	}
}

static void evu_ulev_backoff(struct evu_ulev *ul)
{
	struct timeval tv = { 0, evu_backoff_next(ul->lev) * 1000 };

	ul->backing_off = true;
	event_add(ul->arm_ev, &tv);
}

/* Handle the end of a request with an error. Lock and reference held. */
static void evu_ulev_on_error(struct evu_ulev *ul, int err, bool final)
{
	struct evconnlistener *lev = ul->lev;

	if (err == ECANCELED)
		return;
	if (err == EINVAL && !ul->proven && final &&
	    evu_backend_forced() != EVURING_BACKEND_URING) {
		/* Multishot accept refused on the first arm: an old kernel, or
		 * a socket that is not listening. The event backend behaves
		 * exactly as libevent in both cases. */
		evu_debug("listener fd %d: multishot accept refused (EINVAL) on first arm; switching to event backend",
			  lev->fd);
		ul->switched = true;
		evu_switch_to_event(lev);
		return;
	}
	if (evu_accept_err_retriable(err))
		return;
	/* A multishot accept takes the whole queue in one go, so it runs out
	 * of fds where libevent's loop, which hands each fd to the user before
	 * the next accept, would not. If this request handed out fds, the user
	 * has had them by now: re-arm, and report only an arm that gets none. */
	if (final && ul->accepted_in_arm && evu_accept_err_resource(err))
		return;
	evu_report_error(lev, err);
	if (final && err != EBADF && err != ENOTSOCK && evu_wants_accept(lev))
		evu_ulev_backoff(ul);
}

static void evu_ulev_free_now(struct evu_ulev *ul, struct evconnlistener *lev_to_release)
{
	evu_ring_release(ul);
	free(ul->stash);
	free(ul);
	if (lev_to_release)
		evu_listener_release(lev_to_release);
}

static void evu_ulev_finalize_ul(struct event *ev, void *arg)
{
	(void)ev;
	evu_ulev_free_now(arg, NULL);
}

static void evu_ulev_finalize_door(struct event *ev, void *arg)
{
	(void)ev;
	(void)arg; /* the door's callback no longer runs; arm_ev's frees ul */
}

static void evu_ulev_finalize_both(struct event *ev, void *arg)
{
	struct evu_ulev *ul = arg;

	(void)ev;
	evu_ulev_free_now(ul, ul->lev);
}

/*
 * Free the io_uring state (no request in flight), and the listener too if
 * with_listener. With THREADSAFE another thread may be about to run arm_ev's
 * callback: libevent's finalizer frees once it cannot run. `threaded` is
 * passed, not read from the listener, which may already be gone. Returns
 * true if the caller may free the listener itself now.
 */
static bool evu_ulev_free_as(struct evu_ulev *ul, bool threaded, bool with_listener)
{
	if (threaded) {
		event_free_finalize(0, ul->door_ev, evu_ulev_finalize_door);
		event_free_finalize(0, ul->arm_ev,
				    with_listener ? evu_ulev_finalize_both : evu_ulev_finalize_ul);
		return false;
	}
	event_free(ul->door_ev);
	event_free(ul->arm_ev);
	evu_ulev_free_now(ul, NULL);
	return with_listener;
}

static bool evu_ulev_free(struct evu_ulev *ul, bool with_listener)
{
	return evu_ulev_free_as(ul, ul->lev->lock != NULL, with_listener);
}

void evu_ulev_on_cqe(struct evu_ulev *ul, int res, unsigned flags, bool deliver)
{
	struct evconnlistener *lev = ul->lev;
	bool final = !(flags & IORING_CQE_F_MORE);

	evu_lock(lev);
	if (ul->fault_armed) { /* an older kernel's NOP gives 0, never an fd */
		ul->fault_armed = false;
		res = -EINVAL;
	}
	if (final) {
		__atomic_store_n(&ul->inflight, false, __ATOMIC_RELEASE);
		evu_ulev_update_door(ul);
	}
	if (lev->freed) {
		bool release = final && ul->release_pending;

		if (res >= 0) {
			close(res);
			lev->stats.closed++;
		}
		evu_unlock(lev);
		if (release && evu_ulev_free(ul, true))
			evu_listener_release(lev);
		return;
	}
	if (ul->last_batch != ul->ring->batch_seq) {
		ul->last_batch = ul->ring->batch_seq;
		lev->stats.batches++;
	}
	lev->refcnt++; /* callbacks may free the listener */
	if (res >= 0) {
		ul->proven = true;
		ul->accepted_in_arm++;
		ul->ring_got++;
		evu_ulev_take_fd(ul, res, deliver);
	} else {
		evu_ulev_on_error(ul, -res, final);
	}
	if (ul->switched) {
		/* lev now belongs to the event backend; ul is ours alone */
		bool threaded = lev->lock != NULL;

		evu_decref_and_unlock(lev);
		evu_ulev_free_as(ul, threaded, false);
		return;
	}
	/* another listener of this process took the socket up (a loop
	 * asleep in the ring has no door callback to notice it) */
	if (lev->refcnt > 1 && ul->path == EVU_PATH_RING && !evu_share_alone(lev))
		evu_ulev_sync_path(ul);
	if (final && lev->refcnt > 1 && evu_wants_accept(lev) && ul->path == EVU_PATH_RING) {
		if (res != -ECANCELED && !ul->backing_off)
			lev->stats.rearms++;
		evu_ulev_request_arm(ul);
	}
	if (lev->refcnt > 1)
		evu_ulev_update_interest(ul);
	evu_decref_and_unlock(lev);
}

/* A listener without a ring (its old one was retired) gets one of its base;
 * failing that, the event backend takes over. Loop thread. */
static int evu_ulev_reattach(struct evu_ulev *ul)
{
	struct evconnlistener *lev = ul->lev;
	int ret;

	evu_lock(lev);
	ret = evu_ring_acquire(lev->base, ul);
	if (ret < 0) {
		evu_debug("listener fd %d: no new ring (%s): event backend", lev->fd,
			  strerror(-ret));
		evu_ulev_free(ul, false);
		evu_switch_to_event(lev);
	}
	evu_unlock(lev);
	return ret;
}

/* Loop thread: ul's ring, entered (evu_ring_leave_loop after). A ring
 * entered from a thread or process that cannot drive it is retired, and ul
 * gets a new one. NULL if ul went to the event backend. */
static struct evu_ring *evu_ulev_enter(struct evu_ulev *ul)
{
	struct evconnlistener *lev = ul->lev;

	for (int i = 0; i < 2; i++) {
		if (ul->ring && evu_ring_enter_loop(ul->ring))
			return ul->ring;
		if (lev->ops != &evu_uring_ops || lev->backend != ul)
			return NULL;
		if (!ul->ring && evu_ulev_reattach(ul) < 0)
			return NULL;
	}
	return NULL;
}

static void evu_ulev_arm_cb(evutil_socket_t fd, short what, void *arg)
{
	struct evu_ulev *ul = arg;
	struct evconnlistener *lev = ul->lev;
	struct evu_ring *r;

	(void)fd;
	(void)what;
	evu_lock(lev);
	if (lev->freed) {
		/* freed from another thread that could not cancel */
		bool cancel = ul->cancel_delegated && ul->inflight && !ul->cancelled;

		r = ul->ring;
		evu_unlock(lev);
		if (cancel && r && evu_ring_enter_loop(r)) {
			evu_lock(lev);
			evu_ulev_cancel(ul);
			evu_unlock(lev);
			evu_ring_reap(r, true);
			evu_ring_leave_loop(r);
		}
		return;
	}
	evu_unlock(lev);
	r = evu_ulev_enter(ul);
	if (!r)
		return;
	evu_lock(lev);
	ul->backing_off = false;
	ul->cancel_delegated = false; /* the loop thread decides now */
	lev->refcnt++;
	evu_ulev_flush_stash(ul);
	if (lev->refcnt > 1) {
		evu_ulev_sync_path(ul);
		if (!evu_wants_accept(lev))
			evu_ulev_cancel(ul);
		else if (ul->path == EVU_PATH_RING && !ul->inflight)
			evu_ulev_arm(ul);
		evu_ulev_update_interest(ul);
		evu_ulev_update_door(ul);
	}
	evu_decref_and_unlock(lev);
	/* Submit, then reap at once: connections already queued are accepted
	 * inline by the submit, and are delivered in this loop iteration. */
	if (r->sq_pending)
		evu_ring_submit(r);
	evu_ring_reap(r, true);
	evu_ring_leave_loop(r);
}

/* DIRECT: libevent's accept loop. Lock and a reference held. */
static void evu_ulev_door_direct(struct evu_ulev *ul)
{
	struct evconnlistener *lev = ul->lev;
	bool empty;
	int err;

	lev->stats.batches++;
	err = evu_accept_drain(lev, INT_MAX, &empty);
	if (err && !lev->freed) {
		evu_report_error(lev, -err);
		if (evu_wants_accept(lev))
			evu_ulev_backoff(ul);
		evu_ulev_update_door(ul);
	}
	evu_ulev_note_wakeup(ul, empty);
}

/*
 * RING: the socket's wakeup has queued the accept's work (or is about to:
 * the socket wakes its epoll waiter first and, level-triggered, wakes us
 * again while connections wait). If the ring brought nothing since the last
 * door, another accepter holds io_uring's wakeup for the socket and its
 * loop may be busy: take one connection here, as libevent's loop would.
 * Lock and a reference held; the lock is let go while reaping.
 */
static void evu_ulev_door_ring(struct evu_ulev *ul, struct evu_ring *r)
{
	struct evconnlistener *lev = ul->lev;
	bool miss;

	r->win_accept++; /* EVURING_WAIT=auto's tally, while it sleeps in epoll */
	evu_unlock(lev);
	evu_wait_on_callback(r);
	evu_ring_reap(r, true);
	evu_lock(lev);
	if (lev->ops != &evu_uring_ops || lev->backend != ul)
		return; /* the reap moved it to the event backend */
	miss = ul->ring_got == ul->door_mark && ul->path == EVU_PATH_RING;
	if (miss && evu_wants_accept(lev))
		evu_accept_drain(lev, 1, NULL); /* an error repeats for the ring */
	ul->door_mark = ul->ring_got;
	evu_ulev_note_wakeup(ul, miss);
}

/* The listening socket is readable. */
static void evu_ulev_door_cb(evutil_socket_t fd, short what, void *arg)
{
	struct evu_ulev *ul = arg;
	struct evconnlistener *lev = ul->lev;
	struct evu_ring *r = ul->ring;
	bool entered;

	(void)fd;
	(void)what;
	/* retired (fork, another thread): ul has no ring until it arms */
	entered = r && evu_ring_enter_loop(r);
	evu_lock(lev);
	if (lev->freed) {
		evu_unlock(lev);
		if (entered) {
			evu_ring_reap(r, true);
			evu_ring_leave_loop(r);
		}
		return;
	}
	lev->refcnt++; /* callbacks may free the listener */
	if (entered)
		evu_ulev_sync_path(ul);
	if (ul->path == EVU_PATH_DIRECT)
		evu_ulev_door_direct(ul);
	else if (entered)
		evu_ulev_door_ring(ul, r);
	if (lev->refcnt > 1 && lev->ops == &evu_uring_ops && lev->backend == ul &&
	    ul->path == EVU_PATH_RING && evu_wants_accept(lev))
		evu_ulev_request_arm(ul);
	evu_decref_and_unlock(lev);
	if (entered) {
		if (r->sq_pending) {
			evu_ring_submit(r);
			evu_ring_reap(r, true);
		}
		evu_ring_leave_loop(r);
	}
}

static int evu_uring_attach(struct evconnlistener *lev)
{
	struct evu_ulev *ul;
	int listening = 0;
	socklen_t len = sizeof(listening);
	int ret;

	/* A socket that is not listening (libevent accepts one, and reports
	 * accept's error once it is readable) behaves exactly like libevent
	 * on the event backend; unless io_uring was demanded, use that. */
	if ((getsockopt(lev->fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &len) < 0 ||
	     !listening) && evu_backend_forced() != EVURING_BACKEND_URING)
		return -ENOTCONN;
	ul = calloc(1, sizeof(*ul));
	if (!ul)
		return -ENOMEM;
	ul->lev = lev;
	ul->peer_fd = -1;
	ul->others_outside = evu_share_handed_after_fork(lev);
	ul->path = evu_ulev_path_wanted(ul);
	len = sizeof(ul->family);
	if (getsockopt(lev->fd, SOL_SOCKET, SO_DOMAIN, &ul->family, &len) == 0)
		ul->addr_in_accept = ul->family == AF_INET || ul->family == AF_INET6;
	ret = evu_ring_acquire(lev->base, ul);
	if (ret < 0)
		goto fail_free;
	ul->arm_ev = event_new(lev->base, -1, 0, evu_ulev_arm_cb, ul);
	if (!ul->arm_ev) {
		ret = -ENOMEM;
		goto fail_release;
	}
	ul->door_ev = event_new(lev->base, lev->fd, EV_READ | EV_PERSIST, evu_ulev_door_cb, ul);
	if (!ul->door_ev) {
		ret = -ENOMEM;
		goto fail_arm_ev;
	}
	lev->backend = ul;
	return 0;

fail_arm_ev:
	event_free(ul->arm_ev);
fail_release:
	evu_ring_release(ul);
fail_free:
	free(ul);
	return ret;
}

/* A forked child, or a thread that cannot drive the ring: move to a ring
 * of our own first. The listener may even have gone to the event backend. */
static bool evu_uring_localize(struct evconnlistener *lev)
{
	struct evu_ulev *ul = lev->backend;

	if (ul->ring)
		evu_ring_retire_if_foreign(ul->ring, false);
	return lev->ops == &evu_uring_ops;
}

static int evu_uring_start(struct evconnlistener *lev)
{
	struct evu_ulev *ul;

	if (!evu_uring_localize(lev))
		return lev->ops->start(lev);
	ul = lev->backend;
	ul->started = true;
	evu_ulev_update_door(ul);
	evu_ulev_update_interest(ul);
	if (ul->inflight) {
		/* Still armed, or cancelled with its final CQE to come: the
		 * reaper re-arms then. */
		return 0;
	}
	if (evu_ulev_request_arm(ul) && ul->ring->busy == 0)
		return evu_ring_submit(ul->ring);
	return 0;
}

static int evu_uring_stop(struct evconnlistener *lev)
{
	struct evu_ulev *ul;

	if (!evu_uring_localize(lev))
		return lev->ops->stop(lev);
	ul = lev->backend;
	ul->started = false;
	if (ul->backing_off) {
		event_del_noblock(ul->arm_ev);
		ul->backing_off = false;
	}
	evu_ulev_cancel(ul); /* RING: its door goes with its accept */
	evu_ulev_update_interest(ul);
	if (ul->path == EVU_PATH_DIRECT) {
		/* The loop thread owns the door's state, unless the lock
		 * (THREADSAFE) orders us with it: hand it the removal, which
		 * it makes before the read event could deliver anything (the
		 * accept loop stops for a disabled listener). */
		if (lev->lock || !ul->ring || evu_ring_in_loop_thread(ul->ring))
			evu_ulev_update_door(ul);
		else
			event_active(ul->arm_ev, EV_READ, 0);
	}
	return 0;
}

static bool evu_uring_destroy(struct evconnlistener *lev)
{
	struct evu_ulev *ul;

	evu_uring_stop(lev);
	if (lev->ops != &evu_uring_ops)
		return lev->ops->destroy(lev);
	ul = lev->backend;
	evu_ulev_close_stash(ul);
	if (ul->inflight) {
		ul->release_pending = true; /* the reaper frees us later */
		return false;
	}
	lev->backend = NULL;
	return evu_ulev_free(ul, true);
}

void evu_ulev_orphan(struct evu_ulev *ul, bool forked)
{
	struct evconnlistener *lev = ul->lev;

	evu_lock(lev);
	/* abandoned: the old ring's close cancels it */
	__atomic_store_n(&ul->inflight, false, __ATOMIC_RELEASE);
	ul->cancelled = false;
	evu_ulev_update_door(ul);
	evu_ring_detach(ul);
	if (ul->release_pending) {
		evu_unlock(lev);
		if (evu_ulev_free(ul, true))
			evu_listener_release(lev);
		return;
	}
	if (forked)
		ul->others_outside = true; /* the parent holds the socket too */
	if (evu_wants_accept(lev))
		event_active(ul->arm_ev, EV_READ, 0);
	evu_unlock(lev);
}

/* @p act on each listener of @p r that @p pick chooses, until none is
 * chosen (act must make pick false), one at a time: an action may take
 * r->mu itself (the doors). */
static void evu_ulev_each(struct evu_ring *r, bool (*pick)(struct evu_ulev *),
			  void (*act)(struct evu_ulev *))
{
	for (;;) {
		struct evu_ulev *ul;

		pthread_mutex_lock(&r->mu);
		for (ul = r->ulevs; ul && !pick(ul); ul = ul->ring_next)
			;
		pthread_mutex_unlock(&r->mu);
		if (!ul)
			return;
		evu_lock(ul->lev);
		act(ul);
		evu_unlock(ul->lev);
	}
}

static bool evu_ulev_path_stale(struct evu_ulev *ul)
{
	return ul->path != evu_ulev_path_wanted(ul) && !ul->lev->freed;
}

void evu_ulev_sync_ring(struct evu_ring *r)
{
	evu_ulev_each(r, evu_ulev_path_stale, evu_ulev_sync_path);
}

static bool evu_ulev_armed_uncancelled(struct evu_ulev *ul)
{
	return __atomic_load_n(&ul->inflight, __ATOMIC_ACQUIRE) && !ul->cancelled;
}

static void evu_ulev_cancel_once(struct evu_ulev *ul)
{
	evu_ulev_cancel(ul);
	ul->cancelled = true; /* even if it failed: no second try */
}

void evu_ulev_cancel_ring(struct evu_ring *r)
{
	evu_ulev_each(r, evu_ulev_armed_uncancelled, evu_ulev_cancel_once);
}

/* The ring's own thread, not inside our callbacks: we may reap. */
static bool evu_ulev_may_reap(struct evu_ulev *ul)
{
	struct evu_ring *r = ul->ring;

	return (!ul->lev->lock || evu_ring_in_loop_thread(r)) &&
	       evu_ring_can_submit(r) && r->busy == 0;
}

/* The ring's own thread: collect completions for about `ms` milliseconds,
 * or less once `ul`'s request has completed (fds accepted for a freed
 * listener are closed; other listeners' are kept for them). */
static void evu_ulev_reap_wait(struct evu_ulev *ul, struct evu_ring *r, int ms)
{
	r->busy++;
	evu_ring_reap(r, false);
	if (ul->inflight) {
		struct __kernel_timespec ts = { 0, ms * 1000L * 1000L };
		struct io_uring_cqe *cqe;

		io_uring_wait_cqe_timeout(&r->uring, &cqe, &ts);
		evu_ring_reap(r, false);
	}
	r->busy--;
}

static long long evu_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000LL + ts.tv_nsec / 1000000;
}

/* A non-THREADSAFE listener stopped from another thread than its live loop
 * thread: wait up to `ms` for the loop to complete the cancellation it was
 * handed. Only the loop thread writes `inflight` then (atomically). */
static bool evu_uring_wait_loop_cancel(struct evu_ulev *ul, int ms)
{
	for (int i = 0; i < ms; i++) {
		struct timespec ts = { 0, 1000L * 1000L };

		if (!__atomic_load_n(&ul->inflight, __ATOMIC_ACQUIRE))
			return true;
		nanosleep(&ts, NULL);
	}
	return !__atomic_load_n(&ul->inflight, __ATOMIC_ACQUIRE);
}

/*
 * evconnlistener_free(), after stop, unlocked. As with libevent the socket
 * must be closed when free returns, so that a new bind to its port works;
 * but a cancelled request holds the socket until its final completion. So
 * wait for that (at most 2 s): reaping it ourselves in the ring's thread,
 * else waiting for the loop thread (a single-issuer ring, or a THREADSAFE
 * listener freed from elsewhere) while collecting completions already
 * posted. Inside our own callbacks we run the cancellation's work, which
 * lets go of the socket, and leave its completion to the reaper. If the
 * loop thread has exited, the kernel has cancelled its requests and posted
 * their final completions.
 */
static void evu_uring_quiesce(struct evconnlistener *lev)
{
	long long deadline = 0;

	for (;;) {
		struct evu_ulev *ul;
		struct evu_ring *r = NULL;
		bool waiting, may_reap = false, other_thread = false;

		evu_lock(lev);
		ul = lev->ops == &evu_uring_ops ? lev->backend : NULL;
		if (ul && !ul->ring)
			ul = NULL; /* retired: nothing in flight */
		if (ul && !lev->lock && evu_ring_can_wait_for_loop(ul->ring)) {
			/* Another thread than the live loop thread, no
			 * THREADSAFE: stop handed the cancellation to the
			 * loop (arm_ev), which owns the state now. Give it a
			 * moment; if it does not run, retire the ring from
			 * here (closing it cancels), as before. */
			r = ul->ring;
			evu_unlock(lev);
			if (!evu_uring_wait_loop_cancel(ul, 100))
				evu_ring_retire_if_foreign(r, true);
			return;
		}
		waiting = ul && ul->inflight && (ul->cancelled || ul->cancel_delegated);
		if (waiting) {
			r = ul->ring;
			may_reap = evu_ulev_may_reap(ul);
			other_thread = lev->lock && !evu_ring_in_loop_thread(r);
			if (other_thread)
				evu_ring_pin(r); /* the loop thread may retire it */
		}
		evu_unlock(lev);
		if (!waiting)
			return;
		if (!may_reap && !other_thread) {
			/* Inside our callbacks, where we may not reap: running
			 * the cancellation's work completes the request, which
			 * lets go of the socket; its CQE waits for the reaper,
			 * which then frees our state. */
			evu_ring_run_pending(r);
			return;
		}
		if (!deadline) {
			deadline = evu_now_ms() + 2000;
		} else if (evu_now_ms() > deadline) {
			evu_debug("listener fd %d: freed, but its accept did not complete its cancellation within 2 s",
				  lev->fd);
			if (other_thread)
				evu_ring_unpin(r);
			return;
		}
		if (other_thread) {
			/* Wait for the loop thread, collecting what is posted
			 * in case it no longer runs. */
			struct timespec ts = { 0, 1000L * 1000L };

			evu_ring_try_collect(r);
			evu_ring_unpin(r);
			nanosleep(&ts, NULL);
		} else {
			evu_ulev_reap_wait(ul, r, 1);
		}
	}
}

const struct evu_backend_ops evu_uring_ops = {
	.name = "uring",
	.id = EVURING_BACKEND_URING,
	.attach = evu_uring_attach,
	.start = evu_uring_start,
	.stop = evu_uring_stop,
	.destroy = evu_uring_destroy,
	.quiesce = evu_uring_quiesce,
};

int evu_switch_to_event(struct evconnlistener *lev)
{
	int err;

	lev->backend = NULL;
	lev->ops = &evu_event_ops;
	err = lev->ops->attach(lev);
	if (!err && evu_wants_accept(lev))
		err = lev->ops->start(lev);
	if (err)
		evu_report_error(lev, -err);
	return err;
}
