#!/usr/bin/env python3
"""What one change costs the daemon when it supervises many apps (issue 18).

Starts N apps (`sleep`, one instance each) under one daemon, then times a `supctl reload`
(or `restart`) of one of them, several times: the command's latency, the daemon's CPU time
during it (all threads, from /proc/PID/task/*/schedstat, in ns) and its system calls
(`perf stat -e raw_syscalls:sys_enter` attached to the daemon, when perf is there). Each
build given by `--bin-dir` (repeatable) runs in turn on the same machine, so two builds
compare side by side. Before issue 18 the state file write after the command asked every app
actor for a round trip; after it, the file is written from the published views.

    python3 tests/bench/persist.py --bin-dir /tmp/old --bin-dir target/release --apps 1000
"""

from __future__ import annotations

import argparse
import shutil
import signal
import subprocess
import time
from pathlib import Path

import benchlib as b


def cpu_ns(pid: int) -> int:
    """The CPU time of every thread of `pid` so far, in ns."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            total += int((task / "schedstat").read_text().split()[0])
        except (OSError, IndexError, ValueError):
            pass  # a thread that ended meanwhile
    return total


def measure(supd: b.Supd, pid: int, command: list[str], perf: str | None) -> dict:
    """One timed command: latency (ms), the daemon's CPU (ms) and syscalls meanwhile."""
    counter = None
    if perf:
        counter = subprocess.Popen([perf, "stat", "-x,", "-e", "raw_syscalls:sys_enter", "-p", str(pid)],
                                   stderr=subprocess.PIPE, text=True)
        time.sleep(0.3)  # attached before the command starts
    cpu = cpu_ns(pid)
    start = time.monotonic()
    supd.ctl(*command, timeout=120, quiet=True)
    latency = time.monotonic() - start
    cpu = cpu_ns(pid) - cpu
    syscalls = None
    if counter:
        counter.send_signal(signal.SIGINT)
        _, err = counter.communicate(timeout=30)
        for line in err.splitlines():
            if "raw_syscalls:sys_enter" in line and line.split(",")[0].isdigit():
                syscalls = int(line.split(",")[0])
    return {"latency_ms": latency * 1000, "cpu_ms": cpu / 1e6, "syscalls": syscalls}


def one_build(bin_dir: Path, args, root: Path, started: list, perf: str | None) -> list[dict]:
    """Every run of one build, each a dict of `measure`."""
    supd = b.Supd(bin_dir, root / bin_dir.as_posix().strip("/").replace("/", "_"), started)
    supd.root.mkdir(parents=True, exist_ok=True)
    apps = [{"name": f"app-{i:04d}", "script": "sleep", "args": [b.TOKEN]} for i in range(args.apps)]
    pid = supd.boot()
    try:
        supd.ctl("start", str(supd.write(apps)), timeout=600, quiet=True)
        supd.wait_online(None, args.apps, timeout=600, interval=2)
        target = f"app-{args.apps // 2:04d}"
        runs = []
        for i in range(args.runs):
            # Syscalls are counted in every other run, so perf's cost is out of half of them.
            run = measure(supd, pid, [args.command, target], perf if i % 2 else None)
            b.log(f"{bin_dir}: {run}")
            runs.append(run)
        return runs
    finally:
        supd.kill(timeout=600)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bin-dir", type=Path, action="append", required=True,
                    help="a folder with supd and supctl (repeat to compare builds)")
    ap.add_argument("--apps", type=int, default=1000)
    ap.add_argument("--runs", type=int, default=6)
    ap.add_argument("--command", default="reload", choices=["reload", "restart"])
    args = ap.parse_args()
    b.set_name("persist")
    perf = shutil.which("perf")
    started: list = []
    results = {}
    with b.bench_root("supd-persist-") as root:
        try:
            for bin_dir in args.bin_dir:
                # A build given twice runs twice (interleaved with the others): one row.
                results.setdefault(str(bin_dir), []).extend(
                    one_build(bin_dir.resolve(), args, root, started, perf))
        finally:
            left = b.finish(started, [b.TOKEN, str(root)])
    print(f"{args.command} of one app among {args.apps}: median (min-max) of the runs; syscalls"
          " counted in every other run\n")
    print("| build | runs | latency ms | daemon CPU ms | daemon syscalls |")
    print("|---|---:|---:|---:|---:|")

    def cell(values: list, spec: str) -> str:
        s = b.summary(values)
        return "n/a" if not s else f"{spec.format(s['median'])} ({spec.format(s['min'])}-{spec.format(s['max'])})"

    for bin_dir, runs in results.items():
        print(f"| {bin_dir} | {len(runs)} | {cell([r['latency_ms'] for r in runs], '{:.0f}')} "
              f"| {cell([r['cpu_ms'] for r in runs], '{:.0f}')} "
              f"| {cell([r['syscalls'] for r in runs], '{:.0f}')} |")
    if left:
        print(f"\nleftovers: {left}")


if __name__ == "__main__":
    main()
