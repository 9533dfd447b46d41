#!/bin/bash
# example.echo-server: echo-server CLIENT
#   echo-server --port 0 --max-connections 5; a line client sends lines and
#   reads each back; echo-client checks exact echoes on 3 connections, then
#   4 MB with half-close (the server must flush before closing). The server
#   must then exit by itself with "SERVED 5".
. "$(dirname "$0")/common.sh"
server=$1 client=$2

start_server echo "$server" --port 0 --max-connections 5 --seconds 50
line_echo "$PORT" 5
timeout 30 "$client" "$PORT" --conns 3 --bytes 2000 || fail "echo-client, 3 connections"
timeout 30 "$client" "$PORT" --bytes 4000000 --half-close || fail "echo-client, 4 MB + half-close"
wait_server echo
grep -qx 'SERVED 5' "$tmp/echo.out" || fail "server did not report SERVED 5"
echo PASS
