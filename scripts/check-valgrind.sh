#!/usr/bin/env bash
# Run the chaos test (random enable/disable/free/re-create during a loopback
# storm) and the soak program under valgrind memcheck, on both backends:
#   valgrind --track-fds=yes --leak-check=full --error-exitcode=1
# A run fails on any memcheck error, any leaked block (definitely, indirectly
# or possibly lost), any fd open at exit that the process did not inherit
# (FILE DESCRIPTORS summary: stdio and fds inherited from the parent are
# expected), or the test itself failing.
#
#   scripts/check-valgrind.sh [BUILD_DIR]     (default: build-valgrind)
#
# BUILD_DIR is configured (Debug, no bench/examples) and built if needed.
# If valgrind cannot run the io_uring backend (a syscall it does not know),
# that run is reported as a limitation with the syscall named, not as a
# failure; everything else still runs.
# Exit status: 0 if every run that could run passed, 1 otherwise.
set -uo pipefail
cd "$(dirname "$0")/.."
BUILD=${1:-build-valgrind}
jobs=$(nproc 2>/dev/null || echo 2)

command -v valgrind >/dev/null || { echo "valgrind is not installed" >&2; exit 1; }
echo "=== $(valgrind --version); build in $BUILD"
if [ ! -f "$BUILD/CMakeCache.txt" ]; then
	cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Debug -DEVURING_BUILD_BENCH=OFF \
		-DEVURING_BUILD_EXAMPLES=OFF >/dev/null || exit 1
fi
cmake --build "$BUILD" -j"$jobs" --target test_chaos evu-soak >/dev/null || exit 1
chaos=$BUILD/tests/reliability/test_chaos
soak=$BUILD/tests/reliability/evu-soak
logdir=$BUILD/valgrind-logs
mkdir -p "$logdir"

failed=0
declare -a summary

# check_log NAME LOG RC: decide PASS / FAIL / LIMITATION for one run.
check_log() {
	local name=$1 log=$2 rc=$3 problems=() sc
	# Syscalls valgrind does not know: the run says nothing about evuring.
	sc=$(grep -oE "unhandled [a-z0-9-]+ syscall: [0-9]+" "$log" | sort -u | tr '\n' ' ')
	if [ -n "$sc" ]; then
		summary+=("$name: LIMITATION: valgrind rejects $sc(ENOSYS to the program); log $log")
		return
	fi
	local errs lost
	errs=$(grep -oE "ERROR SUMMARY: [0-9]+ errors" "$log" | tail -1 | grep -oE "[0-9]+" | head -1)
	[ "${errs:-1}" = 0 ] || problems+=("memcheck errors: ${errs:-no summary}")
	for kind in "definitely lost" "indirectly lost" "possibly lost"; do
		lost=$(grep -E "$kind:" "$log" | tail -1 | sed -E 's/.*lost: ([0-9,]+) bytes in ([0-9,]+) blocks.*/\2/' | tr -d ,)
		if [ -n "$lost" ] && [ "$lost" != 0 ]; then
			problems+=("$kind: $lost blocks")
		fi
	done
	# FILE DESCRIPTORS: every fd still open must be inherited from the parent.
	if ! grep -q "FILE DESCRIPTORS:" "$log"; then
		problems+=("no FILE DESCRIPTORS summary")
	else
		local leaked
		leaked=$(awk '
			/FILE DESCRIPTORS:/ { infd = 1; next }
			infd && /Open (file descriptor|AF_|socket)/ { pending = $0; next }
			infd && pending != "" {
				if ($0 !~ /<inherited from parent>/) print pending
				pending = ""
			}
			/HEAP SUMMARY|LEAK SUMMARY/ { infd = 0 }
		' "$log" | sed -E 's/^==[0-9]+== *//')
		if [ -n "$leaked" ]; then
			problems+=("fds open at exit that were not inherited: $(echo "$leaked" | tr '\n' ';')")
		fi
	fi
	grep -q "^PASS\|PASS:" "$log" || problems+=("the test did not pass (exit $rc)")
	[ "$rc" = 0 ] || problems+=("exit status $rc")
	if [ ${#problems[@]} -eq 0 ]; then
		summary+=("$name: PASS ($(grep -E 'FILE DESCRIPTORS:' "$log" | tail -1 | sed -E 's/^==[0-9]+== *//'); $(grep -E 'ERROR SUMMARY' "$log" | tail -1 | sed -E 's/^==[0-9]+== *//;s/ \(suppressed.*//'))")
	else
		summary+=("$name: FAIL: $(IFS='|'; echo "${problems[*]}"); log $log")
		failed=1
	fi
}

VG=(valgrind --track-fds=yes --leak-check=full --show-leak-kinds=definite,indirect,possible
	--errors-for-leak-kinds=definite,indirect,possible --error-exitcode=1
	--child-silent-after-fork=yes --trace-children=no)

# Under valgrind evuring keeps the loop in epoll_wait (EVURING_WAIT=auto;
# valgrind runs no other thread while one sleeps in io_uring_enter, and
# these programs' clients are threads): the ring's wait is not exercised here.
for backend in uring event; do
	# chaos: fewer operations than the ctest run (valgrind is ~30x slower),
	# same seed; the watchdog is stretched accordingly.
	name="chaos.$backend"
	log=$logdir/$name.log
	echo "=== $name"
	EVURING_BACKEND=$backend EVU_CHAOS_OPS=${EVU_VG_CHAOS_OPS:-3000} EVU_TEST_TIMEOUT=600 \
		"${VG[@]}" --log-file="$log.vg" "$chaos" >"$log.out" 2>&1
	rc=$?
	cat "$log.out" "$log.vg" >"$log"
	grep -E "^(seed|clients:|PASS)|FAIL" "$log.out" | sed 's/^/    /'
	check_log "$name" "$log" "$rc"

	name="soak.$backend"
	log=$logdir/$name.log
	echo "=== $name"
	EVURING_BACKEND=$backend EVU_TEST_TIMEOUT=600 \
		"${VG[@]}" --log-file="$log.vg" "$soak" --seconds 5 --churn 100 \
		--max-rss-growth-kb 65536 >"$log.out" 2>&1
	rc=$?
	cat "$log.out" "$log.vg" >"$log"
	grep -E "^(end|PASS|FAIL)" "$log.out" | sed 's/^/    /'
	check_log "$name" "$log" "$rc"
done

echo
echo "=== valgrind summary"
printf '  %s\n' "${summary[@]}"
exit $failed
