#!/bin/bash
# ctest bench.storm.smoke: the README's main job still runs end to end. A
# tiny accept storm (one round, a few hundred connections, accept-close and
# overload, paced) through the real runner, then checks of what it wrote: every
# variant it did not skip ran in every mode and measured something, the storm
# rate was calibrated and used, the JSON holds the targets verdict, and the
# plot exists. No speed is judged here:
# the figures of so short a run on a busy machine mean nothing.
#
# Usage: smoke.sh PYTHON3 BUILD_DIR
set -eu
python=$1 build=$2
here=$(cd "$(dirname "$0")" && pwd)
out=$(mktemp -d /tmp/evu-bench-smoke.XXXXXX)
trap 'rm -rf "$out"' EXIT

if ! "$python" "$here/storm.py" --build "$build" --out "$out" --quick --rounds 1 \
	--target-rounds 1 --connections 400 --overload-connections 200 \
	--paced-connections 100 --pace-us 500 \
	--modes accept-close,overload,paced --no-progress >"$out/table.txt" 2>"$out/log.txt"; then
	cat "$out/table.txt" "$out/log.txt"
	echo "FAIL: the runner exited with an error"
	exit 1
fi
cat "$out/table.txt"
[ -s "$out/storm.png" ] || { echo "FAIL: no plot written"; exit 1; }
"$python" - "$out/storm.json" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
bad = []
for mode in ("accept-close", "overload", "paced"):
    for v in d["variants"]:
        runs = [r for r in d["runs"] if r["variant"] == v and r["mode"] == mode]
        if not runs or not all((r["metrics"].get("cpu_us_per_conn") or 0) > 0 for r in runs):
            bad.append("%s/%s: no run, or one measured nothing" % (mode, v))
if "evuring" in d["variants"] and not d.get("targets"):
    bad.append("no targets verdict in the JSON")
for t in d.get("targets") or []:
    # A CPU target is met only when the ratio of medians and the paired
    # per-round median both meet its bar.
    if "paired" in t and t["paired"] is not None:
        bar = float(t["bar"].split()[-1])
        if t["met"] != (t["value"] <= bar and t["paired"] <= bar):
            bad.append("target %s: verdict disagrees with its figures" % t["name"])
    # The regime check: did the server sleep between connections?
    if t.get("regime") and t["met"] != (min(t["wake"].values()) >= float(t["bar"].split()[-1])):
        bad.append("target %s: verdict disagrees with its figures" % t["name"])
if "evuring" in d["variants"] and not any(t.get("regime") for t in d.get("targets") or []):
    bad.append("no server-wakeups check among the targets")
# The judged storm is open-loop at the calibrated rate (--storm-pace auto).
sp = d.get("storm_pace") or {}
if len(sp.get("calibration_cpu_us_per_conn") or []) == 0 or not (sp.get("pace_us") or 0) > 0:
    bad.append("no storm rate calibrated: %r" % sp)
elif any(r["pace_us"] != sp["pace_us"] for r in d["runs"] if r["mode"] == "accept-close"):
    bad.append("accept-close runs not at the calibrated rate %r" % sp.get("pace_us"))
if "libevent" not in d["variants"]:
    bad.append("libevent's listener did not run")
for b in bad:
    print("FAIL:", b)
print("skipped variants:", d.get("skipped_variants") or "none")
sys.exit(1 if bad else 0)
PY
echo PASS
