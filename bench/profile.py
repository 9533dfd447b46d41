#!/usr/bin/env python3
"""Where the accept storm's server CPU goes, per variant (kernel and user).

Runs bench/storm.py's accept-close mode (at one client rate, calibrated
once first) for one variant at a time under
`perf record -e cpu-clock -a -g` (a software clock: works in VMs without
hardware counters), in interleaved rounds, then sorts every sample of the
server process by what it was doing:

  close      the program's close() of the accepted socket (TCP teardown;
             on loopback this includes the peer socket's processing)
  accept     accept4(), or io_uring_enter() (the multishot accept's work)
  wait       epoll_wait() (libevent's loop), the sleeps
  other      any other system call (getpeername, ...)
  user       user space (the program, libevent, evuring)
  rest       interrupts and kernel exit work outside a system call

and prints microseconds per accepted connection (samples x period /
connections accepted, warm-up included, since perf sees the whole process).
"listener" is everything but close: what a listener implementation can
change. Its ratio to libevent's is the honest view of what evuring saves.

With tracefs writable (root), it also counts how each server socket left
ESTABLISHED (tracepoint sock:inet_sock_set_state): "early" when the server's
close() came before the client's FIN (FIN_WAIT1), "late" after it
(CLOSE_WAIT). The storm's client closes a few microseconds after connect()
returns, and an early close costs the server less: its FIN does not have to
finish the client's socket too, on the server's CPU.

Needs perf (Debian: linux-perf) and root or kernel.perf_event_paranoid <= 0
for system-wide sampling. Output: a table on stdout, a JSON file.
"""

import argparse
import collections
import json
import os
import shutil
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
CATEGORIES = ["close", "accept", "wait", "other", "user", "rest"]
SYSCALL_CATEGORY = {
    "close": "close", "accept4": "accept", "accept": "accept",
    "io_uring_enter": "accept", "epoll_wait": "wait", "epoll_pwait": "wait",
    "epoll_pwait2": "wait",
}
DEFAULT_VARIANTS = "libevent,evuring,preload,fallback,floor-defer,raw-uring-gpn,accept4"
TRACEFS = "/sys/kernel/tracing"
STATE_EVENT = TRACEFS + "/events/sock/inet_sock_set_state"
# Server sockets only: storm.py's clients bind ports below 32768 and its
# servers listen on an ephemeral port above.
STATE_FILTER = "oldstate == 1 && sport >= 32768"


class CloseRace:
    """Counts server sockets closed before / after the client's FIN."""

    def __init__(self):
        self.saved = None
        self.mounted = False
        try:
            if not os.path.exists(TRACEFS + "/tracing_on"):
                # A fresh machine may not have tracefs mounted: mount it
                # for this run (root only) and unmount it in restore().
                subprocess.run(["mount", "-t", "tracefs", "nodev", TRACEFS],
                               check=True, stderr=subprocess.DEVNULL)
                self.mounted = True
            with open(TRACEFS + "/tracing_on") as f:
                on = f.read().strip()
            with open(STATE_EVENT + "/filter") as f:
                flt = f.read().strip()
            with open(TRACEFS + "/buffer_size_kb") as f:
                kb = f.read().split()[0]
            self._write(STATE_EVENT + "/filter", STATE_FILTER)
            self._write(TRACEFS + "/buffer_size_kb", "16384")
            self._write(TRACEFS + "/tracing_on", "1")
            self.saved = (on, "0" if flt == "none" else flt, kb)
        except (OSError, subprocess.CalledProcessError) as e:
            sys.stderr.write("profile: no close-race counts (tracefs: %s)\n" % e)

    @staticmethod
    def _write(path, text):
        with open(path, "w") as f:
            f.write(text + "\n")

    def start(self):
        if self.saved:
            self._write(TRACEFS + "/trace", "")
            self._write(STATE_EVENT + "/enable", "1")

    def stop(self):
        """Returns (early, late), or None without tracefs."""
        if not self.saved:
            return None
        self._write(STATE_EVENT + "/enable", "0")
        early = late = 0
        with open(TRACEFS + "/trace") as f:
            for line in f:
                if "newstate=TCP_FIN_WAIT1" in line:
                    early += 1
                elif "newstate=TCP_CLOSE_WAIT" in line:
                    late += 1
        return early, late

    def restore(self):
        if self.saved:
            on, flt, kb = self.saved
            self._write(STATE_EVENT + "/filter", flt)
            self._write(TRACEFS + "/buffer_size_kb", kb)
            self._write(TRACEFS + "/tracing_on", on)
        if self.mounted:
            subprocess.run(["umount", TRACEFS], check=False)


def syscall_of(frame):
    for prefix in ("__x64_sys_", "__arm64_sys_", "__do_sys_", "__se_sys_"):
        if frame.startswith(prefix):
            return frame[len(prefix):]
    return None


def classify(stack):
    """stack: innermost frame first. Returns (category, in_accept_work)."""
    kernel = any(f.startswith(("entry_SYSCALL", "do_syscall_64", "asm_", "el0"))
                 for f in stack)  # x86-64 and arm64 entry frames
    work = "do_accept" in stack
    if not kernel:
        return "user", work
    for frame in reversed(stack):  # outermost first: the system call entered
        name = syscall_of(frame)
        if name:
            return SYSCALL_CATEGORY.get(name, "other"), work
    return "rest", work


def parse_perf_script(text, comm_prefix):
    """Counts per category of the samples whose command starts with comm_prefix."""
    counts = collections.Counter()
    comm, stack = None, []

    def flush():
        if comm is not None and comm.startswith(comm_prefix) and stack:
            cat, work = classify(stack)
            counts[cat] += 1
            counts["samples"] += 1
            if work:
                counts["accept_work"] += 1

    for line in text.splitlines():
        if not line.strip():
            flush()
            comm, stack = None, []
        elif line[0] not in " \t":
            comm = line.split()[0]
        else:
            parts = line.split(None, 1)
            stack.append(parts[1].strip() if len(parts) > 1 else "?")
    flush()
    return counts


def run_round(args, variant, rnd, outdir, race):
    tag = "%s-r%d" % (variant, rnd)
    data = os.path.join(outdir, tag + ".perf")
    sdir = os.path.join(outdir, tag)
    cmd = ["perf", "record", "-q", "-e", "cpu-clock", "-F", str(args.freq), "-a", "-g",
           "-o", data, "--",
           sys.executable, os.path.join(HERE, "storm.py"), "--build", args.build,
           "--out", sdir, "--modes", "accept-close", "--variants", variant,
           "--target-rounds", "1", "--connections", str(args.connections),
           "--storm-pace", args.storm_pace, "--no-plot", "--no-progress"]
    race.start()
    res = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         universal_newlines=True)
    closes = race.stop()
    if res.returncode != 0:
        sys.stderr.write(res.stdout[-2000:] + res.stderr[-2000:])
        raise SystemExit("profile: storm.py under perf failed for %s" % variant)
    with open(os.path.join(sdir, "storm.json")) as f:
        storm = json.load(f)
    runs = [r for r in storm["runs"] if r["variant"] == variant]
    if not runs or not all(r.get("valid") for r in runs):
        raise SystemExit("profile: %s: the storm run was not valid (see %s)" % (variant, sdir))
    accepted = sum(r["server"]["accepted"] for r in runs)
    script = subprocess.run(["perf", "script", "-i", data, "-F", "comm,ip,sym"],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            universal_newlines=True).stdout
    counts = parse_perf_script(script, "storm-server")
    if closes:
        counts["early_close"] += closes[0]
        counts["late_close"] += closes[1]
    if not args.keep:
        os.unlink(data)
    return accepted, counts


def calibrate_pace(args):
    """storm.py's calibration, run once outside perf, so that every profiled
    run gets the same client rate and perf sees no calibration runs."""
    sdir = os.path.join(args.out, "calibration")
    res = subprocess.run([sys.executable, os.path.join(HERE, "storm.py"), "--build", args.build,
                          "--out", sdir, "--modes", "accept-close", "--variants", "libevent",
                          "--target-rounds", "1", "--connections", str(args.connections),
                          "--no-plot", "--no-progress"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True)
    pace = None
    if res.returncode == 0:
        with open(os.path.join(sdir, "storm.json")) as f:
            pace = (json.load(f).get("storm_pace") or {}).get("pace_us")
    if not pace:
        sys.stderr.write(res.stdout[-2000:] + res.stderr[-2000:])
        raise SystemExit("profile: calibrating the storm rate failed")
    sys.stderr.write("profile: storm rate: one connection every %g us\n" % pace)
    return "%g" % pace


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--build", default="build")
    ap.add_argument("--out", default="bench-results/profile")
    ap.add_argument("--variants", default=DEFAULT_VARIANTS)
    ap.add_argument("--rounds", type=int, default=5,
                    help="interleaved rounds, one storm run per variant each (default 5)")
    ap.add_argument("--connections", type=int, default=20000)
    ap.add_argument("--freq", type=int, default=1999, help="samples per second per CPU")
    ap.add_argument("--storm-pace", default="auto",
                    help="storm.py's --storm-pace for every run: auto (default: calibrated "
                         "once, before the profiled runs, not under perf), closed, or a gap "
                         "in us")
    ap.add_argument("--keep", action="store_true", help="keep the perf.data files")
    args = ap.parse_args()

    if not shutil.which("perf"):
        raise SystemExit("profile: perf not found (Debian: apt-get install linux-perf)")
    variants = [v for v in args.variants.split(",") if v]
    os.makedirs(args.out, exist_ok=True)
    # perf refuses a -F above this limit, which the kernel lowers when
    # sampling interrupts run long.
    try:
        with open("/proc/sys/kernel/perf_event_max_sample_rate") as f:
            max_rate = int(f.read())
    except (OSError, ValueError):
        max_rate = 0
    if 0 < max_rate < args.freq:
        sys.stderr.write("profile: sampling at %d Hz, kernel.perf_event_max_sample_rate\n" % max_rate)
        args.freq = max_rate
    period_us = 1e6 / args.freq
    if args.storm_pace == "auto":
        args.storm_pace = calibrate_pace(args)
    totals = {v: collections.Counter() for v in variants}
    accepted = collections.Counter()
    per_round = {v: [] for v in variants}  # (accepted, counts) per round
    t0 = time.time()
    race = CloseRace()
    try:
        for rnd in range(args.rounds):
            order = variants[rnd % len(variants):] + variants[:rnd % len(variants)]
            for v in order:
                sys.stderr.write("\rprofile: round %d/%d, %-14s %5.0f s" %
                                 (rnd + 1, args.rounds, v, time.time() - t0))
                sys.stderr.flush()
                n, counts = run_round(args, v, rnd, args.out, race)
                accepted[v] += n
                totals[v].update(counts)
                per_round[v].append((n, counts))
    finally:
        race.restore()
    sys.stderr.write("\n")

    def per_conn(v, key):
        return totals[v][key] * period_us / accepted[v]

    def round_total(rc):
        return rc[1]["samples"] * period_us / rc[0]

    def round_listener(rc):
        return (rc[1]["samples"] - rc[1]["close"]) * period_us / rc[0]

    base = variants[0]
    head = "%-14s %8s %7s" % ("variant", "total", "x " + base[:5])
    head += "".join(" %7s" % c for c in CATEGORIES)
    head += " %9s %7s %8s %6s" % ("listener", "x " + base[:5], "do_acc", "early")
    print("server CPU per accepted connection, us (perf cpu-clock, %d Hz, %d rounds)" %
          (args.freq, args.rounds))
    print(head)
    print("-" * len(head))
    result = {"freq": args.freq, "rounds": args.rounds, "connections": args.connections,
              "variants": {}}
    for v in variants:
        total = per_conn(v, "samples")
        listener = total - per_conn(v, "close")
        row = "%-14s %8.2f %7.3f" % (v, total, total / per_conn(base, "samples"))
        row += "".join(" %7.2f" % per_conn(v, c) for c in CATEGORIES)
        base_listener = per_conn(base, "samples") - per_conn(base, "close")
        row += " %9.2f %7.3f %8.2f" % (listener, listener / base_listener,
                                        per_conn(v, "accept_work"))
        closes = totals[v]["early_close"] + totals[v]["late_close"]
        early = totals[v]["early_close"] / closes if closes else None
        row += " %5.1f%%" % (100 * early) if closes else "      -"
        print(row)
        result["variants"][v] = {
            "accepted": accepted[v], "samples": totals[v]["samples"],
            "early_close": totals[v]["early_close"], "late_close": totals[v]["late_close"],
            "us_per_conn": {c: per_conn(v, c) for c in CATEGORIES + ["samples", "accept_work"]},
            "per_round": [{"accepted": n, "counts": dict(c)} for n, c in per_round[v]],
        }
    if args.rounds > 1 and len(variants) > 1:
        print("\nratios to %s paired by round: median [min..max]" % base)
        for v in variants[1:]:
            line = "  %-14s" % v
            for name, fn in (("total", round_total), ("listener", round_listener)):
                r = [fn(a) / fn(b) for a, b in zip(per_round[v], per_round[base])]
                line += "  %s %.3f [%.3f..%.3f]" % (name, statistics.median(r), min(r), max(r))
            print(line)
    print("\nlistener: total - close (what a listener can change); do_acc: time in the kernel's "
          "do_accept\n(socket and file allocation, the accept itself), wherever it ran; "
          "early: server sockets closed\nbefore the client's FIN arrived (cheaper closes).")
    path = os.path.join(args.out, "profile.json")
    with open(path, "w") as f:
        json.dump(result, f, indent=1)
    print("wrote " + path)


if __name__ == "__main__":
    main()
