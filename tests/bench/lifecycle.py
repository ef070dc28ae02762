#!/usr/bin/env python3
"""Lifecycle benchmark: supd vs PM2, side by side — start, `list`, RSS and respawn.

Measures, for each supervisor, each round (rounds alternate which one goes first):
  1. platform  The platform (the issue's "8-process platform": 6 apps, 10 processes) with
               the same Node app on both sides
               (tests/bench/hello.js, `wait_ready`): two cluster apps of 4 and 2
               instances and four single fork apps, each app on its own free port of
               127.0.0.1 (supd: the daemon's socket on fd 3; PM2: `$PORT`, cluster mode
               for the two multi-instance apps). With the daemon already up: time from
               the start command to every instance having answered `GET /` on its port
               (each answer says `hello from <instance>`), when the start command
               returned, the daemon's RSS once all are online (after --settle), and
               `list` latency.
  2. fleet     N idle apps (`sleep`, one instance each) for N in --counts (8, 200):
               the daemon's RSS once all are online (after --settle) and `list` latency
               (`supctl list --json` / `pm2 jlist`, --list-samples calls, each timed from
               the CLI's start to its exit).
  3. crash     Crash-to-respawn latency: one app runs the same Python program on both
               sides (`python3 -S crashling.py STAMPS`), whose first statement takes
               `time.time_ns()` and appends it to a file. The script SIGKILLs the
               running process (noting the time just before) and waits for the next
               stamp: latency = new start - kill time, --crash-reps times per round, each
               run given --crash-uptime (1.5 s) first so that it is a stable run (above
               both supervisors' default `min_uptime` of 1 s). Both sides: autorestart,
               `restart_delay = 0`, `min_uptime = 1000` (ms, the default of both, said
               explicitly), `max_restarts = 1000`, no exponential backoff (neither has
               one by default). The same program started by this script directly is the
               floor (interpreter start-up included in every figure).

Every daemon has its own temporary home (SUPD_HOME / PM2_HOME, PM2 marked as set up so it
makes no network call) and is killed in a finally block; a scan of /proc (command lines
and environments) checks at the end that none of this run's processes is left. Every
wait is bounded (--timeout).

The helpers come from benchlib.py. Python 3.11 standard library only. Markdown on stdout
(--json for JSON), progress on stderr.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchlib as bl  # noqa: E402 - the shared helpers, next to this script
from benchlib import HELLO_JS, PY, TOKEN, log  # noqa: E402

SIDES = ("supd", "pm2")
SCENARIOS = ("platform", "fleet", "crash")

# The platform's shape (docs/services.md): name, mode, instances.
PLATFORM = (
    ("api-gateway", "cluster", 4),
    ("user-service", "cluster", 2),
    ("device-service", "fork", 1),
    ("app-service", "fork", 1),
    ("billing-service", "fork", 1),
    ("notification-service", "fork", 1),
)

# The crash test's child: its first statement takes the time; it then appends
# "<start ns> <pid>" to the file named by argv[1] and sleeps (the token lets the leftover check find it).
CRASHLING_PY = r'''import time; T0 = time.time_ns()
import os, sys
with open(sys.argv[1], "a") as f:
    f.write(f"{T0} {os.getpid()}\n")
time.sleep(3600)
'''


# --------------------------------------------------------------------------- measuring helpers


def list_latencies(sup: bl.Supervisor, samples: int, expect_rows: int) -> dict:
    """`samples` timed calls of the side's list command (0.1 s apart), after one checked
    call that must show `expect_rows` rows; the wall times in seconds and their median."""
    rows = sup.rows()
    if len(rows) != expect_rows:
        raise RuntimeError(f"list shows {len(rows)} rows, not {expect_rows}")
    took = []
    for _ in range(samples):
        took.append(bl.timed(lambda: bl.run(sup.list_cmd, env=sup.env, timeout=60, quiet=True))[0])
        time.sleep(0.1)
    return {"list_s": [round(x, 4) for x in took], "list_median_s": round(bl.median(took), 4)}


def rss_after(pid: int, settle: float) -> dict:
    """The daemon's RSS (MiB) and threads after `settle` seconds with nothing asked."""
    time.sleep(settle)
    st = bl.proc_status(pid)
    if "VmRSS" not in st:
        raise RuntimeError(f"daemon pid {pid} is gone")
    return {"rss_mib": round(st["VmRSS"] / 1024, 1), "threads": st.get("Threads")}


class HttpProbe:
    """Polls `GET /` on every port (fresh connections, as many threads per port as the app
    has instances) until each app's every instance has answered once; bounded by a deadline.

    Before the port is bound a request is refused (polled again 5 ms later); once it is
    bound, a request waits in the accept queue until an instance takes it, so the first
    answer of an instance comes as soon as it serves."""

    def __init__(self, apps: dict[int, int], timeout: float):
        self.apps = apps  # port -> instances
        self.timeout = timeout
        self.seen: dict[int, dict[str, float]] = {port: {} for port in apps}
        self.lock = threading.Lock()
        self.t0 = 0.0
        self.threads = [threading.Thread(target=self._poll, args=(port,), daemon=True)
                        for port, n in apps.items() for _ in range(n)]

    def _done(self, port: int) -> bool:
        """Every instance on `port` has answered."""
        with self.lock:
            return len(self.seen[port]) >= self.apps[port]

    def _poll(self, port: int) -> None:
        """One polling thread of `port`."""
        deadline = self.t0 + self.timeout
        while not self._done(port) and time.monotonic() < deadline:
            try:
                status, body = bl.http_get(port, timeout=2.0)
            except OSError:
                time.sleep(0.005)
                continue
            now = time.monotonic()
            if status == 200:
                with self.lock:
                    self.seen[port].setdefault(body.strip(), now - self.t0)

    def start(self) -> None:
        """Starts polling; times count from now."""
        self.t0 = time.monotonic()
        for t in self.threads:
            t.start()

    def result(self) -> dict:
        """Waits for the threads (bounded); seconds until every instance had answered, per port and overall."""
        for t in self.threads:
            t.join(timeout=max(0.0, self.t0 + self.timeout + 3 - time.monotonic()))
        missing = {port: self.apps[port] - len(s) for port, s in self.seen.items() if len(s) < self.apps[port]}
        if missing:
            raise RuntimeError(f"instances never answered within {self.timeout:g} s: {missing} (port: missing)")
        per_port = {port: round(max(s.values()), 3) for port, s in self.seen.items()}
        return {"all_answered_s": max(per_port.values()), "per_port_s": per_port}


# --------------------------------------------------------------------------- scenarios


def platform_apps(kind: str, ports: list[int]) -> list[dict]:
    """The platform's six apps of hello.js, in the side's keys, each on its port."""
    apps = []
    for (name, mode, n), port in zip(PLATFORM, ports):
        if kind == "supd":
            apps.append({"name": name, "script": "node", "args": [str(HELLO_JS)], "exec_mode": mode, "instances": n,
                         "port": port, "wait_ready": True, "listen_timeout": "10s"})
        else:
            apps.append({"name": name, "script": str(HELLO_JS), "exec_mode": mode, "instances": n,
                         "wait_ready": True, "listen_timeout": 10000, "env": {"PORT": str(port)}})
    return apps


def platform(kind: str, tools: dict, args, started: list) -> dict:
    """The platform (6 apps, 10 processes): start to every instance answering HTTP, RSS, `list`."""
    with bl.daemon(kind, "platform", tools, started) as (side, pid):
        ports = [bl.free_port() for _ in PLATFORM]
        f = side.write(platform_apps(kind, ports))
        probe = HttpProbe({port: n for (_, _, n), port in zip(PLATFORM, ports)}, args.timeout)
        probe.start()
        cmd = subprocess.Popen([*map(str, side.cli), "start", str(f)], env=side.env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            out, err = cmd.communicate(timeout=args.timeout)
        except subprocess.TimeoutExpired:
            cmd.kill()
            cmd.communicate()
            raise RuntimeError(f"the start command did not return within {args.timeout:g} s")
        returned = time.monotonic() - probe.t0
        if cmd.returncode != 0:
            raise RuntimeError(f"start failed (exit {cmd.returncode}): {(err or out).strip()[-500:]}")
        answered = probe.result()
        total = sum(n for _, _, n in PLATFORM)
        side.wait_online(None, total, args.timeout, interval=0.2)
        res = {"start_returned_s": round(returned, 3), **answered, **rss_after(pid, args.settle),
               **list_latencies(side, args.list_samples, total)}
        log(f"{kind} platform: every instance answered {res['all_answered_s']:.2f} s after the start command "
            f"(which returned after {returned:.2f} s); RSS {res['rss_mib']} MiB; list {res['list_median_s'] * 1000:.0f} ms")
        return res


def fleet(kind: str, n: int, tools: dict, args, started: list) -> dict:
    """N idle `sleep` apps of one instance each: the daemon's RSS and `list` latency."""
    with bl.daemon(kind, f"fleet{n}", tools, started) as (side, pid):
        f = bl.write_exec_apps(side, [{"name": f"s{i}", "script": "sleep", "args": [TOKEN], "instances": 1}
                                      for i in range(n)])
        t = time.monotonic()
        side.ctl("start", f, timeout=args.timeout, quiet=True)
        side.wait_online(None, n, args.timeout, interval=0.25)
        res = {"online_s": round(time.monotonic() - t, 2), **rss_after(pid, args.settle),
               **list_latencies(side, args.list_samples, n)}
        log(f"{kind} fleet of {n}: RSS {res['rss_mib']} MiB, list {res['list_median_s'] * 1000:.0f} ms")
        return res


class Stamps:
    """The crash child's stamp file: one `<start ns> <pid>` line per start."""

    def __init__(self, path: Path):
        self.path = path

    def lines(self) -> list[tuple[int, int]]:
        """Every complete line so far."""
        try:
            text = self.path.read_text()
        except OSError:
            return []
        return [(int(a), int(b)) for a, b in (ln.split() for ln in text.splitlines(keepends=True)
                                                if ln.endswith("\n") and len(ln.split()) == 2)]

    def wait_count(self, count: int, timeout: float) -> tuple[int, int]:
        """Waits (polled every 1 ms) until the file has `count` lines; the last one."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            got = self.lines()
            if len(got) >= count:
                return got[count - 1]
            time.sleep(0.001)
        raise RuntimeError(f"no start #{count} in {self.path} within {timeout:g} s")


def crash_app(stamps: Path) -> dict:
    """The crash child, the same exec on both sides, with the restart settings of the test."""
    return {"name": "crashling", "script": PY, "args": ["-S", str(bl.ROOT / "crashling.py"), str(stamps), TOKEN],
            "instances": 1, "autorestart": True, "restart_delay": 0, "min_uptime": 1000, "max_restarts": 1000}


def kill_and_wait(stamps: Stamps, count: int, uptime: float, timeout: float) -> float:
    """Lets start #count live `uptime` s, SIGKILLs it and waits for start #count+1;
    the latency in ms (next start's stamp - kill time)."""
    t_start, pid = stamps.wait_count(count, timeout)
    time.sleep(max(0.0, uptime - (time.time_ns() - t_start) / 1e9))
    t_kill = time.time_ns()
    os.kill(pid, signal.SIGKILL)
    t_next, pid_next = stamps.wait_count(count + 1, timeout)
    if pid_next == pid:
        raise RuntimeError(f"start #{count + 1} has the killed pid {pid}")
    return (t_next - t_kill) / 1e6


def crash(kind: str, tools: dict, args, started: list) -> dict:
    """Crash-to-respawn latency under `kind`: --crash-reps kills of a stable run."""
    with bl.daemon(kind, "crash", tools, started) as (side, _pid):
        stamps = Stamps(side.root / "stamps")
        side.ctl("start", bl.write_exec_apps(side, [crash_app(stamps.path)]), timeout=args.timeout, quiet=True)
        lat = [kill_and_wait(stamps, i + 1, args.crash_uptime, args.timeout) for i in range(args.crash_reps)]
        restarts = sum(r["restarts"] for r in side.rows() if r["name"] == "crashling")
        res = {"latency_ms": [round(x, 2) for x in lat], "latency_median_ms": round(bl.median(lat), 2),
               "restarts_counted": restarts}
        log(f"{kind} crash: respawn latency median {res['latency_median_ms']} ms ({res['latency_ms']}); "
            f"restarts counted {restarts}")
        return res


def crash_floor(args) -> dict:
    """The floor: the same program started directly by this script, from spawn to its stamp."""
    stamps = Stamps(bl.ROOT / "floor-stamps")
    lat = []
    for i in range(args.crash_reps):
        t0 = time.time_ns()
        p = subprocess.Popen([PY, "-S", str(bl.ROOT / "crashling.py"), str(stamps.path), TOKEN])
        try:
            lat.append((stamps.wait_count(i + 1, args.timeout)[0] - t0) / 1e6)
        finally:
            p.kill()
            p.wait(timeout=10)
    return {"latency_ms": [round(x, 2) for x in lat], "latency_median_ms": round(bl.median(lat), 2)}


# --------------------------------------------------------------------------- report


PLATFORM_MEASURES = (  # key, label, unit, scale, format
    ("all_answered_s", "start command to every instance answering HTTP", "s", 1, "{:.2f}"),
    ("start_returned_s", "start command returned", "s", 1, "{:.2f}"),
    ("rss_mib", "daemon RSS, all online", "MiB", 1, "{:.1f}"),
    ("list_median_s", "`list` median", "ms", 1000, "{:.0f}"),
)
FLEET_MEASURES = (
    ("rss_mib", "daemon RSS, all online", "MiB", 1, "{:.1f}"),
    ("list_median_s", "`list` median", "ms", 1000, "{:.0f}"),
    ("online_s", "start command to all online (`list`)", "s", 1, "{:.2f}"),
)
CRASH_MEASURES = (("latency_median_ms", "kill to the new process's first statement, median", "ms", 1, "{:.1f}"),)


def markdown(report: dict) -> str:
    """The report as Markdown."""
    m, a = report["machine"], report["args"]
    lines = [f"{bl.machine_line(m)}; CPU busy before the run: {report['cpu_busy_before_pct']}%. "
             f"{a['rounds']} round(s), alternating which supervisor goes first; each cell: median (min-max) "
             "of the rounds."]
    res = report["results"]
    if res.get("platform"):
        lines += ["", "**The platform**, 6 apps and 10 processes (hello.js, `wait_ready`; api-gateway ×4 and user-service ×2 in cluster "
                      "mode, four single fork apps, each on its own port; the daemon already up):", ""]
        lines += bl.side_table(res["platform"], PLATFORM_MEASURES, "measure")
    for n, runs in (res.get("fleet") or {}).items():
        lines += ["", f"**{n} idle apps** (`sleep`, one instance each, fork mode):", ""]
        lines += bl.side_table(runs, FLEET_MEASURES, "measure")
    if res.get("crash"):
        floor = bl.median([r.get("latency_median_ms") for r in res.get("crash_floor", [])])
        lines += ["", f"**Crash to respawn** (SIGKILL of a run {a['crash_uptime']:g} s old, {a['crash_reps']} kills "
                      "per round; `restart_delay = 0`; the child is `python3 -S`, whose start-up is included: started "
                      f"directly by this script it takes {bl.fmt(floor, '{:.1f}')} ms to its first statement):", ""]
        lines += bl.side_table(res["crash"], CRASH_MEASURES, "measure")
    return bl.tail_md(report, lines, [e.splitlines()[0][:200] for e in failures(res)])


# --------------------------------------------------------------------------- main


def main() -> int:
    """Parses the options, runs the rounds, prints the report; non-zero on failure."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    bl.common_args(ap)
    ap.add_argument("--scenarios", type=lambda s: [x for x in s.split(",") if x], default=list(SCENARIOS),
                    help="platform, fleet, crash (default all)")
    ap.add_argument("--counts", type=lambda s: [int(x) for x in s.split(",")], default=[8, 200],
                    help="apps in the fleet scenario (default 8,200)")
    bl.rounds_args(ap, settle=3.0)
    ap.add_argument("--crash-reps", type=int, default=10, help="kills per round and side (default 10)")
    ap.add_argument("--crash-uptime", type=float, default=1.5,
                    help="age of the run when it is killed, above min_uptime (default 1.5 s)")
    ap.add_argument("--timeout", type=float, default=120.0, help="bound on every start and wait (default 120 s)")
    ap.add_argument("--quick", action="store_true", help="smoke run: 8 and 20 apps, 1 round, 3 list calls, 3 kills")
    args = ap.parse_args()
    if bl.rendered_saved(args, markdown):
        return 0
    if args.quick:
        args.counts, args.rounds, args.list_samples, args.crash_reps, args.settle = [8, 20], 1, 3, 3, 1.0
    if unknown := set(args.scenarios) - set(SCENARIOS):
        ap.error(f"unknown scenario(s): {', '.join(sorted(unknown))}")

    t_start, quiet = bl.begin("lifecycle", args)
    sides = [s for s in SIDES if args.only in (None, s)]
    started: list[int] = []
    results: dict = {}
    tools: dict = {}
    left: list[str] = []
    with bl.bench_root("lifecycle-") as tmp_root:
        (tmp_root / "crashling.py").write_text(CRASHLING_PY)
        try:
            if "supd" in sides:
                tools["supd"] = bl.ensure_supd(args.bin_dir)
            if "pm2" in sides:
                tools["pm2"] = bl.pm2_install(args.pm2_prefix, tmp_root)
            if "crash" in args.scenarios:
                results["crash_floor"] = [bl.attempt(crash_floor, args)]
            for rnd in range(args.rounds):
                order = sides if rnd % 2 == 0 else sides[::-1]
                log(f"round {rnd + 1}/{args.rounds}: {' then '.join(order)}")
                for kind in order:
                    if "platform" in args.scenarios:
                        results.setdefault("platform", {}).setdefault(kind, []).append(
                            bl.attempt(platform, kind, tools, args, started))
                    for n in args.counts if "fleet" in args.scenarios else ():
                        results.setdefault("fleet", {}).setdefault(str(n), {}).setdefault(kind, []).append(
                            bl.attempt(fleet, kind, n, tools, args, started))
                    if "crash" in args.scenarios:
                        results.setdefault("crash", {}).setdefault(kind, []).append(
                            bl.attempt(crash, kind, tools, args, started))
        finally:
            left = bl.finish(started, (TOKEN, tmp_root))

    report = bl.make_report(args, bl.machine(tools["pm2"].version() if "pm2" in tools else None), t_start, quiet,
                            left, results=results)
    bl.emit(report, args, markdown)
    return 1 if left or failures(results) else 0


def failures(results: dict) -> list[str]:
    """The errors of every run, as `scenario side: error`."""
    out = []
    for scen, group in results.items():
        if scen == "crash_floor":
            out += [f"floor: {r['error']}" for r in group if "error" in r]
            continue
        sides = group.values() if scen == "fleet" else [group]
        for by_side in sides:
            out += [f"{scen} {kind}: {r['error']}" for kind, rs in by_side.items() for r in rs if "error" in r]
    return out


if __name__ == "__main__":
    sys.exit(main())
