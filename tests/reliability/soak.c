/*
 * evu-soak: a bounded soak of evuring's listener. Client threads connect
 * over loopback without pause; the accept callback writes one byte to each
 * connection and closes it; the listener is freed and re-created on the
 * same port every --churn connections. Reports fd count and RSS
 * (/proc/self/statm) at start, middle and end, and connections accepted vs
 * made, and exits non-zero if
 *   - a connection the clients saw delivered was not accepted exactly once
 *     (accepted != delivered), or one is unaccounted for (completed !=
 *     delivered + dropped; "dropped" are connections reset because their
 *     listener was freed with them in its queue, the kernel's doing),
 *   - the fd count at the end differs from the start,
 *   - RSS grew by more than --max-rss-growth-kb (default 4096) from the
 *     middle to the end (the start is taken after warm-up).
 *
 *   evu-soak [--seconds N] [--connections N] [--churn K] [--threads T]
 *            [--max-rss-growth-kb KB]
 * The fd counts at start and middle include the client threads' open
 * sockets; the leak check compares the count before the clients started
 * with the count after they stopped.
 * Defaults: 3 seconds, no connection bound, churn 500, 2 client threads.
 * By hand: evu-soak --connections 1000000 (stops at whichever bound first;
 * --seconds 0 means no time bound).
 */
#include "rel_common.h"

#include <getopt.h>

static struct event_base *base;
static struct evconnlistener *lev;
static struct sockaddr_in target;
static long churn = 500, since_churn, accepted, recreated, max_conns;
static atomic_long completed, delivered, dropped, silent, refused, connect_fail, stuck, made;
static atomic_int first_connect_errno;
static atomic_int stop, clients_done;

static void acc_cb(struct evconnlistener *, evutil_socket_t, struct sockaddr *,
		   int, void *);

static void make_listener(void)
{
	lev = evconnlistener_new_bind(base, acc_cb, NULL,
				      LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE,
				      512, (struct sockaddr *)&target, sizeof target);
	CHECKF(lev != NULL, "listener on port %u: %s", ntohs(target.sin_port),
	       strerror(errno));
}

/* Free and re-create on the same port. Not from inside the accept callback:
 * there (libevent and evuring alike) the listener lives until the callback
 * returns, so its socket still holds the port. */
static void churn_cb(evutil_socket_t fd, short what, void *arg)
{
	since_churn = 0;
	evconnlistener_free(lev);
	make_listener();
	recreated++;
}

static void acc_cb(struct evconnlistener *l, evutil_socket_t fd,
		   struct sockaddr *sa, int socklen, void *arg)
{
	rel_serve_and_close(fd, 'x');
	accepted++;
	if (++since_churn == churn) /* outside the callback: see churn_cb */
		event_base_once(base, -1, EV_TIMEOUT, churn_cb, NULL, NULL);
}

static void *client(void *arg)
{
	while (!atomic_load(&stop)) {
		int fd, probed = 0;
		struct pollfd p;
		char ch;
		ssize_t r;
		if (max_conns && atomic_fetch_add(&made, 1) >= max_conns)
			break;
		fd = harness_try_connect((struct sockaddr *)&target, sizeof target);
		if (fd < 0) {
			/* no listener on the port, or it went away mid-handshake */
			if (errno == ECONNREFUSED || errno == ECONNRESET) {
				atomic_fetch_add(&refused, 1);
			} else {
				int zero = 0;
				atomic_compare_exchange_strong(&first_connect_errno,
							       &zero, errno);
				atomic_fetch_add(&connect_fail, 1);
			}
			continue;
		}
		atomic_fetch_add(&completed, 1);
		p.fd = fd;
		p.events = POLLIN;
		if (poll(&p, 1, 1000) <= 0) {
			/* The kernel may drop the server side of a handshake
			 * silently when its listener closes at that moment (see
			 * test_chaos.c): a byte then draws a RST. A server
			 * socket that still exists answers with an ACK. */
			probed = 1;
			if (send(fd, "p", 1, MSG_NOSIGNAL) == 1)
				(void)poll(&p, 1, 4000);
		}
		r = recv(fd, &ch, 1, MSG_DONTWAIT);
		if (r == 1) {
			atomic_fetch_add(&delivered, 1);
		} else if (r == 0 || errno == ECONNRESET) {
			/* reset because the listener was freed with it queued */
			atomic_fetch_add(&dropped, 1);
			if (probed)
				atomic_fetch_add(&silent, 1);
		} else {
			atomic_fetch_add(&stuck, 1);
		}
		close(fd);
	}
	atomic_fetch_add(&clients_done, 1);
	return NULL;
}

static int clients_finished(void *arg)
{
	return atomic_load(&clients_done) == *(int *)arg;
}

static void report(const char *when, int fds, long rss)
{
	printf("%-6s fds %d, RSS %ld KiB; accepted %ld; clients: completed %ld, "
	       "delivered %ld, dropped %ld (%ld silently by the kernel), stuck "
	       "%ld, refused %ld, connect errors %ld; listeners re-created %ld\n",
	       when, fds, rss, accepted, atomic_load(&completed),
	       atomic_load(&delivered), atomic_load(&dropped), atomic_load(&silent),
	       atomic_load(&stuck), atomic_load(&refused),
	       atomic_load(&connect_fail), recreated);
}

static int done_cb(void *arg)
{
	long long *end = arg;
	if (max_conns && accepted + atomic_load(&dropped) >= max_conns)
		return 1;
	return *end && harness_now_ms() >= *end;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{"seconds", required_argument, NULL, 's'},
		{"connections", required_argument, NULL, 'c'},
		{"churn", required_argument, NULL, 'k'},
		{"threads", required_argument, NULL, 't'},
		{"max-rss-growth-kb", required_argument, NULL, 'r'},
		{NULL, 0, NULL, 0}};
	long seconds = 3, max_growth = 4096;
	int nthreads = 2, o, fds0, fds_mid, fds_end, fds_idle, ok = 1;
	long rss0, rss_mid, rss_end;
	long long end, mid, half;
	pthread_t tids[16];
	struct sockaddr_storage ss;

	while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (o) {
		case 's': seconds = atol(optarg); break;
		case 'c': max_conns = atol(optarg); break;
		case 'k': churn = atol(optarg) > 0 ? atol(optarg) : 1; break;
		case 't': nthreads = atoi(optarg); break;
		case 'r': max_growth = atol(optarg); break;
		default:
			fprintf(stderr, "usage: %s [--seconds N] [--connections N] "
				"[--churn K] [--threads T] [--max-rss-growth-kb KB]\n",
				argv[0]);
			return 2;
		}
	}
	if (nthreads < 1 || nthreads > 16)
		nthreads = 2;
	if (!seconds && !max_conns)
		seconds = 3;
	/* the watchdog: generous for long runs, never unbounded */
	if (!getenv("EVU_TEST_TIMEOUT")) {
		char buf[32];
		snprintf(buf, sizeof buf, "%ld", seconds ? seconds * 3 + 30 : 86400);
		setenv("EVU_TEST_TIMEOUT", buf, 1);
	}
	harness_init("soak");
	printf("soak: %ld s, %ld connections max, churn every %ld, %d client "
	       "threads\n", seconds, max_conns, churn, nthreads);
	base = harness_base();
	target = harness_sin("127.0.0.1", 0);
	make_listener();
	harness_check_backend(lev);
	harness_sockname(evconnlistener_get_fd(lev), &ss);
	memcpy(&target, &ss, sizeof target);

	fds_idle = harness_fd_count(); /* no client socket open yet */
	/* warm-up: a full churn cycle before the start sample */
	for (int i = 0; i < nthreads; i++)
		CHECK(pthread_create(&tids[i], NULL, client, NULL) == 0);
	{
		long warm = churn + 1;
		while (accepted < warm && (!max_conns || accepted < max_conns)) {
			event_base_loop(base, EVLOOP_ONCE);
			harness_watchdog_reset();
		}
	}
	fds0 = harness_fd_count();
	rss0 = rel_rss_kb();
	report("start", fds0, rss0);
	end = seconds ? harness_now_ms() + seconds * 1000 : 0;
	half = seconds ? harness_now_ms() + seconds * 500 : 0;
	mid = 0;
	fds_mid = fds0;
	rss_mid = rss0;
	while (!done_cb(&end)) {
		harness_run_until(base, done_cb, &end, 500);
		harness_watchdog_reset();
		if (!mid && ((half && harness_now_ms() >= half) ||
			     (!half && max_conns && accepted >= max_conns / 2))) {
			mid = 1;
			fds_mid = harness_fd_count();
			rss_mid = rel_rss_kb();
			report("middle", fds_mid, rss_mid);
		}
	}
	atomic_store(&stop, 1);
	/* serve the clients' last connections until they have stopped */
	CHECKF(harness_run_until(base, clients_finished, &nthreads, 15000),
	       "client threads did not stop");
	for (int i = 0; i < nthreads; i++)
		rel_join_within(tids[i], 10000, "client thread");
	harness_run_for(base, 20);
	fds_end = harness_fd_count();
	rss_end = rel_rss_kb();
	report("end", fds_end, rss_end);
	if (!mid) {
		fds_mid = fds_end;
		rss_mid = rss0;
	}

	if (accepted != atomic_load(&delivered)) {
		printf("FAIL: %ld accepted, but clients saw %ld delivered\n",
		       accepted, atomic_load(&delivered));
		ok = 0;
	}
	if (atomic_load(&completed) != atomic_load(&delivered) +
					       atomic_load(&dropped) + atomic_load(&stuck)) {
		printf("FAIL: completed %ld != delivered + dropped + stuck\n",
		       atomic_load(&completed));
		ok = 0;
	}
	if (atomic_load(&stuck)) {
		printf("FAIL: %ld connections neither delivered nor reset within 5 s\n",
		       atomic_load(&stuck));
		ok = 0;
	}
	if (atomic_load(&connect_fail)) {
		printf("FAIL: %ld connects failed (first errno %d: %s)\n",
		       atomic_load(&connect_fail), atomic_load(&first_connect_errno),
		       strerror(atomic_load(&first_connect_errno)));
		ok = 0;
	}
	if (fds_end != fds_idle) {
		printf("FAIL: fd count %d before the clients started, %d after they "
		       "stopped\n", fds_idle, fds_end);
		ok = 0;
	}
	if (rss_end - rss_mid > max_growth) {
		printf("FAIL: RSS grew %ld KiB from the middle to the end (bound %ld)\n",
		       rss_end - rss_mid, max_growth);
		ok = 0;
	}
	evconnlistener_free(lev);
	event_base_free(base);
	printf("%s: %ld connections accepted, %ld listeners re-created, RSS "
	       "%+ld KiB start->end\n", ok ? "PASS" : "FAIL", accepted, recreated,
	       rss_end - rss0);
	return ok ? 0 : 1;
}
