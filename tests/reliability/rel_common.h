/*
 * Helpers for the reliability tests (tests/reliability/), on top of the
 * shared harness (tests/harness.h). Header-only: every test includes it once.
 *
 * SPDX-License-Identifier: BSD-3-Clause
 */
#ifndef EVU_REL_COMMON_H
#define EVU_REL_COMMON_H

#include "harness.h"

#include <dirent.h>
#include <linux/kcmp.h>
#include <sys/syscall.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* CPU time (user + system) of the whole process so far, in microseconds. */
static inline long long rel_cpu_us(void)
{
	struct rusage ru;
	CHECK(getrusage(RUSAGE_SELF, &ru) == 0);
	return (long long)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000000LL +
	       ru.ru_utime.tv_usec + ru.ru_stime.tv_usec;
}

/* Resident set size in KiB, from /proc/self/statm. */
static inline long rel_rss_kb(void)
{
	long size = 0, rss = 0;
	FILE *f = fopen("/proc/self/statm", "r");
	CHECK(f != NULL);
	CHECK(fscanf(f, "%ld %ld", &size, &rss) == 2);
	fclose(f);
	return rss * (sysconf(_SC_PAGESIZE) / 1024);
}

/* Highest open fd number of this process (-1 if none). */
static inline int rel_max_fd(void)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *de;
	int max = -1, self;
	CHECK(d != NULL);
	self = dirfd(d);
	while ((de = readdir(d)) != NULL) {
		int fd;
		if (de->d_name[0] == '.')
			continue;
		fd = atoi(de->d_name);
		if (fd != self && fd > max)
			max = fd;
	}
	closedir(d);
	return max;
}

/* Whether @p fd is an io_uring instance ("anon_inode:[io_uring]"). */
static inline int rel_fd_is_uring(int fd)
{
	char path[64], link[128];
	ssize_t n;
	snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
	n = readlink(path, link, sizeof link - 1);
	if (n <= 0)
		return 0;
	link[n] = 0;
	return strstr(link, "io_uring") != NULL;
}

/* io_uring fds of this process: count, and up to @p max of their numbers. */
static inline int rel_uring_fds(int *out, int max)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *de;
	int n = 0, self;
	CHECK(d != NULL);
	self = dirfd(d);
	while ((de = readdir(d)) != NULL) {
		int fd;
		if (de->d_name[0] == '.')
			continue;
		fd = atoi(de->d_name);
		if (fd == self || !rel_fd_is_uring(fd))
			continue;
		if (out && n < max)
			out[n] = fd;
		n++;
	}
	closedir(d);
	return n;
}

/* Whether this process's @p fd and its parent's @p parent_fd are one open
 * file (kcmp): 1, 0, or -1 if the kernel will not say (no kcmp, no access). */
static inline int rel_same_file_as_parent(int fd, int parent_fd)
{
	long r = syscall(SYS_kcmp, getpid(), getppid(), KCMP_FILE, fd, parent_fd);

	return r < 0 ? -1 : r == 0;
}

/* RLIMIT_NOFILE soft limit. */
static inline rlim_t rel_get_nofile(void)
{
	struct rlimit rl;
	CHECK(getrlimit(RLIMIT_NOFILE, &rl) == 0);
	return rl.rlim_cur;
}

static inline void rel_set_nofile(rlim_t cur)
{
	struct rlimit rl;
	CHECK(getrlimit(RLIMIT_NOFILE, &rl) == 0);
	rl.rlim_cur = cur;
	CHECKF(setrlimit(RLIMIT_NOFILE, &rl) == 0, "setrlimit(NOFILE, %llu): %s",
	       (unsigned long long)cur, strerror(errno));
}

static inline long rel_env_long(const char *name, long def)
{
	const char *v = getenv(name);
	return v && *v ? strtol(v, NULL, 0) : def;
}

/* Small deterministic PRNG (xorshift64*), one state per thread. */
static inline uint64_t rel_rand(uint64_t *s)
{
	uint64_t x = *s ? *s : 0x9e3779b97f4a7c15ULL;
	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	*s = x;
	return x * 0x2545f4914f6cdd1dULL;
}

static inline unsigned rel_rand_below(uint64_t *s, unsigned n)
{
	return (unsigned)((rel_rand(s) >> 33) % n);
}

/* pthread_join bounded by @p ms: fails the test (deadlock) otherwise. */
static inline void rel_join_within(pthread_t t, int ms, const char *what)
{
	struct timespec ts;
	int rc;
	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += ms / 1000;
	ts.tv_nsec += (long)(ms % 1000) * 1000000L;
	if (ts.tv_nsec >= 1000000000L) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000L;
	}
	rc = pthread_timedjoin_np(t, NULL, &ts);
	CHECKF(rc == 0, "%s: thread did not finish within %d ms (%s): deadlock?",
	       what, ms, strerror(rc));
}

/*
 * How a client connection ended, seen from the client. The server side of
 * the reliability tests writes one byte to every connection it is handed,
 * then closes it, so the client can tell "delivered to the callback" from
 * "closed or reset without reaching the callback".
 */
enum rel_outcome {
	REL_DELIVERED = 0,  /* got the server's byte */
	REL_DROPPED,        /* connected, then EOF/RST without the byte */
	REL_REFUSED,        /* connect() failed with ECONNREFUSED/ECONNRESET */
	REL_CONNECT_ERROR,  /* connect() failed otherwise (timeout, ...) */
	REL_STUCK,          /* connected, nothing within the deadline */
	REL_NOUTCOMES
};

static const char *const rel_outcome_names[REL_NOUTCOMES] = {
	"delivered", "dropped", "refused", "connect-error", "stuck"};

/* Start a nonblocking connect; returns the fd (connect may be in
 * progress), or -1 with errno if it failed at once. */
static inline int rel_connect_start(const struct sockaddr *sa, socklen_t len)
{
	int fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	if (connect(fd, sa, len) == 0 || errno == EINPROGRESS)
		return fd;
	{
		int e = errno;
		close(fd);
		errno = e;
	}
	return -1;
}

/* Read exactly @p len bytes from @p fd (a pipe from a helper process) within
 * @p ms, or fail the test. */
static inline void rel_read_full(int fd, void *buf, size_t len, int ms)
{
	char *p = buf;
	long long end = harness_now_ms() + ms;
	while (len) {
		struct pollfd pfd = {fd, POLLIN, 0};
		ssize_t n;
		long long left = end - harness_now_ms();
		CHECKF(left > 0 && poll(&pfd, 1, (int)left) > 0,
		       "no data from the client process within %d ms", ms);
		n = read(fd, p, len);
		if (n < 0 && errno == EINTR)
			continue;
		CHECKF(n > 0, "client process pipe: %s",
		       n == 0 ? "EOF" : strerror(errno));
		p += n;
		len -= (size_t)n;
	}
}

/* Local port of a socket (0 on failure). */
static inline uint16_t rel_local_port(int fd)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof ss;
	if (getsockname(fd, (struct sockaddr *)&ss, &len) < 0)
		return 0;
	return harness_port((struct sockaddr *)&ss);
}

/* Server side of the protocol: one byte, then close. */
static inline void rel_serve_and_close(evutil_socket_t fd, char byte)
{
	ssize_t n;
	do
		n = send(fd, &byte, 1, MSG_NOSIGNAL | MSG_DONTWAIT);
	while (n < 0 && errno == EINTR);
	close(fd);
}

#endif /* EVU_REL_COMMON_H */
