#!/usr/bin/env python3
"""Chaos soak: random operations on a cluster app under wrk keep-alive load, and the
invariants that must hold through them.

For --minutes (default 10; --short: about 75 s, for CI) it applies, in a random order
drawn from a seed (printed; --seed replays it), each in a window of its own:

    reload          supctl reload web                     (rolling, zero-downtime)
    reload-file     supctl reload FILE.toml, a new env    (a new config rolled on)
    restart-capped  supctl reload / restart capped        (stop-then-start),
                    or supctl scale capped 2              (must be refused)
    scale           supctl scale web N, N in 1..4
    kill-worker     SIGKILL of one instance (web or capped)
    kill-daemon     SIGKILL of the daemon; `supctl ping` starts one that takes over
    update          supctl update                         (the daemon re-executes itself)
    flush           supctl flush [web|capped]

while both apps write numbered lines and the files rotate by size (`log_max_size`,
gzipped). Apps: `web`, tests/bench/chaos_app.py --http in cluster mode on a port the
daemon holds, and `capped`, the same program with --lock, `max_instances = 1`.

Each operation runs inside its own wrk run (keep-alive, a short pause between a
connection's requests): wrk starts, the operation is applied, the apps are waited back
(every expected instance online), a random pause, then wrk is stopped (SIGINT) and its
errors are the operation's. The invariants:

1. Requests: failures (socket errors and non-2xx) in a window are at most the bound of
   its operation: for kill-worker, the client connections the killed instance held
   (counted from /proc while it is stopped with SIGSTOP just before the SIGKILL); for
   every other operation, zero.
2. No orphan: after each daemon takeover and at the end, every process of the soak's
   apps is one the daemon lists (one it does not list must be gone within the app's
   kill_timeout); after `supctl kill`, nothing of the soak runs at all.
3. Never two capped instances: `capped` holds an exclusive flock; an instance that finds
   it taken records a conflict and exits 3. Any conflict is a violation.
4. No lost log line: every line an app recorded as written (its last number, per process) is
   in the app's log files (current, rotated, gzipped, and the copies this script took
   just before each flush), each exactly once in the daemon's files and in order per process.
   Lines may be missing only where the daemon is allowed to lose them: those written
   (per the app's own clock in the neighbouring lines) between LOG_LAG seconds before
   and LOG_LAG after a daemon SIGKILL (read by the dead daemon, not yet written: see
   docs/operations.md), or between the copy taken before a flush and the end of the
   flush (emptied on request). A line that does not parse (torn) is allowed only next
   to such a crash gap.

Prints a summary (operations by kind, requests served, failures against their bound,
each invariant held or its violations with time and seed) and exits 1 on a violation.
Nothing is left running on any exit path (supctl kill, then SIGKILL by pid of whatever
/proc still shows with the run's folder). Python 3.11 standard library only; the
helpers come from benchlib.py.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import gzip
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchlib as bl  # noqa: E402 - the shared helpers, next to this script
from benchlib import log  # noqa: E402

APP_PY = bl.HERE / "chaos_app.py"
WEB, CAPPED = "web", "capped"
KILL_TIMEOUT = 8.0  # the apps' kill_timeout: an unlisted process must be gone by then
SETTLE_TIMEOUT = 90.0  # every expected instance online again after an operation
LOG_LAG = 2.0  # seconds a line may take from the app's write to the daemon's file
LINE = re.compile(r"^chaos seq=(\d+) id=(\d+-[0-9a-f]+) t=(\d+\.\d+)$")  # id: pid-random
OPS = {  # kind: weight
    "reload": 3, "reload-file": 2, "restart-capped": 2, "scale": 3, "kill-worker": 4,
    "kill-daemon": 2, "update": 2, "flush": 2,
}
WRK_LUA = """-- chaos.py's load: keep-alive requests, DELAY ms between a connection's requests
function delay() return %d end
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('CHAOS-WRK {"requests": %%d, "connect": %%d, "read": %%d, "write": %%d, "status": %%d, "timeout": %%d}\\n',
    summary.requests, e.connect, e.read, e.write, e.status, e.timeout))
end
"""


class Soak:
    """The run's state: the daemon, the apps' expected shape, the operations applied
    and the violations found (each with its time)."""

    def __init__(self, args, root: Path, started: list):
        self.args = args
        self.rng = random.Random(args.seed)
        self.t0 = time.time()
        self.started = started
        self.side = bl.Supd(args.bin_dir, root / "supd", started)
        self.state = root / "state"
        for app in (WEB, CAPPED):
            (self.state / app / "written").mkdir(parents=True)
        (self.state / "flushed").mkdir()
        self.port = bl.free_port()
        self.lua = root / "load.lua"
        self.lua.write_text(WRK_LUA % args.delay_ms)
        self.web_instances = 3
        self.generation = 0
        self.ops: list[dict] = []  # one per operation: kind, detail, time, wrk figures, bound
        self.events: list[tuple[str, float, float]] = []  # (kind, start, end): where lines may go missing
        self.violations: list[str] = []
        self.wrk: subprocess.Popen | None = None

    # ----------------------------------------------------------------- helpers

    def at(self, t: float | None = None) -> str:
        """A time as seconds since the start of the soak."""
        return f"t+{(t or time.time()) - self.t0:.1f}s"

    def violation(self, what: str) -> None:
        """Records an invariant that broke (with its time and the seed)."""
        msg = f"{self.at()} (seed {self.args.seed}): {what}"
        log(f"VIOLATION {msg}")
        self.violations.append(msg)

    def ecosystem(self) -> Path:
        """Writes the ecosystem file for the current shape (instances, generation)."""
        common = {"script": bl.PY, "kill_timeout": f"{KILL_TIMEOUT:g}s", "wait_ready": True,
                  "listen_timeout": "20s", "min_uptime": "1s", "max_restarts": 1000}
        web = {"name": WEB, **common, "args": [str(APP_PY), str(self.state / WEB), "--http"],
               "exec_mode": "cluster", "instances": self.web_instances, "port": self.port,
               "env": {"CHAOS_GEN": str(self.generation)}}
        capped = {"name": CAPPED, **common,
                  "args": [str(APP_PY), str(self.state / CAPPED), "--lock", str(self.state / "capped.lock")],
                  "max_instances": 1, "max_instances_reason": "the chaos soak's flock proves it",
                  "env": {"CHAOS_GEN": str(self.generation)}}
        daemon = {"log_max_size": self.args.log_max_size, "log_retain": 100000, "log_compress": True}
        return self.side.write([web, capped], daemon)

    def ctl(self, *a, timeout: float = 120):
        """supctl with the soak's home; its CompletedProcess (not checked)."""
        return self.side.ctl(*a, timeout=timeout, check=False, quiet=True)

    def must(self, *a) -> None:
        """A supctl command that must succeed: its failure is a violation."""
        p = self.ctl(*a, timeout=180)
        if p.returncode != 0:
            self.violation(f"supctl {' '.join(map(str, a))} failed (exit {p.returncode}): {p.stderr.strip()}")

    def ping(self) -> dict:
        """`supctl ping --json` (starts a daemon when none runs)."""
        return json.loads(self.side.ctl("ping", "--json", timeout=120, quiet=True).stdout)

    def settled(self) -> bool | str:
        """True when both apps have exactly their expected instances, all online; else what they have."""
        rows = self.side.rows()
        web = [r for r in rows if r["name"] == WEB]
        capped = [r for r in rows if r["name"] == CAPPED]
        ok = (len(web) == self.web_instances and all(r["status"] == "online" for r in web)
              and len(capped) == 1 and capped[0]["status"] == "online")
        return ok or f"web {[r['status'] for r in web]} (want {self.web_instances} online), capped {[r['status'] for r in capped]}"

    def wait_settled(self, after: str) -> None:
        """Waits until the apps are back; a violation if they are not within SETTLE_TIMEOUT."""
        try:
            bl.wait_until(self.settled, SETTLE_TIMEOUT, f"the apps back after {after}", interval=0.2)
        except RuntimeError as e:
            self.violation(str(e))

    # ----------------------------------------------------------------- load

    def start_load(self) -> None:
        """wrk against the web app until stop_load()."""
        cmd = ["wrk", f"-t{self.args.threads}", f"-c{self.args.conns}", "-d3600s", "--timeout", "10s",
               "-s", str(self.lua), f"http://127.0.0.1:{self.port}/"]
        self.wrk = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    def stop_load(self) -> dict:
        """Stops wrk (SIGINT: it prints its figures) and returns them."""
        p, self.wrk = self.wrk, None
        p.send_signal(signal.SIGINT)
        out, _ = p.communicate(timeout=30)
        m = re.search(r"^CHAOS-WRK (\{.*\})$", out, re.M)
        if not m:
            raise RuntimeError(f"wrk printed no figures (exit {p.returncode}):\n{out}")
        return json.loads(m.group(1))

    def kill_load(self) -> None:
        """Ends a wrk still running (on the way out)."""
        if self.wrk and self.wrk.poll() is None:
            self.wrk.kill()
            self.wrk.wait(timeout=10)
        self.wrk = None

    # ----------------------------------------------------------------- operations

    # Each operation returns (what it did, how many requests may fail because of it).

    def op_reload(self) -> tuple[str, int]:
        """A rolling reload of the cluster app."""
        self.must("reload", WEB)
        return "web", 0

    def op_reload_file(self) -> tuple[str, int]:
        """The ecosystem file again, with a new environment: a new config rolled onto both apps."""
        self.generation += 1
        self.must("reload", self.ecosystem())
        return f"CHAOS_GEN={self.generation}", 0

    def op_restart_capped(self) -> tuple[str, int]:
        """reload or restart of the capped app (stop-then-start: never two at once), or a
        scale to 2 that must be refused."""
        how = self.rng.choice(["reload", "restart", "scale"])
        if how == "scale":
            p = self.ctl("scale", CAPPED, "2")
            if p.returncode == 0 or "max_instances" not in p.stderr:
                self.violation(f"supctl scale {CAPPED} 2 was not refused (exit {p.returncode}: {p.stderr.strip()})")
            return "scale to 2 (refused)", 0
        self.must(how, CAPPED)
        return how, 0

    def op_scale(self) -> tuple[str, int]:
        """The cluster app to another count between 1 and 4."""
        self.web_instances = self.rng.choice([n for n in range(1, 5) if n != self.web_instances])
        self.must("scale", WEB, self.web_instances)
        return f"to {self.web_instances}", 0

    def op_kill_worker(self) -> tuple[str, int]:
        """SIGKILL of a random online instance; its client connections are the bound."""
        rows = [r for r in self.side.rows() if r["pid"] and r["status"] == "online"]
        if not rows:
            return "no instance online", 0
        r = self.rng.choice(rows)
        pid = r["pid"]
        # Stopped, it accepts nothing more: the connections it holds now are all the
        # requests that can fail with it.
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGSTOP)
        held = held_connections(pid, self.port) if r["name"] == WEB else 0
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        return f"{r['name']}:{r['instance']} pid {pid}, {held} connection(s)", held

    def op_kill_daemon(self) -> tuple[str, int]:
        """SIGKILL of the daemon; the next supctl starts one that takes over, then no orphan."""
        pid = self.side.daemon_pid()
        t = time.time()
        os.kill(pid, signal.SIGKILL)
        bl.wait_until(lambda: all_threads_gone(pid), 10, f"daemon {pid} gone", interval=0.01)
        # Gone for good: its pid may be another process's before the run ends, and the
        # leftover check must never take (and SIGKILL) that one for ours.
        self.started.remove(pid)
        self.events.append(("kill-daemon", t, t))
        new = self.ping()["pid"]
        self.side.daemon_pid()  # remembered, for the leftover check
        self.wait_settled("the daemon's SIGKILL")
        self.check_orphans(f"the takeover by daemon {new}")
        return f"pid {pid} -> {new}", 0

    def op_update(self) -> tuple[str, int]:
        """`supctl update`: the daemon re-executes itself (same pid, a new image), keeping every app."""
        before = self.ping()
        p = self.ctl("update", timeout=180)
        after = self.ping()
        if p.returncode != 0 or after["pid"] != before["pid"] or after["image_started_ms"] == before["image_started_ms"]:
            self.violation(f"supctl update did not replace the image (exit {p.returncode}: {p.stderr.strip()}; "
                           f"pid {before['pid']} -> {after['pid']}, image {before['image_started_ms']} -> "
                           f"{after['image_started_ms']})")
        return f"pid {after['pid']}, {after['origin']}", 0

    def op_flush(self) -> tuple[str, int]:
        """`supctl flush` of one app or all, after copying what it will empty."""
        which = self.rng.choice([WEB, CAPPED, None])
        apps = [which] if which else [WEB, CAPPED]
        start = time.time()
        n = len(self.ops)
        for app in apps:  # a copy of what the flush will empty (a cut last line is dropped)
            with contextlib.suppress(FileNotFoundError):
                data = self.side.out_log(app).read_bytes()
                (self.state / "flushed" / f"{n:05d}-{app}.log").write_bytes(data[:data.rfind(b"\n") + 1])
        self.must("flush", *apps[:1] if which else [])
        self.events.append(("flush", start, time.time()))
        return which or "all", 0

    def apply(self, kind: str) -> None:
        """One operation in a wrk window of its own; its failures against its bound."""
        self.start_load()
        time.sleep(self.rng.uniform(0.3, 1.0))
        t = time.time()
        try:
            detail, bound = getattr(self, "op_" + kind.replace("-", "_"))()
        except Exception as e:  # noqa: BLE001 - a failed operation is reported, the soak goes on
            detail, bound = f"failed: {e}", 0
            self.violation(f"{kind} raised {e}")
        took = time.time() - t
        self.wait_settled(kind)
        time.sleep(self.rng.uniform(0.5, 2.0))
        w = self.stop_load()
        failed = w["connect"] + w["read"] + w["write"] + w["timeout"] + w["status"]
        op = {"kind": kind, "detail": detail, "at": round(t - self.t0, 1), "took_s": round(took, 2),
              "requests": w["requests"], "failed": failed, "bound": bound, "wrk": w}
        self.ops.append(op)
        log(f"{self.at(t)} {kind} {detail} ({took:.2f} s): {w['requests']} requests, {failed} failed (bound {bound})")
        if failed > bound:
            self.violation(f"{kind} {detail} at {self.at(t)}: {failed} failed requests, bound {bound} ({w})")

    # ----------------------------------------------------------------- invariants

    def app_pids(self) -> set[int]:
        """Live processes of the soak's apps (their command line holds the state folder)."""
        needle = str(self.state).encode()
        pids = set()
        for d in os.listdir("/proc"):
            if d.isdigit():
                with contextlib.suppress(OSError):
                    if needle in Path(f"/proc/{d}/cmdline").read_bytes() and bl.alive(int(d)):
                        pids.add(int(d))
        return pids - {os.getpid()}

    def check_orphans(self, when: str) -> None:
        """Every app process is listed by the daemon, or gone within kill_timeout."""
        deadline = time.monotonic() + KILL_TIMEOUT + 2
        while True:
            before = self.app_pids()
            listed = {r["pid"] for r in self.side.rows() if r["pid"]}
            unlisted = (before & self.app_pids()) - listed
            if not unlisted or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        for pid in sorted(unlisted):
            self.violation(f"orphan after {when}: pid {pid} ({cmdline(pid)}) runs, the daemon does not list it")

    def check_capped(self) -> int:
        """Conflicts the capped app recorded (two instances at once)."""
        f = self.state / CAPPED / "conflicts"
        lines = f.read_text().splitlines() if f.exists() else []
        for line in lines:
            self.violation(f"two instances of the capped app at once: {line}")
        return len(lines)

    def check_logs(self, app: str) -> dict:
        """The log invariant for one app (see the module doc); its figures."""
        files = log_files(self.side.home / "logs", app)
        seen: dict[str, list[tuple[int, float]]] = collections.defaultdict(list)  # id -> (seq, t) in file order
        torn = 0
        for f in files:
            for line in read_lines(f):
                m = LINE.match(line)
                if m:
                    seen[m.group(2)].append((int(m.group(1)), float(m.group(3))))
                elif line:
                    torn += 1
        copied: dict[str, dict[int, float]] = collections.defaultdict(dict)
        for f in sorted((self.state / "flushed").glob(f"*-{app}.log")):
            for line in read_lines(f):
                if m := LINE.match(line):
                    copied[m.group(2)][int(m.group(1))] = float(m.group(3))
        lines = crash_gaps = 0
        missing = {"kill-daemon": 0, "flush": 0}  # lines missing where that event explains them
        for rec in (self.state / app / "written").iterdir():
            pid = rec.name  # pid-random: pids are reused within a long soak
            text = rec.read_text().split()
            if len(text) != 2:
                continue  # killed before its first line
            started, last = float(text[0]), int(text[1])
            ended = rec.stat().st_mtime
            lines += last
            in_files = seen.get(pid, [])
            seqs = [s for s, _ in in_files]
            if seqs != sorted(set(seqs)):
                dup = len(seqs) - len(set(seqs))
                self.violation(f"{app} process {pid}: lines out of order or written twice ({dup} duplicate(s))")
            times = {s: t for s, t in in_files} | copied.get(pid, {})
            gap_start = None
            for seq in range(1, last + 2):
                if seq <= last and seq not in times:
                    gap_start = gap_start or seq
                    continue
                if gap_start is None:
                    continue
                # Lines gap_start..seq-1 are missing: written between their neighbours.
                t_a = times.get(gap_start - 1, started)
                t_b = times.get(seq, ended)
                n = seq - gap_start
                why = self.explained(t_a, t_b)
                if why:
                    missing[why] += n
                    crash_gaps += why == "kill-daemon"
                else:
                    self.violation(f"{app} process {pid}: {n} line(s) lost, seq {gap_start}-{seq - 1}, written between "
                                   f"{self.at(t_a)} and {self.at(t_b)} (no daemon SIGKILL or flush then)")
                gap_start = None
        if torn > crash_gaps:
            self.violation(f"{app}: {torn} torn line(s) in the log files, only {crash_gaps} crash gap(s) to explain them")
        rotated = sum(1 for f in files if f.name != f"{app}-out.log")
        return {"app": app, "lines_written": lines, "missing_at_crash": missing["kill-daemon"], "missing_at_flush": missing["flush"], "torn": torn,
                "files": len(files), "rotated": rotated, "gzipped": sum(1 for f in files if f.suffix == ".gz")}

    def explained(self, t_a: float, t_b: float) -> str | None:
        """The event (a daemon SIGKILL or a flush) during which lines written between t_a
        and t_b may be missing, or None."""
        for kind, start, end in self.events:
            if start - LOG_LAG <= t_a and t_b <= end + LOG_LAG:
                return kind
        return None

    # ----------------------------------------------------------------- the run

    def run(self) -> None:
        """Boot, start both apps, the chaos loop, then the final checks."""
        self.side.boot()
        p = self.ctl("start", self.ecosystem(), timeout=180)
        if p.returncode != 0:
            raise RuntimeError(f"supctl start failed: {p.stderr.strip()}")
        bl.wait_until(self.settled, SETTLE_TIMEOUT, "the apps online")
        kinds, weights = zip(*((k, w) for k, w in OPS.items() if k in self.args.ops))
        deadline = time.monotonic() + self.args.seconds
        while time.monotonic() < deadline:
            self.apply(self.rng.choices(kinds, weights)[0])
        self.check_orphans("the last operation")

    def finish(self) -> dict:
        """`supctl kill`, nothing left, then the capped and log invariants; the figures."""
        self.kill_load()
        self.side.kill()
        left = bl.finish(self.started, (self.side.root.parent,))
        for what in left:
            self.violation(f"left running after supctl kill: {what}")
        if self.args.keep:
            shutil.copytree(self.side.home, self.args.keep / "supd-home", dirs_exist_ok=True, symlinks=True,
                            ignore_dangling_symlinks=True, ignore=shutil.ignore_patterns("*.sock"))
            shutil.copytree(self.state, self.args.keep / "state", dirs_exist_ok=True)
        conflicts = self.check_capped()
        logs = [self.check_logs(app) for app in (WEB, CAPPED)]
        return {"conflicts": conflicts, "logs": logs, "leftovers": left}


def all_threads_gone(pid: int) -> bool:
    """No thread of `pid` runs any more. A killed process's leader turns zombie before its
    other threads have exited, and its descriptors (the control socket) close only with
    the last one: a supctl that connects in between is reset, not refused."""
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return True
    return not any(bl.alive(f"{pid}/task/{tid}") for tid in tids)


def held_connections(pid: int, port: int) -> int:
    """Established TCP connections on local `port` whose socket `pid` holds (from /proc)."""
    inodes = set()
    with contextlib.suppress(OSError):
        for fd in os.listdir(f"/proc/{pid}/fd"):
            with contextlib.suppress(OSError):
                link = os.readlink(f"/proc/{pid}/fd/{fd}")
                if link.startswith("socket:["):
                    inodes.add(link[8:-1])
    n = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for row in Path(table).read_text().splitlines()[1:]:
                f = row.split()
                if int(f[1].rsplit(":", 1)[1], 16) == port and f[3] == "01" and f[9] in inodes:
                    n += 1
    return n


def cmdline(pid: int) -> str:
    """A process's command line, for a report."""
    with contextlib.suppress(OSError):
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()[:160]
    return "?"


def log_files(logs: Path, app: str) -> list[Path]:
    """An app's stdout files, oldest first: the rotated ones in the order of their time
    suffix (the .gz when compression finished, else the plain file), then the current."""
    rotated: dict[str, Path] = {}
    for f in logs.glob(f"{app}-out.log.*"):
        stamp = f.name[len(f"{app}-out.log."):]
        if stamp.endswith(".gz"):
            rotated[stamp[:-3]] = f
        elif not stamp.endswith(".tmp"):
            rotated.setdefault(stamp, f)
    current = logs / f"{app}-out.log"
    return [rotated[k] for k in sorted(rotated)] + ([current] if current.exists() else [])


def read_lines(f: Path) -> list[str]:
    """The lines of a log file (gunzipped when it ends in .gz)."""
    data = gzip.decompress(f.read_bytes()) if f.suffix == ".gz" else f.read_bytes()
    return data.decode(errors="replace").splitlines()


# --------------------------------------------------------------------------- report


def markdown(r: dict) -> str:
    """The summary table of a report."""
    by_kind: dict = collections.defaultdict(lambda: {"n": 0, "requests": 0, "failed": 0, "bound": 0, "took": []})
    for op in r["ops"]:
        k = by_kind[op["kind"]]
        k["n"] += 1
        k["requests"] += op["requests"]
        k["failed"] += op["failed"]
        k["bound"] += op["bound"]
        k["took"].append(op["took_s"])
    m = r["machine"]
    lines = [f"Machine: {m['nproc']} CPUs ({m['cpu']}), Linux {m['kernel']}, {m['wrk']}, supd {m['supd_rev']}", "",
             f"Seed {r['seed']}, {r['seconds']:.0f} s of chaos, {len(r['ops'])} operations, "
             f"{r['requests']:,} requests served under wrk -c{r['args']['conns']} keep-alive.", "",
             "| operation | applied | median time | requests in its windows | failed | bound |",
             "|---|---:|---:|---:|---:|---:|"]
    for kind in sorted(by_kind):
        k = by_kind[kind]
        lines.append(f"| {kind} | {k['n']} | {bl.median(k['took']):.2f} s | {k['requests']:,} | {k['failed']} | {k['bound']} |")
    lines += ["", "| app | lines written | missing at a daemon SIGKILL | missing at a flush | torn | log files | rotated | gzipped |",
              "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for lg in r["logs"]:
        lines.append(f"| {lg['app']} | {lg['lines_written']:,} | {lg['missing_at_crash']} | {lg['missing_at_flush']} | "
                     f"{lg['torn']} | {lg['files']} | {lg['rotated']} | {lg['gzipped']} |")
    failed = sum(op["failed"] for op in r["ops"])
    bound = sum(op["bound"] for op in r["ops"])
    held = "held" if not r["violations"] else "VIOLATED"
    lines += ["", f"Invariants: {held}. Failed requests {failed} (bound {bound}); capped conflicts "
                  f"{r['conflicts']}; left running after supctl kill: {', '.join(r['leftovers']) or 'nothing'}."]
    lines += [f"- {v}" for v in r["violations"]]
    return "\n".join(lines)


def on_sigterm(*_) -> None:
    """SIGTERM ends the run like Ctrl-C: through the `finally` that leaves nothing running."""
    raise KeyboardInterrupt


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=10.0, help="how long the chaos lasts (default 10)")
    ap.add_argument("--short", action="store_true", help="about 75 s of chaos, for CI")
    ap.add_argument("--seed", type=int, help="replay a run (default: a random seed, printed)")
    ap.add_argument("--ops", default=",".join(OPS),
                    help=f"the operations to draw from, comma-separated (default all: {','.join(OPS)})")
    ap.add_argument("--bin-dir", type=Path, help="folder holding supd and supctl (default: target/release, built if missing)")
    ap.add_argument("--threads", type=int, default=2, help="wrk threads (default 2)")
    ap.add_argument("--conns", type=int, default=16, help="wrk keep-alive connections (default 16)")
    ap.add_argument("--delay-ms", type=int, default=5, help="pause between a connection's requests (default 5)")
    ap.add_argument("--log-max-size", default="16K", help="the apps' log_max_size: small, to rotate often (default 16K)")
    ap.add_argument("--json-out", type=Path, help="also write the report as JSON to this file")
    ap.add_argument("--keep", type=Path, help="copy SUPD_HOME (the daemon's log, the apps' logs) and the apps' "
                                              "records into this folder at the end, for a post-mortem")
    args = ap.parse_args()
    args.seconds = 75.0 if args.short else args.minutes * 60
    args.ops = args.ops.split(",")
    if unknown := set(args.ops) - set(OPS):
        ap.error(f"unknown operation(s): {', '.join(sorted(unknown))} (known: {', '.join(OPS)})")
    if args.seed is None:
        args.seed = random.SystemRandom().randrange(10**6)
    bl.set_name("chaos")
    log(f"seed {args.seed} (replay with --seed {args.seed})")
    bl.ensure_wrk()
    args.bin_dir = bl.ensure_supd(args.bin_dir)

    signal.signal(signal.SIGTERM, on_sigterm)
    started: list = []
    interrupted = False
    t_start = time.monotonic()
    with bl.bench_root("supd-chaos-") as root:
        soak = Soak(args, root, started)
        try:
            soak.run()
        except KeyboardInterrupt:
            log("interrupted: stopping everything, then checking what ran")
            interrupted = True
        finally:
            end = soak.finish()
    report = {"machine": bl.machine(None, wrk=bl.run(["wrk", "--version"], check=False, quiet=True).stdout.split("[")[0].strip()),
              "args": bl.report_args(args), "seed": args.seed, "seconds": args.seconds,
              "ops": soak.ops, "events": [(k, round(a - soak.t0, 3), round(b - soak.t0, 3)) for k, a, b in soak.events],
              "requests": sum(op["requests"] for op in soak.ops),
              "violations": soak.violations, **end, "total_seconds": round(time.monotonic() - t_start, 1)}
    if args.json_out:
        args.json_out.write_text(json.dumps(report, indent=2) + "\n")
    print(markdown(report))
    log(f"seed {args.seed}: {'invariants held' if not soak.violations else f'{len(soak.violations)} violation(s)'}")
    return 1 if soak.violations else 130 if interrupted else 0


if __name__ == "__main__":
    sys.exit(main())
