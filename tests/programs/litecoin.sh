#!/bin/bash
# litecoind (Debian's litecoind 0.21, libevent 2.1.12): its JSON-RPC server is
# an evhttp bound with evhttp_bind_socket_with_handle() (libevent then calls
# evconnlistener_new() internally; here on 127.0.0.1 only, -rpcbind), run
# from the daemon's own libevent thread with evthread locking on, and served
# by a pool of worker threads.
#
# Run in -regtest mode (a private chain: no network, no peers, no wallet)
# with a temporary data dir. Driven by curl:
#   - an unauthenticated request is refused with 401;
#   - 100 sequential `echo` calls, each on a new connection, each reply
#     checked byte for byte (echo returns its arguments);
#   - 8 concurrent clients x 10 calls, every reply checked;
#   - the `stop` call, after which the daemon exits 0.
# Plus the backend checks (ring / no ring / no evuring) and stderr.
#
# Usage: litecoin.sh --backend=uring|event|plain --preload=LIB
#                    --netkit=PATH --probe=PATH
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"

daemon=/usr/lib/litecoin/litecoind
[ -x "$daemon" ] || {
	echo "SKIP: $daemon not installed (Debian package litecoind; scripts/setup-debian.sh --tests installs it)"
	exit 77
}
need_program curl curl
need_uring_if_asked

port=$("$netkit" freeport) || fail "no free port"
start_program litecoind "$daemon" -regtest -datadir="$tmp" -rpcport="$port" \
	-rpcuser=evu -rpcpassword=evu -rpcbind=127.0.0.1 -rpcallowip=127.0.0.1 \
	-listen=0 -server -disablewallet -printtoconsole=0

# rpc ID METHOD PARAMS: one JSON-RPC call on a new connection; prints the body.
rpc() {
	curl -s --max-time 10 --user evu:evu -H 'content-type: text/plain' \
		--data "{\"jsonrpc\":\"1.0\",\"id\":$1,\"method\":\"$2\",\"params\":$3}" \
		"http://127.0.0.1:$port/"
}
ready() { [ "$(rpc 0 getblockcount '[]')" = '{"result":0,"error":null,"id":0}' ]; }
wait_until 60 ready || fail "litecoind's RPC not answering on $port within 60 s"
echo "ok: litecoind answers on 127.0.0.1:$port"
check_backend

code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 10 \
	--data '{"method":"getblockcount"}' "http://127.0.0.1:$port/")
[ "$code" = 401 ] || fail "unauthenticated request got HTTP $code, expected 401"
echo "ok: unauthenticated request refused (401)"

# echo_calls FIRST LAST TAG: `echo` calls FIRST..LAST, each checked; returns
# non-zero at the first wrong reply (and prints it).
echo_calls() {
	local i want got
	for ((i = $1; i <= $2; i++)); do
		want="{\"result\":[\"$3-$i\",$i],\"error\":null,\"id\":$i}"
		got=$(rpc "$i" echo "[\"$3-$i\",$i]")
		[ "$got" = "$want" ] || { echo "call $i: got '$got', want '$want'"; return 1; }
	done
}
echo_calls 1 100 seq || fail "sequential echo calls"
echo "ok: 100 sequential calls, each on a new connection, replies exact"

pids=
for ((c = 1; c <= 8; c++)); do
	echo_calls 1 10 "c$c" >"$tmp/client.$c.out" 2>&1 &
	pids+=" $!"
done
wait_jobs $pids
[ $jobs_failed -eq 0 ] || { cat "$tmp"/client.*.out; fail "$jobs_failed of 8 concurrent clients got a wrong reply"; }
echo "ok: 8 concurrent clients x 10 calls, replies exact"
check_backend

[ "$(rpc 1 stop '[]')" = '{"result":"Litecoin Core stopping","error":null,"id":1}' ] ||
	fail "stop call not acknowledged"
expect_exit 30 "the stop call"
check_stderr
echo PASS
