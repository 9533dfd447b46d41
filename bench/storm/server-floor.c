/*
 * Accept-storm server: the design's own floor. A minimal hand-written
 * multishot accept inside a libevent base: the ring fd is a persistent
 * EV_READ event; on each wakeup flush deferred work/overflow if flagged,
 * walk every ready CQE, advance once, getpeername() + callback work + close
 * per connection, and re-arm when IORING_CQE_F_MORE is clear. Nothing else.
 *
 * --opt none | coop | door | defer | coopdoor [,linger=US]
 *     ring setup flags, stepping down to none if refused. coop (default,
 *     variant "floor"): COOP_TASKRUN + TASKRUN_FLAG, the ring fd is the
 *     event. door (variant "floor-defer"): evuring's own mode,
 *     DEFER_TASKRUN + SINGLE_ISSUER + TASKRUN_FLAG (the ring fd of such a
 *     ring never wakes a poller); the listening socket itself is a
 *     level-triggered event: its wakeup queues the accept work and wakes the
 *     loop, and io_uring_get_events runs the work. defer (variant
 *     "floor-evfd", evuring's mode until 2026-12): the same ring woken
 *     through a registered eventfd as an edge-triggered event, off while a
 *     wakeup is handled, then re-checked (some kernels signal it only after
 *     an RCU grace period: see docs/design.md). coopdoor (variant
 *     "floor-coopdoor", an experiment): a COOP_TASKRUN ring with the
 *     listening socket as the event; the socket's epoll wakeup also returns
 *     the loop to user space, which runs the queued accept work on the way
 *     out, so the CQEs are usually there without an io_uring_enter.
 * uwait (variant "floor-uwait", an experiment): the DEFER_TASKRUN ring of
 *     door, but the loop sleeps in io_uring_enter instead of epoll_wait. This
 *     binary defines epoll_wait, which libevent's epoll backend then calls:
 *     it waits in io_uring_enter for a CQE (the accept's, or a multishot
 *     poll's on libevent's epoll fd, which fires when anything else in the
 *     base is ready); accept CQEs are returned to libevent as a read event on
 *     an eventfd that is never written (the ring fd itself, in epoll, would
 *     wake epoll's poll at every CQE and so the ring again), and epoll is
 *     harvested with epoll_wait(0) only when its poll fired. What a listener
 *     that owned the loop's sleep would cost.
 * linger=US (with door; variant "floor-linger", an experiment): after each
 *     batch, wait up to US microseconds in io_uring_enter for the next
 *     completion (at most 64 times) before returning to the event loop, so
 *     that a storm is served from io_uring's wait rather than epoll's.
 *
 * SPDX-License-Identifier: BSD-3-Clause
 */
#define _GNU_SOURCE
#include "storm.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <event2/event.h>
#include <liburing.h>

static struct storm_server S;
static struct event_base *base;
static struct io_uring ring;
static int lfd;
static int armed;
static int defer_mode;
static int door_mode; /* the listening socket is the event */
static struct event *ring_ev;
static unsigned long arms, wakeups, cqes, errors, flushes;
static long linger_us; /* experiment: wait this long in io_uring_enter for more */
static unsigned long linger_hits, linger_misses;

#define UD_ACCEPT 1
#define UD_EPFD 2
static int uwait_mode;
static int uwait_fd = -1; /* the event libevent dispatches for accept CQEs */
static int epfd_poll_armed;
static unsigned long uwait_waits, uwait_harvests;

static void arm(void)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(&ring);
	io_uring_prep_multishot_accept(sqe, lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
	io_uring_sqe_set_data64(sqe, UD_ACCEPT);
	io_uring_submit(&ring);
	armed = 1;
	arms++;
}

static void on_ring(evutil_socket_t fd, short what, void *arg)
{
	(void)fd; (void)what; (void)arg;
	wakeups++;
	if (defer_mode && !door_mode) /* our own CQEs must not signal the eventfd again */
		io_uring_cq_eventfd_toggle(&ring, false);
	if (IO_URING_READ_ONCE(*ring.sq.kflags) & (IORING_SQ_CQ_OVERFLOW | IORING_SQ_TASKRUN)) {
		io_uring_get_events(&ring);
		flushes++;
	}
	struct io_uring_cqe *cqe;
	unsigned head, seen;
	int lingers = 0;
again:
	seen = 0;
	io_uring_for_each_cqe(&ring, head, cqe) {
		seen++;
		if (cqe->user_data == UD_EPFD) {
			if (!(cqe->flags & IORING_CQE_F_MORE))
				epfd_poll_armed = 0;
			continue;
		}
		if (!(cqe->flags & IORING_CQE_F_MORE))
			armed = 0;
		if (cqe->res < 0) {
			errors++;
			continue;
		}
		int cfd = cqe->res;
		if (S.done) { /* past the end: do not count */
			close(cfd);
			continue;
		}
		struct sockaddr_storage ss;
		socklen_t len = sizeof(ss);
		if (getpeername(cfd, (struct sockaddr *)&ss, &len) == 0)
			storm_on_conn(&S, (struct sockaddr *)&ss);
		else
			storm_on_conn(&S, NULL);
		close(cfd);
		if (storm_conn_done(&S))
			event_base_loopbreak(base);
	}
	io_uring_cq_advance(&ring, seen);
	cqes += seen;
	if (!armed && !S.done)
		arm();
	if (linger_us > 0 && door_mode && armed && !S.done && lingers++ < 64) {
		struct __kernel_timespec ts = {linger_us / 1000000, linger_us % 1000000 * 1000};
		struct io_uring_cqe *c;
		if (io_uring_wait_cqe_timeout(&ring, &c, &ts) == 0) {
			linger_hits++;
			goto again;
		}
		linger_misses++;
	}
	if (defer_mode && !door_mode) {
		/* Work queued while the eventfd was off signalled nothing. */
		io_uring_cq_eventfd_toggle(&ring, true);
		__atomic_thread_fence(__ATOMIC_SEQ_CST);
		if (!S.done && (io_uring_cq_ready(&ring) ||
				(IO_URING_READ_ONCE(*ring.sq.kflags) &
				 (IORING_SQ_TASKRUN | IORING_SQ_CQ_OVERFLOW))))
			event_active(ring_ev, EV_READ, 0);
	}
}

static int real_epoll_wait(int epfd, struct epoll_event *ev, int max, int timeout)
{
	return (int)syscall(SYS_epoll_wait, epfd, ev, max, timeout);
}

/* uwait: libevent's epoll backend calls this instead of libc's. */
int epoll_wait(int epfd, struct epoll_event *events, int maxevents, int timeout)
{
	struct io_uring_cqe *cqe;
	unsigned head, n_cqes = 0, n_accept = 0, n_epfd = 0;
	int n = 0, ret;

	if (!uwait_mode || maxevents < 2)
		return real_epoll_wait(epfd, events, maxevents, timeout);
	if (!epfd_poll_armed) {
		struct io_uring_sqe *sqe = io_uring_get_sqe(&ring);
		io_uring_prep_poll_multishot(sqe, epfd, POLLIN);
		io_uring_sqe_set_data64(sqe, UD_EPFD);
		epfd_poll_armed = 1;
	}
	if (timeout == 0) {
		io_uring_submit(&ring);
		if (IO_URING_READ_ONCE(*ring.sq.kflags) & IORING_SQ_TASKRUN)
			io_uring_get_events(&ring);
		ret = 0;
	} else {
		struct __kernel_timespec ts = {timeout / 1000, (long long)(timeout % 1000) * 1000000};
		uwait_waits++;
		ret = io_uring_submit_and_wait_timeout(&ring, &cqe, 1, timeout < 0 ? NULL : &ts, NULL);
		if (ret == -EINTR) {
			errno = EINTR;
			return -1;
		}
	}
	io_uring_for_each_cqe(&ring, head, cqe) {
		n_cqes++;
		if (cqe->user_data == UD_EPFD)
			n_epfd++;
		else
			n_accept++;
	}
	if (n_accept) {
		events[n].events = EPOLLIN;
		events[n].data.u64 = 0;
		events[n].data.fd = uwait_fd;
		n++;
	} else if (n_cqes) { /* only epoll's poll: consume it here */
		io_uring_for_each_cqe(&ring, head, cqe)
			if (!(cqe->flags & IORING_CQE_F_MORE))
				epfd_poll_armed = 0;
		io_uring_cq_advance(&ring, n_cqes);
	}
	if (n_epfd || timeout == 0) {
		uwait_harvests++;
		ret = real_epoll_wait(epfd, events + n, maxevents - n, 0);
		if (ret > 0)
			n += ret;
	}
	return n;
}

static void on_stop(evutil_socket_t sig, short what, void *arg)
{
	(void)what; (void)arg;
	storm_stop(&S, sig < 0);
	event_base_loopbreak(base);
}

int main(int argc, char **argv)
{
	storm_server_init(&S, "floor", argc, argv);
	signal(SIGPIPE, SIG_IGN);
	base = event_base_new();
	lfd = storm_listen_socket(&S, 1);

	struct io_uring_params p;
	const char *flags_name = "coop";
	unsigned flags = IORING_SETUP_COOP_TASKRUN | IORING_SETUP_TASKRUN_FLAG;
	if (strstr(S.opt, "none")) {
		flags = 0;
		flags_name = "none";
	} else if (strstr(S.opt, "coopdoor")) {
		flags_name = "coopdoor";
	} else if (strstr(S.opt, "defer") || strstr(S.opt, "door") || strstr(S.opt, "uwait")) {
		flags = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN |
			IORING_SETUP_TASKRUN_FLAG;
		flags_name = strstr(S.opt, "door") ? "door" : strstr(S.opt, "uwait") ? "uwait" : "defer";
	}
	int ret;
	for (;;) {
		memset(&p, 0, sizeof(p));
		p.flags = flags | IORING_SETUP_CQSIZE | IORING_SETUP_CLAMP;
		p.cq_entries = 4096;
		ret = io_uring_queue_init_params(64, &ring, &p);
		if (ret != -EINVAL || flags == 0)
			break;
		flags = 0;
		flags_name = "none";
	}
	if (ret < 0) {
		fprintf(stderr, "io_uring_queue_init: %s\n", strerror(-ret));
		return 1;
	}
	int evfd = -1;
	defer_mode = (flags & IORING_SETUP_DEFER_TASKRUN) != 0;
	door_mode = strstr(S.opt, "door") != NULL;
	const char *linger_opt = strstr(S.opt, "linger=");
	if (linger_opt)
		linger_us = atol(linger_opt + 7);
	uwait_mode = strstr(S.opt, "uwait") != NULL;
	if (uwait_mode) {
		uwait_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
		ring_ev = event_new(base, uwait_fd, EV_READ | EV_PERSIST, on_ring, NULL);
	} else if (door_mode) {
		ring_ev = event_new(base, lfd, EV_READ | EV_PERSIST, on_ring, NULL);
	} else if (defer_mode) {
		evfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
		ret = evfd < 0 ? -errno : io_uring_register_eventfd(&ring, evfd);
		if (ret < 0) {
			fprintf(stderr, "eventfd for the ring: %s\n", strerror(-ret));
			return 1;
		}
		ring_ev = event_new(base, evfd, EV_READ | EV_PERSIST | EV_ET, on_ring, NULL);
	} else {
		ring_ev = event_new(base, ring.ring_fd, EV_READ | EV_PERSIST, on_ring, NULL);
	}
	event_add(ring_ev, NULL);
	arm();

	struct event *ev_usr1 = evsignal_new(base, SIGUSR1, on_stop, NULL);
	struct event *ev_term = evsignal_new(base, SIGTERM, on_stop, NULL);
	struct event *ev_timeout = event_new(base, -1, 0, on_stop, NULL);
	struct timeval tv = {(time_t)S.timeout_s, (suseconds_t)((S.timeout_s - (long)S.timeout_s) * 1e6)};
	evsignal_add(ev_usr1, NULL);
	evsignal_add(ev_term, NULL);
	event_add(ev_timeout, &tv);

	storm_ready(&S, lfd);
	event_base_dispatch(base);
	if (!S.done)
		storm_stop(&S, 0);

	char extra[448];
	uwait_mode = 0;
	snprintf(extra, sizeof(extra),
		 "\"ring_flags\":\"%s\",\"arms\":%lu,\"wakeups\":%lu,\"cqes\":%lu,"
		 "\"flushes\":%lu,\"accept_errors\":%lu,\"linger_hits\":%lu,\"linger_misses\":%lu,"
		 "\"uwait_waits\":%lu,\"uwait_harvests\":%lu",
		 flags_name, arms, wakeups, cqes, flushes, errors, linger_hits, linger_misses,
		 uwait_waits, uwait_harvests);
	storm_report(&S, "floor", extra);

	event_free(ring_ev);
	event_free(ev_usr1);
	event_free(ev_term);
	event_free(ev_timeout);
	io_uring_queue_exit(&ring);
	if (evfd >= 0)
		close(evfd);
	if (uwait_fd >= 0)
		close(uwait_fd);
	close(lfd);
	event_base_free(base);
	return 0;
}
