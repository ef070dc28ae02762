#!/usr/bin/env python3
"""Keep-alive clients through reloads, a scale-down and a daemon update: supd vs PM2.

    python3 tests/bench/keepalive.py                 # every case, 3 rounds
    python3 tests/bench/keepalive.py --cases express:reload --rounds 1

wrk -t2 -c32 (keep-alive connections; wrk never retries a request, as load balancers and
most HTTP clients do not for a request they sent) runs against one app while the
supervisor operates on it; counted: wrk's socket errors (connect, read, write, timeout)
and its non-2xx/3xx answers. A supervisor whose instances close a kept-alive connection
under a request the client has already sent shows here, and only here: a fresh connection
per request, or a client that resends, hides it.

Apps (each on a free port of 127.0.0.1, a fresh daemon home per run):
  gateway  the platform's api-gateway x4 (target/release/api-gateway: fd 3, READY=1), with
           the keys of ecosystem/ecosystem.toml. supd only: PM2's cluster mode runs Node
           scripts, and four forked copies of a program that binds its own port collide.
  express  unmodified Express x2 (tests/fixtures/realapps/express-app.js: app.listen(PORT)),
           no readiness key on either side
  fastify  unmodified Fastify x2 (fastify-app.js: fastify.listen({port})), no readiness key
Operations, each inside one wrk run (1 s of load before, until every instance is back
online and nothing is stopping, then 1 s more):
  reload   3 reloads in a row (`supctl reload` / `pm2 reload`)
  scale    started with 8 instances, scaled to 4 (`supctl scale` / `pm2 scale`)
  update   the supervisor's own upgrade in place (`supctl update`: the daemon re-executes
           itself, apps untouched; `pm2 update`: PM2 saves, kills its daemon and
           resurrects every app)

Express and Fastify come from the same install cache as tests/realapps.rs
(target/real-apps/node, `npm ci` of the pinned fixtures, once; benchlib.real_apps_node).
Needs wrk, node, npm; builds target/release when missing. Python 3.11 standard library.
Exit status non-zero when a run failed, supd lost a request, or a process was left.
"""

from __future__ import annotations

import argparse
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchlib as bl  # noqa: E402 - the shared helpers, next to this script
from benchlib import log  # noqa: E402
from cluster import parse_wrk, wrk_version  # noqa: E402

SIDES = ("supd", "pm2")
OPS = ("reload", "scale", "update")
RELOADS = 3


@dataclass(frozen=True)
class App:
    """One app of the benchmark: its name, how many instances it runs (and starts with
    before a scale-down), and whether PM2 can run it."""

    key: str
    name: str
    instances: int
    pm2: bool
    script: str | None = None  # the fixture, for the Node apps


APPS = {
    "gateway": App("gateway", "api-gateway", 4, pm2=False),
    "express": App("express", "express", 2, pm2=True, script="express-app.js"),
    "fastify": App("fastify", "fastify", 2, pm2=True, script="fastify-app.js"),
}
SCALE_FROM, SCALE_TO = 8, 4

# What no operation may leave a supervisor at for long: every wait is bounded.
ONLINE_LIMIT = 60.0


def parse_cases(text: str) -> list[tuple[str, str]]:
    """`app:op,app:op` (or `all`) into [(app, op)], checked against APPS and OPS."""
    if text == "all":
        return [(a, o) for a in APPS for o in OPS]
    cases = []
    for item in filter(None, text.split(",")):
        app, _, op = item.partition(":")
        if app not in APPS or op not in OPS:
            raise argparse.ArgumentTypeError(f"{item!r}: want APP:OP with APP in {list(APPS)} and OP in {list(OPS)}")
        cases.append((app, op))
    return cases


# --------------------------------------------------------------------------- starting the apps


def start(side: bl.Supervisor, app: App, instances: int, port: int, tools: dict) -> None:
    """Starts `app` with `instances` instances on `port` and waits until every one answers."""
    if isinstance(side, bl.Supd):
        if app.script is None:
            spec = {"name": app.name, "script": str(tools["supd"] / "api-gateway"), "exec_mode": "cluster",
                    "instances": instances, "port": port, "kill_timeout": "5s", "wait_ready": True,
                    "listen_timeout": "10s"}
        else:  # no readiness key: what `supctl start node -i N --port P -- app.js` gives
            spec = {"name": app.name, "script": "node", "args": [str(bl.REAL_APPS / app.script)],
                    "exec_mode": "cluster", "instances": instances, "port": port,
                    "env": {"NODE_PATH": str(tools["node_modules"])}}
        side.ctl("start", side.write([spec]), timeout=120)
    else:
        env = dict(side.env, PORT=str(port), NODE_PATH=str(tools["node_modules"]))
        side.ctl("start", bl.REAL_APPS / app.script, "-i", str(instances), "--name", app.name, env=env, timeout=120)
    settle(side, app, instances)
    bl.wait_http(port, instances)


def settle(side: bl.Supervisor, app: App, instances: int) -> None:
    """Waits until `app` has exactly `instances` rows, all online: nothing launching or
    stopping (an old instance still draining could lose requests after wrk stopped)."""
    def done():
        """True when settled, else what the table shows."""
        rows = [r for r in side.rows() if r["name"] == app.name]
        states = sorted(r["status"] for r in rows)
        return states == ["online"] * instances or f"{states}"
    bl.wait_until(done, ONLINE_LIMIT, f"{instances} online instance(s) of {app.name} ({side.name})", interval=0.2)


# --------------------------------------------------------------------------- one run


def operate(side: bl.Supervisor, app: App, op: str) -> list[dict]:
    """The operation's commands, in order: [{cmd, rc, seconds, stderr}]."""
    if op == "reload":
        cmds = [["reload", app.name]] * RELOADS
    elif op == "scale":
        cmds = [["scale", app.name, str(SCALE_TO)]]
    else:
        cmds = [["update"]]
    done = []
    for args in cmds:
        t = time.monotonic()
        p = side.ctl(*args, timeout=180, check=False)
        done.append({"cmd": " ".join(args), "rc": p.returncode, "seconds": round(time.monotonic() - t, 2),
                     "stderr": p.stderr.strip().splitlines()[-1:] if p.returncode else []})
        log(f"  {side.name} {' '.join(args)}: exit {p.returncode} in {done[-1]['seconds']} s")
    return done


def one_run(kind: str, app: App, op: str, tools: dict, args, started: list) -> dict:
    """A fresh daemon, the app, wrk in the background, the operation, wrk stopped (SIGINT:
    it prints its summary). What wrk counted and what the operation did."""
    before_n = SCALE_FROM if op == "scale" else app.instances
    after_n = SCALE_TO if op == "scale" else app.instances
    with bl.daemon(kind, f"{app.key}-{op}", tools, started) as (side, _pid):
        port = bl.free_port()
        start(side, app, before_n, port, tools)
        pids_before = sorted(side.pids(app.name))
        length = args.duration or args.bound
        cmd = ["wrk", f"-t{args.threads}", f"-c{args.conns}", f"-d{length:g}s", "--latency",
               f"http://127.0.0.1:{port}/"]
        log(f"{kind} {app.name} x{before_n} {op}: $ {' '.join(cmd)}")
        wrk = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        t0 = time.monotonic()
        try:
            time.sleep(args.before)
            ops = operate(side, app, op)
            settle(side, app, after_n)
            time.sleep(args.after)
            settled = time.monotonic() - t0
            if not args.duration:
                wrk.send_signal(signal.SIGINT)  # wrk prints its summary and exits
            out, err = wrk.communicate(timeout=length + 30)
        finally:
            if wrk.poll() is None:
                wrk.kill()
                wrk.wait()
        res = parse_wrk(out, err)
        pids_after = sorted(side.pids(app.name))
    res.update(side=kind, app=app.key, op=op, instances=[before_n, after_n], ops=ops,
               wrk_seconds=round(time.monotonic() - t0, 1), settled_s=round(settled, 1),
               overran=settled >= length, failed=res["errors"] + res["non_2xx"],
               pids_before=pids_before, pids_after=pids_after,
               replaced=bool(pids_after) and not set(pids_before) & set(pids_after),
               ops_ok=all(o["rc"] == 0 for o in ops))
    log(f"  {kind} {app.name} {op}: {res['requests']} requests, socket errors {res['socket_errors'] or 0}, "
        f"non-2xx {res['non_2xx']} in {res['wrk_seconds']} s")
    return res


# --------------------------------------------------------------------------- report


def failures(runs: list[dict]) -> list[str]:
    """What makes a run of supd fail: a run that did not complete, a lost request, an
    operation that failed, an instance not replaced, wrk stopped by its bound."""
    out = []
    for r in runs:
        if r.get("side") == "pm2":
            continue
        what = f"{r.get('app')}:{r.get('op')}"
        if "error" in r:
            out.append(f"{what}: {r['error'].splitlines()[0][:200]}")
        elif r["failed"] or not r["ops_ok"] or r["overran"] or not pids_as_expected(r):
            out.append(f"{what}: {r['errors']} socket errors {r['socket_errors']}, {r['non_2xx']} non-2xx, "
                       f"operations {'ok' if r['ops_ok'] else 'failed'}, pids {r['pids_before']} -> "
                       f"{r['pids_after']}{', wrk stopped before the app settled' if r['overran'] else ''}")
    return out


def pids_as_expected(r: dict) -> bool:
    """A reload replaced every process; supd's update kept every one (it re-executes the
    daemon, not the apps); a scale-down kept the survivors."""
    before, after = set(r["pids_before"]), set(r["pids_after"])
    if r["op"] == "reload":
        return r["replaced"]
    if r["op"] == "update" and r["side"] == "supd":
        return before == after
    return after <= before if r["side"] == "supd" else bool(after)


def op_label(op: str) -> str:
    """The operation as the table names it."""
    return {"reload": f"{RELOADS} reloads", "scale": f"scale {SCALE_FROM} → {SCALE_TO}",
            "update": "daemon update (`supctl update` / `pm2 update`)"}[op]


def markdown(report: dict) -> str:
    """The report as Markdown: one row per case and side, every round."""
    a = report["args"]
    lines = [
        f"{bl.machine_line(report['machine'])}, {report['machine'].get('wrk')}.",
        "",
        f"`wrk -t{a['threads']} -c{a['conns']}` (keep-alive, never retries; its default 2 s timeout): "
        f"{a['before']:g} s of load, then the operation, until every instance is online and none is stopping, then "
        + (f"load until the run's fixed length of {a['duration']:g} s (the same for both supervisors)."
           if a.get("duration") else f"{a['after']:g} s more (each run as long as its operation takes).")
        + " Node apps have no readiness key.",
        "",
        "| app | operation | supervisor | round | requests | socket errors (connect / read / write / timeout) | "
        "non-2xx | failed | operation time | wrk run |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in report["runs"]:
        app = APPS[r["app"]]
        label = f"{app.name} x{app.instances}" if r["op"] != "scale" else app.name
        side = "supd" if r["side"] == "supd" else "PM2"
        if "error" in r:
            lines.append(f"| {label} | {op_label(r['op'])} | {side} | {r['round']} | failed: "
                         f"{r['error'].splitlines()[0][:100]} | | | | | |")
            continue
        se = r["socket_errors"] or {}
        errs = " / ".join(str(se.get(k, 0)) for k in ("connect", "read", "write", "timeout"))
        ops = sum(o["seconds"] for o in r["ops"])
        bad = "" if r["ops_ok"] else " (an operation failed)"
        lines.append(f"| {label} | {op_label(r['op'])} | {side} | {r['round']} | {r['requests']:,} | {errs} | "
                     f"{r['non_2xx']} | **{r['failed']}** | {ops:.1f} s{bad} | {r['wrk_seconds']:.1f} s |")
    for app in APPS.values():
        if not app.pm2 and any(r["app"] == app.key for r in report["runs"]):
            lines += ["", f"PM2 does not run {app.name} x{app.instances}: its cluster mode runs Node scripts "
                          "only, and forked copies of a program that binds its own port collide (EADDRINUSE)."]
    fails = failures(report["runs"])
    return bl.tail_md(report, lines, fails)


# --------------------------------------------------------------------------- main


def main() -> int:
    """Parses the options, runs every case on each side round by round, prints the report."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    bl.common_args(ap)
    ap.add_argument("--cases", type=parse_cases, default=parse_cases("all"),
                    help="APP:OP pairs, comma-separated (APP: gateway, express, fastify; OP: reload, scale, "
                         "update; default all)")
    ap.add_argument("--rounds", type=int, default=3, help="rounds, alternating which side goes first (default 3)")
    ap.add_argument("--threads", type=int, default=2, help="wrk threads (default 2)")
    ap.add_argument("--conns", type=int, default=32, help="wrk connections (default 32)")
    ap.add_argument("--before", type=float, default=1.0, help="seconds of load before the operation (default 1)")
    ap.add_argument("--after", type=float, default=1.0,
                    help="seconds of load after the app has settled (default 1)")
    ap.add_argument("--duration", type=float,
                    help="every wrk run lasts exactly this long, whatever the supervisor and the operation (the "
                         "operation and the settling must end inside it); default: each run lasts until its "
                         "operation is done and the app settled, plus --after")
    ap.add_argument("--bound", type=float, default=120.0,
                    help="without --duration, wrk's own -d: a run that reaches it failed (default 120 s)")
    ap.add_argument("--pm2-cases", type=parse_cases,
                    help="the cases PM2 runs (default: --cases; the gateway is never run under PM2)")
    args = ap.parse_args()
    if bl.rendered_saved(args, markdown):
        return 0

    t_start, quiet = bl.begin("keepalive", args)
    bl.ensure_wrk()
    sides = [s for s in SIDES if args.only in (None, s)]
    started: list[int] = []
    runs: list[dict] = []
    tools: dict = {}
    left: list[str] = []
    with bl.bench_root("keepalive-bench-") as tmp_root:
        try:
            if "supd" in sides:
                tools["supd"] = bl.ensure_supd(args.bin_dir)
            if "pm2" in sides:
                tools["pm2"] = bl.pm2_install(args.pm2_prefix, tmp_root)
            if any(APPS[a].script for a, _ in args.cases):
                tools["node_modules"] = bl.real_apps_node()
            for rnd in range(args.rounds):
                order = sides if rnd % 2 == 0 else sides[::-1]
                for app_key, op in args.cases:
                    app = APPS[app_key]
                    for kind in order:
                        if kind == "pm2" and not (app.pm2 and (app_key, op) in (args.pm2_cases or args.cases)):
                            continue
                        res = bl.attempt(one_run, kind, app, op, tools, args, started)
                        runs.append({"side": kind, "app": app_key, "op": op, **res, "round": rnd + 1})
        finally:
            left = bl.finish(started, (tmp_root,))
    report = bl.make_report(args, bl.machine(tools["pm2"].version() if "pm2" in tools else None, wrk=wrk_version()),
                            t_start, quiet, left, runs=runs)
    report["args"]["cases"] = [f"{a}:{o}" for a, o in args.cases]
    bl.emit(report, args, markdown)
    return 1 if left or failures(runs) or any("error" in r for r in runs) else 0


if __name__ == "__main__":
    sys.exit(main())
