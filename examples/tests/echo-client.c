/*
 * echo-client: test client for the echo-server and tcp-proxy examples.
 *
 *   echo-client PORT [--conns N] [--bytes N] [--half-close]
 *
 * Opens N connections to 127.0.0.1:PORT one after the other; on each sends
 * about BYTES of numbered lines ("conn <c> line <i>\n") while reading, and
 * checks that exactly the same bytes come back. With --half-close it then
 * shuts down its sending side and also requires EOF after the echo (the
 * server must flush before closing). Every wait is bounded by 10 s.
 * Exit 0 if every connection was echoed exactly, 1 otherwise.
 *
 * SPDX-License-Identifier: BSD-3-Clause
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define TIMEOUT_MS 10000

static long now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000L + ts.tv_nsec / 1000000L;
}

static int one_conn(int port, int conn, size_t want, int half_close)
{
	struct sockaddr_in sin;
	char *out, *in;
	size_t len = 0, sent = 0, got = 0;
	long deadline = now_ms() + TIMEOUT_MS;
	int fd, i, shut = 0, eof = 0;

	/* The payload: numbered lines up to about `want` bytes. */
	out = malloc(want + 64);
	in = malloc(want + 64 + 1);
	if (!out || !in)
		return -1;
	for (i = 0; len < want; i++)
		len += (size_t)sprintf(out + len, "conn %d line %d\n", conn, i);

	fd = socket(AF_INET, SOCK_STREAM, 0);
	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_port = htons((unsigned short)port);
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (fd < 0 || connect(fd, (struct sockaddr *)&sin, sizeof(sin)) < 0) {
		fprintf(stderr, "echo-client: conn %d: connect: %s\n", conn, strerror(errno));
		return -1;
	}
	while (got < len || (half_close && !eof)) {
		struct pollfd pfd = { fd, POLLIN, 0 };
		long left = deadline - now_ms();
		ssize_t n;

		if (sent < len)
			pfd.events |= POLLOUT;
		else if (half_close && !shut) {
			shutdown(fd, SHUT_WR);
			shut = 1;
		}
		if (left <= 0 || poll(&pfd, 1, (int)left) <= 0) {
			fprintf(stderr, "echo-client: conn %d: timed out (sent %zu/%zu, got %zu)\n",
				conn, sent, len, got);
			return -1;
		}
		if ((pfd.revents & POLLOUT) && sent < len) {
			n = send(fd, out + sent, len - sent, MSG_NOSIGNAL | MSG_DONTWAIT);
			if (n < 0 && errno != EAGAIN) {
				fprintf(stderr, "echo-client: conn %d: send: %s\n", conn, strerror(errno));
				return -1;
			}
			if (n > 0)
				sent += (size_t)n;
		}
		if (pfd.revents & (POLLIN | POLLHUP | POLLERR)) {
			n = recv(fd, in + got, len + 1 - got, MSG_DONTWAIT);
			if (n < 0 && errno != EAGAIN) {
				fprintf(stderr, "echo-client: conn %d: recv: %s\n", conn, strerror(errno));
				return -1;
			}
			if (n == 0) {
				eof = 1;
				if (got < len) {
					fprintf(stderr, "echo-client: conn %d: EOF after %zu of %zu bytes\n",
						conn, got, len);
					return -1;
				}
			}
			if (n > 0)
				got += (size_t)n;
			if (got > len) {
				fprintf(stderr, "echo-client: conn %d: more bytes back than sent\n", conn);
				return -1;
			}
		}
	}
	close(fd);
	if (memcmp(in, out, len) != 0) {
		fprintf(stderr, "echo-client: conn %d: echoed bytes differ\n", conn);
		return -1;
	}
	printf("conn %d: %zu bytes echoed%s\n", conn, len, half_close ? ", then EOF" : "");
	free(out);
	free(in);
	return 0;
}

int main(int argc, char **argv)
{
	int port, conns = 1, half_close = 0, i;
	size_t bytes = 1000;

	if (argc < 2) {
		fprintf(stderr, "usage: echo-client PORT [--conns N] [--bytes N] [--half-close]\n");
		return 2;
	}
	port = atoi(argv[1]);
	for (i = 2; i < argc; i++) {
		if (!strcmp(argv[i], "--conns") && i + 1 < argc)
			conns = atoi(argv[++i]);
		else if (!strcmp(argv[i], "--bytes") && i + 1 < argc)
			bytes = (size_t)atol(argv[++i]);
		else if (!strcmp(argv[i], "--half-close"))
			half_close = 1;
		else {
			fprintf(stderr, "echo-client: bad argument %s\n", argv[i]);
			return 2;
		}
	}
	for (i = 0; i < conns; i++)
		if (one_conn(port, i, bytes, half_close) < 0)
			return 1;
	return 0;
}
