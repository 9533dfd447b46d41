#!/usr/bin/env python3
"""Side-by-side table of the micro-benchmark JSON files (scripts/bench.sh --micro).

usage: summary.py DIR   (reads DIR/micro-*.json written by Google Benchmark)

For each benchmark that ran in more than one implementation (libevent,
evuring on io_uring, evuring's event backend): time per item (1 / items per
second, so per connection for BM_DeliverBatch and BM_AcceptOne) and the
ratio to libevent. Standard library only.
"""
import glob
import json
import os
import sys

# file stem -> column name, in column order
IMPLS = [("libevent", "libevent"), ("evuring-uring", "evuring"),
         ("evuring-event", "ev-event")]


def load(d):
    """{(group, benchmark name): {impl: record}} for micro-<group>-<impl>.json."""
    out = {}
    for path in sorted(glob.glob(os.path.join(d, "micro-*.json"))):
        stem = os.path.basename(path)[len("micro-"):-len(".json")]
        for impl, _ in IMPLS:
            if stem.endswith("-" + impl):
                group = stem[:-len(impl) - 1]
                break
        else:
            continue
        try:
            with open(path) as f:
                data = json.load(f)
        except (OSError, ValueError) as e:
            sys.stderr.write("summary: %s: %s\n" % (path, e))
            continue
        for b in data.get("benchmarks", []):
            if b.get("run_type") == "aggregate" or b.get("error_occurred"):
                continue
            out.setdefault((group, b["name"]), {})[impl] = b
    return out


def ns_per_item(b):
    ips = b.get("items_per_second")
    if ips:
        return 1e9 / ips
    scale = {"ns": 1, "us": 1e3, "ms": 1e6, "s": 1e9}.get(b.get("time_unit", "ns"), 1)
    return b["real_time"] * scale


def main():
    d = sys.argv[1] if len(sys.argv) > 1 else "bench-results"
    rows = load(d)
    if not rows:
        sys.exit("summary: no micro-*-{libevent,evuring-uring,evuring-event}.json in %s" % d)
    impls = [(i, n) for i, n in IMPLS if any(i in r for r in rows.values())]
    hdr = "%-34s" % "benchmark (ns per item)"
    for _, n in impls:
        hdr += " %10s" % n
    for _, n in impls[1:]:
        hdr += " %9s" % ("%s/lev" % ("uring" if n == "evuring" else "event"))
    hdr += "  loops"
    print(hdr)
    print("-" * len(hdr))
    group = None
    for (g, name), per in rows.items():
        if g != group:
            group = g
        line = "%-34s" % name.replace("/real_time", "").replace("/process_time", "")[:34]
        vals = {}
        for i, _ in impls:
            b = per.get(i)
            vals[i] = ns_per_item(b) if b else None
            line += " %10s" % ("%.0f" % vals[i] if vals[i] is not None else "-")
        lev = vals.get("libevent")
        for i, _ in impls[1:]:
            r = vals[i] / lev if lev and vals.get(i) else None
            line += " %9s" % ("%.3f" % r if r is not None else "-")
        loops = [per[i].get("loops") for i, _ in impls if i in per and "loops" in per[i]]
        line += "  " + ("/".join("%.2f" % x for x in loops) if loops else "")
        print(line)
    print("\nns per item: 1e9 / items_per_second (per connection for BM_DeliverBatch/K and "
          "BM_AcceptOne,\nper call otherwise); uring/lev, event/lev: ratio to libevent's listener (< 1: "
          "cheaper;\nuring/lev: evuring on io_uring, event/lev: evuring's event backend); loops: event_base_loop\ncalls per batch (1.00: one wakeup delivered "
          "all K), per implementation.")


if __name__ == "__main__":
    main()
