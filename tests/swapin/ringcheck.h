/*
 * Does this process hold an io_uring instance right now?
 *
 * Walks /proc/self/fd: an io_uring fd reads back as "anon_inode:[io_uring]".
 * A hit only counts if /proc/self/fdinfo/<fd> can also be opened (so the fd
 * really is live in this process, not a stale directory entry). Used by the
 * swap-in servers, which are built only against libevent's API: the ring is
 * the observable proof that evuring, not libevent, runs the listener
 * (libevent 2.1 on Linux never creates one).
 *
 * SPDX-License-Identifier: BSD-3-Clause
 */
#ifndef SWAPIN_RINGCHECK_H
#define SWAPIN_RINGCHECK_H

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Number of live io_uring fds; the first one's number in *first_fd (or -1).
 * -1 if /proc/self/fd cannot be read. */
static int swapin_count_rings(int *first_fd)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *de;
	int n = 0;

	*first_fd = -1;
	if (!d)
		return -1;
	while ((de = readdir(d)) != NULL) {
		char path[64], target[256];
		char *end;
		long fd = strtol(de->d_name, &end, 10);
		ssize_t len;

		if (de->d_name[0] == '.' || *end != '\0' || fd < 0 || fd == dirfd(d))
			continue;
		snprintf(path, sizeof(path), "/proc/self/fd/%ld", fd);
		len = readlink(path, target, sizeof(target) - 1);
		if (len <= 0)
			continue;
		target[len] = '\0';
		if (strcmp(target, "anon_inode:[io_uring]") != 0)
			continue;
		snprintf(path, sizeof(path), "/proc/self/fdinfo/%ld", fd);
		if (access(path, R_OK) != 0)
			continue;
		if (n++ == 0)
			*first_fd = (int)fd;
	}
	closedir(d);
	return n;
}

#endif
