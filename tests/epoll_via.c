/*
 * See epoll_via.h.
 *
 * SPDX-License-Identifier: BSD-3-Clause
 */
#include "epoll_via.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <time.h>

const sigset_t *epoll_via_sigmask;
volatile sig_atomic_t epoll_via_inside;
static long calls, eintr; /* atomic */

long epoll_via_calls(void)
{
	return __atomic_load_n(&calls, __ATOMIC_RELAXED);
}

long epoll_via_eintr(void)
{
	return __atomic_load_n(&eintr, __ATOMIC_RELAXED);
}

static int via_pwait(void)
{
	const char *v = getenv("EVU_TEST_EPOLL_VIA");

	return v && !strcmp(v, "pwait");
}

const char *epoll_via_name(void)
{
	return via_pwait() ? "epoll_pwait" : "epoll_pwait2";
}

/* The executable's definition comes first: libevent's loop binds to it. */
int epoll_wait(int epfd, struct epoll_event *ev, int max, int timeout)
{
	struct timespec ts = { timeout / 1000, (timeout % 1000) * 1000000L };
	int n;

	__atomic_add_fetch(&calls, 1, __ATOMIC_RELAXED);
	epoll_via_inside = 1;
	if (via_pwait())
		n = epoll_pwait(epfd, ev, max, timeout, epoll_via_sigmask);
	else
		n = epoll_pwait2(epfd, ev, max, timeout < 0 ? NULL : &ts, epoll_via_sigmask);
	epoll_via_inside = 0;
	if (n < 0 && errno == EINTR)
		__atomic_add_fetch(&eintr, 1, __ATOMIC_RELAXED);
	return n;
}
