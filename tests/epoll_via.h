/*
 * epoll_via: linked into a test, the program's epoll_wait calls
 * epoll_pwait2 instead (or epoll_pwait, EVU_TEST_EPOLL_VIA=pwait), as the
 * epoll backend of a libevent 2.2 built where libc has epoll_pwait2 does.
 * libevent's loop then drives evuring's exported epoll_pwait2/epoll_pwait,
 * which its own epoll_wait would otherwise hide from the test.
 *
 * SPDX-License-Identifier: BSD-3-Clause
 */
#ifndef EVU_TEST_EPOLL_VIA_H
#define EVU_TEST_EPOLL_VIA_H

#include <signal.h>

/* The signal mask every call passes (NULL, as libevent, unless set). */
extern const sigset_t *epoll_via_sigmask;

/* Set while a call is in epoll_pwait2/epoll_pwait (for a signal handler). */
extern volatile sig_atomic_t epoll_via_inside;

/* Calls made so far, and how many of them failed with EINTR. */
long epoll_via_calls(void);
long epoll_via_eintr(void);

/* "epoll_pwait2" or "epoll_pwait": what the calls go through. */
const char *epoll_via_name(void);

#endif
