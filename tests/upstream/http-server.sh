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
# Each mode serves a temp docroot to curl (http-lib.sh: 100 sequential GETs
# compared byte for byte, 1 MiB down and up, a listing, 8 clients x 10 GETs
# at once); then SIGINT, after which the
# sample frees its evhttp (and with it the listener) and exits 0. Plus the
# backend checks (ring / no ring / no evuring) and a clean stderr.
#
# Usage: http-server.sh --backend=uring|event|plain --preload=LIB
#                       --netkit=PATH --probe=PATH --bindir=DIR
here=$(cd "$(dirname "$0")" && pwd)
. "$here/../programs/lib.sh"

. "$here/http-lib.sh"
server=$(need_built http-server) || exit 77
need_program curl curl
need_uring_if_asked

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
run_mode tcp "http://127.0.0.1:$port" -p "$port"

sock=$tmp/http.sock
curl_opts=(--unix-socket "$sock")
run_mode unix "http://localhost" -U "$sock" -u
echo PASS
