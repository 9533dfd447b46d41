// Shared helpers for the micro-benchmarks.
// SPDX-License-Identifier: BSD-3-Clause
#pragma once

#include <arpa/inet.h>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

namespace micro {

inline sockaddr_in loopback(int port)
{
	sockaddr_in sin{};
	sin.sin_family = AF_INET;
	sin.sin_port = htons(static_cast<uint16_t>(port));
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	return sin;
}

[[noreturn]] inline void die(const char *what)
{
	std::perror(what);
	std::exit(1);
}

// A listening socket on 127.0.0.1, port chosen by the kernel.
inline int listen_socket(bool nonblocking, int *port_out)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | (nonblocking ? SOCK_NONBLOCK : 0), 0);
	if (fd < 0)
		die("socket");
	int one = 1;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	sockaddr_in sin = loopback(0);
	if (bind(fd, reinterpret_cast<sockaddr *>(&sin), sizeof(sin)) < 0 || listen(fd, 1024) < 0)
		die("bind/listen");
	socklen_t len = sizeof(sin);
	getsockname(fd, reinterpret_cast<sockaddr *>(&sin), &len);
	if (port_out)
		*port_out = ntohs(sin.sin_port);
	return fd;
}

// A connected client socket to 127.0.0.1:port (blocking connect; loopback
// completes the handshake without the server accepting).
inline int connect_to(int port)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		die("socket");
	sockaddr_in sin = loopback(port);
	if (connect(fd, reinterpret_cast<sockaddr *>(&sin), sizeof(sin)) < 0)
		die("connect");
	return fd;
}

} // namespace micro
