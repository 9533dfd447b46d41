/*
 * Accept-storm server: a raw liburing multishot accept loop, no event loop.
 * The thread waits in io_uring_submit_and_wait(), on a DEFER_TASKRUN +
 * SINGLE_ISSUER ring (the cheapest setup for one thread; --opt plain, or a
 * kernel that refuses it, gives a ring without setup flags). With --opt gpn
 * it calls
 * getpeername() per connection (variant "raw-uring-gpn"); without, the peer
 * address is unknown and the latency join is not possible (variant
 * "raw-uring": CPU figures only). With --opt gpn,epoll (variant
 * "raw-uring-epoll") the listening socket is also a level-triggered member of
 * an epoll set, harvested with epoll_wait(timeout 0) after every wait: what a
 * loop that sleeps in io_uring but still serves an epoll-based event loop
 * would pay at least.
 *
 * SPDX-License-Identifier: BSD-3-Clause
 */
#define _GNU_SOURCE
#include "storm.h"

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <liburing.h>
#include <sys/epoll.h>

static volatile sig_atomic_t stop_sig;
static void on_sig(int sig) { stop_sig = sig; }

int main(int argc, char **argv)
{
	struct storm_server S;
	storm_server_init(&S, "raw-uring", argc, argv);
	int gpn = strstr(S.opt, "gpn") != NULL;

	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_sig; /* no SA_RESTART: the wait returns -EINTR */
	sigaction(SIGUSR1, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGALRM, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);

	int lfd = storm_listen_socket(&S, 1);
	int epfd = -1;
	if (strstr(S.opt, "epoll")) {
		struct epoll_event ev = { .events = EPOLLIN, .data.fd = lfd };
		epfd = epoll_create1(EPOLL_CLOEXEC);
		if (epfd < 0 || epoll_ctl(epfd, EPOLL_CTL_ADD, lfd, &ev) < 0) {
			perror("epoll");
			return 1;
		}
	}

	struct io_uring ring;
	struct io_uring_params p;
	memset(&p, 0, sizeof(p));
	const char *flags_name = "defer";
	p.flags = IORING_SETUP_CQSIZE | IORING_SETUP_CLAMP;
	if (!strstr(S.opt, "plain"))
		p.flags |= IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN;
	p.cq_entries = 4096;
	int ret = io_uring_queue_init_params(64, &ring, &p);
	if (ret == -EINVAL && (p.flags & IORING_SETUP_DEFER_TASKRUN)) {
		memset(&p, 0, sizeof(p));
		p.flags = IORING_SETUP_CQSIZE | IORING_SETUP_CLAMP;
		p.cq_entries = 4096;
		ret = io_uring_queue_init_params(64, &ring, &p);
	}
	if (!(p.flags & IORING_SETUP_DEFER_TASKRUN))
		flags_name = "none";
	if (ret < 0) {
		fprintf(stderr, "io_uring_queue_init: %s\n", strerror(-ret));
		return 1;
	}

	unsigned long arms = 0, waits = 0, cqes = 0, errors = 0, epoll_hits = 0;
	int armed = 0;
	storm_ready(&S, lfd);
	alarm((unsigned)S.timeout_s + 1);

	while (!S.done && !stop_sig) {
		if (!armed) {
			struct io_uring_sqe *sqe = io_uring_get_sqe(&ring);
			io_uring_prep_multishot_accept(sqe, lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
			io_uring_sqe_set_data64(sqe, 1);
			armed = 1;
			arms++;
		}
		ret = io_uring_submit_and_wait(&ring, 1);
		waits++;
		if (ret < 0 && ret != -EINTR && ret != -EAGAIN && ret != -EBUSY) {
			fprintf(stderr, "io_uring_submit_and_wait: %s\n", strerror(-ret));
			break;
		}
		if (epfd >= 0) {
			struct epoll_event evs[8];
			int n = epoll_wait(epfd, evs, 8, 0);
			if (n > 0)
				epoll_hits++;
		}
		struct io_uring_cqe *cqe;
		unsigned head, seen = 0;
		io_uring_for_each_cqe(&ring, head, cqe) {
			seen++;
			if (!(cqe->flags & IORING_CQE_F_MORE))
				armed = 0;
			if (cqe->res < 0) {
				errors++;
				continue;
			}
			int fd = cqe->res;
			if (gpn) {
				struct sockaddr_storage ss;
				socklen_t len = sizeof(ss);
				if (getpeername(fd, (struct sockaddr *)&ss, &len) == 0)
					storm_on_conn(&S, (struct sockaddr *)&ss);
				else
					storm_on_conn(&S, NULL);
			} else {
				storm_on_conn_noaddr(&S);
			}
			close(fd);
			if (storm_conn_done(&S))
				break;
		}
		io_uring_cq_advance(&ring, seen);
		cqes += seen;
	}
	if (!S.done)
		storm_stop(&S, stop_sig == SIGALRM);

	char extra[256];
	snprintf(extra, sizeof(extra),
		 "\"ring_flags\":\"%s\",\"arms\":%lu,\"waits\":%lu,\"cqes\":%lu,\"accept_errors\":%lu,\"epoll_hits\":%lu",
		 flags_name, arms, waits, cqes, errors, epoll_hits);
	storm_report(&S, epfd >= 0 ? "raw-uring-epoll" : gpn ? "raw-uring-gpn" : "raw-uring",
		     extra);
	if (epfd >= 0)
		close(epfd);
	io_uring_queue_exit(&ring);
	close(lfd);
	return 0;
}
