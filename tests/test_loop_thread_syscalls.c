/*
 * loop_thread_syscalls: the listener must not disturb the program's own
 * blocking calls in the thread that runs (and created) the listener. With
 * libevent's listener a connection arriving while that thread sits in a
 * blocking recv() with SO_RCVTIMEO changes nothing: recv returns the data
 * when it comes. (A completion queued as io_uring task_work for this thread
 * sets TIF_NOTIFY_SIGNAL; socket calls with a timeout then fail with EINTR
 * instead of restarting, which no libevent program expects.)
 */
#include "harness.h"

#include <unistd.h>

struct helper {
	struct sockaddr_in to;
	int wfd, client;
};

static void cb(struct evconnlistener *lev, evutil_socket_t fd,
	       struct sockaddr *sa, int socklen, void *arg)
{
	(*(int *)arg)++;
	close(fd);
}

static int got_one(void *arg) { return *(int *)arg >= 1; }

/* Connect to the listener while main blocks, then wake main with a byte. */
static void *helper_thread(void *arg)
{
	struct helper *h = arg;
	harness_sleep_ms(50);
	h->client = harness_connect((struct sockaddr *)&h->to, sizeof h->to, 0,
				    NULL);
	harness_sleep_ms(100);
	CHECK_EQ(send(h->wfd, "x", 1, 0), 1);
	return NULL;
}

int main(void)
{
	struct event_base *base;
	struct evconnlistener *lev;
	struct helper h;
	struct timeval tv = {3, 0};
	pthread_t t;
	int n = 0, pair[2];
	ssize_t r;
	char b;

	harness_init("loop_thread_syscalls");
	/* The guarantee needs DEFER_TASKRUN (kernel 6.1+). The older ring
	 * modes, chosen here by EVURING_RING_FLAGS as on kernels 5.19-6.0,
	 * run accepts as task work that interrupts the thread: the README's
	 * documented caveat for those kernels. */
	if (!harness_is_reference() && getenv("EVURING_RING_FLAGS") &&
	    strcmp(getenv("EVURING_RING_FLAGS"), "defer"))
		SKIP("EVURING_RING_FLAGS=%s: without DEFER_TASKRUN a connection "
		     "interrupts the loop thread's blocking calls (documented)",
		     getenv("EVURING_RING_FLAGS"));
	base = harness_base();
	lev = harness_listen_ipv4(base, cb, &n, LEV_OPT_CLOSE_ON_FREE, -1, &h.to);
	harness_run_for(base, 20); /* the listener is accepting now */

	harness_phase("blocking recv with SO_RCVTIMEO while a client connects");
	REQUIRE_SYS(socketpair(AF_UNIX, SOCK_STREAM, 0, pair));
	REQUIRE_SYS(setsockopt(pair[0], SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv));
	h.wfd = pair[1];
	CHECK(pthread_create(&t, NULL, helper_thread, &h) == 0);
	r = recv(pair[0], &b, 1, 0);
	CHECKF(r == 1, "blocking recv() in the listener's thread returned %zd "
	       "(%s) while a connection arrived", r,
	       r < 0 ? strerror(errno) : "EOF");
	CHECK(pthread_join(t, NULL) == 0);

	harness_phase("the connection is then delivered");
	CHECK(harness_run_until(base, got_one, &n, 2000));
	close(h.client);
	close(pair[0]);
	close(pair[1]);
	evconnlistener_free(lev);
	event_base_free(base);
	printf("PASS\n");
	return 0;
}
