/*
 * One io_uring per event_base, shared by every listener on that base.
 * Completions are reaped in batches, with no syscall per completion. What
 * wakes the loop depends on the setup mode (below): each listening socket
 * itself, or the ring fd.
 *
 * SPDX-License-Identifier: BSD-3-Clause
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "uring.h"

#define EVU_SQ_ENTRIES 64
/* Multishot accept has no back-pressure: it takes the whole accept queue in
 * one go, until a full CQ ends the request. The CQ size therefore bounds the
 * fds accepted but not yet handed to the user, which libevent's loop keeps at
 * one: every one of them is an fd the program holds at once (EMFILE where
 * libevent would not fail; and each doubling of a threaded process's fd
 * table waits for an RCU grace period, 10 ms here: seven doublings for 2048
 * stalled the first storm for 70 ms and overflowed a 4096 backlog). */
#define EVU_CQ_ENTRIES 64
#define EVU_REAP_BATCH 64
#define EVU_REAP_ROUNDS 16 /* then yield to other events for a loop iteration */

static pthread_mutex_t evu_rings_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_once_t evu_pid_once = PTHREAD_ONCE_INIT;
static pid_t evu_pid;

/* glibc's getpid() is a syscall; fork detection runs on every wakeup, so
 * keep the pid, refreshed in the child by an atfork handler. */
static void evu_pid_refresh(void)
{
	__atomic_store_n(&evu_pid, getpid(), __ATOMIC_RELAXED);
}

static void evu_pid_init(void)
{
	evu_pid_refresh();
	pthread_atfork(NULL, NULL, evu_pid_refresh);
}

pid_t evu_getpid(void)
{
	pthread_once(&evu_pid_once, evu_pid_init);
	return __atomic_load_n(&evu_pid, __ATOMIC_RELAXED);
}
static void evu_ring_reap_locked(struct evu_ring *r, bool deliver);
static void evu_ring_retire(struct evu_ring *r);
static void evu_ring_watch_thread_exit(void);
static struct evu_ring *evu_rings;

static void evu_ring_event_cb(evutil_socket_t fd, short what, void *arg)
{
	struct evu_ring *r = arg;

	if (!evu_ring_enter_loop(r))
		return; /* retired: its listeners moved to a ring of this thread */
	evu_ring_reap(r, true);
	evu_ring_leave_loop(r);
}

/*
 * Setup modes, best first; an older kernel refuses unknown flags with EINVAL
 * and we step down.
 * - DEFER_TASKRUN (6.1+): accept work runs only when the loop thread asks
 *   (io_uring_get_events), so a connection never interrupts the program's
 *   own blocking calls in that thread (a signal-like task-work wakeup would
 *   make them fail with EINTR, which libevent's listener never causes). The
 *   ring fd of such a ring never wakes a poller, so each armed listener's
 *   socket is a level-triggered read event in the base (door_ev): the wakeup
 *   that queues its accept work wakes the loop too. (A registered eventfd
 *   was used before: some kernels signal it only after an RCU grace period,
 *   1-25 ms late; see docs/design.md.) The ring starts disabled: the loop
 *   thread enables it and becomes its only submitter.
 * - COOP_TASKRUN (5.19+): completions run as task work of the submitter;
 *   the ring fd is polled. Blocking calls with timeouts in the loop thread
 *   may see EINTR when a connection arrives.
 */
static const struct {
	enum evu_ring_mode mode;
	unsigned flags;
} evu_ring_ladder[] = {
	{ EVU_RING_DEFER, IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN |
			  IORING_SETUP_TASKRUN_FLAG | IORING_SETUP_R_DISABLED },
	{ EVU_RING_COOP, IORING_SETUP_COOP_TASKRUN | IORING_SETUP_TASKRUN_FLAG },
	{ EVU_RING_PLAIN, 0 },
};

static int evu_ring_init_uring(struct evu_ring *r)
{
	enum evu_ring_mode wanted = evu_ring_mode_wanted();
	int ret = -EINVAL;

	/* Test-only: a base whose ring cannot be made (memory lock limit). */
	if (evu_test_fault("ring-setup-enomem"))
		return -ENOMEM;

	for (size_t m = 0; m < sizeof(evu_ring_ladder) / sizeof(evu_ring_ladder[0]); m++) {
		if (evu_ring_ladder[m].mode < wanted)
			continue;
		struct io_uring_params p;

		memset(&p, 0, sizeof(p));
		p.flags = IORING_SETUP_CQSIZE | evu_ring_ladder[m].flags;
		p.cq_entries = EVU_CQ_ENTRIES;
		ret = io_uring_queue_init_params(EVU_SQ_ENTRIES, &r->uring, &p);
		if (ret != -EINVAL)
			break;
	}
	if (ret < 0)
		return ret;
	r->defer = r->uring.flags & IORING_SETUP_DEFER_TASKRUN;
	r->enabled = !r->defer;
	if (!r->defer) {
		/* The ring fd itself becomes the base's read event; libevent's
		 * debug mode aborts on a blocking fd in an event. Waiting in
		 * io_uring_enter does not depend on this flag. */
		int fl = fcntl(r->uring.ring_fd, F_GETFL);

		if (fl < 0 || fcntl(r->uring.ring_fd, F_SETFL, fl | O_NONBLOCK) < 0) {
			ret = -errno;
			goto fail;
		}
	}
	return 0;

fail:
	io_uring_queue_exit(&r->uring);
	return ret;
}

static int evu_ring_create(struct event_base *base, bool may_wait, struct evu_ring **out)
{
	struct evu_ring *r;
	int ret;

	r = calloc(1, sizeof(*r));
	if (!r)
		return -ENOMEM;
	ret = evu_ring_init_uring(r);
	if (ret < 0)
		goto fail_free;
	if (r->defer)
		r->ring_ev = event_new(base, -1, 0, evu_ring_event_cb, r);
	else
		r->ring_ev = event_new(base, r->uring.ring_fd, EV_READ | EV_PERSIST,
				       evu_ring_event_cb, r);
	if (!r->ring_ev) {
		ret = -ENOMEM;
		goto fail_exit;
	}
	pthread_mutex_init(&r->mu, NULL);
	{
		pthread_mutexattr_t attr;

		pthread_mutexattr_init(&attr);
		pthread_mutexattr_settype(&attr, PTHREAD_MUTEX_RECURSIVE);
		pthread_mutex_init(&r->reap_mu, &attr);
		pthread_mutexattr_destroy(&attr);
	}
	r->base = base;
	r->pid = evu_getpid();
#ifdef EVU_HAVE_SYNC_CANCEL
	r->has_sync_cancel = true; /* cleared on first EINVAL (kernel < 6.0) */
#endif
	r->wait_fd = -1;
	if (may_wait) {
		ret = evu_wait_ring_init(r);
		if (ret < 0)
			evu_debug("ring fd %d: the loop keeps sleeping in epoll (%s)",
				  r->uring.ring_fd, strerror(-ret));
	}
	evu_debug("ring fd %d created for base %p (%s, setup flags 0x%x, cq %u)",
		  r->uring.ring_fd, (void *)base,
		  r->defer ? "DEFER_TASKRUN, listening sockets polled" : "ring fd polled",
		  r->uring.flags, r->uring.cq.ring_entries);
	*out = r;
	return 0;

fail_exit:
	io_uring_queue_exit(&r->uring);
fail_free:
	free(r);
	return ret;
}

static void evu_ring_destroy(struct evu_ring *r)
{
	struct io_uring_cqe *cqe;

	evu_wait_ring_fini(r);
	event_free(r->ring_ev);
	/* No request is in flight (every listener state is gone), but be
	 * strict: an fd in an unreaped completion is ours to close (not in a
	 * forked child: that CQ is the parent's). */
	while (r->pid == evu_getpid() && io_uring_peek_cqe(&r->uring, &cqe) == 0) {
		if (evu_ud_is_ulev(io_uring_cqe_get_data(cqe)) && cqe->res >= 0)
			close(cqe->res);
		io_uring_cqe_seen(&r->uring, cqe);
	}
	evu_debug("ring fd %d released", r->uring.ring_fd);
	io_uring_queue_exit(&r->uring);
	pthread_mutex_destroy(&r->mu);
	pthread_mutex_destroy(&r->reap_mu);
	free(r);
}

int evu_ring_acquire(struct event_base *base, struct evu_ulev *ul)
{
	struct evu_ring *r;
	pid_t pid = evu_getpid();
	int ret = 0;

	pthread_mutex_lock(&evu_rings_mu);
	/* A ring whose loop sleeps in it serves no THREADSAFE listener (its
	 * waits and reaps are the loop thread's alone): such a listener gets
	 * a ring of its own on the same base. */
	for (r = evu_rings; r; r = r->next)
		if (r->base == base && r->pid == pid &&
		    !(ul->lev->lock && r->wait_ev))
			break;
	if (!r) {
		ret = evu_ring_create(base, !ul->lev->lock, &r);
		if (ret == 0) {
			r->next = evu_rings;
			evu_rings = r;
		}
	}
	if (ret == 0) {
		r->n_attached++;
		if (ul->lev->lock)
			__atomic_store_n(&r->threaded, true, __ATOMIC_RELEASE);
		pthread_mutex_lock(&r->mu);
		ul->ring_next = r->ulevs;
		r->ulevs = ul;
		pthread_mutex_unlock(&r->mu);
		ul->ring = r;
	}
	pthread_mutex_unlock(&evu_rings_mu);
	return ret;
}

static void evu_ring_unlink(struct evu_ring *r)
{
	for (struct evu_ring **pp = &evu_rings; *pp; pp = &(*pp)->next) {
		if (*pp == r) {
			*pp = r->next;
			break;
		}
	}
}

bool evu_ring_detach(struct evu_ulev *ul)
{
	struct evu_ring *r = ul->ring;
	bool last;

	if (!r)
		return false;
	evu_ring_set_interest(r, ul, false);
	if (ul->door_wanted) {
		ul->door_wanted = false;
		evu_wait_door_wanted(r, false);
	}
	pthread_mutex_lock(&evu_rings_mu);
	pthread_mutex_lock(&r->mu);
	for (struct evu_ulev **pp = &r->ulevs; *pp; pp = &(*pp)->ring_next) {
		if (*pp == ul) {
			*pp = ul->ring_next;
			break;
		}
	}
	pthread_mutex_unlock(&r->mu);
	last = --r->n_attached == 0;
	if (last)
		evu_ring_unlink(r);
	pthread_mutex_unlock(&evu_rings_mu);
	ul->ring = NULL;
	return last;
}

void evu_ring_release(struct evu_ulev *ul)
{
	struct evu_ring *r = ul->ring;

	if (!evu_ring_detach(ul))
		return;
	/* Inside one of our own callbacks, the caller's stack still uses the
	 * ring: the outermost callback releases it on the way out. */
	if (r->busy && evu_ring_in_loop_thread(r))
		r->teardown_pending = true;
	else
		evu_ring_destroy(r);
}

/*
 * The base now runs in a thread that cannot drive this ring (a DEFER_TASKRUN
 * ring belongs to the thread that enabled it), or in a forked child (a ring
 * is never shared with a child), or a listener is freed from another thread
 * while its loop no longer runs. Hand completions already posted to their
 * listeners (not in a child: the CQ is shared with the parent), take every
 * listener off the ring, and close it: closing it cancels the abandoned
 * requests, whose accept work never ran, so no connection is lost in the
 * kernel queue. No ring is made here: a listener gets one when it next arms,
 * in its loop thread, so a free or disable never opens a descriptor.
 */
static void evu_ring_retire(struct evu_ring *r)
{
	bool forked = r->pid != evu_getpid();

	evu_debug("ring fd %d: base now runs in another %s; retiring the ring",
		  r->uring.ring_fd, forked ? "process" : "thread");
	pthread_mutex_lock(&evu_rings_mu);
	evu_ring_unlink(r);
	pthread_mutex_unlock(&evu_rings_mu);
	r->busy++;
	/* From here a cross-thread collector leaves this ring alone: its
	 * completions are for requests the listeners no longer own. */
	if (forked) {
		r->retiring = true; /* the child's only thread collects */
	} else {
		bool threaded = __atomic_load_n(&r->threaded, __ATOMIC_ACQUIRE);

		if (threaded)
			pthread_mutex_lock(&r->reap_mu);
		r->retiring = true;
		evu_ring_reap_locked(r, false);
		if (threaded)
			pthread_mutex_unlock(&r->reap_mu);
	}
	for (;;) {
		struct evu_ulev *ul;

		pthread_mutex_lock(&r->mu);
		ul = r->ulevs;
		pthread_mutex_unlock(&r->mu);
		if (!ul)
			break;
		evu_ulev_orphan(ul, forked);
	}
	r->busy--;
	/* (In a child, pins are the parent's threads' and never drop.) */
	while (!forked && __atomic_load_n(&r->pins, __ATOMIC_ACQUIRE) > 0) {
		struct timespec ts = { 0, 100 * 1000 };

		nanosleep(&ts, NULL);
	}
	evu_ring_destroy(r);
}

void evu_ring_set_interest(struct evu_ring *r, struct evu_ulev *ul, bool interest)
{
	bool want;

	if (ul->interest == interest)
		return;
	ul->interest = interest;
	pthread_mutex_lock(&r->mu);
	r->n_interest += interest ? 1 : -1;
	want = r->n_interest > 0;
	if (want != r->ev_added) {
		if (want)
			event_add(r->ring_ev, NULL);
		else
			event_del_noblock(r->ring_ev);
		r->ev_added = want;
	}
	pthread_mutex_unlock(&r->mu);
}

/* liburing 2.3 declares io_uring_enable_rings() but does not export it. */
static int evu_ring_enable(struct evu_ring *r)
{
	long ret = syscall(__NR_io_uring_register, r->uring.ring_fd,
			   IORING_REGISTER_ENABLE_RINGS, NULL, 0);

	return ret < 0 ? -errno : 0;
}

bool evu_ring_in_loop_thread(struct evu_ring *r)
{
	unsigned long tid = __atomic_load_n((unsigned long *)&r->loop_tid, __ATOMIC_RELAXED);

	return __atomic_load_n(&r->loop_tid_known, __ATOMIC_ACQUIRE) &&
	       pthread_equal((pthread_t)tid, pthread_self());
}

/* `enabled` and `submitter` are written once, by the loop thread, while
 * THREADSAFE callers may look from elsewhere: publish with release. */
static bool evu_ring_is_enabled(struct evu_ring *r)
{
	return __atomic_load_n(&r->enabled, __ATOMIC_ACQUIRE);
}

static bool evu_ring_foreign_submitter(struct evu_ring *r, pthread_t self)
{
	return r->defer && evu_ring_is_enabled(r) && !pthread_equal(r->submitter, self);
}

/* Whether the thread that owns the ring (DEFER_TASKRUN) still exists. */
static bool evu_ring_submitter_alive(struct evu_ring *r)
{
	pid_t tid = __atomic_load_n(&r->submitter_tid, __ATOMIC_ACQUIRE);

	return tid > 0 && (syscall(SYS_tgkill, evu_getpid(), tid, 0) == 0 || errno != ESRCH);
}

bool evu_ring_can_wait_for_loop(struct evu_ring *r)
{
	return r->pid == evu_getpid() && !__atomic_load_n(&r->threaded, __ATOMIC_ACQUIRE) &&
	       evu_ring_foreign_submitter(r, pthread_self()) && evu_ring_submitter_alive(r);
}

bool evu_ring_retire_if_foreign(struct evu_ring *r, bool even_if_alive)
{
	if (r->pid != evu_getpid()) {
		evu_ring_retire(r);
		return true;
	}
	/* A THREADSAFE ring may be in use by its loop thread right now. */
	if (__atomic_load_n(&r->threaded, __ATOMIC_ACQUIRE))
		return false;
	/* While the ring's thread lives it may be in the loop, in a callback
	 * that uses this ring: retiring it from here would race with that.
	 * Such a caller's cancel or arm is handed to the loop (arm_ev), and
	 * a loop run from another thread retires the ring itself. */
	if (!evu_ring_foreign_submitter(r, pthread_self()))
		return false;
	if (even_if_alive || (!evu_ring_submitter_alive(r) && r->busy == 0)) {
		evu_ring_retire(r);
		return true;
	}
	return false;
}

bool evu_ring_try_collect(struct evu_ring *r)
{
	/* Not the loop thread: no busy count (the loop thread's), and
	 * nothing is submitted or released here (a THREADSAFE listener's
	 * state is freed by a libevent finalizer, in the loop thread). */
	bool collected = false;

	if (pthread_mutex_trylock(&r->reap_mu) != 0)
		return false;
	if (!r->retiring) {
		evu_ring_reap_locked(r, false);
		collected = true;
	}
	pthread_mutex_unlock(&r->reap_mu);
	return collected;
}

void evu_ring_pin(struct evu_ring *r)
{
	__atomic_add_fetch(&r->pins, 1, __ATOMIC_ACQ_REL);
}

void evu_ring_unpin(struct evu_ring *r)
{
	__atomic_sub_fetch(&r->pins, 1, __ATOMIC_ACQ_REL);
}

/* Anything left armed on the ring? */
static bool evu_ring_has_inflight(struct evu_ring *r)
{
	bool any = false;

	pthread_mutex_lock(&r->mu);
	for (struct evu_ulev *ul = r->ulevs; ul && !any; ul = ul->ring_next)
		any = __atomic_load_n(&ul->inflight, __ATOMIC_ACQUIRE);
	pthread_mutex_unlock(&r->mu);
	return any;
}

/*
 * A loop thread that ends takes its rings with it. The kernel cancels
 * nothing of them when the thread exits, and no other thread can complete
 * their requests at once (a DEFER_TASKRUN ring can be entered by its thread
 * alone; the others' cancellations run as the dead thread's task work, in a
 * kernel worker, later): armed accepts would hold their sockets (a port a
 * program frees and binds again) for some milliseconds after the listener
 * is freed. So the thread cancels them itself on its way out, collects
 * their completions (fds accepted meanwhile wait for the listener's next
 * loop) and retires the ring.
 */
static pthread_key_t evu_ring_exit_key;
static pthread_once_t evu_ring_exit_once = PTHREAD_ONCE_INIT;

static struct evu_ring *evu_ring_owned_by_self(void)
{
	struct evu_ring *r;
	pid_t pid = evu_getpid();

	pthread_mutex_lock(&evu_rings_mu);
	for (r = evu_rings; r; r = r->next)
		if (r->pid == pid && (r->defer ? evu_ring_is_enabled(r) &&
						 pthread_equal(r->submitter, pthread_self())
					       : evu_ring_in_loop_thread(r)))
			break;
	pthread_mutex_unlock(&evu_rings_mu);
	return r;
}

static void evu_ring_thread_exit(void *arg)
{
	struct evu_ring *r;

	(void)arg;
	while ((r = evu_ring_owned_by_self()) != NULL) {
		r->busy++;
		r->closing = true; /* a final completion must not re-arm */
		evu_ulev_cancel_ring(r);
		for (int i = 0; i < 100 && evu_ring_has_inflight(r); i++) {
			struct __kernel_timespec ts = { 0, 1000 * 1000 };
			struct io_uring_cqe *cqe;

			evu_ring_reap(r, false);
			if (evu_ring_has_inflight(r))
				io_uring_wait_cqe_timeout(&r->uring, &cqe, &ts);
		}
		r->busy--;
		evu_ring_retire(r);
	}
}

static void evu_ring_exit_key_init(void)
{
	pthread_key_create(&evu_ring_exit_key, evu_ring_thread_exit);
}

static void evu_ring_watch_thread_exit(void)
{
	pthread_once(&evu_ring_exit_once, evu_ring_exit_key_init);
	pthread_setspecific(evu_ring_exit_key, (void *)1);
}

bool evu_ring_enter_loop(struct evu_ring *r)
{
	pthread_t self = pthread_self();

	if (r->pid != evu_getpid() || evu_ring_foreign_submitter(r, self)) {
		evu_ring_retire(r);
		return false;
	}
	/* The thread running our callbacks is the loop thread: submissions
	 * belong there, since io_uring runs request work in the submitter. */
	if (!r->loop_tid_known || !pthread_equal(r->loop_tid, self)) {
		__atomic_store_n((unsigned long *)&r->loop_tid, (unsigned long)self,
				 __ATOMIC_RELAXED);
		__atomic_store_n(&r->loop_tid_known, true, __ATOMIC_RELEASE);
		evu_ring_watch_thread_exit();
	}
	if (!evu_ring_is_enabled(r)) {
		int ret = evu_ring_enable(r);

		if (ret < 0)
			evu_warn("evuring: cannot enable ring fd %d: %s", r->uring.ring_fd,
				 strerror(-ret));
		r->submitter = self;
		__atomic_store_n(&r->submitter_tid, (pid_t)syscall(SYS_gettid), __ATOMIC_RELEASE);
		__atomic_store_n(&r->enabled, true, __ATOMIC_RELEASE);
		if (r->wait_ev)
			evu_wait_changed(); /* its loop thread may now sleep in it */
	}
	r->busy++;
	return true;
}

bool evu_ring_can_submit(struct evu_ring *r)
{
	/* A defer ring belongs to the thread that enabled it. */
	return !r->defer ||
	       (evu_ring_is_enabled(r) && pthread_equal(r->submitter, pthread_self()));
}

void evu_ring_leave_loop(struct evu_ring *r)
{
	if (--r->busy == 0 && r->teardown_pending)
		evu_ring_destroy(r);
}

struct io_uring_sqe *evu_ring_get_sqe(struct evu_ring *r)
{
	struct io_uring_sqe *sqe;

	if (!evu_ring_can_submit(r))
		return NULL;
	sqe = io_uring_get_sqe(&r->uring);

	if (!sqe) {
		evu_ring_submit(r);
		sqe = io_uring_get_sqe(&r->uring);
	}
	if (sqe)
		r->sq_pending++;
	return sqe;
}

void evu_ring_kick(struct evu_ring *r)
{
	if (r->defer && !r->teardown_pending)
		event_active(r->ring_ev, EV_READ, 0);
}

int evu_ring_submit_sqes(struct evu_ring *r)
{
	int ret;

	do {
		ret = io_uring_submit(&r->uring);
	} while (ret == -EINTR);
	if (ret >= 0)
		r->sq_pending = 0;
	else
		evu_debug("ring fd %d: submit failed: %s", r->uring.ring_fd, strerror(-ret));
	return ret < 0 ? ret : 0;
}

int evu_ring_submit(struct evu_ring *r)
{
	int ret = evu_ring_submit_sqes(r);

	/* A submission runs inline (an arm accepts what is already queued,
	 * a cancel completes): outside the reaper nothing else would collect
	 * those completions. */
	if (r->busy == 0)
		evu_ring_kick(r);
	return ret < 0 ? ret : 0;
}

int evu_ring_cancel(struct evu_ring *r, void *user_data, bool may_submit)
{
	struct io_uring_sqe *sqe;
	int ret;

#ifdef EVU_HAVE_SYNC_CANCEL
	if (r->has_sync_cancel) {
		struct io_uring_sync_cancel_reg reg;

		/* Synchronous and not an SQE: safe from any thread. */
		memset(&reg, 0, sizeof(reg));
		reg.addr = (uint64_t)(uintptr_t)user_data;
		reg.timeout.tv_sec = -1;
		reg.timeout.tv_nsec = -1;
		ret = io_uring_register_sync_cancel(&r->uring, &reg);
		if (ret == -EEXIST)
			return -EAGAIN; /* single-issuer ring, not its thread */
		/* From another thread "not found" may mean prepared by the
		 * ring's thread and not yet submitted: that thread cancels. */
		if (ret == -ENOENT && !may_submit)
			return -EAGAIN;
		if (ret != -EINVAL)
			return ret == -ENOENT || ret == -EALREADY ? 0 : ret;
		r->has_sync_cancel = false;
	}
#endif
	if (!may_submit || !evu_ring_can_submit(r))
		return -EAGAIN;
	sqe = evu_ring_get_sqe(r);
	if (!sqe)
		return -EBUSY;
	io_uring_prep_cancel64(sqe, (uint64_t)(uintptr_t)user_data, 0);
	io_uring_sqe_set_data(sqe, NULL);
	return evu_ring_submit(r);
}

/*
 * DEFER_TASKRUN: run the queued accept work. The kernel runs a bounded
 * amount per call and sets IORING_SQ_TASKRUN when it leaves some (or when
 * more is queued meanwhile). But the flag can also stay set with no work
 * queued (6.18: millions of calls in a row that ran nothing, per the
 * io_uring tracepoints), so a call that posts nothing and leaves it set
 * marks it stale: no more calls now, and no coming back for it in this
 * loop iteration (evu_ring_work_left), which would never end. Real work
 * behind it still wakes the loop: a listening socket's door, or the wait
 * of a loop asleep in the ring.
 *
 * (Asking for more work per call through a minimum-events wait with a zero
 * timeout was measured: about 6 us more per wakeup, an hrtimer sleep.)
 */
static void evu_ring_run_work(struct evu_ring *r)
{
	r->taskrun_stale = false;
	for (int i = 0; i < 4; i++) {
		unsigned sqf = IO_URING_READ_ONCE(*r->uring.sq.kflags);
		unsigned tail;

		if (!(sqf & (IORING_SQ_TASKRUN | IORING_SQ_CQ_OVERFLOW)))
			return;
		tail = io_uring_smp_load_acquire(r->uring.cq.ktail);
		io_uring_get_events(&r->uring);
		if (tail == io_uring_smp_load_acquire(r->uring.cq.ktail) &&
		    !(sqf & IORING_SQ_CQ_OVERFLOW)) {
			/* stale only if the call left it set */
			r->taskrun_stale = IO_URING_READ_ONCE(*r->uring.sq.kflags) &
					   IORING_SQ_TASKRUN;
			return;
		}
	}
}

void evu_ring_run_pending(struct evu_ring *r)
{
	if (r->defer && evu_ring_can_submit(r))
		evu_ring_run_work(r);
}

static bool evu_ring_work_left(struct evu_ring *r)
{
	unsigned left = IORING_SQ_CQ_OVERFLOW;

	/* A loop asleep in the ring runs queued work itself before it waits;
	 * coming back in this loop iteration for a flag that runs nothing
	 * would keep libevent from ever returning to epoll_wait. */
	if (!evu_ring_sleeps_in_ring(r) && !r->taskrun_stale)
		left |= IORING_SQ_TASKRUN;
	return io_uring_cq_ready(&r->uring) > 0 ||
	       (IO_URING_READ_ONCE(*r->uring.sq.kflags) & left);
}

bool evu_ring_share_changed(struct evu_ring *r)
{
	return r->share_gen != evu_share_generation();
}

static void evu_ring_reap_locked(struct evu_ring *r, bool deliver)
{
	bool submitter = evu_ring_can_submit(r);

	/* A listener whose socket gained another accepter leaves the ring
	 * before its accept runs again (and takes a batch another loop
	 * should share). The loop thread's reaps only. */
	if (deliver && evu_ring_share_changed(r) && (submitter || !r->defer)) {
		r->share_gen = evu_share_generation();
		evu_ulev_sync_ring(r);
	}

	struct io_uring_cqe *cqes[EVU_REAP_BATCH];
	struct {
		void *ud;
		int res;
		unsigned flags;
	} batch[EVU_REAP_BATCH];

	for (int round = 0; round < EVU_REAP_ROUNDS; round++) {
		unsigned n;

		/* Keep the kernel's accept queue drained while callbacks run
		 * (a full queue drops SYNs: 1 s client stalls). */
		if (r->defer) {
			if (!evu_ring_can_submit(r))
				break; /* only the submitter may run its work */
			evu_ring_run_work(r);
		}
		/* Without defer, peek flushes overflowed CQEs and pending
		 * task work itself when the CQ looks empty. */
		n = io_uring_peek_batch_cqe(&r->uring, cqes, EVU_REAP_BATCH);
		if (n == 0)
			break;
		/* Copy out before running callbacks: they may free listeners. */
		for (unsigned i = 0; i < n; i++) {
			batch[i].ud = io_uring_cqe_get_data(cqes[i]);
			batch[i].res = cqes[i]->res;
			batch[i].flags = cqes[i]->flags;
			if (batch[i].ud == EVU_UD_EPOLL) {
				evu_wait_note_epoll_cqe(r, batch[i].flags);
				batch[i].ud = NULL;
			}
		}
		io_uring_cq_advance(&r->uring, n);
		r->batch_seq++;
		if (r->defer && io_uring_cq_ready(&r->uring) == 0 &&
		    !(IO_URING_READ_ONCE(*r->uring.sq.kflags) & IORING_SQ_CQ_OVERFLOW)) {
			for (unsigned i = n; i-- > 0;)
				if (batch[i].ud && batch[i].res >= 0)
					evu_ulev_note_accept(batch[i].ud, batch[i].res,
							     r->batch_seq);
		}
		for (unsigned i = 0; i < n; i++)
			if (batch[i].ud)
				evu_ulev_on_cqe(batch[i].ud, batch[i].res,
						batch[i].flags, deliver);
		if (submitter && r->sq_pending)
			evu_ring_submit(r);
	}
	if (submitter && r->sq_pending)
		evu_ring_submit(r);
	/* Stopped with completions or work left (round cap, work budget, a
	 * cancellation's completion): a socket that is no longer readable
	 * would not wake us again for them. Come back in the next loop
	 * iteration instead. */
	if ((deliver || (r->defer && submitter)) && evu_ring_work_left(r))
		evu_ring_kick(r);
}

void evu_ring_reap(struct evu_ring *r, bool deliver)
{
	bool threaded = __atomic_load_n(&r->threaded, __ATOMIC_ACQUIRE);

	if (threaded)
		pthread_mutex_lock(&r->reap_mu);
	evu_ring_reap_locked(r, deliver);
	if (threaded)
		pthread_mutex_unlock(&r->reap_mu);
}

EVURING_API int evuring_base_sleeps_in_ring(struct event_base *base)
{
	pid_t pid = evu_getpid();
	int on = 0;

	if (!base) {
		errno = EINVAL;
		return -1;
	}
	pthread_mutex_lock(&evu_rings_mu);
	for (struct evu_ring *r = evu_rings; r; r = r->next)
		if (r->base == base && r->pid == pid && evu_ring_sleeps_in_ring(r))
			on = 1;
	pthread_mutex_unlock(&evu_rings_mu);
	return on;
}
