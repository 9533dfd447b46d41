#!/bin/bash
# turnserver (Debian's coturn 4.6, libevent 2.1.12): a STUN/TURN server whose
# TCP listeners are evconnlistener_new() on sockets it made itself
# (SO_REUSEPORT), one per relay thread, each thread with its own event_base;
# the listener callback takes the client's address from the callback's
# sockaddr and hands the fd to that thread's session code.
#
# Driven with STUN Binding requests over TCP (prog-netkit stun): the answer's
# XOR-MAPPED-ADDRESS is the address the listener callback was given, so every
# connection checks that evuring handed out that connection's own peer
# address (not a neighbour's from the same batch). 300 connections one after
# another, 1024 in groups of 64 open at once, 100 on the alternate port, and
# over IPv6 (::1) when the machine has it. Two relay threads: two bases, two
# rings, four listeners per address family. Plus the backend checks (ring /
# no ring / no evuring). turnserver has no SIGTERM handler: it must still be
# serving at the end, and dies of the signal as it does without evuring.
#
# Usage: coturn.sh --backend=uring|event|plain --preload=LIB
#                  --netkit=PATH --probe=PATH
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"

need_program turnserver coturn
need_uring_if_asked

port=$("$netkit" freeport) && alt_port=$("$netkit" freeport) || fail "no free port"
addrs=(127.0.0.1)
if ip -6 addr show dev lo 2>/dev/null | grep -q 'inet6 ::1/'; then
	addrs+=(::1)
else
	echo "note: no ::1 on lo, IPv6 part not run"
fi
listen_args=()
for a in "${addrs[@]}"; do listen_args+=(-L "$a"); done

# -n no config file; TCP only (no UDP/TLS/DTLS listeners), no auth, no CLI;
# everything (log, pid, database) in the temp dir.
start_program turnserver turnserver -n "${listen_args[@]}" -p "$port" \
	--alt-listening-port "$alt_port" --relay-threads 2 --no-udp --no-tls \
	--no-dtls -z --no-cli --no-stdout-log --simple-log -l "$tmp/turn.log" \
	--pidfile "$tmp/turn.pid" -b "$tmp/turndb"

stun() { "$netkit" stun "$@"; }
ready() { stun 127.0.0.1 "$port" 1 1 >/dev/null 2>&1; }
wait_until 20 ready || fail "no STUN answer on 127.0.0.1:$port within 20 s"
echo "ok: turnserver answers STUN on TCP 127.0.0.1:$port"
check_backend

for a in "${addrs[@]}"; do
	stun "$a" "$port" 300 1 || fail "sequential STUN over $a"
	stun "$a" "$port" 1024 64 || fail "STUN bursts over $a"
	stun "$a" "$alt_port" 100 10 || fail "STUN on the alternate port over $a"
done
echo "ok: every connection was told its own address"

alive || fail "turnserver died while serving"
check_backend
kill -TERM "$prog_pid"
expect_exit 15 SIGTERM 143
check_stderr
echo PASS
