#!/bin/bash
# libevent's sample hello-world (sample/hello-world.c of the installed
# libevent's source, linked against Debian's libevent by build.sh): the
# listener example of libevent's documentation, run unmodified with evuring
# preloaded. evconnlistener_new_bind() on port 9995 (all addresses; the port
# is fixed in the sample), LEV_OPT_REUSEABLE | LEV_OPT_CLOSE_ON_FREE,
# backlog -1; each connection gets a bufferevent that writes
# "Hello, World!\n", prints "flushed answer" and closes. SIGINT: the loop
# ends two seconds later, then the sample frees the listener outside the
# loop, prints "done" and exits 0.
#
# Clients (bash /dev/tcp): 200 connections one after another, 8 clients x 25
# at once, and 4 groups of 64 connections open at the same time before any
# is read. Every connection must read exactly the message and then EOF, and
# the sample must have printed one "flushed answer" per connection (counted
# after it exits: its stdout is a file, so fully buffered).
#
# Usage: hello-world.sh --backend=uring|event|plain --preload=LIB
#                       --netkit=PATH --probe=PATH --bindir=DIR
here=$(cd "$(dirname "$0")" && pwd)
. "$here/../programs/lib.sh"

server=$(need_built hello-world) || exit 77
need_uring_if_asked

port=9995
if (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null; then
	echo "SKIP: something already listens on port $port, which the sample hard-codes"
	exit 77
fi

# hello N: N connections one after another, each must read exactly the message.
hello() {
	local i got
	for ((i = 1; i <= $1; i++)); do
		got=$(timeout 10 cat </dev/tcp/127.0.0.1/$port) || { echo "connection $i: no answer"; return 1; }
		[ "$got" = "Hello, World!" ] || { echo "connection $i: got '$got'"; return 1; }
	done
}

# burst N: N connections open at once, then each read.
burst() {
	local i fds=() line rest
	for ((i = 0; i < $1; i++)); do
		exec {fd}<>/dev/tcp/127.0.0.1/$port || { echo "connect $i failed"; return 1; }
		fds+=("$fd")
	done
	for fd in "${fds[@]}"; do
		IFS= read -r -t 10 line <&"$fd" && [ "$line" = "Hello, World!" ] &&
			! IFS= read -r -t 10 rest <&"$fd" && [ -z "$rest" ] ||
			{ echo "fd $fd: got '$line' then '$rest'"; return 1; }
		exec {fd}<&-
	done
}

start_program hello-world "$server"
ready() { (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null; }
wait_until 20 ready || fail "hello-world not listening on $port within 20 s"
# The port is hard-coded: make sure the listener that answered is ours.
sleep 0.2
alive || fail "hello-world exited (could it not bind port $port?)"
ss -Hltnp "sport = :$port" 2>/dev/null | grep -q "pid=$prog_pid," ||
	fail "port $port is not held by our hello-world (pid $prog_pid): $(ss -Hltnp "sport = :$port" 2>&1)"
check_backend

hello 200 || fail "sequential connections"
echo "ok: 200 connections one after another, each read the message, then EOF"
pids=
for ((c = 1; c <= 8; c++)); do
	hello 25 >"$tmp/client.$c.out" 2>&1 &
	pids+=" $!"
done
wait_jobs $pids
[ $jobs_failed -eq 0 ] || { cat "$tmp"/client.*.out; fail "$jobs_failed of 8 concurrent clients"; }
echo "ok: 8 clients x 25 connections at once"
for g in 1 2 3 4; do burst 64 || fail "group $g of 64 connections open at once"; done
echo "ok: 4 groups of 64 connections open at once, each read the message, then EOF"
check_backend

stop_program INT
grep -q '^done$' "$tmp/prog.out" || fail "no 'done' after SIGINT"
# 656 answers read, plus the readiness probe's connection, which closes at
# once (its answer may be flushed or fail).
got=$(grep -c '^flushed answer$' "$tmp/prog.out")
[ "$got" -ge 656 ] && [ "$got" -le 657 ] ||
	fail "the sample flushed $got answers, expected 656 (657 with the probe's)"
echo "ok: the sample flushed $got answers: one per connection"
check_stderr
echo PASS
