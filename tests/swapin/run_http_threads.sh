#!/bin/bash
# Drive swapin_http_threads (4 evhttp loops on one socket) with curl: while
# one loop is blocked for 2 s in a "/slow" request, 5 requests to "/" (each
# a new connection) must each be answered by another loop, as with
# libevent's listener, within 0.5 s: far below the 2 s a connection held by
# the blocked loop waits, and above what starting curl costs on a loaded
# 2-CPU machine (the in-process tests shared_stall.* hold evuring to 50 ms);
# then "/slow" is answered too.
#
#   run_http_threads.sh --server=PATH [--preload=LIB]
#
# Starts the server (with LD_PRELOAD=LIB for the server only), stops it with
# SIGTERM and checks its exit status. Exit 0 pass, 1 fail, 77 skip (no curl).
set -u

server= preload=
for arg in "$@"; do
	case $arg in
	--server=*) server=${arg#*=} ;;
	--preload=*) preload=${arg#*=} ;;
	*) echo "run_http_threads.sh: unknown argument $arg" >&2; exit 2 ;;
	esac
done
[ -x "$server" ] || { echo "run_http_threads.sh: need --server" >&2; exit 2; }
command -v curl >/dev/null 2>&1 || { echo "SKIP: curl not installed"; exit 77; }
echo "server${preload:+ preloaded with $preload}"

tmp=$(mktemp -d) || exit 1
server_pid= slow_pid=
cleanup() {
	for p in $server_pid $slow_pid; do
		kill -KILL "$p" 2>/dev/null
		wait "$p" 2>/dev/null
	done
	rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

if [ -n "$preload" ]; then
	env LD_PRELOAD="$preload" "$server" --threads=4 >"$tmp/out" 2>"$tmp/err" &
else
	"$server" --threads=4 >"$tmp/out" 2>"$tmp/err" &
fi
server_pid=$!
port=
for _ in $(seq 100); do
	port=$(sed -n 's/^PORT \([0-9][0-9]*\)$/\1/p' "$tmp/out")
	[ -n "$port" ] && break
	kill -0 "$server_pid" 2>/dev/null || break
	sleep 0.1
done
[ -n "$port" ] || { echo "FAIL: server did not report a port"; cat "$tmp/out" "$tmp/err"; exit 1; }

fetch() { # path -> "code seconds", body in $tmp/body
	curl -sS --max-time 10 -o "$tmp/body" -w '%{http_code} %{time_total}' \
		"http://127.0.0.1:$port$1" 2>>"$tmp/client_err"
}

# warm the loops up, then block one
for _ in $(seq 8); do fetch / >/dev/null; done
curl -sS --max-time 10 -o "$tmp/slow_body" -w '%{http_code} %{time_total}' \
	"http://127.0.0.1:$port/slow" >"$tmp/slow" 2>>"$tmp/client_err" &
slow_pid=$!
sleep 0.2

fail=0 worst=0
for i in $(seq 5); do
	read -r code secs <<<"$(fetch /)"
	body=$(cat "$tmp/body" 2>/dev/null)
	if [ "$code" != 200 ] || [ "$body" != hello ]; then
		echo "FAIL: request $i while a loop is blocked: status '$code' body '$body'"
		fail=1
		break
	fi
	worst=$(awk -v a="$worst" -v b="$secs" 'BEGIN { print (b > a) ? b : a }')
done
if ! kill -0 "$slow_pid" 2>/dev/null; then
	echo "FAIL: the 5 requests took longer than the blocked loop (2 s)"
	fail=1
fi
echo "while one loop was blocked: 5 requests, slowest answered in ${worst} s"
if awk -v w="$worst" 'BEGIN { exit !(w > 0.5) }'; then
	echo "FAIL: a request waited more than 0.5 s while another loop was free"
	fail=1
fi
wait "$slow_pid"
slow_pid=
read -r code secs <"$tmp/slow"
echo "/slow: status $code after $secs s"
[ "$code" = 200 ] || { echo "FAIL: /slow was not answered"; fail=1; }

kill -TERM "$server_pid" 2>/dev/null
for _ in $(seq 100); do
	kill -0 "$server_pid" 2>/dev/null || break
	sleep 0.1
done
if kill -0 "$server_pid" 2>/dev/null; then
	echo "FAIL: server did not exit within 10 s of SIGTERM"
	fail=1
else
	wait "$server_pid"
	rc=$?
	server_pid=
	[ $rc = 0 ] || { echo "FAIL: server exited with status $rc"; fail=1; }
fi
echo "--- server stdout"; cat "$tmp/out"
echo "--- server stderr"; cat "$tmp/err"
[ -s "$tmp/client_err" ] && { echo "--- curl"; cat "$tmp/client_err"; }
[ $fail = 0 ] || exit 1
echo PASS
