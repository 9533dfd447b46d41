/*
 * evu-no-uring: run a command with io_uring denied by a seccomp filter.
 *
 *   evu-no-uring [--errno=ENOSYS|EPERM|N] -- CMD [ARGS...]
 *
 * Sets PR_SET_NO_NEW_PRIVS, installs a classic-BPF seccomp filter that makes
 * io_uring_setup, io_uring_enter and io_uring_register fail with the chosen
 * errno (default ENOSYS), then execvp()s CMD. The filter is inherited across
 * exec and fork, so CMD and everything it starts see io_uring as absent
 * (ENOSYS: a kernel or sandbox without io_uring) or forbidden (EPERM: the
 * Docker 25+ default profile, an LSM, or the io_uring_disabled sysctl).
 *
 * Architecture handling (x86_64 build): native x86_64 calls and x32 calls
 * (the __X32_SYSCALL_BIT set in the number, same audit arch) are matched on
 * the number with that bit masked off; i386 compat calls are matched on the
 * i386 numbers. Any other audit arch kills the process, so no unknown ABI
 * can reach io_uring around the filter. Other architectures: the native
 * arch only (io_uring numbers 425..427 are shared by every Linux ABI).
 *
 * Exit status: CMD's (via exec), 2 for a usage error, 77 if this kernel has
 * no seccomp filter support, 126/127 if CMD cannot be executed.
 *
 * SPDX-License-Identifier: BSD-3-Clause
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>

/* io_uring system call numbers: identical on every Linux ABI since 5.1. */
#ifndef __NR_io_uring_setup
#define __NR_io_uring_setup 425
#endif
#ifndef __NR_io_uring_enter
#define __NR_io_uring_enter 426
#endif
#ifndef __NR_io_uring_register
#define __NR_io_uring_register 427
#endif
#define I386_NR_io_uring_setup 425
#define I386_NR_io_uring_enter 426
#define I386_NR_io_uring_register 427
#define X32_SYSCALL_BIT 0x40000000u

#if defined(__x86_64__)
#define NATIVE_ARCH AUDIT_ARCH_X86_64
#elif defined(__aarch64__)
#define NATIVE_ARCH AUDIT_ARCH_AARCH64
#elif defined(__i386__)
#define NATIVE_ARCH AUDIT_ARCH_I386
#elif defined(__riscv) && __riscv_xlen == 64
#define NATIVE_ARCH AUDIT_ARCH_RISCV64
#else
#error "evu-no-uring: unsupported architecture (add its AUDIT_ARCH_*)"
#endif

#define LD_ARCH BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch))
#define LD_NR BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr))
#define RET(v) BPF_STMT(BPF_RET | BPF_K, (v))

static int parse_errno(const char *s)
{
	if (strcmp(s, "ENOSYS") == 0)
		return ENOSYS;
	if (strcmp(s, "EPERM") == 0)
		return EPERM;
	if (strcmp(s, "EACCES") == 0)
		return EACCES;
	char *end;
	errno = 0;
	long v = strtol(s, &end, 10);
	if (errno || *s == '\0' || *end != '\0' || v < 1 || v > 4095)
		return -1;
	return (int)v;
}

static void usage(void)
{
	fprintf(stderr, "usage: evu-no-uring [--errno=ENOSYS|EPERM|EACCES|N] -- CMD [ARGS...]\n");
	exit(2);
}

int main(int argc, char **argv)
{
	int err = ENOSYS;
	int i;

	for (i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--") == 0) {
			i++;
			break;
		}
		if (strncmp(argv[i], "--errno=", 8) == 0) {
			err = parse_errno(argv[i] + 8);
			if (err < 0) {
				fprintf(stderr, "evu-no-uring: bad errno '%s'\n", argv[i] + 8);
				usage();
			}
		} else if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
			usage();
		} else {
			break; /* first non-option word starts the command */
		}
	}
	if (i >= argc)
		usage();

	const __u32 deny = SECCOMP_RET_ERRNO | ((__u32)err & SECCOMP_RET_DATA);
	struct sock_filter filter[] = {
		/* 0 */ LD_ARCH,
#if defined(__x86_64__)
		/* 1 */ BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_X86_64, 2, 0),
		/* 2 */ BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_I386, 8, 0),
		/* 3 */ RET(SECCOMP_RET_KILL_PROCESS),
		/* x86_64 and x32 (same audit arch): clear the x32 bit, compare. */
		/* 4 */ LD_NR,
		/* 5 */ BPF_STMT(BPF_ALU | BPF_AND | BPF_K, ~X32_SYSCALL_BIT),
		/* 6 */ BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_io_uring_setup, 3, 0),
		/* 7 */ BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_io_uring_enter, 2, 0),
		/* 8 */ BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_io_uring_register, 1, 0),
		/* 9 */ RET(SECCOMP_RET_ALLOW),
		/* 10 */ RET(deny),
		/* i386 compat tasks */
		/* 11 */ LD_NR,
		/* 12 */ BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, I386_NR_io_uring_setup, 3, 0),
		/* 13 */ BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, I386_NR_io_uring_enter, 2, 0),
		/* 14 */ BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, I386_NR_io_uring_register, 1, 0),
		/* 15 */ RET(SECCOMP_RET_ALLOW),
		/* 16 */ RET(deny),
#else
		/* 1 */ BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, NATIVE_ARCH, 1, 0),
		/* 2 */ RET(SECCOMP_RET_KILL_PROCESS),
		/* 3 */ LD_NR,
		/* 4 */ BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_io_uring_setup, 3, 0),
		/* 5 */ BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_io_uring_enter, 2, 0),
		/* 6 */ BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_io_uring_register, 1, 0),
		/* 7 */ RET(SECCOMP_RET_ALLOW),
		/* 8 */ RET(deny),
#endif
	};
	struct sock_fprog prog = {
		.len = (unsigned short)(sizeof(filter) / sizeof(filter[0])),
		.filter = filter,
	};

	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) {
		perror("evu-no-uring: prctl(PR_SET_NO_NEW_PRIVS)");
		return 77;
	}
	if (prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog, 0, 0) != 0) {
		int e = errno;
		fprintf(stderr, "evu-no-uring: cannot install seccomp filter: %s\n", strerror(e));
		return (e == EINVAL || e == ENOSYS) ? 77 : 126;
	}

	execvp(argv[i], &argv[i]);
	int e = errno;
	fprintf(stderr, "evu-no-uring: cannot execute '%s': %s\n", argv[i], strerror(e));
	return e == ENOENT ? 127 : 126;
}
