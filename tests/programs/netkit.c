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
 *   prog-netkit http-peer ADDR PORT CONNECTIONS AT_ONCE
 *       the same for an HTTP server that answers "GET /peer" (HTTP/1.0, so
 *       it closes after the answer) with a 200 whose body is the peer
 *       address it was given: "<host> <port>\n" (tests/programs/evhtp_peer.c).
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
#define PEER_TIMEOUT_MS 10000

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

struct peer_conn {
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

		if (poll(&pfd, 1, PEER_TIMEOUT_MS) != 1)
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

/* Connect, and note our own address: what the server must name. */
static int conn_open(struct peer_conn *c, const struct addrinfo *ai)
{
	c->fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (c->fd < 0)
		return -errno;
	if (connect(c->fd, ai->ai_addr, ai->ai_addrlen) < 0)
		return -errno;
	c->local_len = sizeof(c->local);
	if (getsockname(c->fd, (struct sockaddr *)&c->local, &c->local_len) < 0)
		return -errno;
	return 0;
}

static int write_all(int fd, const void *buf, size_t len)
{
	ssize_t n = write(fd, buf, len);

	if (n != (ssize_t)len)
		return n < 0 ? -errno : -EIO;
	return 0;
}

/* "<host> <port>" of our own address. */
static void local_text(const struct peer_conn *c, char *buf, size_t size)
{
	char host[INET6_ADDRSTRLEN] = "?";
	const void *a = c->local.ss_family == AF_INET
				? (const void *)&((const struct sockaddr_in *)&c->local)->sin_addr
				: (const void *)&((const struct sockaddr_in6 *)&c->local)->sin6_addr;

	inet_ntop(c->local.ss_family, a, host, sizeof(host));
	snprintf(buf, size, "%s %u", host,
		 ntohs(((const struct sockaddr_in *)&c->local)->sin_port));
}

static int stun_request(struct peer_conn *c, unsigned serial)
{
	uint8_t req[STUN_HDR];

	put16(req, 0x0001); /* Binding request */
	put16(req + 2, 0);
	req[4] = 0x21, req[5] = 0x12, req[6] = 0xA4, req[7] = 0x42;
	for (int i = 0; i < 12; i++)
		c->txid[i] = (uint8_t)(serial >> (8 * (i % 4)) ^ (uint8_t)(i * 37 + 11));
	memcpy(req + 8, c->txid, 12);
	return write_all(c->fd, req, sizeof(req));
}

/* 0 if the answer is a Binding success for our request that names our own
 * local address; else a message on stderr and -1. */
static int stun_check(struct peer_conn *c, unsigned serial)
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
		char want[INET6_ADDRSTRLEN + 8];

		local_text(c, want, sizeof(want));
		fprintf(stderr, "connection %u: XOR-MAPPED-ADDRESS (family %u, port %u) "
				"is not our own address %s\n", serial, v[1], port, want);
		return -1;
	}
	fprintf(stderr, "connection %u: answer has no XOR-MAPPED-ADDRESS\n", serial);
	return -1;
}

static int http_request(struct peer_conn *c, unsigned serial)
{
	static const char req[] = "GET /peer HTTP/1.0\r\nHost: evuring-test\r\n\r\n";

	(void)serial;
	return write_all(c->fd, req, sizeof(req) - 1);
}

/* 0 if the whole answer (to EOF) is a 200 whose body names our own address. */
static int http_check(struct peer_conn *c, unsigned serial)
{
	char buf[4096], want[INET6_ADDRSTRLEN + 16];
	const char *body;
	size_t got = 0;

	for (;;) {
		struct pollfd pfd = { .fd = c->fd, .events = POLLIN };
		ssize_t n;

		if (poll(&pfd, 1, PEER_TIMEOUT_MS) != 1) {
			fprintf(stderr, "connection %u: no whole answer within %d ms\n", serial,
				PEER_TIMEOUT_MS);
			return -1;
		}
		n = read(c->fd, buf + got, sizeof(buf) - 1 - got);
		if (n == 0)
			break;
		if (n < 0 && errno != EINTR) {
			fprintf(stderr, "connection %u: %s\n", serial, strerror(errno));
			return -1;
		}
		if (n > 0 && (got += (size_t)n) == sizeof(buf) - 1)
			break;
	}
	buf[got] = '\0';
	local_text(c, want, sizeof(want) - 1);
	strcat(want, "\n");
	body = strstr(buf, "\r\n\r\n");
	if (strncmp(buf, "HTTP/1.", 7) != 0 || strncmp(buf + 8, " 200 ", 5) != 0 || !body ||
	    strcmp(body + 4, want) != 0) {
		fprintf(stderr, "connection %u: answer is not a 200 naming our own address "
				"%.*s: '%s'\n", serial, (int)strlen(want) - 1, want, buf);
		return -1;
	}
	return 0;
}

/* A request/answer exchange that tells the client the peer address the
 * server got from its listener. */
struct peer_proto {
	const char *name;
	int (*request)(struct peer_conn *c, unsigned serial);
	int (*check)(struct peer_conn *c, unsigned serial);
};

static const struct peer_proto protos[] = {
	{ "stun", stun_request, stun_check },
	{ "http-peer", http_request, http_check },
};

static int peer_run(const struct peer_proto *proto, const char *addr, const char *port,
		    unsigned total, unsigned at_once)
{
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICHOST },
			*ai = NULL;
	struct peer_conn *conns = NULL;
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
			if ((ret = conn_open(&conns[i], ai)) < 0 ||
			    (ret = proto->request(&conns[i], serial + i)) < 0) {
				fprintf(stderr, "connection %u: %s\n", serial + i, strerror(-ret));
				if (conns[i].fd >= 0)
					close(conns[i].fd);
				conns[i].fd = -1; /* counted as failed */
			}
		}
		for (unsigned i = 0; i < n; i++) {
			if (conns[i].fd < 0)
				continue;
			if (proto->check(&conns[i], serial + i) == 0)
				ok++;
			close(conns[i].fd);
		}
		serial += n;
	}
	printf("%s %s port %s: %u of %u connections answered with their own address\n",
	       proto->name, addr, port, ok, total);
	free(conns);
	freeaddrinfo(ai);
	return ok == total ? 0 : 1;
}

int main(int argc, char **argv)
{
	int port;

	for (size_t i = 0; argc == 6 && i < sizeof(protos) / sizeof(protos[0]); i++)
		if (strcmp(argv[1], protos[i].name) == 0)
			return peer_run(&protos[i], argv[2], argv[3],
					(unsigned)strtoul(argv[4], NULL, 10),
					(unsigned)strtoul(argv[5], NULL, 10));
	if (argc != 2 || strcmp(argv[1], "freeport") != 0) {
		fprintf(stderr, "usage: prog-netkit freeport\n"
				"       prog-netkit stun|http-peer ADDR PORT CONNECTIONS AT_ONCE\n");
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
