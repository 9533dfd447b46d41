# Shared by the example test drivers (sourced, bash).
#
#   start_server NAME CMD [ARG]...   run CMD in the background (stdout and
#                                    stderr to $tmp/NAME.out/.err), wait up to
#                                    10 s for its "PORT <n>" line; sets $PORT
#   wait_server NAME [SECONDS]       wait (default 10 s) for NAME to exit by
#                                    itself; fails unless its status is 0
#   fail MESSAGE                     print MESSAGE and every server's output,
#                                    exit 1 (the EXIT trap kills the servers)
#
# SPDX-License-Identifier: BSD-3-Clause
set -u

tmp=$(mktemp -d) || exit 1
declare -A server_pid=()

show_servers() {
	local name
	for name in "${!server_pid[@]}"; do
		echo "--- $name stdout"; cat "$tmp/$name.out" 2>/dev/null
		echo "--- $name stderr"; cat "$tmp/$name.err" 2>/dev/null
	done
	echo "---"
}

cleanup() {
	local name pid
	for name in "${!server_pid[@]}"; do
		pid=${server_pid[$name]}
		if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
			kill -KILL "$pid" 2>/dev/null
			wait "$pid" 2>/dev/null
		fi
	done
	rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

fail() {
	echo "FAIL: $*"
	show_servers
	exit 1
}

start_server() {
	local name=$1 i
	shift
	"$@" >"$tmp/$name.out" 2>"$tmp/$name.err" &
	server_pid[$name]=$!
	PORT=
	for i in $(seq 100); do
		PORT=$(sed -n 's/^PORT \([0-9][0-9]*\)$/\1/p' "$tmp/$name.out")
		[ -n "$PORT" ] && break
		kill -0 "${server_pid[$name]}" 2>/dev/null || break
		sleep 0.1
	done
	[ -n "$PORT" ] || fail "$name did not report its port"
	echo "$name: pid ${server_pid[$name]}, port $PORT, $(grep -m1 BACKEND "$tmp/$name.out")"
}

wait_server() {
	local name=$1 limit=${2:-10} pid i rc
	pid=${server_pid[$name]}
	for i in $(seq $((limit * 10))); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	kill -0 "$pid" 2>/dev/null && fail "$name did not exit within $limit s"
	wait "$pid"
	rc=$?
	server_pid[$name]=
	[ $rc = 0 ] || fail "$name exited with status $rc"
}

# line_echo PORT N: over one connection (bash /dev/tcp), send N lines one at a
# time and read each back (5 s per line).
line_echo() {
	local port=$1 n=$2 i line
	exec 3<>"/dev/tcp/127.0.0.1/$port" || fail "cannot connect to port $port"
	for i in $(seq "$n"); do
		printf 'hello %d from the line client\n' "$i" >&3
		IFS= read -r -t 5 line <&3 || fail "line $i: no echo within 5 s"
		[ "$line" = "hello $i from the line client" ] || fail "line $i: got '$line'"
	done
	exec 3<&-
	echo "line client: $n lines echoed"
}
