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
check) come from monitor.py; the noise figure (CPU taken by processes that are not
ours) from cluster.py. Python 3.11 standard library only. Markdown on stdout (--json
for JSON), progress on stderr.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import cluster  # noqa: E402 - a sibling script, for its noise measurement
import monitor as mon  # noqa: E402 - a sibling script, for its helpers

# Every `sleep` (and every storm shell) carries this unique argument: `pgrep -f` finds
# exactly this run's processes.
TOKEN = mon.TOKEN
SIDES = ("supd", "pm2")
SHAPES = ("apps", "instances")
SHAPE_LABEL = {"apps": "N apps of 1 instance", "instances": "1 app of N instances"}


def log(msg: str) -> None:
    print(f"[scale {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


mon.log = log  # progress lines of the shared helpers carry this script's name


def timed(fn):
    """(seconds fn() took, its result)."""
    t = time.monotonic()
    result = fn()
    return time.monotonic() - t, result


def our_processes() -> int:
    """How many processes carry this run's token."""
    p = subprocess.run(["pgrep", "-c", "-f", TOKEN], stdout=subprocess.PIPE, text=True, timeout=20)
    return int(p.stdout.strip() or 0)


def fd_count(pid: int) -> int | None:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return None


# --------------------------------------------------------------------------- the two sides


class Side:
    """One supervisor daemon with its own temporary home, seen through the same few
    operations on both sides: start a file, list, stop all, kill."""

    def __init__(self, kind: str, tools: dict, root: Path, started: list):
        self.kind = kind
        if kind == "supd":
            self.d = mon.Supd(tools["supd"], root, started)
        else:
            self.d = mon.Pm2Home(tools["pm2"], root, started)
        self.root = root

    def ctl(self, *a, timeout: float):
        if self.kind == "supd":
            return self.d.ctl(*a, timeout=timeout, quiet=True)
        return self.d.cmd(*a, timeout=timeout, quiet=True)

    def boot(self) -> int:
        """Starts the daemon; its pid."""
        self.ctl("ping", timeout=60)
        return self.d.daemon_pid()

    def write(self, apps: list[dict]) -> Path:
        """The ecosystem file for `apps` ({name, script, args, instances})."""
        if self.kind == "supd":
            f = self.root / "ecosystem.toml"
            f.write_text("".join(
                "[[apps]]\n"
                f"name = {json.dumps(a['name'])}\n"
                f"script = {json.dumps(a['script'])}\n"
                f"args = {json.dumps(a['args'])}\n"
                f"instances = {a['instances']}\n"
                + (f"max_restarts = {a['max_restarts']}\n" if "max_restarts" in a else "")
                + "\n"
                for a in apps))
        else:
            f = self.root / "ecosystem.json"
            pm2_apps = [{"name": a["name"], "script": shutil.which(a["script"]) or a["script"],
                         "args": a["args"], "interpreter": "none", "exec_mode": "fork",
                         "instances": a["instances"], "autorestart": True,
                         **({"max_restarts": a["max_restarts"]} if "max_restarts" in a else {})}
                        for a in apps]
            f.write_text(json.dumps({"apps": pm2_apps}))
        return f

    def rows(self) -> list[dict]:
        """The process table as (name, status, restarts) rows."""
        if self.kind == "supd":
            return [{"name": r["name"], "status": r["status"], "restarts": r["restarts"]}
                    for r in self.d.list()]
        return [{"name": r["name"], "status": r["pm2_env"]["status"],
                 "restarts": r["pm2_env"].get("restart_time", 0)} for r in self.d.jlist()]

    def kill(self):
        self.d.kill()


# --------------------------------------------------------------------------- scenarios


@contextlib.contextmanager
def daemon(kind: str, what: str, tools: dict, started: list):
    """A started daemon of `kind` in a fresh temporary home, killed on the way out; the
    Side and the daemon's pid."""
    with tempfile.TemporaryDirectory(prefix=f"{kind}-{what}-", dir=mon.ROOT) as tmp:
        side = Side(kind, tools, Path(tmp), started)
        try:
            yield side, side.boot()
        finally:
            side.kill()


def sleep_apps(shape: str, n: int) -> list[dict]:
    if shape == "apps":
        return [{"name": f"s{i}", "script": "sleep", "args": [TOKEN], "instances": 1} for i in range(n)]
    return [{"name": "s", "script": "sleep", "args": [TOKEN], "instances": n}]


def thousand(kind: str, shape: str, tools: dict, args, started: list) -> dict:
    """Start, settle, list, stop: one round of one side and one shape."""
    n = args.count
    with daemon(kind, shape, tools, started) as (side, pid):
        f = side.write(sleep_apps(shape, n))
        roots = [os.getpid(), pid]
        noise0 = cluster.cpu_snapshot(roots)
        c0, t0 = mon.proc_ticks(pid), time.monotonic()
        side.ctl("start", f, timeout=args.timeout)
        returned = time.monotonic() - t0

        def all_online():
            rows = side.rows()
            up = sum(1 for r in rows if r["status"] == "online")
            return up == n or f"{up}/{n} online"
        mon.wait_until(all_online, args.timeout, f"{n} online", interval=0.25)
        online = time.monotonic() - t0
        start_cpu = (mon.proc_ticks(pid) - c0) / mon.CLK_TCK
        log(f"{kind} {shape}: start returned after {returned:.2f} s, all {n} online after {online:.2f} s "
            f"(daemon CPU {start_cpu:.2f} s)")
        c1, t1 = mon.proc_ticks(pid), time.monotonic()
        time.sleep(args.settle)
        idle_cpu_pct = 100.0 * (mon.proc_ticks(pid) - c1) / mon.CLK_TCK / (time.monotonic() - t1)
        st = mon.proc_status(pid)
        fds = fd_count(pid)
        lists = []
        for _ in range(args.list_samples):
            took, rows = timed(side.rows)
            if len(rows) != n:
                raise RuntimeError(f"list returned {len(rows)} rows, not {n}")
            lists.append(took)
            time.sleep(0.2)
        t2 = time.monotonic()
        side.ctl("stop", "all", timeout=args.timeout)
        stop_returned = time.monotonic() - t2
        mon.wait_until(lambda: our_processes() == 0, args.timeout, "every process gone", interval=0.1)
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
            "others_cpu_pct": cluster.others_pct(noise0, cluster.cpu_snapshot(roots)),
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
    with daemon(kind, "storm", tools, started) as (side, pid):
        side.ctl("start", side.write(apps), timeout=args.timeout)
        mon.wait_until(lambda: all(r["restarts"] >= 1 for r in side.rows()), 60,
                       "every storm app restarted once", interval=0.25)
        roots = [os.getpid(), pid]
        noise0 = cluster.cpu_snapshot(roots)
        before = sum(r["restarts"] for r in side.rows())
        c0, t0 = mon.proc_ticks(pid), time.monotonic()
        lists, fds = [], []
        while time.monotonic() - t0 < args.storm_seconds:
            took, rows = timed(side.rows)
            if len(rows) != n:
                raise RuntimeError(f"list returned {len(rows)} rows, not {n}")
            lists.append(took)
            fds.append(fd_count(pid))
            time.sleep(0.05)
        secs = time.monotonic() - t0
        cpu = (mon.proc_ticks(pid) - c0) / mon.CLK_TCK
        restarts = sum(r["restarts"] for r in side.rows()) - before
        res = {
            "seconds": round(secs, 1),
            "restarts": restarts,
            "restarts_per_s": round(restarts / secs, 1),
            "daemon_cpu_pct": round(100.0 * cpu / secs, 1),
            **latencies(lists),
            "fds_min_max": [min(x for x in fds if x), max(x for x in fds if x)],
            "others_cpu_pct": cluster.others_pct(noise0, cluster.cpu_snapshot(roots)),
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


def attempt(fn, *a) -> dict:
    """fn(*a), or the error it raised: recorded in the report, never a made-up figure."""
    try:
        return fn(*a)
    except Exception as e:  # noqa: BLE001
        log(f"failed: {e}")
        return {"error": str(e)}


# --------------------------------------------------------------------------- report


def spread(runs: list[dict], key: str) -> dict | None:
    return mon.summary([r.get(key) for r in runs if "error" not in r])


def cell(s: dict | None, unit: str, scale: float = 1.0, fmt: str = "{:.2f}") -> str:
    if not s:
        return "failed"
    med = fmt.format(s["median"] * scale)
    if s["n"] == 1:
        return f"{med} {unit}"
    return f"{med} {unit} ({fmt.format(s['min'] * scale)}-{fmt.format(s['max'] * scale)})"


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


def table(results: dict, measures, header: str) -> list[str]:
    lines = [f"| {header} | supd | PM2 | supd / PM2 |", "|---|---:|---:|---:|"]
    for key, label, unit, scale, fmt in measures:
        s, p = spread(results.get("supd", []), key), spread(results.get("pm2", []), key)
        ratio = mon._ratio(s["median"], p["median"]) if s and p else "n/a"
        lines.append(f"| {label} | {cell(s, unit, scale, fmt)} | {cell(p, unit, scale, fmt)} | {ratio} |")
    return lines


def markdown(report: dict) -> str:
    m, a = report["machine"], report["args"]
    n = a["count"]
    lines = [
        f"Machine: {m['nproc']} CPUs ({m['cpu']}), Linux {m['kernel']}, node {m['node']}, pm2 {m['pm2']}, "
        f"supd {m['supd_rev']}; CPU busy before the run: {report['cpu_busy_before_pct']}%. "
        f"{a['rounds']} round(s), alternating which supervisor goes first; each cell: median (min-max) "
        "of the rounds.",
    ]
    for shape in a["shapes"]:
        res = report["thousand"].get(shape, {})
        lines += ["", f"**{SHAPE_LABEL[shape].replace('N', f'{n:,}')}** (`sleep`, fork mode):", ""]
        lines += table(res, MEASURES, "measure")
    if report["storm"]:
        lines += ["", f"**Crash storm**: {a['storm_apps']} apps `sh -c 'sleep 0.2; exit 1'`, restarted at once, "
                      f"`list` called back to back for {a['storm_seconds']:g} s:", ""]
        lines += table(report["storm"], STORM_MEASURES, "measure")
    runs = [r for group in report["thousand"].values() for rs in group.values() for r in rs]
    runs += [r for rs in report["storm"].values() for r in rs]
    noise = [r["others_cpu_pct"] for r in runs if "others_cpu_pct" in r]
    errors = [r["error"].splitlines()[0][:160] for r in runs if "error" in r]
    if noise:
        lines += ["", f"Noise: other processes took {min(noise):g}-{max(noise):g}% of the CPUs during the "
                      f"measured runs (median {statistics.median(noise):g}%)."]
    if errors:
        lines += ["", "Failures: " + "; ".join(errors)]
    return mon._tail_md(report, lines)


# --------------------------------------------------------------------------- main


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    mon.common_args(ap)
    ap.add_argument("--shapes", type=lambda s: s.split(","), default=list(SHAPES),
                    help="apps (N apps of one instance), instances (one app of N), or both (default apps,instances)")
    ap.add_argument("--count", type=int, default=1000, help="processes per scenario (default 1000)")
    ap.add_argument("--rounds", type=int, default=3, help="rounds, alternating which side goes first (default 3)")
    ap.add_argument("--settle", type=float, default=5.0, help="seconds between all online and the RSS reading (default 5)")
    ap.add_argument("--list-samples", type=int, default=10, help="timed `list` calls per run (default 10)")
    ap.add_argument("--storm-apps", type=int, default=50, help="crash-looping apps in the storm (default 50)")
    ap.add_argument("--storm-seconds", type=float, default=10.0, help="how long the storm is measured (default 10; 0 skips it)")
    ap.add_argument("--timeout", type=float, default=300.0, help="bound on every start, stop and wait (default 300 s)")
    ap.add_argument("--quick", action="store_true", help="smoke run: 50 processes, 1 round, 3 list samples, 3 s storm")
    args = ap.parse_args()
    if args.from_json:
        print(markdown(json.loads(args.from_json.read_text())))
        return 0
    if args.quick:
        args.count, args.rounds, args.list_samples, args.storm_seconds, args.settle = 50, 1, 3, 3.0, 1.0
    if unknown := set(args.shapes) - set(SHAPES):
        ap.error(f"unknown shape(s): {', '.join(sorted(unknown))}")

    t_start = time.monotonic()
    quiet = mon.wait_for_quiet(args)
    sides = [s for s in SIDES if args.only in (None, s)]
    started: list[int] = []
    results: dict = {shape: {s: [] for s in sides} for shape in args.shapes}
    storms: dict = {s: [] for s in sides} if args.storm_seconds > 0 else {}
    tools: dict = {}
    left: list[str] = []
    with tempfile.TemporaryDirectory(prefix="scale-bench-") as tmp_root_s:
        tmp_root = mon.ROOT = Path(tmp_root_s)
        try:
            if "supd" in sides:
                tools["supd"] = mon.ensure_supd(args.bin_dir)
            if "pm2" in sides:
                prefix = args.pm2_prefix.resolve() if args.pm2_prefix else tmp_root / "pm2"
                prefix.mkdir(parents=True, exist_ok=True)
                tools["pm2"] = mon.Pm2(prefix)
                tools["pm2"].install()
            for rnd in range(args.rounds):
                order = sides if rnd % 2 == 0 else sides[::-1]
                log(f"round {rnd + 1}/{args.rounds}: {' then '.join(order)}")
                for shape in args.shapes:
                    for kind in order:
                        results[shape][kind].append(attempt(thousand, kind, shape, tools, args, started))
                for kind in order if storms else ():
                    storms[kind].append(attempt(storm, kind, tools, args, started))
        finally:
            time.sleep(1)
            left = mon.reap(started, tmp_root)
            still = mon.leftovers(started, tmp_root)
            log(f"STILL RUNNING after SIGKILL: {still}" if still else "pgrep -f: none of our processes is left")

    report = {
        "machine": mon.machine(tools["pm2"].version() if "pm2" in tools else None),
        "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "thousand": results,
        "storm": storms,
        "cpu_busy_before_pct": quiet,
        "leftovers": left,
        "total_seconds": round(time.monotonic() - t_start, 1),
    }
    if args.json_out:
        args.json_out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2) if args.json else markdown(report))
    log(f"done in {report['total_seconds']} s")
    runs = [r for group in results.values() for rs in group.values() for r in rs]
    runs += [r for rs in storms.values() for r in rs]
    return 1 if left or any("error" in r for r in runs) else 0


if __name__ == "__main__":
    sys.exit(main())
