#!/bin/bash
# transmission-daemon (Debian's build, libevent 2.1.12): its RPC server is an
# evhttp bound with evhttp_bind_socket(), so libevent itself calls
# evconnlistener_new_bind() from the daemon's event thread; preloaded, that
# call lands in evuring.
#
# Drives the JSON-RPC interface with curl, each request a new connection:
# the CSRF handshake (409 + X-Transmission-Session-Id), then 120 sequential
# requests alternating session-set/session-get (a value written is read
# back), the web UI's index.html byte for byte, and 8 clients at once with 5
# requests each. Checks the backend (ring / no ring / no evuring), that the
# daemon is alive after all that, and that it exits 0 on SIGTERM having
# saved its settings.
#
# Usage: transmission.sh --backend=uring|event|plain --preload=LIB
#                        --netkit=PATH --probe=PATH
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"

need_program transmission-daemon transmission-daemon
command -v curl >/dev/null 2>&1 || { echo "SKIP: curl not installed"; exit 77; }
need_uring_if_asked

rpc_port=$("$netkit" freeport) && peer_port=$("$netkit" freeport) || fail "no free port"
mkdir -p "$tmp/config" "$tmp/downloads"
url=http://127.0.0.1:$rpc_port/transmission/rpc

# -f foreground; -g config dir; -T no RPC auth; -r bind RPC to 127.0.0.1;
# -M no port mapping, -O no DHT, no LPD: nothing reaches past loopback.
start_program transmission-daemon transmission-daemon -f -g "$tmp/config" \
	-w "$tmp/downloads" -p "$rpc_port" -r 127.0.0.1 -T -P "$peer_port" -M -O \
	--no-lpd --no-utp --no-incomplete-dir -e "$tmp/daemon.log" --log-info

# The CSRF handshake: the first request is refused with 409 and a session id.
session_id() {
	curl -sS --max-time 3 -D "$tmp/hdr" -o /dev/null "$url" 2>/dev/null &&
		sid=$(sed -n 's/^X-Transmission-Session-Id: *\([A-Za-z0-9]*\).*/\1/p' "$tmp/hdr") &&
		[ -n "$sid" ]
}
sid=
wait_until 20 session_id || fail "RPC port $rpc_port did not answer with a session id within 20 s"
grep -q '^HTTP/1.1 409' "$tmp/hdr" || fail "first RPC request not answered 409: $(head -1 "$tmp/hdr")"
echo "ok: RPC on port $rpc_port, session id $sid"

check_backend

# rpc JSON: one request on a new connection; prints the body, fails unless 200.
rpc() {
	local code f=$tmp/body.$BASHPID
	code=$(curl -sS --max-time 10 -o "$f" -w '%{http_code}' \
		-H "X-Transmission-Session-Id: $sid" -H 'Connection: close' \
		--data-binary "$1" "$url") || return 1
	[ "$code" = 200 ] || { echo "HTTP $code" >&2; return 1; }
	cat "$f"
}

version=$(transmission-daemon -V 2>&1 | sed -n 's/^transmission-daemon \([0-9.]*\).*/\1/p')
n=120
for ((i = 1; i <= n; i++)); do
	if ((i % 2)); then
		body=$(rpc "{\"method\":\"session-set\",\"arguments\":{\"speed-limit-down\":$i},\"tag\":$i}") ||
			fail "request $i (session-set) failed"
		[[ $body == *'"result":"success"'* && $body == *"\"tag\":$i"* ]] ||
			fail "request $i: unexpected answer $body"
	else
		body=$(rpc "{\"method\":\"session-get\",\"arguments\":{\"fields\":[\"speed-limit-down\",\"version\",\"peer-port\"]},\"tag\":$i}") ||
			fail "request $i (session-get) failed"
		[[ $body == *"\"speed-limit-down\":$((i - 1))"* ]] ||
			fail "request $i: speed-limit-down set by request $((i - 1)) not read back: $body"
		[[ $body == *"\"peer-port\":$peer_port"* && $body == *"\"version\":\"$version"* ]] ||
			fail "request $i: wrong peer-port/version in $body"
	fi
done
echo "ok: $n sequential RPC requests (each a new connection), values read back"

# The web UI: a static file served by the same evhttp.
index=/usr/share/transmission/web/index.html
if [ -f "$index" ]; then
	code=$(curl -sS --max-time 10 -o "$tmp/index.html" -w '%{http_code}' \
		"http://127.0.0.1:$rpc_port/transmission/web/index.html") || fail "web UI fetch failed"
	[ "$code" = 200 ] && cmp -s "$index" "$tmp/index.html" ||
		fail "web UI: HTTP $code, body differs from $index"
	echo "ok: web UI index.html served byte for byte"
fi

# 8 clients at once, 5 requests each.
for c in 1 2 3 4 5 6 7 8; do
	(
		for r in 1 2 3 4 5; do
			body=$(rpc "{\"method\":\"session-stats\",\"tag\":$((c * 100 + r))}") || exit 1
			[[ $body == *'"result":"success"'* && $body == *"\"tag\":$((c * 100 + r))"* ]] || exit 1
		done
	) &
	pids+=" $!"
done
wait_jobs $pids
[ $jobs_failed -eq 0 ] || fail "$jobs_failed of 8 concurrent clients failed"
echo "ok: 8 concurrent clients x 5 requests"

check_backend
stop_program TERM
grep -q 'Closing transmission session... done.' "$tmp/prog.out" ||
	fail "no clean 'Closing transmission session... done.'"
grep -q '"speed-limit-down": 119' "$tmp/config/settings.json" ||
	fail "settings.json does not hold the last speed-limit-down (119)"
echo "ok: settings saved on exit"
check_stderr
echo PASS
