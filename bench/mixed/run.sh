#!/usr/bin/env bash
# bench/mixed/run.sh BUILD_DIR [ROUNDS] [MESSAGES]: the pingpong server
# (bench/mixed/pingpong.c) plain (libevent's listener), and with libevuring
# preloaded for each EVURING_WAIT mode (epoll: the loop sleeps in epoll_wait;
# ring: in the ring; auto: evuring picks per window of wakeups), in rotating
# order per round, for several reconnect rates (0: data only; 1: a new
# connection per message). Prints the medians of server CPU per message and
# the paired per-round ratios to the epoll mode.
set -euo pipefail
build=${1:?usage: run.sh BUILD_DIR [ROUNDS] [MESSAGES]}
rounds=${2:-7}
msgs=${3:-100000}
bin=$build/bench/mixed-pingpong
lib=$(readlink -f "$build/libevuring.so")
out=$(mktemp)
trap 'rm -f "$out"' EXIT
variants=(plain epoll ring auto)
for rc in 0 50 1; do
	for r in $(seq 1 "$rounds"); do
		# rotate the order each round
		order=("${variants[@]:r%4}" "${variants[@]:0:r%4}")
		for v in "${order[@]}"; do
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
vs = ("plain", "epoll", "ring", "auto")
print("%-10s" % "reconnect" + "".join("%8s" % v for v in vs) +
      "%12s %10s %10s" % ("epoll/plain", "ring/epoll", "auto/epoll"))
for rc, by_round in rows.items():
    med = {v: st.median(x[v] for x in by_round.values()) for v in vs}
    pr = lambda a, b: st.median(x[a] / x[b] for x in by_round.values())
    print("%-10s" % rc + "".join("%8.2f" % med[v] for v in vs) +
          "%12.3f %10.3f %10.3f" % (pr("epoll", "plain"), pr("ring", "epoll"), pr("auto", "epoll")))
PY
