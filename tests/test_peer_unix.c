/*
 * peer_unix: an AF_UNIX listener made the caller's way (socket + bind, then
 * evconnlistener_new with backlog -1). The callback's addr/socklen are the
 * client's: a bound client shows its path (socklen = offsetof(sun_path) +
 * strlen + 1, as getpeername gives); an unbound client gives socklen ==
 * sizeof(sa_family_t). A burst of bound clients queued before the loop runs
 * each get their own path.
 */
#include "harness.h"

#include <stddef.h>
#include <unistd.h>

#define BURST 50

struct unix_ctx {
	int n, want, bad;
	char paths[BURST][108]; /* expected, cleared when delivered */
	int npaths, unbound_seen;
	char why[200];
};

static void unix_cb(struct evconnlistener *lev, evutil_socket_t fd,
		    struct sockaddr *sa, int socklen, void *arg)
{
	struct unix_ctx *c = arg;
	struct sockaddr_un *sun = (struct sockaddr_un *)sa;
	struct sockaddr_un peer;
	socklen_t plen = sizeof peer;
	int found = 0;

	memset(&peer, 0, sizeof peer);
	REQUIRE_SYS(getpeername(fd, (struct sockaddr *)&peer, &plen));
	if (sa->sa_family != AF_UNIX && !c->bad++)
		snprintf(c->why, sizeof c->why, "family %d", sa->sa_family);
	if (socklen != (int)plen && !c->bad++)
		snprintf(c->why, sizeof c->why, "socklen %d, getpeername %u",
			 socklen, (unsigned)plen);
	if (socklen == (int)sizeof(sa_family_t)) {
		c->unbound_seen++;
	} else {
		size_t want = offsetof(struct sockaddr_un, sun_path) +
			      strlen(sun->sun_path) + 1;
		if ((size_t)socklen != want && !c->bad++)
			snprintf(c->why, sizeof c->why,
				 "socklen %d for path '%s', want %zu", socklen,
				 sun->sun_path, want);
		for (int i = 0; i < c->npaths; i++)
			if (c->paths[i][0] && !strcmp(c->paths[i], sun->sun_path)) {
				c->paths[i][0] = 0;
				found = 1;
			}
		if (!found && !c->bad++)
			snprintf(c->why, sizeof c->why,
				 "path '%s' not expected (or delivered twice)",
				 sun->sun_path);
	}
	close(fd);
	if (++c->n == c->want)
		evconnlistener_disable(lev);
}

static int all_in(void *arg)
{
	struct unix_ctx *c = arg;
	return c->n >= c->want;
}

/* A client bound to a fresh path; the path goes to c->paths. */
static int bound_client(struct unix_ctx *c, const struct sockaddr_un *to)
{
	struct sockaddr_un me;
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	REQUIRE_SYS(fd);
	memset(&me, 0, sizeof me);
	me.sun_family = AF_UNIX;
	harness_temp_path(me.sun_path, sizeof me.sun_path, "client");
	REQUIRE_SYS(bind(fd, (struct sockaddr *)&me, sizeof me));
	REQUIRE_SYS(connect(fd, (const struct sockaddr *)to, sizeof *to));
	strcpy(c->paths[c->npaths++], me.sun_path);
	return fd;
}

int main(void)
{
	static struct unix_ctx ctx;
	static int clients[BURST];
	struct event_base *base;
	struct evconnlistener *lev;
	struct sockaddr_un addr;
	int c;

	harness_init("peer_unix");
	base = harness_base();
	lev = harness_listen_unix(base, unix_cb, &ctx, LEV_OPT_CLOSE_ON_FREE, -1,
				  &addr);

	harness_phase("bound client: callback shows its path");
	ctx.want = 1;
	c = bound_client(&ctx, &addr);
	CHECK(harness_run_until(base, all_in, &ctx, 2000));
	CHECKF(!ctx.bad, "%s", ctx.why);
	CHECK_EQ(ctx.unbound_seen, 0);
	CHECK(!ctx.paths[0][0]);
	close(c);

	harness_phase("unbound client: socklen == sizeof(sa_family_t)");
	memset(&ctx, 0, sizeof ctx);
	ctx.want = 1;
	c = harness_connect((struct sockaddr *)&addr, sizeof addr, 0, NULL);
	CHECK_EQ(evconnlistener_enable(lev), 0);
	CHECK(harness_run_until(base, all_in, &ctx, 2000));
	CHECKF(!ctx.bad, "%s", ctx.why);
	CHECK_EQ(ctx.unbound_seen, 1);
	close(c);

	harness_phase("burst of bound clients queued before the loop runs");
	memset(&ctx, 0, sizeof ctx);
	ctx.want = BURST;
	for (int i = 0; i < BURST; i++)
		clients[i] = bound_client(&ctx, &addr);
	CHECK_EQ(evconnlistener_enable(lev), 0);
	CHECK(event_base_dispatch(base) >= 0); /* returns: cb disables at BURST */
	CHECKF(!ctx.bad, "%s", ctx.why);
	CHECK_EQ(ctx.n, BURST);
	for (int i = 0; i < BURST; i++)
		CHECKF(!ctx.paths[i][0], "client %s never delivered", ctx.paths[i]);
	for (int i = 0; i < BURST; i++)
		close(clients[i]);

	evconnlistener_free(lev);
	event_base_free(base);
	printf("PASS\n");
	return 0;
}
