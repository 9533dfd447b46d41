#!/bin/bash
# libevent's sample http-server (sample/http-server.c of the installed
# libevent's source, linked against Debian's libevent by build.sh): the
# program many evhttp servers start from, run unmodified with evuring
# preloaded. It reaches the listener two ways:
#   - TCP: evhttp_bind_socket_with_handle(), so libevent calls
#     evconnlistener_new_bind() internally;
#   - -U: it calls evconnlistener_new_bind() itself on a UNIX socket with a
#     NULL callback, then evhttp_bind_listener(), which sets libevent's
#     callback through evconnlistener_set_cb().
# Each mode serves a temp docroot: 100 sequential GETs of a small file, a
# 1 MiB file and the directory listing (compared byte for byte or by
# content), and 8 clients x 10 GETs at once; then SIGINT, after which the
# sample frees its evhttp (and with it the listener) and exits 0. Plus the
# backend checks (ring / no ring / no evuring) and a clean stderr.
#
# Usage: http-server.sh --backend=uring|event|plain --preload=LIB
#                       --netkit=PATH --probe=PATH --bindir=DIR
here=$(cd "$(dirname "$0")" && pwd)
. "$here/../programs/lib.sh"

server=$bindir/http-server
if [ ! -x "$server" ]; then
	echo "SKIP: $server not built${bindir:+ ($(cat "$bindir/SKIP" 2>/dev/null || echo "see upstream.build"))}"
	exit 77
fi
need_program curl curl
need_uring_if_asked

www=$tmp/www
mkdir -p "$www/sub"
echo "evuring sample test" >"$www/small.txt"
head -c $((1024 * 1024)) /dev/urandom >"$www/big.bin"
echo nested >"$www/sub/nested.txt"

# get URL_BASE PATH FILE: GET on a new connection into FILE, fail unless 200.
get() {
	local code
	code=$(curl -sS --max-time 10 -o "$3" -w '%{http_code}' "${curl_opts[@]}" "$1$2") &&
		[ "$code" = 200 ]
}

# serve_checks URL_BASE WHAT: the request mix against one running server.
serve_checks() {
	local base=$1 what=$2 i c pids=''
	for ((i = 1; i <= 100; i++)); do
		get "$base" /small.txt "$tmp/got" && cmp -s "$www/small.txt" "$tmp/got" ||
			fail "$what: GET $i of /small.txt failed or differs"
	done
	get "$base" /big.bin "$tmp/got" && cmp -s "$www/big.bin" "$tmp/got" ||
		fail "$what: GET /big.bin failed or differs"
	get "$base" /sub/ "$tmp/got" && grep -q 'nested.txt' "$tmp/got" ||
		fail "$what: the listing of /sub/ does not name nested.txt"
	for ((c = 1; c <= 8; c++)); do
		(
			for ((i = 1; i <= 10; i++)); do
				get "$base" /small.txt "$tmp/got.$c" &&
					cmp -s "$www/small.txt" "$tmp/got.$c" || exit 1
			done
		) &
		pids+=" $!"
	done
	wait_jobs $pids
	[ $jobs_failed -eq 0 ] || fail "$what: $jobs_failed of 8 concurrent clients failed"
	echo "ok: $what: 100 sequential GETs, 1 MiB file, listing, 8 clients x 10 GETs"
}

# run_mode WHAT URL_BASE SERVER_ARGS...: one server's whole life.
run_mode() {
	local what=$1 base=$2
	shift 2
	start_program http-server "$server" "$@" "$www"
	wait_until 20 get "$base" /small.txt "$tmp/got" ||
		fail "$what: no answer at $base within 20 s"
	check_backend
	serve_checks "$base" "$what"
	check_backend
	stop_program INT
	check_stderr
	mv "$tmp/prog.err" "$tmp/$what.err"
}

port=$("$netkit" freeport) || fail "no free port"
curl_opts=()
run_mode tcp "http://127.0.0.1:$port" -p "$port"

sock=$tmp/http.sock
curl_opts=(--unix-socket "$sock")
run_mode unix "http://localhost" -U "$sock" -u
echo PASS
