/*
 * evconnlistener_new_bind(): make, configure and bind the listening socket
 * the way libevent 2.2.1 does, then hand it to evconnlistener_new().
 *
 * SPDX-License-Identifier: BSD-3-Clause
 */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <unistd.h>

#include "evu-internal.h"

static int evu_setsockopt_int(int fd, int level, int name, int value)
{
	return setsockopt(fd, level, name, &value, sizeof(value)) < 0 ? -errno : 0;
}

/* The options libevent sets, in libevent's order; -errno on the first
 * failure. The kernel decides what each means for the address family. */
static int evu_configure_socket(int fd, unsigned flags)
{
	int err;

	err = evu_setsockopt_int(fd, SOL_SOCKET, SO_KEEPALIVE, 1);
	if (!err && (flags & LEV_OPT_REUSEABLE))
		err = evu_setsockopt_int(fd, SOL_SOCKET, SO_REUSEADDR, 1);
	if (!err && (flags & LEV_OPT_REUSEABLE_PORT))
		err = evu_setsockopt_int(fd, SOL_SOCKET, SO_REUSEPORT, 1);
	/* libevent asks the kernel to hold a connection up to 1 s for data. */
	if (!err && (flags & LEV_OPT_DEFERRED_ACCEPT))
		err = evu_setsockopt_int(fd, IPPROTO_TCP, TCP_DEFER_ACCEPT, 1);
	if (!err && (flags & LEV_OPT_BIND_IPV6ONLY))
		err = evu_setsockopt_int(fd, IPPROTO_IPV6, IPV6_V6ONLY, 1);
	if (!err && (flags & LEV_OPT_BIND_IPV4_AND_IPV6))
		err = evu_setsockopt_int(fd, IPPROTO_IPV6, IPV6_V6ONLY, 0);
	return err;
}

EVURING_API struct evconnlistener *evconnlistener_new_bind(struct event_base *base,
					       evconnlistener_cb cb, void *ptr,
					       unsigned flags, int backlog,
					       const struct sockaddr *sa,
					       int socklen)
{
	struct evconnlistener *lev;
	int family = sa ? sa->sa_family : AF_UNSPEC;
	int type = SOCK_STREAM | SOCK_NONBLOCK;
	int fd, err;

	/* libevent returns NULL for backlog 0 without making a socket. */
	base = evu_base_or_current(base);
	if (backlog == 0 || !base) {
		errno = EINVAL;
		return NULL;
	}
	if (sa && socklen <= 0) {
		errno = EINVAL;
		return NULL;
	}
	if (flags & LEV_OPT_CLOSE_ON_EXEC)
		type |= SOCK_CLOEXEC;

	fd = socket(family, type, 0);
	if (fd < 0)
		return NULL;
	err = evu_configure_socket(fd, flags);
	if (!err && sa && bind(fd, sa, (socklen_t)socklen) < 0)
		err = -errno;
	if (err)
		goto fail;

	lev = evu_listener_new(base, cb, ptr, flags, backlog, fd, true);
	if (!lev) {
		err = -errno;
		goto fail;
	}
	return lev;

fail:
	close(fd);
	errno = -err; /* as 2.2.1: the error that failed, not close()'s */
	return NULL;
}
