/*
 * current_base: a NULL event_base means libevent's legacy current base, the
 * one event_init() made (event_assign() resolves it). Old programs and
 * libevent's own regress rpc tests rely on it: evhttp_new(NULL) binds its
 * listener with a NULL base. Both constructors must accept it, report that
 * base from get_base, and deliver connections when event_dispatch() runs it.
 *
 * Before any event_init() there is no current base. libevent then hands back
 * a listener that can never fire (its event has no base); evuring refuses
 * with EINVAL and leaks nothing. That part runs only against evuring.
 */
#include "harness.h"

#include <event2/event_compat.h>
#include <unistd.h>

struct seen {
	int calls;
	uint16_t peer_port;
};

static void note_cb(struct evconnlistener *lev, evutil_socket_t fd,
		    struct sockaddr *sa, int socklen, void *arg)
{
	struct seen *s = arg;

	CHECKF(s->calls == 0, "callback after its listener was disabled");
	CHECK_EQ(socklen, sizeof(struct sockaddr_in));
	s->peer_port = harness_port(sa);
	s->calls++;
	close(fd);
	CHECK_EQ(evconnlistener_disable(lev), 0);
}

static struct sockaddr_in bound_addr(struct evconnlistener *lev)
{
	struct sockaddr_storage ss;

	harness_sockname(evconnlistener_get_fd(lev), &ss);
	return *(struct sockaddr_in *)&ss;
}

static void no_current_base(void)
{
	struct sockaddr_in any = harness_sin("127.0.0.1", 0);
	int before = harness_fd_count(), fd;

	errno = 0;
	CHECK(evconnlistener_new_bind(NULL, note_cb, NULL, LEV_OPT_CLOSE_ON_FREE,
				      -1, (struct sockaddr *)&any,
				      sizeof any) == NULL);
	CHECK_EQ(errno, EINVAL);
	CHECK_EQ(harness_fd_count(), before);

	fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
	REQUIRE_SYS(fd);
	REQUIRE_SYS(bind(fd, (struct sockaddr *)&any, sizeof any));
	errno = 0;
	CHECK(evconnlistener_new(NULL, note_cb, NULL, LEV_OPT_CLOSE_ON_FREE, -1,
				 fd) == NULL);
	CHECK_EQ(errno, EINVAL);
	CHECKF(harness_fd_is_open(fd), "a refused listener closed the caller's fd");
	close(fd);
}

static void with_current_base(unsigned flags)
{
	struct sockaddr_in any = harness_sin("127.0.0.1", 0), a1, a2;
	struct seen s1 = { 0 }, s2 = { 0 };
	struct evconnlistener *l1, *l2;
	struct event_base *base;
	int before = harness_fd_count(), fd, c1, c2;
	uint16_t p1, p2;

	base = event_init();
	CHECK(base != NULL);

	flags |= LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE;
	l1 = evconnlistener_new_bind(NULL, note_cb, &s1, flags, -1,
				     (struct sockaddr *)&any, sizeof any);
	CHECKF(l1 != NULL, "evconnlistener_new_bind(NULL base): %s",
	       strerror(errno));
	harness_check_backend(l1);

	fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
	REQUIRE_SYS(fd);
	REQUIRE_SYS(bind(fd, (struct sockaddr *)&any, sizeof any));
	l2 = evconnlistener_new(NULL, note_cb, &s2, flags, -1, fd);
	CHECKF(l2 != NULL, "evconnlistener_new(NULL base): %s", strerror(errno));
	harness_check_backend(l2);

	CHECK(evconnlistener_get_base(l1) == base);
	CHECK(evconnlistener_get_base(l2) == base);

	a1 = bound_addr(l1);
	a2 = bound_addr(l2);
	c1 = harness_connect((struct sockaddr *)&a1, sizeof a1, 0, &p1);
	c2 = harness_connect((struct sockaddr *)&a2, sizeof a2, 0, &p2);

	/* Each callback disables its listener: dispatch returns by itself. */
	CHECK(event_dispatch() >= 0);
	CHECK_EQ(s1.calls, 1);
	CHECK_EQ(s2.calls, 1);
	CHECK_EQ(s1.peer_port, p1);
	CHECK_EQ(s2.peer_port, p2);

	close(c1);
	close(c2);
	evconnlistener_free(l1);
	evconnlistener_free(l2);
	event_base_free(NULL); /* the current base */
	CHECK_EQ(harness_fd_count(), before);
}

int main(void)
{
	harness_init("current_base");
	if (!harness_is_reference()) {
		harness_phase("NULL base without a current base");
		no_current_base();
	}
	harness_phase("NULL base is the current base");
	with_current_base(0);
	harness_phase("NULL base is the current base, LEV_OPT_THREADSAFE");
	harness_use_threads();
	with_current_base(LEV_OPT_THREADSAFE);
	printf("PASS\n");
	return 0;
}
