/*
 * prog-netkit: helpers for the third-party program tests.
 *
 *   prog-netkit freeport
 *       print a TCP port on 127.0.0.1 that was free a moment ago (bound to
 *       port 0 and released; programs are then told to listen on it)
 *
 * Plain POSIX, no libevent: nothing here is the code under test.
 *
 * SPDX-License-Identifier: BSD-3-Clause
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static int free_port(void)
{
	struct sockaddr_in sin = { .sin_family = AF_INET };
	socklen_t len = sizeof(sin);
	int port = -1, fd = socket(AF_INET, SOCK_STREAM, 0);

	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (fd >= 0 && bind(fd, (struct sockaddr *)&sin, sizeof(sin)) == 0 &&
	    getsockname(fd, (struct sockaddr *)&sin, &len) == 0)
		port = ntohs(sin.sin_port);
	if (fd >= 0)
		close(fd);
	return port;
}

int main(int argc, char **argv)
{
	int port;

	if (argc != 2 || strcmp(argv[1], "freeport") != 0) {
		fprintf(stderr, "usage: prog-netkit freeport\n");
		return 2;
	}
	port = free_port();
	if (port < 0) {
		perror("prog-netkit: freeport");
		return 1;
	}
	printf("%d\n", port);
	return 0;
}
