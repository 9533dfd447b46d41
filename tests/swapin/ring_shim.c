/*
 * Positive control for the ring check: a preloadable object that only opens
 * an io_uring instance at load time and keeps it. Preloaded into
 * swapin_echo_plain (libevent's own listener), the ring check must report a
 * ring, proving the detector itself works independently of evuring.
 *
 * SPDX-License-Identifier: BSD-3-Clause
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <string.h>
#include <liburing.h>

static struct io_uring shim_ring;

__attribute__((constructor)) static void shim_init(void)
{
	int r = io_uring_queue_init(4, &shim_ring, 0);
	if (r < 0)
		fprintf(stderr, "ring_shim: io_uring_queue_init: %s\n", strerror(-r));
}
