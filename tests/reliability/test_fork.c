/*
 * fork: a prefork server. The parent has two listeners on one base, A and
 * B, both accepting (so on the io_uring backend the base's ring exists and
 * has armed requests). The parent disables A, then forks.
 * Child: event_reinit(base); frees its copy of B (the parent's B must not
 * notice: on io_uring, the child must neither cancel the parent's request
 * nor reap the parent's completions from the shared CQ memory), enables A
 * and accepts on it. In the evuring build on io_uring the child must not
 * use the parent's ring: after its accepts, the parent's ring fd is closed
 * in the child and the child holds exactly one ring of its own.
 * Parent meanwhile: runs its loop, keeps accepting on B, and acts as the
 * client: connections to A must be served by the child (the byte says who
 * served), connections to B by the parent, each exactly once.
 * Afterwards the parent (unaffected) enables A and accepts on both again;
 * everything freed, fd count back at its baseline.
 */
#include "rel_common.h"

#define N_CHILD 20
#define N_PARENT 20

struct lctx {
	char tag;
	int calls;
	unsigned short seen[65536];
};

static struct lctx ca = {'P', 0, {0}}, cb = {'P', 0, {0}};

static void acc_cb(struct evconnlistener *lev, evutil_socket_t fd,
		   struct sockaddr *sa, int socklen, void *arg)
{
	struct lctx *c = arg;
	c->seen[harness_port(sa)]++;
	c->calls++;
	rel_serve_and_close(fd, c->tag);
}

static int got_tag(int fd)
{
	struct pollfd p = {fd, POLLIN, 0};
	char ch;
	return poll(&p, 1, 3000) > 0 && recv(fd, &ch, 1, 0) == 1 && ch == 'P';
}

struct want { int *calls; int n; };
static int reach(void *arg)
{
	struct want *w = arg;
	return *w->calls >= w->n;
}

/* Client thread of the parent: connect, expect the server's tag byte. */
struct cl {
	struct sockaddr_in sin;
	int n;
	char expect;
	int ok, wrong, failed;
	uint16_t ports[64];
	atomic_int done;
};

static void *client_thread(void *arg)
{
	struct cl *c = arg;
	for (int i = 0; i < c->n; i++) {
		int fd = harness_try_connect((struct sockaddr *)&c->sin, sizeof c->sin);
		struct pollfd p;
		char ch = 0;
		if (fd < 0) {
			c->failed++;
			continue;
		}
		c->ports[i] = rel_local_port(fd);
		p.fd = fd;
		p.events = POLLIN;
		if (poll(&p, 1, 5000) > 0 && recv(fd, &ch, 1, 0) == 1) {
			if (ch == c->expect)
				c->ok++;
			else
				c->wrong++;
		}
		else
			c->failed++;
		close(fd);
	}
	atomic_store(&c->done, 1);
	return NULL;
}

static int both_done(void *arg)
{
	struct cl *c = arg;
	return atomic_load(&c[0].done) && atomic_load(&c[1].done);
}

static int child_main(struct event_base *base, struct evconnlistener *a,
		      struct evconnlistener *b, int parent_ring, int ready_fd)
{
	struct want w = {&ca.calls, N_CHILD};
	int rings[8], nrings, parent_held;

	alarm(20);
	ca.tag = 'C';
	ca.calls = 0;
	cb.tag = 'X'; /* the child must never serve B */
	CHECK(event_reinit(base) == 0);
	evconnlistener_free(b);
	CHECKF(evconnlistener_enable(a) == 0, "child: evconnlistener_enable "
	       "after event_reinit failed: %s", strerror(errno));
	CHECK_EQ(write(ready_fd, "R", 1), 1);
	CHECKF(harness_run_until(base, reach, &w, 10000),
	       "child accepted %d of %d on A", ca.calls, N_CHILD);
	nrings = rel_uring_fds(rings, 8);
	/* The child's own ring may take the number the parent's had here:
	 * ask the kernel whether an io_uring fd is the parent's. */
	parent_held = 0;
	for (int i = 0; i < nrings && i < 8 && parent_ring >= 0; i++) {
		int same = rel_same_file_as_parent(rings[i], parent_ring);

		if (same < 0)
			parent_held = -1; /* cannot tell */
		else if (same)
			parent_held = 1;
	}
	printf("child: %d accepted on A; %d io_uring fd(s); the parent's ring %s\n",
	       ca.calls, nrings,
	       parent_ring < 0 ? "(none)" : parent_held > 0 ? "still open in the child"
			       : parent_held < 0 ? "(kcmp unavailable: not checked)"
						 : "closed in the child");
#ifndef EVU_TEST_REFERENCE
	if (evuring_listener_backend(a) == EVURING_BACKEND_URING) {
		CHECKF(parent_ring >= 0, "parent had no ring");
		CHECKF(parent_held <= 0, "the child still holds the parent's ring (fd %d in "
		       "the parent) after accepting", parent_ring);
		CHECKF(nrings == 1, "the child holds %d rings, expected its own one",
		       nrings);
	}
#endif
	evconnlistener_free(a);
	event_base_free(base);
	fflush(stdout);
	return 0;
}

int main(void)
{
	struct event_base *base;
	struct evconnlistener *a, *b;
	struct sockaddr_in sa, sb;
	static struct cl cls[2];
	pthread_t tids[2];
	int baseline, status, ready[2], rings[8], nrings, parent_ring = -1;
	struct want w;
	pid_t pid;
	char ch;

	harness_init("fork");
	baseline = harness_fd_count();
	base = harness_base();
	a = harness_listen_ipv4(base, acc_cb, &ca, LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE,
				128, &sa);
	b = harness_listen_ipv4(base, acc_cb, &cb, LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE,
				128, &sb);

	harness_phase("parent accepts on A and B before the fork");
	for (int i = 0; i < 2; i++) {
		int fd = harness_connect((struct sockaddr *)(i ? &sb : &sa), sizeof sa, 0, NULL);
		w.calls = i ? &cb.calls : &ca.calls;
		w.n = 1;
		CHECK(harness_run_until(base, reach, &w, 3000));
		close(fd);
	}
	nrings = rel_uring_fds(rings, 8);
	if (nrings == 1)
		parent_ring = rings[0];
	printf("parent: %d io_uring fd(s) before fork%s\n", nrings,
	       nrings == 1 ? "" : " (no single ring to follow)");
	CHECK_EQ(evconnlistener_disable(a), 0);
	harness_run_for(base, 10);

	harness_phase("fork: child accepts on A, parent keeps accepting on B");
	REQUIRE_SYS(pipe2(ready, O_CLOEXEC));
	fflush(stdout);
	pid = fork();
	REQUIRE_SYS(pid);
	if (pid == 0) {
		close(ready[0]);
		_exit(child_main(base, a, b, parent_ring, ready[1]));
	}
	close(ready[1]);
	CHECKF(read(ready[0], &ch, 1) == 1, "child did not get ready");
	close(ready[0]);
	cls[0].sin = sa;
	cls[0].n = N_CHILD;
	cls[0].expect = 'C';
	cls[1].sin = sb;
	cls[1].n = N_PARENT;
	cls[1].expect = 'P';
	ca.calls = cb.calls = 0;
	for (int i = 0; i < 2; i++)
		CHECK(pthread_create(&tids[i], NULL, client_thread, &cls[i]) == 0);
	CHECKF(harness_run_until(base, both_done, cls, 15000), "clients not done");
	for (int i = 0; i < 2; i++)
		rel_join_within(tids[i], 5000, "client thread");
	CHECK_EQ(waitpid(pid, &status, 0), pid);
	printf("A (child): %d served by the child, %d by someone else, %d failed; "
	       "B (parent): %d served by the parent, %d by someone else, %d failed; "
	       "parent A callbacks %d, B callbacks %d\n",
	       cls[0].ok, cls[0].wrong, cls[0].failed, cls[1].ok, cls[1].wrong,
	       cls[1].failed, ca.calls, cb.calls);
	CHECKF(WIFEXITED(status) && WEXITSTATUS(status) == 0,
	       "child failed (status %#x)", status);
	CHECKF(cls[0].ok == N_CHILD && cls[0].wrong == 0 && cls[0].failed == 0,
	       "connections to A: the child must serve all %d", N_CHILD);
	CHECKF(ca.calls == 0, "the parent's disabled A accepted %d", ca.calls);
	CHECKF(cls[1].ok == N_PARENT && cls[1].wrong == 0 && cls[1].failed == 0,
	       "connections to B: the parent must serve all %d", N_PARENT);
	for (int i = 0; i < N_PARENT; i++)
		CHECKF(cb.seen[cls[1].ports[i]] == 1, "B: client port %u seen %d "
		       "times", cls[1].ports[i], cb.seen[cls[1].ports[i]]);
	CHECK_EQ(cb.calls, N_PARENT);

	harness_phase("parent unaffected: enables A, accepts on A and B");
	CHECK_EQ(evconnlistener_enable(a), 0);
	ca.calls = cb.calls = 0;
	for (int i = 0; i < 10; i++) {
		int fd = harness_connect((struct sockaddr *)(i & 1 ? &sb : &sa),
					 sizeof sa, 0, NULL);
		int *calls = i & 1 ? &cb.calls : &ca.calls;
		w.calls = calls;
		w.n = *calls + 1;
		CHECKF(harness_run_until(base, reach, &w, 3000),
		       "parent: connection %d to %s not accepted after the child "
		       "exited", i, i & 1 ? "B" : "A");
		CHECKF(got_tag(fd), "no byte from the parent");
		close(fd);
	}

	harness_phase("fd count back at baseline");
	evconnlistener_free(a);
	evconnlistener_free(b);
	event_base_free(base);
	CHECK_EQ(harness_fd_count(), baseline);
	printf("PASS\n");
	return 0;
}
