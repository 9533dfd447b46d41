/*
 * evu-uring-check: self-test for evu-no-uring.
 *
 *   evu-uring-check --expect=ok|ENOSYS|EPERM
 *
 * Calls io_uring_queue_init() and the raw io_uring_enter/io_uring_register
 * system calls on an invalid fd. Under evu-no-uring all three must fail with
 * the filter's errno (not EBADF, which is what the kernel says about the fd),
 * and so must io_uring_setup issued through the x32 syscall ABI on x86_64.
 * With --expect=ok the ring must be created and the raw calls must reach the
 * kernel (EBADF from enter; register on fd -1 is a "blind" call on newer
 * kernels and says EINVAL); if io_uring is unavailable here anyway the test is skipped.
 *
 * Exit: 0 pass, 1 fail, 77 skip.
 *
 * SPDX-License-Identifier: BSD-3-Clause
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <sys/syscall.h>
#include <liburing.h>

#ifndef __NR_io_uring_enter
#define __NR_io_uring_enter 426
#endif
#ifndef __NR_io_uring_register
#define __NR_io_uring_register 427
#endif

static int raw_errno(long nr)
{
	errno = 0;
	long r;
	if (nr == __NR_io_uring_enter)
		r = syscall(nr, -1, 0, 0, 0, NULL, 0);
	else if (nr == __NR_io_uring_register)
		r = syscall(nr, -1, 0, NULL, 0);
	else /* io_uring_setup(1, NULL): EFAULT if it reaches the kernel */
		r = syscall(nr, 1, NULL);
	return r == -1 ? errno : 0;
}

int main(int argc, char **argv)
{
	int expect = -1; /* 0 = ok */
	if (argc == 2 && strcmp(argv[1], "--expect=ok") == 0)
		expect = 0;
	else if (argc == 2 && strcmp(argv[1], "--expect=ENOSYS") == 0)
		expect = ENOSYS;
	else if (argc == 2 && strcmp(argv[1], "--expect=EPERM") == 0)
		expect = EPERM;
	if (expect < 0) {
		fprintf(stderr, "usage: evu-uring-check --expect=ok|ENOSYS|EPERM\n");
		return 2;
	}

	struct io_uring ring;
	int r = io_uring_queue_init(8, &ring, 0);
	int e_enter = raw_errno(__NR_io_uring_enter);
	int e_reg = raw_errno(__NR_io_uring_register);
#if defined(__x86_64__)
	/* The same call through the x32 ABI (number | __X32_SYSCALL_BIT). The
	 * filter must catch it too; unfiltered, a kernel without x32 says ENOSYS. */
	int e_x32 = raw_errno(__NR_io_uring_setup | 0x40000000L);
	printf("x32 io_uring_setup errno %d (%s)\n", e_x32, strerror(e_x32));
#else
	int e_x32 = expect;
#endif
	printf("io_uring_queue_init = %d (%s); io_uring_enter(-1) errno %d (%s); "
	       "io_uring_register(-1) errno %d (%s)\n",
	       r, r < 0 ? strerror(-r) : "ok", e_enter, strerror(e_enter),
	       e_reg, strerror(e_reg));

	if (expect == 0) {
		if (r == -ENOSYS || r == -EPERM) {
			printf("SKIP: io_uring is unavailable in this environment (%s)\n",
			       strerror(-r));
			return 77;
		}
		if (r < 0) {
			printf("FAIL: io_uring_queue_init failed without the filter\n");
			return 1;
		}
		io_uring_queue_exit(&ring);
		if (e_enter != EBADF || e_reg == 0 || e_reg == ENOSYS || e_reg == EPERM) {
			printf("FAIL: raw calls on fd -1 should reach the kernel "
			       "(EBADF from enter, EBADF or EINVAL from register)\n");
			return 1;
		}
		printf("PASS: io_uring works unfiltered\n");
		return 0;
	}

	if (r >= 0) {
		io_uring_queue_exit(&ring);
		printf("FAIL: io_uring_queue_init succeeded under the filter\n");
		return 1;
	}
	if (r != -expect || e_enter != expect || e_reg != expect || e_x32 != expect) {
		printf("FAIL: expected errno %d (%s) from every call "
		       "(setup, enter, register, x32 setup)\n", expect, strerror(expect));
		return 1;
	}
	printf("PASS: all io_uring calls (x32 too) fail with %s\n", strerror(expect));
	return 0;
}
