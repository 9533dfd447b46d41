/*
 * ring_lifecycle: what evuring keeps in the process follows its listeners.
 * On the io_uring backend one ring serves every listener of a base, another
 * base gets its own, and freeing a base's last listener releases its ring;
 * the event backend (and libevent's own listener) never makes one. In every
 * case the process's fd count returns to its baseline and dispatch returns
 * once the listeners are disabled.
 */
#include "harness.h"

#include <dirent.h>
#include <string.h>
#include <unistd.h>

#ifndef EVU_TEST_REFERENCE
#include <evuring.h>
#endif

static int count_rings(void)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *de;
	char path[300], link[64];
	int n = 0;

	CHECK(d != NULL);
	while ((de = readdir(d)) != NULL) {
		ssize_t len;

		if (de->d_name[0] == '.')
			continue;
		snprintf(path, sizeof path, "/proc/self/fd/%s", de->d_name);
		len = readlink(path, link, sizeof link - 1);
		if (len <= 0)
			continue;
		link[len] = '\0';
		if (strcmp(link, "anon_inode:[io_uring]") == 0)
			n++;
	}
	closedir(d);
	return n;
}

static int uses_uring(struct evconnlistener *lev)
{
#ifdef EVU_TEST_REFERENCE
	(void)lev;
	return 0;
#else
	return evuring_listener_backend(lev) == EVURING_BACKEND_URING;
#endif
}

static void cb(struct evconnlistener *lev, evutil_socket_t fd,
	       struct sockaddr *sa, int socklen, void *arg)
{
	(*(int *)arg)++;
	close(fd);
}

static int got(void *arg) { return ((int *)arg)[0] >= 1 && ((int *)arg)[1] >= 1; }

int main(void)
{
	struct event_base *b1, *b2;
	struct evconnlistener *l1, *l2, *l3;
	struct sockaddr_in a1, a2, a3;
	int n12[2] = {0, 0}, n3 = 0, fds0, uring, c1, c2, c3;

	harness_init("ring_lifecycle");
	fds0 = harness_fd_count();
	b1 = harness_base();
	b2 = harness_base();

	harness_phase("two listeners on one base share one ring");
	CHECK_EQ(count_rings(), 0);
	l1 = harness_listen_ipv4(b1, cb, &n12[0], LEV_OPT_CLOSE_ON_FREE, -1, &a1);
	l2 = harness_listen_ipv4(b1, cb, &n12[1], LEV_OPT_CLOSE_ON_FREE, -1, &a2);
	uring = uses_uring(l1);
	CHECK_EQ(uses_uring(l2), uring);
	c1 = harness_connect((struct sockaddr *)&a1, sizeof a1, 0, NULL);
	c2 = harness_connect((struct sockaddr *)&a2, sizeof a2, 0, NULL);
	CHECK(harness_run_until(b1, got, n12, 2000));
	CHECK_EQ(count_rings(), uring ? 1 : 0);

	harness_phase("another base gets its own ring");
	l3 = harness_listen_ipv4(b2, cb, &n3, LEV_OPT_CLOSE_ON_FREE, -1, &a3);
	c3 = harness_connect((struct sockaddr *)&a3, sizeof a3, 0, NULL);
	while (n3 < 1)
		event_base_loop(b2, EVLOOP_ONCE);
	CHECK_EQ(count_rings(), uring ? 2 : 0);

	harness_phase("disabled listeners: dispatch returns, ring kept");
	CHECK_EQ(evconnlistener_disable(l1), 0);
	CHECK_EQ(evconnlistener_disable(l2), 0);
	CHECK_EQ(event_base_dispatch(b1), 1); /* nothing pending */
	CHECK_EQ(count_rings(), uring ? 2 : 0);

	harness_phase("freeing a base's last listener releases its ring");
	evconnlistener_free(l1);
	CHECK_EQ(count_rings(), uring ? 2 : 0);
	evconnlistener_free(l2);
	CHECK_EQ(count_rings(), uring ? 1 : 0);
	evconnlistener_free(l3);
	CHECK_EQ(count_rings(), 0);

	harness_phase("a new listener after that gets a new ring");
	l1 = harness_listen_ipv4(b1, cb, &n12[0], LEV_OPT_CLOSE_ON_FREE, -1, &a1);
	CHECK_EQ(count_rings(), uses_uring(l1) ? 1 : 0);
	evconnlistener_free(l1);
	CHECK_EQ(count_rings(), 0);

	close(c1);
	close(c2);
	close(c3);
	event_base_free(b1);
	event_base_free(b2);
	CHECK_EQ(harness_fd_count(), fds0);
	printf("PASS\n");
	return 0;
}
