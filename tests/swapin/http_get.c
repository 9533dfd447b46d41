/*
 * swapin_http_get: minimal HTTP/1.0 client, the fallback when curl is absent.
 *
 *   swapin_http_get PORT PATH BODYFILE
 *
 * Connects to 127.0.0.1:PORT, sends "GET PATH HTTP/1.0", reads the whole
 * response (10 s I/O timeout), writes the body to BODYFILE and prints the
 * status code on stdout, like `curl -o BODYFILE -w '%{http_code}'`.
 * Exit: 0 if a status line was parsed, 1 otherwise.
 *
 * SPDX-License-Identifier: BSD-3-Clause
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	static char resp[65536];
	char req[512];
	size_t have = 0;

	if (argc != 4) {
		fprintf(stderr, "usage: swapin_http_get PORT PATH BODYFILE\n");
		return 2;
	}
	struct sockaddr_in sin;
	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_port = htons((unsigned short)atoi(argv[1]));
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	struct timeval tv = { 10, 0 };
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) ||
	    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)) ||
	    connect(fd, (struct sockaddr *)&sin, sizeof(sin))) {
		perror("swapin_http_get: connect");
		return 1;
	}
	int len = snprintf(req, sizeof(req), "GET %s HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n", argv[2]);
	if (len <= 0 || (size_t)len >= sizeof(req) ||
	    send(fd, req, (size_t)len, MSG_NOSIGNAL) != len) {
		perror("swapin_http_get: send");
		return 1;
	}
	while (have < sizeof(resp) - 1) {
		ssize_t r = recv(fd, resp + have, sizeof(resp) - 1 - have, 0);
		if (r < 0) {
			perror("swapin_http_get: recv");
			return 1;
		}
		if (r == 0)
			break;
		have += (size_t)r;
	}
	close(fd);
	resp[have] = '\0';

	int code;
	char *body = strstr(resp, "\r\n\r\n");
	if (sscanf(resp, "HTTP/1.%*d %d", &code) != 1 || !body) {
		fprintf(stderr, "swapin_http_get: malformed response\n");
		return 1;
	}
	body += 4;
	FILE *f = fopen(argv[3], "wb");
	if (!f || fwrite(body, 1, have - (size_t)(body - resp), f) != have - (size_t)(body - resp)) {
		perror("swapin_http_get: body file");
		return 1;
	}
	fclose(f);
	printf("%d", code);
	return 0;
}
