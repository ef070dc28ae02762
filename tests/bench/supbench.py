#!/usr/bin/env python3
"""supbench: every supd-vs-PM2 benchmark in one command, one summary table.

    python3 tests/bench/supbench.py            # full run (about 31 minutes on 2 cores)
    python3 tests/bench/supbench.py --quick    # smoke run for CI (under two minutes)

Runs each scenario against supd and against PM2 on the same machine, in one run, through
the scripts next to this one (each as a subprocess with `--json-out`, bounded in time):

  platform  lifecycle.py: the platform (hello.js; 6 apps, 10 processes) — start to every instance
            answering HTTP, the daemon's RSS
  fleet     lifecycle.py: 8 and 200 idle apps — the daemon's RSS, `list` latency
  crash     lifecycle.py: crash-to-respawn latency (timestamps written by the child)
  logs      logs.py: log throughput and the daemon's CPU seconds per GB, lines checked
  reload    cluster.py: failed requests and total time of 5 reloads of a 2-instance
            cluster app under load, `Connection: close` and keep-alive
  keepalive keepalive.py: requests wrk (keep-alive, never retries) lost through 3 reloads, a
            scale from 8 to 4 and the daemon's update: api-gateway x4, unmodified Express
            and Fastify x2 with no readiness keys
  cluster   cluster.py: requests per second through cluster mode (wrk, same Node app)
  memlimit  monitor.py: memory-limit reaction time
  idle      monitor.py: the daemon's CPU while it supervises 8 and 200 idle processes
  scale     scale.py: 1,000 apps — start all, list, stop all

Inside each scenario the scripts alternate supd and PM2 (A/B) over --rounds repetitions.
It builds supd with `cargo build --release` when target/release lacks the binaries (or
takes --bin-dir), installs pm2 once with npm into a temporary folder (or reuses
--pm2-prefix), gives every script a private temporary folder (every SUPD_HOME and
PM2_HOME lives in it, PM2 makes no network call, only 127.0.0.1 is loaded), and at the
end kills and reports any process that still names that folder.

Prints one Markdown table — scenario | supd median (min-max) | PM2 median (min-max) |
supd/PM2 — with the machine description and the exact command; --json-out writes all the
JSON it collected. Exit status: non-zero only when the harness failed — a scenario that
crashed or overran its time bound, a supd run that failed or lost a log line or a
request or left a memory-limit cycle unrestarted, or a process left behind. PM2's own losses and failures are reported, not
failures.

Python 3.11 standard library only.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shlex
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchlib as bl  # noqa: E402 - the shared helpers, next to this script
from benchlib import HERE, log  # noqa: E402
from cluster import wrk_version  # noqa: E402
from monitor import missed_cycles  # noqa: E402


# The keep-alive cases of a quick run: every app through reloads, the scale-down and the
# daemon update once each, and PM2 through one scale-down (about 40 s in all; the full run
# does every app through every operation on both sides).
QUICK_KEEPALIVE = "gateway:reload,express:reload,fastify:reload,express:scale,gateway:update"


@dataclass
class Scenario:
    """One scenario: the script that measures it, its options (full run, --quick), how
    long it may take at most (seconds, full / quick), and what the summary takes from it."""

    name: str
    script: str
    full: list[str]
    quick: list[str]
    bound: tuple[float, float]
    rounds: str | None = "--rounds"  # the script's option for --rounds, if it has one
    summarize: object = None  # report -> (rows, problems)


# --------------------------------------------------------------------------- summaries


@dataclass
class Row:
    """One line of the summary: what, the unit, each side's samples (or a text)."""

    label: str
    unit: str
    supd: list
    pm2: list
    spec: str = "{:.2f}"
    supd_text: str | None = None
    pm2_text: str | None = None


def runs_of(by_side: dict, side: str) -> list[dict]:
    """The runs of one side that did not fail."""
    return [r for r in by_side.get(side, []) if "error" not in r]


def side_errors(by_side: dict, what: str) -> list[tuple[str, str]]:
    """(side, text) for every failed run of a {side: [runs]} group."""
    return [(side, f"{what}: {r['error'].splitlines()[0][:200]}") for side, rs in by_side.items() for r in rs
            if "error" in r]


def per_run(by_side: dict, key: str, scale: float = 1.0) -> tuple[list, list]:
    """(supd's, PM2's) value of `key` in each run."""
    return tuple([r[key] * scale for r in runs_of(by_side, s) if isinstance(r.get(key), (int, float))]
                 for s in ("supd", "pm2"))


def pooled(by_side: dict, key: str, scale: float = 1.0) -> tuple[list, list]:
    """(supd's, PM2's) samples of the list `key`, all runs pooled."""
    return tuple([x * scale for r in runs_of(by_side, s) for x in r.get(key, [])] for s in ("supd", "pm2"))


def sum_lifecycle(rep: dict, wanted: str) -> tuple[list[Row], list]:
    """Rows of lifecycle.py's report for one of its scenarios."""
    res, rows, problems = rep.get("results", {}), [], []
    if wanted == "platform":
        g = res.get("platform", {})
        rows.append(Row("platform (4+2 cluster, 4 fork: 10 processes): start command → every instance "
                        "answering HTTP", "s",
                        *per_run(g, "all_answered_s")))
        rows.append(Row("platform: daemon RSS, all 10 online", "MiB", *per_run(g, "rss_mib"), spec="{:.1f}"))
        problems += side_errors(g, "platform")
    elif wanted == "fleet":
        for n, g in res.get("fleet", {}).items():
            rows.append(Row(f"{n} idle apps: daemon RSS", "MiB", *per_run(g, "rss_mib"), spec="{:.1f}"))
        for n, g in res.get("fleet", {}).items():
            rows.append(Row(f"`list` latency with {n} apps (`list --json` / `jlist`)", "ms",
                            *pooled(g, "list_s", 1000), spec="{:.0f}"))
            problems += side_errors(g, f"fleet {n}")
    else:
        g = res.get("crash", {})
        floor = bl.median([x for r in res.get("crash_floor", []) for x in r.get("latency_ms", [])])
        rows.append(Row("crash → respawn: SIGKILL to the new process's first statement", "ms",
                        *pooled(g, "latency_ms"), spec="{:.1f}"))
        if floor is not None:
            rows[-1].label += f" (`python3 -S` start-up alone: {floor:.1f} ms)"
        problems += side_errors(g, "crash")
        problems += [("harness", f"crash floor: {r['error']}") for r in res.get("crash_floor", []) if "error" in r]
    return rows, problems


def sum_logs(rep: dict) -> tuple[list[Row], list]:
    """Rows of logs.py's report: MB/s and daemon CPU per GB, with and without dates; losses."""
    thr, rows, problems = rep.get("throughput", {}), [], []
    lines = rep.get("args", {}).get("lines", 0)
    direct, cat = (bl.median([r.get("mb_per_s") for r in thr.get(k, []) if "error" not in r])
                   for k in ("direct", "cat"))
    for date, label in (("", "no date prefix"), ("+date", "with `log_date_format`")):
        g = {"supd": thr.get("supd" + date, []), "pm2": thr.get("pm2" + date, [])}
        rows.append(Row(f"log throughput, {label} (direct `> file`: {bl.fmt(direct, '{:.0f}')} MB/s; "
                        f"`| cat > file`: {bl.fmt(cat, '{:.0f}')} MB/s)", "MB/s",
                        *per_run(g, "mb_per_s"), spec="{:.0f}"))
        rows.append(Row(f"daemon CPU per GB of logs, {label}", "s", *per_run(g, "daemon_cpu_s_per_gb")))
        lost = {}
        for side in ("supd", "pm2"):
            for r in g[side]:
                c = r.get("check") or {}
                if "error" in r or r.get("status") != "complete" or not c.get("ok"):
                    what = r.get("error") or (f"{r.get('status')}: {c.get('missing', '?')} lines missing, "
                                              f"{c.get('altered', '?')} altered of {lines:,}")
                    problems.append((side, f"logs {label}: {what.splitlines()[0][:200]}"))
                lost[side] = lost.get(side, 0) + c.get("missing", 0)
        runs = max(len(g["supd"]), len(g["pm2"]))
        rows.append(Row(f"log lines not found intact, {label}: all {runs} run(s) of {lines:,} lines together", "",
                        [lost.get("supd", 0)], [lost.get("pm2", 0)], spec="{:,.0f}"))
    for r in thr.get("direct", []) + thr.get("cat", []):
        if "error" in r or not (r.get("check") or {}).get("ok"):
            problems.append(("harness", f"logs {r.get('kind', 'direct')}: {r.get('error') or r.get('status')}"))
    return rows, problems


def sum_reload(rep: dict) -> tuple[list[Row], list]:
    """Rows of cluster.py's reload test: failed requests and total reload time, per load kind."""
    sc, rows, problems = rep.get("scenarios", {}), [], []
    n = rep.get("args", {}).get("reloads", 5)
    kinds = {"close": "`Connection: close`", "keepalive": "keep-alive"}
    for kind, label in kinds.items():
        g = {side: (sc.get(key, {}).get("reloads", {}) or {}).get(kind, [])
             for side, key in (("supd", "supd_cluster"), ("pm2", "pm2_cluster"))}
        if not any(g.values()):
            continue
        failed = tuple([r["connection_errors"] + r["non_200"] for r in runs_of(g, s)] for s in ("supd", "pm2"))
        rows.append(Row(f"failed requests during {n} reloads of a 2-instance cluster app, {label} load", "",
                        *failed, spec="{:.0f}"))
        if kind == "keepalive":
            rows.append(Row("… of which a client that resends once would have hidden (closed under a sent request)",
                            "", *per_run(g, "hidden_by_resend"), spec="{:.0f}"))
        rows.append(Row(f"total time of the {n} reload commands, {label} load", "s", *per_run(g, "total_reload_s")))
        problems += side_errors(g, f"reload {kind}")
        for side in ("supd", "pm2"):
            for r in runs_of(g, side):
                bad = r["connection_errors"] + r["non_200"]
                if bad or r["reloads_ok"] != len(r["reloads"]):
                    problems.append((side, f"reload {kind}: {bad} failed requests, {r['reloads_ok']}/{len(r['reloads'])} "
                                           f"reloads done {r['errors_by_kind'] or ''}"))
    for key, side in (("supd_cluster", "supd"), ("pm2_cluster", "pm2")):
        if "error" in sc.get(key, {}) and not sc[key].get("reloads"):
            problems.append((side, f"reload: {sc[key]['error'].splitlines()[0][:200]}"))
    return rows, problems


def sum_keepalive(rep: dict) -> tuple[list[Row], list]:
    """Rows of keepalive.py: requests wrk lost (socket errors + non-2xx) per app and
    operation, each side's runs; supd's losses, failed operations and failed runs are
    problems (they fail the run), PM2's are its results."""
    from keepalive import APPS, failures, op_label  # noqa: PLC0415 - the script's own labels
    rows, groups = [], {}
    for r in rep.get("runs", []):
        groups.setdefault((r["app"], r["op"]), {"supd": [], "pm2": []})[r["side"]].append(r)
    for (app_key, op), g in groups.items():
        app = APPS[app_key]
        name = app.name if op == "scale" else f"{app.name} x{app.instances}"
        rows.append(Row(f"keep-alive (wrk -c32, never retries): requests failed through {op_label(op)}, {name}", "",
                        *per_run(g, "failed"), spec="{:.0f}",
                        pm2_text=None if app.pm2 else "n/a (Node cluster only)"))
    problems = [("supd", f"keepalive {f}") for f in failures(rep.get("runs", []))]
    problems += [("pm2", f"keepalive {r['app']}:{r['op']}: {r['error'].splitlines()[0][:200]}")
                 for r in rep.get("runs", []) if r["side"] == "pm2" and "error" in r]
    return rows, problems


def sum_cluster(rep: dict) -> tuple[list[Row], list]:
    """Rows of cluster.py's throughput: req/s of supd cluster x2 and PM2 cluster x2 (quiet runs)."""
    sc, rows, problems = rep.get("scenarios", {}), [], []
    noise = rep.get("args", {}).get("max_noise", 15)
    for kind, label in (("keepalive", "keep-alive"), ("close", "`Connection: close`")):
        vals = []
        for key in ("supd_cluster", "pm2_cluster"):
            runs = ((sc.get(key, {}).get("throughput") or {}).get(kind) or {}).get("runs", [])
            pool = [r for r in runs if r["others_cpu_pct"] <= noise] or runs
            vals.append([r["rps"] for r in pool])
        rows.append(Row(f"req/s through cluster mode, 2 instances, {label} (wrk -c32)", "req/s", *vals,
                        spec="{:,.0f}"))
    for key, side in (("supd_cluster", "supd"), ("supd_fork", "supd"), ("pm2_cluster", "pm2")):
        s = sc.get(key, {})
        if "error" in s:
            problems.append((side, f"cluster {key}: {s['error'].splitlines()[0][:200]}"))
        for kind, t in (s.get("throughput") or {}).items():
            if t.get("errors") or t.get("non_2xx"):
                problems.append((side, f"cluster {key} {kind}: {t['errors']} socket errors, {t['non_2xx']} non-2xx"))
    return rows, problems


def sum_memlimit(rep: dict) -> tuple[list[Row], list]:
    """Rows of monitor.py's hog: reaction time. A cycle not restarted in time is shown as
    such and is a problem of its side (for supd, a failure of the run)."""
    hog, problems = rep.get("hog", {}), []
    bound = rep.get("args", {}).get("hog_timeout", 90)
    vals, texts = {}, {}
    for side in ("supd", "pm2"):
        h = hog.get(side) or {}
        if "error" in h:
            problems.append((side, f"memlimit: {h['error'].splitlines()[0][:200]}"))
        cycles = h.get("cycles", [])
        vals[side] = [c["reaction_ms"] / 1000 for c in cycles if "reaction_ms" in c]
        missed = missed_cycles(h, rep.get("args", {}))
        if missed:
            problems.append((side, f"memlimit: {missed}"))
        if any(c.get("timed_out") for c in cycles):
            texts[side] = f"> {bound:g} s (not restarted)" + (f"; others {bl.fmt(bl.median(vals[side]))} s" if vals[side] else "")
    return [Row("memory-limit reaction: crossing 150M → the next run's first line", "s", vals.get("supd", []),
                vals.get("pm2", []), supd_text=texts.get("supd"), pm2_text=texts.get("pm2"))], problems


def sum_idle(rep: dict) -> tuple[list[Row], list]:
    """Rows of monitor.py's daemon cost: CPU % of one core while idle, per count."""
    cost, rows, problems = rep.get("cost", {}), [], []
    for n in rep.get("args", {}).get("counts", []):
        s, p = cost.get(f"supd_{n}") or {}, cost.get(f"pm2_{n}") or {}
        rows.append(Row(f"daemon CPU with {n} idle processes (supd samples every 1 s, PM2 every 30 s)", "%",
                        [s["cpu_pct"]] if "cpu_pct" in s else [], [p["cpu_pct"]] if "cpu_pct" in p else []))
        for side, r in (("supd", s), ("pm2", p)):
            if "error" in r:
                problems.append((side, f"idle {n}: {r['error'].splitlines()[0][:200]}"))
    return rows, problems


def sum_scale(rep: dict) -> tuple[list[Row], list]:
    """Rows of scale.py's N apps: start to all online, `list`, stop all, RSS."""
    n = rep.get("args", {}).get("count", 1000)
    g = rep.get("thousand", {}).get("apps", {})
    rows = [
        Row(f"{n:,} apps: start command → all online", "s", *per_run(g, "online_s")),
        Row(f"{n:,} apps: `list` latency", "ms", *pooled(g, "list_s", 1000), spec="{:.0f}"),
        Row(f"{n:,} apps: `stop all` → no process left", "s", *per_run(g, "stop_gone_s")),
        Row(f"{n:,} apps: daemon RSS", "MiB", *per_run(g, "rss_mib"), spec="{:.1f}"),
    ]
    return rows, side_errors(g, f"scale {n}")


def scenarios(a) -> list[Scenario]:
    """Every scenario with its options for a full run and for --quick."""
    return [
        Scenario("platform", "lifecycle.py", ["--scenarios", "platform"],
                 ["--scenarios", "platform", "--list-samples", "3", "--settle", "0.5"], (900, 90),
                 summarize=lambda rep: sum_lifecycle(rep, "platform")),
        Scenario("fleet", "lifecycle.py", ["--scenarios", "fleet", "--counts", "8,200"],
                 ["--scenarios", "fleet", "--counts", "8,20", "--list-samples", "3", "--settle", "0.5"], (1200, 90),
                 summarize=lambda rep: sum_lifecycle(rep, "fleet")),
        Scenario("crash", "lifecycle.py", ["--scenarios", "crash", "--crash-reps", "10"],
                 ["--scenarios", "crash", "--crash-reps", "2", "--crash-uptime", "1.1"], (900, 90),
                 summarize=lambda rep: sum_lifecycle(rep, "crash")),
        Scenario("logs", "logs.py", ["--skip", "lag", "--skip", "list", "--lines", "3000000"],
                 ["--skip", "lag", "--skip", "list", "--lines", "300000", "--retries", "0", "--run-quiet-wait", "0"],
                 (1200, 120), summarize=sum_logs),
        Scenario("reload", "cluster.py", ["--skip-throughput", "--reloads", "5"],
                 ["--skip-throughput", "--reloads", "2", "--reload-pause", "0.2", "--request-timeout", "2"], (1200, 120),
                 rounds="--reload-rounds", summarize=sum_reload),
        Scenario("keepalive", "keepalive.py", ["--cases", "all"],
                 ["--cases", QUICK_KEEPALIVE, "--pm2-cases", "express:scale", "--after", "0.5"], (2400, 120),
                 summarize=sum_keepalive),
        Scenario("cluster", "cluster.py", ["--reload-kinds", "", "--duration", "10"],
                 ["--reload-kinds", "", "--no-fork", "--duration", "1", "--warmup", "1", "--retries", "0"], (1200, 90),
                 summarize=sum_cluster),
        Scenario("memlimit", "monitor.py", ["--skip", "cost", "--hog-cycles", str(max(3, a.rounds))],
                 ["--skip", "cost", "--hog-cycles", "1", "--hog-timeout", "3", "--hog-cap-mb", "512"], (900, 90),
                 rounds=None, summarize=sum_memlimit),
        Scenario("idle", "monitor.py", ["--skip", "hog", "--counts", "8,200", "--slow-interval", ""],
                 ["--skip", "hog", "--counts", "8", "--window", "1", "--settle", "0.5", "--slow-interval", ""],
                 (900, 90), rounds=None, summarize=sum_idle),
        Scenario("scale", "scale.py", ["--shapes", "apps", "--count", "1000", "--storm-seconds", "0"],
                 ["--shapes", "apps", "--count", "100", "--storm-seconds", "0", "--list-samples", "3",
                  "--settle", "1"], (2400, 120), summarize=sum_scale),
    ]


# --------------------------------------------------------------------------- running the scripts


def run_scenario(sc: Scenario, a, root: Path, common: list[str], details: Path) -> dict:
    """Runs one scenario's script as a subprocess (its own session, TMPDIR = the run's
    folder), bounded in time: SIGINT at the bound (the script's finally blocks clean up),
    SIGKILL 60 s later. Its JSON report, or the error."""
    out = details / f"{sc.name}.json"
    rounds = [sc.rounds, "1" if a.quick else str(a.rounds)] if sc.rounds else []
    cmd = [sys.executable, str(HERE / sc.script), *(sc.quick if a.quick else sc.full), *rounds, *common,
           "--json-out", str(out)]
    bound = a.scenario_timeout or sc.bound[1 if a.quick else 0]
    log(f"{sc.name}: {' '.join(shlex.quote(str(c)) for c in cmd[1:])} (bound {bound:g} s)")
    env = dict(os.environ, TMPDIR=str(root), PYTHONUNBUFFERED="1")
    t = time.monotonic()
    p = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, text=True, start_new_session=True)
    res: dict = {"command": cmd[1:]}
    try:
        stdout, _ = p.communicate(timeout=bound)
    except subprocess.TimeoutExpired:
        log(f"{sc.name}: over its bound of {bound:g} s: SIGINT")
        with contextlib.suppress(ProcessLookupError):
            os.killpg(p.pid, signal.SIGINT)
        try:
            stdout, _ = p.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, signal.SIGKILL)
            stdout, _ = p.communicate(timeout=30)
        res["error"] = f"over its time bound of {bound:g} s"
    res.update(rc=p.returncode, seconds=round(time.monotonic() - t, 1))
    (details / f"{sc.name}.md").write_text(stdout or "")
    try:
        res["report"] = json.loads(out.read_text())
    except (OSError, ValueError) as e:
        res.setdefault("error", f"no JSON report (exit {p.returncode}): {e}")
    log(f"{sc.name}: exit {p.returncode} in {res['seconds']} s" + (f" — {res['error']}" if "error" in res else ""))
    return res


# --------------------------------------------------------------------------- the summary


def cell(values: list, unit: str, spec: str, text: str | None) -> str:
    """median (min-max) unit, or the row's text, or n/a."""
    if text:
        return text
    s = bl.summary(values)
    if not s:
        return "n/a"
    u = f" {unit}" if unit else ""
    if s["n"] == 1 or s["min"] == s["max"]:
        return f"{spec.format(s['median'])}{u}"
    return f"{spec.format(s['median'])}{u} ({spec.format(s['min'])}–{spec.format(s['max'])})"


def table(rows: list[tuple[str, Row]]) -> list[str]:
    """The summary table: scenario | samples | supd | PM2 | supd/PM2."""
    out = ["| scenario | measure | samples (supd / PM2) | supd: median (min–max) | PM2: median (min–max) | supd / PM2 |",
           "|---|---|---:|---:|---:|---:|"]
    for name, r in rows:
        s, p = bl.median(r.supd), bl.median(r.pm2)
        rat = "" if r.supd_text or r.pm2_text else bl.ratio(s, p)
        if rat == "n/a" and s == 0 and p is not None:
            rat = "0" if p else "—"
        out.append(f"| {name} | {r.label} | {len(r.supd)} / {len(r.pm2)} | {cell(r.supd, r.unit, r.spec, r.supd_text)} | "
                   f"{cell(r.pm2, r.unit, r.spec, r.pm2_text)} | {rat} |")
    return out


def markdown(report: dict) -> str:
    """The whole summary: machine, command, table, problems, times."""
    m = report["machine"]
    lines = [
        f"Machine: {m['cpu']}, {m['nproc']} CPUs, {m['memory']} RAM, Linux {m['kernel']}; node {m['node']}, "
        f"pm2 {m['pm2']}, {m.get('wrk') or 'no wrk'}, Python {m['python']}; supd {m['supd_rev']} "
        f"(binaries: {report['bin_dir']}). CPU busy before the run: {report['cpu_busy_before_pct']}%.",
        "",
        f"Command: `{report['command']}` ({'quick' if report['quick'] else 'full'} run, "
        f"{report['rounds']} round(s) per scenario, A/B alternating; total {report['total_seconds'] / 60:.1f} min).",
        "",
    ]
    rows: list[tuple[str, Row]] = []
    for name, res in report["scenarios"].items():
        rows += [(name, r) for r in res.get("rows", [])]
        if "error" in res and not res.get("rows"):
            rows.append((name, Row(f"failed: {res['error'][:120]}", "", [], [])))
    lines += table(rows)
    probs = [f"- {name} ({side}): {text}" for name, res in report["scenarios"].items()
             for side, text in res.get("problems", [])]
    if probs:
        lines += ["", "Reported problems (a supd or harness problem fails the run; PM2's are its own results):", ""]
        lines += probs
    times = ", ".join(f"{name} {res.get('seconds', 0):.0f} s" for name, res in report["scenarios"].items())
    lines += ["", f"Time per scenario: {times}. Left-over processes: "
                  f"{', '.join(report['leftovers']) or 'none'} (every process naming the run's folder)."]
    return "\n".join(lines)


def judge(sc: Scenario, res: dict) -> dict:
    """Adds a scenario's summary rows and problems (from its JSON report) to `res`, and
    what fails the run: its own error, supd's and the harness's problems."""
    if "report" in res:
        try:
            res["rows"], res["problems"] = sc.summarize(res["report"])
        except Exception as e:  # noqa: BLE001 - a report the summary cannot read is a harness failure
            res["rows"], res["problems"] = [], [("harness", f"summary: {e!r}")]
        if res["report"].get("leftovers"):
            res["problems"].append(("harness", f"left over: {res['report']['leftovers']}"))
    res["failed"] = ([res["error"]] if "error" in res else []) + [
        t for side, t in res.get("problems", []) if side in ("supd", "harness")]
    return res


def rerender(path: Path, all_sc: list[Scenario]) -> int:
    """--from-json: the summary of a saved run, recomputed from its scripts' reports."""
    saved = json.loads(path.read_text())
    by_name = {sc.name: sc for sc in all_sc}
    for name, res in saved["scenarios"].items():
        judge(by_name[name], res)
    print(markdown(saved))
    return 0


# --------------------------------------------------------------------------- main


def main() -> int:
    """Parses the options, runs the scenarios, prints the summary; non-zero if the harness failed."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true",
                    help="smoke run: tiny sizes, one round per scenario, under two minutes (figures come from full runs)")
    ap.add_argument("--rounds", type=int, default=3, help="repetitions inside each scenario (default 3; --quick: 1)")
    ap.add_argument("--only", type=lambda s: [x for x in s.split(",") if x],
                    help="run these scenarios only (comma-separated names; default all)")
    ap.add_argument("--bin-dir", type=Path, help="folder holding supd and supctl (default: target/release, built if missing)")
    ap.add_argument("--pm2-prefix", type=Path,
                    help="npm prefix holding pm2, reused (default: pm2 installed into a temporary folder)")
    ap.add_argument("--json-out", type=Path, help="write every scenario's JSON report and the summary here")
    ap.add_argument("--details-dir", type=Path,
                    help="keep each script's own report here (NAME.json, renderable with its --from-json, and NAME.md)")
    ap.add_argument("--wait-quiet", type=float, default=None,
                    help="each script waits up to this long for a quiet machine (default 30 s; --quick: 0)")
    ap.add_argument("--scenario-timeout", type=float, help="bound on every scenario in seconds (default: its own)")
    ap.add_argument("--list", action="store_true", help="list the scenarios and exit")
    ap.add_argument("--from-json", type=Path, help="only print the summary of a run saved with --json-out")
    a = ap.parse_args()
    all_sc = scenarios(a)
    if a.from_json:
        return rerender(a.from_json, all_sc)
    if a.list:
        for sc in all_sc:
            print(f"{sc.name:9} {sc.script} {shlex.join(sc.full)}")
        return 0
    names = [sc.name for sc in all_sc]
    if a.only and (unknown := set(a.only) - set(names)):
        ap.error(f"unknown scenario(s): {', '.join(sorted(unknown))} (known: {', '.join(names)})")
    if a.quick:
        a.rounds = 1
    wait_quiet = a.wait_quiet if a.wait_quiet is not None else (0.0 if a.quick else 30.0)
    chosen = [sc for sc in all_sc if not a.only or sc.name in a.only]

    bl.set_name("supbench")
    t_start = time.monotonic()
    command = " ".join(shlex.quote(x) for x in ["python3", "tests/bench/supbench.py", *sys.argv[1:]])
    results: dict = {}
    failed: list[str] = []
    left: list[str] = []
    pm2_version = bin_dir = quiet = None
    with bl.bench_root("sb-") as root:
        details = a.details_dir.resolve() if a.details_dir else root / "reports"
        details.mkdir(parents=True, exist_ok=True)
        try:
            bin_dir = bl.ensure_supd(a.bin_dir)
            inst = bl.pm2_install(a.pm2_prefix, root)
            pm2_version = inst.version()
            quiet = bl.cpu_busy(1.0)
            common = ["--bin-dir", str(bin_dir), "--pm2-prefix", str(inst.prefix), "--wait-quiet", f"{wait_quiet:g}"]
            for sc in chosen:
                res = judge(sc, run_scenario(sc, a, root, common, details))
                failed += [f"{sc.name}: {t}" for t in res["failed"]]
                results[sc.name] = res
        except Exception as e:  # noqa: BLE001 - the harness could not set up: said, and a failure
            log(f"setup failed: {e}")
            failed.append(f"setup: {e}")
        finally:
            left = bl.finish([], (root,))
        mach = bl.machine(pm2_version, wrk=wrk_version())

    report = {"machine": mach, "command": command, "quick": a.quick, "rounds": a.rounds, "bin_dir": str(bin_dir),
              "cpu_busy_before_pct": quiet, "scenarios": results, "leftovers": left,
              "total_seconds": round(time.monotonic() - t_start, 1)}
    md = markdown(report)
    print(md)
    if a.json_out:
        a.json_out.write_text(json.dumps({**report, "markdown": md, "failed": failed}, indent=2,
                                         default=lambda o: o.__dict__) + "\n")
    if left:
        failed.append(f"left behind: {left}")
    for f in failed:
        log(f"FAILED: {f}")
    log(f"done in {report['total_seconds']} s: " + ("harness failures above" if failed else "ok"))
    bad = sum(1 for res in results.values() if res["failed"])
    print(f"\nsupbench: {len(results) - bad} passed, {bad + (len(chosen) - len(results))} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
