#!/usr/bin/env bash
# Set up (Debian packages), build evuring with warnings as errors and run
# every test (ctest): the behaviour suite on the io_uring backend, the event
# backend, with io_uring denied by seccomp, and against libevent's own
# listener; swap-in, third-party program (tests/programs), libevent's own
# tests with evuring preloaded (tests/upstream), reliability, install and
# example tests. Then the whole
# suite again under AddressSanitizer+UBSan and under ThreadSanitizer, and the
# storm/soak programs under valgrind (leaks and fds).
# Usage: scripts/test.sh [--no-setup] [--quick] [BUILD_DIR]
#   --quick: skip the sanitizer and valgrind passes.
set -euo pipefail
cd "$(dirname "$0")/.."
setup=1 quick=0
while [ $# -gt 0 ]; do
  case $1 in
    --no-setup) setup=0; shift ;;
    --quick) quick=1; shift ;;
    *) break ;;
  esac
done
# --tests: also the third-party programs tests/programs runs with evuring
# preloaded, and the libevent source package tests/upstream builds.
[ $setup = 0 ] || bash scripts/setup-debian.sh --tests
BUILD=${1:-build-test}
cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DEVURING_WERROR=ON
cmake --build "$BUILD" -j"$(nproc)"
log="$BUILD/ctest-summary.log"
ctest --test-dir "$BUILD" --output-on-failure -j2 --timeout 120 | tee "$log"
if [ $quick = 0 ]; then
  bash scripts/check-sanitizers.sh all
  bash scripts/check-valgrind.sh build-valgrind
fi
# The closing line: the main suite's counts (the sanitizer and valgrind
# passes above exit non-zero on any failure).
total=$(sed -n 's/.*tests failed out of \([0-9]*\).*/\1/p' "$log" | tail -1)
failed=$(sed -n 's/.*, \([0-9]*\) tests failed out of.*/\1/p' "$log" | tail -1)
echo "ctest: $((total - failed)) passed, $failed failed"
