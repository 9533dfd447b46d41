#!/usr/bin/env bash
# bench/mixed/run.sh BUILD_DIR [ROUNDS] [MESSAGES]: the pingpong server
# (bench/mixed/pingpong.c) plain (libevent's listener), with libevuring
# preloaded sleeping in epoll, and preloaded sleeping in the ring
# (EVURING_WAIT=ring), in rotating order per round, for several reconnect
# rates (0: data only; 1: a new connection per message). Prints the medians
# of server CPU per message and the paired per-round ratios.
set -euo pipefail
build=${1:?usage: run.sh BUILD_DIR [ROUNDS] [MESSAGES]}
rounds=${2:-7}
msgs=${3:-100000}
bin=$build/bench/mixed-pingpong
lib=$(readlink -f "$build/libevuring.so")
out=$(mktemp)
trap 'rm -f "$out"' EXIT
for rc in 0 50 1; do
	for r in $(seq 1 "$rounds"); do
		order="plain epoll ring"
		case $((r % 3)) in 1) order="epoll ring plain" ;; 2) order="ring plain epoll" ;; esac
		for v in $order; do
			if [ "$v" = plain ]; then
				line=$(env -u LD_PRELOAD "$bin" --messages "$msgs" --reconnect "$rc")
			else
				line=$(LD_PRELOAD=$lib EVURING_BACKEND=uring EVURING_WAIT=$v "$bin" --messages "$msgs" --reconnect "$rc")
			fi
			echo "$rc $r $v $line" >> "$out"
			echo "reconnect $rc round $r $v: $line" >&2
		done
	done
done
python3 - "$out" <<'PY'
import json, sys, statistics as st
rows = {}
for line in open(sys.argv[1]):
    rc, r, v, js = line.split(" ", 3)
    rows.setdefault(rc, {}).setdefault(int(r), {})[v] = json.loads(js)["cpu_per_msg_us"]
print("%-10s %8s %8s %8s %12s %12s %14s" % ("reconnect", "plain", "epoll", "ring",
      "epoll/plain", "ring/plain", "ring/epoll"))
for rc, by_round in rows.items():
    med = {v: st.median(x[v] for x in by_round.values()) for v in ("plain", "epoll", "ring")}
    pr = lambda a, b: st.median(x[a] / x[b] for x in by_round.values())
    below = sum(1 for x in by_round.values() if x["ring"] < x["epoll"])
    print("%-10s %8.2f %8.2f %8.2f %12.3f %12.3f %8.3f (%d/%d below 1)" % (
        rc, med["plain"], med["epoll"], med["ring"], pr("epoll", "plain"),
        pr("ring", "plain"), pr("ring", "epoll"), below, len(by_round)))
PY
