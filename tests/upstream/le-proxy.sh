#!/bin/bash
# libevent's sample le-proxy (sample/le-proxy.c of the installed libevent's
# source, linked against Debian's libevent_openssl by build.sh): the TCP
# proxy of libevent's documentation, two bufferevents per connection and
# evconnlistener_new_bind(LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC |
# LEV_OPT_REUSEABLE), run unmodified with evuring preloaded.
#
# curl -> le-proxy (the program under test) -> libevent's sample http-server
# (without evuring): the request mix of http-lib.sh through the proxy, every
# byte compared (the 1 MiB transfers both ways pass le-proxy's 512 KiB
# output watermark). le-proxy has no signal handler: it must still be
# serving at the end, and dies of SIGTERM as it does without evuring. Plus
# the backend checks (ring / no ring / no evuring) and a clean stderr.
#
# Usage: le-proxy.sh --backend=uring|event|plain --preload=LIB
#                    --netkit=PATH --probe=PATH --bindir=DIR
here=$(cd "$(dirname "$0")" && pwd)
. "$here/../programs/lib.sh"
. "$here/http-lib.sh"
proxy=$(need_built le-proxy) || exit 77
server=$(need_built http-server) || exit 77
need_program curl curl
need_uring_if_asked

server_port=$("$netkit" freeport) && proxy_port=$("$netkit" freeport) || fail "no free port"
# The backend, plain: a helper job, killed by lib.sh's cleanup.
env -u LD_PRELOAD "$server" -p "$server_port" "$www" >"$tmp/server.out" 2>"$tmp/server.err" &
start_program le-proxy "$proxy" "127.0.0.1:$proxy_port" "127.0.0.1:$server_port"

base=http://127.0.0.1:$proxy_port
wait_until 20 get "$base" /small.txt "$tmp/got" || fail "no answer through le-proxy within 20 s"
echo "ok: le-proxy on 127.0.0.1:$proxy_port forwards to http-server on $server_port"
check_backend
serve_checks "$base" "through le-proxy"
alive || fail "le-proxy died while serving"
check_backend
kill -TERM "$prog_pid"
expect_exit 15 SIGTERM 143
check_stderr
echo PASS
