#!/usr/bin/env python3
"""Log-throughput benchmark: supd vs PM2, side by side, in one run.

The same writer for everyone: a Python program that writes N lines of 111 bytes
(`%09d ` + 100 x's + newline) to stdout as fast as it can, in blocks of 590 lines
(64 KiB) built with one `%` each, and at the end records in a side file its own
start/end time (time.time_ns()) and CPU time. Measured, per round:

  1. direct  the writer's stdout redirected to a file in the same temporary folder
             (`> file`): from the writer's first write to its exit; no fsync.
  2. cat     the writer piped into `cat > file`: the same bytes through a pipe and one
             more process, the floor of any supervisor that reads its apps' pipes.
  3. supd    the writer as a supd app (`supctl start FILE.toml`, `script` = this Python,
             `args`, `autorestart = false`), with `log_date_format =
             "%Y-%m-%d %H:%M:%S%.3f"` and without: from the writer's first write until
             SUPD_HOME/logs/flood-out.log ends with the last line (size polled every
             2 ms, the tail read when it grows).
  4. PM2     the same writer under PM2 (ecosystem JSON: `interpreter` = this Python,
             `autorestart: false`), with `log_date_format: "YYYY-MM-DD HH:mm:ss.SSS"`
             (what `--time` sets, with milliseconds so the prefix is the same 25 bytes
             as supd's) and without, until PM2_HOME/logs/flood-out.log ends with the last
             line; bounded (--timeout); when it never completes, what arrived is reported.
  Every file is then checked: N lines, numbers 0..N-1 in order, each line intact
  (prefix + `%09d ` + 100 x's), first and last line.
  5. The daemon's CPU (utime+stime delta of the supd / PM2 God pid, all threads, from
     /proc) between the start command and the last line, per GB the app wrote, and the
     daemon's peak RSS (VmRSS sampled every 100 ms).
  6. Lag: a ticker app writes `lag <time.time_ns()> <seq>` every 10 ms for 3 s (one
     write(2) per line); this script tails its out file (polled every 1 ms) and takes
     the delay from the send time to the poll that saw the line. Once alone, once while
     the writer floods in a second app of the same daemon (--flood-seconds).
  7. `list` under floods: four apps run the writer, each for --lag-seconds + 2 s, with
     `log_date_format`; meanwhile `supctl list --json` (resp. `pm2 jlist`) runs every
     100 ms and its wall time is taken; then 10 more calls once the floods are over.

Setup done here: installs pm2 with npm into a temporary folder (never globally), builds
supd with `cargo build --release` if the binaries are missing. Every supervisor is
killed at the end (try/finally) and a scan of /proc checks that none of our processes is left.

Python 3.11 standard library only. Output: a Markdown table on stdout (--json for JSON).
Progress goes to stderr.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchlib as bl  # noqa: E402 - the shared helpers, next to this script
from benchlib import CLK_TCK, PY, log, run  # noqa: E402
LINE_X = 100
LINE_BYTES = 9 + 1 + LINE_X + 1  # "%09d " + x*100 + "\n"
XS = b" " + b"x" * LINE_X
SUPD_DATE = "%Y-%m-%d %H:%M:%S%.3f"  # chrono: 2026-11-24 15:23:28.646
PM2_DATE = "YYYY-MM-DD HH:mm:ss.SSS"  # dayjs: the same 23 characters
PREFIX_LEN = 23 + 2  # "<date>: "

WRITER_PY = r'''
import fcntl, os, resource, sys, time
# argv: N STAMPFILE            write N lines "%09d " + 100 x's, then exit
#       tSECONDS STAMPFILE     write such lines (numbered from 0) for SECONDS, then exit
X = 100
PER = 65536 // (9 + 1 + X + 1)  # 590 lines = 65,490 bytes per write
line = b"%09d " + b"x" * X + b"\n"
full = line * PER
arg, stamp = sys.argv[1], sys.argv[2]
timed = arg.startswith("t")
n = 10**9 if timed else int(arg)
until = time.monotonic() + float(arg[1:]) if timed else None
out = sys.stdout.buffer
t0 = time.time_ns()
i = 0
while i < n:
    k = min(PER, n - i)
    out.write((full if k == PER else line * k) % tuple(range(i, i + k)))
    i += k
    if timed and time.monotonic() >= until:
        break
out.flush()
t1 = time.time_ns()
c = os.times()
ru = resource.getrusage(resource.RUSAGE_SELF)
try:
    pipe = fcntl.fcntl(1, fcntl.F_GETPIPE_SZ)  # stdout's pipe buffer (fails on a file)
except OSError:
    pipe = -1
with open(stamp, "w") as f:
    f.write(f"{t0} {t1} {c.user + c.system} {i} {ru.ru_nvcsw} {ru.ru_nivcsw} {pipe}\n")
'''

TICKER_PY = r'''
import os, sys, time
# argv: COUNT INTERVAL_MS  -- one write(2) per line: "lag <time.time_ns()> <seq>\n"
count, step = int(sys.argv[1]), float(sys.argv[2]) / 1000
nxt = time.monotonic()
for seq in range(count):
    os.write(1, b"lag %d %d\n" % (time.time_ns(), seq))
    nxt += step
    d = nxt - time.monotonic()
    if d > 0:
        time.sleep(d)
'''

LAG_RE = re.compile(rb"lag (\d+) (\d+)$")


# --------------------------------------------------------------------------- supervisors


def start_cmd(sup: bl.Supervisor, apps: list[dict]) -> list:
    """apps: {name, script, args, date}. Writes the ecosystem file (autorestart off, the
    date format when `date`); the start command. PM2 runs `script` with `interpreter`
    (this Python) and writes to the same out file name as supd."""
    conf = []
    for a in apps:
        args = [str(x) for x in a["args"]]
        if isinstance(sup, bl.Supd):
            c = {"name": a["name"], "script": a["script"], "args": args, "autorestart": False}
            if a.get("date"):
                c["log_date_format"] = SUPD_DATE
        else:
            c = {"name": a["name"], "script": a["script"], "args": args,
                 "interpreter": PY, "exec_mode": "fork", "instances": 1, "autorestart": False,
                 "merge_logs": True, "out_file": str(sup.out_log(a["name"])),
                 "error_file": str(sup.home / "logs" / f"{a['name']}-err.log")}
            if a.get("date"):
                c["log_date_format"] = PM2_DATE
        conf.append(c)
    return [*map(str, sup.cli), "start", str(sup.write(conf))]


# --------------------------------------------------------------------------- checks


def read_stamp(path: Path) -> dict | None:
    """The side file the writer leaves at its end (times, CPU, lines, context switches, pipe size), or None."""
    try:
        t0, t1, cpu, lines, nvcsw, nivcsw, pipe = path.read_text().split()
    except (OSError, ValueError):
        return None
    return {"t0_ns": int(t0), "t1_ns": int(t1), "cpu_s": float(cpu), "lines": int(lines),
            "voluntary_switches": int(nvcsw), "involuntary_switches": int(nivcsw), "stdout_pipe_bytes": int(pipe)}


def verify(path: Path, n: int) -> dict:
    """Reads the whole file: lines, intact lines (optional date prefix + `%09d ` + 100 x's),
    numbers in order, gaps, first and last line."""
    expected = 0
    res = {"lines": 0, "intact": 0, "prefixed": 0, "altered": 0, "missing": 0,
           "out_of_order": 0, "first": None, "last": None}
    rest = b""
    last = b""
    with path.open("rb") as f:
        while True:
            chunk = f.read(16 << 20)
            if not chunk:
                break
            parts = (rest + chunk).split(b"\n")
            rest = parts.pop()
            for line in parts:
                if res["first"] is None:
                    res["first"] = line[:160].decode(errors="replace")
                last = line
                digits = line[-110:-101]
                if len(line) >= 110 and line.endswith(XS) and digits.isdigit() and (
                        len(line) == 110 or (len(line) == 110 + PREFIX_LEN and line[-112:-110] == b": ")):
                    res["intact"] += 1
                    if len(line) > 110:
                        res["prefixed"] += 1
                    num = int(digits)
                    if num == expected:
                        expected += 1
                    elif num > expected:
                        res["missing"] += num - expected
                        expected = num + 1
                    else:
                        res["out_of_order"] += 1
                else:
                    res["altered"] += 1
                    if "altered_sample" not in res:
                        res["altered_sample"] = line[:200].decode(errors="replace")
            res["lines"] += len(parts)
    if rest:
        res["altered"] += 1
        res["unterminated_tail"] = rest[:160].decode(errors="replace")
    res["missing"] += max(0, n - expected)
    res["last"] = last[:160].decode(errors="replace") if last else None
    res["ok"] = (res["lines"] == n and res["intact"] == n and res["missing"] == 0
                 and res["out_of_order"] == 0 and not rest)
    return res


# --------------------------------------------------------------------------- throughput


def last_line(n: int) -> bytes:
    """The last of n writer lines, as it ends the file."""
    return b"%09d" % (n - 1) + XS + b"\n"


def wait_for_file(path: Path, n: int, daemon_pid: int | None, starter: subprocess.Popen | None,
                  stamp: Path, timeout: float, stall: float) -> dict:
    """Polls `path` every 2 ms until it ends with the last line. Stops early when the
    writer is done and the file has not grown for `stall` seconds, or after `timeout`."""
    marker = last_line(n)
    size = 0
    last_growth = time.time_ns()
    t_start = time.monotonic()
    next_rss = 0.0
    rss_max = 0
    status = "timeout"
    starter_rc = None
    while True:
        now = time.monotonic()
        if daemon_pid and now >= next_rss:
            r = bl.rss_kib(daemon_pid)
            if r:
                rss_max = max(rss_max, r)
            next_rss = now + 0.1
        if starter is not None and starter_rc is None:
            starter_rc = starter.poll()
            if starter_rc not in (None, 0):
                status = "start command failed"
                break
        try:
            st = os.stat(path).st_size
        except OSError:
            st = 0
        if st != size:
            size = st
            last_growth = time.time_ns()
            if size >= len(marker):
                with path.open("rb") as f:
                    f.seek(size - len(marker))
                    if f.read() == marker:
                        status = "complete"
                        break
        if now - t_start > timeout:
            break
        if stamp.exists() and (time.time_ns() - last_growth) / 1e9 > stall:
            status = f"stalled (no growth for {stall:g} s after the writer exited)"
            break
        time.sleep(0.002)
    return {"status": status, "done_ns": last_growth, "bytes": size, "daemon_rss_max_mib": round(rss_max / 1024, 1)}


def run_failed(r: dict) -> bool:
    """Whether a throughput run failed or lost or altered a line: such a run is reported
    as it is, and a noisy run is re-run only when it delivered every line intact."""
    return "error" in r or r.get("status") != "complete" or not (r.get("check") or {}).get("ok")


def measure(kind: str, date: bool, n: int, args, started: list, tools: dict) -> dict:
    """One throughput run of the writer: direct, through `cat`, or under supd / PM2 with or
    without a date prefix."""
    label = kind + (" +date" if date else "")
    with tempfile.TemporaryDirectory(prefix=f"logs-{kind}-", dir=bl.ROOT) as tmp_s:
        tmp = Path(tmp_s)
        writer = bl.ROOT / "writer.py"
        stamp = tmp / "stamp"
        sup = None
        try:
            daemon_pid = None
            if kind in ("direct", "cat"):
                out = tmp / f"{kind}-out.log"
            else:
                sup = bl.new_side(kind, tools, tmp, started)
                daemon_pid = sup.boot()
                out = sup.out_log("flood")
                if kind == "pm2":  # PM2 runs `script` with `interpreter` (this Python)
                    app = {"name": "flood", "script": str(writer), "args": [n, stamp], "date": date}
                else:  # supd execs `script`: this Python, with the writer as first argument
                    app = {"name": "flood", "script": PY, "args": [writer, n, stamp], "date": date}
                cmd = start_cmd(sup, [app])
            time.sleep(0.5)
            m0, (me0, ch0) = bl.machine_snapshot(), bl.own_cpu()
            c0 = bl.proc_ticks(daemon_pid) if daemon_pid else 0
            th0 = bl.thread_ticks(daemon_pid) if daemon_pid else {}
            t_cmd = time.time_ns()
            if kind in ("direct", "cat"):
                with out.open("wb") as f:
                    if kind == "direct":
                        p = subprocess.Popen([PY, str(writer), str(n), str(stamp)], stdout=f)
                    else:
                        w_p = subprocess.Popen([PY, str(writer), str(n), str(stamp)], stdout=subprocess.PIPE)
                        p = subprocess.Popen(["cat"], stdin=w_p.stdout, stdout=f)
                        w_p.stdout.close()  # cat holds the read end alone, so it sees EOF
                    rc = p.wait(timeout=args.timeout)
                    if kind == "cat":
                        rc = rc or w_p.wait(timeout=args.timeout)
                done_ns = time.time_ns()
                w = {"status": "complete" if rc == 0 else f"writer exit {rc}", "done_ns": done_ns,
                     "bytes": out.stat().st_size, "daemon_rss_max_mib": None}
            else:
                log(f"{label}: $ {' '.join(cmd)}")
                starter = subprocess.Popen(cmd, env=sup.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
                w = wait_for_file(out, n, daemon_pid, starter, stamp, args.timeout, args.stall)
                try:
                    so, se = starter.communicate(timeout=60)
                except subprocess.TimeoutExpired:
                    starter.kill()
                    so, se = starter.communicate()
                if starter.returncode != 0:
                    w["start_error"] = (se or so).decode(errors="replace").strip()[-500:]
            c1 = bl.proc_ticks(daemon_pid) if daemon_pid else 0
            th1 = bl.thread_ticks(daemon_pid) if daemon_pid else {}
            m1, (me1, ch1) = bl.machine_snapshot(), bl.own_cpu()
            s = read_stamp(stamp)
            if s is None:
                time.sleep(1)
                s = read_stamp(stamp)
            res = {"kind": kind, "date": date, "n": n, "status": w["status"], "file_bytes": w["bytes"]}
            if w.get("start_error"):
                res["start_error"] = w["start_error"]
            if s is None:
                res["error"] = "the writer left no stamp (did it run?)"
                return res
            app_bytes = n * LINE_BYTES
            el = (w["done_ns"] - s["t0_ns"]) / 1e9
            res.update({
                "seconds": round(el, 3),
                "writer_seconds": round((s["t1_ns"] - s["t0_ns"]) / 1e9, 3),
                "start_cmd_to_writer_ms": round((s["t0_ns"] - t_cmd) / 1e6, 1),
                "lines_per_s": round(n / el) if el > 0 else None,
                "mb_per_s": round(app_bytes / 1e6 / el, 1) if el > 0 else None,
                "writer_cpu_s": round(s["cpu_s"], 2),
                "writer_voluntary_switches": s["voluntary_switches"],
                "writer_stdout_pipe_bytes": s["stdout_pipe_bytes"],
            })
            if daemon_pid:
                cpu = (c1 - c0) / CLK_TCK
                res["daemon_cpu_s"] = round(cpu, 2)
                res["daemon_cpu_s_per_gb"] = round(cpu / (app_bytes / 1e9), 2)
                res["daemon_cpu_pct"] = round(100 * cpu / el, 1) if el > 0 else None
                res["daemon_rss_max_mib"] = w["daemon_rss_max_mib"]
                res["daemon_threads_cpu_s"] = bl.thread_delta(th0, th1)
            # CPU taken by others during the run: machine busy minus ours (daemon, writer,
            # this script, the start command).
            busy_s = (m1[1] - m0[1]) / CLK_TCK
            wall_s = (time.time_ns() - t_cmd) / 1e9
            ours = (c1 - c0) / CLK_TCK + (me1 - me0) + (ch1 - ch0) + (0 if kind in ("direct", "cat") else s["cpu_s"])
            res["others_pct"] = round(max(0.0, busy_s - ours) * 100 / (wall_s * (os.cpu_count() or 1)), 1)
            res["check"] = verify(out, n) if w["bytes"] else {"lines": 0, "ok": False}
            c = res["check"]
            log(f"{label}: {res['status']}, {res['seconds']} s ({res['mb_per_s']} MB/s, writer itself "
                f"{res['writer_seconds']} s), daemon CPU {res.get('daemon_cpu_s')} s, file check "
                f"{'ok' if c.get('ok') else c}; others {res['others_pct']}%")
            return res
        finally:
            if sup is not None:
                sup.kill()


# --------------------------------------------------------------------------- lag


def python_app(kind: str, name: str, program: Path, *argv) -> dict:
    """A Python program as an app with `log_date_format`: PM2 runs `script` with
    `interpreter` (this Python); supd execs `script`, this Python, with the program as
    its first argument."""
    if kind == "pm2":
        return {"name": name, "script": str(program), "args": list(argv), "date": True}
    return {"name": name, "script": PY, "args": [program, *argv], "date": True}


def lag_run(kind: str, flood: bool, args, started: list, tools: dict) -> dict:
    """The ticker alone (or beside a flooding app): delay from each line's send time to the poll that saw it."""
    label = f"{kind} lag" + (" + flood" if flood else "")
    with tempfile.TemporaryDirectory(prefix=f"logs-lag-{kind}-", dir=bl.ROOT) as tmp_s:
        tmp = Path(tmp_s)
        sup = bl.new_side(kind, tools, tmp, started)
        try:
            sup.boot()
            ticker = bl.ROOT / "ticker.py"
            count = int(args.lag_seconds * 1000 / args.lag_interval_ms)
            apps = []
            if flood:
                apps.append(python_app(kind, "flood", bl.ROOT / "writer.py", f"t{args.lag_seconds + 1:g}", tmp / "flood-stamp"))
            apps.append(python_app(kind, "tick", ticker, count, args.lag_interval_ms))
            cmd = start_cmd(sup, apps)
            out = sup.out_log("tick")
            log(f"{label}: $ {' '.join(cmd)}")
            starter = subprocess.Popen(cmd, env=sup.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            lags: dict[int, float] = {}
            bad = 0
            fd = None
            rest = b""
            deadline = time.monotonic() + args.lag_seconds + 60
            while len(lags) < count and time.monotonic() < deadline:
                if fd is None:
                    with contextlib.suppress(OSError):
                        fd = os.open(out, os.O_RDONLY)
                if fd is not None:
                    data = os.read(fd, 1 << 20)
                    if data:
                        now = time.time_ns()
                        parts = (rest + data).split(b"\n")
                        rest = parts.pop()
                        for line in parts:
                            m = LAG_RE.search(line)
                            if not m:
                                bad += 1
                                continue
                            lags.setdefault(int(m.group(2)), (now - int(m.group(1))) / 1e6)
                        continue
                time.sleep(0.001)
            if fd is not None:
                os.close(fd)
            with contextlib.suppress(subprocess.TimeoutExpired):
                starter.communicate(timeout=60)
            v = sorted(lags.values())
            res = {"kind": kind, "flood": flood, "expected": count, "received": len(v), "bad_lines": bad}
            if v:
                res.update({
                    "median_ms": round(statistics.median(v), 2),
                    "p99_ms": round(v[min(len(v) - 1, int(0.99 * len(v)))], 2),
                    "max_ms": round(v[-1], 2),
                    "min_ms": round(v[0], 2),
                })
            if flood:
                t_end = time.monotonic() + args.lag_seconds + 15
                while not (tmp / "flood-stamp").exists() and time.monotonic() < t_end:
                    time.sleep(0.1)
                fs = read_stamp(tmp / "flood-stamp")
                if fs:
                    res["flood_lines_written"] = fs["lines"]
                    res["flood_mb_per_s_written"] = round(fs["lines"] * LINE_BYTES / 1e6 / ((fs["t1_ns"] - fs["t0_ns"]) / 1e9), 1)
            log(f"{label}: {res}")
            return res
        finally:
            sup.kill()


# --------------------------------------------------------------------------- list under floods


def latency_stats(ms: list[float]) -> dict:
    """calls, median, p90 and max of command wall times in ms."""
    v = sorted(ms)
    if not v:
        return {"calls": 0}
    return {"calls": len(v), "median_ms": round(statistics.median(v), 1),
            "p90_ms": round(v[min(len(v) - 1, int(0.9 * len(v)))], 1), "max_ms": round(v[-1], 1)}


def list_run(kind: str, args, started: list, tools: dict) -> dict:
    """`list` latency while four apps flood their logs, and once they are done."""
    label = f"{kind} list + 4 floods"
    with tempfile.TemporaryDirectory(prefix=f"logs-list-{kind}-", dir=bl.ROOT) as tmp_s:
        tmp = Path(tmp_s)
        sup = bl.new_side(kind, tools, tmp, started)
        try:
            sup.boot()
            seconds = args.lag_seconds + 2
            stamps = [tmp / f"flood{i}-stamp" for i in range(4)]
            apps = [python_app(kind, f"flood{i}", bl.ROOT / "writer.py", f"t{seconds:g}", stamp)
                    for i, stamp in enumerate(stamps)]
            listing = sup.list_cmd

            def timed() -> float:
                """Wall time of one list command, in ms."""
                t0 = time.monotonic()
                run(listing, env=sup.env, timeout=60, quiet=True)
                return (time.monotonic() - t0) * 1000

            cmd = start_cmd(sup, apps)
            log(f"{label}: $ {' '.join(cmd)}")
            run(cmd, env=sup.env, timeout=120, quiet=True)
            during = []
            t_end = time.monotonic() + seconds - 1
            while time.monotonic() < t_end:
                during.append(timed())
                time.sleep(0.1)
            t_end = time.monotonic() + seconds + 60
            while not all(s.exists() for s in stamps) and time.monotonic() < t_end:
                time.sleep(0.1)
            written = [read_stamp(s) for s in stamps]
            after = []
            for _ in range(10):
                after.append(timed())
                time.sleep(0.1)
            res = {"kind": kind, "during": latency_stats(during), "after": latency_stats(after)}
            if all(written):
                res["flood_mb_per_s_written"] = round(sum(
                    w["lines"] * LINE_BYTES / 1e6 / ((w["t1_ns"] - w["t0_ns"]) / 1e9) for w in written), 1)
            log(f"{label}: {res}")
            return res
        finally:
            sup.kill()


# --------------------------------------------------------------------------- report


SCENARIOS = [("direct", False), ("cat", False), ("supd", False), ("supd", True), ("pm2", False), ("pm2", True)]


def scen_label(kind, date):
    """The table label of a throughput scenario."""
    name = {"direct": "direct `> file`", "cat": "`| cat > file`", "supd": "supd", "pm2": "PM2"}[kind]
    if kind == "supd":
        name += " + `log_date_format`" if date else ", no date"
    elif kind == "pm2":
        name += " + `log_date_format`" if date else ", no date"
    return name


def markdown(report: dict) -> str:
    """The report as Markdown."""
    m, a = report["machine"], report["args"]
    lines = [
        f"Machine: {m['nproc']} CPUs ({m['cpu']}), Linux {m['kernel']}, node {m['node']}, pm2 {m['pm2']}, "
        f"Python {m['python']}, supd {m['supd_rev']}; files in {m['tmp']} ({m['tmp_fstype']}); "
        f"CPU busy before the run: {report.get('cpu_busy_before_pct', '?')}%.",
    ]
    thr = report["throughput"]
    throughput = [
        "",
        f"Throughput: {a['lines']:,} lines of {LINE_BYTES} bytes ({a['lines'] * LINE_BYTES / 1e6:.0f} MB), "
        f"median of {a['rounds']} interleaved round(s). Time = from the writer's first write to the "
        "last line in the file (direct and cat: to their exit). MB/s counts the app's bytes (date prefixes "
        "not included). Daemon CPU = utime+stime of the supd / PM2 daemon process from the start command "
        "to the last line. Others' CPU = busy time of the whole machine (/proc/stat) minus ours (daemon, writer, "
        "this script), in % of all CPUs; it includes the kernel's writeback of our own files. A run above "
        f"{a.get('max_noise', '?')}% was re-run up to {a.get('retries', '?')} times and the least noisy kept.",
        "",
        "| scenario | time | lines/s | MB/s | vs direct | writer's own time | daemon CPU | CPU s / GB | daemon peak RSS | file check | others' CPU |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|",
    ]
    if thr:
        lines += throughput
    direct_mb = bl.median([r.get("mb_per_s") for r in thr.get("direct", [])])
    for kind, date in SCENARIOS:
        key = kind + ("+date" if date else "")
        runs = thr.get(key)
        if not runs:
            continue
        errs = [r for r in runs if "error" in r]
        good = [r for r in runs if "error" not in r]
        if not good:
            lines.append(f"| {scen_label(kind, date)} | failed: {errs[0]['error'][:100]} | | | | | | | | | |")
            continue
        mb = bl.median([r["mb_per_s"] for r in good])
        checks = []
        for r in good:
            c = r.get("check") or {}
            if c.get("ok"):
                checks.append("ok")
            else:
                checks.append(f"{r['status']}: {c.get('lines', 0):,} lines, {c.get('missing', '?'):,} missing, "
                              f"{c.get('altered', '?'):,} altered, {c.get('out_of_order', '?')} out of order")
        check = "ok" if all(c == "ok" for c in checks) else "; ".join(checks)
        lines.append(
            f"| {scen_label(kind, date)} | {bl.fmt(bl.median([r['seconds'] for r in good]), '{:.2f} s')} | "
            f"{bl.fmt(bl.median([r['lines_per_s'] for r in good]), '{:,.0f}')} | {bl.fmt(mb, '{:.0f}')} | "
            f"{bl.fmt(mb / direct_mb if mb and direct_mb else None)} | "
            f"{bl.fmt(bl.median([r['writer_seconds'] for r in good]), '{:.2f} s')} | "
            f"{bl.fmt(bl.median([r.get('daemon_cpu_s') for r in good]), '{:.2f} s')} | "
            f"{bl.fmt(bl.median([r.get('daemon_cpu_s_per_gb') for r in good]), '{:.2f}')} | "
            f"{bl.fmt(bl.median([r.get('daemon_rss_max_mib') for r in good]), '{:.0f} MiB')} | {check} | "
            f"{bl.fmt(bl.median([r.get('others_pct') for r in good]), '{:.0f} %')} |"
        )
    per_round = []
    for kind, date in SCENARIOS:
        key = kind + ("+date" if date else "")
        if thr.get(key):
            per_round.append(f"{scen_label(kind, date)}: " + ", ".join(
                bl.fmt(r.get("mb_per_s"), "{:.0f}") for r in thr[key]))
    if per_round:
        lines += ["", "MB/s of each round: " + "; ".join(per_round) + "."]
    detail = []
    for kind, date in [(k, d) for k, d in SCENARIOS if k in ("supd", "pm2")]:
        good = [r for r in thr.get(kind + ("+date" if date else ""), []) if "error" not in r]
        if not good:
            continue
        r = min(good, key=lambda x: abs(x["seconds"] - bl.median([g["seconds"] for g in good])))  # the median run
        th = ", ".join(f"`{k}` {v:.2f} s" for k, v in list(r.get("daemon_threads_cpu_s", {}).items())[:4])
        detail.append(
            f"- {scen_label(kind, date)} (median run): daemon CPU {r.get('daemon_cpu_pct')} % of one core "
            f"over the run; busiest daemon threads: {th or 'n/a'}; the writer blocked "
            f"{bl.fmt(r.get('writer_voluntary_switches'), '{:,}')} times (voluntary context switches; its stdout pipe "
            f"holds {bl.fmt(r.get('writer_stdout_pipe_bytes'), '{:,}')} bytes) and used {r.get('writer_cpu_s')} s of CPU.")
        sample = (r.get("check") or {}).get("altered_sample")
        if sample:
            detail.append(f"  First altered line: `{sample[:150]}`")
    if detail:
        lines += ["", "Where the time goes:", ""] + detail
    lag = report.get("lag") or {}
    if lag:
        lines += [
            "",
            f"Lag: one line every {a['lag_interval_ms']:g} ms for {a['lag_seconds']:g} s, each with its send time "
            "(one write(2) per line, `log_date_format` on); the out file is polled every 1 ms; delay = poll that saw "
            f"the line - send time. 'flood' = the writer floods in a second app of the same daemon for "
            f"{a['lag_seconds'] + 1:g} s meanwhile.",
            "",
            "| supervisor | flood | received | median | p99 | max | flood written |",
            "|---|---|---:|---:|---:|---:|---:|",
        ]
        for key in ("supd", "supd+flood", "pm2", "pm2+flood"):
            r = lag.get(key)
            if not r:
                continue
            sup = "supd" if key.startswith("supd") else "PM2"
            fl = "yes" if key.endswith("flood") else "no"
            if "error" in r:
                lines.append(f"| {sup} | {fl} | failed: {r['error'][:100]} | | | | |")
                continue
            fw = (f"{r['flood_mb_per_s_written']:.0f} MB/s" if r.get("flood_mb_per_s_written") else "")
            lines.append(f"| {sup} | {fl} | {r['received']}/{r['expected']} | {bl.fmt(r.get('median_ms'), '{:.2f} ms')} | "
                         f"{bl.fmt(r.get('p99_ms'), '{:.2f} ms')} | {bl.fmt(r.get('max_ms'), '{:.2f} ms')} | {fw} |")
    listing = report.get("list") or {}
    if listing:
        lines += [
            "",
            f"`list` under floods: four apps each flood their log for {a['lag_seconds'] + 2:g} s (`log_date_format` "
            "on); meanwhile `supctl list --json` (PM2: `pm2 jlist`) runs every 100 ms, wall time of the whole "
            "command; then 10 calls once the floods are over. 'written' = the four writers' combined rate.",
            "",
            "| supervisor | calls | median | p90 | max | after: median | after: max | written |",
            "|---|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for kind in ("supd", "pm2"):
            r = listing.get(kind)
            if not r:
                continue
            sup = "supd" if kind == "supd" else "PM2"
            if "error" in r:
                lines.append(f"| {sup} | failed: {r['error'][:100]} | | | | | | |")
                continue
            d, af = r["during"], r["after"]
            fw = f"{r['flood_mb_per_s_written']:.0f} MB/s" if r.get("flood_mb_per_s_written") else ""
            lines.append(f"| {sup} | {d['calls']} | {bl.fmt(d.get('median_ms'), '{:.1f} ms')} | "
                         f"{bl.fmt(d.get('p90_ms'), '{:.1f} ms')} | {bl.fmt(d.get('max_ms'), '{:.1f} ms')} | "
                         f"{bl.fmt(af.get('median_ms'), '{:.1f} ms')} | {bl.fmt(af.get('max_ms'), '{:.1f} ms')} | {fw} |")
    return bl.tail_md(report, lines)


# --------------------------------------------------------------------------- main


def main() -> int:
    """Parses the options, runs the measurements, prints the report; non-zero on failure."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    bl.common_args(ap)  # --only: one supervisor only (direct always runs)
    ap.add_argument("--lines", type=int, default=3_000_000, help="lines per throughput run (default 3,000,000 = 333 MB)")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds of every throughput scenario (default 3)")
    ap.add_argument("--timeout", type=float, default=300.0,
                    help="longest wait, per run, for the last line to reach the file (default 300 s)")
    ap.add_argument("--stall", type=float, default=10.0,
                    help="give up when the writer is done and the file has not grown for this long (default 10 s)")
    ap.add_argument("--lag-seconds", type=float, default=3.0, help="lag test duration (default 3 s)")
    ap.add_argument("--lag-interval-ms", type=float, default=10.0, help="one lag line every ... ms (default 10)")
    ap.add_argument("--skip", choices=["throughput", "lag", "list"], action="append", default=[],
                    help="skip a measurement (repeatable)")
    ap.add_argument("--run-quiet-wait", type=float, default=10.0,
                    help="before each throughput run, wait up to this many seconds for a quiet machine (default 10)")
    ap.add_argument("--max-noise", type=float, default=15.0,
                    help="re-run a throughput run when other processes took more than this percent of the CPUs (default 15)")
    ap.add_argument("--retries", type=int, default=2, help="re-runs of a noisy throughput run; the least noisy is kept (default 2)")
    ap.add_argument("--budget", type=float, default=360.0,
                    help="after this many seconds, no more retries or quiet waits, so the run stays bounded (default 360)")
    args = ap.parse_args()
    if bl.rendered_saved(args, markdown):
        return 0

    t_start, quiet = bl.begin("logs", args)
    started: list[int] = []
    thr: dict = {}
    lag: dict = {}
    listing: dict = {}
    pm2_version = None
    bin_dir = None
    left: list[str] = []
    failed = False
    with bl.bench_root("logs-bench-") as tmp_root:
        (tmp_root / "writer.py").write_text(WRITER_PY)
        (tmp_root / "ticker.py").write_text(TICKER_PY)
        tools: dict = {}
        try:
            if args.only != "pm2":
                try:
                    tools["supd"] = bin_dir = bl.ensure_supd(args.bin_dir)
                except Exception as e:  # noqa: BLE001 - in the report, never faked
                    log(f"supd unavailable: {e}")
                    thr["supd"] = thr["supd+date"] = [{"error": str(e)}]
                    failed = True
            if args.only != "supd":
                try:
                    tools["pm2"] = bl.pm2_install(args.pm2_prefix, tmp_root)
                    pm2_version = tools["pm2"].version()
                except Exception as e:  # noqa: BLE001
                    log(f"PM2 unavailable: {e}")
                    thr["pm2"] = thr["pm2+date"] = [{"error": str(e)}]
                    failed = True
            if "throughput" not in args.skip:
                for rnd in range(args.rounds):
                    for kind, date in SCENARIOS:
                        if kind not in ("direct", "cat") and kind not in tools:
                            continue
                        key = kind + ("+date" if date else "")
                        r = None
                        for attempt in range(1 + args.retries):
                            in_budget = time.monotonic() - t_start < args.budget
                            if attempt and not in_budget:
                                break
                            if in_budget:
                                bl.wait_quiet(args.run_quiet_wait, args.quiet_below)
                            log(f"round {rnd + 1}/{args.rounds}: {key}" + (f" (retry {attempt})" if attempt else ""))
                            try:
                                a = measure(kind, date, args.lines, args, started, tools)
                            except Exception as e:  # noqa: BLE001
                                log(f"{key} failed: {e}")
                                a = {"error": str(e)}
                            a["attempts"] = attempt + 1
                            if run_failed(a):
                                # A failed run or a lost line is the result: never retried away.
                                r = a
                                break
                            if r is None or a["others_pct"] < r["others_pct"]:
                                r = a
                            if a["others_pct"] <= args.max_noise:
                                break
                            log(f"{key}: other processes took {a['others_pct']}% of the CPUs (> {args.max_noise:g}%)")
                        if run_failed(r):
                            failed = failed or kind in ("direct", "supd")
                        thr.setdefault(key, []).append(r)
            if "list" not in args.skip:
                for kind in ("supd", "pm2"):
                    if kind not in tools:
                        continue
                    listing[kind] = bl.attempt(list_run, kind, args, started, tools)
            if "lag" not in args.skip:
                for kind in ("supd", "pm2"):
                    if kind not in tools:
                        continue
                    for flood in (False, True):
                        key = kind + ("+flood" if flood else "")
                        lag[key] = bl.attempt(lag_run, kind, flood, args, started, tools)
                        if kind == "supd" and lag[key].get("received") != lag[key].get("expected"):
                            failed = True
        finally:
            left = bl.finish(started, (tmp_root,))
        fs = bl.run(["df", "--output=fstype", str(tmp_root)], check=False, quiet=True).stdout.split()[-1:]
        mach = bl.machine(pm2_version, bin_dir=str(bin_dir) if bin_dir else None,  # while the folder exists (df)
                          tmp=str(Path(tempfile.gettempdir())), tmp_fstype=fs[0] if fs else "?")

    report = bl.make_report(args, mach, t_start, quiet, left, throughput=thr, lag=lag, list=listing)
    bl.emit(report, args, markdown)
    return 1 if failed or left else 0


if __name__ == "__main__":
    sys.exit(main())
