#!/bin/bash
# ustreamer (Debian's ustreamer 4.9, libevent 2.1.12): an MJPEG streaming
# server whose HTTP side is an evhttp, bound with evhttp_bind_socket() on TCP
# (libevent then calls evconnlistener_new_bind() internally) or, with -U,
# with evhttp_accept_socket() on a UNIX socket it made itself (libevent calls
# evconnlistener_new()). The evhttp's base is made in the main thread and
# run in ustreamer's own "http" thread; encoding runs in worker threads.
#
# No camera here: pointed at a device that does not exist, ustreamer keeps
# serving a "NO SIGNAL" JPEG, which is all this test needs. Driven by curl:
#   - /state (JSON) and /snapshot (one whole JPEG) over 100 sequential
#     connections, and 8 concurrent clients x 10;
#   - 24 /stream clients opened at once: each must get a multipart MJPEG
#     stream (at least one whole frame and the start of the next), and ustreamer logs every stream
#     client's address ("Registered client: [127.0.0.1]:PORT"), which evhttp
#     took from the listener callback: each must be that curl's own local
#     port (a neighbour's address from the same batch fails);
#   - /state while a stream is open counts it;
#   - the same again over ::1 when lo has it, then over a UNIX socket (-U);
#   - SIGTERM: ustreamer exits 0.
# Plus the backend checks (ring / no ring / no evuring) and stderr.
#
# Usage: ustreamer.sh --backend=uring|event|plain --preload=LIB
#                     --netkit=PATH --probe=PATH
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"

need_program ustreamer ustreamer
need_program curl curl
need_uring_if_asked

# ustreamer logs to stderr; the [evuring] lines go there too.
log=$tmp/prog.err
nodev=$tmp/no-such-video-device
base_url= curl_to=()

get() { curl -s --max-time 10 "${curl_to[@]}" "$@"; }

is_jpeg() { # FILE: starts with SOI, ends with EOI
	[ "$(head -c 2 "$1" | od -An -tx1 | tr -d ' \n')" = ffd8 ] &&
		[ "$(tail -c 2 "$1" | od -An -tx1 | tr -d ' \n')" = ffd9 ]
}

state_ok() { get "$base_url/state" | grep -q '^{"ok": true, "result": {'; }

# requests N TAG: N times /state then /snapshot, each on a new connection.
requests() {
	local i
	for ((i = 1; i <= $1; i++)); do
		state_ok || { echo "$2: /state $i wrong"; return 1; }
		get -o "$tmp/snap.$2" "$base_url/snapshot" && is_jpeg "$tmp/snap.$2" ||
			{ echo "$2: /snapshot $i not a whole JPEG"; return 1; }
	done
}

# streams N HOST_RE: N /stream clients at once for 3 s each. Each must see
# two frame boundaries (a whole frame and the next one's start); with
# HOST_RE, ustreamer's log must name each client by its own local port.
streams() {
	local n=$1 host_re=${2:-} c pids= frames port bad=0 fewest=''
	for ((c = 1; c <= n; c++)); do
		curl -s --max-time 3 "${curl_to[@]}" -o "$tmp/stream.$c" \
			-w '%{local_port} %{content_type}\n' "$base_url/stream" \
			>"$tmp/stream.$c.info" 2>/dev/null &
		pids+=" $!"
	done
	# While the streams are open, /state counts them.
	counted() { get "$base_url/state" >"$tmp/state.during" &&
		grep -q "\"clients\": $n," "$tmp/state.during"; }
	wait_until 2 counted ||
		{ cat "$tmp/state.during"; echo; fail "/state did not count $n open streams"; }
	wait_jobs $pids # curl ends them with a timeout (28): expected
	for ((c = 1; c <= n; c++)); do
		read -r port ctype <"$tmp/stream.$c.info"
		[ "$ctype" = "multipart/x-mixed-replace;boundary=boundarydonotcross" ] ||
			{ echo "stream $c: content type '$ctype'"; bad=$((bad + 1)); continue; }
		frames=$(grep -ac -- '^--boundarydonotcross' "$tmp/stream.$c")
		[ "$frames" -ge 2 ] ||
			{ echo "stream $c: $frames frames"; bad=$((bad + 1)); continue; }
		[ -n "$fewest" ] && [ "$fewest" -le "$frames" ] || fewest=$frames
		if [ -n "$host_re" ]; then
			grep -qE "Registered client: \\[$host_re\\]:$port, " "$log" ||
				{ echo "stream $c: no 'Registered client' line for local port $port"; bad=$((bad + 1)); }
		fi
	done
	[ $bad -eq 0 ] || fail "$bad of $n streams wrong"
	echo "ok: $n streams at once, each $([ -n "$host_re" ] && echo "logged with its own address, ")at least 2 frame boundaries (fewest: $fewest)"
}

# serve WHAT HOST_RE: the checks above against the running ustreamer.
serve() {
	wait_until 20 state_ok || fail "ustreamer not answering on $1 within 20 s"
	echo "ok: ustreamer answers on $1"
	check_backend
	requests 100 seq || fail "sequential requests on $1"
	echo "ok: 100 x (/state, /snapshot), each a new connection"
	local c pids=
	for ((c = 1; c <= 8; c++)); do
		requests 10 "c$c" >"$tmp/client.$c.out" 2>&1 &
		pids+=" $!"
	done
	wait_jobs $pids
	[ $jobs_failed -eq 0 ] || { cat "$tmp"/client.*.out; fail "$jobs_failed of 8 concurrent clients on $1"; }
	echo "ok: 8 concurrent clients x 10 x (/state, /snapshot)"
	streams 24 "$2"
	check_backend
}

# run ARGS...: one ustreamer from start to a clean exit on SIGTERM.
run() {
	start_program ustreamer ustreamer -d "$nodev" --device-error-delay 1 "$@"
	serve "$what" "$host_re"
	stop_program TERM
	check_stderr
	# The base is made in the main thread and run in the "http" thread: on a
	# DEFER_TASKRUN ring evuring moves the listener to a ring of that thread.
	if grep -q 'base now runs in another thread; moving its listeners' "$log"; then
		echo "note: evuring moved the listener to a ring of ustreamer's http thread"
	fi
}

port=$("$netkit" freeport) || fail "no free port"
what="127.0.0.1:$port" host_re='127\.0\.0\.1' base_url="http://127.0.0.1:$port" curl_to=()
run -s 127.0.0.1 -p "$port"

if ip -6 addr show dev lo 2>/dev/null | grep -q 'inet6 ::1/'; then
	port=$("$netkit" freeport) || fail "no free port"
	what="[::1]:$port" host_re='::1' base_url="http://[::1]:$port" curl_to=()
	run -s ::1 -p "$port"
else
	echo "note: no ::1 on lo, IPv6 part not run"
fi

sock=$tmp/ustreamer.sock
what="UNIX socket $sock" host_re='' base_url=http://localhost curl_to=(--unix-socket "$sock")
run -U "$sock" -D
echo PASS
