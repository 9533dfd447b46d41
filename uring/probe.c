/*
 * Whether io_uring multishot accept works in this process: probed once, on
 * throwaway sockets of our own (on a user's socket EINVAL would also mean
 * "not listening"), and cached.
 *
 * SPDX-License-Identifier: BSD-3-Clause
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>
#include <unistd.h>

#include "uring.h"

static pthread_once_t evu_probe_once = PTHREAD_ONCE_INIT;
static int evu_probe_result;
static const char *evu_probe_why;

/* EPERM comes from the sysctl or from a seccomp/LSM policy: tell which. */
static const char *evu_explain_eperm(void)
{
	FILE *f = fopen("/proc/sys/kernel/io_uring_disabled", "r");
	int v = 0;

	if (f) {
		if (fscanf(f, "%d", &v) != 1)
			v = 0;
		fclose(f);
	}
	if (v == 2)
		return "io_uring_setup refused (EPERM): disabled by sysctl kernel.io_uring_disabled=2";
	if (v == 1)
		return "io_uring_setup refused (EPERM): sysctl kernel.io_uring_disabled=1 and not in io_uring_group";
	return "io_uring_setup refused (EPERM): denied by a seccomp or LSM policy";
}

static const char *evu_explain_setup(int err)
{
	switch (err) {
	case ENOSYS:
		return "io_uring_setup not available (ENOSYS): kernel without io_uring, or a sandbox";
	case EPERM:
		return evu_explain_eperm();
	case ENOMEM:
		return "io_uring_setup failed (ENOMEM): locked-memory limit too small for a ring";
	case EINVAL:
		return "io_uring_setup rejected the parameters (EINVAL): kernel too old";
	}
	return "io_uring_setup failed";
}

/* A connected AF_UNIX pair on an autobound abstract address: needs no
 * network and no file system. */
static int evu_probe_sockets(int *lfd, int *cfd)
{
	struct sockaddr_un sun;
	socklen_t len = sizeof(sa_family_t);

	*lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (*lfd < 0)
		return -errno;
	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	if (bind(*lfd, (struct sockaddr *)&sun, len) < 0 || listen(*lfd, 4) < 0)
		goto fail;
	len = sizeof(sun);
	if (getsockname(*lfd, (struct sockaddr *)&sun, &len) < 0)
		goto fail;
	*cfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (*cfd < 0)
		goto fail;
	if (connect(*cfd, (struct sockaddr *)&sun, len) < 0) {
		close(*cfd);
		goto fail;
	}
	return 0;
fail:
	close(*lfd);
	return -errno;
}

/* Arm a multishot accept with one connection queued: it must complete at
 * once with a socket and IORING_CQE_F_MORE. */
static int evu_probe_multishot(struct io_uring *ring, const char **why)
{
	struct io_uring_sqe *sqe;
	struct io_uring_cqe *cqe;
	struct __kernel_timespec ts = { 1, 0 };
	int lfd = -1, cfd = -1, ret, res = -1;
	unsigned flags = 0;

	ret = evu_probe_sockets(&lfd, &cfd);
	if (ret < 0) {
		*why = "could not make probe sockets";
		return ret;
	}
	sqe = io_uring_get_sqe(ring);
	io_uring_prep_multishot_accept(sqe, lfd, NULL, NULL, SOCK_CLOEXEC);
	io_uring_sqe_set_data64(sqe, 1);
	ret = io_uring_submit(ring);
	if (ret >= 0)
		ret = io_uring_wait_cqe_timeout(ring, &cqe, &ts);
	if (ret == 0) {
		res = cqe->res;
		flags = cqe->flags;
		io_uring_cqe_seen(ring, cqe);
	}
	if (res >= 0)
		close(res);
	if (ret == 0 && res >= 0 && (flags & IORING_CQE_F_MORE)) {
		*why = "io_uring multishot accept works";
		ret = 0;
	} else if (ret == 0 && res == -EINVAL) {
		*why = "multishot accept unsupported (EINVAL): kernel older than 5.19";
		ret = -EOPNOTSUPP;
	} else {
		*why = "multishot accept did not complete as expected";
		ret = ret < 0 ? ret : -EOPNOTSUPP;
	}
	/* Cancel and reap the armed accept here: left to ring teardown, its
	 * cancellation would run later as task work in this thread and
	 * interrupt whatever blocking call the program is in (EINTR). */
	if (res >= 0 && (flags & IORING_CQE_F_MORE)) {
		sqe = io_uring_get_sqe(ring);
		io_uring_prep_cancel64(sqe, 1, 0);
		io_uring_sqe_set_data64(sqe, 2);
		io_uring_submit(ring);
		for (int i = 0; i < 2; i++) {
			if (io_uring_wait_cqe_timeout(ring, &cqe, &ts) != 0)
				break;
			if (cqe->user_data == 1 && cqe->res >= 0)
				close(cqe->res);
			io_uring_cqe_seen(ring, cqe);
		}
	}
	close(cfd);
	close(lfd);
	return ret;
}

static void evu_probe_run(void)
{
	struct io_uring ring;
	struct io_uring_probe *probe;
	int ret;

	ret = io_uring_queue_init(4, &ring, 0);
	if (ret < 0) {
		evu_probe_result = ret;
		evu_probe_why = evu_explain_setup(-ret);
		goto out;
	}
	if ((ring.features & (IORING_FEAT_FAST_POLL | IORING_FEAT_NODROP)) !=
	    (IORING_FEAT_FAST_POLL | IORING_FEAT_NODROP)) {
		evu_probe_result = -EOPNOTSUPP;
		evu_probe_why = "io_uring lacks FAST_POLL/NODROP (kernel older than 5.7, or an emulation such as gVisor)";
		goto exit_ring;
	}
	probe = io_uring_get_probe_ring(&ring);
	if (!probe || !io_uring_opcode_supported(probe, IORING_OP_ACCEPT) ||
	    !io_uring_opcode_supported(probe, IORING_OP_ASYNC_CANCEL)) {
		evu_probe_result = -EOPNOTSUPP;
		evu_probe_why = "io_uring opcode probe: ACCEPT or ASYNC_CANCEL unsupported";
		if (probe)
			io_uring_free_probe(probe);
		goto exit_ring;
	}
	io_uring_free_probe(probe);
	evu_probe_result = evu_probe_multishot(&ring, &evu_probe_why);
exit_ring:
	io_uring_queue_exit(&ring);
out:
	evu_debug("io_uring probe: %s", evu_probe_why);
}

static void *evu_probe_thread(void *arg)
{
	(void)arg;
	evu_probe_run();
	return NULL;
}

/*
 * Closing a ring makes the kernel send each thread that submitted to it a
 * signal-like task-work notification, some time later: in the caller's
 * thread it would make a blocking call with a timeout fail with EINTR. So
 * the probe's ring lives and dies in a thread of its own.
 */
static void evu_probe_once_fn(void)
{
	pthread_t t;

	if (pthread_create(&t, NULL, evu_probe_thread, NULL) == 0)
		pthread_join(t, NULL);
	else
		evu_probe_run();
}

int evu_uring_probe(const char **why)
{
	pthread_once(&evu_probe_once, evu_probe_once_fn);
	if (why)
		*why = evu_probe_why;
	return evu_probe_result;
}

enum evu_ring_mode evu_ring_mode_wanted(void)
{
	const char *v = secure_getenv("EVURING_RING_FLAGS");

	if (v && !strcmp(v, "coop"))
		return EVU_RING_COOP;
	if (v && !strcmp(v, "none"))
		return EVU_RING_PLAIN;
	return EVU_RING_DEFER;
}
