/*
 * chaos: 10,000 random enable / disable / free / re-create operations (plus
 * some disables and frees from inside the accept callback) on three
 * listeners, while four client threads keep connecting to them.
 *
 * Protocol: the accept callback writes one byte to each connection it is
 * handed, then closes it. Every client connection ends in one of:
 *   delivered  the client read the byte: the callback got it;
 *   dropped    connected, then EOF or RST without the byte: legitimate only
 *              if its listener was freed meanwhile (a listening socket
 *              closed with connections in its accept queue resets them;
 *              evuring closes fds the kernel accepted during the cancel);
 *   refused    connect() failed with ECONNREFUSED/ECONNRESET: legitimate
 *              only if its listener was freed (no socket on the port) at
 *              some point between the connect and the refusal;
 *   stuck      connected, but neither byte nor close within 8 s: a lost
 *              connection (failure). A connection that got nothing for 1 s
 *              is probed with one byte: the kernel can drop the server side
 *              of a handshake silently when its listener closes at the same
 *              moment (tcp_v4_syn_recv_sock fails to inherit the closed
 *              listener's port: the final ACK is discarded, no RST; seen
 *              with libevent's own listener too). The probe then draws a
 *              RST and the connection counts as dropped (with the same
 *              generation check). A server socket that still exists
 *              somewhere (leaked, or queued and never delivered) answers
 *              the probe with an ACK instead and stays stuck;
 *   connect-error  anything else (failure).
 * "Freed meanwhile" is decided with a per-port generation counter: odd while
 * no listener exists, incremented before evconnlistener_free() and after a
 * re-create; a drop or refusal whose generation did not change since before
 * connect() is a failure. The test therefore cannot pass by losing
 * connections, and does not fail on the kernel's legitimate resets.
 *
 * Asserts: every delivered connection was handed to the callback exactly
 * once (per client port, server count == client count); no unexplained drop
 * or refusal; nothing stuck; no callback on a listener whose disable or free
 * had returned (state checked in the callback); no accept errors; a freed
 * CLOSE_ON_FREE listener releases its port (re-create never gets
 * EADDRINUSE); the fd count returns exactly to its baseline.
 *
 * Seed: fixed (printed); EVU_CHAOS_SEED=<n> overrides, EVU_CHAOS_OPS=<n>
 * changes the number of operations.
 */
#include "rel_common.h"

#define NSLOTS 3
#define NCLIENTS 4
#define BATCH 8            /* connections in flight per client thread */
#define MAX_CONNS 60000    /* bound on the storm */
#define CLIENT_WAIT_MS 8000
#define PROBE_MS 1000       /* connected, nothing received: probe the server side */
#define BACKLOG 256        /* > NCLIENTS * BATCH: the accept queue never overflows */

enum { ST_DISABLED = 0, ST_ENABLED = 1, ST_FREED = 2 };

struct inst {                  /* one created listener */
	struct evconnlistener *lev;
	int slot;
	int state;             /* loop thread only */
	struct inst *next;
};

struct slot {
	struct inst *cur;      /* NULL while freed */
	struct sockaddr_in sin;
	atomic_int gen;        /* odd: no listener on the port */
};

static struct slot slots[NSLOTS];
static struct inst *all_insts;
static struct event_base *base;
static uint64_t op_rng;

/* server side (loop thread) */
static unsigned short server_seen[65536];
static long server_accepted, late_calls, wrong_lev, accept_errors;
static long ops_done, op_counts[6], cb_ops, bind_failures, creates;

/* client side */
static atomic_ushort client_delivered[65536];
static atomic_long outcomes[REL_NOUTCOMES];
static atomic_long unexplained_drop, unexplained_refuse;
static atomic_int conns_started, clients_done, stop_clients;
static atomic_int first_bad_errno;
static atomic_long self_connects, probes, silent_drops;

static void acc_cb(struct evconnlistener *, evutil_socket_t, struct sockaddr *,
		   int, void *);

static void err_cb(struct evconnlistener *lev, void *arg)
{
	int e = EVUTIL_SOCKET_ERROR();
	accept_errors++;
	fprintf(stderr, "accept error on slot %d: %s\n", ((struct inst *)arg)->slot,
		strerror(e));
}

static void slot_create(int s)
{
	struct slot *sl = &slots[s];
	struct inst *in = calloc(1, sizeof *in);
	unsigned flags = LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE;
	int disabled = rel_rand_below(&op_rng, 4) == 0;

	CHECK(in != NULL);
	if (disabled)
		flags |= LEV_OPT_DISABLED;
	in->slot = s;
	in->state = disabled ? ST_DISABLED : ST_ENABLED;
	in->lev = evconnlistener_new_bind(base, acc_cb, in, flags, BACKLOG,
					  (struct sockaddr *)&sl->sin,
					  sizeof sl->sin);
	if (!in->lev) {
		int e = errno;
		free(in);
		bind_failures++;
		CHECKF(e == EADDRINUSE, "re-create on port %d: %s",
		       ntohs(sl->sin.sin_port), strerror(e));
		return;
	}
	harness_check_backend(in->lev);
	evconnlistener_set_error_cb(in->lev, err_cb);
	in->next = all_insts;
	all_insts = in;
	sl->cur = in;
	creates++;
	atomic_fetch_add(&sl->gen, 1); /* even: a listener exists */
}

static void slot_free(int s)
{
	struct slot *sl = &slots[s];
	struct inst *in = sl->cur;
	atomic_fetch_add(&sl->gen, 1); /* odd, before anything is closed */
	sl->cur = NULL;
	evconnlistener_free(in->lev);
	in->state = ST_FREED; /* from here on, no callback may run */
	in->lev = NULL;
}

static void slot_enable(int s)
{
	struct inst *in = slots[s].cur;
	in->state = ST_ENABLED; /* callbacks may run once enable is called */
	CHECK_EQ(evconnlistener_enable(in->lev), 0);
}

static void slot_disable(int s)
{
	struct inst *in = slots[s].cur;
	CHECK_EQ(evconnlistener_disable(in->lev), 0);
	in->state = ST_DISABLED;
}

static void acc_cb(struct evconnlistener *lev, evutil_socket_t fd,
		   struct sockaddr *sa, int socklen, void *arg)
{
	struct inst *in = arg;
	if (in->state != ST_ENABLED)
		late_calls++;
	if (in->lev != lev)
		wrong_lev++;
	CHECK(socklen > 0 && sa->sa_family == AF_INET);
	server_seen[harness_port(sa)]++;
	server_accepted++;
	rel_serve_and_close(fd, 'x');
	/* now and then: disable or free from inside the callback */
	if (!atomic_load(&stop_clients) && slots[in->slot].cur == in) {
		unsigned r = rel_rand_below(&op_rng, 64);
		if (r == 0) {
			slot_disable(in->slot);
			cb_ops++;
		} else if (r == 1) {
			slot_free(in->slot);
			cb_ops++;
		}
	}
}

/* One random operation from the loop thread, between loop iterations. */
static void random_op(void)
{
	int s = (int)rel_rand_below(&op_rng, NSLOTS);
	unsigned r = rel_rand_below(&op_rng, 100);
	struct slot *sl = &slots[s];

	if (!sl->cur) {
		slot_create(s);
		op_counts[3]++;
	} else if (r < 35) {
		slot_enable(s);
		op_counts[0]++;
	} else if (r < 70) {
		slot_disable(s);
		op_counts[1]++;
	} else if (r < 85) {
		slot_free(s);
		op_counts[2]++;
	} else {
		/* free and re-create at once on the same port */
		slot_free(s);
		slot_create(s);
		op_counts[4]++;
	}
	ops_done++;
}

/* ---- clients ------------------------------------------------------------ */

struct pending {
	int fd, slot, gen_before, connected, probed;
	long long connected_at;
	uint16_t port;
};

static void classify(struct pending *p, enum rel_outcome o, int err)
{
	int gen_after = atomic_load(&slots[p->slot].gen);
	atomic_fetch_add(&outcomes[o], 1);
	if (o == REL_DELIVERED) {
		atomic_fetch_add(&client_delivered[p->port], 1);
	} else if (o == REL_DROPPED || o == REL_REFUSED) {
		/* legitimate only if the port had no listener at some point */
		if (gen_after == p->gen_before && !(p->gen_before & 1)) {
			if (o == REL_DROPPED)
				atomic_fetch_add(&unexplained_drop, 1);
			else
				atomic_fetch_add(&unexplained_refuse, 1);
			fprintf(stderr, "unexplained %s: slot %d port %u gen %d "
				"(listener alive throughout), errno %d\n",
				rel_outcome_names[o], p->slot, p->port, gen_after,
				err);
		}
	} else {
		int zero = 0;
		atomic_compare_exchange_strong(&first_bad_errno, &zero,
					       err ? err : -1);
		fprintf(stderr, "%s: slot %d port %u errno %d gen %d -> %d\n",
			rel_outcome_names[o], p->slot, p->port, err, p->gen_before, gen_after);
		if (getenv("EVU_CHAOS_DEBUG")) {
			char cmd[256];
			snprintf(cmd, sizeof cmd, "ss -tanoie '( sport = :%u or dport = :%u )' >&2", p->port, p->port);
			if (system(cmd)) {}
		}
	}
	if (p->fd >= 0)
		close(p->fd);
	p->fd = -1;
}

static void *client_thread(void *arg)
{
	uint64_t rng = (uint64_t)(uintptr_t)arg;
	struct pending pend[BATCH];

	while (!atomic_load(&stop_clients) &&
	       atomic_fetch_add(&conns_started, BATCH) < MAX_CONNS) {
		int left = 0;
		long long deadline = harness_now_ms() + CLIENT_WAIT_MS;

		for (int b = 0; b < BATCH; b++) {
			struct pending *p = &pend[b];
			struct slot *sl;
			p->slot = (int)rel_rand_below(&rng, NSLOTS);
			sl = &slots[p->slot];
			p->gen_before = atomic_load(&sl->gen);
			p->connected = 0;
			p->probed = 0;
			p->port = 0;
			p->fd = rel_connect_start((struct sockaddr *)&sl->sin,
						  sizeof sl->sin);
			if (p->fd < 0) {
				int e = errno;
				classify(p, e == ECONNREFUSED || e == ECONNRESET
						    ? REL_REFUSED : REL_CONNECT_ERROR, e);
				continue;
			}
			p->port = rel_local_port(p->fd);
			left++;
		}
		while (left > 0) {
			struct pollfd pfd[BATCH];
			int idx[BATCH], n = 0;
			long long now = harness_now_ms();

			for (int b = 0; b < BATCH; b++) {
				if (pend[b].fd < 0)
					continue;
				pfd[n].fd = pend[b].fd;
				pfd[n].events = pend[b].connected ? POLLIN : POLLOUT;
				pfd[n].revents = 0;
				idx[n++] = b;
			}
			if (now >= deadline) {
				for (int i = 0; i < n; i++)
					classify(&pend[idx[i]], pend[idx[i]].connected
						 ? REL_STUCK : REL_CONNECT_ERROR, ETIMEDOUT);
				break;
			}
			/* Probe connections that got nothing for PROBE_MS: the
			 * kernel may have dropped the server side silently (see
			 * the top of the file); then the byte draws a RST. */
			for (int i = 0; i < n; i++) {
				struct pending *p = &pend[idx[i]];
				if (p->connected && !p->probed &&
				    now - p->connected_at >= PROBE_MS) {
					p->probed = 1;
					atomic_fetch_add(&probes, 1);
					if (send(p->fd, "p", 1, MSG_NOSIGNAL | MSG_DONTWAIT) < 0)
						pfd[i].events |= POLLERR;
				}
			}
			if (poll(pfd, (nfds_t)n, (int)(deadline - now < PROBE_MS / 4
						       ? deadline - now : PROBE_MS / 4)) <= 0)
				continue;
			for (int i = 0; i < n; i++) {
				struct pending *p = &pend[idx[i]];
				if (!pfd[i].revents)
					continue;
				if (!p->connected) {
					int err = 0;
					socklen_t el = sizeof err;
					getsockopt(p->fd, SOL_SOCKET, SO_ERROR, &err, &el);
					if (err == EPIPE) {
						/* established, then FIN and RST before we
						 * looked (tcp_reset in CLOSE_WAIT sets EPIPE):
						 * dropped, legitimate only if the listener
						 * went away meanwhile (classify checks) */
						classify(p, REL_DROPPED, err);
						left--;
					} else if (err) {
						classify(p, err == ECONNREFUSED || err == ECONNRESET
							    ? REL_REFUSED : REL_CONNECT_ERROR, err);
						left--;
					} else if (p->port == ntohs(slots[p->slot].sin.sin_port)) {
						/* TCP self-connect: with no listener on
						 * the port, the kernel picked that very
						 * port as our local one. Only possible
						 * while the port has no listener. */
						atomic_fetch_add(&self_connects, 1);
						classify(p, REL_REFUSED, 0);
						left--;
					} else {
						p->connected = 1;
						p->connected_at = harness_now_ms();
					}
					continue;
				}
				{
					char ch;
					ssize_t r = recv(p->fd, &ch, 1, MSG_DONTWAIT);
					if (r == 1 && ch == 'x') {
						classify(p, REL_DELIVERED, 0);
					} else if (r == 0 || (r < 0 && (errno == ECONNRESET ||
									errno == EPIPE))) {
						if (p->probed)
							atomic_fetch_add(&silent_drops, 1);
						classify(p, REL_DROPPED, r == 0 ? 0 : errno);
					} else if (r < 0 && (errno == EAGAIN || errno == EINTR)) {
						continue;
					} else {
						classify(p, REL_CONNECT_ERROR, r < 0 ? errno : 0);
					}
					left--;
				}
			}
		}
	}
	atomic_fetch_add(&clients_done, 1);
	return NULL;
}

static int clients_finished(void *arg)
{
	return atomic_load(&clients_done) == NCLIENTS;
}

/* A free port below the ephemeral range: while a slot has no listener, a
 * client (ours or anyone's) must not take its port as a local port, and
 * a connect to it cannot self-connect. 0 (any port) if none is found. */
static uint16_t pick_port(int s)
{
	int lo = 32768, hi = 60999;
	FILE *f = fopen("/proc/sys/net/ipv4/ip_local_port_range", "r");
	if (f) {
		if (fscanf(f, "%d %d", &lo, &hi) != 2)
			lo = 32768;
		fclose(f);
	}
	for (int tries = 0; tries < 200 && lo > 2048; tries++) {
		uint16_t port = (uint16_t)(1024 + (getpid() * 7 + s * 997 +
						   tries * 131) % (lo - 1024));
		struct sockaddr_in sin = harness_sin("127.0.0.1", port);
		int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), ok;
		int one = 1;
		REQUIRE_SYS(fd);
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
		ok = bind(fd, (struct sockaddr *)&sin, sizeof sin) == 0;
		close(fd);
		if (ok)
			return port;
	}
	return 0;
}

static void noop_cb(evutil_socket_t fd, short what, void *arg)
{
}

int main(void)
{
	uint64_t seed = (uint64_t)rel_env_long("EVU_CHAOS_SEED", 20240611);
	long nops = rel_env_long("EVU_CHAOS_OPS", 10000);
	pthread_t tids[NCLIENTS];
	struct event *tick;
	struct timeval tv = {0, 200};
	int baseline, missed = 0, dups = 0;
	long long t0;

	harness_init("chaos");
	printf("seed %llu (EVU_CHAOS_SEED overrides), %ld operations\n",
	       (unsigned long long)seed, nops);
	op_rng = seed;
	baseline = harness_fd_count();
	base = harness_base();
	tick = evtimer_new(base, noop_cb, NULL);
	CHECK(tick != NULL);

	for (int s = 0; s < NSLOTS; s++) {
		struct sockaddr_storage ss;
		slots[s].sin = harness_sin("127.0.0.1", pick_port(s));
		atomic_store(&slots[s].gen, -1);
		slot_create(s);
		CHECK(slots[s].cur != NULL);
		harness_sockname(evconnlistener_get_fd(slots[s].cur->lev), &ss);
		memcpy(&slots[s].sin, &ss, sizeof slots[s].sin);
	}

	harness_phase("random operations during the storm");
	t0 = harness_now_ms();
	for (int i = 0; i < NCLIENTS; i++)
		CHECK(pthread_create(&tids[i], NULL, client_thread,
				     (void *)(uintptr_t)(seed * 31 + (uint64_t)i + 1)) == 0);
	for (long i = 0; i < nops; i++) {
		random_op();
		event_base_loop(base, EVLOOP_NONBLOCK);
		if (rel_rand_below(&op_rng, 4) == 0) {
			CHECK(evtimer_add(tick, &tv) == 0);
			event_base_loop(base, EVLOOP_ONCE);
			evtimer_del(tick);
		}
		if (i % 1000 == 0)
			harness_watchdog_reset();
	}
	printf("%ld ops in %lld ms (enable %ld, disable %ld, free %ld, "
	       "create %ld, free+create %ld; %ld from callbacks), %d client "
	       "connections started\n", ops_done, harness_now_ms() - t0,
	       op_counts[0], op_counts[1], op_counts[2], op_counts[3],
	       op_counts[4], cb_ops, atomic_load(&conns_started));

	harness_phase("drain: every listener enabled until the clients finish");
	atomic_store(&stop_clients, 1);
	for (int s = 0; s < NSLOTS; s++) {
		if (!slots[s].cur)
			slot_create(s);
		CHECKF(slots[s].cur != NULL, "slot %d cannot be re-created", s);
		slot_enable(s);
	}
	CHECKF(harness_run_until(base, clients_finished, NULL, CLIENT_WAIT_MS + 4000),
	       "clients not finished: %d of %d", atomic_load(&clients_done),
	       NCLIENTS);
	harness_run_for(base, 50); /* late duplicates would show here */
	for (int i = 0; i < NCLIENTS; i++)
		rel_join_within(tids[i], 5000, "client thread");

	harness_phase("accounting");
	for (int p = 0; p < 65536; p++) {
		int want = atomic_load(&client_delivered[p]), got = server_seen[p];
		if (got < want)
			missed += want - got;
		else if (got > want)
			dups += got - want;
	}
	printf("clients: delivered %ld, dropped %ld, refused %ld, connect-error "
	       "%ld, stuck %ld; server accepted %ld; %ld listeners created; "
	       "missed %d, duplicated %d; late callbacks %ld; accept errors %ld; "
	       "EADDRINUSE on re-create %ld; self-connects %ld; probes %ld, "
	       "dropped silently by the kernel %ld\n",
	       atomic_load(&outcomes[REL_DELIVERED]), atomic_load(&outcomes[REL_DROPPED]),
	       atomic_load(&outcomes[REL_REFUSED]),
	       atomic_load(&outcomes[REL_CONNECT_ERROR]),
	       atomic_load(&outcomes[REL_STUCK]), server_accepted, creates, missed,
	       dups, late_calls, accept_errors, bind_failures,
	       atomic_load(&self_connects), atomic_load(&probes),
	       atomic_load(&silent_drops));
	CHECKF(late_calls == 0, "%ld callbacks on a disabled or freed listener",
	       late_calls);
	CHECK_EQ(wrong_lev, 0);
	CHECKF(atomic_load(&outcomes[REL_STUCK]) == 0,
	       "%ld connections neither delivered nor closed within %d ms",
	       atomic_load(&outcomes[REL_STUCK]), CLIENT_WAIT_MS);
	CHECKF(atomic_load(&outcomes[REL_CONNECT_ERROR]) == 0,
	       "%ld connections failed unexpectedly (first errno %d)",
	       atomic_load(&outcomes[REL_CONNECT_ERROR]),
	       atomic_load(&first_bad_errno));
	CHECKF(atomic_load(&unexplained_drop) == 0 &&
		       atomic_load(&unexplained_refuse) == 0,
	       "%ld dropped and %ld refused while their listener was alive",
	       atomic_load(&unexplained_drop), atomic_load(&unexplained_refuse));
	CHECKF(!missed && !dups, "%d delivered connections not seen by the "
	       "server, %d seen more often than delivered", missed, dups);
	CHECK_EQ(server_accepted, atomic_load(&outcomes[REL_DELIVERED]));
	CHECK_EQ(accept_errors, 0);
	CHECKF(bind_failures == 0, "%ld re-creates failed with EADDRINUSE: a "
	       "freed CLOSE_ON_FREE listener still held its port", bind_failures);
	/* the test itself: the storm really met the operations */
	CHECKF(atomic_load(&outcomes[REL_DELIVERED]) >= 1000,
	       "only %ld connections delivered", atomic_load(&outcomes[REL_DELIVERED]));
	CHECKF(op_counts[2] + op_counts[4] >= 500, "only %ld frees",
	       op_counts[2] + op_counts[4]);

	harness_phase("fd count back at baseline");
	for (int s = 0; s < NSLOTS; s++)
		slot_free(s);
	event_free(tick);
	event_base_free(base);
	CHECK_EQ(harness_fd_count(), baseline);
	while (all_insts) {
		struct inst *n = all_insts->next;
		free(all_insts);
		all_insts = n;
	}
	printf("PASS\n");
	return 0;
}
