/*
 * prog-netkit: helpers for the third-party program tests.
 *
 *   prog-netkit freeport
 *       print a TCP port on 127.0.0.1 that was free a moment ago (bound to
 *       port 0 and released; programs are then told to listen on it)
 *
 *   prog-netkit stun ADDR PORT CONNECTIONS AT_ONCE
 *       STUN Binding requests over TCP (RFC 5389) to ADDR:PORT: CONNECTIONS
 *       connections in groups of AT_ONCE open at the same time (every
 *       connection of a group is connected and has sent its request before
 *       any answer is read). Each answer must be a Binding success with the
 *       request's transaction id whose XOR-MAPPED-ADDRESS is this
 *       connection's own local address and port: the server learns that
 *       address from the listener callback's sockaddr, so this checks the
 *       peer address the listener handed out, connection by connection.
 *       Prints one summary line; exit 0 only if every answer was right.
 *
 * Plain POSIX, no libevent: nothing here is the code under test.
 *
 * SPDX-License-Identifier: BSD-3-Clause
 */
#define _POSIX_C_SOURCE 200809L
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define STUN_COOKIE 0x2112A442u
#define STUN_HDR 20
#define STUN_ATTR_XOR_MAPPED 0x0020
#define STUN_TIMEOUT_MS 10000

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

struct stun_conn {
	int fd;
	uint8_t txid[12];
	struct sockaddr_storage local;
	socklen_t local_len;
};

static void put16(uint8_t *p, unsigned v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}

static unsigned get16(const uint8_t *p)
{
	return (unsigned)p[0] << 8 | p[1];
}

static uint32_t get32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* Read exactly len bytes within the deadline of poll timeouts. */
static int read_full(int fd, uint8_t *buf, size_t len)
{
	size_t got = 0;

	while (got < len) {
		struct pollfd pfd = { .fd = fd, .events = POLLIN };
		ssize_t n;

		if (poll(&pfd, 1, STUN_TIMEOUT_MS) != 1)
			return -ETIMEDOUT;
		n = read(fd, buf + got, len - got);
		if (n == 0)
			return -ECONNRESET;
		if (n < 0 && errno != EINTR)
			return -errno;
		if (n > 0)
			got += (size_t)n;
	}
	return 0;
}

static int stun_send(struct stun_conn *c, const struct addrinfo *ai, unsigned serial)
{
	uint8_t req[STUN_HDR];
	ssize_t n;

	c->fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (c->fd < 0)
		return -errno;
	if (connect(c->fd, ai->ai_addr, ai->ai_addrlen) < 0)
		return -errno;
	c->local_len = sizeof(c->local);
	if (getsockname(c->fd, (struct sockaddr *)&c->local, &c->local_len) < 0)
		return -errno;
	put16(req, 0x0001); /* Binding request */
	put16(req + 2, 0);
	req[4] = 0x21, req[5] = 0x12, req[6] = 0xA4, req[7] = 0x42;
	for (int i = 0; i < 12; i++)
		c->txid[i] = (uint8_t)(serial >> (8 * (i % 4)) ^ (uint8_t)(i * 37 + 11));
	memcpy(req + 8, c->txid, 12);
	n = write(c->fd, req, sizeof(req));
	if (n != (ssize_t)sizeof(req))
		return n < 0 ? -errno : -EIO;
	return 0;
}

/* 0 if the answer is a Binding success for our request that names our own
 * local address; else a message on stderr and -1. */
static int stun_check(struct stun_conn *c, unsigned serial)
{
	uint8_t hdr[STUN_HDR], body[1024];
	unsigned len, off;
	int ret = read_full(c->fd, hdr, sizeof(hdr));

	if (ret < 0) {
		fprintf(stderr, "connection %u: no answer: %s\n", serial, strerror(-ret));
		return -1;
	}
	len = get16(hdr + 2);
	if (get16(hdr) != 0x0101 || get32(hdr + 4) != STUN_COOKIE ||
	    memcmp(hdr + 8, c->txid, 12) != 0 || len > sizeof(body) || len % 4) {
		fprintf(stderr, "connection %u: not a Binding success for our request "
				"(type 0x%04x, length %u)\n", serial, get16(hdr), len);
		return -1;
	}
	if ((ret = read_full(c->fd, body, len)) < 0) {
		fprintf(stderr, "connection %u: short answer: %s\n", serial, strerror(-ret));
		return -1;
	}
	for (off = 0; off + 4 <= len; off += 4 + ((get16(body + off + 2) + 3) & ~3u)) {
		unsigned type = get16(body + off), alen = get16(body + off + 2);
		const uint8_t *v = body + off + 4;
		unsigned port;

		if (type != STUN_ATTR_XOR_MAPPED || off + 4 + alen > len || alen < 8)
			continue;
		port = get16(v + 2) ^ (STUN_COOKIE >> 16);
		if (v[1] == 0x01 && alen == 8 && c->local.ss_family == AF_INET) {
			const struct sockaddr_in *sin = (const struct sockaddr_in *)&c->local;
			uint32_t ip = get32(v + 4) ^ STUN_COOKIE;

			if (port == ntohs(sin->sin_port) && ip == ntohl(sin->sin_addr.s_addr))
				return 0;
		} else if (v[1] == 0x02 && alen == 20 && c->local.ss_family == AF_INET6) {
			const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)&c->local;
			uint8_t ip[16];

			for (int i = 0; i < 16; i++)
				ip[i] = v[4 + i] ^ (i < 4 ? (uint8_t)(STUN_COOKIE >> (24 - 8 * i))
						      : c->txid[i - 4]);
			if (port == ntohs(sin6->sin6_port) &&
			    memcmp(ip, &sin6->sin6_addr, 16) == 0)
				return 0;
		}
		char want[INET6_ADDRSTRLEN] = "?";
		const void *a = c->local.ss_family == AF_INET
					? (const void *)&((struct sockaddr_in *)&c->local)->sin_addr
					: (const void *)&((struct sockaddr_in6 *)&c->local)->sin6_addr;
		inet_ntop(c->local.ss_family, a, want, sizeof(want));
		fprintf(stderr, "connection %u: XOR-MAPPED-ADDRESS (family %u, port %u) "
				"is not our own address %s port %u\n", serial, v[1], port, want,
			ntohs(((struct sockaddr_in *)&c->local)->sin_port));
		return -1;
	}
	fprintf(stderr, "connection %u: answer has no XOR-MAPPED-ADDRESS\n", serial);
	return -1;
}

static int stun_run(const char *addr, const char *port, unsigned total, unsigned at_once)
{
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICHOST },
			*ai = NULL;
	struct stun_conn *conns = NULL;
	unsigned ok = 0, serial = 0;
	int ret = getaddrinfo(addr, port, &hints, &ai);

	if (ret != 0) {
		fprintf(stderr, "prog-netkit: %s: %s\n", addr, gai_strerror(ret));
		return 1;
	}
	if (at_once == 0 || !(conns = calloc(at_once, sizeof(*conns)))) {
		freeaddrinfo(ai);
		return 2;
	}
	while (serial < total) {
		unsigned n = total - serial < at_once ? total - serial : at_once;

		for (unsigned i = 0; i < n; i++) {
			conns[i].fd = -1;
			if ((ret = stun_send(&conns[i], ai, serial + i)) < 0) {
				fprintf(stderr, "connection %u: %s\n", serial + i, strerror(-ret));
				if (conns[i].fd >= 0)
					close(conns[i].fd);
				conns[i].fd = -1; /* counted as failed */
			}
		}
		for (unsigned i = 0; i < n; i++) {
			if (conns[i].fd < 0)
				continue;
			if (stun_check(&conns[i], serial + i) == 0)
				ok++;
			close(conns[i].fd);
		}
		serial += n;
	}
	printf("stun %s port %s: %u of %u connections answered with their own address\n",
	       addr, port, ok, total);
	free(conns);
	freeaddrinfo(ai);
	return ok == total ? 0 : 1;
}

int main(int argc, char **argv)
{
	int port;

	if (argc == 6 && strcmp(argv[1], "stun") == 0)
		return stun_run(argv[2], argv[3], (unsigned)strtoul(argv[4], NULL, 10),
				(unsigned)strtoul(argv[5], NULL, 10));
	if (argc != 2 || strcmp(argv[1], "freeport") != 0) {
		fprintf(stderr, "usage: prog-netkit freeport\n"
				"       prog-netkit stun ADDR PORT CONNECTIONS AT_ONCE\n");
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
