#!/bin/bash
# Drive swapin_http with a real HTTP client.
#
#   run_http.sh --server=PATH --requests=N --expect-ring=0|1
#               [--preload=LIB] [--client=auto|curl|raw] [--raw-client=PATH]
#
# Starts the server (with LD_PRELOAD=LIB for the server only, never for the
# client), reads its port, fetches / N times (each fetch a new connection),
# checks every answer is 200 with body "hello", stops the server with
# SIGTERM and checks its exit status and report. The client is curl when
# installed (--client=auto), else the small C client given by --raw-client.
# Bounded: 10 s for the port, 10 s per fetch, 10 s for the server to exit;
# the server is killed on any failure. Exit 0 pass, 1 fail, 77 skip.
set -u

server= requests=5 expect= preload= client=auto raw=
for arg in "$@"; do
	case $arg in
	--server=*) server=${arg#*=} ;;
	--requests=*) requests=${arg#*=} ;;
	--expect-ring=*) expect=${arg#*=} ;;
	--preload=*) preload=${arg#*=} ;;
	--client=*) client=${arg#*=} ;;
	--raw-client=*) raw=${arg#*=} ;;
	*) echo "run_http.sh: unknown argument $arg" >&2; exit 2 ;;
	esac
done
[ -x "$server" ] && [ -n "$expect" ] || { echo "run_http.sh: need --server and --expect-ring" >&2; exit 2; }

if [ "$client" = auto ]; then
	if command -v curl >/dev/null 2>&1; then client=curl; else client=raw; fi
fi
case $client in
curl) command -v curl >/dev/null 2>&1 || { echo "SKIP: curl not installed"; exit 77; } ;;
raw) [ -x "$raw" ] || { echo "SKIP: no curl and no raw client"; exit 77; } ;;
*) echo "run_http.sh: bad --client=$client" >&2; exit 2 ;;
esac
echo "client: $client${preload:+, server preloaded with $preload}"

tmp=$(mktemp -d) || exit 1
server_pid=
cleanup() {
	if [ -n "$server_pid" ] && kill -0 "$server_pid" 2>/dev/null; then
		kill -KILL "$server_pid" 2>/dev/null
		wait "$server_pid" 2>/dev/null
	fi
	rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

show_server() {
	echo "--- server stdout"; cat "$tmp/out"
	echo "--- server stderr"; cat "$tmp/err"
	echo "---"
}

if [ -n "$preload" ]; then
	env LD_PRELOAD="$preload" "$server" --requests="$requests" --expect-ring="$expect" \
		>"$tmp/out" 2>"$tmp/err" &
else
	"$server" --requests="$requests" --expect-ring="$expect" >"$tmp/out" 2>"$tmp/err" &
fi
server_pid=$!

port=
for _ in $(seq 100); do
	port=$(sed -n 's/^PORT \([0-9][0-9]*\)$/\1/p' "$tmp/out")
	[ -n "$port" ] && break
	kill -0 "$server_pid" 2>/dev/null || break
	sleep 0.1
done
if [ -z "$port" ]; then
	echo "FAIL: server did not report a port"
	show_server
	exit 1
fi
echo "server pid $server_pid on port $port"

fail=0
for i in $(seq "$requests"); do
	rm -f "$tmp/body"
	if [ "$client" = curl ]; then
		code=$(curl -sS --max-time 10 -o "$tmp/body" -w '%{http_code}' \
			"http://127.0.0.1:$port/" 2>"$tmp/client_err")
	else
		code=$(timeout 15 "$raw" "$port" / "$tmp/body" 2>"$tmp/client_err")
	fi
	body=$(cat "$tmp/body" 2>/dev/null)
	if [ "$code" != 200 ] || [ "$body" != hello ]; then
		echo "FAIL: request $i: status '$code' body '$body' $(cat "$tmp/client_err")"
		fail=1
		break
	fi
done
[ $fail = 0 ] && echo "$requests requests answered 200 hello"

kill -TERM "$server_pid" 2>/dev/null
for _ in $(seq 100); do
	kill -0 "$server_pid" 2>/dev/null || break
	sleep 0.1
done
if kill -0 "$server_pid" 2>/dev/null; then
	echo "FAIL: server did not exit within 10 s of SIGTERM"
	show_server
	exit 1
fi
wait "$server_pid"
rc=$?
server_pid=
show_server
if [ $rc != 0 ]; then
	echo "FAIL: server exited with status $rc"
	exit 1
fi
[ $fail = 0 ] || exit 1
echo PASS
