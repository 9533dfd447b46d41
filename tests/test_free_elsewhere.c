/*
 * free_elsewhere: a program whose loop ran in a thread disables and frees
 * that loop's listeners from its main thread, as programs do at exit, once
 * the thread has ended or while it lives outside its loop. Neither may open
 * a descriptor: the main thread closes one listener's socket first, and that
 * fd number must stay closed (a descriptor opened meanwhile would take it,
 * and the program's own later close of the number would close that
 * descriptor instead); every fd open afterwards was open before, to the
 * same file; and the ports are free again once the listeners are freed: at
 * once if the loop thread has ended (libevent's listener: always at once).
 * A thread that lives outside its loop cannot complete its io_uring
 * requests, and a ring closed for it is torn down by the kernel a few
 * milliseconds later (5-8 ms measured on 6.18): there the port must be free
 * within 200 ms.
 */
#include "harness.h"

#include <unistd.h>

#define MAX_FDS 256

static int bind_errno;

struct snapshot {
	int n;
	int fd[MAX_FDS];
	char link[MAX_FDS][96];
};

static void snap(struct snapshot *s)
{
	s->n = 0;
	for (int fd = 0; fd < 1024 && s->n < MAX_FDS; fd++) {
		char path[64];
		ssize_t len;

		if (!harness_fd_is_open(fd))
			continue;
		snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
		len = readlink(path, s->link[s->n], sizeof s->link[0] - 1);
		s->link[s->n][len > 0 ? len : 0] = 0;
		s->fd[s->n++] = fd;
	}
}

/* Every fd of @p now is in @p before, to the same file. */
static void check_nothing_opened(const struct snapshot *before, const char *after_what)
{
	struct snapshot now;

	snap(&now);
	for (int i = 0; i < now.n; i++) {
		int found = 0;

		for (int j = 0; j < before->n && !found; j++)
			found = before->fd[j] == now.fd[i] && !strcmp(before->link[j], now.link[i]);
		CHECKF(found, "after %s, fd %d (%s) is open that was not before", after_what,
		       now.fd[i], now.link[i]);
	}
}

struct loop {
	struct event_base *base;
	struct evconnlistener *lev[2];
	int fd[2];
	struct sockaddr_in sin[2];
	int calls[2];
	atomic_int done, release;
	int stay_alive;
};

static void cb(struct evconnlistener *lev, evutil_socket_t fd, struct sockaddr *sa, int socklen,
	       void *arg)
{
	int *calls = arg;

	(void)lev;
	(void)sa;
	(void)socklen;
	(*calls)++;
	close(fd);
}

static int both(void *arg)
{
	struct loop *l = arg;

	return l->calls[0] >= 1 && l->calls[1] >= 1;
}

/* The loop thread: two listeners on its base, a connection to each. */
static void *loop_thread(void *arg)
{
	struct loop *l = arg;
	int c[2];

	l->base = harness_base();
	for (int i = 0; i < 2; i++) {
		struct sockaddr_in sin = harness_sin("127.0.0.1", 0);
		struct sockaddr_storage ss;
		int one = 1;

		l->fd[i] = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
		REQUIRE_SYS(l->fd[i]);
		/* the accepted connections' TIME_WAIT must not hold the port */
		REQUIRE_SYS(setsockopt(l->fd[i], SOL_SOCKET, SO_REUSEADDR, &one, sizeof one));
		REQUIRE_SYS(bind(l->fd[i], (struct sockaddr *)&sin, sizeof sin));
		harness_sockname(l->fd[i], &ss);
		memcpy(&l->sin[i], &ss, sizeof l->sin[i]);
		l->lev[i] = harness_new(l->base, cb, &l->calls[i], 0, -1, l->fd[i]);
	}
	for (int i = 0; i < 2; i++)
		c[i] = harness_connect((struct sockaddr *)&l->sin[i], sizeof l->sin[i], 0, NULL);
	CHECKF(harness_run_until(l->base, both, l, 3000), "accepted %d and %d", l->calls[0],
	       l->calls[1]);
	for (int i = 0; i < 2; i++)
		close(c[i]);
	atomic_store(&l->done, 1);
	while (l->stay_alive && !atomic_load(&l->release))
		harness_sleep_ms(1);
	return NULL;
}

static void run(int stay_alive)
{
	struct loop l;
	struct snapshot before;
	pthread_t t;
	int fds_before = harness_fd_count();

	memset(&l, 0, sizeof l);
	l.stay_alive = stay_alive;
	CHECK(pthread_create(&t, NULL, loop_thread, &l) == 0);
	while (!atomic_load(&l.done))
		harness_sleep_ms(1);
	if (!stay_alive)
		CHECK(pthread_join(t, NULL) == 0);

	/* the program closes one socket, then tears its listeners down */
	close(l.fd[0]);
	snap(&before);
	CHECK_EQ(evconnlistener_disable(l.lev[1]), 0);
	check_nothing_opened(&before, "evconnlistener_disable");
	evconnlistener_free(l.lev[0]);
	check_nothing_opened(&before, "evconnlistener_free");
	CHECKF(!harness_fd_is_open(l.fd[0]), "fd %d, the socket the program closed, is open "
	       "again", l.fd[0]);
	evconnlistener_free(l.lev[1]);
	check_nothing_opened(&before, "the second evconnlistener_free");
	close(l.fd[1]);
	event_base_free(l.base);

	/* both ports are free: the kernel let go of the sockets */
	for (int i = 0; i < 2; i++) {
		long long deadline = harness_now_ms() + (stay_alive && !harness_is_reference() ? 200 : 0);
		int ok;

		do {
			int fd = socket(AF_INET, SOCK_STREAM, 0), one = 1;

			REQUIRE_SYS(fd);
			REQUIRE_SYS(setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one));
			ok = bind(fd, (struct sockaddr *)&l.sin[i], sizeof l.sin[i]) == 0 &&
			     listen(fd, 1) == 0;
			if (!ok)
				bind_errno = errno;
			close(fd);
			if (!ok)
				harness_sleep_ms(1);
		} while (!ok && harness_now_ms() < deadline);
		CHECKF(ok, "port %d still taken after the free: %s", ntohs(l.sin[i].sin_port),
		       strerror(bind_errno));
	}
	if (stay_alive) {
		atomic_store(&l.release, 1);
		CHECK(pthread_join(t, NULL) == 0);
	}
	CHECK_EQ(harness_fd_count(), fds_before);
}

int main(void)
{
	harness_init("free_elsewhere");
	harness_phase("the loop thread has ended");
	run(0);
	harness_phase("the loop thread lives, outside its loop");
	run(1);
	printf("PASS\n");
	return 0;
}
