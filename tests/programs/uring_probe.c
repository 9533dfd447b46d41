/*
 * prog-uring-probe: can evuring use io_uring on this machine?
 * Exit 0 and print "io_uring available" if evuring_uring_available() says
 * so, else print the reason and exit 1. The .uring program tests skip on 1.
 *
 * SPDX-License-Identifier: BSD-3-Clause
 */
#include <stdio.h>
#include <evuring.h>

int main(void)
{
	const char *why = NULL;

	if (evuring_uring_available(&why)) {
		printf("io_uring available\n");
		return 0;
	}
	printf("io_uring unavailable: %s\n", why ? why : "(no reason given)");
	return 1;
}
