#!/usr/bin/env bash
# Build evuring with warnings as errors and run every test (ctest), on both
# backends and against libevent's own listener as the reference.
# Usage: scripts/test.sh [--no-setup] [BUILD_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${1:-}" = "--no-setup" ]; then shift; else bash scripts/setup-debian.sh; fi
BUILD=${1:-build-test}
cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DEVURING_WERROR=ON
cmake --build "$BUILD" -j"$(nproc)"
ctest --test-dir "$BUILD" --output-on-failure -j2 --timeout 120
