#!/usr/bin/env python3
"""Side-by-side accept-storm benchmark of evuring (runner).

Runs every server variant against the same client load, in interleaved
rounds (variant order from a Williams design: every variant takes every
position, and follows every other variant, equally often), on loopback only:
server pinned to one CPU, client threads to the other, so the server wakes
per connection. In accept-close and write-close, the modes the targets are
judged on, one client thread opens connections open-loop at a fixed rate
(--storm-pace auto: libevent's listener's closed-loop CPU per connection,
measured first, over 0.4), so the server sleeps between connections in every
run; --storm-pace closed gives the older closed-loop client threads, which
sometimes outpaced the server. Figures per run: server CPU time (getrusage user+sys) per
accepted connection in the measured window, accepted conn/s, and accept
latency (client's connect() returning -> server's accept callback, both on
CLOCK_MONOTONIC, joined exactly by the client's source port). The overload
mode adds fixed busy work per connection and reports accept-queue drops
(TcpExt ListenDrops/ListenOverflows deltas) and connect() latency. The paced
mode is the opposite end: one client thread opening a connection every
--pace-us (1 ms), so the server sleeps between connections and latency is
that of a wakeup from idle (what a lightly loaded server's users see). The scale
mode runs the reuseport server (N worker threads, each its own event_base and
LEV_OPT_REUSEABLE_PORT listener on one port) for N = 1..nproc, workers pinned
one per CPU and the client niced on all CPUs, and reports conn/s, server CPU
per connection and the per-worker accept counts (skew).

Output: a progress line on stderr, tables on stdout, a JSON file with every
run's raw figures and the medians, and a PNG plot drawn by gnuplot.

Needs only the Python standard library (python3 >= 3.7) and, for the plot,
gnuplot (Debian: gnuplot-nox).
"""

import argparse
import datetime
import fcntl
import hashlib
import json
import math
import mmap
import os
import platform
import random
import select
import shutil
import socket
import signal
import statistics
import struct
import subprocess
import sys
import time

ALL_VARIANTS = ["libevent", "evuring", "evuring-epoll", "preload", "fallback",
                "raw-uring", "raw-uring-gpn", "floor", "floor-defer", "accept4"]
# Measured on request only (--variants), experiments on the wakeup path
# (docs/design.md): the floor loop woken through a registered eventfd
# (evuring's wakeup before 2026-12), through a COOP_TASKRUN ring, lingering in
# io_uring's wait; the raw loop also harvesting an epoll set.
EXTRA_VARIANTS = ["floor-evfd", "floor-coopdoor", "floor-linger", "floor-uwait", "raw-uring-epoll",
                  "evuring-ringwait", "evuring-auto"]
# A library against an earlier build of itself (--base-lib): the same
# servers with the other libevuring, linked (LD_LIBRARY_PATH) or preloaded.
BASE_VARIANTS = ["evuring-base", "evuring-epoll-base", "preload-base"]
ALL_MODES = ["accept-close", "write-close", "overload", "paced", "scale", "shared"]
# N event loops in one server: each its own REUSEPORT listener, or all on one socket
MULTI_MODES = ("scale", "shared")
# Scale mode: the reuseport server (one base + listener per worker thread).
SCALE_VARIANTS = ["libevent", "evuring", "preload", "fallback"]
SCALE_RATIOS = [("evuring", "libevent"), ("preload", "libevent"), ("fallback", "libevent")]
NEEDS_EVURING = {"evuring", "preload", "fallback", "evuring-ringwait", "evuring-epoll",
                 "evuring-auto"} | set(BASE_VARIANTS)
# Variants whose callback cannot know the peer port (no latency join).
NO_LATENCY = {"raw-uring"}
EXPECTED_BACKEND = {
    "libevent": "libevent", "evuring": "uring", "preload": "uring",
    "fallback": "event", "raw-uring": "raw-uring",
    "raw-uring-gpn": "raw-uring-gpn", "raw-uring-epoll": "raw-uring-epoll", "floor": "floor", "floor-defer": "floor",
    "floor-evfd": "floor", "floor-coopdoor": "floor", "floor-linger": "floor",
    "floor-uwait": "floor", "accept4": "accept4", "evuring-ringwait": "uring",
    "evuring-epoll": "uring", "evuring-auto": "uring",
    "evuring-base": "uring", "evuring-epoll-base": "uring", "preload-base": "uring",
}
KEY_RATIOS = [("evuring", "libevent"), ("evuring", "floor"), ("evuring", "floor-defer"),
              ("fallback", "libevent"), ("preload", "libevent"),
              ("evuring-ringwait", "libevent"), ("evuring-ringwait", "evuring"),
              ("evuring-ringwait", "floor-defer"), ("evuring-epoll", "libevent"),
              ("evuring", "evuring-epoll"), ("evuring-auto", "libevent"),
              ("evuring-auto", "evuring"), ("evuring", "evuring-base"),
              ("evuring-epoll", "evuring-epoll-base"), ("preload", "preload-base")]

STORM_MAGIC = 0x4d524f5453555645
PORTS = 65536
HDR_WORDS = 512
SHM_SIZE = 8 * (HDR_WORDS + 3 * PORTS)
PORT_BASE = 10000          # client source ports: PORT_BASE..PORT_LAST
PORT_LAST = 32767          # (below the ephemeral range the servers listen in)
NETSTAT_KEYS = ["ListenOverflows", "ListenDrops", "TCPReqQFullDrop",
                "SyncookiesSent", "TCPTimeouts", "TCPTimeWaitOverflow", "TW"]


# ------------------------------------------------------------ utilities ---

TTY = sys.stderr.isatty()


def log(msg):
    sys.stderr.write(("\r\033[K" if TTY else "") + msg + "\n")
    sys.stderr.flush()


class Progress:
    def __init__(self, total, enabled):
        self.total = total
        self.done = 0
        self.t0 = time.monotonic()
        self.enabled = enabled
        self.last = None

    def show(self, text):
        if not self.enabled:
            return
        elapsed = time.monotonic() - self.t0
        eta = ""
        if self.done:
            rest = elapsed / self.done * (self.total - self.done)
            eta = " eta %dm%02ds" % (rest // 60, rest % 60)
        line = "[%3d/%d %dm%02ds%s] %s" % (
            self.done, self.total, elapsed // 60, elapsed % 60, eta, text)
        if TTY:
            sys.stderr.write("\r\033[K" + line)
        elif text != self.last:
            sys.stderr.write(line + "\n")  # not a terminal: one line per round
        self.last = text
        sys.stderr.flush()

    def finish(self):
        if self.enabled and TTY:
            sys.stderr.write("\r\033[K")
            sys.stderr.flush()


def read_netstat():
    out = {}
    try:
        with open("/proc/net/netstat") as f:
            lines = f.read().splitlines()
    except OSError:
        return out
    for i in range(0, len(lines) - 1, 2):
        names, values = lines[i].split(), lines[i + 1].split()
        if names and names[0] == "TcpExt:":
            for k, v in zip(names[1:], values[1:]):
                if k in NETSTAT_KEYS:
                    out[k] = int(v)
    return out


def percentile(sorted_vals, q):
    """Nearest-rank percentile of an ascending list (q in 0..100)."""
    if not sorted_vals:
        return None
    k = max(0, min(len(sorted_vals) - 1, math.ceil(q / 100.0 * len(sorted_vals)) - 1))
    return sorted_vals[k]


def median(vals):
    vals = [v for v in vals if v is not None]
    return statistics.median(vals) if vals else None


def fmt(v, digits=2, width=8):
    if v is None:
        return "-".rjust(width)
    if isinstance(v, float) and abs(v) >= 10000:
        return ("%.0f" % v).rjust(width)
    return ("%.*f" % (digits, v)).rjust(width)


def machine_info(paths):
    info = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "kernel": platform.release(),
        "kernel_version": platform.version(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
    }
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    info["cpu_model"] = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    for name, cmd in (("libevent", ["pkg-config", "--modversion", "libevent"]),
                      ("liburing", ["pkg-config", "--modversion", "liburing"])):
        try:
            info[name] = subprocess.run(cmd, capture_output=True, text=True,
                                        timeout=5).stdout.strip() or None
        except (OSError, subprocess.SubprocessError):
            info[name] = None
    for key in ("somaxconn", "tcp_tw_reuse", "tcp_syncookies", "tcp_max_syn_backlog"):
        for base in ("/proc/sys/net/core/", "/proc/sys/net/ipv4/"):
            try:
                with open(base + key) as f:
                    info["sysctl_" + key] = f.read().strip()
                break
            except OSError:
                pass
    lib = paths.get("libevuring")
    if lib and os.path.exists(lib):
        with open(lib, "rb") as f:
            info["libevuring_sha256"] = hashlib.sha256(f.read()).hexdigest()
    try:
        here = os.path.dirname(os.path.abspath(__file__))
        rev = subprocess.run(["git", "-C", here, "rev-parse", "--short", "HEAD"],
                             capture_output=True, text=True, timeout=5)
        info["git_head"] = rev.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        info["git_head"] = None
    return info


# ---------------------------------------------------------- one run ---

class Shm:
    def __init__(self, path):
        self.path = path
        self.fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
        os.ftruncate(self.fd, SHM_SIZE)
        self.map = mmap.mmap(self.fd, SHM_SIZE)
        self.words = memoryview(self.map).cast("Q")

    def reset(self):
        # Zero everything (servers and client zero their own arrays as well).
        self.map.seek(0)
        self.map.write(bytes(SHM_SIZE))
        self.words[0] = STORM_MAGIC

    def join(self, port_first, port_last):
        """Latency of the measured window's connections, in microseconds."""
        w = self.words
        start, end = w[1], w[2]
        srv0, cs0, ce0 = HDR_WORDS, HDR_WORDS + PORTS, HDR_WORDS + 2 * PORTS
        srv = w[srv0 + port_first: srv0 + port_last + 1].tolist()
        cs = w[cs0 + port_first: cs0 + port_last + 1].tolist()
        ce = w[ce0 + port_first: ce0 + port_last + 1].tolist()
        acc, conn = [], []
        for s, a, b in zip(srv, cs, ce):
            if s and b and start < s <= end:
                acc.append((s - b) / 1000.0)
                conn.append((b - a) / 1000.0)
        return acc, conn

    def close(self):
        self.words.release()
        self.map.close()
        os.close(self.fd)
        try:
            os.unlink(self.path)
        except OSError:
            pass


def pin(cpu):
    def f():
        os.sched_setaffinity(0, {cpu})
    return f


def unpinned(nice=0):
    """Scale mode: every CPU (the runner itself is pinned), optionally niced."""
    def f():
        os.sched_setaffinity(0, set(range(os.cpu_count() or 1)))
        if nice:
            os.nice(nice)
    return f


def kill_quietly(proc, sig):
    try:
        os.kill(proc.pid, sig)
    except ProcessLookupError:
        pass


def run_one(cfg, paths, shm, variant, mode, workers=None):
    """One server + one client run. Returns a dict of raw figures.
    modes "scale" and "shared": the reuseport server with `workers` threads
    (each its own REUSEPORT listener, or all on one socket)."""
    env = dict(os.environ)
    env.pop("LD_PRELOAD", None)
    env.pop("EVURING_BACKEND", None)
    env.pop("EVURING_WAIT", None)
    opt = ""
    scale = mode in MULTI_MODES
    if scale:
        binary = paths["server_reuseport_evuring" if variant in ("evuring", "fallback")
                       else "server_reuseport_libevent"]
        if variant in ("evuring", "preload"):
            env["EVURING_BACKEND"] = "uring"
        elif variant == "fallback":
            env["EVURING_BACKEND"] = "event"
        if variant == "preload":
            env["LD_PRELOAD"] = paths["libevuring"]
    elif variant == "libevent":
        binary = paths["server_libevent"]
    elif variant == "evuring":
        binary = paths["server_evuring"]
        env["EVURING_BACKEND"] = "uring"
    elif variant in BASE_VARIANTS:
        base_dir = os.path.dirname(os.path.abspath(cfg.base_lib))
        env["EVURING_BACKEND"] = "uring"
        if variant == "preload-base":
            binary = paths["server_libevent"]
            env["LD_PRELOAD"] = os.path.abspath(cfg.base_lib)
        else:
            # the server's RUNPATH gives way to LD_LIBRARY_PATH
            binary = paths["server_evuring"]
            env["LD_LIBRARY_PATH"] = base_dir
            if variant == "evuring-epoll-base":
                env["EVURING_WAIT"] = "epoll"
    elif variant.startswith("evuring-"):  # -ringwait, -epoll, -auto
        binary = paths["server_evuring"]
        env["EVURING_BACKEND"] = "uring"
        env["EVURING_WAIT"] = {"ringwait": "ring"}.get(variant[8:], variant[8:])
    elif variant == "preload":
        binary = paths["server_libevent"]
        env["LD_PRELOAD"] = paths["libevuring"]
        env["EVURING_BACKEND"] = "uring"
    elif variant == "fallback":
        binary = paths["server_evuring"]
        env["EVURING_BACKEND"] = "event"
    elif variant == "raw-uring":
        binary = paths["server_raw_uring"]
    elif variant == "raw-uring-gpn":
        binary = paths["server_raw_uring"]
        opt = "gpn"
    elif variant == "raw-uring-epoll":
        binary = paths["server_raw_uring"]
        opt = "gpn,epoll"
    elif variant == "floor":
        binary = paths["server_floor"]
        opt = cfg.floor_opt
    elif variant == "floor-defer":
        binary = paths["server_floor"]
        opt = "door"
    elif variant == "floor-evfd":
        binary = paths["server_floor"]
        opt = "defer"
    elif variant == "floor-linger":
        binary = paths["server_floor"]
        opt = "door,linger=%d" % cfg.linger_us
    elif variant == "floor-coopdoor":
        binary = paths["server_floor"]
        opt = "coopdoor"
    elif variant == "floor-uwait":
        binary = paths["server_floor"]
        opt = "uwait"
    elif variant == "accept4":
        binary = paths["server_accept4"]
    else:
        raise ValueError(variant)

    overload = mode == "overload"
    paced = mode == "paced"
    pace_us = client_pace_us(cfg, mode)
    measured = (cfg.overload_connections if overload else
                cfg.paced_connections if paced else
                cfg.scale_connections if scale else cfg.connections)
    warmup = (cfg.overload_warmup if overload else
              cfg.paced_warmup if paced else
              cfg.scale_warmup if scale else cfg.warmup)
    total = measured + warmup
    work_us = cfg.work_us if overload else 0.0
    write_bytes = cfg.write_bytes if mode == "write-close" else 0
    timeout = cfg.run_timeout

    shm.reset()
    # Let the previous run's teardown (socket frees, io_uring ring exit work in
    # kworkers) finish before this run starts.
    time.sleep(cfg.settle)
    problems = []
    server_cmd = [binary, "--shm", shm.path, "--warmup", str(warmup),
                  "--measured", str(measured),
                  "--backlog", str(cfg.overload_backlog if overload else cfg.backlog),
                  "--work-us", str(work_us), "--timeout", str(timeout)]
    if opt:
        server_cmd += ["--opt", opt]
    if scale:
        server_cmd += ["--workers", str(workers)]
        opts = ["pin=%d" % cfg.server_cpu] if cfg.scale_pin == "workers" else []
        if mode == "shared":
            opts.append("shared")
        if opts:
            server_cmd += ["--opt", ",".join(opts)]
    server_pre = unpinned() if scale else pin(cfg.server_cpu)
    client_pre = unpinned(cfg.scale_client_nice) if scale else pin(cfg.client_cpu)
    client_cmd = [paths["client"], "--shm", shm.path, "--count", str(total),
                  "--threads", str(client_threads(cfg, mode)), "--port-base", str(PORT_BASE),
                  "--port-last", str(PORT_LAST), "--write", str(write_bytes),
                  "--timeout", str(timeout - 5)]
    if pace_us:
        client_cmd += ["--pace-us", str(pace_us)]

    net0 = read_netstat()
    server = subprocess.Popen(server_cmd, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, preexec_fn=server_pre)
    client = None
    server_out = server_err = ""
    client_out = client_err = ""
    try:
        # Wait for "READY <port>".
        port = None
        ready, _, _ = select.select([server.stdout], [], [], 10)
        if ready:
            line = server.stdout.readline().decode(errors="replace").strip()
            if line.startswith("READY "):
                port = int(line.split()[1])
        if port is None:
            problems.append("server did not become ready")
            kill_quietly(server, signal.SIGKILL)
        else:
            client = subprocess.Popen(client_cmd + ["--port", str(port)],
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                      preexec_fn=client_pre)
            try:
                co, ce = client.communicate(timeout=timeout + 5)
            except subprocess.TimeoutExpired:
                problems.append("client did not finish; killed")
                kill_quietly(client, signal.SIGKILL)
                co, ce = client.communicate()
            client_out, client_err = co.decode(errors="replace"), ce.decode(errors="replace")
            # The server should finish by itself once the queue drains.
            try:
                server.wait(timeout=cfg.grace)
            except subprocess.TimeoutExpired:
                problems.append("server short of its count %.0fs after the client ended; "
                                "stopped with SIGUSR1" % cfg.grace)
                kill_quietly(server, signal.SIGUSR1)
                try:
                    server.wait(timeout=3)
                except subprocess.TimeoutExpired:
                    problems.append("server hung; killed")
                    kill_quietly(server, signal.SIGKILL)
        so, se = server.communicate(timeout=10)
        server_out, server_err = so.decode(errors="replace"), se.decode(errors="replace")
    finally:
        for p in (client, server):
            if p is not None and p.poll() is None:
                kill_quietly(p, signal.SIGKILL)
                p.wait()
    net1 = read_netstat()

    srv = None
    for line in server_out.splitlines():
        if line.startswith("{"):
            try:
                srv = json.loads(line)
            except ValueError:
                pass
    cli = None
    for line in client_out.splitlines():
        if line.startswith("{"):
            try:
                cli = json.loads(line)
            except ValueError:
                pass
    if srv is None:
        problems.append("no server result (exit %s): %s" % (server.returncode,
                                                            server_err.strip()[-300:]))
    if cli is None and client is not None:
        problems.append("no client result (exit %s): %s" % (client.returncode,
                                                            client_err.strip()[-300:]))

    run = {"variant": variant, "mode": mode, "workers": workers,
           "warmup": warmup, "measured": measured, "pace_us": pace_us or None,
           "work_us": work_us, "write_bytes": write_bytes,
           "server": srv, "client": cli,
           "server_stderr": server_err.strip()[-2000:] or None,
           "netstat_delta": {k: net1.get(k, 0) - net0.get(k, 0) for k in NETSTAT_KEYS},
           "problems": problems}

    metrics = {}
    if srv:
        n = srv.get("window_conns", 0)
        cpu = srv["cpu_user_us"] + srv["cpu_sys_us"]
        if n:
            metrics["cpu_us_per_conn"] = cpu / n
            metrics["user_us_per_conn"] = srv["cpu_user_us"] / n
            metrics["sys_us_per_conn"] = srv["cpu_sys_us"] / n
            metrics["ctxsw_per_conn"] = (srv["vol_ctxsw"] + srv["invol_ctxsw"]) / n
            if srv["wall_us"] > 0:
                metrics["conn_per_s"] = n / srv["wall_us"] * 1e6
        if n != measured:
            problems.append("server measured %d connections, expected %d%s" % (
                n, measured, " (timed out)" if srv.get("timed_out") else ""))
        want = EXPECTED_BACKEND[variant]
        if srv.get("backend") != want:
            problems.append("ran on backend %r, expected %r" % (srv.get("backend"), want))
        if srv.get("accept_errors"):
            problems.append("%d accept errors" % srv["accept_errors"])
        if scale:
            per = srv.get("worker_accepted") or []
            if len(per) != workers:
                problems.append("server ran %d workers, expected %d" % (len(per), workers))
            elif sum(per):
                mean = sum(per) / len(per)
                metrics["worker_accepted"] = per
                # Reuseport skew: busiest worker's share over an even share.
                metrics["skew"] = max(per) / mean
                metrics["idle_workers"] = sum(1 for v in per if v == 0)
            direct = srv.get("evu_direct")
            if direct and len(direct) == len(per) and sum(per):
                # evuring: connections taken by accept4() on readiness
                # rather than from io_uring (a shared socket's)
                metrics["direct_share"] = sum(direct) / sum(per)
    if cli and cli.get("connected") != total:
        problems.append("client connected %s of %d" % (cli.get("connected"), total))
    if cli and cli.get("elapsed_us"):
        metrics["client_s"] = cli["elapsed_us"] / 1e6

    acc, conn = shm.join(PORT_BASE, PORT_LAST)
    if variant not in NO_LATENCY and srv and srv.get("window_conns"):
        # Scale mode: several workers race to the window's first and last
        # connection, so a join by time can miss one or two; not a problem.
        if len(acc) != srv["window_conns"] and not scale:
            problems.append("latency join matched %d of %d measured connections" % (
                len(acc), srv["window_conns"]))
        acc.sort()
        metrics["lat_matched"] = len(acc)
        for q, name in ((50, "p50"), (99, "p99"), (99.9, "p999")):
            metrics["lat_%s_us" % name] = percentile(acc, q)
        metrics["lat_max_us"] = acc[-1] if acc else None
        metrics["lat_negative"] = sum(1 for v in acc if v < 0)
    conn.sort()
    for q, name in ((50, "p50"), (99, "p99"), (99.9, "p999")):
        metrics["connect_%s_us" % name] = percentile(conn, q)
    metrics["connect_max_us"] = conn[-1] if conn else None
    metrics["listen_drops"] = run["netstat_delta"].get("ListenDrops", 0)
    metrics["listen_overflows"] = run["netstat_delta"].get("ListenOverflows", 0)
    run["metrics"] = metrics
    run["valid"] = not problems
    return run


# ---------------------------------------------------------- summary ---

MEDIAN_KEYS = ["cpu_us_per_conn", "user_us_per_conn", "sys_us_per_conn",
               "ctxsw_per_conn", "conn_per_s", "lat_p50_us", "lat_p99_us",
               "lat_p999_us", "connect_p50_us", "connect_p99_us", "connect_p999_us",
               "listen_drops", "listen_overflows"]


def summarize(runs, variants, modes):
    medians, ratios = {}, {}
    for mode in modes:
        medians[mode] = {}
        for v in variants:
            rs = [r for r in runs if r["mode"] == mode and r["variant"] == v]
            if not rs:
                continue
            good = [r for r in rs if r["valid"]]
            use = good if good else rs
            m = {"rounds": len(rs), "valid_rounds": len(good)}
            for k in MEDIAN_KEYS:
                m[k] = median([r["metrics"].get(k) for r in use])
            m["cpu_us_per_conn_min"] = min((r["metrics"].get("cpu_us_per_conn") for r in use
                                            if r["metrics"].get("cpu_us_per_conn") is not None),
                                           default=None)
            m["cpu_us_per_conn_max"] = max((r["metrics"].get("cpu_us_per_conn") for r in use
                                            if r["metrics"].get("cpu_us_per_conn") is not None),
                                           default=None)
            medians[mode][v] = m
        ratios[mode] = {}
        base = medians[mode].get("libevent", {}).get("cpu_us_per_conn")
        for v, m in medians[mode].items():
            m["cpu_ratio_to_libevent"] = (m["cpu_us_per_conn"] / base
                                          if base and m["cpu_us_per_conn"] else None)
        for a, b in KEY_RATIOS:
            ma, mb = medians[mode].get(a), medians[mode].get(b)
            if not ma or not mb or not ma["cpu_us_per_conn"] or not mb["cpu_us_per_conn"]:
                continue
            # Paired per round: both variants ran in the same round.
            rm = [r for r in runs if r["mode"] == mode]
            per_a, per_b = per_round(rm, "cpu_us_per_conn", a), per_round(rm, "cpu_us_per_conn", b)
            paired = [x / y for x, y in zip(per_a, per_b) if x and y]
            ratios[mode]["%s/%s" % (a, b)] = {
                "cpu_ratio_of_medians": ma["cpu_us_per_conn"] / mb["cpu_us_per_conn"],
                "cpu_ratio_ci95": bootstrap_ratio_ci(per_a, per_b),
                "cpu_ratio_paired_median": median(paired),
                "cpu_ratio_paired_min": min(paired) if paired else None,
                "cpu_ratio_paired_max": max(paired) if paired else None,
                "p99_ratio_of_medians": (ma["lat_p99_us"] / mb["lat_p99_us"]
                                         if ma.get("lat_p99_us") and mb.get("lat_p99_us")
                                         else None),
                "p99_ratio_ci95": bootstrap_ratio_ci(per_round(rm, "lat_p99_us", a),
                                                     per_round(rm, "lat_p99_us", b)),
            }
    return medians, ratios


def per_round(runs, key, variant):
    """Metric `key` of `variant` in each round of runs of one (mode, workers),
    in round order; None where its run was invalid or lacks the figure."""
    out = []
    for rnd in sorted({r["round"] for r in runs}):
        vs = [r["metrics"].get(key) for r in runs
              if r["round"] == rnd and r["variant"] == variant and r["valid"]]
        out.append(vs[0] if vs and vs[0] else None)
    return out


def paired_ratios(runs, key, a, b):
    """Per-round ratio a/b of metric `key` over runs of one (mode, workers)."""
    return [x / y for x, y in zip(per_round(runs, key, a), per_round(runs, key, b))
            if x and y]


BOOTSTRAP_DRAWS = 2000


def bootstrap_ratio_ci(rounds_a, rounds_b, level=0.95, seed=1):
    """Percentile bootstrap interval of median(a)/median(b), resampling whole
    rounds (both variants ran in each, so a slow spell of the machine moves
    both together). rounds_a/rounds_b: per-round values, None where a run was
    invalid. A fixed seed: the same data always prints the same interval."""
    n = len(rounds_a)
    if n < 3:
        return None
    rng = random.Random(seed)
    draws = []
    for _ in range(BOOTSTRAP_DRAWS):
        idx = [rng.randrange(n) for _ in range(n)]
        va = [rounds_a[i] for i in idx if rounds_a[i] is not None]
        vb = [rounds_b[i] for i in idx if rounds_b[i] is not None]
        if va and vb:
            draws.append(statistics.median(va) / statistics.median(vb))
    if len(draws) < BOOTSTRAP_DRAWS // 2:
        return None
    draws.sort()
    tail = (1 - level) / 2
    return [draws[int(tail * (len(draws) - 1))], draws[int((1 - tail) * (len(draws) - 1))]]


SCALE_MEDIAN_KEYS = ["cpu_us_per_conn", "user_us_per_conn", "sys_us_per_conn",
                     "ctxsw_per_conn", "conn_per_s", "lat_p50_us", "lat_p99_us",
                     "lat_p999_us", "listen_drops", "listen_overflows", "skew",
                     "client_s", "direct_share"]


def summarize_scale(runs, variants, worker_counts, mode="scale"):
    """Scale and shared modes: medians per (workers, variant); ratios to
    libevent at the same worker count (ratio of medians and paired per
    round); conn/s and CPU/conn relative to the same variant with the fewest
    workers."""
    medians, ratios = {}, {}
    for n in worker_counts:
        key = str(n)
        medians[key], ratios[key] = {}, {}
        rn = [r for r in runs if r["mode"] == mode and r["workers"] == n]
        for v in variants:
            rs = [r for r in rn if r["variant"] == v]
            if not rs:
                continue
            good = [r for r in rs if r["valid"]]
            use = good if good else rs
            m = {"rounds": len(rs), "valid_rounds": len(good), "workers": n}
            for k in SCALE_MEDIAN_KEYS:
                m[k] = median([r["metrics"].get(k) for r in use])
            per = [r["metrics"].get("worker_accepted") for r in use
                   if r["metrics"].get("worker_accepted")]
            m["worker_accepted_median"] = ([median([p[i] for p in per]) for i in range(n)]
                                           if per else None)
            m["skew_max"] = max((r["metrics"]["skew"] for r in use
                                 if r["metrics"].get("skew")), default=None)
            medians[key][v] = m
        for a, b in SCALE_RATIOS:
            ma, mb = medians[key].get(a), medians[key].get(b)
            if not ma or not mb or not ma["cpu_us_per_conn"] or not mb["cpu_us_per_conn"]:
                continue
            pc = paired_ratios(rn, "cpu_us_per_conn", a, b)
            pr = paired_ratios(rn, "conn_per_s", a, b)
            ratios[key]["%s/%s" % (a, b)] = {
                "cpu_ratio_of_medians": ma["cpu_us_per_conn"] / mb["cpu_us_per_conn"],
                "cpu_ratio_ci95": bootstrap_ratio_ci(per_round(rn, "cpu_us_per_conn", a),
                                                     per_round(rn, "cpu_us_per_conn", b)),
                "cpu_ratio_paired_median": median(pc),
                "cpu_ratio_paired_min": min(pc) if pc else None,
                "cpu_ratio_paired_max": max(pc) if pc else None,
                "rate_ratio_of_medians": (ma["conn_per_s"] / mb["conn_per_s"]
                                          if ma["conn_per_s"] and mb["conn_per_s"] else None),
                "rate_ratio_paired_median": median(pr),
                "rate_ratio_paired_min": min(pr) if pr else None,
                "rate_ratio_paired_max": max(pr) if pr else None,
            }
    first = str(worker_counts[0]) if worker_counts else None
    for key, per_v in medians.items():
        for v, m in per_v.items():
            base = medians.get(first, {}).get(v)
            lev = per_v.get("libevent")
            m["rate_vs_first"] = (m["conn_per_s"] / base["conn_per_s"]
                                  if base and base["conn_per_s"] and m["conn_per_s"] else None)
            m["cpu_ratio_to_libevent"] = (m["cpu_us_per_conn"] / lev["cpu_us_per_conn"]
                                          if lev and lev["cpu_us_per_conn"]
                                          and m["cpu_us_per_conn"] else None)
    return medians, ratios


def print_scale(cfg, medians, ratios, worker_counts, variants, out, mode="scale"):
    out.write(("\n== scale: N worker threads, each its own event_base and "
               "LEV_OPT_REUSEABLE_PORT listener on one port;\n" if mode == "scale" else
               "\n== shared: N worker threads, each its own event_base and a listener "
               "on one shared listening socket;\n") +
              "   client connects and closes, server accepts and closes. "
              "%d measured connections per run (+%d warm-up),\n"
              "   %d rounds, %s,\n   %d client threads on all %d CPUs at nice %d, "
              "backlog %d per listener\n"
              % (cfg.scale_connections, cfg.scale_warmup, cfg.rounds,
                 "worker i pinned to CPU (%d+i) mod %d" % (cfg.server_cpu, os.cpu_count() or 1)
                 if cfg.scale_pin == "workers" else "server threads not pinned",
                 cfg.threads, os.cpu_count() or 1, cfg.scale_client_nice, cfg.backlog))
    hdr = "%-3s %-10s %9s %6s %9s %6s %7s %6s %6s  %-15s %s" % (
        "N", "variant", "CPU us/c", "x lev", "conn/s", "x N=%d" % worker_counts[0],
        "cs/c", "skew", "direct", "per worker", "ok")
    out.write(hdr + "\n" + "-" * len(hdr) + "\n")
    for n in worker_counts:
        for v in variants:
            m = medians.get(str(n), {}).get(v)
            if not m:
                continue
            per = m.get("worker_accepted_median")
            per_s = "/".join("%.0f" % x for x in per) if per else "-"
            out.write("%-3d %-10s %s %s %s %s %s %s %s  %-15s %d/%d\n" % (
                n, v, fmt(m["cpu_us_per_conn"], 2, 9), fmt(m["cpu_ratio_to_libevent"], 2, 6),
                fmt(m["conn_per_s"], 0, 9), fmt(m["rate_vs_first"], 2, 6),
                fmt(m["ctxsw_per_conn"], 3, 7),
                fmt(m["skew"], 3, 6), fmt(m.get("direct_share"), 2, 6), per_s,
                m["valid_rounds"], m["rounds"]))
    out.write("   ratios to libevent at the same N: ratio of medians (for CPU, its 95% "
              "bootstrap interval over rounds), paired per-round median [min..max]:\n")
    for n in worker_counts:
        for a, b in SCALE_RATIOS:
            r = ratios.get(str(n), {}).get("%s/%s" % (a, b))
            if not r:
                continue
            ci = r.get("cpu_ratio_ci95")
            out.write("     N=%-2d %-17s CPU/c %5.3f %-14s paired %s [%s..%s]   conn/s %s "
                      "paired %s [%s..%s]\n" % (
                          n, "%s/%s" % (a, b), r["cpu_ratio_of_medians"],
                          "(%.3f..%.3f)" % tuple(ci) if ci else "",
                          fmt(r["cpu_ratio_paired_median"], 3, 5),
                          fmt(r["cpu_ratio_paired_min"], 3, 0).strip(),
                          fmt(r["cpu_ratio_paired_max"], 3, 0).strip(),
                          fmt(r["rate_ratio_of_medians"], 3, 5),
                          fmt(r["rate_ratio_paired_median"], 3, 5),
                          fmt(r["rate_ratio_paired_min"], 3, 0).strip(),
                          fmt(r["rate_ratio_paired_max"], 3, 0).strip()))
    out.write("\nN: server worker threads; CPU us/c: server process user+sys CPU (all "
              "threads) per connection;\nconn/s: measured connections / server window wall "
              "time (client and server share the CPUs,\nso this is the whole box's rate); "
              "x N=%d: conn/s relative to the same variant with N=%d;\nskew: busiest "
              "worker's accepted count / mean (1.000 = even); per worker: accepted per "
              "worker,\nwarm-up included (median per worker index); cs/c: server context "
              "switches per connection\n(~ wakeups); direct: evuring's share of connections "
              "taken by accept4() on readiness\nrather than from io_uring (stats.direct); "
              "no latency columns: with a niced client "
              "sharing the CPUs, connect() -> accept\nlatency measures the client's "
              "scheduling, not the server (it is in the JSON).\n"
              % (worker_counts[0], worker_counts[0]))
    out.flush()


def plot_scale(cfg, medians, worker_counts, variants, png_path, mode="scale"):
    gnuplot = shutil.which("gnuplot")
    if not gnuplot:
        log("gnuplot not found (Debian: apt-get install gnuplot-nox): no scale plot")
        return False
    dat = png_path[:-4] + ".dat" if png_path.endswith(".png") else png_path + ".dat"
    vs = [v for v in variants if any(v in medians.get(str(n), {}) for n in worker_counts)]
    with open(dat, "w") as f:
        f.write("# workers " + " ".join("rate_%s cpu_%s" % (v, v) for v in vs) + "\n")
        for n in worker_counts:
            row = [str(n)]
            for v in vs:
                m = medians.get(str(n), {}).get(v, {})
                for k in ("conn_per_s", "cpu_us_per_conn"):
                    val = m.get(k)
                    row.append("NaN" if val is None else "%.4f" % val)
            f.write(" ".join(row) + "\n")
    rate = ", ".join("'%s' using 1:%d with linespoints lw 2 title '%s'" % (dat, 2 + 2 * i, v)
                     for i, v in enumerate(vs))
    cpu = ", ".join("'%s' using 1:%d with linespoints lw 2 title '%s'" % (dat, 3 + 2 * i, v)
                    for i, v in enumerate(vs))
    script = """
set terminal pngcairo size 1000,800 noenhanced font 'sans,10'
set output '%(png)s'
set datafile missing 'NaN'
set grid
set key top left
set xlabel '%(xlabel)s'
set xtics (%(xtics)s)
set xrange [%(xmin)f:%(xmax)f]
set multiplot layout 2,1 title 'evuring %(what)s: %(title)s'
set title 'accepted connections per second (median of %(rounds)d rounds; client shares the CPUs)'
set ylabel 'conn/s'
set yrange [0:*]
plot %(rate)s
set title 'server CPU per accepted connection, all threads'
set ylabel 'CPU us / connection'
plot %(cpu)s
unset multiplot
""" % {"png": png_path, "rate": rate, "cpu": cpu, "rounds": cfg.rounds,
       "xlabel": ("worker threads (one event_base + SO_REUSEPORT listener each)"
                  if mode == "scale" else
                  "worker threads (one event_base each, listeners on one shared socket)"),
       "what": "scale-out" if mode == "scale" else "shared socket",
       "xtics": ", ".join("'%d' %d" % (n, n) for n in worker_counts),
       "xmin": min(worker_counts) - 0.5, "xmax": max(worker_counts) + 0.5,
       "title": "%s, %d conns/run, %s" % (platform.release(), cfg.scale_connections,
                                          datetime.date.today().isoformat())}
    try:
        r = subprocess.run([gnuplot], input=script, text=True, capture_output=True, timeout=60)
    except (OSError, subprocess.SubprocessError) as e:
        log("gnuplot failed: %s" % e)
        return False
    if r.returncode != 0 or not os.path.exists(png_path):
        log("gnuplot failed: %s" % r.stderr.strip()[-500:])
        return False
    return True


def mode_rounds(cfg, mode):
    return cfg.target_rounds if mode == "accept-close" else cfg.rounds


# The storms the targets are judged on (accept-close, and write-close with
# it) run the client open-loop at a fixed rate under the server's capacity,
# so that the server sleeps between connections in every run, the regime
# issue 6 specifies ("so the server wakes per connection"). Eight closed-loop
# threads sometimes outpaced the server instead: it never slept, and every
# variant came out near 1, the blocking accept4 loop included; which regime a
# run got changed within minutes on the same machine. The rate comes from
# libevent's listener on this machine: its closed-loop CPU per connection over
# STORM_BUSY, so that it would be busy that share of the time.
STORM_BUSY = 0.4
STORM_MODES = ("accept-close", "write-close")


def client_pace_us(cfg, mode):
    """The client's gap between connections in this mode, us; 0: closed loop."""
    if mode == "paced":
        return cfg.pace_us
    if mode in STORM_MODES:
        return cfg.storm_pace_us
    return 0


def client_threads(cfg, mode):
    # One open-loop thread keeps an absolute schedule; more would only add
    # their own jitter to it.
    return 1 if client_pace_us(cfg, mode) else cfg.threads


def calibrate_storm_pace(cfg, paths, shm, prog):
    """--storm-pace auto: libevent's listener, closed loop, three runs; the pace
    that would keep it STORM_BUSY busy. Returns the JSON record."""
    cfg.storm_pace_us = 0
    cpu = []
    for i in range(3):
        prog.show("calibrating the storm rate %d/3: libevent, closed loop" % (i + 1))
        run = run_one(cfg, paths, shm, "libevent", "accept-close")
        prog.done += 1
        c = run["metrics"].get("cpu_us_per_conn")
        if run["valid"] and c:
            cpu.append(c)
    rec = {"requested": "auto", "busy_target": STORM_BUSY,
           "calibration_cpu_us_per_conn": [round(c, 2) for c in cpu]}
    if not cpu:
        prog.finish()
        log("storm: calibration runs failed: accept-close and write-close run closed-loop")
        rec["pace_us"] = None
        return rec
    cfg.storm_pace_us = float(math.ceil(statistics.median(cpu) / STORM_BUSY))
    rec["pace_us"] = cfg.storm_pace_us
    return rec


# Below this many server context switches per connection (libevent's or
# evuring's), the accept-close run did not measure the wakeup path.
WAKE_MIN = 0.5

# The speed targets (issue 6), judged on accept-close: (name, value key, bar).
TARGETS = [("evuring/libevent CPU per connection", ("evuring", "libevent"), 0.90),
           ("evuring/floor CPU per connection", ("evuring", "floor"), 1.05),
           ("fallback/libevent CPU per connection", ("fallback", "libevent"), 1.05)]


# A connection whose callback came this long after its connect() returned
# waited for a stall of the machine, not for a listener (below).
STALL_US = 50000


def stall_counts(runs, mode="accept-close"):
    """Per variant: (runs with a callback STALL_US or more late, runs)."""
    out = {}
    for r in runs:
        if r["mode"] == mode and r["valid"] and r["metrics"].get("lat_max_us") is not None:
            late = r["metrics"]["lat_max_us"] >= STALL_US
            n = out.get(r["variant"], (0, 0))
            out[r["variant"]] = (n[0] + late, n[1] + 1)
    return out


def targets(medians, ratios, runs=()):
    """The targets this run can judge: a list of {name, value, bar, met}."""
    out = []
    rs = ratios.get("accept-close", {})
    for name, (a, b), bar in TARGETS:
        r = rs.get("%s/%s" % (a, b))
        if r:
            v = r["cpu_ratio_of_medians"]
            ci = r.get("cpu_ratio_ci95")
            # When the machine drifts between rounds, the two medians can come
            # from different rounds; the per-round pairs cannot. Met needs both.
            pm = r.get("cpu_ratio_paired_median")
            out.append({"name": name, "value": round(v, 3), "bar": "<= %.2f" % bar,
                        "met": v <= bar and (pm is None or pm <= bar),
                        "paired": round(pm, 3) if pm is not None else None,
                        "split": pm is not None and (v <= bar) != (pm <= bar),
                        "ci95": [round(x, 3) for x in ci] if ci else None,
                        # Whether another run would likely give the same verdict.
                        "clear": bool(ci) and (ci[1] <= bar or ci[0] > bar)})
    m = medians.get("accept-close", {})
    # The targets assume the server sleeps between connections (issue 6:
    # "so the server wakes per connection"). When the clients outpace it, it
    # never sleeps, the wakeup path drops out, and every variant converges
    # on the kernel's per-connection work.
    wake = {v: m[v]["ctxsw_per_conn"] for v in ("libevent", "evuring")
            if m.get(v, {}).get("ctxsw_per_conn") is not None}
    if len(wake) == 2:
        busy = {v: m[v]["conn_per_s"] * m[v]["cpu_us_per_conn"] / 1e6 for v in wake
                if m[v].get("conn_per_s") and m[v].get("cpu_us_per_conn")}
        out.append({"name": "server wakeups per connection", "value": round(min(wake.values()), 3),
                    "bar": ">= %.2f" % WAKE_MIN, "met": min(wake.values()) >= WAKE_MIN,
                    "wake": {v: round(x, 3) for v, x in wake.items()},
                    "busy": {v: round(x, 3) for v, x in busy.items()}, "regime": True})
    ev, lev = m.get("evuring", {}).get("lat_p99_us"), m.get("libevent", {}).get("lat_p99_us")
    if ev and lev:
        ci = rs.get("evuring/libevent", {}).get("p99_ratio_ci95")
        out.append({"name": "evuring p99 accept latency (us)", "value": round(ev, 1),
                    "bar": "<= libevent's %.1f" % lev, "met": ev <= lev,
                    "ratio": round(ev / lev, 3),
                    # On the 2-vCPU VMs of 2026-12, about half the open-loop
                    # runs of every variant (the blocking accept4 loop
                    # included) had one stall of about 100 ms in which the
                    # idle server CPU was not woken; p99 then measures it.
                    "stalled_runs": {v: list(c) for v, c in stall_counts(runs).items()},
                    "ratio_ci95": [round(x, 3) for x in ci] if ci else None,
                    "clear": bool(ci) and (ci[1] <= 1 or ci[0] > 1)})
    return out


def print_targets(result, out):
    t = result.get("targets")
    if not t:
        return
    out.write("\n== targets (accept-close; ratios of medians with their 95% bootstrap "
              "interval over rounds, met only if the paired per-round median meets the "
              "bar too: one run's verdict, see the README for the spread over runs)\n")
    for x in t:
        if x.get("regime"):
            out.write("   %-38s %8s %-13s %-22s %s\n" % (
                x["name"], "%.2f" % x["value"], "", x["bar"],
                "yes: the server slept between connections" if x["met"] else
                "NO: the clients outpaced the server, which hardly slept; the CPU "
                "targets above\n      measure the kernel's per-connection work, where every "
                "variant comes out near 1, not the wakeup path"))
            out.write("      (libevent %.2f, evuring %.2f; server CPU busy %s)\n" % (
                x["wake"]["libevent"], x["wake"]["evuring"],
                ", ".join("%s %.0f%%" % (v, 100 * b) for v, b in sorted(x["busy"].items()))))
            continue
        value = ("%.1f" if "latency" in x["name"] else "%.3f") % x["value"]
        ci = x.get("ci95")
        span = "%.3f..%.3f" % tuple(ci) if ci else ""
        verdict = "met" if x["met"] else "NOT met"
        if x.get("split"):
            verdict += " (paired per-round median %.3f: the rounds drifted)" % x["paired"]
        if ci and not x.get("clear"):
            verdict += ", within noise (the bar is inside the interval)"
        rci = x.get("ratio_ci95")
        if rci and not x.get("clear"):
            verdict += ", within noise (ratio %.2f, interval %.2f..%.2f holds 1)" % (
                x["ratio"], rci[0], rci[1])
        out.write("   %-38s %8s %-13s %-22s %s\n" % (x["name"], value, span, x["bar"],
                                                     verdict))
        st = x.get("stalled_runs") or {}
        if any(c[0] for c in st.values()):
            out.write("      runs with a callback %d ms or more after its connect() (a stall of "
                      "the machine, not of\n      one listener, when every variant has them; "
                      "the p99 of such a run measures the stall):\n      %s\n" % (
                          STALL_US // 1000,
                          ", ".join("%s %d/%d" % (v, c[0], c[1]) for v, c in sorted(st.items()))))
    # The 0.90 bar read against what no listener inside an event loop can
    # beat: the loops of this run that sleep in the accept itself.
    m = result.get("medians", {}).get("accept-close", {})
    lev = m.get("libevent", {}).get("cpu_us_per_conn")
    floors = [(v, m[v]["cpu_us_per_conn"] / lev) for v in ("accept4", "raw-uring", "raw-uring-gpn")
              if lev and m.get(v, {}).get("cpu_us_per_conn")]
    if floors:
        out.write("   for scale, loops with no event loop (they sleep in the accept) cost "
                  "%s of libevent's listener\n" %
                  ", ".join("%s %.3f" % f for f in floors))


def print_tables(cfg, medians, ratios, modes, variants, out):
    for mode in modes:
        ov = mode == "overload"
        paced = mode == "paced"
        n = (cfg.overload_connections if ov else cfg.paced_connections if paced
             else cfg.connections)
        w = cfg.overload_warmup if ov else cfg.paced_warmup if paced else cfg.warmup
        pace = client_pace_us(cfg, mode)
        rate = (", one connection every %g us (%.0f/s)" % (pace, 1e6 / pace)
                if pace and mode in STORM_MODES else "")
        desc = {"accept-close": "client connects and closes; server accepts and closes"
                                + rate,
                "write-close": "client writes %d bytes before closing; server just closes"
                               % cfg.write_bytes + rate,
                "overload": "callback busy-works %.0f us per connection" % cfg.work_us,
                "paced": "one connection every %g us, accept and close: the server "
                         "sleeps between connections" % cfg.pace_us}[mode]
        out.write("\n== %s: %s\n   %d measured connections per run (+%d warm-up), "
                  "%d rounds, %d client thread%s on CPU %d, server on CPU %d, backlog %d\n"
                  % (mode, desc, n, w, mode_rounds(cfg, mode), client_threads(cfg, mode),
                     "" if client_threads(cfg, mode) == 1 else "s",
                     cfg.client_cpu, cfg.server_cpu,
                     cfg.overload_backlog if ov else cfg.backlog))
        hdr = "%-14s %9s %6s %9s %6s %9s %9s %9s" % (
            "variant", "CPU us/c", "x lev", "conn/s", "wake/c", "p50 us", "p99 us", "p999 us")
        hdr += " %7s" % "drops"
        if ov:
            hdr += " %9s %9s" % ("conn p50", "conn p99")
        hdr += "  ok"
        out.write(hdr + "\n" + "-" * len(hdr) + "\n")
        for v in variants:
            m = medians.get(mode, {}).get(v)
            if not m:
                continue
            line = "%-14s %s %s %s %s %s %s %s" % (
                v, fmt(m["cpu_us_per_conn"], 2, 9), fmt(m["cpu_ratio_to_libevent"], 2, 6),
                fmt(m["conn_per_s"], 0, 9), fmt(m["ctxsw_per_conn"], 2, 6),
                fmt(m["lat_p50_us"], 1, 9),
                fmt(m["lat_p99_us"], 1, 9), fmt(m["lat_p999_us"], 1, 9))
            line += " %s" % fmt(m["listen_drops"], 0, 7)
            if ov:
                line += " %s %s" % (fmt(m["connect_p50_us"], 0, 9),
                                    fmt(m["connect_p99_us"], 0, 9))
            line += "  %d/%d" % (m["valid_rounds"], m["rounds"])
            out.write(line + "\n")
        rs = ratios.get(mode, {})
        if rs:
            out.write("   CPU per connection ratios: ratio of medians (its 95% bootstrap "
                      "interval over rounds), paired per-round median [min..max]:\n")
            for a, b in KEY_RATIOS:
                r = rs.get("%s/%s" % (a, b))
                if not r:
                    continue
                ci = r.get("cpu_ratio_ci95")
                out.write("     %-20s %5.3f %-14s paired %s [%s..%s]\n" % (
                    "%s/%s" % (a, b), r["cpu_ratio_of_medians"],
                    "(%.3f..%.3f)" % tuple(ci) if ci else "",
                    fmt(r["cpu_ratio_paired_median"], 3, 5),
                    fmt(r["cpu_ratio_paired_min"], 3, 0).strip(),
                    fmt(r["cpu_ratio_paired_max"], 3, 0).strip()))
    out.write("\nCPU us/c: server user+sys CPU per accepted connection (getrusage over the "
              "measured window);\nx lev: ratio to libevent; p50/p99/p999: connect() return "
              "-> accept callback (CLOCK_MONOTONIC);\ndrops: TcpExt ListenDrops delta per "
              "run (accept queue full);\nwake/c: server context switches per connection "
              "(about 1 when it sleeps between connections,\nnear 0 when the clients outpace "
              "it and it never sleeps);\nconn p50/p99: client connect() duration;\n"
              "ok: rounds without problems / rounds; all figures are medians over rounds.\n")
    out.flush()


def plot(cfg, medians, modes, variants, png_path):
    gnuplot = shutil.which("gnuplot")
    if not gnuplot:
        log("gnuplot not found (Debian: apt-get install gnuplot-nox): no plot")
        return False
    dat = png_path[:-4] + ".dat" if png_path.endswith(".png") else png_path + ".dat"
    with open(dat, "w") as f:
        f.write("# variant " + " ".join("cpu_%s cpu_min_%s cpu_max_%s" % (m, m, m)
                                        for m in modes) + " " +
                " ".join("p99_" + m for m in modes) + "\n")
        for v in variants:
            if not any(v in medians.get(m, {}) for m in modes):
                continue
            row = [v]
            keys = [(m, k) for m in modes
                    for k in ("cpu_us_per_conn", "cpu_us_per_conn_min", "cpu_us_per_conn_max")]
            keys += [(m, "lat_p99_us") for m in modes]
            for m, key in keys:
                val = medians.get(m, {}).get(v, {}).get(key)
                row.append("NaN" if val is None or val <= 0 else "%.4f" % val)
            f.write(" ".join(row) + "\n")
    nm = len(modes)
    # CPU: the median with a bar from the cheapest to the dearest round.
    cpu_cols = ", ".join("'%s' using %d:%d:%d:xtic(1) title '%s'" % (
        dat, 2 + 3 * i, 3 + 3 * i, 4 + 3 * i, m) for i, m in enumerate(modes))
    lat_cols = ", ".join("'%s' using %d:xtic(1) title '%s'" % (dat, 2 + 3 * nm + i, m)
                         for i, m in enumerate(modes))
    script = """
set terminal pngcairo size 1200,900 noenhanced font 'sans,10'
set output '%(png)s'
set datafile missing 'NaN'
set style data histograms
set style histogram errorbars gap 1 lw 1
set style fill solid 0.85 border -1
set boxwidth 0.9
set grid ytics
set key top left
set xtics rotate by -20
set multiplot layout 2,1 title 'evuring accept storm: %(title)s'
set title 'server CPU per accepted connection (median over rounds, bar: cheapest to dearest round; overload includes %(work).0f us of busy work)'
set ylabel 'CPU us / connection'
set yrange [0:*]
plot %(cpu)s
set style histogram clustered gap 1
set title 'accept latency p99: connect() return -> accept callback (log scale; raw-uring has no peer address)'
set ylabel 'p99 latency, us'
set logscale y
set yrange [*:*]
plot %(lat)s
unset multiplot
""" % {"png": png_path, "title": "%s, %d conns/run, %s" % (
        platform.release(), cfg.connections,
        datetime.date.today().isoformat()),
       "rounds": cfg.rounds, "work": cfg.work_us, "cpu": cpu_cols, "lat": lat_cols}
    try:
        r = subprocess.run([gnuplot], input=script, text=True, capture_output=True, timeout=60)
    except (OSError, subprocess.SubprocessError) as e:
        log("gnuplot failed: %s" % e)
        return False
    if r.returncode != 0 or not os.path.exists(png_path):
        log("gnuplot failed: %s" % r.stderr.strip()[-500:])
        return False
    return True


# ------------------------------------------------------- network namespace ---

def netns_probe():
    """Can we make a network namespace (root, util-linux unshare)?"""
    if not shutil.which("unshare"):
        return False
    try:
        return subprocess.run(["unshare", "--net", "true"], capture_output=True,
                              timeout=10).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


def netns_setup(keep_timewait):
    """Inside a fresh network namespace: bring loopback up and (unless told
    otherwise) keep no TIME_WAIT sockets. Returns notes for the JSON."""
    notes = {"netns": True}
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        SIOCGIFFLAGS, SIOCSIFFLAGS, IFF_UP = 0x8913, 0x8914, 0x1
        ifr = struct.pack("16sH14s", b"lo", 0, b"")
        flags = struct.unpack("16sH", fcntl.ioctl(s, SIOCGIFFLAGS, ifr)[:18])[1]
        fcntl.ioctl(s, SIOCSIFFLAGS, struct.pack("16sH14s", b"lo", flags | IFF_UP, b""))
    finally:
        s.close()
    if not keep_timewait:
        # Hundreds of thousands of TIME_WAIT sockets expire in bursts (the timer
        # wheel batches 60 s timers), in softirq on the server's CPU: multi-ms
        # stalls that overflow the accept queue at random. Without TIME_WAIT the
        # closing side's socket is freed at once (TCPTimeWaitOverflow counts it).
        with open("/proc/sys/net/ipv4/tcp_max_tw_buckets", "w") as f:
            f.write("0\n")
        notes["tcp_max_tw_buckets"] = 0
    return notes


# ---------------------------------------------------------------- main ---

def round_order(variants, rnd):
    """Variant order of round rnd: row rnd of a Williams Latin square.

    A plain rotation keeps each variant's predecessor the same in every
    round, so whatever one run leaves behind (sockets still being freed,
    caches) always lands on the same next variant: a bias, not noise
    (suspected: fallback/libevent 1.095 in all five write-close rounds of a
    run where it always followed preload, 1.010 without that neighbour). In
    a Williams square each variant takes each position once per
    len(variants) rounds and, for an even count, follows each other variant
    once."""
    n = len(variants)
    first, lo, hi = [0], 1, n - 1
    while len(first) < n:
        if len(first) % 2:
            first.append(lo)
            lo += 1
        else:
            first.append(hi)
            hi -= 1
    return [variants[(i + rnd) % n] for i in first]


def find_paths(build):
    for cand in (os.path.join(build, "bench", "storm-paths.json"),
                 os.path.join(build, "storm-paths.json")):
        if os.path.exists(cand):
            with open(cand) as f:
                return json.load(f), cand
    return None, None


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--build", default="build", help="build directory (default: build)")
    ap.add_argument("--out", default="bench-results", help="output directory")
    ap.add_argument("--json", help="JSON file (default: OUT/storm.json)")
    ap.add_argument("--png", help="plot file (default: OUT/storm.png)")
    ap.add_argument("--quick", action="store_true",
                    help="smoke test: 3 rounds, few connections (under a minute)")
    ap.add_argument("--rounds", type=int, help="rounds (default 5; quick 3)")
    ap.add_argument("--target-rounds", type=int,
                    help="rounds of accept-close, the mode the speed targets are judged on "
                         "(default 9: a median of more rounds moves less with a shared "
                         "machine's slow spells; quick 3)")
    ap.add_argument("--connections", type=int,
                    help="measured connections per run (default 20000; quick 2000)")
    ap.add_argument("--warmup", type=int, help="warm-up connections (default connections/10)")
    ap.add_argument("--overload-connections", type=int,
                    help="measured connections per overload run (default 4000; quick 800)")
    ap.add_argument("--threads", type=int, default=8, help="client threads (default 8)")
    ap.add_argument("--paced-connections", type=int,
                    help="measured connections per paced run (default 2000; quick 300)")
    ap.add_argument("--pace-us", type=float, default=1000.0,
                    help="paced mode: one connection every this many us (default 1000)")
    ap.add_argument("--storm-pace", default="auto",
                    help="accept-close and write-close: 'auto' (default: one client thread "
                         "opening a connection every C/%.1f us, C being libevent's listener's "
                         "closed-loop CPU per connection measured first on this machine, so "
                         "that every server sleeps between connections), a gap in us, or "
                         "'closed' (%s closed-loop client threads, as fast as they can: the "
                         "server may then never sleep)" % (STORM_BUSY, "--threads"))
    ap.add_argument("--backlog", type=int, default=4096,
                    help="listen backlog in accept-close/write-close (default 4096: a few-ms "
                         "stall of the server must not turn into 1 s SYN retries)")
    ap.add_argument("--overload-backlog", type=int, default=128,
                    help="listen backlog in overload mode (default 128, libevent's -1)")
    ap.add_argument("--work-us", type=float, default=25.0,
                    help="busy work per connection in overload mode (default 25)")
    ap.add_argument("--write-bytes", type=int, default=16,
                    help="bytes the client writes in write-close mode (default 16)")
    ap.add_argument("--variants", default=",".join(ALL_VARIANTS))
    ap.add_argument("--base-lib",
                    help="libevuring.so.0 of another build (its directory must hold "
                         "libevuring.so.0): enables variants %s, the same servers with that "
                         "library, to compare a change with its predecessor"
                         % ",".join(BASE_VARIANTS))
    ap.add_argument("--modes", default=",".join(ALL_MODES))
    ap.add_argument("--scale-workers",
                    help="scale and shared modes: server worker counts, comma-separated (default 1..nproc)")
    ap.add_argument("--scale-variants", default="libevent,evuring",
                    help="scale and shared mode variants (of %s; default libevent,evuring)"
                         % ",".join(SCALE_VARIANTS))
    ap.add_argument("--scale-connections", type=int,
                    help="measured connections per scale or shared run (default: --connections)")
    ap.add_argument("--scale-client-nice", type=int, default=19,
                    help="scale mode: nice value of the client (default 19: the server's "
                         "threads get a CPU whenever they are runnable; 0: plain fair share, "
                         "where 8 client threads starve the server into accept-queue "
                         "overflows)")
    ap.add_argument("--scale-pin", choices=["workers", "none"], default="workers",
                    help="scale mode: 'workers' (default) pins server worker i to CPU "
                         "(server-cpu + i) mod nproc, 'none' pins nothing; the client is "
                         "never pinned in scale mode")
    ap.add_argument("--png-scale", help="scale plot file (default: OUT/storm-scale.png)")
    ap.add_argument("--floor-opt", default="coop", help="floor ring flags: coop or none")
    ap.add_argument("--linger-us", type=int, default=30,
                    help="variant floor-linger: after each batch, wait this long in "
                         "io_uring_enter for the next completion before returning to the "
                         "event loop (an experiment; default 30)")
    ap.add_argument("--server-cpu", type=int, default=1)
    ap.add_argument("--client-cpu", type=int, default=0)
    ap.add_argument("--run-timeout", type=float, default=60.0,
                    help="hard limit for one run, seconds (default 60)")
    ap.add_argument("--grace", type=float, default=4.0,
                    help="seconds the server may take after the client ends (default 4)")
    ap.add_argument("--netns", choices=["auto", "on", "off"], default="auto",
                    help="run in a private network namespace (needs root; default auto: "
                         "when possible)")
    ap.add_argument("--keep-timewait", action="store_true",
                    help="in the namespace, keep TIME_WAIT sockets (default: none)")
    ap.add_argument("--in-netns", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--settle", type=float,
                    help="pause before each run, seconds (default 0.3; quick 0.1)")
    ap.add_argument("--no-plot", action="store_true")
    ap.add_argument("--no-progress", action="store_true")
    cfg = ap.parse_args()

    if cfg.rounds is None:
        cfg.rounds = 3 if cfg.quick else 5
    if cfg.target_rounds is None:
        cfg.target_rounds = 3 if cfg.quick else max(cfg.rounds, 9)
    if cfg.settle is None:
        cfg.settle = 0.1 if cfg.quick else 0.3
    if cfg.connections is None:
        cfg.connections = 2000 if cfg.quick else 20000
    if cfg.warmup is None:
        cfg.warmup = max(100, cfg.connections // 10)
    if cfg.overload_connections is None:
        cfg.overload_connections = 800 if cfg.quick else 4000
    cfg.overload_warmup = max(100, cfg.overload_connections // 10)
    if cfg.storm_pace in ("auto", "closed"):
        cfg.storm_pace_us = 0.0
    else:
        try:
            cfg.storm_pace_us = float(cfg.storm_pace)
        except ValueError:
            cfg.storm_pace_us = -1.0
        if not 0 < cfg.storm_pace_us <= 1e6:
            ap.error("--storm-pace: auto, closed, or a gap in microseconds (up to 1000000)")
    if cfg.paced_connections is None:
        cfg.paced_connections = 300 if cfg.quick else 2000
    cfg.paced_warmup = max(30, cfg.paced_connections // 10)
    if cfg.scale_connections is None:
        cfg.scale_connections = cfg.connections
    cfg.scale_warmup = max(100, cfg.scale_connections // 10)
    span = PORT_LAST - PORT_BASE + 1 - 500  # leave room for failed binds/connects
    for total in (cfg.connections + cfg.warmup,
                  cfg.overload_connections + cfg.overload_warmup,
                  cfg.paced_connections + cfg.paced_warmup,
                  cfg.scale_connections + cfg.scale_warmup):
        if total > span:
            ap.error("at most %d connections per run (warm-up included): every connection "
                     "of a run needs its own source port" % span)
    if cfg.rounds < 1 or cfg.target_rounds < 1 or cfg.connections < 1:
        ap.error("rounds and connections must be positive")
    ncpu = os.cpu_count() or 1
    if max(cfg.server_cpu, cfg.client_cpu) >= ncpu or cfg.server_cpu == cfg.client_cpu:
        ap.error("need two distinct CPUs below %d for --server-cpu/--client-cpu" % ncpu)
    try:
        worker_counts = ([int(x) for x in cfg.scale_workers.split(",") if x.strip()]
                         if cfg.scale_workers else list(range(1, ncpu + 1)))
    except ValueError:
        ap.error("--scale-workers: comma-separated numbers, e.g. 1,2,4")
    if not worker_counts or min(worker_counts) < 1 or max(worker_counts) > 64:
        ap.error("--scale-workers: between 1 and 64 workers")
    cfg.scale_workers = worker_counts

    netns_notes = {"netns": False}
    if cfg.in_netns:
        netns_notes = netns_setup(cfg.keep_timewait)
    elif cfg.netns != "off":
        if netns_probe():
            argv = [sys.executable, os.path.abspath(__file__)] + sys.argv[1:] + ["--in-netns"]
            sys.stdout.flush()
            sys.stderr.flush()
            os.execvp("unshare", ["unshare", "--net", "--"] + argv)
        if cfg.netns == "on":
            sys.exit("storm: cannot create a network namespace (needs root and unshare)")
        log("storm: no network namespace (not root?): running on the host's loopback, "
            "TIME_WAIT sockets included")

    paths, paths_file = find_paths(cfg.build)
    if not paths:
        sys.exit("storm: no storm-paths.json under %s (build the benchmarks first)" % cfg.build)
    variants = [v for v in cfg.variants.split(",") if v]
    modes = [m for m in cfg.modes.split(",") if m]
    for v in variants:
        if v not in ALL_VARIANTS + EXTRA_VARIANTS + BASE_VARIANTS:
            ap.error("unknown variant %r (known: %s)" % (
                v, ", ".join(ALL_VARIANTS + EXTRA_VARIANTS + BASE_VARIANTS)))
        if v in BASE_VARIANTS and not (cfg.base_lib and os.path.exists(cfg.base_lib)):
            ap.error("variant %s needs --base-lib (an existing libevuring.so.0)" % v)
    for m in modes:
        if m not in ALL_MODES:
            ap.error("unknown mode %r (known: %s)" % (m, ", ".join(ALL_MODES)))
    scale_variants = []
    multi_modes = [m for m in modes if m in MULTI_MODES]
    if multi_modes:
        scale_variants = [v for v in cfg.scale_variants.split(",") if v]
        for v in scale_variants:
            if v not in SCALE_VARIANTS:
                ap.error("unknown scale variant %r (known: %s)" % (v, ", ".join(SCALE_VARIANTS)))
        if not paths.get("server_reuseport_libevent"):
            log("storm: this build has no reuseport server (rebuild): skipping %s"
                % " and ".join(multi_modes))
            scale_variants = []
        elif not paths.get("server_reuseport_evuring") or not paths.get("libevuring"):
            scale_variants = [v for v in scale_variants if v not in NEEDS_EVURING]
    modes = [m for m in modes if m not in MULTI_MODES]
    if not scale_variants:
        multi_modes = []
    if not modes:
        variants = []
    skipped = []
    if not paths.get("server_evuring") or not paths.get("libevuring"):
        skipped = [v for v in variants if v in NEEDS_EVURING]
        if skipped:
            log("storm: this build has no evuring library: skipping %s" % ", ".join(skipped))
        variants = [v for v in variants if v not in NEEDS_EVURING]
    if not variants and not scale_variants:
        sys.exit("storm: nothing to run")

    os.makedirs(cfg.out, exist_ok=True)
    json_path = cfg.json or os.path.join(cfg.out, "storm.json")
    png_path = cfg.png or os.path.join(cfg.out, "storm.png")
    png_scale_path = cfg.png_scale or os.path.join(cfg.out, "storm-scale.png")
    png_multi = {"scale": png_scale_path, "shared": os.path.join(cfg.out, "storm-shared.png")}

    # The runner itself stays off the server's CPU.
    try:
        os.sched_setaffinity(0, {cfg.client_cpu})
    except OSError:
        pass

    meta = machine_info(paths)
    meta.update(netns_notes)
    meta["paths_file"] = os.path.abspath(paths_file)
    meta["paths"] = paths
    shm = Shm("/dev/shm/evuring-storm-%d" % os.getpid())
    runs = []
    calibrate = cfg.storm_pace == "auto" and bool(variants) and any(
        m in STORM_MODES for m in modes)
    total_runs = (sum(mode_rounds(cfg, m) for m in modes) * len(variants) +
                  cfg.rounds * len(worker_counts) * len(scale_variants) * len(multi_modes) +
                  (3 if calibrate else 0))
    prog = Progress(total_runs, not cfg.no_progress)
    interrupted = False

    def on_term(sig, frame):
        raise KeyboardInterrupt

    def record(run, rnd, pos, what):
        run["round"] = rnd
        run["position"] = pos
        runs.append(run)
        prog.done += 1
        if run["problems"]:
            prog.finish()
            log("storm: %s round %d: %s" % (what, rnd + 1, "; ".join(run["problems"])))

    signal.signal(signal.SIGTERM, on_term)
    t_start = time.monotonic()
    storm_pace = {"requested": cfg.storm_pace, "pace_us": cfg.storm_pace_us or None}
    try:
        if calibrate:
            storm_pace = calibrate_storm_pace(cfg, paths, shm, prog)
        for mode in modes:
            nrounds = mode_rounds(cfg, mode)
            for rnd in range(nrounds):
                order = round_order(variants, rnd)
                for pos, v in enumerate(order):
                    if TTY:
                        prog.show("%s round %d/%d: %s" % (mode, rnd + 1, nrounds, v))
                    else:
                        prog.show("%s round %d/%d" % (mode, rnd + 1, nrounds))
                    record(run_one(cfg, paths, shm, v, mode), rnd, pos, "%s %s" % (mode, v))
        # Scale, shared: every worker count in every round, variant order
        # as above.
        for mm in multi_modes:
            for rnd in range(cfg.rounds):
                for n in worker_counts:
                    order = round_order(scale_variants, rnd)
                    for pos, v in enumerate(order):
                        prog.show("%s round %d/%d: N=%d %s" % (mm, rnd + 1, cfg.rounds, n, v)
                                  if TTY else "%s round %d/%d" % (mm, rnd + 1, cfg.rounds))
                        record(run_one(cfg, paths, shm, v, mm, workers=n), rnd, pos,
                               "%s N=%d %s" % (mm, n, v))
    except KeyboardInterrupt:
        interrupted = True
        prog.finish()
        log("storm: interrupted; reporting what ran")
    finally:
        shm.close()
    prog.finish()

    medians, ratios = summarize([r for r in runs if r["mode"] not in MULTI_MODES],
                                variants, modes)
    for mm in multi_modes:
        medians[mm], ratios[mm] = summarize_scale(runs, scale_variants, worker_counts, mm)
    result = {
        "benchmark": "evuring accept storm",
        "meta": meta,
        "config": {k: v for k, v in vars(cfg).items()},
        "variants": variants,
        "skipped_variants": skipped,
        "modes": modes + multi_modes,
        "scale": ({"workers": worker_counts, "variants": scale_variants,
                   "connections": cfg.scale_connections, "warmup": cfg.scale_warmup,
                   "pinning": ("server worker i on CPU (%d+i) mod nproc" % cfg.server_cpu
                               if cfg.scale_pin == "workers" else "server not pinned") +
                              "; client threads on all CPUs at nice %d" % cfg.scale_client_nice,
                   "medians_key": "medians.scale[workers][variant]",
                   "modes": multi_modes}
                  if multi_modes else None),
        "storm_pace": storm_pace,
        "interrupted": interrupted,
        "duration_s": round(time.monotonic() - t_start, 1),
        "medians": medians,
        "ratios": ratios,
        "targets": targets(medians, ratios, runs),
        "runs": runs,
    }
    with open(json_path, "w") as f:
        json.dump(result, f, indent=1)

    sys.stdout.write("evuring accept storm  %s  kernel %s  %s  (%d runs, %.0f s)\n" % (
        meta["date"], meta["kernel"], meta.get("cpu_model", "?"), len(runs),
        result["duration_s"]))
    cal = storm_pace.get("calibration_cpu_us_per_conn")
    if cal and storm_pace.get("pace_us"):
        sys.stdout.write("storm rate (--storm-pace auto): libevent's listener, closed loop, "
                         "%s us per connection; / %.1f -> one connection every %g us\n"
                         % ("/".join("%.1f" % c for c in cal), STORM_BUSY,
                            storm_pace["pace_us"]))
    if modes and variants:
        print_tables(cfg, medians, ratios, modes, variants, sys.stdout)
    for mm in multi_modes:
        print_scale(cfg, medians[mm], ratios[mm], worker_counts, scale_variants,
                    sys.stdout, mm)
    print_targets(result, sys.stdout)
    wrote = [json_path]
    if not cfg.no_plot and modes and variants and plot(cfg, medians, modes, variants,
                                                       png_path):
        wrote.append(png_path)
    for mm in multi_modes:
        if not cfg.no_plot and plot_scale(cfg, medians[mm], worker_counts, scale_variants,
                                          png_multi[mm], mm):
            wrote.append(png_multi[mm])
    sys.stdout.write("\nwrote %s\n" % ", ".join(wrote))
    bad = sum(1 for r in runs if not r["valid"])
    if bad:
        sys.stdout.write("%d of %d runs had problems (see 'problems' in the JSON)\n"
                         % (bad, len(runs)))
    return 1 if interrupted else 0


if __name__ == "__main__":
    sys.exit(main())
