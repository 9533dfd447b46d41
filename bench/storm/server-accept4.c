/*
 * Accept-storm server: a blocking accept4() loop, the floor of all.
 * SPDX-License-Identifier: BSD-3-Clause
 */
#define _GNU_SOURCE
#include "storm.h"

#include <errno.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>

static volatile sig_atomic_t stop_sig;
static void on_sig(int sig) { stop_sig = sig; }

int main(int argc, char **argv)
{
	struct storm_server S;
	storm_server_init(&S, "accept4", argc, argv);

	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_sig; /* no SA_RESTART: accept4 returns EINTR */
	sigaction(SIGUSR1, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGALRM, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);

	int lfd = storm_listen_socket(&S, 0);
	unsigned long errors = 0;
	storm_ready(&S, lfd);
	alarm((unsigned)S.timeout_s + 1);

	while (!S.done && !stop_sig) {
		struct sockaddr_storage ss;
		socklen_t len = sizeof(ss);
		int fd = accept4(lfd, (struct sockaddr *)&ss, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0) {
			if (errno != EINTR)
				errors++;
			continue;
		}
		storm_on_conn(&S, (struct sockaddr *)&ss);
		close(fd);
		storm_conn_done(&S);
	}
	if (!S.done)
		storm_stop(&S, stop_sig == SIGALRM);

	char extra[64];
	snprintf(extra, sizeof(extra), "\"accept_errors\":%lu", errors);
	storm_report(&S, "accept4", extra);
	close(lfd);
	return 0;
}
