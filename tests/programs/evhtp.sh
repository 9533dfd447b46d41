#!/bin/bash
# libevhtp (Debian's libevhtp0 1.2.18, libevent 2.1.12): an HTTP server
# library that makes its own listener: evhtp_bind_socket() creates the
# socket and calls evconnlistener_new() on it from libevhtp.so, and its
# accept callback keeps a copy of the callback's sockaddr as the
# connection's address; with evhtp_use_threads_wexit() it hands each fd to
# a worker thread's event_base. Driven through prog-evhtp (evhtp_peer.c, the
# smallest server on libevhtp, linked with Debian's libevhtp and libevent
# only), whose GET /peer answers that address.
#
# prog-netkit http-peer checks every answer names the connection's own local
# address and port (a neighbour's address from the same batch fails): 300
# connections one after another and 1024 in groups of 64 open at once, with
# 2 worker threads over 127.0.0.1, then without threads over ::1 when lo has
# it (else 127.0.0.1 again). GET /quit: the listener is freed
# (evhtp_unbind_socket), then everything else, exit 0.
#
# Usage: evhtp.sh --backend=uring|event|plain --preload=LIB
#                 --netkit=PATH --probe=PATH --bindir=DIR
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"

server=$(need_built prog-evhtp "Debian package libevhtp-dev at configure time; scripts/setup-debian.sh --tests installs it") ||
	exit 77
need_program curl curl
need_uring_if_asked

# serve HOST THREADS: one prog-evhtp from start to its clean exit.
serve() {
	local host=$1 threads=$2 port family=ipv4
	case $host in *:*) family=ipv6 ;; esac
	port=$("$netkit" freeport) || fail "no free port"
	start_program prog-evhtp "$server" "$family:$host" "$port" "$threads"
	wait_until 10 grep -q READY "$tmp/prog.out" || fail "prog-evhtp not ready on $host:$port"
	echo "ok: libevhtp listens on $host port $port, $threads worker threads"
	check_backend
	"$netkit" http-peer "$host" "$port" 300 1 || fail "sequential connections over $host"
	"$netkit" http-peer "$host" "$port" 1024 64 || fail "bursts over $host"
	echo "ok: every connection was told its own address"
	check_backend
	alive || fail "prog-evhtp died while serving"
	curl -s --max-time 10 -o /dev/null -g "http://${host/*:*/[$host]}:$port/quit"
	expect_exit 15 "GET /quit"
	check_stderr
}

serve 127.0.0.1 2
if ip -6 addr show dev lo 2>/dev/null | grep -q 'inet6 ::1/'; then
	serve ::1 0
else
	echo "note: no ::1 on lo, IPv6 part not run"
	serve 127.0.0.1 0
fi
echo PASS
