#!/bin/bash
# example.tcp-proxy: tcp-proxy echo-server CLIENT
#   echo-server as the backend, tcp-proxy 0 127.0.0.1 <echo port> in front;
#   lines, 2 small connections and 3 MB (beyond the proxy's 512 KiB
#   back-pressure mark) go through the proxy and come back exactly. Both
#   servers must then exit by themselves, having seen 4 connections each.
. "$(dirname "$0")/common.sh"
proxy=$1 echo_server=$2 client=$3

start_server echo "$echo_server" --port 0 --max-connections 4 --seconds 50
echo_port=$PORT
start_server proxy "$proxy" --max-connections 4 --seconds 50 0 127.0.0.1 "$echo_port"
proxy_port=$PORT
[ "$proxy_port" != "$echo_port" ] || fail "proxy and echo on the same port"

line_echo "$proxy_port" 5
timeout 30 "$client" "$proxy_port" --conns 2 --bytes 2000 || fail "echo-client through the proxy"
timeout 30 "$client" "$proxy_port" --bytes 3000000 || fail "echo-client, 3 MB through the proxy"
wait_server proxy
wait_server echo
grep -qx 'PROXIED 4' "$tmp/proxy.out" || fail "proxy did not report PROXIED 4"
grep -qx 'SERVED 4' "$tmp/echo.out" || fail "backend did not report SERVED 4"
echo PASS
