#!/usr/bin/env bash
# Side-by-side accept-storm benchmark of evuring against libevent's listener
# and hand-written floors (see bench/storm.py for what it measures).
#
# usage: scripts/bench.sh [--no-setup] [--quick] [--rounds N] [--connections N]
#                         [--out DIR] [--build DIR] [--micro | --profile]
#                         [-- more options for bench/storm.py or bench/profile.py]
#
# First installs the Debian packages it needs (scripts/setup-debian.sh)
# unless --no-setup.
# Builds build/ (Release) if it is missing, brings it up to date otherwise,
# then runs the runner. Loopback only; server pinned to CPU 1, client to CPU 0
# (scale mode: server worker i on CPU 1+i mod nproc, client on all CPUs, niced).
# --micro: run the Google Benchmark micro-benchmarks instead (JSON in OUT/).
# --profile: where the server's CPU goes per variant (bench/profile.py: perf
# cpu-clock samples by system call, and early/late closes; needs root).
# Needs: cmake, a C compiler, liburing-dev, libevent-dev, python3, and
# gnuplot (gnuplot-nox) for the plot.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=build
out=bench-results
micro=0
profile=0
quick=0
setup=1
args=()
while [[ $# -gt 0 ]]; do
  case $1 in
    --quick) args+=(--quick); quick=1; shift ;;
    --micro) micro=1; shift ;;
    --profile) profile=1; shift ;;
    --no-setup) setup=0; shift ;;
    --rounds|--connections|--out)
      [[ $# -ge 2 ]] || { echo "bench.sh: $1 needs a value" >&2; exit 2; }
      [[ $1 == --out ]] && out=$2
      args+=("$1" "$2"); shift 2 ;;
    --out=*) out=${1#--out=}; args+=("$1"); shift ;;
    --rounds=*|--connections=*) args+=("$1"); shift ;;
    --build) build=$2; shift 2 ;;
    --build=*) build=${1#--build=}; shift ;;
    -h|--help)
      sed -n '2,15p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
      python3 "$here/bench/storm.py" --help
      exit 0 ;;
    --) shift; args+=("$@"); break ;;
    *) args+=("$1"); shift ;;
  esac
done

cd "$here"
if [[ $setup == 1 ]]; then
  bash "$here/scripts/setup-debian.sh" >&2
fi
for tool in cmake python3; do
  command -v "$tool" >/dev/null || { echo "bench.sh: $tool not found" >&2; exit 1; }
done
command -v gnuplot >/dev/null || echo "bench.sh: gnuplot not found (apt-get install gnuplot-nox): no plot" >&2
if [[ $(nproc) -lt 2 ]]; then
  echo "bench.sh: needs at least 2 CPUs (server and client pinned apart)" >&2
  exit 1
fi

if [[ ! -f $build/CMakeCache.txt ]]; then
  echo "bench.sh: configuring $build (Release)" >&2
  cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release -DEVURING_BUILD_BENCH=ON >&2
elif ! grep -q '^EVURING_BUILD_BENCH:BOOL=ON' "$build/CMakeCache.txt"; then
  cmake -S . -B "$build" -DEVURING_BUILD_BENCH=ON >&2
fi
cmake --build "$build" -j2 >&2
bt=$(sed -n 's/^CMAKE_BUILD_TYPE:STRING=//p' "$build/CMakeCache.txt")
case $bt in
  Release|RelWithDebInfo) ;;
  *) echo "bench.sh: warning: $build is a '$bt' build; numbers from it are not comparable" >&2 ;;
esac

if [[ $micro == 1 ]]; then
  # Pinned to the server's CPU; one JSON file per binary and backend.
  mkdir -p "$out"
  mb=$build/bench/micro
  [[ -x $mb/micro-syscalls ]] || { echo "bench.sh: no micro-benchmarks in $mb (libbenchmark-dev missing?)" >&2; exit 1; }
  mt=()
  [[ $quick == 1 ]] && mt=(--benchmark_min_time=0.05)
  run_micro() { # name binary [env...]
    local name=$1 bin=$2; shift 2
    [[ -x $bin ]] || { echo "bench.sh: skipping $name ($bin not built)" >&2; return 0; }
    echo "== $name" >&2
    env "$@" taskset -c 1 "$bin" "${mt[@]}" --benchmark_out="$out/micro-$name.json" \
      --benchmark_out_format=json
  }
  run_micro syscalls "$mb/micro-syscalls"
  run_micro listener-libevent "$mb/micro-listener-libevent" -u EVURING_BACKEND -u LD_PRELOAD
  run_micro listener-evuring-uring "$mb/micro-listener-evuring" -u LD_PRELOAD EVURING_BACKEND=uring
  run_micro listener-evuring-event "$mb/micro-listener-evuring" -u LD_PRELOAD EVURING_BACKEND=event
  run_micro batch-libevent "$mb/micro-batch-libevent" -u EVURING_BACKEND -u LD_PRELOAD
  run_micro batch-evuring-uring "$mb/micro-batch-evuring" -u LD_PRELOAD EVURING_BACKEND=uring
  run_micro batch-evuring-event "$mb/micro-batch-evuring" -u LD_PRELOAD EVURING_BACKEND=event
  echo
  python3 "$here/bench/micro/summary.py" "$out"
  echo "wrote $out/micro-*.json" >&2
  exit 0
fi

if [[ $profile == 1 ]]; then
  # --out DIR profiles into DIR/profile, --quick is one short round; the rest
  # goes to profile.py as given (--rounds, --connections, --variants, ...).
  pargs=(--out "$out/profile")
  for ((i = 0; i < ${#args[@]}; i++)); do
    case ${args[i]} in
      --quick) pargs+=(--rounds 1 --connections 3000) ;;
      --out) i=$((i + 1)) ;;
      --out=*) ;;
      *) pargs+=("${args[i]}") ;;
    esac
  done
  exec python3 "$here/bench/profile.py" --build "$build" "${pargs[@]}"
fi

exec python3 "$here/bench/storm.py" --build "$build" "${args[@]}"
