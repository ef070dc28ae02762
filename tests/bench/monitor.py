#!/usr/bin/env python3
"""Monitoring benchmark: supd vs PM2, side by side, in one run.

Measures:
  1. The daemon's own cost while it supervises N idle processes (`sleep`), N = 8 and 200,
     fork mode: CPU of the daemon process (utime+stime delta from /proc/PID/stat over a
     fixed window, in % of one core) and its RSS (VmRSS from /proc/PID/status, sampled
     every second of the window). supd samples every instance every `sample_interval`
     (1 s, set explicitly in `[daemon]`); PM2's God daemon samples every process every
     30 s (its Worker, `PM2_WORKER_INTERVAL`, default 30000 ms). supd with the largest N is
     also measured at `sample_interval = "30s"` (--slow-interval), PM2's period.
  2. Memory-limit reaction time: the same Node hog for both (allocates and keeps 20 MB
     every 100 ms, logs `Date.now()` and its RSS to a file of its own each time), with
     `max_memory_restart = "150M"`. Measured, per restart cycle: from the hog's first log
     line above 150 MiB to the first line of the next run (and to the moment its pid was
     seen gone, polled every 50 ms), and the highest RSS the run reached. The hog stops
     growing at --hog-cap-mb (default 2048) so a supervisor that never reacts cannot take
     the machine's memory; each cycle is bounded by --hog-timeout (default 90 s).

Setup done here: installs pm2 with npm into a temporary folder (never globally), builds
supd with `cargo build --release` if the binaries are missing. Every supervisor is
killed at the end (try/finally) and the script checks in /proc that none of its
processes is left.

The helpers (commands bounded in time, the supd and PM2 homes, the pm2 install, /proc
readers, the leftover check) come from benchlib.py. Python 3.11 standard library only.
Output: a Markdown table on stdout (--json for JSON). Progress goes to stderr.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchlib as bl  # noqa: E402 - the shared helpers, next to this script
from benchlib import CLK_TCK, MIB, TOKEN, log  # noqa: E402

LIMIT_BYTES = 150 * MIB  # "150M" for both supervisors (PM2 also counts M as 1024^2)

HOG_JS = r"""
// Memory hog: allocates (and keeps) 20 MB every 100 ms, up to a cap.
// argv: LOGFILE CAP_MB. Each line is written synchronously to LOGFILE:
//   "start <Date.now()> <pid>"   once, first thing
//   "<Date.now()> <rss> <pid>"   every 100 ms, right after the allocation
const fs = require('fs');
const out = fs.openSync(process.argv[2], 'a');
const capMb = Number(process.argv[3] || 2048);
fs.writeSync(out, `start ${Date.now()} ${process.pid}\n`);
const a = [];
setInterval(() => {
  if ((a.length + 1) * 20 <= capMb) a.push(Buffer.alloc(20 * 1024 * 1024, 1));
  const rss = process.memoryUsage().rss;
  console.log(Date.now(), rss);
  fs.writeSync(out, `${Date.now()} ${rss} ${process.pid}\n`);
}, 100);
"""



def measure_daemon(pid: int, window: float) -> dict:
    """CPU (% of one core) and RSS of `pid` over `window` seconds; nothing else is asked of
    the daemon meanwhile. Also how busy the whole machine was (other work skews nothing
    in utime/stime, but it is reported)."""
    rss, threads, per_s = [], [], []
    m0 = bl.machine_snapshot()
    c0, t0 = bl.proc_ticks(pid), time.monotonic()
    if c0 is None:
        raise RuntimeError(f"daemon pid {pid} is gone")
    prev = c0
    while True:
        st = bl.proc_status(pid)
        if "VmRSS" in st:
            rss.append(st["VmRSS"])
            threads.append(st.get("Threads", 0))
        now_ticks = bl.proc_ticks(pid)
        if now_ticks is not None and len(rss) > 1:
            per_s.append(now_ticks - prev)  # ticks used during the last second: shows the sampling rhythm
        if now_ticks is not None:
            prev = now_ticks
        left = window - (time.monotonic() - t0)
        if left <= 0:
            break
        time.sleep(min(1.0, left))
    c1, t1 = bl.proc_ticks(pid), time.monotonic()
    if c1 is None:
        raise RuntimeError(f"daemon pid {pid} died during the window")
    m1 = bl.machine_snapshot()
    secs = t1 - t0
    return {
        "window_s": round(secs, 2),
        "cpu_ticks": c1 - c0,
        "cpu_s": round((c1 - c0) / CLK_TCK, 3),
        "cpu_pct": round(100.0 * (c1 - c0) / CLK_TCK / secs, 3),
        "rss_mib_mean": round(statistics.mean(rss) / 1024, 1),
        "rss_mib_max": round(max(rss) / 1024, 1),
        "rss_mib_end": round(rss[-1] / 1024, 1),
        "threads": max(threads),
        "cpu_ticks_each_second": per_s,
        "machine_busy_pct": bl.busy_pct(m0, m1),
    }


# --------------------------------------------------------------------------- the hog


class HogWatcher:
    """Follows the hog's own log file and polls its pid every 50 ms.

    A cycle is one run of the hog: it starts (`start` line), crosses the limit (first line
    with rss > 150 MiB), and ends when the next run's `start` line appears."""

    def __init__(self, path: Path):
        self.path = path
        self.offset = 0
        self.partial = ""
        self.runs: list[dict] = []

    def _read(self) -> None:
        """Reads what the hog appended since the last call."""
        try:
            with self.path.open("r") as f:
                f.seek(self.offset)
                data = f.read()
                self.offset = f.tell()
        except OSError:
            return
        data = self.partial + data
        lines = data.split("\n")
        self.partial = lines.pop()
        for line in lines:
            parts = line.split()
            if len(parts) == 3 and parts[0] == "start":
                self.runs.append({"pid": int(parts[2]), "start_ms": int(parts[1]), "cross_ms": None,
                                  "cross_rss": None, "max_rss": 0, "last_line_ms": None, "gone_ms": None})
            elif len(parts) == 3 and self.runs:
                ms, rss, pid = int(parts[0]), int(parts[1]), int(parts[2])
                r = self.runs[-1]
                if pid != r["pid"]:
                    continue
                r["max_rss"] = max(r["max_rss"], rss)
                r["last_line_ms"] = ms
                if r["cross_ms"] is None and rss > LIMIT_BYTES:
                    r["cross_ms"], r["cross_rss"] = ms, rss

    def watch(self, cycles: int, timeout: float, start_timeout: float = 30.0) -> list[dict]:
        """Returns `cycles` completed cycles (fewer if a run is not restarted within
        `timeout` s of crossing the limit; that run is returned with `timed_out`)."""
        t_start = time.monotonic()
        while True:
            self._read()
            now_ms = time.time() * 1000
            if self.runs:
                cur = self.runs[-1]
                if cur["gone_ms"] is None and not bl.alive(cur["pid"]):
                    cur["gone_ms"] = now_ms
                if len(self.runs) > cycles:
                    break
                if cur["cross_ms"] is not None and now_ms - cur["cross_ms"] > timeout * 1000:
                    cur["timed_out"] = True
                    log(f"  run of pid {cur['pid']} not restarted {timeout:g} s after crossing the limit")
                    break
            elif time.monotonic() - t_start > start_timeout:
                raise RuntimeError(f"the hog wrote nothing to {self.path} within {start_timeout:g} s")
            time.sleep(0.05)
        out = []
        for i, r in enumerate(self.runs[:cycles]):
            nxt = self.runs[i + 1] if i + 1 < len(self.runs) else None
            c = {
                "pid": r["pid"],
                "crossed_after_start_ms": (r["cross_ms"] - r["start_ms"]) if r["cross_ms"] else None,
                "max_rss_mib": round(r["max_rss"] / MIB, 1),
                "timed_out": bool(r.get("timed_out")),
            }
            if nxt and r["cross_ms"] is not None:
                c["reaction_ms"] = nxt["start_ms"] - r["cross_ms"]
                c["next_pid"] = nxt["pid"]
            if r["gone_ms"] is not None and r["cross_ms"] is not None:
                c["gone_ms"] = round(r["gone_ms"] - r["cross_ms"])
            out.append(c)
            log(f"  cycle {i + 1}: pid {c['pid']} crossed 150 MiB {c['crossed_after_start_ms']} ms after start, "
                f"peak {c['max_rss_mib']} MiB, "
                + (f"next run {c['reaction_ms']} ms after crossing (pid gone after {c.get('gone_ms')} ms)"
                   if "reaction_ms" in c else f"no restart within {timeout:g} s"))
        return out



# --------------------------------------------------------------------------- the two sides


def hog_apps(kind: str, hog_js: Path, hog_log: Path, cap_mb: int) -> list[dict]:
    """The Node hog with `max_memory_restart = "150M"`, fork mode, in `kind`'s keys."""
    if kind == "supd":
        return [{"name": "hog", "script": "node", "args": [str(hog_js), str(hog_log), str(cap_mb)],
                 "max_memory_restart": "150M"}]
    return [{"name": "hog", "script": str(hog_js), "args": [str(hog_log), str(cap_mb)],
             "exec_mode": "fork", "instances": 1, "max_memory_restart": "150M"}]


def start(sup: bl.Supervisor, f: Path, name: str, instances: int, timeout: float):
    """Starts the ecosystem file `f` and waits until `instances` instances of `name` are online."""
    poll = 0.5 if isinstance(sup, bl.Supd) else 1.0
    sup.ctl("start", f, timeout=timeout)
    sup.daemon_pid()
    sup.wait_online(name, instances, timeout, interval=poll)


def cost(kind: str, tools: dict, n: int, args, started: list, interval: str = "1s") -> dict:
    """The daemon's CPU and RSS over the window while it supervises N idle `sleep`s."""
    label = f"supd x{n} (sample_interval {interval})" if kind == "supd" else f"PM2 x{n}"
    with tempfile.TemporaryDirectory(prefix=f"{kind}-monitor-{n}-", dir=bl.ROOT) as tmp:
        sup = bl.new_side(kind, tools, Path(tmp), started)
        try:
            t = time.monotonic()
            f = bl.write_exec_apps(sup, [{"name": "s", "script": "sleep", "args": [TOKEN], "exec_mode": "fork",
                                          "instances": n}], daemon={"sample_interval": interval})
            start(sup, f, "s", n, timeout=120 if kind == "supd" else 180)
            online_s = round(time.monotonic() - t, 2)
            pid = sup.daemon_pid()
            log(f"{label}: {n} online in {online_s} s; settling {args.settle:g} s, then {args.window:g} s window (pid {pid})")
            time.sleep(args.settle)
            m = measure_daemon(pid, args.window)
            rows = [r for r in sup.rows() if r["name"] == "s"]
            m["online_after"] = sum(1 for r in rows if r["status"] == "online")
            m["restarts_after"] = sum(r["restarts"] for r in rows)
            m["start_to_online_s"] = online_s
            if kind == "supd":
                m["sample_interval"] = interval
            log(f"{label}: CPU {m['cpu_pct']}% of a core, RSS {m['rss_mib_mean']} MiB "
                f"(machine {m['machine_busy_pct']}% busy)")
            return m
        finally:
            sup.kill()


def missed_cycles(h: dict, args: dict) -> str | None:
    """What a side's memory-limit measurement missed, if anything: a run not restarted
    within --hog-timeout of crossing the limit, or fewer cycles than --hog-cycles. None when
    every cycle was restarted, or when the side has no cycles (its error says why)."""
    if "cycles" not in h:
        return None
    cycles, want = h["cycles"], args.get("hog_cycles", 0)
    timed_out = sum(1 for c in cycles if c.get("timed_out"))
    if timed_out:
        return (f"{timed_out} of {len(cycles)} cycle(s) not restarted within "
                f"{args.get('hog_timeout', 90):g} s of crossing 150M")
    if len(cycles) < want:
        return f"{len(cycles)} of {want} cycles measured"
    return None


def hog(kind: str, tools: dict, hog_js: Path, args, started: list) -> dict:
    """Memory-limit reaction: --hog-cycles restart cycles of the hog under `kind`."""
    with tempfile.TemporaryDirectory(prefix=f"{kind}-monitor-hog-", dir=bl.ROOT) as tmp:
        sup = bl.new_side(kind, tools, Path(tmp), started)
        hog_log = Path(tmp) / "hog.log"
        apps = hog_apps(kind, hog_js, hog_log, args.hog_cap_mb)
        try:
            f = sup.write(apps, daemon={"sample_interval": "1s"}) if kind == "supd" else sup.write(apps)
            start(sup, f, "hog", 1, timeout=60)
            cycles = HogWatcher(hog_log).watch(args.hog_cycles, args.hog_timeout)
            res = {"cycles": cycles}
            try:
                if kind == "supd":
                    show = json.loads(sup.ctl("show", "hog", "--json", timeout=20, quiet=True).stdout)
                    inst = (show.get("instances") or [{}])[0]
                    res["restarts"] = inst.get("restarts")
                    res["last_restart_reason"] = inst.get("restart_reason")
                else:
                    rows = [r for r in sup.rows() if r["name"] == "hog"]
                    res["restarts"] = rows[0]["restarts"] if rows else None
            except Exception as e:  # noqa: BLE001
                res["show_error" if kind == "supd" else "jlist_error"] = str(e)
            return res
        finally:
            sup.kill()

# --------------------------------------------------------------------------- report


def _secs(ms):
    """Milliseconds as seconds with two decimals, or n/a."""
    return f"{ms / 1000:.2f} s" if isinstance(ms, (int, float)) else "n/a"

def markdown(report: dict) -> str:
    """The report as Markdown."""
    m, a, cost, hog = report["machine"], report["args"], report["cost"], report["hog"]
    lines = [f"{bl.machine_line(m)}; CPU busy before the run: {report.get('cpu_busy_before_pct', '?')}%."]
    if cost:
        lines += _cost_md(a, cost)
    if hog:
        lines += _hog_md(a, hog)
    return bl.tail_md(report, lines)


def _cost_md(a: dict, cost: dict) -> list[str]:
    """The daemon-cost table."""
    lines = [
        "",
        f"Daemon cost: N `sleep` processes in fork mode, all online, {a['settle']:g} s settle, then a "
        f"{a['window']:g} s window; CPU = utime+stime delta of the daemon process / window (% of one core), "
        "RSS = VmRSS sampled every second (mean). supd samples every 1 s (`[daemon] sample_interval = \"1s\"`); "
        "PM2's daemon samples every 30 s (Worker, `PM2_WORKER_INTERVAL` = 30000 ms).",
        "",
        "| N | supd CPU | PM2 CPU | CPU supd/PM2 | supd RSS | PM2 RSS | RSS supd/PM2 | threads (supd / PM2) | machine busy (supd / PM2) |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for n in a["counts"]:
        s, p = cost.get(f"supd_{n}") or {}, cost.get(f"pm2_{n}") or {}
        if not s and not p:
            continue
        if "error" in s or "error" in p or not s or not p:
            err = (s.get("error") or p.get("error") or "not run").splitlines()[0][:100]
            lines.append(f"| {n} | {bl.fmt(s.get('cpu_pct'), '{:.2f} %')} | {bl.fmt(p.get('cpu_pct'), '{:.2f} %')} | | "
                         f"{bl.fmt(s.get('rss_mib_mean'), '{:.1f} MiB')} | {bl.fmt(p.get('rss_mib_mean'), '{:.1f} MiB')} | | | {err} |")
            continue
        lines.append(
            f"| {n} | {s['cpu_pct']:.2f} % | {p['cpu_pct']:.2f} % | {bl.ratio(s['cpu_pct'], p['cpu_pct'])} | "
            f"{s['rss_mib_mean']:.1f} MiB | {p['rss_mib_mean']:.1f} MiB | {bl.ratio(s['rss_mib_mean'], p['rss_mib_mean'])} | "
            f"{s['threads']} / {p['threads']} | {s['machine_busy_pct']:g} % / {p['machine_busy_pct']:g} % |"
        )
    for key, v in cost.items():
        if key.count("_") == 2:
            if "error" in v:
                lines += ["", f"supd, {key.split('_')[1]} processes, `sample_interval = \"{key.split('_')[2]}\"`: "
                              f"failed: {v['error'].splitlines()[0][:100]}"]
            else:
                lines += ["", f"supd, {key.split('_')[1]} processes, `sample_interval = \"{v['sample_interval']}\"` "
                              f"(PM2's period): CPU {v['cpu_pct']:.2f} %, RSS {v['rss_mib_mean']:.1f} MiB."]
    return lines


def _hog_md(a: dict, hog: dict) -> list[str]:
    """The memory-limit reaction table and the cycles."""
    lines = [
        "",
        f"Memory-limit reaction: the Node hog (+20 MB every 100 ms, kept; stops growing at {a['hog_cap_mb']} MB), "
        f"`max_memory_restart = \"150M\"`, {a['hog_cycles']} consecutive restart cycles, each bounded at "
        f"{a['hog_timeout']:g} s. Reaction = from the hog's first log line above 150 MiB to the first line of its "
        "next run; 'pid gone' = when its pid disappeared (polled every 50 ms).",
        "",
        "| supervisor | reaction min / median / max | pid gone (median) | peak RSS of a run min / median / max | cycles restarted |",
        "|---|---:|---:|---:|---:|",
    ]
    for key, label in (("supd", "supd"), ("pm2", "PM2")):
        h = hog.get(key)
        if h is None:
            continue
        if "cycles" not in h:
            lines.append(f"| {label} | failed: {(h.get('error') or 'not run').splitlines()[0][:100]} | | | |")
            continue
        cyc = h["cycles"]
        react = bl.summary([c.get("reaction_ms") for c in cyc])
        gone = bl.summary([c.get("gone_ms") for c in cyc])
        peak = bl.summary([c["max_rss_mib"] for c in cyc])
        done = sum(1 for c in cyc if "reaction_ms" in c)
        timed = any(c["timed_out"] for c in cyc)
        rtxt = (f"{_secs(react['min'])} / {_secs(react['median'])} / {_secs(react['max'])}" if react else "")
        if timed:
            rtxt = (rtxt + "; " if rtxt else "") + f"> {a['hog_timeout']:g} s"
        ptxt = f"{peak['min']:.0f} / {peak['median']:.0f} / {peak['max']:.0f} MiB" if peak else "n/a"
        lines.append(f"| {label} | {rtxt} | {_secs(gone['median']) if gone else 'n/a'} | {ptxt} | {done}/{len(cyc)} |")
    for key, label in (("supd", "supd"), ("pm2", "PM2")):
        h = hog.get(key) or {}
        if h.get("cycles"):
            per = ", ".join(f"{_secs(c.get('reaction_ms')) if 'reaction_ms' in c else 'none'} "
                            f"(crossed {c['crossed_after_start_ms']} ms after start, peak {c['max_rss_mib']:.0f} MiB)"
                            for c in h["cycles"])
            lines.append("")
            lines.append(f"{label} cycles: {per}."
                         + (f" Last reason: `{h['last_restart_reason']}`." if h.get("last_restart_reason") else ""))
    return lines


# --------------------------------------------------------------------------- main


def main() -> int:
    """Parses the options, runs the measurements, prints the report; non-zero on failure."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    bl.common_args(ap)
    ap.add_argument("--counts", type=lambda s: [int(x) for x in s.split(",")], default=[8, 200],
                    help="numbers of supervised `sleep` processes (default 8,200)")
    ap.add_argument("--window", type=float, default=30.0,
                    help="measuring window in seconds (default 30: exactly one PM2 Worker period)")
    ap.add_argument("--slow-interval", default="30s",
                    help="also measure supd with the largest count at this sample_interval, PM2's period "
                         "(default 30s; '' to skip)")
    ap.add_argument("--settle", type=float, default=5.0, help="seconds to wait after all are online (default 5)")
    ap.add_argument("--hog-cycles", type=int, default=3, help="memory-limit restart cycles per supervisor (default 3)")
    ap.add_argument("--hog-timeout", type=float, default=90.0,
                    help="seconds to wait for a restart after the hog crosses 150 MiB (default 90)")
    ap.add_argument("--hog-cap-mb", type=int, default=2048, help="the hog stops growing at this size (default 2048)")
    ap.add_argument("--skip", choices=["cost", "hog"], help="skip one of the two measurements")
    args = ap.parse_args()
    if bl.rendered_saved(args, markdown):
        return 0

    t_start, quiet = bl.begin("monitor", args)
    started: list[int] = []
    costs: dict = {}
    hogs: dict = {}
    pm2_version = None
    left: list[str] = []
    with bl.bench_root("monitor-bench-") as tmp_root:
        hog_js = tmp_root / "hog.js"
        hog_js.write_text(HOG_JS)
        deps: dict = {}
        try:
            for kind in ("supd", "pm2"):
                if args.only not in (None, kind):
                    continue
                try:
                    if kind == "supd":
                        deps[kind] = bl.ensure_supd(args.bin_dir)
                    else:
                        deps[kind] = bl.pm2_install(args.pm2_prefix, tmp_root)
                        pm2_version = deps[kind].version()
                except Exception as e:  # noqa: BLE001 - recorded in the report, never faked
                    log(f"{kind} unavailable: {e}")
                    for n in args.counts:
                        costs[f"{kind}_{n}"] = {"error": str(e)}
                    hogs[kind] = {"error": str(e)}

            if args.skip != "cost":
                for n in args.counts:  # interleaved: supd N, PM2 N, then the next N
                    for kind in deps:
                        costs[f"{kind}_{n}"] = bl.attempt(cost, kind, deps, n, args, started)
                if "supd" in deps and args.slow_interval:
                    n = max(args.counts)
                    costs[f"supd_{n}_{args.slow_interval}"] = bl.attempt(
                        cost, "supd", deps, n, args, started, args.slow_interval)
            if args.skip != "hog":
                for kind in deps:
                    log(f"{kind}: memory-limit reaction, {args.hog_cycles} cycles")
                    hogs[kind] = bl.attempt(hog, kind, deps, hog_js, args, started)
        finally:
            left = bl.finish(started, (TOKEN, tmp_root))

    report = bl.make_report(args, bl.machine(pm2_version), t_start, quiet, left, cost=costs, hog=hogs)
    bl.emit(report, args, markdown)
    # supd not restarting the hog in time is a failure; PM2 not doing so is its result.
    failed = (any("error" in v for v in costs.values()) or any("error" in v for v in hogs.values())
              or missed_cycles(hogs.get("supd", {}), vars(args)) or left)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
