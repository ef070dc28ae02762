#!/usr/bin/env python3
"""Scale benchmark: supd vs PM2, side by side, with 1,000 processes and a crash storm.

Measures, for each supervisor, with the same trivial long-running process (`sleep`,
fork mode, no readiness) in two shapes (1,000 apps of one instance each, and one app
of 1,000 instances):
  1. Time to start them all: from the start command (`supctl start FILE.toml` /
     `pm2 start FILE.json`) to the first `list` that shows all 1,000 online; also when
     the start command itself returned, and the daemon's CPU time meanwhile.
  2. The daemon's RSS (and threads) with 1,000 processes, after a settle time; its CPU
     over that window is in the JSON only (PM2's 30 s Worker falls outside it).
  3. `list` latency: `supctl list --json` vs `pm2 jlist`, several calls one after
     another, each timed end to end (the CLI process included): median and max.
  4. Time to stop them all: `supctl stop all` / `pm2 stop all` until the command
     returned and until no process is left.
Then, a crash storm: 50 apps `sh -c 'sleep 0.2; exit 1'`, restarted at once every
time, and `list` called over and over for a while: its latency, and how many restarts
per second the daemon got through meanwhile.

Rounds alternate which supervisor goes first (A/B, B/A, ...); the report gives the
median with the spread (min-max) of the rounds and the ratio supd/PM2 of the medians.

The helpers (running commands, supd and PM2 homes, the pm2 install, the leftover
check, the noise figure: CPU taken by processes that are not ours) come from
benchlib.py. Python 3.11 standard library only. Markdown on stdout (--json
for JSON), progress on stderr.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchlib as bl  # noqa: E402 - the shared helpers, next to this script
from benchlib import TOKEN, log  # noqa: E402

SIDES = ("supd", "pm2")
SHAPES = ("apps", "instances")
SHAPE_LABEL = {"apps": "N apps of 1 instance", "instances": "1 app of N instances"}


def our_processes() -> int:
    """How many processes carry this run's token."""
    p = subprocess.run(["pgrep", "-c", "-f", TOKEN], stdout=subprocess.PIPE, text=True, timeout=20)
    return int(p.stdout.strip() or 0)


# --------------------------------------------------------------------------- scenarios


def sleep_apps(shape: str, n: int) -> list[dict]:
    """The `sleep TOKEN` apps of a shape: N apps of one instance, or one app of N."""
    if shape == "apps":
        return [{"name": f"s{i}", "script": "sleep", "args": [TOKEN], "instances": 1} for i in range(n)]
    return [{"name": "s", "script": "sleep", "args": [TOKEN], "instances": n}]


def thousand(kind: str, shape: str, tools: dict, args, started: list) -> dict:
    """Start, settle, list, stop: one round of one side and one shape."""
    n = args.count
    with bl.daemon(kind, shape, tools, started) as (side, pid):
        f = bl.write_exec_apps(side, sleep_apps(shape, n))
        roots = [os.getpid(), pid]
        noise0 = bl.cpu_snapshot(roots)
        c0, t0 = bl.proc_ticks(pid), time.monotonic()
        side.ctl("start", f, timeout=args.timeout, quiet=True)
        returned = time.monotonic() - t0

        def all_online():
            """True once all n are online, else how many are."""
            rows = side.rows()
            up = sum(1 for r in rows if r["status"] == "online")
            return up == n or f"{up}/{n} online"
        bl.wait_until(all_online, args.timeout, f"{n} online", interval=0.25)
        online = time.monotonic() - t0
        start_cpu = (bl.proc_ticks(pid) - c0) / bl.CLK_TCK
        log(f"{kind} {shape}: start returned after {returned:.2f} s, all {n} online after {online:.2f} s "
            f"(daemon CPU {start_cpu:.2f} s)")
        c1, t1 = bl.proc_ticks(pid), time.monotonic()
        time.sleep(args.settle)
        idle_cpu_pct = 100.0 * (bl.proc_ticks(pid) - c1) / bl.CLK_TCK / (time.monotonic() - t1)
        st = bl.proc_status(pid)
        fds = bl.fd_count(pid)
        lists = []
        for _ in range(args.list_samples):
            took, rows = bl.timed(side.rows)
            if len(rows) != n:
                raise RuntimeError(f"list returned {len(rows)} rows, not {n}")
            lists.append(took)
            time.sleep(0.2)
        t2 = time.monotonic()
        side.ctl("stop", "all", timeout=args.timeout, quiet=True)
        stop_returned = time.monotonic() - t2
        bl.wait_until(lambda: our_processes() == 0, args.timeout, "every process gone", interval=0.1)
        stop_gone = time.monotonic() - t2
        res = {
            "start_returned_s": round(returned, 2),
            "online_s": round(online, 2),
            "start_cpu_s": round(start_cpu, 2),
            "rss_mib": round(st.get("VmRSS", 0) / 1024, 1),
            "threads": st.get("Threads"),
            "fds": fds,
            "idle_cpu_pct": round(idle_cpu_pct, 2),
            **latencies(lists),
            "stop_returned_s": round(stop_returned, 2),
            "stop_gone_s": round(stop_gone, 2),
            "others_cpu_pct": bl.others_pct(noise0, bl.cpu_snapshot(roots)),
        }
        log(f"{kind} {shape}: RSS {res['rss_mib']} MiB, {res['threads']} threads, list median "
            f"{res['list_median_s'] * 1000:.0f} ms (max {res['list_max_s'] * 1000:.0f} ms), stop all "
            f"{stop_returned:.2f} s (all gone {stop_gone:.2f} s); others took {res['others_cpu_pct']}% CPU")
        return res


def storm(kind: str, tools: dict, args, started: list) -> dict:
    """50 crash-looping apps; `list` over and over while they crash."""
    n = args.storm_apps
    apps = [{"name": f"crash{i}", "script": "sh", "args": ["-c", "sleep 0.2; exit 1", f"storm-{TOKEN}"],
             "instances": 1, "max_restarts": 1_000_000} for i in range(n)]
    with bl.daemon(kind, "storm", tools, started) as (side, pid):
        side.ctl("start", bl.write_exec_apps(side, apps), timeout=args.timeout, quiet=True)
        bl.wait_until(lambda: all(r["restarts"] >= 1 for r in side.rows()), 60,
                       "every storm app restarted once", interval=0.25)
        roots = [os.getpid(), pid]
        noise0 = bl.cpu_snapshot(roots)
        before = sum(r["restarts"] for r in side.rows())
        c0, t0 = bl.proc_ticks(pid), time.monotonic()
        lists, fds = [], []
        while time.monotonic() - t0 < args.storm_seconds:
            took, rows = bl.timed(side.rows)
            if len(rows) != n:
                raise RuntimeError(f"list returned {len(rows)} rows, not {n}")
            lists.append(took)
            fds.append(bl.fd_count(pid))
            time.sleep(0.05)
        secs = time.monotonic() - t0
        cpu = (bl.proc_ticks(pid) - c0) / bl.CLK_TCK
        restarts = sum(r["restarts"] for r in side.rows()) - before
        res = {
            "seconds": round(secs, 1),
            "restarts": restarts,
            "restarts_per_s": round(restarts / secs, 1),
            "daemon_cpu_pct": round(100.0 * cpu / secs, 1),
            **latencies(lists),
            "fds_min_max": [min(x for x in fds if x), max(x for x in fds if x)],
            "others_cpu_pct": bl.others_pct(noise0, bl.cpu_snapshot(roots)),
        }
        log(f"{kind} storm: {restarts} restarts in {secs:.1f} s ({res['restarts_per_s']}/s), daemon CPU "
            f"{res['daemon_cpu_pct']}%, list median {res['list_median_s'] * 1000:.0f} ms "
            f"(max {res['list_max_s'] * 1000:.0f} ms, {len(lists)} calls); others took {res['others_cpu_pct']}% CPU")
        return res


def latencies(lists: list[float]) -> dict:
    """Every `list` call's duration, their median and their max (seconds)."""
    return {
        "list_s": [round(x, 4) for x in lists],
        "list_median_s": round(statistics.median(lists), 4),
        "list_max_s": round(max(lists), 4),
    }


# --------------------------------------------------------------------------- report


MEASURES = (  # key, label, unit, scale, format
    ("online_s", "time to all online", "s", 1, "{:.2f}"),
    ("start_returned_s", "start command returned", "s", 1, "{:.2f}"),
    ("start_cpu_s", "daemon CPU while starting", "s", 1, "{:.2f}"),
    ("rss_mib", "daemon RSS", "MiB", 1, "{:.1f}"),
    ("list_median_s", "`list` median", "ms", 1000, "{:.0f}"),
    ("list_max_s", "`list` max", "ms", 1000, "{:.0f}"),
    ("stop_returned_s", "`stop all` returned", "s", 1, "{:.2f}"),
    ("stop_gone_s", "`stop all` until no process left", "s", 1, "{:.2f}"),
)
STORM_MEASURES = (
    ("list_median_s", "`list` median during the storm", "ms", 1000, "{:.0f}"),
    ("list_max_s", "`list` max during the storm", "ms", 1000, "{:.0f}"),
    ("restarts_per_s", "restarts handled per second", "/s", 1, "{:.0f}"),
    ("daemon_cpu_pct", "daemon CPU during the storm", "%", 1, "{:.0f}"),
)


def markdown(report: dict) -> str:
    """The report as Markdown."""
    m, a = report["machine"], report["args"]
    n = a["count"]
    lines = [
        f"{bl.machine_line(m)}; CPU busy before the run: {report['cpu_busy_before_pct']}%. "
        f"{a['rounds']} round(s), alternating which supervisor goes first; each cell: median (min-max) "
        "of the rounds.",
    ]
    for shape in a["shapes"]:
        res = report["thousand"].get(shape, {})
        lines += ["", f"**{SHAPE_LABEL[shape].replace('N', f'{n:,}')}** (`sleep`, fork mode):", ""]
        lines += bl.side_table(res, MEASURES, "measure")
    if report["storm"]:
        lines += ["", f"**Crash storm**: {a['storm_apps']} apps `sh -c 'sleep 0.2; exit 1'`, restarted at once, "
                      f"`list` called back to back for {a['storm_seconds']:g} s:", ""]
        lines += bl.side_table(report["storm"], STORM_MEASURES, "measure")
    runs = [r for group in report["thousand"].values() for rs in group.values() for r in rs]
    runs += [r for rs in report["storm"].values() for r in rs]
    noise = [r["others_cpu_pct"] for r in runs if "others_cpu_pct" in r]
    errors = [r["error"].splitlines()[0][:160] for r in runs if "error" in r]
    if noise:
        lines += ["", f"Noise: other processes took {min(noise):g}-{max(noise):g}% of the CPUs during the "
                      f"measured runs (median {statistics.median(noise):g}%)."]
    return bl.tail_md(report, lines, errors)


# --------------------------------------------------------------------------- main


def main() -> int:
    """Parses the options, runs the rounds, prints the report; non-zero on failure."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    bl.common_args(ap)
    ap.add_argument("--shapes", type=lambda s: s.split(","), default=list(SHAPES),
                    help="apps (N apps of one instance), instances (one app of N), or both (default apps,instances)")
    ap.add_argument("--count", type=int, default=1000, help="processes per scenario (default 1000)")
    bl.rounds_args(ap, settle=5.0)
    ap.add_argument("--storm-apps", type=int, default=50, help="crash-looping apps in the storm (default 50)")
    ap.add_argument("--storm-seconds", type=float, default=10.0, help="how long the storm is measured (default 10; 0 skips it)")
    ap.add_argument("--timeout", type=float, default=300.0, help="bound on every start, stop and wait (default 300 s)")
    ap.add_argument("--quick", action="store_true", help="smoke run: 50 processes, 1 round, 3 list samples, 3 s storm")
    args = ap.parse_args()
    if bl.rendered_saved(args, markdown):
        return 0
    if args.quick:
        args.count, args.rounds, args.list_samples, args.storm_seconds, args.settle = 50, 1, 3, 3.0, 1.0
    if unknown := set(args.shapes) - set(SHAPES):
        ap.error(f"unknown shape(s): {', '.join(sorted(unknown))}")

    t_start, quiet = bl.begin("scale", args)
    sides = [s for s in SIDES if args.only in (None, s)]
    started: list[int] = []
    results: dict = {shape: {s: [] for s in sides} for shape in args.shapes}
    storms: dict = {s: [] for s in sides} if args.storm_seconds > 0 else {}
    tools: dict = {}
    left: list[str] = []
    with bl.bench_root("scale-bench-") as tmp_root:
        try:
            if "supd" in sides:
                tools["supd"] = bl.ensure_supd(args.bin_dir)
            if "pm2" in sides:
                tools["pm2"] = bl.pm2_install(args.pm2_prefix, tmp_root)
            for rnd in range(args.rounds):
                order = sides if rnd % 2 == 0 else sides[::-1]
                log(f"round {rnd + 1}/{args.rounds}: {' then '.join(order)}")
                for shape in args.shapes:
                    for kind in order:
                        results[shape][kind].append(bl.attempt(thousand, kind, shape, tools, args, started))
                for kind in order if storms else ():
                    storms[kind].append(bl.attempt(storm, kind, tools, args, started))
        finally:
            left = bl.finish(started, (TOKEN, tmp_root))

    report = bl.make_report(args, bl.machine(tools["pm2"].version() if "pm2" in tools else None), t_start, quiet,
                            left, thousand=results, storm=storms)
    bl.emit(report, args, markdown)
    runs = [r for group in results.values() for rs in group.values() for r in rs]
    runs += [r for rs in storms.values() for r in rs]
    return 1 if left or any("error" in r for r in runs) else 0


if __name__ == "__main__":
    sys.exit(main())
