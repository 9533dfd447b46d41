/*
 * emfile: a listener whose process has run out of file descriptors.
 *
 * - RLIMIT_NOFILE is lowered a little above the fds in use and the table is
 *   filled with dup()s, so every accept fails with EMFILE (the kernel then
 *   leaves the connection in the accept queue). A client process (forked
 *   before the limit was lowered, so its own fds and CPU are not ours) makes
 *   a storm of connections for about a second.
 * - The error callback runs, with errno EMFILE inside it.
 * - No busy loop: the process's CPU time (getrusage) over that second stays
 *   under 5% of a core more than over an idle half second just before it,
 *   with the same exhausted listener armed (the idle share, 3-4.5% of a
 *   core on this 2-vCPU VM with or without ThreadSanitizer, is the process's
 *   own background; with a fixed 5% bar the TSan run failed at 5.5% with
 *   15 error callbacks). libevent's own listener is level-triggered and calls
 *   the error callback on every loop iteration (a known libevent weakness):
 *   the reference run prints its CPU use as an expected-failure observation
 *   instead of asserting it.
 * - Once fds are freed, accepting resumes by itself (no re-enable) at the
 *   first retry: no error callback runs between the fds being freed and the
 *   first accepted connection. evuring retries at most 80 ms after the last
 *   failed accept (here 80-81 ms, measured from the error callback to the
 *   first accept callback); libevent at once. The first accept may come at
 *   most SCHED_SLACK_MS after that retry was due: the loop's own latency on
 *   a loaded machine. A fixed 100 ms from the fds' freeing failed once in
 *   CI under ASan (133 ms) while locally it is 4-40 ms; the figures printed
 *   tell a late retry from a failed one. Every connection the client
 *   completed is accepted exactly once (matched by client port); connects
 *   that failed are counted (the kernel refused them) and must be zero here
 *   (the backlog holds the storm).
 * - libevent's regress error_unlock: a THREADSAFE listener on a readable,
 *   non-listening socketpair end, RLIMIT_NOFILE lowered under the fd numbers
 *   in use; one EVLOOP_ONCE iteration returns (no deadlock, no spin; the
 *   watchdog bounds it), and the listener lock is free afterwards (another
 *   thread can disable it).
 * - After everything is freed the fd count is back at its baseline.
 *
 * The listener is re-armed (disable, enable) after the limit was lowered:
 * an io_uring accept captures RLIMIT_NOFILE when it is armed. The last phase
 * reports (not asserts) what a listener armed *before* the limit change does.
 */
#include "rel_common.h"

#include <sys/prctl.h>
#include <signal.h>

#define STORM 300         /* connections made against the exhausted listener */
#define STORM_MS 1000     /* how long the storm lasts (and CPU is measured) */
#define CPU_MAX_PCT 5.0
#define BACKOFF_MAX_MS 80 /* evuring's longest accept-error back-off */
#define SCHED_SLACK_MS 100

struct ctx {
	unsigned short seen[65536];
	int accepted, errs, first_errno, errno_not_emfile, max_fd_seen;
	int errs_at_first_accept;
	long long last_err_ms, first_accept_ms;
};
static struct ctx c;

static void acc_cb(struct evconnlistener *lev, evutil_socket_t fd,
		   struct sockaddr *sa, int socklen, void *arg)
{
	CHECK(socklen > 0);
	c.seen[harness_port(sa)]++;
	if (!c.accepted++) {
		c.errs_at_first_accept = c.errs;
		c.first_accept_ms = harness_now_ms();
	}
	if (fd > c.max_fd_seen)
		c.max_fd_seen = fd;
	close(fd);
}

static void err_cb(struct evconnlistener *lev, void *arg)
{
	int e = EVUTIL_SOCKET_ERROR();
	if (!c.errs++)
		c.first_errno = e;
	if (e != EMFILE)
		c.errno_not_emfile++;
	c.last_err_ms = harness_now_ms();
}

static int accepted_any(void *arg)
{
	return c.accepted > *(int *)arg;
}

static int accepted_all(void *arg)
{
	return c.accepted >= *(int *)arg;
}

/* ---- the client process ------------------------------------------------- */

struct client_report {
	int completed, failed, first_errno;
	uint16_t ports[STORM];
};

static void client_main(int go_fd, int res_fd, struct sockaddr_in sin)
{
	static struct client_report rep;
	static int fds[STORM];
	char cmd;
	int n = 0;

	prctl(PR_SET_PDEATHSIG, SIGKILL);
	alarm(60);
	/* Keep only stdio and our pipes: the listener's socket and the
	 * parent's ring are not ours. */
	for (int fd = 3; fd < 1024; fd++)
		if (fd != go_fd && fd != res_fd)
			close(fd);
	if (read(go_fd, &cmd, 1) != 1)
		_exit(2);
	memset(&rep, 0, sizeof rep);
	for (int i = 0; i < STORM; i++) {
		int fd = rel_connect_start((struct sockaddr *)&sin, sizeof sin);
		int err = 0;
		socklen_t el = sizeof err;
		if (fd >= 0) {
			struct pollfd p = {fd, POLLOUT, 0};
			if (poll(&p, 1, 3000) <= 0)
				err = ETIMEDOUT;
			else if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &el) < 0)
				err = errno;
		} else {
			err = errno;
		}
		if (err) {
			if (!rep.failed++)
				rep.first_errno = err;
			if (fd >= 0)
				close(fd);
		} else {
			/* kept open until the parent has accepted them all */
			rep.ports[rep.completed++] = rel_local_port(fd);
			fds[n++] = fd;
		}
		harness_sleep_ms(STORM_MS * 9 / 10 / STORM);
	}
	if (write(res_fd, &rep, sizeof rep) != (ssize_t)sizeof rep)
		_exit(3);
	if (read(go_fd, &cmd, 1) != 1)
		_exit(4);
	for (int i = 0; i < n; i++)
		close(fds[i]);
	_exit(0);
}

/* ---- error_unlock ------------------------------------------------------- */

static atomic_int eu_errs;

static void eu_err_cb(struct evconnlistener *lev, void *arg)
{
	atomic_fetch_add(&eu_errs, 1);
}

static void *eu_disable_thread(void *arg)
{
	struct evconnlistener *lev = arg;
	CHECK_EQ(evconnlistener_disable(lev), 0);
	return NULL;
}

static void error_unlock(void)
{
	struct event_base *base;
	struct evconnlistener *lev;
	rlim_t saved = rel_get_nofile();
	int pair[2], before, r, max_fd;
	long long cpu0, t0;
	pthread_t t;

	harness_phase("error_unlock: THREADSAFE, RLIMIT_NOFILE under fds in use, EVLOOP_ONCE");
	before = harness_fd_count();
	base = harness_base();
	REQUIRE_SYS(socketpair(AF_UNIX, SOCK_STREAM, 0, pair));
	CHECK_EQ(send(pair[1], "hello", 5, 0), 5); /* pair[0] is readable */
	lev = evconnlistener_new(base, acc_cb, NULL,
				 LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE |
					 LEV_OPT_THREADSAFE,
				 0, pair[0]);
	CHECKF(lev != NULL, "evconnlistener_new on a socketpair end: %s",
	       strerror(errno));
	evconnlistener_set_error_cb(lev, eu_err_cb);
	max_fd = rel_max_fd();
	/* As the regress test: the limit below the highest fd in use. */
	rel_set_nofile((rlim_t)pair[1]);
	cpu0 = rel_cpu_us();
	t0 = harness_now_ms();
	r = event_base_loop(base, EVLOOP_ONCE);
	rel_set_nofile(saved);
	printf("error_unlock: EVLOOP_ONCE returned %d after %lld ms, %lld us CPU; "
	       "%d error callback(s); limit was %d, highest fd %d\n", r,
	       harness_now_ms() - t0, rel_cpu_us() - cpu0, atomic_load(&eu_errs),
	       pair[1], max_fd);
	CHECK(r >= 0);
	CHECKF(atomic_load(&eu_errs) >= 1,
	       "the error callback did not run in the EVLOOP_ONCE iteration");
	/* The lock was released: another thread can take it. */
	CHECK(pthread_create(&t, NULL, eu_disable_thread, lev) == 0);
	rel_join_within(t, 2000, "disable from another thread after error_unlock");
	evconnlistener_free(lev); /* CLOSE_ON_FREE closes pair[0] */
	close(pair[1]);
	event_base_free(base);
	CHECK_EQ(harness_fd_count(), before);
}

/* ---- armed before the limit change (observation) ----------------------- */

static void armed_before_setrlimit(struct event_base *base,
				   struct evconnlistener *lev,
				   const struct sockaddr_in *sin)
{
	rlim_t saved = rel_get_nofile();
	int limit, fds[4096], ndup = 0, cfd, accepted0 = c.accepted;

	harness_phase("observation: listener armed before RLIMIT_NOFILE was lowered");
	cfd = harness_connect((const struct sockaddr *)sin, sizeof *sin, 0, NULL);
	CHECKF(harness_run_until(base, accepted_any, &accepted0, 2000),
	       "listener not accepting before the observation");
	accepted0 = c.accepted;
	close(cfd);
	/* the client socket exists before the table is full */
	cfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	REQUIRE_SYS(cfd);
	limit = rel_max_fd() + 8;
	rel_set_nofile((rlim_t)limit);
	while (ndup < 4096) {
		int fd = dup(0);
		if (fd < 0)
			break;
		fds[ndup++] = fd;
	}
	c.max_fd_seen = -1;
	CHECK(connect(cfd, (const struct sockaddr *)sin, sizeof *sin) == 0 ||
	      errno == EINPROGRESS);
	harness_run_for(base, 200);
	for (int i = 0; i < ndup; i++)
		close(fds[i]);
	rel_set_nofile(saved);
	printf("NOTE: with the listener armed before setrlimit(NOFILE=%d) and "
	       "the table full, %d connection(s) accepted (fd %d)%s\n", limit,
	       c.accepted - accepted0, c.max_fd_seen,
	       c.max_fd_seen >= limit ? ": an fd at or above RLIMIT_NOFILE was "
					"handed out (accept4 would fail with EMFILE)"
				      : "");
	harness_run_until(base, accepted_any, &accepted0, 1000);
	close(cfd);
}

int main(void)
{
	struct event_base *base;
	struct evconnlistener *lev;
	struct sockaddr_in sin;
	static struct client_report rep;
	static unsigned short want[65536];
	int baseline, go[2], res[2], status, ndup = 0, limit, want_total;
	int missed = 0, dups = 0, zero = 0;
	static int dupfds[65536];
	rlim_t saved;
	pid_t pid;
	long long cpu0, cpu1, t0, t1, resume_ms, since_err_ms, due_ms;
	int errs_before_free, failed_retries;
	double pct, idle_pct;

	harness_init("emfile");
	harness_use_threads();
	baseline = harness_fd_count();
	saved = rel_get_nofile();
	base = harness_base();
	lev = harness_listen_ipv4(base, acc_cb, NULL,
				  LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE,
				  STORM + 200, &sin);
	evconnlistener_set_error_cb(lev, err_cb);

	harness_phase("sanity: accepting before exhaustion");
	{
		int fd = harness_connect((struct sockaddr *)&sin, sizeof sin, 0, NULL);
		CHECKF(harness_run_until(base, accepted_any, &zero, 2000),
		       "first connection not accepted");
		close(fd);
	}

	REQUIRE_SYS(pipe2(go, O_CLOEXEC));
	REQUIRE_SYS(pipe2(res, O_CLOEXEC));
	pid = fork();
	REQUIRE_SYS(pid);
	if (pid == 0)
		client_main(go[0], res[1], sin);
	close(go[0]);
	close(res[1]);

	harness_phase("exhaust the fd table");
	CHECK_EQ(evconnlistener_disable(lev), 0);
	harness_run_for(base, 20); /* the cancel's completion is reaped */
	limit = rel_max_fd() + 1 + 16;
	rel_set_nofile((rlim_t)limit);
	while (ndup < 65536) {
		int fd = dup(0);
		if (fd < 0) {
			CHECKF(errno == EMFILE, "dup: %s", strerror(errno));
			break;
		}
		dupfds[ndup++] = fd;
	}
	CHECK(ndup > 0);
	CHECK_EQ(evconnlistener_enable(lev), 0); /* armed under the new limit */
	c.accepted = 0;
	memset(c.seen, 0, sizeof c.seen);

	harness_phase("idle, exhausted listener armed");
	cpu0 = rel_cpu_us();
	t0 = harness_now_ms();
	harness_run_for(base, STORM_MS / 2);
	idle_pct = 100.0 * (double)(rel_cpu_us() - cpu0) /
		   (double)((harness_now_ms() - t0) * 1000);

	harness_phase("storm against the exhausted listener");
	CHECK_EQ(write(go[1], "G", 1), 1);
	cpu0 = rel_cpu_us();
	t0 = harness_now_ms();
	harness_run_for(base, STORM_MS);
	cpu1 = rel_cpu_us();
	t1 = harness_now_ms();
	pct = 100.0 * (double)(cpu1 - cpu0) / (double)((t1 - t0) * 1000);
	rel_read_full(res[0], &rep, sizeof rep, 10000);
	printf("storm: %d connects completed, %d failed (first errno %d); "
	       "limit %d, %d dup()s; %d error callbacks (first errno %d: %s), "
	       "%d accepted; CPU %.2f%% of a core over %lld ms (idle before: %.2f%%)\n",
	       rep.completed, rep.failed, rep.first_errno, limit, ndup, c.errs,
	       c.first_errno, strerror(c.first_errno), c.accepted, pct, t1 - t0,
	       idle_pct);
	CHECKF(c.errs > 0, "the error callback never ran while accept hit EMFILE");
	CHECKF(c.first_errno == EMFILE && c.errno_not_emfile == 0,
	       "errno in the error callback: first %d (%s), %d not EMFILE",
	       c.first_errno, strerror(c.first_errno), c.errno_not_emfile);
	CHECKF(c.accepted == 0, "%d accepted with a full fd table", c.accepted);
	CHECKF(rep.completed > STORM / 2, "only %d of %d client connects completed",
	       rep.completed, STORM);
	if (harness_is_reference()) {
		printf("EXPECTED-FAILURE (libevent): CPU %.2f%% of a core while "
		       "exhausted (limit %.0f%%): libevent's level-triggered "
		       "listener calls accept and the error callback on every "
		       "loop iteration (%d times here) - the busy loop evuring "
		       "avoids. Not asserted for the reference.\n", pct,
		       CPU_MAX_PCT, c.errs);
	} else {
		CHECKF(pct - idle_pct < CPU_MAX_PCT,
		       "busy loop: %.2f%% of a core (%lld us CPU in %lld ms) while "
		       "exhausted, %.2f%% idle before; %d error callbacks", pct,
		       cpu1 - cpu0, t1 - t0, idle_pct, c.errs);
	}

	harness_phase("fds freed: accepting resumes by itself");
	t0 = harness_now_ms();
	since_err_ms = t0 - c.last_err_ms;
	errs_before_free = c.errs;
	for (int i = 0; i < ndup; i++)
		close(dupfds[i]);
	CHECKF(harness_run_until(base, accepted_any, &zero, 2000),
	       "no connection accepted within 2 s after fds were freed");
	resume_ms = c.first_accept_ms - t0;
	failed_retries = c.errs_at_first_accept - errs_before_free;
	want_total = rep.completed;
	CHECKF(harness_run_until(base, accepted_all, &want_total, 5000),
	       "only %d of %d completed connections accepted", c.accepted,
	       want_total);
	harness_run_for(base, 50); /* duplicates would show here */
	/* when the next retry was due, from the fds' freeing */
	due_ms = (harness_is_reference() ? 0 : BACKOFF_MAX_MS) - since_err_ms;
	if (due_ms < 0)
		due_ms = 0;
	printf("resumed after %lld ms (the last error callback was %lld ms "
	       "before the fds were freed, so a retry was due within %lld ms; "
	       "%d failed retries after); %d accepted\n", resume_ms,
	       since_err_ms, due_ms, failed_retries, c.accepted);
	CHECKF(failed_retries == 0, "%d retries failed after the fds were "
	       "freed", failed_retries);
	CHECKF(resume_ms - due_ms <= SCHED_SLACK_MS, "accepting resumed %lld ms "
	       "after the fds were freed, %lld ms after a retry was due (limit "
	       "%d ms)", resume_ms, resume_ms - due_ms, SCHED_SLACK_MS);
	rel_set_nofile(saved);

	harness_phase("every completed connection accepted exactly once");
	for (int i = 0; i < rep.completed; i++)
		want[rep.ports[i]]++;
	for (int p = 0; p < 65536; p++) {
		if (c.seen[p] < want[p])
			missed += want[p] - c.seen[p];
		else if (c.seen[p] > want[p])
			dups += c.seen[p] - want[p];
	}
	printf("%d completed, %d refused by the kernel, %d accepted, %d missed, "
	       "%d duplicated\n", rep.completed, rep.failed, c.accepted, missed,
	       dups);
	CHECKF(!missed && !dups, "%d missed, %d duplicated", missed, dups);
	CHECKF(rep.failed == 0, "%d connects failed (first errno %d): the "
	       "backlog (%d) should hold the storm", rep.failed,
	       rep.first_errno, STORM + 200);
	CHECK_EQ(write(go[1], "C", 1), 1);
	CHECK_EQ(waitpid(pid, &status, 0), pid);
	CHECKF(WIFEXITED(status) && WEXITSTATUS(status) == 0,
	       "client process status %#x", status);
	close(go[1]);
	close(res[0]);

	armed_before_setrlimit(base, lev, &sin);

	harness_phase("fd count back at baseline");
	evconnlistener_free(lev);
	event_base_free(base);
	CHECK_EQ(harness_fd_count(), baseline);

	error_unlock();
	CHECK_EQ(harness_fd_count(), baseline);
	printf("PASS\n");
	return 0;
}
