# Shared by http-server.sh and le-proxy.sh (sourced after
# tests/programs/lib.sh): a temp docroot for libevent's sample http-server,
# and the request mix run against it.

www=$tmp/www
mkdir -p "$www/sub"
echo "evuring sample test" >"$www/small.txt"
head -c $((1024 * 1024)) /dev/urandom >"$www/big.bin"
echo nested >"$www/sub/nested.txt"
curl_opts=()

# get URL_BASE PATH FILE: GET on a new connection into FILE, fail unless 200.
get() {
	local code
	code=$(curl -sS --max-time 10 -o "$3" -w '%{http_code}' "${curl_opts[@]}" "$1$2") &&
		[ "$code" = 200 ]
}

# serve_checks URL_BASE WHAT: 100 sequential GETs compared byte for byte, a
# 1 MiB file, a directory listing, a 1 MiB upload, then 8 clients x 10 GETs
# at once.
serve_checks() {
	local base=$1 what=$2 i c code pids=''
	for ((i = 1; i <= 100; i++)); do
		get "$base" /small.txt "$tmp/got" && cmp -s "$www/small.txt" "$tmp/got" ||
			fail "$what: GET $i of /small.txt failed or differs"
	done
	get "$base" /big.bin "$tmp/got" && cmp -s "$www/big.bin" "$tmp/got" ||
		fail "$what: GET /big.bin failed or differs"
	get "$base" /sub/ "$tmp/got" && grep -q 'nested.txt' "$tmp/got" ||
		fail "$what: the listing of /sub/ does not name nested.txt"
	code=$(curl -sS --max-time 10 -o /dev/null -w '%{http_code}' "${curl_opts[@]}" \
		--data-binary @"$www/big.bin" "$base/dump") && [ "$code" = 200 ] ||
		fail "$what: POST of 1 MiB to /dump not answered 200 ($code)"
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
	echo "ok: $what: 100 sequential GETs, 1 MiB down and up, listing, 8 clients x 10 GETs"
}
