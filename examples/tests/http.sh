#!/bin/bash
# example.http-server: http-server
#   http-server --port 0 --max-requests 4: GET / three times (200, body
#   "hello from evuring"), GET /missing once (404), with curl when installed,
#   else a raw HTTP/1.0 client over bash's /dev/tcp. The server must exit by
#   itself after the 4th response with "REQUESTS 4".
. "$(dirname "$0")/common.sh"
server=$1

# get PATH -> "STATUS BODY-FIRST-LINE" on stdout
get() {
	local path=$1 status body
	if command -v curl >/dev/null 2>&1; then
		status=$(curl -sS --max-time 10 -o "$tmp/body" -w '%{http_code}' \
			"http://127.0.0.1:$PORT$path") || return 1
		body=$(head -n1 "$tmp/body")
	else
		exec 3<>"/dev/tcp/127.0.0.1/$PORT" || return 1
		printf 'GET %s HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n' "$path" >&3
		timeout 10 cat <&3 >"$tmp/resp" || { exec 3<&-; return 1; }
		exec 3<&-
		status=$(head -n1 "$tmp/resp" | cut -d' ' -f2)
		body=$(sed '1,/^\r$/d' "$tmp/resp" | head -n1)
	fi
	echo "$status $body"
}

start_server http "$server" --port 0 --max-requests 4 --seconds 50
command -v curl >/dev/null 2>&1 && echo "client: curl" || echo "client: raw (bash /dev/tcp)"
for i in 1 2 3; do
	r=$(get /) || fail "GET / #$i failed"
	[ "$r" = "200 hello from evuring" ] || fail "GET / #$i: '$r'"
done
r=$(get /missing) || fail "GET /missing failed"
[ "${r%% *}" = 404 ] || fail "GET /missing: '$r'"
echo "3 x GET / -> 200, GET /missing -> 404"
wait_server http
grep -qx 'REQUESTS 4' "$tmp/http.out" || fail "server did not report REQUESTS 4"
echo PASS
