#!/usr/bin/env bash
# Build evuring and its tests with sanitizers and run the whole ctest suite.
#
#   scripts/check-sanitizers.sh [asan|tsan|all]     (default: all)
#
#   asan: build-asan, -DEVURING_SANITIZE=address,undefined; any ASan/UBSan
#         report (including leaks at exit) stops the test with a failure.
#   tsan: build-tsan, -DEVURING_SANITIZE=thread; any data race or lock-order
#         report stops the test with a failure.
# Both: -DEVURING_BUILD_BENCH=OFF -DEVURING_BUILD_EXAMPLES=OFF, Debug build.
# Build folders are kept (incremental re-runs); remove them to start afresh.
# Exit status: 0 if every selected sanitizer run passed, 1 otherwise.
set -uo pipefail
cd "$(dirname "$0")/.."

mode=${1:-all}
case "$mode" in
asan | tsan | all) ;;
*)
	echo "usage: $0 [asan|tsan|all]" >&2
	exit 2
	;;
esac
jobs=$(nproc 2>/dev/null || echo 2)

export ASAN_OPTIONS="halt_on_error=1:abort_on_error=1:detect_leaks=1:strict_string_checks=1:detect_stack_use_after_return=1"
export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1"
export TSAN_OPTIONS="halt_on_error=1:second_deadlock_stack=1"

# Tests that cannot work under a sanitizer, with the reason:
# - tsan: library.preload-bind-now, swapin.preload.*, swapin.evhttp.preload*,
#   swapin.evhttp-threads.preload*, swapin.control.shim-ring,
#   swapin.seccomp.preload-*: they LD_PRELOAD a TSan-instrumented library
#   into a plain (uninstrumented) binary. The TSan runtime must be part of
#   the program from its start (it intercepts pthread and malloc before main
#   and maps its shadow memory at exec); preloaded late into a binary that
#   was not built with -fsanitize=thread it either refuses to start or
#   misses every synchronisation done before it, so those runs prove
#   nothing. (ASan's preload case is handled by tests/swapin, which puts
#   libasan first in LD_PRELOAD.)
# - tsan: programs.* (tests/programs, Debian's own binaries with evuring
#   preloaded) are not even registered in a TSan build, for the same reason;
#   under ASan only programs.fstrm.* and programs.litecoin.* are (see
#   tests/programs/CMakeLists.txt).
#   Nor are upstream.* (libevent's own tests, preloaded the same way); under
#   ASan they run without the poll/select regress variants.
asan_exclude=''
tsan_exclude='^library\.preload-bind-now|^swapin\.(preload\.|evhttp\.preload|evhttp-threads\.preload|control\.shim-ring|seccomp\.preload)'

declare -A summary
failed=0

run_one() {
	local name=$1 dir=$2 san=$3 exclude=$4 log rc t0 t1
	log=$dir/sanitizer-ctest.log
	t0=$(date +%s)
	echo "=== $name: configure + build in $dir (EVURING_SANITIZE=$san)"
	if ! cmake -S . -B "$dir" -DCMAKE_BUILD_TYPE=Debug -DEVURING_SANITIZE="$san" \
		-DEVURING_BUILD_BENCH=OFF -DEVURING_BUILD_EXAMPLES=OFF >"$dir.configure.log" 2>&1; then
		cat "$dir.configure.log"
		summary[$name]="FAIL (configure)"
		failed=1
		return
	fi
	rm -f "$dir.configure.log"
	if ! cmake --build "$dir" -j"$jobs" >"$dir/sanitizer-build.log" 2>&1; then
		tail -50 "$dir/sanitizer-build.log"
		summary[$name]="FAIL (build)"
		failed=1
		return
	fi
	echo "=== $name: ctest${exclude:+ (excluding $exclude)}"
	local args=(--test-dir "$dir" --output-on-failure -j2 --timeout 240)
	[ -n "$exclude" ] && args+=(-E "$exclude")
	ctest "${args[@]}" >"$log" 2>&1
	rc=$?
	t1=$(date +%s)
	grep -E "tests passed|Test +#.*(\*\*\*|Failed|Timeout)" "$log" | sed 's/^/    /'
	if [ $rc -ne 0 ]; then
		echo "--- $name: failing tests' output:"
		# ctest --output-on-failure puts a failed test's output after its
		# status line, up to the next test's.
		awk '/Test +#[0-9]+: .*\*\*\*(Failed|Timeout|Exception)/ { show = 1; n = 0 }
		     show && /Test +#[0-9]+: / && !/\*\*\*(Failed|Timeout|Exception)/ { show = 0 }
		     show && n++ < 80' "$log"
		sed -n '/The following tests FAILED/,$p' "$log"
		# sanitizer reports of the failed tests
		grep -nE "ERROR: (AddressSanitizer|LeakSanitizer)|runtime error:|WARNING: ThreadSanitizer|SUMMARY: " "$log" | head -40
		summary[$name]="FAIL ($(grep -Eo '[0-9]+ tests failed' "$log" || echo "ctest rc $rc"); log: $log; $((t1 - t0)) s)"
		failed=1
	else
		summary[$name]="PASS ($(grep -Eo '[0-9]+% tests passed, [0-9]+ tests failed out of [0-9]+' "$log"); $((t1 - t0)) s)"
	fi
}

if [ "$mode" = asan ] || [ "$mode" = all ]; then
	run_one asan build-asan "address,undefined" "$asan_exclude"
fi
if [ "$mode" = tsan ] || [ "$mode" = all ]; then
	run_one tsan build-tsan "thread" "$tsan_exclude"
fi

echo
echo "=== sanitizer summary"
for k in "${!summary[@]}"; do
	echo "  $k: ${summary[$k]}"
done
exit $failed
