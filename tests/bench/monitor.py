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
killed at the end (try/finally) and the script checks with `pgrep -f` that none of its
processes is left.

Python 3.11 standard library only. Output: a Markdown table on stdout (--json for JSON).
Progress goes to stderr.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
WORKSPACE = HERE.parent.parent
CLK_TCK = os.sysconf("SC_CLK_TCK")
MIB = 1024 * 1024
LIMIT_BYTES = 150 * MIB  # "150M" for both supervisors (PM2 also counts M as 1024^2)

# Every `sleep` we start gets this unique argument, so that `pgrep -f` at the end can
# only find our own processes (GNU sleep accepts a fraction: still about an hour).
TOKEN = f"3600.{os.getpid()}{secrets.randbelow(10**6):06d}"

# Every temporary folder of a run (SUPD_HOMEs, PM2_HOMEs, the hog) lives under this one,
# set in main(): the PM2 daemon's and the hog's command lines hold it, for `pgrep -f`.
ROOT: Path = Path(tempfile.gettempdir())

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


# --------------------------------------------------------------------------- utilities


def log(msg: str) -> None:
    print(f"[monitor {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def run(cmd, *, env=None, timeout=60, check=True, cwd=None, quiet=False):
    """Runs a command, bounded in time; returns CompletedProcess (text)."""
    if not quiet:
        log("$ " + " ".join(str(c) for c in cmd))
    p = subprocess.run(
        [str(c) for c in cmd], env=env, cwd=cwd, timeout=timeout,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    if check and p.returncode != 0:
        raise RuntimeError(
            f"command failed (exit {p.returncode}): {' '.join(str(c) for c in cmd)}\n"
            f"stdout: {p.stdout.strip()[-2000:]}\nstderr: {p.stderr.strip()[-2000:]}"
        )
    return p


def wait_until(pred, timeout: float, what: str, interval: float = 0.5):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = pred()
            if last:
                return last
        except Exception as e:  # noqa: BLE001 - reported below if it never succeeds
            last = e
        time.sleep(interval)
    raise RuntimeError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


def proc_ticks(pid: int) -> int | None:
    """utime+stime of a process (all its threads), in clock ticks; None if gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    f = text[text.rindex(")") + 2:].split()
    return int(f[11]) + int(f[12])


def proc_status(pid: int) -> dict:
    """VmRSS (KiB) and Threads of a process from /proc/PID/status ({} if gone)."""
    out = {}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            k, _, v = line.partition(":")
            if k in ("VmRSS", "Threads"):
                out[k] = int(v.split()[0])
    except OSError:
        pass
    return out


def alive(pid: int) -> bool:
    """The process exists and is not a zombie."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return text[text.rindex(")") + 2:].split()[0] != "Z"


def machine_snapshot() -> tuple[int, int]:
    f = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    total = sum(f[:8])
    return total, total - f[3] - f[4]


def busy_pct(a, b) -> float:
    return round(100.0 * (b[1] - a[1]) / max(1, b[0] - a[0]), 1)


def cpu_busy(seconds: float) -> float:
    """Percent of all CPUs busy over `seconds`: how quiet the machine is."""
    a = machine_snapshot()
    time.sleep(seconds)
    return busy_pct(a, machine_snapshot())


def measure_daemon(pid: int, window: float) -> dict:
    """CPU (% of one core) and RSS of `pid` over `window` seconds; nothing else is asked of
    the daemon meanwhile. Also how busy the whole machine was (other work skews nothing
    in utime/stime, but it is reported)."""
    rss, threads, per_s = [], [], []
    m0 = machine_snapshot()
    c0, t0 = proc_ticks(pid), time.monotonic()
    if c0 is None:
        raise RuntimeError(f"daemon pid {pid} is gone")
    prev = c0
    while True:
        st = proc_status(pid)
        if "VmRSS" in st:
            rss.append(st["VmRSS"])
            threads.append(st.get("Threads", 0))
        now_ticks = proc_ticks(pid)
        if now_ticks is not None and len(rss) > 1:
            per_s.append(now_ticks - prev)  # ticks used during the last second: shows the sampling rhythm
        if now_ticks is not None:
            prev = now_ticks
        left = window - (time.monotonic() - t0)
        if left <= 0:
            break
        time.sleep(min(1.0, left))
    c1, t1 = proc_ticks(pid), time.monotonic()
    if c1 is None:
        raise RuntimeError(f"daemon pid {pid} died during the window")
    m1 = machine_snapshot()
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
        "machine_busy_pct": busy_pct(m0, m1),
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
                if cur["gone_ms"] is None and not alive(cur["pid"]):
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


def summary(values: list) -> dict | None:
    v = [x for x in values if isinstance(x, (int, float))]
    if not v:
        return None
    return {"min": min(v), "median": statistics.median(v), "max": max(v), "n": len(v)}


# --------------------------------------------------------------------------- supd


def ensure_supd(bin_dir: Path | None) -> Path:
    if bin_dir is None:
        bin_dir = WORKSPACE / "target" / "release"
        if not ((bin_dir / "supd").exists() and (bin_dir / "supctl").exists()):
            log("supd binaries missing: cargo build --release")
            run(["cargo", "build", "--release"], cwd=WORKSPACE, timeout=1800)
    for b in ("supd", "supctl"):
        if not (bin_dir / b).exists():
            raise RuntimeError(f"{bin_dir / b} does not exist")
    return bin_dir.resolve()


class Supd:
    """One supd daemon with its own temporary SUPD_HOME."""

    def __init__(self, bin_dir: Path, root: Path, started: list):
        self.supctl = bin_dir / "supctl"
        self.root = root
        self.home = root / "supd-home"
        self.env = dict(os.environ, SUPD_HOME=str(self.home), PATH=f"{bin_dir}:{os.environ['PATH']}")
        self.started = started  # every daemon pid we started, checked at the end

    def ctl(self, *a, timeout=60, check=True, quiet=False):
        return run([self.supctl, *a], env=self.env, timeout=timeout, check=check, quiet=quiet)

    def daemon_pid(self) -> int:
        pid = int((self.home / "supd.pid").read_text().strip())
        if pid not in self.started:
            self.started.append(pid)
        return pid

    def list(self) -> list:
        return json.loads(self.ctl("list", "--json", timeout=20, quiet=True).stdout)

    def start(self, toml: str, name: str, instances: int, timeout: float):
        f = self.root / "ecosystem.toml"
        f.write_text(toml)
        self.ctl("start", f, timeout=timeout)
        self.daemon_pid()

        def online():
            rows = [r for r in self.list() if r.get("name") == name]
            n = sum(1 for r in rows if r.get("status") == "online")
            return n == instances or f"{n}/{instances} online"
        wait_until(online, timeout, f"{instances} online instance(s) of {name} in `supctl list --json`")

    def kill(self):
        try:
            self.ctl("kill", timeout=60, check=False)
        except Exception as e:  # noqa: BLE001
            log(f"supctl kill failed: {e}")
        try:
            pid = int((self.home / "supd.pid").read_text().strip())
            if alive(pid):
                log(f"supd (pid {pid}) still alive after supctl kill: SIGTERM")
                os.kill(pid, signal.SIGTERM)
        except (OSError, ValueError):
            pass


def supd_sleep_toml(n: int, interval: str = "1s") -> str:
    return (
        "[daemon]\n"
        f'sample_interval = "{interval}"\n\n'
        "[[apps]]\n"
        'name = "s"\n'
        'script = "sleep"\n'
        f'args = ["{TOKEN}"]\n'
        'exec_mode = "fork"\n'
        f"instances = {n}\n"
    )


def supd_cost(bin_dir: Path, n: int, args, started: list, interval: str = "1s") -> dict:
    with tempfile.TemporaryDirectory(prefix=f"supd-monitor-{n}-", dir=ROOT) as tmp:
        s = Supd(bin_dir, Path(tmp), started)
        try:
            t = time.monotonic()
            s.start(supd_sleep_toml(n, interval), "s", n, timeout=120)
            online_s = round(time.monotonic() - t, 2)
            pid = s.daemon_pid()
            log(f"supd x{n} (sample_interval {interval}): {n} online in {online_s} s; settling {args.settle:g} s, then {args.window:g} s window (pid {pid})")
            time.sleep(args.settle)
            m = measure_daemon(pid, args.window)
            rows = [r for r in s.list() if r.get("name") == "s"]
            m["online_after"] = sum(1 for r in rows if r.get("status") == "online")
            m["restarts_after"] = sum(r.get("restarts", 0) for r in rows)
            m["start_to_online_s"] = online_s
            m["sample_interval"] = interval
            log(f"supd x{n} (sample_interval {interval}): CPU {m['cpu_pct']}% of a core, RSS {m['rss_mib_mean']} MiB "
                f"(machine {m['machine_busy_pct']}% busy)")
            return m
        finally:
            s.kill()


def supd_hog(bin_dir: Path, hog_js: Path, args, started: list) -> dict:
    with tempfile.TemporaryDirectory(prefix="supd-monitor-hog-", dir=ROOT) as tmp:
        s = Supd(bin_dir, Path(tmp), started)
        hog_log = Path(tmp) / "hog.log"
        toml = (
            "[daemon]\n"
            'sample_interval = "1s"\n\n'
            "[[apps]]\n"
            'name = "hog"\n'
            'script = "node"\n'
            f"args = [{json.dumps(str(hog_js))}, {json.dumps(str(hog_log))}, \"{args.hog_cap_mb}\"]\n"
            'max_memory_restart = "150M"\n'
        )
        try:
            s.start(toml, "hog", 1, timeout=60)
            cycles = HogWatcher(hog_log).watch(args.hog_cycles, args.hog_timeout)
            res = {"cycles": cycles}
            try:
                show = json.loads(s.ctl("show", "hog", "--json", timeout=20, quiet=True).stdout)
                inst = (show.get("instances") or [{}])[0]
                res["restarts"] = inst.get("restarts")
                res["last_restart_reason"] = inst.get("restart_reason")
            except Exception as e:  # noqa: BLE001
                res["show_error"] = str(e)
            return res
        finally:
            s.kill()


# --------------------------------------------------------------------------- PM2


class Pm2:
    def __init__(self, prefix: Path):
        self.prefix = prefix
        self.bin = prefix / "node_modules" / ".bin" / "pm2"

    def install(self):
        if not self.bin.exists():
            run(["npm", "install", "--prefix", self.prefix, "--no-audit", "--no-fund", "pm2"], timeout=600)
        if not self.bin.exists():
            raise RuntimeError(f"npm install did not produce {self.bin}")

    def version(self) -> str:
        pj = self.prefix / "node_modules" / "pm2" / "package.json"
        return json.loads(pj.read_text())["version"]


class Pm2Home:
    """One PM2 daemon (God) with its own temporary PM2_HOME."""

    def __init__(self, pm2: Pm2, root: Path, started: list):
        self.pm2 = pm2
        self.root = root
        self.home = root / "pm2home"
        self.home.mkdir(parents=True, exist_ok=True)
        # The `touch` file marks PM2 as already installed: no first-run banner and no
        # version check over the network (pm2 Client.js); the daemon's daily version
        # check is off too, so only loopback is used.
        (self.home / "touch").write_text(str(int(time.time() * 1000)))
        self.env = dict(os.environ, PM2_HOME=str(self.home), PM2_DISABLE_VERSION_CHECK="1")
        self.started = started

    def cmd(self, *a, timeout=60, check=True, quiet=False):
        return run([self.pm2.bin, *a], env=self.env, timeout=timeout, check=check, quiet=quiet)

    def daemon_pid(self) -> int:
        pid = int((self.home / "pm2.pid").read_text().strip())
        if pid not in self.started:
            self.started.append(pid)
        return pid

    def jlist(self) -> list:
        out = self.cmd("jlist", timeout=30, quiet=True).stdout
        return json.loads(out[out.find("["):])

    def start(self, app: dict, instances: int, timeout: float):
        f = self.root / "ecosystem.json"
        f.write_text(json.dumps({"apps": [app]}, indent=2))
        self.cmd("start", f, timeout=timeout)
        self.daemon_pid()
        name = app["name"]

        def online():
            rows = [r for r in self.jlist() if r.get("name") == name]
            n = sum(1 for r in rows if r["pm2_env"].get("status") == "online")
            return n == instances or f"{n}/{instances} online"
        wait_until(online, timeout, f"{instances} online process(es) of {name} in `pm2 jlist`", interval=1.0)

    def kill(self):
        try:
            self.cmd("kill", timeout=90, check=False)
        except Exception as e:  # noqa: BLE001
            log(f"pm2 kill failed: {e}")
        try:
            pid = int((self.home / "pm2.pid").read_text().strip())
            if alive(pid):
                log(f"PM2 daemon (pid {pid}) still alive after pm2 kill: SIGTERM")
                os.kill(pid, signal.SIGTERM)
        except (OSError, ValueError):
            pass


def pm2_cost(pm2: Pm2, n: int, args, started: list) -> dict:
    with tempfile.TemporaryDirectory(prefix=f"pm2-monitor-{n}-", dir=ROOT) as tmp:
        p = Pm2Home(pm2, Path(tmp), started)
        app = {"name": "s", "script": shutil.which("sleep") or "/bin/sleep", "args": TOKEN,
               "interpreter": "none", "exec_mode": "fork", "instances": n}
        try:
            t = time.monotonic()
            p.start(app, n, timeout=180)
            online_s = round(time.monotonic() - t, 2)
            pid = p.daemon_pid()
            log(f"PM2 x{n}: {n} online in {online_s} s; settling {args.settle:g} s, then {args.window:g} s window (pid {pid})")
            time.sleep(args.settle)
            m = measure_daemon(pid, args.window)
            rows = [r for r in p.jlist() if r.get("name") == "s"]
            m["online_after"] = sum(1 for r in rows if r["pm2_env"].get("status") == "online")
            m["restarts_after"] = sum(r["pm2_env"].get("restart_time", 0) for r in rows)
            m["start_to_online_s"] = online_s
            log(f"PM2 x{n}: CPU {m['cpu_pct']}% of a core, RSS {m['rss_mib_mean']} MiB "
                f"(machine {m['machine_busy_pct']}% busy)")
            return m
        finally:
            p.kill()


def pm2_hog(pm2: Pm2, hog_js: Path, args, started: list) -> dict:
    with tempfile.TemporaryDirectory(prefix="pm2-monitor-hog-", dir=ROOT) as tmp:
        p = Pm2Home(pm2, Path(tmp), started)
        hog_log = Path(tmp) / "hog.log"
        app = {"name": "hog", "script": str(hog_js), "args": [str(hog_log), str(args.hog_cap_mb)],
               "exec_mode": "fork", "instances": 1, "max_memory_restart": "150M"}
        try:
            p.start(app, 1, timeout=60)
            cycles = HogWatcher(hog_log).watch(args.hog_cycles, args.hog_timeout)
            res = {"cycles": cycles}
            try:
                rows = [r for r in p.jlist() if r.get("name") == "hog"]
                res["restarts"] = rows[0]["pm2_env"].get("restart_time") if rows else None
            except Exception as e:  # noqa: BLE001
                res["jlist_error"] = str(e)
            return res
        finally:
            p.kill()


# --------------------------------------------------------------------------- cleanup check


def leftovers(started: list, tmp_root: Path) -> list[str]:
    """Our processes still running: the daemons we started, any `sleep TOKEN`, any hog
    (its command line holds our temp folder)."""
    left = [f"daemon pid {pid}" for pid in started if alive(pid)]
    for pat in (TOKEN, str(tmp_root)):
        p = subprocess.run(["pgrep", "-af", pat], stdout=subprocess.PIPE, text=True, timeout=10)
        for line in p.stdout.splitlines():
            pid = int(line.split()[0])
            if pid != os.getpid() and alive(pid):
                left.append(line)
    return left


def reap(started: list, tmp_root: Path) -> list[str]:
    left = leftovers(started, tmp_root)
    if left:
        log(f"left over after kill: {left}; SIGKILL by pid")
        pids = set(started)
        for pat in (TOKEN, str(tmp_root)):
            p = subprocess.run(["pgrep", "-f", pat], stdout=subprocess.PIPE, text=True, timeout=10)
            pids.update(int(x) for x in p.stdout.split())
        for pid in pids:
            if pid != os.getpid() and alive(pid):
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)
        time.sleep(1)
    return left


# --------------------------------------------------------------------------- report


def machine(pm2_version: str | None) -> dict:
    def out(cmd):
        try:
            return subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                  text=True, timeout=10).stdout.strip()
        except Exception:  # noqa: BLE001
            return "?"
    cpu = "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    rev = out(["git", "-C", str(WORKSPACE), "rev-parse", "--short", "HEAD"])
    dirty = out(["git", "-C", str(WORKSPACE), "status", "--porcelain", "--untracked-files=no"])
    return {
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "kernel": platform.release(),
        "node": out(["node", "--version"]),
        "pm2": pm2_version,
        "python": platform.python_version(),
        "supd_rev": rev + ("+dirty" if dirty else ""),
    }


def _f(x, fmt="{:.2f}"):
    return fmt.format(x) if isinstance(x, (int, float)) else "n/a"


def _ratio(a, b):
    return f"{a / b:.2f}" if isinstance(a, (int, float)) and isinstance(b, (int, float)) and b else "n/a"


def _secs(ms):
    return f"{ms / 1000:.2f} s" if isinstance(ms, (int, float)) else "n/a"


def markdown(report: dict) -> str:
    m, a, cost, hog = report["machine"], report["args"], report["cost"], report["hog"]
    lines = [
        f"Machine: {m['nproc']} CPUs ({m['cpu']}), Linux {m['kernel']}, node {m['node']}, pm2 {m['pm2']}, "
        f"supd {m['supd_rev']}; CPU busy before the run: {report.get('cpu_busy_before_pct', '?')}%.",
    ]
    if cost:
        lines += _cost_md(a, cost)
    if hog:
        lines += _hog_md(a, hog)
    return _tail_md(report, lines)


def _cost_md(a: dict, cost: dict) -> list[str]:
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
            lines.append(f"| {n} | {_f(s.get('cpu_pct'), '{:.2f} %')} | {_f(p.get('cpu_pct'), '{:.2f} %')} | | "
                         f"{_f(s.get('rss_mib_mean'), '{:.1f} MiB')} | {_f(p.get('rss_mib_mean'), '{:.1f} MiB')} | | | {err} |")
            continue
        lines.append(
            f"| {n} | {s['cpu_pct']:.2f} % | {p['cpu_pct']:.2f} % | {_ratio(s['cpu_pct'], p['cpu_pct'])} | "
            f"{s['rss_mib_mean']:.1f} MiB | {p['rss_mib_mean']:.1f} MiB | {_ratio(s['rss_mib_mean'], p['rss_mib_mean'])} | "
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
        react = summary([c.get("reaction_ms") for c in cyc])
        gone = summary([c.get("gone_ms") for c in cyc])
        peak = summary([c["max_rss_mib"] for c in cyc])
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


def _tail_md(report: dict, lines: list[str]) -> str:
    lines += ["", f"Left-over processes after the run: {', '.join(report['leftovers']) or 'none'} "
                  f"(checked with `pgrep -f`). Total {report['total_seconds']:.0f} s."]
    return "\n".join(lines)


# --------------------------------------------------------------------------- main


def common_args(ap: argparse.ArgumentParser) -> None:
    """The options shared with the other side-by-side benchmarks (scale.py): where the
    binaries and pm2 are, which side runs, the output, and the wait for a quiet machine."""
    ap.add_argument("--bin-dir", type=Path, help="folder holding supd and supctl (default: target/release, built if missing)")
    ap.add_argument("--pm2-prefix", type=Path, help="reuse an npm prefix that already holds pm2 (default: fresh temp folder)")
    ap.add_argument("--only", choices=["supd", "pm2"], help="run one side only")
    ap.add_argument("--json", action="store_true", help="print the report as JSON instead of Markdown")
    ap.add_argument("--json-out", type=Path, help="also write the JSON report to this file")
    ap.add_argument("--from-json", type=Path, help="only render the Markdown of a report saved with --json-out")
    ap.add_argument("--wait-quiet", type=float, default=60.0,
                    help="wait up to this many seconds for the machine to be quiet before measuring (default 60)")
    ap.add_argument("--quiet-below", type=float, default=20.0,
                    help="'quiet' means less than this percent of CPU busy (default 20)")


def wait_for_quiet(args) -> float:
    """Waits (up to --wait-quiet seconds) for the machine to be less than --quiet-below %
    busy with other work; returns the last figure, which the report shows."""
    quiet = cpu_busy(2.0)
    deadline = time.monotonic() + args.wait_quiet
    while quiet > args.quiet_below and time.monotonic() < deadline:
        log(f"CPU {quiet}% busy with other work; waiting (up to {args.wait_quiet:g} s) for < {args.quiet_below:g}%")
        quiet = cpu_busy(5.0)
    log(f"CPU busy before start (nothing of ours running): {quiet}%")
    return quiet


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    common_args(ap)
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
    if args.from_json:
        print(markdown(json.loads(args.from_json.read_text())))
        return 0

    t_start = time.monotonic()
    quiet = wait_for_quiet(args)
    started: list[int] = []
    cost: dict = {}
    hog: dict = {}
    pm2_version = None
    left: list[str] = []
    with tempfile.TemporaryDirectory(prefix="monitor-bench-") as tmp_root_s:
        global ROOT
        tmp_root = ROOT = Path(tmp_root_s)
        hog_js = tmp_root / "hog.js"
        hog_js.write_text(HOG_JS)
        try:
            bin_dir = pm2 = None
            if args.only != "pm2":
                try:
                    bin_dir = ensure_supd(args.bin_dir)
                except Exception as e:  # noqa: BLE001 - recorded in the report, never faked
                    log(f"supd unavailable: {e}")
                    for n in args.counts:
                        cost[f"supd_{n}"] = {"error": str(e)}
                    hog["supd"] = {"error": str(e)}
            if args.only != "supd":
                try:
                    if args.pm2_prefix:
                        prefix = args.pm2_prefix.resolve()
                        prefix.mkdir(parents=True, exist_ok=True)
                    else:
                        prefix = tmp_root / "pm2"
                    pm2 = Pm2(prefix)
                    pm2.install()
                    pm2_version = pm2.version()
                except Exception as e:  # noqa: BLE001
                    log(f"PM2 unavailable: {e}")
                    pm2 = None
                    for n in args.counts:
                        cost[f"pm2_{n}"] = {"error": str(e)}
                    hog["pm2"] = {"error": str(e)}

            if args.skip != "cost":
                for n in args.counts:  # interleaved: supd N, PM2 N, then the next N
                    for key, fn, dep in ((f"supd_{n}", supd_cost, bin_dir), (f"pm2_{n}", pm2_cost, pm2)):
                        if dep is None:
                            continue
                        try:
                            cost[key] = fn(dep, n, args, started)
                        except Exception as e:  # noqa: BLE001
                            log(f"{key} failed: {e}")
                            cost[key] = {"error": str(e)}
                if bin_dir is not None and args.slow_interval:
                    n = max(args.counts)
                    key = f"supd_{n}_{args.slow_interval}"
                    try:
                        cost[key] = supd_cost(bin_dir, n, args, started, args.slow_interval)
                    except Exception as e:  # noqa: BLE001
                        log(f"{key} failed: {e}")
                        cost[key] = {"error": str(e)}
            if args.skip != "hog":
                for key, fn, dep in (("supd", supd_hog, bin_dir), ("pm2", pm2_hog, pm2)):
                    if dep is None:
                        continue
                    log(f"{key}: memory-limit reaction, {args.hog_cycles} cycles")
                    try:
                        hog[key] = fn(dep, hog_js, args, started)
                    except Exception as e:  # noqa: BLE001
                        log(f"{key} hog failed: {e}")
                        hog[key] = {"error": str(e)}
        finally:
            time.sleep(1)
            left = reap(started, tmp_root)
            still = leftovers(started, tmp_root)
            if still:
                log(f"STILL RUNNING after SIGKILL: {still}")
            else:
                log("pgrep -f: none of our processes is left")

    report = {
        "machine": machine(pm2_version),
        "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "cost": cost,
        "hog": hog,
        "cpu_busy_before_pct": quiet,
        "leftovers": left,
        "total_seconds": round(time.monotonic() - t_start, 1),
    }
    if args.json_out:
        args.json_out.write_text(json.dumps(report, indent=2) + "\n")
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(markdown(report))
    log(f"done in {report['total_seconds']} s")
    failed = any("error" in v for v in cost.values()) or any("error" in v for v in hog.values()) or left
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
