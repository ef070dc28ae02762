#!/usr/bin/env python3
"""Cluster-mode benchmark: supd vs PM2, side by side, same app (tests/bench/hello.js).

Measures, in one run:
  1. Throughput (wrk -t2 -c32 -d10s, keep-alive and `Connection: close`) through
       - supd cluster mode, 2 instances (daemon-owned socket on fd 3)
       - supd fork mode, 1 instance
       - PM2 cluster mode, 2 instances
  2. Failed requests and total time of 5 reloads under load, `supctl reload hello` vs
     `pm2 reload hello`, once with a fresh connection per request (`Connection: close`)
     and once with keep-alive connections (--reload-kinds), --reload-rounds times,
     alternating which supervisor goes first.

Setup done here: installs wrk with apt-get if missing, installs pm2 with npm into a
temporary folder (never globally), builds supd with `cargo build --release` if the
binaries are missing. Every supervisor is killed at the end (try/finally) and
a scan of /proc checks that none of our processes is left.

The helpers (commands bounded in time, the supd and PM2 homes, the pm2 install, HTTP on
127.0.0.1, the noise figure) come from benchlib.py. Python 3.11 standard library only.
Output: a Markdown table on stdout (--json for JSON). Progress goes to stderr.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import http.client
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchlib as bl  # noqa: E402 - the shared helpers, next to this script
from benchlib import HELLO_JS, log, run  # noqa: E402

APP = "hello"
RELOAD_KINDS = ("close", "keepalive")


# --------------------------------------------------------------------------- wrk


_WRK_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3}


def _ms(text: str) -> float:
    """A wrk duration (`512.00us`, `1.2ms`, `2s`) in milliseconds."""
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
    return float(m.group(1)) * _WRK_UNITS[m.group(2)] if m else float("nan")


def wrk(port: int, *, close: bool, duration: int, threads: int, conns: int, quiet=False) -> dict:
    """One wrk run against 127.0.0.1:port; req/s, requests, errors and latency, parsed."""
    cmd = ["wrk", f"-t{threads}", f"-c{conns}", f"-d{duration}s", "--latency"]
    if close:
        cmd += ["-H", "Connection: close"]
    cmd.append(f"http://127.0.0.1:{port}/")
    p = run(cmd, timeout=duration + 30, quiet=quiet)
    res = parse_wrk(p.stdout, p.stderr)
    res["cmd"] = " ".join(cmd)
    return res


def parse_wrk(out: str, err: str = "") -> dict:
    """What a wrk run printed: req/s, requests, socket errors (by kind, and their sum),
    non-2xx/3xx answers, mean and p99 latency. wrk never retries a request, so every
    error it counts is a request a client lost. Raises when there is no summary."""
    res = {"rps": None, "requests": None, "errors": 0, "socket_errors": {}, "non_2xx": 0,
           "latency_avg_ms": None, "latency_p99_ms": None}
    if m := re.search(r"Requests/sec:\s+([\d.]+)", out):
        res["rps"] = float(m.group(1))
    if m := re.search(r"(\d+) requests in", out):
        res["requests"] = int(m.group(1))
    if m := re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out):
        res["non_2xx"] = int(m.group(1))
    if m := re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out):
        res["socket_errors"] = {k: int(v) for k, v in zip(("connect", "read", "write", "timeout"), m.groups())}
        res["errors"] = sum(res["socket_errors"].values())
    if m := re.search(r"Latency\s+(\S+)", out):
        res["latency_avg_ms"] = _ms(m.group(1))
    if m := re.search(r"^\s+99%\s+(\S+)", out, re.M):
        res["latency_p99_ms"] = _ms(m.group(1))
    if res["rps"] is None:
        raise RuntimeError(f"could not parse wrk output:\n{out}\n{err}")
    return res


def throughput(deployments: list, args) -> dict:
    """wrk through every live deployment, interleaved round by round so that background
    noise on the machine falls on every scenario alike. Returns {key: {kind: median run}}."""
    runs: dict = {d.key: {"keepalive": [], "close": []} for d in deployments}
    for d in deployments:  # warm-up (JIT, connection tables), not reported
        wrk(d.port, close=False, duration=args.warmup, threads=args.threads, conns=args.conns, quiet=True)
    for rnd in range(args.rounds):
        for label, close in (("keepalive", False), ("close", True)):
            for d in deployments:
                # A run during which other processes took more than --max-noise percent of the
                # CPU is measured again (at most --retries times); the least noisy one is kept.
                attempts = []
                for _ in range(1 + args.retries):
                    roots = [os.getpid(), *d.daemon_pids()]
                    before = bl.cpu_snapshot(roots)
                    r = wrk(d.port, close=close, duration=args.duration, threads=args.threads,
                            conns=args.conns, quiet=True)
                    r["others_cpu_pct"] = bl.others_pct(before, bl.cpu_snapshot(roots))
                    log(f"round {rnd + 1}/{args.rounds} {d.key} {label}: {r['rps']:.0f} req/s "
                        f"(non-2xx {r['non_2xx']}, socket errors {r['errors']}, "
                        f"other processes {r['others_cpu_pct']}% CPU)")
                    attempts.append(r)
                    time.sleep(1)
                    if r["others_cpu_pct"] <= args.max_noise:
                        break
                runs[d.key][label].extend(attempts)
    out: dict = {}
    for key, kinds in runs.items():
        out[key] = {}
        for label, rs in kinds.items():
            # Reported: the median (by req/s) of the quiet runs (other processes at most
            # --max-noise % of the CPU); when no run was quiet, the median of all, flagged.
            quiet = [r for r in rs if r["others_cpu_pct"] <= args.max_noise]
            pool = quiet or rs
            med = dict(sorted(pool, key=lambda r: r["rps"])[(len(pool) - 1) // 2])  # lower median
            med["quiet_runs"] = len(quiet)
            med["runs"] = [{"rps": r["rps"], "others_cpu_pct": r["others_cpu_pct"]} for r in rs]
            med["errors"] = sum(r["errors"] for r in rs)
            med["non_2xx"] = sum(r["non_2xx"] for r in rs)
            out[key][label] = med
    return out


# --------------------------------------------------------------------------- load during reloads


class ClosedUnderRequest(ConnectionError):
    """The server closed a reused keep-alive connection under a request the client had
    already sent. Counted as a failure, as wrk and clients that do not retry see it; a
    client that resends once on a new connection would have hidden it."""


class Load:
    """N threads, each looping GET / until stop() (bounded by max_seconds).

    `close`: a new connection per request (`Connection: close`). `keepalive`: each thread
    keeps one connection and sends its requests on it, opening a new one only after the
    server closed it (`Connection: close`) or a request failed. A request is never sent
    twice: a reused connection closed before the answer is a failed request, counted
    among the connection errors and also as `hidden_by_resend` (what a client that resends
    once, as this one did before issue 16, would not have seen)."""

    def __init__(self, port: int, threads: int, max_seconds: float, request_timeout: float, keepalive: bool = False):
        self.port = port
        self.n = threads
        self.max_seconds = max_seconds
        self.request_timeout = request_timeout
        self.keepalive = keepalive
        self.stop_ev = threading.Event()
        self.results = [None] * threads
        self.threads = [threading.Thread(target=self._loop, args=(i,), daemon=True) for i in range(threads)]
        self.t0 = 0.0

    @staticmethod
    def _keepalive_get(conn: http.client.HTTPConnection):
        """GET / on the thread's connection (a new one when the last was closed); (status,
        body). Raises ClosedUnderRequest when a reused connection closed under the request."""
        reused = conn.sock is not None
        try:
            conn.request("GET", "/")
            r = conn.getresponse()
            return r.status, r.read().decode("utf-8", "replace")
        except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError) as e:
            conn.close()
            if reused:
                raise ClosedUnderRequest(str(e)) from e
            raise

    def _loop(self, idx: int) -> None:
        """One load thread: requests until stopped, counting answers, errors and instances."""
        ok = non200 = hidden = 0
        errors: collections.Counter = collections.Counter()
        per_instance: collections.Counter = collections.Counter()
        samples = []  # (seconds since load start when the request was sent, kind, detail)
        deadline = self.t0 + self.max_seconds
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=self.request_timeout)
        while not self.stop_ev.is_set() and time.monotonic() < deadline:
            sent = round(time.monotonic() - self.t0, 3)
            try:
                if self.keepalive:
                    status, body = self._keepalive_get(conn)
                else:
                    status, body = bl.http_get(self.port, timeout=self.request_timeout)
                if status == 200:
                    ok += 1
                    per_instance[body.strip()] += 1
                else:
                    non200 += 1
                    if len(samples) < 20:
                        samples.append((sent, "status", status))
            except (OSError, http.client.HTTPException) as e:
                conn.close()
                errors[type(e).__name__] += 1
                hidden += isinstance(e, ClosedUnderRequest)
                if len(samples) < 20:
                    samples.append((sent, type(e).__name__, str(e)))
        conn.close()
        self.results[idx] = (ok, non200, errors, per_instance, samples, hidden)

    def start(self) -> None:
        """Starts the threads."""
        self.t0 = time.monotonic()
        for t in self.threads:
            t.start()

    def stop(self) -> dict:
        """Stops the threads (bounded) and adds up what they counted."""
        self.stop_ev.set()
        for t in self.threads:
            t.join(timeout=10)
        ok = non200 = hidden = 0
        errors: collections.Counter = collections.Counter()
        per_instance: collections.Counter = collections.Counter()
        samples = []
        for r in self.results:
            if r is None:
                continue
            ok += r[0]
            non200 += r[1]
            errors.update(r[2])
            per_instance.update(r[3])
            samples.extend(r[4])
            hidden += r[5]
        elapsed = time.monotonic() - self.t0
        return {
            "load": "keepalive" if self.keepalive else "close",
            "requests": ok + non200 + sum(errors.values()),
            "ok": ok,
            "non_200": non200,
            "connection_errors": sum(errors.values()),
            "errors_by_kind": dict(errors),
            "hidden_by_resend": hidden,
            "per_instance": dict(sorted(per_instance.items())),
            "first_failures": sorted(samples)[:20],
            "seconds": round(elapsed, 2),
            "rps": round((ok + non200 + sum(errors.values())) / elapsed, 1) if elapsed else None,
        }


def reloads_under_load(d: "Deployment", args, keepalive: bool) -> dict:
    """Runs `reload hello` args.reloads times in sequence while load runs (fresh connections,
    or keep-alive ones).

    A reload counts as replacing the instances only when none of the pids from before it
    is still serving after it."""
    budget = 2 + args.reloads * (args.reload_timeout + args.reload_pause) + 2
    load = Load(d.port, args.load_threads, max_seconds=budget + args.request_timeout,
                request_timeout=args.request_timeout, keepalive=keepalive)
    load.start()
    reloads = []
    try:
        time.sleep(1.0)
        for i in range(args.reloads):
            before = _safe(d.pids)
            t = time.monotonic()
            started_at = round(t - load.t0, 3)
            try:
                p = run(d.reload_cmd, env=d.sup.env, timeout=args.reload_timeout, check=False)
                rc, err = p.returncode, (p.stderr.strip().splitlines() or [""])[-1]
            except subprocess.TimeoutExpired:
                rc, err = None, f"timed out after {args.reload_timeout}s"
            dt = time.monotonic() - t
            after = _safe(d.pids)
            replaced = bool(before) and bool(after) and not (set(before) & set(after))
            reloads.append({"rc": rc, "started_at": started_at, "seconds": round(dt, 3), "stderr": err if rc != 0 else "",
                            "pids_before": before, "pids_after": after, "replaced": replaced})
            log(f"  reload {i + 1}/{args.reloads}: exit {rc} in {dt:.2f}s, pids {before} -> {after} "
                f"{err if rc != 0 else ''}")
            time.sleep(args.reload_pause)
        time.sleep(1.0)
    finally:
        res = load.stop()
    res["reloads"] = reloads
    res["reloads_ok"] = sum(1 for r in reloads if r["rc"] == 0 and r["replaced"])
    res["total_reload_s"] = round(sum(r["seconds"] for r in reloads), 3)
    log(f"  load ({res['load']}): {res['requests']} requests, {res['non_200']} non-200, "
        f"{res['connection_errors']} connection errors {res['errors_by_kind'] or ''}, "
        f"{res['hidden_by_resend']} of them closed under a sent request (a resend would have hidden them)")
    return res


def _safe(f):
    """f()'s pids, sorted, or [] when they cannot be read."""
    try:
        return sorted(f())
    except Exception as e:  # noqa: BLE001
        log(f"  could not read pids: {e}")
        return []


# --------------------------------------------------------------------------- deployments


class Deployment:
    """hello.js on a free port of 127.0.0.1 under one daemon with its own home: supd in
    cluster or fork mode, or PM2 in cluster mode (`pm2 start hello.js -i N`)."""

    def __init__(self, key: str, sup: bl.Supervisor, mode: str, instances: int):
        self.key, self.sup, self.mode, self.instances = key, sup, mode, instances
        self.port = bl.free_port()
        self.reload_cmd = [*sup.cli, "reload", APP]

    def pids(self) -> list[int]:
        """The pids of the app's serving instances: an old instance still draining after
        the reload command returned (`stopping`, no longer accepting) does not count."""
        return [r["pid"] for r in self.sup.rows()
                if r["name"] == APP and r["pid"] and r["status"] not in ("stopping", "stopped")]

    def daemon_pids(self) -> list[int]:
        """The daemon's pid, when it is known."""
        try:
            return [self.sup.daemon_pid()]
        except (OSError, ValueError):
            return []

    def start(self):
        """Starts the app, waits until every instance is online and answers HTTP."""
        log(f"{self.sup.name} {self.mode} x{self.instances} on port {self.port} (home {self.sup.home})")
        if isinstance(self.sup, bl.Supd):
            f = self.sup.write([{"name": APP, "script": "node", "args": [str(HELLO_JS)], "exec_mode": self.mode,
                                 "instances": self.instances, "port": self.port, "wait_ready": True,
                                 "listen_timeout": "5s"}])
            self.sup.ctl("start", f, timeout=60)
            self.sup.wait_online(APP, self.instances, 30, interval=0.2)
        else:
            self.sup.ctl("start", HELLO_JS, "-i", str(self.instances), "--name", APP, "--wait-ready",
                         "--listen-timeout", "5000", env=dict(self.sup.env, PORT=str(self.port)), timeout=90)
            self.sup.wait_online(APP, self.instances, 30, interval=0.5)
        bl.wait_http(self.port, self.instances)

    def close(self):
        """Kills the daemon and its apps."""
        self.sup.kill()


# --------------------------------------------------------------------------- report


def fmt_rps(x):
    """Requests per second with thousands separators, or n/a."""
    return f"{x:,.0f}" if isinstance(x, (int, float)) else "n/a"


def reload_runs(s: dict) -> dict:
    """{load kind: [runs]} of a deployment (a report of the older shape had one `reload`)."""
    return s.get("reloads") or ({"close": [s["reload"]]} if "reload" in s else {})


def hidden_by_resend(r: dict) -> str:
    """The failures a resending client would have hidden; a report from before issue 16
    counted resent requests as `retried` and not as failures: shown as such."""
    return str(r["hidden_by_resend"]) if "hidden_by_resend" in r else f"{r.get('retried', 0)} resent, not counted"


def markdown(report: dict) -> str:
    """The report as Markdown."""
    m = report["machine"]
    a = report["args"]
    sc = report["scenarios"]
    lines = [
        f"{bl.machine_line(m)}, {m['wrk']}; CPU busy before the run: {report.get('cpu_busy_before_pct', '?')}%.",
        "",
        f"Throughput: {a['rounds']} round(s) of `wrk -t{a['threads']} -c{a['conns']} -d{a['duration']}s http://127.0.0.1:PORT/` "
        "(and with `-H 'Connection: close'`), after a "
        f"{a['warmup']} s warm-up; the three deployments run side by side and the wrk runs are "
        "interleaved; wrk runs on the same machine.",
        "",
        "| scenario | keep-alive req/s | keep-alive p99 | `Connection: close` req/s | close p99 | wrk errors (ka / close) |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    names = {"supd_cluster": "supd cluster, 2 instances", "supd_fork": "supd fork, 1 instance",
             "pm2_cluster": "PM2 cluster, 2 instances"}

    def rps(key, kind):
        """The reported req/s of a deployment and kind, or None."""
        s = sc.get(key)
        if not s or "throughput" not in s:
            return None
        return s["throughput"][kind]["rps"]

    for key, label in names.items():
        s = sc.get(key)
        if not s or "throughput" not in s:
            err = (s or {}).get("error", "not run")
            lines.append(f"| {label} | failed | | | | {err.splitlines()[0][:80] if err else ''} |")
            continue
        ka, cl = s["throughput"]["keepalive"], s["throughput"]["close"]
        def dag(r):
            """† when no run was quiet."""
            return "" if r.get("quiet_runs", 1) else " †"
        lines.append(
            f"| {label} | {fmt_rps(ka['rps'])}{dag(ka)} | {ka['latency_p99_ms']:.1f} ms | {fmt_rps(cl['rps'])}{dag(cl)} | "
            f"{cl['latency_p99_ms']:.1f} ms | {ka['errors'] + ka['non_2xx']} / {cl['errors'] + cl['non_2xx']} |"
        )
    lines.append(
        f"| **ratio supd cluster / PM2 cluster** | **{bl.ratio(rps('supd_cluster', 'keepalive'), rps('pm2_cluster', 'keepalive'))}** | "
        f"| **{bl.ratio(rps('supd_cluster', 'close'), rps('pm2_cluster', 'close'))}** | | |"
    )
    lines.append(
        f"| ratio supd fork / PM2 cluster | {bl.ratio(rps('supd_fork', 'keepalive'), rps('pm2_cluster', 'keepalive'))} | "
        f"| {bl.ratio(rps('supd_fork', 'close'), rps('pm2_cluster', 'close'))} | | |"
    )
    spread = []
    for key, label in names.items():
        t = (sc.get(key) or {}).get("throughput")
        if t:
            def fmt(runs):
                """Every run's req/s with its noise."""
                return " / ".join(f"{fmt_rps(r['rps'])} ({r['others_cpu_pct']:g}%)" for r in runs)
            spread.append(f"- {label}: keep-alive {fmt(t['keepalive']['runs'])}; close {fmt(t['close']['runs'])}")
    if spread:
        lines += ["", f"Every wrk run in order, req/s (CPU taken by other processes meanwhile). Reported above: "
                      f"the median of the runs at most {a.get('max_noise', '?'):g}% disturbed; "
                      "a figure marked † had no such run and is the median of all.", ""] + spread
    kinds = {"close": "fresh connection per request (`Connection: close`)", "keepalive": "keep-alive connections"}
    lines += [
        "",
        f"Reloads under load: {a['reloads']} reloads in sequence ({a['reload_pause']} s apart) while "
        f"{a['load_threads']} Python threads send `GET /`, with a fresh connection per request or on a keep-alive "
        f"connection each (no answer within {a['request_timeout']:g} s counts as a connection error; a keep-alive "
        "request whose reused connection the server closed before answering is a connection error too, never "
        "resent; 'hidden by a resend' counts those, which a client that resends once on a new connection would "
        "not have seen). Total reload time = the reload commands' wall time, added up.",
        "",
        "| supervisor | load | round | reloads done (exit 0, every pid replaced) | total reload time | requests | 200 | non-200 | connection errors | of which hidden by a resend | answers per instance |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for key, label, cmd in (("supd_cluster", "supd", "supctl reload hello"), ("pm2_cluster", "PM2", "pm2 reload hello")):
        s = sc.get(key) or {}
        runs = reload_runs(s)
        if not runs:
            lines.append(f"| {label} (`{cmd}`) | | | failed | | | | | | | {(s.get('error') or 'not run').splitlines()[0][:80]} |")
            continue
        for kind, rs in runs.items():
            for rnd, r in enumerate(rs, 1):
                if "error" in r:
                    lines.append(f"| {label} (`{cmd}`) | {kinds[kind]} | {rnd} | failed | | | | | | | {r['error'].splitlines()[0][:80]} |")
                    continue
                total = r.get("total_reload_s", sum(x["seconds"] for x in r["reloads"]))
                errs = ", ".join(f"{k} {v}" for k, v in r["errors_by_kind"].items())
                per = ", ".join(f"{k.replace('hello from ', '#')}: {v}" for k, v in r["per_instance"].items())
                lines.append(
                    f"| {label} (`{cmd}`) | {kinds[kind]} | {rnd} | {r['reloads_ok']}/{len(r['reloads'])} | {total:.2f} s | "
                    f"{r['requests']:,} | {r['ok']:,} | {r['non_200']} | {r['connection_errors']}{f' ({errs})' if errs else ''} | "
                    f"{hidden_by_resend(r)} | {per} |")
    return bl.tail_md(report, lines) if "leftovers" in report else "\n".join(lines)


def wrk_version() -> str | None:
    """`wrk 4.1.0` (from `wrk --version`), or None without wrk."""
    if not shutil.which("wrk"):
        return None
    p = run(["wrk", "--version"], check=False, quiet=True, timeout=10)
    text = (p.stdout + p.stderr).strip()
    m = re.search(r"wrk (?:\S+/)?(\d[\w.+~-]*)", text)
    return f"wrk {m.group(1)}" if m else text.splitlines()[0] if text else "wrk ?"


# --------------------------------------------------------------------------- main


def main() -> int:
    """Parses the options, runs the deployments and measurements, prints the report."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    bl.common_args(ap)
    ap.add_argument("--duration", type=int, default=10, help="seconds per wrk run (default 10)")
    ap.add_argument("--warmup", type=int, default=2, help="seconds of unreported wrk warm-up per scenario (default 2)")
    ap.add_argument("--threads", type=int, default=2, help="wrk threads (default 2)")
    ap.add_argument("--conns", type=int, default=32, help="wrk connections (default 32)")
    ap.add_argument("--reloads", type=int, default=5, help="reloads under load (default 5)")
    ap.add_argument("--reload-pause", type=float, default=1.0, help="seconds between reloads (default 1)")
    ap.add_argument("--reload-timeout", type=float, default=30.0, help="bound on one reload command (default 30 s)")
    ap.add_argument("--load-threads", type=int, default=8, help="load threads during reloads (default 8)")
    ap.add_argument("--request-timeout", type=float, default=5.0,
                    help="a load request with no answer after this many seconds counts as failed (default 5)")
    ap.add_argument("--reload-kinds", type=lambda s: [k for k in s.split(",") if k], default=list(RELOAD_KINDS),
                    help="load during reloads: close (fresh connection per request), keepalive, both "
                         "(default close,keepalive; '' skips the reloads)")
    ap.add_argument("--reload-rounds", type=int, default=1,
                    help="runs of the reload test per load kind, alternating which supervisor goes first (default 1)")
    ap.add_argument("--rounds", type=int, default=1,
                    help="rounds of wrk runs over every scenario and kind; the median of the quiet runs is reported (default 1)")
    ap.add_argument("--skip-throughput", action="store_true",
                    help="no wrk runs: the reloads only (and so no supd fork deployment)")
    ap.add_argument("--no-fork", action="store_true", help="no supd fork deployment (cluster against cluster only)")
    ap.add_argument("--max-noise", type=float, default=15.0,
                    help="a wrk run during which other processes used more than this percent of the CPU "
                         "is run again (default 15)")
    ap.add_argument("--retries", type=int, default=2, help="at most this many re-runs of a noisy wrk run (default 2)")
    args = ap.parse_args()
    if bl.rendered_saved(args, markdown):
        return 0
    if unknown := set(args.reload_kinds) - set(RELOAD_KINDS):
        ap.error(f"unknown reload kind(s): {', '.join(sorted(unknown))}")

    bl.set_name("bench")
    if not args.skip_throughput:
        bl.ensure_wrk()
    if not HELLO_JS.exists():
        raise SystemExit(f"{HELLO_JS} is missing")

    scenarios: dict = {}
    pm2_version = None
    started, quiet_before = bl.begin("bench", args)
    live = []
    pids: list[int] = []
    left: list[str] = []
    with bl.bench_root("cluster-bench-") as tmp_root, contextlib.ExitStack() as stack:
        stack.callback(lambda: left.extend(bl.finish(pids, (tmp_root,))))
        wanted = []
        if args.only != "pm2":
            try:
                bin_dir = bl.ensure_supd(args.bin_dir)
                fork = not (args.no_fork or args.skip_throughput)  # a fork instance is not reloaded
                for key, mode, n in (("supd_cluster", "cluster", 2), ("supd_fork", "fork", 1))[:2 if fork else 1]:
                    wanted.append(Deployment(key, bl.Supd(bin_dir, tmp_root / mode, pids), mode, n))
            except Exception as e:  # noqa: BLE001 - recorded in the report, never faked
                log(f"supd unavailable: {e}")
                scenarios["supd_cluster"] = scenarios["supd_fork"] = {"error": str(e)}
        if args.only != "supd":
            try:
                inst = bl.pm2_install(args.pm2_prefix, tmp_root)
                pm2_version = inst.version()
                wanted.append(Deployment("pm2_cluster", bl.Pm2(inst, tmp_root / "pm2c", pids), "cluster", 2))
            except Exception as e:  # noqa: BLE001
                log(f"PM2 unavailable: {e}")
                scenarios["pm2_cluster"] = {"error": str(e)}
        for d in wanted:
            stack.callback(d.close)
            try:
                d.start()
                live.append(d)
            except Exception as e:  # noqa: BLE001
                log(f"{d.key} failed to start: {e}")
                scenarios[d.key] = {"error": str(e)}

        for d in live:
            scenarios[d.key] = {"port": d.port}
        if live and not args.skip_throughput:
            try:
                for key, res in throughput(live, args).items():
                    scenarios[key]["throughput"] = res
            except Exception as e:  # noqa: BLE001
                log(f"throughput failed: {e}")
                for d in live:
                    scenarios[d.key].setdefault("error", f"throughput: {e}")
        # supd fork has one instance: its reload is stop-then-start by design, not compared.
        reloadable = [d for d in live if d.key != "supd_fork"]
        for rnd in range(args.reload_rounds):
            for kind in args.reload_kinds:
                for d in reloadable if rnd % 2 == 0 else reloadable[::-1]:
                    log(f"{d.key}: {args.reloads} reloads under load ({kind}), round {rnd + 1}/{args.reload_rounds}")
                    res = bl.attempt(reloads_under_load, d, args, kind == "keepalive")
                    scenarios[d.key].setdefault("reloads", {}).setdefault(kind, []).append(res)
                    if "error" in res:
                        scenarios[d.key].setdefault("error", f"reload: {res['error']}")

    report = bl.make_report(args, bl.machine(pm2_version, wrk=wrk_version()), started, quiet_before, left,
                            scenarios=scenarios)
    bl.emit(report, args, markdown)
    return 1 if left or any("error" in s for s in scenarios.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
