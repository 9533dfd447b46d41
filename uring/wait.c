/*
 * Where libevent's loop sleeps: in the ring instead of in epoll_wait
 * (EVURING_WAIT=ring), never (=epoll), or while it wakes mostly for
 * connections (=auto, the default; states OFF and ON below).
 *
 * In the accept storm every wakeup through epoll costs two kernel crossings
 * (epoll_wait, then io_uring_enter to run the queued accepts); sleeping in
 * io_uring_enter costs one, since the same call waits and runs the accept.
 * libevent's epoll backend calls epoll_wait (2.2, where libc has it,
 * epoll_pwait2), so libevuring exports the three. A call is served from a
 * ring only from the thread that owns it, on the epoll set of the ring's
 * base; every other call goes to libc's, after one atomic load when no ring
 * may sleep anywhere.
 *
 * While a ring is in this mode its listening sockets are out of epoll (their
 * readiness would wake epoll, and we would have to harvest it: two crossings
 * again); the ring wakes for them instead. A multishot poll on the epoll fd
 * wakes the ring for everything else in the base, and only then is epoll
 * harvested (epoll_wait with a zero timeout). Accept completions go back to
 * libevent as a read event on the ring's wait_fd, an eventfd no one writes
 * (except a cross-thread destroy, to wake the sleeper), whose callback reaps.
 *
 * The base's epoll fd is not public: it is learned as the one set where an
 * EPOLL_CTL_ADD of wait_fd fails with EEXIST (libevent put it there).
 *
 * SPDX-License-Identifier: BSD-3-Clause
 */
#include <dlfcn.h>
#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "uring.h"

#ifdef EVU_HAVE_VALGRIND_H
#include <valgrind/valgrind.h>
#endif

/* Ring states; OFF (EVURING_WAIT=auto only): learned, but the loop sleeps
 * in epoll for now, the doors back in it. */
enum { EVU_WAIT_NONE, EVU_WAIT_LEARN, EVU_WAIT_LEARNED, EVU_WAIT_OFF, EVU_WAIT_ON };

/* What EVURING_WAIT asks. */
enum { EVU_WAITMODE_EPOLL, EVU_WAITMODE_RING, EVU_WAITMODE_AUTO };

/*
 * EVURING_WAIT=auto decides per window of this many wakeups that woke for
 * something (accepts, or other fds of the base). Asleep in the ring, a
 * wakeup for accepts saves one kernel crossing (no epoll_wait before the
 * io_uring_enter) and one for other fds costs two (the harvest, and the
 * empty one that proves level-triggered fds drained): the ring is left when
 * the others are more than half the accepts, and taken again when they are
 * at most a quarter (counted as events in epoll, which can only overstate
 * them).
 */
#define EVU_WAIT_WINDOW 64

typedef int (*evu_epoll_wait_fn)(int, struct epoll_event *, int, int);
typedef int (*evu_epoll_pwait_fn)(int, struct epoll_event *, int, int, const sigset_t *);
typedef int (*evu_epoll_pwait2_fn)(int, struct epoll_event *, int, const struct timespec *,
				   const sigset_t *);

/* One call of the exported family, as the program made it. */
enum { EVU_CALL_WAIT, EVU_CALL_PWAIT, EVU_CALL_PWAIT2 };

struct evu_wait_call {
	int kind;
	int timeout_ms;            /* epoll_wait, epoll_pwait; < 0: forever */
	const struct timespec *ts; /* epoll_pwait2; NULL: forever */
	const sigset_t *sigmask;   /* epoll_pwait, epoll_pwait2; may be NULL */
};

/*
 * Each ring in this mode owns a slot, which is never freed: a call holds
 * the slot's user count while it uses the ring, and a destroy empties the
 * slot, then waits for its users (Dekker, sequentially consistent). So the
 * loop thread can find its own ring from a thread-local cache without the
 * lock: libevent calls epoll_wait once per wakeup, on every loop, and the
 * hot path takes no lock without LEV_OPT_THREADSAFE.
 */
#define EVU_WAIT_SLOTS 256

struct evu_wait_slot {
	struct evu_ring *ring; /* atomic */
	int users;             /* atomic */
} __attribute__((aligned(64))); /* one per loop thread: no false sharing */

static struct evu_wait_slot evu_wait_slots[EVU_WAIT_SLOTS];
/* The last ring this thread slept in or counted for: its slot and set. */
static __thread int evu_tl_slot __attribute__((tls_model("initial-exec"))) = -1;
static __thread int evu_tl_epfd __attribute__((tls_model("initial-exec"))) = -1;
/* Events its last sleep in epoll (OFF) returned, for the next call to add
 * to the ring's window: counted without the slot, so without the ring. */
static __thread unsigned evu_tl_other __attribute__((tls_model("initial-exec")));

/*
 * And threads that own no ring (other loops of the program, other event
 * libraries) skip the lookup while nothing changed that could give them
 * one: whatever could make evu_wait_find answer differently bumps
 * evu_wait_gen (a ring added, enabled by its loop thread, a door wanted
 * again, a fork), and a thread remembers the set and generation of its last
 * lookup that found nothing.
 */
static unsigned evu_wait_gen; /* atomic */
static __thread unsigned evu_tl_none_gen __attribute__((tls_model("initial-exec")));
static __thread int evu_tl_none_epfd __attribute__((tls_model("initial-exec"))) = -1;

void evu_wait_changed(void)
{
	__atomic_add_fetch(&evu_wait_gen, 1, __ATOMIC_SEQ_CST);
}

static pthread_mutex_t evu_wait_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t evu_wait_cv = PTHREAD_COND_INITIALIZER;
static struct evu_ring *evu_wait_rings; /* under evu_wait_mu */
static int evu_wait_nrings;             /* atomic: the fast path's test */
static evu_epoll_wait_fn evu_real_epoll_wait_fn;
static evu_epoll_pwait_fn evu_real_epoll_pwait_fn;
static evu_epoll_pwait2_fn evu_real_epoll_pwait2_fn;
static pthread_once_t evu_wait_once = PTHREAD_ONCE_INIT;
static int evu_wait_mode;

/* A child must not wait on a lock or on users of its parent's threads. */
static void evu_wait_atfork_child(void)
{
	pthread_mutex_init(&evu_wait_mu, NULL);
	pthread_cond_init(&evu_wait_cv, NULL);
	for (struct evu_ring *r = evu_wait_rings; r; r = r->wait_next) {
		__atomic_store_n(&evu_wait_slots[r->wait_slot].users, 0, __ATOMIC_RELAXED);
		r->n_epfd_not = 0;
	}
	evu_wait_changed(); /* the parent's rings answer differently here */
}

/*
 * Valgrind (3.19 measured) keeps its one big lock while a thread is in
 * io_uring_enter: asleep in the ring, the loop thread stops every other
 * thread of the program until it wakes. So under valgrind auto keeps the
 * loop in epoll; an explicit EVURING_WAIT=ring is obeyed, with a warning.
 */
static bool evu_wait_under_valgrind(void)
{
#ifdef EVU_HAVE_VALGRIND_H
	return RUNNING_ON_VALGRIND;
#else
	/* valgrind's own preloads (a child it does not trace loses them) */
	const char *preload = secure_getenv("LD_PRELOAD");

	return preload && strstr(preload, "/vgpreload_");
#endif
}

static void evu_wait_init(void)
{
	const char *v = secure_getenv("EVURING_WAIT");

	evu_real_epoll_wait_fn = (evu_epoll_wait_fn)dlsym(RTLD_NEXT, "epoll_wait");
	evu_real_epoll_pwait_fn = (evu_epoll_pwait_fn)dlsym(RTLD_NEXT, "epoll_pwait");
	/* glibc 2.35 and later */
	evu_real_epoll_pwait2_fn = (evu_epoll_pwait2_fn)dlsym(RTLD_NEXT, "epoll_pwait2");
	evu_wait_mode = EVU_WAITMODE_AUTO;
	if (v && !strcmp(v, "ring"))
		evu_wait_mode = EVU_WAITMODE_RING;
	else if (v && !strcmp(v, "epoll"))
		evu_wait_mode = EVU_WAITMODE_EPOLL;
	else if (v && *v && strcmp(v, "auto"))
		evu_warn("EVURING_WAIT=%s is not one of auto, epoll, ring; using auto", v);
	if (evu_wait_mode != EVU_WAITMODE_EPOLL && evu_wait_under_valgrind()) {
		if (evu_wait_mode == EVU_WAITMODE_RING) {
			evu_warn("EVURING_WAIT=ring under valgrind: while the loop sleeps in "
				 "io_uring_enter, valgrind runs none of the program's other threads");
		} else {
			evu_wait_mode = EVU_WAITMODE_EPOLL;
			evu_debug("under valgrind the loop stays in epoll_wait (valgrind runs no "
				  "other thread while one sleeps in io_uring_enter)");
		}
	}
	pthread_atfork(NULL, NULL, evu_wait_atfork_child);
}

static int evu_real_epoll_wait(int epfd, struct epoll_event *ev, int max, int timeout)
{
	pthread_once(&evu_wait_once, evu_wait_init);
	if (!evu_real_epoll_wait_fn) {
		errno = ENOSYS;
		return -1;
	}
	return evu_real_epoll_wait_fn(epfd, ev, max, timeout);
}

/* The program's call, made as it was to libc's. */
static int evu_wait_real(const struct evu_wait_call *c, int epfd, struct epoll_event *ev,
			 int max)
{
	pthread_once(&evu_wait_once, evu_wait_init);
	switch (c->kind) {
	case EVU_CALL_PWAIT:
		if (evu_real_epoll_pwait_fn)
			return evu_real_epoll_pwait_fn(epfd, ev, max, c->timeout_ms, c->sigmask);
		break;
	case EVU_CALL_PWAIT2:
		if (evu_real_epoll_pwait2_fn)
			return evu_real_epoll_pwait2_fn(epfd, ev, max, c->ts, c->sigmask);
		break;
	default:
		if (evu_real_epoll_wait_fn)
			return evu_real_epoll_wait_fn(epfd, ev, max, c->timeout_ms);
		break;
	}
	errno = ENOSYS;
	return -1;
}

/* Whether the call only looks (a zero timeout). */
static bool evu_wait_call_polls(const struct evu_wait_call *c)
{
	if (c->kind == EVU_CALL_PWAIT2)
		return c->ts && c->ts->tv_sec == 0 && c->ts->tv_nsec == 0;
	return c->timeout_ms == 0;
}

/* The call's timeout for the ring's sleep; NULL: forever. */
static struct __kernel_timespec *evu_wait_call_kts(const struct evu_wait_call *c,
						   struct __kernel_timespec *kts)
{
	if (c->kind == EVU_CALL_PWAIT2) {
		if (!c->ts)
			return NULL;
		kts->tv_sec = c->ts->tv_sec;
		kts->tv_nsec = c->ts->tv_nsec;
		return kts;
	}
	if (c->timeout_ms < 0)
		return NULL;
	kts->tv_sec = c->timeout_ms / 1000;
	kts->tv_nsec = (c->timeout_ms % 1000) * 1000000LL;
	return kts;
}

bool evu_wait_wanted(void)
{
	pthread_once(&evu_wait_once, evu_wait_init);
	return evu_wait_mode != EVU_WAITMODE_EPOLL && evu_real_epoll_wait_fn;
}

bool evu_ring_sleeps_in_ring(struct evu_ring *r)
{
	return __atomic_load_n(&r->wait_state, __ATOMIC_ACQUIRE) == EVU_WAIT_ON;
}

static void evu_wait_update_ev(struct evu_ring *r);
static void evu_wait_slot_leave(struct evu_wait_slot *sl, struct evu_ring *r);

/* Loop thread, in a ring callback. */
static void evu_wait_switch(struct evu_ring *r, int to)
{
	r->win_accept = r->win_other = 0;
	evu_tl_other = 0; /* the loop thread's: the last wakeup's, before the switch */
	__atomic_store_n(&r->wait_state, to, __ATOMIC_RELEASE);
	evu_debug("ring fd %d: the loop now sleeps in %s (epoll fd %d)", r->uring.ring_fd,
		  to == EVU_WAIT_ON ? "the ring" : "epoll", r->epfd);
	/* The poll on the epoll set would post a completion for each of its
	 * wakeups; its final one (flags without MORE) clears
	 * epoll_poll_armed, so a sleep in the ring before that is still woken
	 * by it, and the next call arms a new one. */
	if (to == EVU_WAIT_OFF && r->epoll_poll_armed)
		evu_ring_cancel(r, EVU_UD_EPOLL, true);
	pthread_mutex_lock(&r->mu);
	evu_wait_update_ev(r);
	pthread_mutex_unlock(&r->mu);
	evu_ring_update_doors(r);
}

/*
 * EVURING_WAIT=auto: one more wakeup counted; at the window's end, whether
 * to switch (a ring callback does, evu_wait_on_callback, on a read event the
 * wait returns: wait_fd's in the ring, a listening socket's in epoll).
 */
static void evu_wait_tally(struct evu_ring *r)
{
	unsigned a = r->win_accept, o = r->win_other;

	if (evu_wait_mode != EVU_WAITMODE_AUTO)
		return;
	if (r->wait_state == EVU_WAIT_OFF)
		o = o > a ? o - a : 0; /* counted every event, the doors' too */
	if (a + o < EVU_WAIT_WINDOW)
		return;
	if (r->wait_state == EVU_WAIT_ON)
		r->wait_switch = 2 * o > a;
	else
		r->wait_switch = 4 * o <= a;
	r->win_accept = r->win_other = 0;
}

void evu_wait_on_callback(struct evu_ring *r)
{
	if (!r->wait_ev)
		return;
	/* Outside epoll_wait, in a normal callback: the events' changes reach
	 * epoll before the loop next sleeps (libevent applies them first). */
	if (r->wait_state == EVU_WAIT_LEARNED)
		/* auto starts as libevent's loop and goes to the ring once
		 * a window shows it sleeps mostly for accepts */
		evu_wait_switch(r, evu_wait_mode == EVU_WAITMODE_AUTO ? EVU_WAIT_OFF
								  : EVU_WAIT_ON);
	else if (r->wait_state == EVU_WAIT_OFF && r->wait_switch)
		evu_wait_switch(r, EVU_WAIT_ON);
	else if (r->wait_state == EVU_WAIT_ON && r->wait_switch)
		evu_wait_switch(r, EVU_WAIT_OFF);
	r->wait_switch = false;
}

static void evu_wait_cb(evutil_socket_t fd, short what, void *arg)
{
	struct evu_ring *r = arg;
	uint64_t junk;

	(void)what;
	if (__atomic_load_n(&r->wait_dead, __ATOMIC_ACQUIRE)) {
		/* written to wake us for a destroy that is waiting for us */
		if (read(fd, &junk, sizeof(junk)) < 0)
			(void)0;
		return;
	}
	if (!evu_ring_enter_loop(r))
		return; /* retired: its listeners moved to a ring of this thread */
	evu_wait_on_callback(r);
	evu_ring_reap(r, true);
	evu_ring_leave_loop(r);
}

int evu_wait_ring_init(struct evu_ring *r)
{
	int ret;

	r->epfd = -1; /* wait_fd: -1 already (evu_ring_create) */
	if (!r->defer || !evu_wait_wanted())
		return 0;
	r->wait_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (r->wait_fd < 0)
		return -errno;
	r->wait_ev = event_new(r->base, r->wait_fd, EV_READ | EV_PERSIST, evu_wait_cb, r);
	if (!r->wait_ev) {
		ret = -ENOMEM;
		goto fail_close;
	}
	r->wait_state = EVU_WAIT_LEARN;
	pthread_mutex_lock(&evu_wait_mu);
	r->wait_slot = -1;
	for (int i = 0; i < EVU_WAIT_SLOTS; i++) {
		struct evu_wait_slot *sl = &evu_wait_slots[i];

		/* users of an empty slot are leaving (they found it empty) */
		if (!__atomic_load_n(&sl->ring, __ATOMIC_SEQ_CST) &&
		    !__atomic_load_n(&sl->users, __ATOMIC_SEQ_CST)) {
			r->wait_slot = i;
			__atomic_store_n(&sl->ring, r, __ATOMIC_SEQ_CST);
			break;
		}
	}
	if (r->wait_slot < 0) {
		pthread_mutex_unlock(&evu_wait_mu);
		ret = -EMFILE; /* that many loops: this one stays in epoll */
		goto fail_free_ev;
	}
	r->wait_next = evu_wait_rings;
	__atomic_store_n(&evu_wait_rings, r, __ATOMIC_RELEASE);
	__atomic_add_fetch(&evu_wait_nrings, 1, __ATOMIC_RELEASE);
	pthread_mutex_unlock(&evu_wait_mu);
	evu_wait_changed();
	return 0;

fail_free_ev:
	event_free(r->wait_ev);
	r->wait_ev = NULL;
fail_close:
	close(r->wait_fd);
	r->wait_fd = -1;
	return ret;
}

/*
 * Before the ring goes: no call may use it any more, and one that does now
 * (the loop thread asleep in it, while another thread frees the base's last
 * listener) is woken and waited for. wait_fd is in the epoll set, and the
 * ring's poll on that set wakes the sleeper.
 */
void evu_wait_ring_fini(struct evu_ring *r)
{
	if (!r->wait_ev)
		return;
	pthread_mutex_lock(&evu_wait_mu);
	for (struct evu_ring **pp = &evu_wait_rings; *pp; pp = &(*pp)->wait_next) {
		if (*pp == r) {
			__atomic_store_n(pp, r->wait_next, __ATOMIC_RELEASE);
			__atomic_sub_fetch(&evu_wait_nrings, 1, __ATOMIC_RELEASE);
			break;
		}
	}
	__atomic_store_n(&r->wait_dead, true, __ATOMIC_SEQ_CST);
	__atomic_store_n(&evu_wait_slots[r->wait_slot].ring, NULL, __ATOMIC_SEQ_CST);
	while (__atomic_load_n(&evu_wait_slots[r->wait_slot].users, __ATOMIC_SEQ_CST) > 0) {
		uint64_t one = 1;
		struct timespec ts;

		if (write(r->wait_fd, &one, sizeof(one)) < 0)
			(void)0; /* already readable */
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_nsec += 1000 * 1000;
		if (ts.tv_nsec >= 1000000000L) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000L;
		}
		pthread_cond_timedwait(&evu_wait_cv, &evu_wait_mu, &ts);
	}
	pthread_mutex_unlock(&evu_wait_mu);
	event_free(r->wait_ev);
	r->wait_ev = NULL;
	close(r->wait_fd);
	r->wait_fd = -1;
}

/*
 * wait_ev is in the base while some door is wanted and the loop may sleep
 * in the ring (or the ring still learns its set): so the base's pending
 * events are those of libevent's listener, or one in their place. Asleep
 * in epoll (OFF) the doors are all there is, as with libevent. Under mu.
 */
static void evu_wait_update_ev(struct evu_ring *r)
{
	bool want = r->n_doors_wanted > 0 &&
		    __atomic_load_n(&r->wait_state, __ATOMIC_ACQUIRE) != EVU_WAIT_OFF;

	if (want == __atomic_load_n(&r->wait_ev_on, __ATOMIC_RELAXED))
		return;
	__atomic_store_n(&r->wait_ev_on, want, __ATOMIC_RELEASE);
	if (want)
		event_add(r->wait_ev, NULL);
	else
		event_del_noblock(r->wait_ev);
}

void evu_wait_door_wanted(struct evu_ring *r, bool wanted)
{
	if (!r || !r->wait_ev)
		return;
	pthread_mutex_lock(&r->mu);
	r->n_doors_wanted += wanted ? 1 : -1;
	if ((r->n_doors_wanted > 0) != __atomic_load_n(&r->any_door_wanted, __ATOMIC_RELAXED)) {
		__atomic_store_n(&r->any_door_wanted, r->n_doors_wanted > 0, __ATOMIC_RELEASE);
		if (r->n_doors_wanted > 0)
			evu_wait_changed();
	}
	evu_wait_update_ev(r);
	pthread_mutex_unlock(&r->mu);
}

void evu_wait_note_epoll_cqe(struct evu_ring *r, unsigned flags)
{
	r->epoll_harvest = true;
	if (!(flags & IORING_CQE_F_MORE))
		r->epoll_poll_armed = false;
}

/*
 * Look at the posted CQEs: note the epoll poll's, and consume them if they
 * are all there is. Returns whether anything is left for the reaper.
 */
static bool evu_wait_scan_cq(struct evu_ring *r)
{
	struct io_uring_cqe *cqe;
	unsigned head, seen = 0, epoll_cqes = 0;

	io_uring_for_each_cqe(&r->uring, head, cqe) {
		seen++;
		if (io_uring_cqe_get_data(cqe) == EVU_UD_EPOLL) {
			epoll_cqes++;
			evu_wait_note_epoll_cqe(r, cqe->flags);
		}
	}
	if (seen && seen == epoll_cqes) {
		io_uring_cq_advance(&r->uring, seen);
		seen = 0;
	}
	return seen > 0 ||
	       (IO_URING_READ_ONCE(*r->uring.sq.kflags) & IORING_SQ_CQ_OVERFLOW);
}

static int evu_wait_arm_epoll_poll(struct evu_ring *r, int epfd)
{
	struct io_uring_sqe *sqe;

	if (r->epoll_poll_armed)
		return 0;
	sqe = io_uring_get_sqe(&r->uring);
	if (!sqe) {
		io_uring_submit(&r->uring);
		sqe = io_uring_get_sqe(&r->uring);
		if (!sqe)
			return -EBUSY;
	}
	io_uring_prep_poll_multishot(sqe, epfd, POLLIN);
	io_uring_sqe_set_data(sqe, EVU_UD_EPOLL);
	r->sq_pending++;
	r->epoll_poll_armed = true;
	return 0;
}

/* The loop thread, its ring in EVU_WAIT_ON, epfd its base's set. */
static int evu_wait_in_ring(struct evu_ring *r, int epfd, struct epoll_event *ev,
			    int max, const struct evu_wait_call *c)
{
	bool have_cq, polls = evu_wait_call_polls(c);
	int n = 0, ret;

	/* A socket gained another accepter: its listener must leave the ring
	 * before the accept runs (wait_cb's reap moves it), not take a batch
	 * here that the other loops should share. */
	if (evu_ring_share_changed(r)) {
		ev[0].events = EPOLLIN;
		ev[0].data.u64 = 0;
		ev[0].data.fd = r->wait_fd;
		return 1;
	}

	/* Without the poll on the epoll set armed, a sleep here would miss
	 * the rest of the base, and epoll would miss the listening sockets:
	 * then only look, as for a zero timeout (libevent calls again). */
	if (evu_wait_arm_epoll_poll(r, epfd) < 0)
		polls = true;
	if (r->sq_pending && evu_ring_submit_sqes(r) < 0)
		polls = true;
	/* Queued accepts first, without waiting: a busy epoll set must not
	 * starve them. */
	evu_ring_run_pending(r);
	have_cq = evu_wait_scan_cq(r);
	if (!have_cq && !r->epoll_harvest && !r->harvest_again && !polls) {
		struct __kernel_timespec kts;
		struct io_uring_cqe *cqe;

		/* the call's signal mask holds while it sleeps, as in epoll */
		ret = io_uring_wait_cqes(&r->uring, &cqe, 1, evu_wait_call_kts(c, &kts),
					 (sigset_t *)c->sigmask);
		if (ret == -EINTR)
			return -EINTR;
		/* more work queued while we woke up */
		evu_ring_run_pending(r);
		have_cq = evu_wait_scan_cq(r);
	}
	if (r->epoll_harvest || r->harvest_again || polls) {
		int room = have_cq ? max - 1 : max;

		r->epoll_harvest = false;
		if (room > 0) {
			n = evu_real_epoll_wait(epfd, ev, room, 0);
			if (n < 0)
				return -errno;
		} else {
			r->epoll_harvest = true; /* next call */
		}
		/* Level-triggered fds still ready do not wake the poll
		 * again: harvest before the next sleep until one is empty. */
		r->harvest_again = n > 0;
	}
	r->win_accept += have_cq;
	r->win_other += n > 0;
	evu_wait_tally(r);
	/* wait_cb reaps, and switches if the tally says so */
	if (have_cq || (r->wait_switch && n < max)) {
		ev[n].events = EPOLLIN;
		ev[n].data.u64 = 0;
		ev[n].data.fd = r->wait_fd;
		n++;
	}
	return n;
}

/* A read event on wait_fd, as if it were readable. */
static int evu_wait_fake_event(struct evu_ring *r, struct epoll_event *ev, int max,
			       int epfd)
{
	int n = 0, fd = r->wait_fd;

	/* Asleep in epoll wait_ev is not in the base: a door's callback
	 * takes the event instead (it only reaps, if no socket is ready). */
	if (!__atomic_load_n(&r->wait_ev_on, __ATOMIC_ACQUIRE))
		fd = evu_ring_any_door_fd(r);
	if (max > 1 || fd < 0) {
		n = evu_real_epoll_wait(epfd, ev, fd < 0 ? max : max - 1, 0);
		if (n < 0)
			n = 0;
	}
	if (fd < 0)
		return n;
	ev[n].events = EPOLLIN;
	ev[n].data.u64 = 0;
	ev[n].data.fd = fd;
	return n + 1;
}

/*
 * The loop thread, its ring learned but in EVU_WAIT_OFF: epoll as usual,
 * counting the events (the doors' callbacks count theirs). The slot is
 * left while it sleeps, so that a destroy in another thread need not wake
 * it (wait_fd is not in epoll now); the events are counted in evu_tl_other,
 * which the next call adds while it holds the slot.
 */
static int evu_wait_in_epoll(struct evu_ring *r, int epfd, struct epoll_event *ev,
			     int max, const struct evu_wait_call *c)
{
	int n, wait_fd = r->wait_fd;

	r->win_other += evu_tl_other;
	evu_tl_other = 0;
	evu_wait_tally(r);
	/* A door's callback carries the switch out. With no door in the base
	 * (not expected while one is wanted) no callback would, and every
	 * call would come back at once: drop the verdict and sleep. */
	if (r->wait_switch && evu_ring_any_door_fd(r) < 0)
		r->wait_switch = false;
	if (r->wait_switch) {
		n = evu_wait_fake_event(r, ev, max, epfd);
		evu_wait_slot_leave(&evu_wait_slots[r->wait_slot], r);
		return n;
	}
	evu_wait_slot_leave(&evu_wait_slots[r->wait_slot], r);
	n = evu_wait_real(c, epfd, ev, max);
	if (n < 0)
		return -errno;
	for (int i = 0; i < n; i++)
		evu_tl_other += ev[i].data.fd != wait_fd;
	return n;
}

/* Whether epfd is the set wait_fd was put in by libevent (its base's). */
static bool evu_wait_is_base_set(struct evu_ring *r, int epfd)
{
	struct epoll_event e = { .events = EPOLLIN };

	e.data.fd = r->wait_fd;
	if (epoll_ctl(epfd, EPOLL_CTL_ADD, r->wait_fd, &e) == 0) {
		epoll_ctl(epfd, EPOLL_CTL_DEL, r->wait_fd, &e);
		return false;
	}
	return errno == EEXIST;
}

/* Atomics although under evu_wait_mu: see evu_wait_find. */
static bool evu_wait_known_not(struct evu_ring *r, int epfd)
{
	unsigned n = __atomic_load_n(&r->n_epfd_not, __ATOMIC_ACQUIRE);

	for (unsigned i = 0; i < n; i++)
		if (__atomic_load_n(&r->epfd_not[i], __ATOMIC_RELAXED) == epfd)
			return true;
	return false;
}

static void evu_wait_note_not(struct evu_ring *r, int epfd)
{
	unsigned n = __atomic_load_n(&r->n_epfd_not, __ATOMIC_RELAXED);

	__atomic_store_n(&r->epfd_not[n], epfd, __ATOMIC_RELAXED);
	__atomic_store_n(&r->n_epfd_not, n + 1, __ATOMIC_RELEASE);
}

/*
 * Which ring, if any, serves this call, under evu_wait_mu. *fake: answer
 * with a read event on the ring's wait_fd at once (the ring was learned
 * just now and its callback switches it on; or the base runs in another
 * thread or a forked child, and the callback moves its listeners away).
 */
static struct evu_ring *evu_wait_find(int epfd, bool *fake)
{
	pid_t pid = evu_getpid();
	pthread_t self = pthread_self();

	*fake = false;
	/* Atomic loads although under the lock: called inside a sanitizer's
	 * epoll_wait interceptor, ThreadSanitizer does not see the lock. */
	for (struct evu_ring *r = __atomic_load_n(&evu_wait_rings, __ATOMIC_ACQUIRE); r;
	     r = __atomic_load_n(&r->wait_next, __ATOMIC_ACQUIRE)) {
		int state = __atomic_load_n(&r->wait_state, __ATOMIC_ACQUIRE);
		bool own;

		/* No door wanted: wait_fd is not in epoll (nothing to learn,
		 * nothing to wake a sleeper) and no listening socket is
		 * missing from it. */
		if (!__atomic_load_n(&r->any_door_wanted, __ATOMIC_ACQUIRE))
			continue;

		if (r->pid != pid) {
			/* A forked child: its base's set is a new one, if it
			 * called event_reinit(). */
			if (state < EVU_WAIT_LEARNED || evu_wait_known_not(r, epfd))
				continue;
			if (evu_wait_is_base_set(r, epfd)) {
				*fake = true;
				return r;
			}
			if (__atomic_load_n(&r->n_epfd_not, __ATOMIC_RELAXED) < EVU_EPFD_NOT_MAX)
				evu_wait_note_not(r, epfd);
			continue;
		}
		own = __atomic_load_n(&r->enabled, __ATOMIC_ACQUIRE) &&
		      pthread_equal(r->submitter, self);
		if (state >= EVU_WAIT_LEARNED &&
		    __atomic_load_n(&r->epfd, __ATOMIC_RELAXED) == epfd) {
			*fake = !own || state == EVU_WAIT_LEARNED;
			return r;
		}
		if (state == EVU_WAIT_LEARN && own && !evu_wait_known_not(r, epfd)) {
			if (evu_wait_is_base_set(r, epfd)) {
				__atomic_store_n(&r->epfd, epfd, __ATOMIC_RELAXED);
				__atomic_store_n(&r->wait_state, EVU_WAIT_LEARNED,
						 __ATOMIC_RELEASE);
				evu_wait_changed(); /* other threads' calls on it */
				*fake = true;
				return r;
			}
			if (__atomic_load_n(&r->n_epfd_not, __ATOMIC_RELAXED) < EVU_EPFD_NOT_MAX)
				evu_wait_note_not(r, epfd);
			else
				/* not worth more tries */
				__atomic_store_n(&r->wait_state, EVU_WAIT_NONE, __ATOMIC_RELEASE);
		}
	}
	return NULL;
}

static void evu_wait_slot_leave(struct evu_wait_slot *sl, struct evu_ring *r)
{
	struct evu_ring *now;

	__atomic_sub_fetch(&sl->users, 1, __ATOMIC_SEQ_CST);
	now = __atomic_load_n(&sl->ring, __ATOMIC_SEQ_CST);
	if (!now || now != r) {
		/* emptied: a destroy may be waiting for us (r may be gone) */
		pthread_mutex_lock(&evu_wait_mu);
		pthread_cond_broadcast(&evu_wait_cv);
		pthread_mutex_unlock(&evu_wait_mu);
	}
}

/*
 * Without the lock: this thread's cached ring, if it is still its own, in
 * this process, on this set and learned. *idle: it is, but no listener
 * wants its door, so epoll serves the call (as evu_wait_find says). On
 * success the caller holds the slot.
 */
static struct evu_ring *evu_wait_cached(int epfd, bool *idle)
{
	struct evu_wait_slot *sl;
	struct evu_ring *r;
	int state;

	*idle = false;
	if (evu_tl_slot < 0 || evu_tl_epfd != epfd)
		return NULL;
	sl = &evu_wait_slots[evu_tl_slot];
	__atomic_add_fetch(&sl->users, 1, __ATOMIC_SEQ_CST);
	r = __atomic_load_n(&sl->ring, __ATOMIC_SEQ_CST);
	/* own first: epfd is written by the owner alone */
	if (r && __atomic_load_n(&r->enabled, __ATOMIC_ACQUIRE) &&
	    pthread_equal(r->submitter, pthread_self()) && r->pid == evu_getpid() &&
	    r->epfd == epfd) {
		state = __atomic_load_n(&r->wait_state, __ATOMIC_ACQUIRE);
		if (!__atomic_load_n(&r->any_door_wanted, __ATOMIC_ACQUIRE))
			*idle = true;
		else if (state == EVU_WAIT_ON || state == EVU_WAIT_OFF)
			return r;
	}
	evu_wait_slot_leave(sl, r);
	if (!*idle)
		evu_tl_slot = -1;
	return NULL;
}

static int evu_wait_result(int n)
{
	if (n < 0) {
		errno = -n;
		return -1;
	}
	return n;
}

static int evu_wait_epoll(int epfd, struct epoll_event *ev, int max,
			  const struct evu_wait_call *c)
{
	struct evu_ring *r;
	bool fake = false, idle;
	int n;

	/* libc's errors for libc's bad arguments */
	if (max <= 0 || (c->kind == EVU_CALL_PWAIT2 && c->ts &&
			 (c->ts->tv_sec < 0 || c->ts->tv_nsec < 0 ||
			  c->ts->tv_nsec >= 1000000000L)))
		return evu_wait_real(c, epfd, ev, max);
	r = evu_wait_cached(epfd, &idle);
	if (idle)
		return evu_wait_real(c, epfd, ev, max);
	if (!r) {
		unsigned gen = __atomic_load_n(&evu_wait_gen, __ATOMIC_SEQ_CST);

		if (evu_tl_none_epfd == epfd && evu_tl_none_gen == gen)
			return evu_wait_real(c, epfd, ev, max);
		pthread_mutex_lock(&evu_wait_mu);
		r = evu_wait_find(epfd, &fake);
		if (r)
			__atomic_add_fetch(&evu_wait_slots[r->wait_slot].users, 1,
					   __ATOMIC_SEQ_CST);
		pthread_mutex_unlock(&evu_wait_mu);
		if (!r) {
			evu_tl_none_epfd = epfd;
			evu_tl_none_gen = gen;
			return evu_wait_real(c, epfd, ev, max);
		}
		if (!fake) {
			/* its own ring, learned: the lock-free path from now */
			evu_tl_slot = r->wait_slot;
			evu_tl_epfd = epfd;
			evu_tl_other = 0; /* another ring's, if any */
		}
	}
	if (fake)
		n = evu_wait_fake_event(r, ev, max, epfd);
	else if (__atomic_load_n(&r->wait_dead, __ATOMIC_SEQ_CST))
		n = 0; /* a destroy waits for us: libevent calls again */
	else if (__atomic_load_n(&r->wait_state, __ATOMIC_ACQUIRE) == EVU_WAIT_ON)
		n = evu_wait_in_ring(r, epfd, ev, max, c);
	else
		return evu_wait_result(evu_wait_in_epoll(r, epfd, ev, max, c));
	evu_wait_slot_leave(&evu_wait_slots[r->wait_slot], r);
	return evu_wait_result(n);
}

/*
 * libevent's epoll backend calls one of these (2.1: epoll_wait; 2.2:
 * epoll_pwait2 where libc has it, with no signal mask). Exported by
 * libevuring; without a ring that may sleep (EVURING_WAIT=epoll, no
 * io_uring listener) each is libc's.
 */
EVURING_API int epoll_wait(int epfd, struct epoll_event *ev, int max, int timeout)
{
	struct evu_wait_call c = { .kind = EVU_CALL_WAIT, .timeout_ms = timeout };

	if (__atomic_load_n(&evu_wait_nrings, __ATOMIC_ACQUIRE) == 0)
		return evu_real_epoll_wait(epfd, ev, max, timeout);
	return evu_wait_epoll(epfd, ev, max, &c);
}

EVURING_API int epoll_pwait(int epfd, struct epoll_event *ev, int max, int timeout,
			    const sigset_t *sigmask)
{
	struct evu_wait_call c = {
		.kind = EVU_CALL_PWAIT, .timeout_ms = timeout, .sigmask = sigmask
	};

	if (__atomic_load_n(&evu_wait_nrings, __ATOMIC_ACQUIRE) == 0)
		return evu_wait_real(&c, epfd, ev, max);
	return evu_wait_epoll(epfd, ev, max, &c);
}

EVURING_API int epoll_pwait2(int epfd, struct epoll_event *ev, int max,
			     const struct timespec *timeout, const sigset_t *sigmask)
{
	struct evu_wait_call c = { .kind = EVU_CALL_PWAIT2, .ts = timeout, .sigmask = sigmask };

	if (__atomic_load_n(&evu_wait_nrings, __ATOMIC_ACQUIRE) == 0)
		return evu_wait_real(&c, epfd, ev, max);
	return evu_wait_epoll(epfd, ev, max, &c);
}
