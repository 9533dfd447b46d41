/*
 * fd_burst: a queue of connections far longer than the fds a process has
 * left, handed to a callback that closes each one.
 *
 * libevent's listener accepts one connection, hands it to the callback,
 * then accepts the next: a callback that closes its fd keeps the process at
 * one fd however long the queue, and never sees EMFILE. A multishot accept
 * takes the whole queue in one go, so evuring must bound that batch and must
 * not report the EMFILE that ends a batch which did hand out fds.
 *
 * - A client process (its fds are not ours) completes BURST connections
 *   while the loop does not run, so all of them wait in the accept queue.
 * - RLIMIT_NOFILE is lowered to FREE_FDS above the lowest free fd, and the
 *   listener re-armed under it (an io_uring accept captures the limit when
 *   it is armed).
 * - Then the loop runs: every queued connection reaches the callback exactly
 *   once (matched by client port), the error callback never runs, and no fd
 *   handed to the callback is at or above the limit.
 * - A second burst under the original limit: the highest fd number handed
 *   to the callback (fds are allocated lowest first) stays under
 *   BATCH_FDS_MAX above the lowest free one, so the process never held the
 *   whole queue at once (libevent's listener: one).
 * - Afterwards the fd count is back at its baseline.
 *
 * SPDX-License-Identifier: BSD-3-Clause
 */
#include "rel_common.h"

#include <signal.h>
#include <sys/prctl.h>

#define BURST 600   /* queued connections */
#define FREE_FDS 24 /* fds the process has left under the lowered limit */
#define BATCH_FDS_MAX 80 /* evuring: at most a CQ (64) of undelivered fds */

struct ctx {
	unsigned short seen[65536];
	int accepted, errs, first_errno, max_fd;
};
static struct ctx c;

static void acc_cb(struct evconnlistener *lev, evutil_socket_t fd,
		   struct sockaddr *sa, int socklen, void *arg)
{
	CHECK(socklen > 0);
	c.seen[harness_port(sa)]++;
	c.accepted++;
	if (fd > c.max_fd)
		c.max_fd = fd;
	close(fd);
}

static void err_cb(struct evconnlistener *lev, void *arg)
{
	if (!c.errs++)
		c.first_errno = EVUTIL_SOCKET_ERROR();
}

/* The fd number the next socket would get. */
static int lowest_free_fd(void)
{
	int fd = dup(0);

	CHECKF(fd >= 0, "dup: %s", strerror(errno));
	close(fd);
	return fd;
}

static int accepted_all(void *arg)
{
	return c.accepted >= *(int *)arg;
}

/* The client process, per 'G' from the parent: BURST blocking connects
 * (each returns once the handshake is done, i.e. the connection is queued),
 * then their local ports to the parent; the sockets stay open until the
 * next command. 'Q': exit. */
static void client_main(int go_fd, int res_fd, struct sockaddr_in sin)
{
	static uint16_t ports[BURST];
	static int fds[BURST];
	int n = 0;
	char cmd;

	prctl(PR_SET_PDEATHSIG, SIGKILL);
	alarm(60);
	for (int fd = 3; fd < 1024; fd++)
		if (fd != go_fd && fd != res_fd)
			close(fd);
	while (read(go_fd, &cmd, 1) == 1 && cmd == 'G') {
		while (n > 0)
			close(fds[--n]);
		for (; n < BURST; n++) {
			fds[n] = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
			if (fds[n] < 0 ||
			    connect(fds[n], (const struct sockaddr *)&sin, sizeof sin) < 0)
				_exit(3);
			ports[n] = rel_local_port(fds[n]);
		}
		if (write(res_fd, ports, sizeof ports) != (ssize_t)sizeof ports)
			_exit(4);
	}
	_exit(cmd == 'Q' ? 0 : 2);
}

/* Queue BURST connections while the loop does not run, then drain them:
 * each reaches the callback exactly once, the error callback never runs. */
static void burst(struct event_base *base, int go_fd, int res_fd)
{
	static uint16_t ports[BURST];
	int want = BURST, missed = 0, dups = 0;

	memset(&c, 0, sizeof c);
	c.max_fd = -1;
	CHECK_EQ(write(go_fd, "G", 1), 1);
	rel_read_full(res_fd, ports, sizeof ports, 20000);
	CHECK_EQ(c.accepted, 0);
	CHECKF(harness_run_until(base, accepted_all, &want, 10000),
	       "%d of %d queued connections accepted within 10 s (error callback %d times, "
	       "first errno %d %s)", c.accepted, BURST, c.errs, c.first_errno,
	       c.errs ? strerror(c.first_errno) : "");
	harness_run_for(base, 50); /* nothing more, nothing twice */
	for (int i = 0; i < BURST; i++) {
		if (c.seen[ports[i]] == 0)
			missed++;
		else if (c.seen[ports[i]] > 1)
			dups++;
	}
	CHECKF(missed == 0 && dups == 0 && c.accepted == BURST,
	       "accepted %d of %d: %d client ports never seen, %d seen twice",
	       c.accepted, BURST, missed, dups);
	CHECKF(c.errs == 0,
	       "the error callback ran %d times (first errno %d, %s): a callback "
	       "that closes every fd never runs out of fds with libevent's listener",
	       c.errs, c.first_errno, strerror(c.first_errno));
}

int main(void)
{
	struct event_base *base;
	struct evconnlistener *lev;
	struct sockaddr_in sin;
	int baseline, go[2], res[2], status, limit, lowest_free;
	rlim_t saved;
	pid_t pid;

	harness_init("fd_burst");
	baseline = harness_fd_count();
	saved = rel_get_nofile();
	base = harness_base();
	lev = harness_listen_ipv4(base, acc_cb, NULL,
				  LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE,
				  BURST + 100, &sin);
	evconnlistener_set_error_cb(lev, err_cb);

	REQUIRE_SYS(pipe2(go, O_CLOEXEC));
	REQUIRE_SYS(pipe2(res, O_CLOEXEC));
	pid = fork();
	REQUIRE_SYS(pid);
	if (pid == 0)
		client_main(go[0], res[1], sin);
	close(go[0]);
	close(res[1]);

	harness_phase("lower the fd limit, re-arm under it");
	CHECK_EQ(evconnlistener_disable(lev), 0);
	harness_run_for(base, 20); /* the cancel's completion is reaped */
	limit = lowest_free_fd() + FREE_FDS;
	rel_set_nofile((rlim_t)limit);
	CHECK_EQ(evconnlistener_enable(lev), 0);
	harness_run_for(base, 20);

	harness_phase("burst against the lowered limit");
	burst(base, go[1], res[0]);
	CHECKF(c.max_fd < limit, "fd %d handed out under RLIMIT_NOFILE %d", c.max_fd, limit);
	printf("burst of %d with %d free fds: highest fd delivered %d (limit %d)\n",
	       BURST, FREE_FDS, c.max_fd, limit);

	harness_phase("burst under the original limit");
	rel_set_nofile(saved);
	CHECK_EQ(evconnlistener_disable(lev), 0);
	harness_run_for(base, 20);
	CHECK_EQ(evconnlistener_enable(lev), 0);
	harness_run_for(base, 20);
	lowest_free = lowest_free_fd();
	burst(base, go[1], res[0]);
	printf("burst of %d: highest fd delivered %d, lowest free before %d\n",
	       BURST, c.max_fd, lowest_free);
	CHECKF(c.max_fd < lowest_free + BATCH_FDS_MAX,
	       "fd %d handed out with %d the lowest free: the process held %d "
	       "accepted fds at once (libevent's listener: 1)", c.max_fd,
	       lowest_free, c.max_fd - lowest_free + 1);

	harness_phase("clean up");
	CHECK_EQ(write(go[1], "Q", 1), 1);
	REQUIRE_SYS(waitpid(pid, &status, 0));
	CHECKF(WIFEXITED(status) && WEXITSTATUS(status) == 0,
	       "client process status %#x", status);
	close(go[1]);
	close(res[0]);
	evconnlistener_free(lev);
	event_base_free(base);
	CHECK_EQ(harness_fd_count(), baseline);
	return 0;
}
