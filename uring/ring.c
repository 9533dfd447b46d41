/*
 * One io_uring per event_base, shared by every listener on that base. The
 * ring fd sits in the base as a persistent read event, pending only while
 * some listener needs it; completions are reaped in batches, with no
 * syscall per completion.
 *
 * SPDX-License-Identifier: BSD-3-Clause
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "uring.h"

#define EVU_SQ_ENTRIES 64
/* Multishot accept has no back-pressure: a full CQ ends the request. The CQ
 * size therefore bounds accepted-but-undelivered fds per wakeup. */
#define EVU_CQ_ENTRIES 2048
#define EVU_REAP_BATCH 64
#define EVU_REAP_ROUNDS 16 /* then yield to other events; the fd stays readable */

static pthread_mutex_t evu_rings_mu = PTHREAD_MUTEX_INITIALIZER;
static struct evu_ring *evu_rings;

static void evu_ring_event_cb(evutil_socket_t fd, short what, void *arg)
{
	struct evu_ring *r = arg;

	evu_ring_enter_loop(r);
	evu_ring_reap(r, true);
	evu_ring_leave_loop(r);
}

static int evu_ring_init_uring(struct evu_ring *r)
{
	static const unsigned cq_sizes[] = { EVU_CQ_ENTRIES, 512, 128 };
	unsigned flags = evu_ring_setup_flags();
	int ret = -EINVAL;

	for (size_t i = 0; i < sizeof(cq_sizes) / sizeof(cq_sizes[0]); i++) {
		struct io_uring_params p;

		memset(&p, 0, sizeof(p));
		p.flags = IORING_SETUP_CQSIZE | IORING_SETUP_CLAMP | flags;
		p.cq_entries = cq_sizes[i];
		ret = io_uring_queue_init_params(EVU_SQ_ENTRIES, &r->uring, &p);
		if (ret == -EINVAL && flags) {
			flags = 0; /* an older kernel: plain setup */
			i--;
			continue;
		}
		if (ret != -ENOMEM)
			break;
	}
	return ret;
}

static int evu_ring_create(struct event_base *base, struct evu_ring **out)
{
	struct evu_ring *r;
	int ret;

	r = calloc(1, sizeof(*r));
	if (!r)
		return -ENOMEM;
	ret = evu_ring_init_uring(r);
	if (ret < 0)
		goto fail_free;
	r->ring_ev = event_new(base, r->uring.ring_fd, EV_READ | EV_PERSIST,
			       evu_ring_event_cb, r);
	if (!r->ring_ev) {
		ret = -ENOMEM;
		goto fail_exit;
	}
	pthread_mutex_init(&r->mu, NULL);
	r->base = base;
	r->pid = getpid();
#ifdef EVU_HAVE_SYNC_CANCEL
	r->has_sync_cancel = true; /* cleared on first EINVAL (kernel < 6.0) */
#endif
	evu_debug("ring fd %d created for base %p (setup flags 0x%x, cq %u)",
		  r->uring.ring_fd, (void *)base, r->uring.flags,
		  r->uring.cq.ring_entries);
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

	event_free(r->ring_ev);
	/* No request is in flight (every listener state is gone), but be
	 * strict: an fd in an unreaped completion is ours to close. */
	while (io_uring_peek_cqe(&r->uring, &cqe) == 0) {
		if (cqe->user_data && cqe->res >= 0)
			close(cqe->res);
		io_uring_cqe_seen(&r->uring, cqe);
	}
	evu_debug("ring fd %d released", r->uring.ring_fd);
	io_uring_queue_exit(&r->uring);
	pthread_mutex_destroy(&r->mu);
	free(r);
}

int evu_ring_acquire(struct event_base *base, struct evu_ring **out)
{
	struct evu_ring *r;
	pid_t pid = getpid();
	int ret = 0;

	pthread_mutex_lock(&evu_rings_mu);
	for (r = evu_rings; r; r = r->next)
		if (r->base == base && r->pid == pid)
			break;
	if (!r) {
		ret = evu_ring_create(base, &r);
		if (ret == 0) {
			r->next = evu_rings;
			evu_rings = r;
		}
	}
	if (ret == 0) {
		r->n_attached++;
		*out = r;
	}
	pthread_mutex_unlock(&evu_rings_mu);
	return ret;
}

void evu_ring_release(struct evu_ring *r)
{
	struct evu_ring **pp;
	bool last;

	pthread_mutex_lock(&evu_rings_mu);
	last = --r->n_attached == 0;
	if (last) {
		for (pp = &evu_rings; *pp; pp = &(*pp)->next) {
			if (*pp == r) {
				*pp = r->next;
				break;
			}
		}
	}
	pthread_mutex_unlock(&evu_rings_mu);
	if (!last)
		return;
	/* Inside one of our own callbacks, the caller's stack still uses the
	 * ring: the outermost callback releases it on the way out. */
	if (r->busy && evu_ring_in_loop_thread(r))
		r->teardown_pending = true;
	else
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

bool evu_ring_in_loop_thread(struct evu_ring *r)
{
	unsigned long tid = __atomic_load_n((unsigned long *)&r->loop_tid, __ATOMIC_RELAXED);

	return __atomic_load_n(&r->loop_tid_known, __ATOMIC_ACQUIRE) &&
	       pthread_equal((pthread_t)tid, pthread_self());
}

void evu_ring_enter_loop(struct evu_ring *r)
{
	pthread_t self = pthread_self();

	/* The thread running our callbacks is the loop thread: submissions
	 * belong there, since io_uring runs request work in the submitter. */
	if (!r->loop_tid_known || !pthread_equal(r->loop_tid, self)) {
		__atomic_store_n((unsigned long *)&r->loop_tid, (unsigned long)self,
				 __ATOMIC_RELAXED);
		__atomic_store_n(&r->loop_tid_known, true, __ATOMIC_RELEASE);
	}
	r->busy++;
}

void evu_ring_leave_loop(struct evu_ring *r)
{
	if (--r->busy == 0 && r->teardown_pending)
		evu_ring_destroy(r);
}

struct io_uring_sqe *evu_ring_get_sqe(struct evu_ring *r)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(&r->uring);

	if (!sqe) {
		evu_ring_submit(r);
		sqe = io_uring_get_sqe(&r->uring);
	}
	if (sqe)
		r->sq_pending++;
	return sqe;
}

int evu_ring_submit(struct evu_ring *r)
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
		if (ret != -EINVAL)
			return ret == -ENOENT || ret == -EALREADY ? 0 : ret;
		r->has_sync_cancel = false;
	}
#endif
	if (!may_submit)
		return -EAGAIN;
	sqe = evu_ring_get_sqe(r);
	if (!sqe)
		return -EBUSY;
	io_uring_prep_cancel64(sqe, (uint64_t)(uintptr_t)user_data, 0);
	io_uring_sqe_set_data(sqe, NULL);
	return evu_ring_submit(r);
}

void evu_ring_reap(struct evu_ring *r, bool deliver)
{
	struct io_uring_cqe *cqes[EVU_REAP_BATCH];
	struct {
		void *ud;
		int res;
		unsigned flags;
	} batch[EVU_REAP_BATCH];

	for (int round = 0; round < EVU_REAP_ROUNDS; round++) {
		/* peek flushes overflowed CQEs and deferred task work itself
		 * when the CQ looks empty, so the fd never stays readable
		 * with nothing to reap. */
		unsigned n = io_uring_peek_batch_cqe(&r->uring, cqes, EVU_REAP_BATCH);

		if (n == 0)
			break;
		/* Copy out before running callbacks: they may free listeners. */
		for (unsigned i = 0; i < n; i++) {
			batch[i].ud = io_uring_cqe_get_data(cqes[i]);
			batch[i].res = cqes[i]->res;
			batch[i].flags = cqes[i]->flags;
		}
		io_uring_cq_advance(&r->uring, n);
		r->batch_seq++;
		for (unsigned i = 0; i < n; i++)
			if (batch[i].ud)
				evu_ulev_on_cqe(batch[i].ud, batch[i].res,
						batch[i].flags, deliver);
		if (r->sq_pending)
			evu_ring_submit(r);
	}
	if (r->sq_pending)
		evu_ring_submit(r);
}
