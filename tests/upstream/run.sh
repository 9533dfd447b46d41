#!/usr/bin/env bash
# Run one of libevent's own test programs (built by build.sh against Debian's
# libevent) with evuring preloaded on a backend, or without it (plain, the
# control), and check what a user would:
#   - the program's own verdict (exit status 0);
#   - with evuring: at least --min-listeners listeners reported by
#     EVURING_DEBUG, every one on the asked backend (so the test really ran
#     on evuring, and on that backend);
#   - plain: no evuring line at all;
#   - no evuring error or warning, no sanitizer report.
#
#   run.sh --backend=uring|event|plain --preload=LIB[:LIB...] --probe=PATH
#          --bindir=DIR --min-listeners=N [--env=VAR=VALUE...]
#          [--statistical-retries=N] [--timing-retries=N] PROGRAM [ARGS...]
#
# --env sets a variable for the program in every variant (libevent's own
# EVENT_NOEPOLL / EVENT_NOPOLL choose its poll or select method).
#
# --statistical-retries=N (for test-ratelim): a run that failed only
# libevent's statistical checks ("... out of bounds": the bandwidth and the
# spread between connections over a 5-second run) is run again, up to N more
# times, and passes if one run passes every check. The spread varies from run
# to run with or without evuring: 2 of 40 runs of the group_lim control went
# past its bound of 100 (30-108 B/s) on an idle machine, and the control
# failed a CI run under ASan. Every attempt's figures are printed; a crash, a
# sanitizer report or any other failure is never retried.
#
# --timing-retries=N (for regress): a run whose only failed checks are
# libevent's timing tolerances (test_timeval_diff_*: "an event fired 100 ms
# later, give or take 50") runs just the tests that failed again, up to N
# times, and passes if they pass. Under ASan on a 2-core CI machine
# bufferevent/bufferevent_timeout_filter once missed its 100 +- 50 ms by
# 2 ms (a bufferevent write timeout; no listener involved). The failed checks are
# printed; any other failure is never retried.
#
# Exit status: 0 pass, 1 fail, 77 skip (libevent's source package was not
# fetched, or io_uring is unavailable for the uring variant).
set -u

backend='' preload='' probe='' bindir='' min=1 extra_env=() retries=0 timing_retries=0
while [ $# -gt 0 ]; do
	case $1 in
	--backend=*) backend=${1#*=} ;;
	--preload=*) preload=${1#*=} ;;
	--probe=*) probe=${1#*=} ;;
	--bindir=*) bindir=${1#*=} ;;
	--min-listeners=*) min=${1#*=} ;;
	--env=*) extra_env+=("${1#*=}") ;;
	--statistical-retries=*) retries=${1#*=} ;;
	--timing-retries=*) timing_retries=${1#*=} ;;
	--*) echo "unknown argument $1" >&2; exit 2 ;;
	*) break ;;
	esac
	shift
done
[ $# -ge 1 ] || { echo "need a PROGRAM" >&2; exit 2; }
prog=$1
shift
case $backend in
uring | event | plain) ;;
*) echo "need --backend=uring|event|plain" >&2; exit 2 ;;
esac

if [ -e "$bindir/SKIP" ]; then
	echo "SKIP: $(cat "$bindir/SKIP")"
	exit 77
fi
[ -x "$bindir/$prog" ] || { echo "FAIL: $bindir/$prog was not built (see upstream.build)"; exit 1; }
if [ "$backend" = uring ] && ! why=$("$probe" 2>&1); then
	echo "SKIP: $why"
	exit 77
fi

out=$(mktemp /tmp/evu-upstream.XXXXXX) || exit 1
rerun_out=$(mktemp /tmp/evu-upstream.XXXXXX) || exit 1
trap 'rm -f "$out" "$rerun_out"' EXIT

echo "running ${extra_env[*]} $prog $*  (backend $backend${preload:+, preload $preload})"
# run_prog [ARGS...]: the program's output goes to $dest.
dest=$out
run_prog() {
	case $backend in
	plain)
		# The preload list without evuring, its last entry (an ASan build
		# keeps the ASan runtime in the control too).
		local plain_preload=''
		case $preload in *:*) plain_preload=${preload%:*} ;; esac
		env -u EVURING_BACKEND LD_PRELOAD="$plain_preload" "${extra_env[@]}" \
			"$bindir/$prog" "$@" >"$dest" 2>&1
		;;
	*) env LD_PRELOAD="$preload" EVURING_BACKEND="$backend" EVURING_DEBUG=1 \
		"${extra_env[@]}" "$bindir/$prog" "$@" >"$dest" 2>&1 ;;
	esac
}
# What evuring or a sanitizer reported (in FILE, default $out); status 0 if anything.
reports() {
	grep -E '\[evuring\].*(error|warning|cannot|refused|unavailable|switching|did not)|Sanitizer|runtime error:' "${1:-$out}"
}
# Only libevent's statistical verdicts failed: status 1, an "out of bounds"
# line, and nothing reported.
only_statistics_failed() {
	[ "$1" -eq 1 ] && grep -q 'out of bounds' "$out" && ! reports >/dev/null
}
attempt=0
while :; do
	attempt=$((attempt + 1))
	start=$SECONDS
	run_prog "$@"
	rc=$?
	echo "$prog exited with status $rc after $((SECONDS - start)) s (attempt $attempt)"
	only_statistics_failed $rc && [ "$attempt" -le "$retries" ] || break
	echo "attempt $attempt failed only libevent's statistical checks; its figures:"
	grep -E 'Off by|stddev:|out of bounds' "$out" | sed 's/^/    /'
done
[ "$attempt" -eq 1 ] || [ $rc -ne 0 ] || grep -E 'Off by|stddev:' "$out" | sed 's/^/    passing attempt: /'

# The tinytest names ("group/test") of the tests that failed in FILE.
failed_tests() {
	awk '/^[A-Za-z0-9_]+(\/[A-Za-z0-9_.-]+)+: / { t = $1; sub(/:$/, "", t) }
	     /FAILED\]/ && t != "" { print t; t = "" }' "$1"
}
# Only libevent's timing tolerances failed in FILE: some failed checks, all
# of them test_timeval_diff_*, and nothing reported.
only_timing_failed() {
	local checks
	checks=$(grep -E '^ *FAIL .*: assert\(' "$1") || return 1
	! grep -qv 'timeval_msec_diff' <<<"$checks" && ! reports "$1" >/dev/null
}
timing_attempt=0 src=$out # src: the output of the last run, full or rerun
while [ $rc -eq 1 ] && [ "$timing_attempt" -lt "$timing_retries" ] && only_timing_failed "$src"; do
	mapfile -t again < <(failed_tests "$src")
	[ ${#again[@]} -gt 0 ] || break
	echo "only libevent's timing tolerances failed; running ${again[*]} again:"
	grep -E '^ *FAIL .*: assert\(' "$src" | sed 's/^ */    /'
	timing_attempt=$((timing_attempt + 1))
	dest=$rerun_out
	run_prog "${again[@]}"
	rerun_rc=$?
	dest=$out src=$rerun_out
	echo "$prog ${again[*]} exited with status $rerun_rc (timing retry $timing_attempt)"
	if reports "$rerun_out"; then
		cat "$rerun_out" >>"$out"
		break
	fi
	if [ $rerun_rc -eq 0 ]; then
		rc=0
	else
		cat "$rerun_out" >>"$out"
	fi
done

fail() {
	echo "FAIL: $*"
	echo "--- output (failures and the last 40 lines)"
	grep -E "FAIL|FAILED|\[err\]|\[warn\]|Sanitizer|runtime error" "$out" | head -40
	echo "..."
	tail -40 "$out"
	exit 1
}

[ $rc -eq 0 ] || fail "$prog exited with status $rc"

# Not anchored: a forked regress child prints on its test's line.
listener_lines() { grep -oE '\[evuring\] listener fd [0-9]+: [a-z]+ backend' "$out"; }
listeners=$(listener_lines | wc -l)
case $backend in
uring | event)
	[ "$listeners" -ge "$min" ] ||
		fail "$listeners evuring listener(s) reported, at least $min expected"
	other=$(listener_lines | grep -cv ": $backend backend")
	[ "$other" -eq 0 ] || fail "$other listener(s) got another backend than $backend"
	echo "ok: $listeners listeners ran on evuring's $backend backend"
	;;
plain)
	! grep -q '\[evuring\]' "$out" || fail "the control run printed [evuring] lines"
	echo "ok: control run, no evuring"
	;;
esac
if reports; then
	fail "evuring or sanitizer reports (above)"
fi
grep -E "tests ok|TESTS FAILED" "$out" | tail -1
echo "PASS"
