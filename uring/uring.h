/*
 * io_uring backend internals: one ring per event_base (ring.c) and the
 * per-listener multishot accept state (uring-backend.c).
 *
 * SPDX-License-Identifier: BSD-3-Clause
 */
#ifndef EVU_URING_H
#define EVU_URING_H

#include <liburing.h>
#include <stdint.h>

#include "evu-internal.h"
#include "evu-config.h"

struct evu_ring;

/*
 * How an io_uring listener accepts; evu_ulev_sync_path (uring-backend.c) is
 * the one place it changes.
 * RING    its socket's sole accepter: a multishot accept on the ring.
 * DIRECT  other loops or processes accept from the socket too: libevent's
 *         accept4() loop on the socket's readiness, so that whichever loop
 *         is free takes a connection (a connection wakes only one armed
 *         io_uring accept, which runs when its own loop next enters its ring).
 */
enum evu_path { EVU_PATH_RING, EVU_PATH_DIRECT };

/*
 * A listener's io_uring state. The CQE user_data points here, so it lives
 * until the final CQE of its last request has been reaped, even if the
 * listener was freed before (release_pending).
 */
struct evu_ulev {
	struct evconnlistener *lev;
	struct evu_ring *ring;
	struct evu_ulev *ring_next;  /* the ring's list of listener states */
	enum evu_path path;
	bool started;             /* between the façade's start and stop */
	bool others_outside;      /* another process may accept from the socket */
	uint64_t ring_got;        /* fds the ring handed this listener */
	uint64_t door_mark;       /* ring_got at the end of the last door callback */
	unsigned win_wakes, win_misses; /* sharing evidence (evu_ulev_note_wakeup) */
	struct event *arm_ev;     /* activated: arm / deliver stash in the loop thread */
	/* The listening socket as a persistent, level-triggered read event.
	 * RING (DEFER_TASKRUN rings): pending while the accept is live; the
	 * socket's wakeup that queues the accept work also wakes the loop.
	 * DIRECT: pending while started, as libevent's listener event. */
	struct event *door_ev;
	bool door_on;
	bool door_wanted;         /* door_on, were the loop not asleep in the ring */
	struct event *backoff_ev; /* re-arm after a non-retriable error */
	int *stash;               /* accepted while disabled: delivered on enable */
	unsigned nstash, capstash;
	uint64_t last_batch;      /* for stats.batches */
	bool inflight;            /* a multishot accept is submitted, final CQE not seen */
	unsigned accepted_in_arm; /* fds the current request has handed out */
	bool cancelled;           /* cancel issued for the inflight request */
	bool proven;              /* multishot accept has worked on this socket */
	bool backing_off;
	bool release_pending;     /* listener destroyed: release at final CQE */
	bool switched;            /* handed over to the event backend */
	bool fault_armed;         /* test fault injection (EVURING_TEST_FAULT) */
	bool cancel_delegated;    /* freed from a thread that cannot cancel: the loop does */
	unsigned stash_head;
	bool interest;            /* counted in ring->n_interest (rings without defer) */
	/* Peer address from the accept itself (DEFER_TASKRUN rings, IP
	 * listeners): the kernel rewrites accept_addr at every accept, and
	 * only our own io_uring_enter calls run accepts, so right after a
	 * reap's peek it holds the address of the listener's latest accepted
	 * fd. That is copied to peer (valid for peer_fd in batch peer_seq);
	 * every other fd costs a getpeername(). */
	bool addr_in_accept;
	int family;               /* the listening socket's */
	int peer_fd;
	uint64_t peer_seq;
	socklen_t accept_addrlen, peer_len;
	struct sockaddr_storage accept_addr, peer;
};

struct evu_ring {
	struct io_uring uring;
	struct event_base *base;
	/* Without DEFER_TASKRUN: the ring fd, a persistent read event while
	 * some listener needs it. With it: never added, only activated (a
	 * reap in the loop thread); listeners wake the loop through door_ev. */
	struct event *ring_ev;
	bool defer;               /* DEFER_TASKRUN: work runs only when we ask */
	bool enabled;             /* defer rings start disabled: the loop thread enables */
	pthread_t submitter;      /* defer: the only thread that may enter the ring */
	pid_t submitter_tid;      /* its kernel thread id (atomic) */
	pthread_mutex_t mu;       /* ulevs list, n_interest, ev_added */
	pthread_mutex_t reap_mu;  /* one CQ consumer at a time, only if threaded */
	bool threaded;            /* a THREADSAFE listener uses this ring */
	pthread_t loop_tid;
	bool loop_tid_known;
	bool ev_added;
	bool has_sync_cancel;
	bool teardown_pending;
	bool retiring;            /* under reap_mu: listeners are moving away */
	bool closing;             /* its loop thread is ending: arm nothing more */
	int pins;                 /* cross-thread users (atomic): retire waits */
	int busy;                 /* depth of ring callbacks running (loop thread) */
	int n_attached;           /* evu_ulev objects alive on this ring */
	int n_interest;           /* ulevs that need the ring event pending (no defer) */
	unsigned sq_pending;      /* SQEs prepared but not submitted */
	bool taskrun_stale;       /* IORING_SQ_TASKRUN set, but the last call ran nothing */
	uint64_t batch_seq;
	unsigned share_gen;       /* evu_share_generation() when listeners last looked */
	pid_t pid;
	struct evu_ulev *ulevs;   /* attached listener states (under mu) */
	struct evu_ring *next;
	/* EVURING_WAIT=ring (wait.c): the loop sleeps in this ring. */
	int wait_fd;              /* eventfd in the base, never written but to wake */
	struct event *wait_ev;    /* its read event: reaps; NULL if not this mode */
	int wait_state;           /* wait.c's EVU_WAIT_* (atomic) */
	int epfd;                 /* the base's epoll set, once learned */
#define EVU_EPFD_NOT_MAX 4
	int epfd_not[EVU_EPFD_NOT_MAX]; /* epoll sets of this thread that are not */
	unsigned n_epfd_not;
	bool epoll_poll_armed;    /* multishot poll on epfd */
	bool epoll_harvest;       /* that poll fired: harvest epfd before sleeping */
	bool harvest_again;       /* the last harvest returned events */
	bool wait_dead;           /* atomic: being destroyed */
	bool any_door_wanted;     /* atomic: some listener wants its door */
	bool wait_ev_on;          /* atomic, written under mu: wait_ev is added */
	int n_doors_wanted;       /* under mu */
	int wait_slot;            /* wait.c's slot: its users are the calls using the ring */
	/* EVURING_WAIT=auto, loop thread only: this window's wakeups for
	 * accepts and for other fds (wait.c's tally), and its verdict. */
	unsigned win_accept, win_other;
	bool wait_switch;
	struct evu_ring *wait_next; /* wait.c's list: written under its lock, read atomically */
};

/* CQE user_data of the ring's poll on the base's epoll set; listener
 * requests carry their evu_ulev, cancellations NULL. */
#define EVU_UD_EPOLL ((void *)(uintptr_t)1)

static inline bool evu_ud_is_ulev(void *ud)
{
	return (uintptr_t)ud > 1;
}

/* uring-backend.c: called by the reaper, newest first, for the successful
 * CQEs of a batch that holds every completion posted so far. */
EVU_HIDDEN void evu_ulev_note_accept(struct evu_ulev *ul, int fd, uint64_t seq);

/* ring.c */
EVU_HIDDEN int evu_ring_acquire(struct event_base *base, struct evu_ulev *ul);
EVU_HIDDEN void evu_ring_release(struct evu_ulev *ul);
/* Take ul off its ring without tearing the ring down; ul->ring = NULL.
 * Returns true if it was the ring's last listener state. */
EVU_HIDDEN bool evu_ring_detach(struct evu_ulev *ul);
EVU_HIDDEN void evu_ring_set_interest(struct evu_ring *r, struct evu_ulev *ul,
				      bool interest);
EVU_HIDDEN bool evu_ring_in_loop_thread(struct evu_ring *r);
EVU_HIDDEN bool evu_ring_enter_loop(struct evu_ring *r);
/* If this ring cannot be driven from here (a forked child; or, for rings
 * no THREADSAFE listener uses, a thread other than its submitter, once that
 * thread has exited or if even_if_alive), take its listeners off it and
 * close it, which cancels whatever it had armed. Returns true if it
 * did. While the submitter lives it may be running the loop, in a callback
 * on this ring: retiring then races with it. */
EVU_HIDDEN bool evu_ring_retire_if_foreign(struct evu_ring *r, bool even_if_alive);
/* Not the ring's thread, which lives, and no THREADSAFE listener: work for
 * the ring can be handed to its loop (arm_ev) and waited for. */
EVU_HIDDEN bool evu_ring_can_wait_for_loop(struct evu_ring *r);
/* Reap completions already posted, without running work or delivering
 * (fds go to stashes); for a THREADSAFE free in a non-loop thread. Returns
 * false if the loop thread is reaping right now. */
EVU_HIDDEN bool evu_ring_try_collect(struct evu_ring *r);
/* Keep a ring from being destroyed while another thread than its loop
 * thread uses it (a THREADSAFE free). Take the pin while holding the lock
 * of a listener attached to it: a ring is retired only after each of its
 * listeners has been moved, which takes that lock. */
EVU_HIDDEN void evu_ring_pin(struct evu_ring *r);
EVU_HIDDEN void evu_ring_unpin(struct evu_ring *r);
/* DEFER_TASKRUN, its submitter thread: run queued work (a cancellation's
 * completion, new accepts) without consuming any CQE; the reaper sees them
 * later. Safe inside our own callbacks. */
EVU_HIDDEN void evu_ring_run_pending(struct evu_ring *r);
EVU_HIDDEN void evu_ring_leave_loop(struct evu_ring *r);
EVU_HIDDEN bool evu_ring_can_submit(struct evu_ring *r);
/* DEFER_TASKRUN: reap in the loop thread's next iteration (after our own
 * submissions and cancellations, whose completions no socket announces). */
EVU_HIDDEN void evu_ring_kick(struct evu_ring *r);
EVU_HIDDEN struct io_uring_sqe *evu_ring_get_sqe(struct evu_ring *r);
EVU_HIDDEN int evu_ring_submit(struct evu_ring *r);
/* Submit prepared SQEs only (evu_ring_submit also collects what they
 * complete inline, through the ring's event). -errno on failure. */
EVU_HIDDEN int evu_ring_submit_sqes(struct evu_ring *r);
EVU_HIDDEN void evu_ring_reap(struct evu_ring *r, bool deliver);
EVU_HIDDEN int evu_ring_cancel(struct evu_ring *r, void *user_data, bool may_submit);

/* uring-backend.c: one completion for a listener's request. */
EVU_HIDDEN void evu_ulev_on_cqe(struct evu_ulev *ul, int res, unsigned flags,
				bool deliver);
/* uring-backend.c: take a listener state off its ring, which is being
 * retired (its request is abandoned: closing the ring cancels it). It gets
 * a new ring when it next arms, in its loop thread; @p forked: in a forked
 * child, whose parent holds the socket too. */
EVU_HIDDEN void evu_ulev_orphan(struct evu_ulev *ul, bool forked);
/* uring-backend.c: every listener of the ring takes the path its socket's
 * sharing calls for now (loop thread). */
EVU_HIDDEN void evu_ulev_sync_ring(struct evu_ring *r);
/* ring.c: a socket gained a listener since the ring's listeners looked:
 * evu_ring_reap lets them look before it runs any accept. */
EVU_HIDDEN bool evu_ring_share_changed(struct evu_ring *r);
/* uring-backend.c: cancel every armed request of the ring's listeners
 * (its submitter thread, which is about to end). */
EVU_HIDDEN void evu_ulev_cancel_ring(struct evu_ring *r);

/* wait.c: EVURING_WAIT=ring|auto. */
EVU_HIDDEN bool evu_wait_wanted(void);
/* Set the ring up to have its loop sleep in it (defer rings, if wanted);
 * -errno if it cannot, and the loop keeps sleeping in epoll. */
EVU_HIDDEN int evu_wait_ring_init(struct evu_ring *r);
/* First thing when a ring is destroyed: waits for a loop asleep in it. */
EVU_HIDDEN void evu_wait_ring_fini(struct evu_ring *r);
/* A listener's door is wanted, or no longer (wait_ev is pending while
 * any is, as libevent's listener keeps one event per accepting listener). */
EVU_HIDDEN void evu_wait_door_wanted(struct evu_ring *r, bool wanted);
/* Something changed that may give a thread's epoll_wait a ring to serve it
 * (a ring enabled by its loop thread, among others). */
EVU_HIDDEN void evu_wait_changed(void);
/* Loop thread, first thing in the ring's callbacks (a door's, wait_ev's):
 * carry out a switch the wait decided on. */
EVU_HIDDEN void evu_wait_on_callback(struct evu_ring *r);
/* uring-backend.c: the fd of a listener whose door is in epoll, or -1. */
EVU_HIDDEN int evu_ring_any_door_fd(struct evu_ring *r);
/* The reaper saw a CQE of the ring's poll on the epoll set. */
EVU_HIDDEN void evu_wait_note_epoll_cqe(struct evu_ring *r, unsigned flags);
/* The loop sleeps in this ring: its listening sockets are out of epoll. */
EVU_HIDDEN bool evu_ring_sleeps_in_ring(struct evu_ring *r);
/* uring-backend.c: add or remove every listener's door as the mode says. */
EVU_HIDDEN void evu_ring_update_doors(struct evu_ring *r);
/* ring.c: getpid() without a syscall (refreshed after fork). */
EVU_HIDDEN pid_t evu_getpid(void);

/* Ring setup mode from EVURING_RING_FLAGS (probe.c): see ring.c. */
enum evu_ring_mode { EVU_RING_DEFER, EVU_RING_COOP, EVU_RING_PLAIN };
EVU_HIDDEN enum evu_ring_mode evu_ring_mode_wanted(void);

#endif /* EVU_URING_H */
