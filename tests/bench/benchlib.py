"""Shared infrastructure of the side-by-side benchmarks in tests/bench (supd vs PM2).

One copy of everything the scripts (cluster.py, monitor.py, logs.py, scale.py,
lifecycle.py, supbench.py) have in common:

- commands run with a time bound (`run`), bounded polling (`wait_until`);
- the supd binaries (`ensure_supd`, built with `cargo build --release` when missing)
  and pm2 installed with npm into a prefix of its own, never globally (`Pm2Install`);
- one daemon each with a private home in a temporary folder: `Supd` (SUPD_HOME) and
  `Pm2` (PM2_HOME, marked as set up so PM2 makes no network call), seen through the same
  operations: boot, write an ecosystem file, rows of the process table, wait until
  online, kill;
- /proc readers (CPU ticks, RSS, threads, the machine's busy time, the CPU taken by
  processes that are not ours) and the wait for a quiet machine;
- HTTP on 127.0.0.1 (a free port, one GET on a fresh connection, wait until answered);
- the leftover check at the end of a run (command lines and environments in /proc,
  SIGKILL by pid);
- median / spread / ratio helpers and the report plumbing (machine description,
  `--json-out`, `--from-json`).

Python 3.11 standard library only. Progress lines go to stderr, tagged with the
script's name (`set_name`).
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import http.client
import json
import os
import platform
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
WORKSPACE = HERE.parent.parent
HELLO_JS = HERE / "hello.js"
CLK_TCK = os.sysconf("SC_CLK_TCK")
MIB = 1024 * 1024
PY = sys.executable  # the same interpreter runs every Python child program

# Every `sleep` (or other throw-away child) a script starts carries this unique argument,
# so that the leftover check at the end finds this run's processes and nothing else (GNU sleep
# accepts a fraction: still about an hour).
TOKEN = f"3600.{os.getpid()}{secrets.randbelow(10**6):06d}"

# Every temporary folder of a run lives under this one (set by `bench_root`): the PM2
# daemon's command line and the child programs' hold it, for the leftover check at the end.
ROOT: Path = Path(tempfile.gettempdir())

_NAME = "bench"


# --------------------------------------------------------------------------- progress and commands


def set_name(name: str) -> None:
    """Tags this script's progress lines (`[name HH:MM:SS] ...`)."""
    global _NAME
    _NAME = name


def log(msg: str) -> None:
    """One progress line on stderr."""
    print(f"[{_NAME} {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


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
    """Calls pred() every `interval` s until it returns something true (returned), for at
    most `timeout` s; then raises with `what` and pred's last answer (or exception)."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = pred()
            if last is True or (last and not isinstance(last, str)):
                return last
        except Exception as e:  # noqa: BLE001 - reported below if it never succeeds
            last = e
        time.sleep(interval)
    raise RuntimeError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


def timed(fn):
    """(seconds fn() took, its result)."""
    t = time.monotonic()
    result = fn()
    return time.monotonic() - t, result


def attempt(fn, *a) -> dict:
    """fn(*a), or the error it raised: recorded in the report, never a made-up figure."""
    try:
        return fn(*a)
    except Exception as e:  # noqa: BLE001
        log(f"failed: {e}")
        return {"error": str(e)}


# --------------------------------------------------------------------------- /proc


def _stat_fields(pid) -> list[str] | None:
    """The fields of /proc/PID/stat after the command name (state first), or None."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rindex(")") + 2:].split()


def proc_ticks(pid: int) -> int | None:
    """utime+stime of a process (all its threads), in clock ticks; None if gone."""
    f = _stat_fields(pid)
    return int(f[11]) + int(f[12]) if f else None


def proc_status(pid: int) -> dict:
    """VmRSS (KiB) and Threads of a process from /proc/PID/status ({} if gone)."""
    out = {}
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            k, _, v = line.partition(":")
            if k in ("VmRSS", "Threads"):
                out[k] = int(v.split()[0])
    return out


def rss_kib(pid: int) -> int | None:
    """VmRSS of a process in KiB, or None if it is gone."""
    return proc_status(pid).get("VmRSS")


def alive(pid: int) -> bool:
    """The process exists and is not a zombie."""
    f = _stat_fields(pid)
    return bool(f) and f[0] != "Z"


def fd_count(pid: int) -> int | None:
    """How many file descriptors a process holds, or None if it is gone."""
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return None


def thread_ticks(pid: int) -> dict:
    """{tid: (thread name, utime+stime ticks)} of every thread of `pid`."""
    out = {}
    with contextlib.suppress(OSError):
        for tid in os.listdir(f"/proc/{pid}/task"):
            with contextlib.suppress(OSError, ValueError):
                text = Path(f"/proc/{pid}/task/{tid}/stat").read_text()
                f = text[text.rindex(")") + 2:].split()
                out[int(tid)] = (text[text.index("(") + 1:text.rindex(")")], int(f[11]) + int(f[12]))
    return out


def thread_delta(a: dict, b: dict) -> dict:
    """CPU seconds per thread name between two thread_ticks() snapshots (threads summed by name)."""
    out: dict[str, float] = {}
    for tid, (name, ticks) in b.items():
        d = ticks - a.get(tid, (name, 0))[1]
        if d > 0:
            out[name] = round(out.get(name, 0) + d / CLK_TCK, 2)
    return dict(sorted(out.items(), key=lambda kv: -kv[1]))


def own_cpu() -> tuple[float, float]:
    """(this script's CPU seconds, its waited-for children's CPU seconds)."""
    t = os.times()
    return t.user + t.system, t.children_user + t.children_system


def machine_snapshot() -> tuple[int, int]:
    """(all ticks, busy ticks) of the whole machine, from /proc/stat (idle and iowait are not busy)."""
    f = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    total = sum(f[:8])
    return total, total - f[3] - f[4]


def busy_pct(a, b) -> float:
    """Percent of all CPUs busy between two machine_snapshot()s."""
    return round(100.0 * (b[1] - a[1]) / max(1, b[0] - a[0]), 1)


def cpu_busy(seconds: float) -> float:
    """Percent of all CPUs busy over `seconds`: how quiet the machine is."""
    a = machine_snapshot()
    time.sleep(seconds)
    return busy_pct(a, machine_snapshot())


def cpu_snapshot(roots) -> tuple[int, int, int]:
    """(all jiffies, busy jiffies) of the machine, and the jiffies of our process trees
    (this script with its reaped children such as wrk, and each daemon we started)."""
    f = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    total = sum(f[:8])
    # irq and softirq time are left out of "busy": loopback TCP is processed in softirq
    # context, which the kernel does not charge to our processes (about 6 % of the machine
    # under wrk -H 'Connection: close' here), and the other work on a build machine is
    # compilers, not network.
    busy = total - f[3] - f[4] - f[5] - f[6]
    children: dict = collections.defaultdict(list)
    cpu: dict = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            st = _stat_fields(d)
            if st:
                children[int(st[1])].append(int(d))
                cpu[int(d)] = int(st[11]) + int(st[12]) + int(st[13]) + int(st[14])
    ours, seen, todo = 0, set(), [r for r in roots if r]
    while todo:
        pid = todo.pop()
        if pid in seen:
            continue
        seen.add(pid)
        ours += cpu.get(pid, 0)
        todo.extend(children.get(pid, []))
    return total, busy, ours


def others_pct(before, after) -> float:
    """Percent of the machine's CPU used by processes that are not ours between two cpu_snapshot()s."""
    total = max(1, after[0] - before[0])
    return round(100.0 * max(0, (after[1] - before[1]) - (after[2] - before[2])) / total, 1)


def wait_quiet(limit: float, below: float, sample: float = 0.5) -> float:
    """Waits up to `limit` seconds for the machine to be less than `below` % busy
    (measured over `sample` s at a time); returns the last figure."""
    deadline = time.monotonic() + limit
    busy = cpu_busy(sample)
    while busy >= below and time.monotonic() < deadline:
        busy = cpu_busy(sample)
    return busy


def wait_for_quiet(args) -> float:
    """Waits (up to --wait-quiet seconds) for the machine to be less than --quiet-below %
    busy with other work; returns the last figure, which the report shows."""
    quiet = cpu_busy(2.0 if args.wait_quiet > 0 else 0.3)
    deadline = time.monotonic() + args.wait_quiet
    while quiet > args.quiet_below and time.monotonic() < deadline:
        log(f"CPU {quiet}% busy with other work; waiting (up to {args.wait_quiet:g} s) for < {args.quiet_below:g}%")
        quiet = cpu_busy(5.0)
    log(f"CPU busy before start (nothing of ours running): {quiet}%")
    return quiet


# --------------------------------------------------------------------------- HTTP on 127.0.0.1


def free_port() -> int:
    """A TCP port that is free on 127.0.0.1 right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_get(port: int, timeout: float = 2.0):
    """One fresh-connection GET /; returns (status, body) or raises."""
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        c.request("GET", "/", headers={"Connection": "close"})
        r = c.getresponse()
        return r.status, r.read().decode("utf-8", "replace")
    finally:
        c.close()


def wait_http(port: int, instances: int, timeout: float = 30.0) -> None:
    """Waits until GET / answers 200, and (best effort) every instance has answered."""
    deadline = time.monotonic() + timeout
    seen: set[str] = set()
    last_err = None
    while time.monotonic() < deadline:
        try:
            status, body = http_get(port)
            if status == 200:
                seen.add(body.strip())
                if len(seen) >= instances:
                    return
        except OSError as e:
            last_err = e
        time.sleep(0.05)
    if not seen:
        raise RuntimeError(f"port {port}: no 200 answer within {timeout}s (last error: {last_err})")
    log(f"warning: only {sorted(seen)} answered on port {port} within {timeout}s")


def ensure_wrk() -> str:
    """The path of wrk; installed with apt-get (as root) when it is missing."""
    path = shutil.which("wrk")
    if path:
        return path
    log("wrk not found: installing it with apt-get")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    run(["apt-get", "update"], env=env, timeout=300)
    run(["apt-get", "install", "-y", "wrk"], env=env, timeout=300)
    path = shutil.which("wrk")
    if not path:
        raise RuntimeError("wrk still missing after apt-get install -y wrk")
    return path


# --------------------------------------------------------------------------- the supervisors


def ensure_supd(bin_dir: Path | None) -> Path:
    """The folder holding supd and supctl: `bin_dir`, or target/release (built with
    `cargo build --release` when the binaries are missing)."""
    if bin_dir is None:
        bin_dir = WORKSPACE / "target" / "release"
        if not ((bin_dir / "supd").exists() and (bin_dir / "supctl").exists()):
            log("supd binaries missing: cargo build --release")
            run(["cargo", "build", "--release"], cwd=WORKSPACE, timeout=1800)
    for b in ("supd", "supctl"):
        if not (bin_dir / b).exists():
            raise RuntimeError(f"{bin_dir / b} does not exist")
    return bin_dir.resolve()


class Pm2Install:
    """pm2 installed with npm into a prefix of its own (never globally)."""

    def __init__(self, prefix: Path):
        self.prefix = prefix
        self.bin = prefix / "node_modules" / ".bin" / "pm2"

    def install(self):
        """`npm install --prefix PREFIX pm2` unless the prefix already holds it."""
        if not self.bin.exists():
            run(["npm", "install", "--prefix", self.prefix, "--no-audit", "--no-fund", "pm2"], timeout=600)
        if not self.bin.exists():
            raise RuntimeError(f"npm install did not produce {self.bin}")

    def version(self) -> str:
        """The installed pm2's version."""
        pj = self.prefix / "node_modules" / "pm2" / "package.json"
        return json.loads(pj.read_text())["version"]


def pm2_install(prefix: Path | None, tmp_root: Path) -> Pm2Install:
    """pm2 in `prefix` (--pm2-prefix, reused when it already holds pm2) or else in a fresh
    folder under the run's temporary root; installed when missing."""
    prefix = prefix.resolve() if prefix else tmp_root / "pm2"
    prefix.mkdir(parents=True, exist_ok=True)
    inst = Pm2Install(prefix)
    inst.install()
    return inst


REAL_APPS = WORKSPACE / "tests" / "fixtures" / "realapps"


def real_apps_node() -> Path:
    """The `node_modules` of Express and Fastify, installed once per target folder into
    `target/real-apps/node` with `npm ci` from the pinned `tests/fixtures/realapps/package.json`
    and `package-lock.json`: the same cache, lock and completion stamp as tests/realapps
    (install.rs), so the tests and the benchmark install it once between them. The lock
    (`flock` on `target/real-apps/node.lock`) makes a parallel installer wait; the stamp
    (the manifests' contents, written last) tells a finished install from a changed pin or
    an interrupted one."""
    import fcntl  # Linux only, as everything here
    manifests = ("package.json", "package-lock.json")
    root = Path(os.environ.get("CARGO_TARGET_DIR") or WORKSPACE / "target") / "real-apps"
    root.mkdir(parents=True, exist_ok=True)
    folder, wanted = root / "node", "".join((REAL_APPS / m).read_text() for m in manifests)
    with open(root / "node.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        stamp = folder / ".installed"
        if not (stamp.exists() and stamp.read_text() == wanted):
            log(f"installing Express and Fastify into {folder} (npm ci, once)")
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir()
            for m in manifests:
                shutil.copy(REAL_APPS / m, folder / m)
            run(["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=folder, timeout=600)
            stamp.write_text(wanted)
    return folder / "node_modules"


def toml_value(v) -> str:
    """A TOML value for a str, int, float, bool or a list of them (JSON's escapes are TOML's)."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    return json.dumps(str(v) if isinstance(v, Path) else v)


def toml_apps(apps: list[dict], daemon: dict | None = None) -> str:
    """An ecosystem.toml: an optional `[daemon]` table, then one `[[apps]]` per dict
    (keys in order; a dict value, such as `env`, becomes the app's sub-table)."""
    text = ""
    if daemon:
        text += "[daemon]\n" + "".join(f"{k} = {toml_value(v)}\n" for k, v in daemon.items()) + "\n"
    for a in apps:
        text += "[[apps]]\n" + "".join(f"{k} = {toml_value(v)}\n" for k, v in a.items() if not isinstance(v, dict))
        for k, v in a.items():
            if isinstance(v, dict):
                text += f"[apps.{k}]\n" + "".join(f"{kk} = {toml_value(vv)}\n" for kk, vv in v.items())
        text += "\n"
    return text


class Supervisor:
    """One supervisor daemon with its own home under a temporary folder `root`. The
    daemon's pid is added to `started` (checked for leftovers at the end of the run)."""

    name = "?"
    pid_file = ""

    def __init__(self, root: Path, started: list | None):
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self.started = started if started is not None else []
        self.env: dict = {}
        self.home = root

    def ctl(self, *a, timeout=60, check=True, quiet=False, env=None):
        """Runs the CLI with this daemon's home (or `env`); bounded in time."""
        return run([*self.cli, *a], env=env or self.env, timeout=timeout, check=check, quiet=quiet)

    @property
    def cli(self) -> list:
        """The CLI command (supctl or pm2)."""
        raise NotImplementedError

    @property
    def list_cmd(self) -> list:
        """The command whose wall time is the `list` latency."""
        raise NotImplementedError

    def rows(self) -> list[dict]:
        """The process table as {name, instance, pid, status, restarts} rows."""
        raise NotImplementedError

    def daemon_pid(self) -> int:
        """The daemon's pid (from its pid file); remembered in `started`."""
        pid = int((self.home / self.pid_file).read_text().strip())
        if pid not in self.started:
            self.started.append(pid)
        return pid

    def boot(self, timeout: float = 60) -> int:
        """Starts the daemon (before anything is timed); its pid."""
        self.ctl("ping", timeout=timeout)
        return self.daemon_pid()

    def wait_online(self, name: str | None, instances: int, timeout: float, interval: float = 0.5):
        """Waits until `instances` instances of app `name` (of every app when None) are online."""
        def online():
            """True once all are online, else how many are."""
            rows = [r for r in self.rows() if name is None or r["name"] == name]
            n = sum(1 for r in rows if r["status"] == "online")
            return n == instances or f"{n}/{instances} online"
        wait_until(online, timeout, f"{instances} online instance(s) of {name or 'every app'} ({self.name})",
                   interval=interval)

    def pids(self, name: str) -> list[int]:
        """The pids of app `name`'s instances."""
        return [r["pid"] for r in self.rows() if r["name"] == name and r["pid"]]

    def out_log(self, app: str) -> Path:
        """The file an app's stdout goes to."""
        return self.home / "logs" / f"{app}-out.log"

    def kill(self, timeout: float = 60):
        """Stops every app and the daemon (the CLI's `kill`); SIGTERM to the daemon if it survives."""
        try:
            self.ctl("kill", timeout=timeout, check=False)
        except Exception as e:  # noqa: BLE001
            log(f"{self.name} kill failed: {e}")
        with contextlib.suppress(OSError, ValueError):
            pid = int((self.home / self.pid_file).read_text().strip())
            if alive(pid):
                log(f"{self.name} daemon (pid {pid}) still alive after kill: SIGTERM")
                os.kill(pid, signal.SIGTERM)


class Supd(Supervisor):
    """One supd daemon with its own SUPD_HOME (`root`/supd-home)."""

    name = "supd"
    pid_file = "supd.pid"

    def __init__(self, bin_dir: Path, root: Path, started: list | None = None):
        super().__init__(root, started)
        self.supctl = bin_dir / "supctl"
        self.home = root / "supd-home"
        self.env = dict(os.environ, SUPD_HOME=str(self.home), PATH=f"{bin_dir}:{os.environ['PATH']}")

    @property
    def cli(self) -> list:
        """supctl."""
        return [self.supctl]

    @property
    def list_cmd(self) -> list:
        """`supctl list --json`."""
        return [str(self.supctl), "list", "--json"]

    def list(self) -> list:
        """`supctl list --json`, parsed."""
        return json.loads(self.ctl("list", "--json", timeout=30, quiet=True).stdout)

    def rows(self) -> list[dict]:
        """The process table as {name, instance, pid, status, restarts} rows."""
        return [{"name": r["name"], "instance": r.get("instance"), "pid": r.get("pid"),
                 "status": r["status"], "restarts": r.get("restarts", 0)} for r in self.list()]

    def write(self, apps: list[dict], daemon: dict | None = None, name: str = "ecosystem.toml") -> Path:
        """Writes an ecosystem.toml for `apps` (supd's keys) into the root; its path."""
        f = self.root / name
        f.write_text(toml_apps(apps, daemon))
        return f


class Pm2(Supervisor):
    """One PM2 daemon (God) with its own PM2_HOME (`root`/pm2home)."""

    name = "PM2"
    pid_file = "pm2.pid"

    def __init__(self, inst: Pm2Install, root: Path, started: list | None = None):
        super().__init__(root, started)
        self.inst = inst
        self.home = root / "pm2home"
        self.home.mkdir(parents=True, exist_ok=True)
        # The `touch` file marks PM2 as already set up: no first-run banner and no version
        # check over the network (pm2 Client.js); the daemon's daily version check is off
        # too, so only loopback is used.
        (self.home / "touch").write_text(str(int(time.time() * 1000)))
        self.env = dict(os.environ, PM2_HOME=str(self.home), PM2_DISABLE_VERSION_CHECK="1")

    @property
    def cli(self) -> list:
        """pm2."""
        return [self.inst.bin]

    @property
    def list_cmd(self) -> list:
        """`pm2 jlist`."""
        return [str(self.inst.bin), "jlist"]

    def jlist(self) -> list:
        """`pm2 jlist`, parsed (anything PM2 prints before the JSON is skipped)."""
        out = self.ctl("jlist", timeout=30, quiet=True).stdout
        return json.loads(out[out.find("["):])

    def rows(self) -> list[dict]:
        """The process table as {name, instance, pid, status, restarts} rows."""
        return [{"name": r["name"], "instance": r["pm2_env"].get("NODE_APP_INSTANCE"), "pid": r.get("pid"),
                 "status": r["pm2_env"].get("status"), "restarts": r["pm2_env"].get("restart_time", 0)}
                for r in self.jlist()]

    def write(self, apps: list[dict], name: str = "ecosystem.json") -> Path:
        """Writes an ecosystem.json for `apps` (PM2's keys) into the root; its path."""
        f = self.root / name
        f.write_text(json.dumps({"apps": apps}, indent=2))
        return f

    def kill(self, timeout: float = 90):
        """`pm2 kill`, then SIGTERM to the God daemon if it survives."""
        super().kill(timeout)


def new_side(kind: str, tools: dict, root: Path, started: list) -> Supervisor:
    """A supd (tools["supd"]: the binaries' folder) or PM2 (tools["pm2"]: the install)
    daemon with its home under `root`; not started yet."""
    return Supd(tools["supd"], root, started) if kind == "supd" else Pm2(tools["pm2"], root, started)


@contextlib.contextmanager
def daemon(kind: str, what: str, tools: dict, started: list):
    """A started daemon of `kind` in a fresh temporary home under ROOT, killed on the way
    out; the daemon wrapper and its pid."""
    with tempfile.TemporaryDirectory(prefix=f"{kind}-{what}-", dir=ROOT) as tmp:
        side = new_side(kind, tools, Path(tmp), started)
        try:
            yield side, side.boot()
        finally:
            side.kill()


def write_exec_apps(side: Supervisor, apps: list[dict], daemon: dict | None = None) -> Path:
    """The ecosystem file for programs both supervisors exec directly, in fork mode:
    apps of {name, script, args, instances, ...}; other keys (max_restarts, min_uptime in
    ms...) are written as they are for both. PM2 gets `interpreter: none`, the program's
    absolute path and `autorestart: true`; supd the `[daemon]` table `daemon`."""
    if isinstance(side, Supd):
        return side.write(apps, daemon)
    return side.write([{**a, "script": shutil.which(a["script"]) or a["script"], "interpreter": "none",
                        "exec_mode": "fork", "autorestart": True} for a in apps])


# --------------------------------------------------------------------------- the run's folder and leftovers


@contextlib.contextmanager
def bench_root(prefix: str):
    """The run's temporary root folder (also `ROOT`), removed on the way out."""
    global ROOT
    with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
        ROOT = Path(tmp)
        yield ROOT


def _ours(patterns) -> dict[int, str]:
    """{pid: command line} of the live processes (this one excepted) whose command line or
    environment holds one of `patterns` (the run's token, its temporary root: a daemon
    and its apps carry their home, TMPDIR or the token)."""
    needles = [str(p).encode() for p in patterns]
    found = {}
    for d in os.listdir("/proc"):
        if not d.isdigit() or int(d) == os.getpid():
            continue
        with contextlib.suppress(OSError):
            cmdline = Path(f"/proc/{d}/cmdline").read_bytes()
            environ = Path(f"/proc/{d}/environ").read_bytes()
            if any(n in cmdline or n in environ for n in needles) and alive(int(d)):
                found[int(d)] = cmdline.replace(b"\0", b" ").decode(errors="replace").strip()[:200]
    return found


def leftovers(started: list, patterns) -> list[str]:
    """Our processes still running: the daemons we started (by pid), and any process whose
    command line or environment holds one of `patterns` (read from /proc)."""
    left = [f"daemon pid {pid}" for pid in started if alive(pid)]
    return left + [f"{pid} {cmd}" for pid, cmd in _ours(patterns).items()]


def reap(started: list, patterns) -> list[str]:
    """Kills (SIGKILL, by pid) whatever leftovers() finds; returns what it found."""
    left = leftovers(started, patterns)
    if left:
        log(f"left over after kill: {left}; SIGKILL by pid")
        for _ in range(10):  # again while a daemon killed after its children respawned some
            pids = {pid for pid in started if alive(pid)} | set(_ours(patterns))
            if not pids:
                break
            for pid in sorted(pids):
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.2)
    return left


def finish(started: list, patterns) -> list[str]:
    """The end of every run: gives the killed processes up to 2 s to go, reaps what is
    left, checks again and says so; what was left."""
    deadline = time.monotonic() + 2.0
    while leftovers(started, patterns) and time.monotonic() < deadline:
        time.sleep(0.1)
    left = reap(started, patterns)
    still = leftovers(started, patterns)
    log(f"STILL RUNNING after SIGKILL: {still}" if still else "/proc: none of our processes is left")
    return left


# --------------------------------------------------------------------------- figures


def summary(values: list) -> dict | None:
    """min, median, max and count of the numbers in `values` (None when there are none)."""
    v = [x for x in values if isinstance(x, (int, float))]
    if not v:
        return None
    return {"min": min(v), "median": statistics.median(v), "max": max(v), "n": len(v)}


def median(values):
    """The median of the numbers in `values`, or None."""
    v = [x for x in values if isinstance(x, (int, float))]
    return statistics.median(v) if v else None


def percentile(values: list, q: float):
    """The value at quantile q (0-1) of `values` (nearest rank, no interpolation), or None."""
    v = sorted(x for x in values if isinstance(x, (int, float)))
    return v[min(len(v) - 1, int(q * len(v)))] if v else None


def spread(runs: list[dict], key: str) -> dict | None:
    """min, median and max of `key` over the runs that did not fail."""
    return summary([r.get(key) for r in runs if "error" not in r])


def cell(s: dict | None, unit: str, scale: float = 1.0, fmt: str = "{:.2f}") -> str:
    """A table cell: median (min-max) of a spread, in `unit`."""
    if not s:
        return "failed"
    med = fmt.format(s["median"] * scale)
    if s["n"] == 1:
        return f"{med} {unit}"
    return f"{med} {unit} ({fmt.format(s['min'] * scale)}-{fmt.format(s['max'] * scale)})"


def side_table(results: dict, measures, header: str) -> list[str]:
    """Markdown rows: for each (key, label, unit, scale, format) measure, supd's and PM2's
    median (min-max) over their runs in `results` ({"supd": [...], "pm2": [...]}), and the
    ratio of the medians."""
    lines = [f"| {header} | supd | PM2 | supd / PM2 |", "|---|---:|---:|---:|"]
    for key, label, unit, scale, spec in measures:
        s, p = spread(results.get("supd", []), key), spread(results.get("pm2", []), key)
        r = ratio(s["median"], p["median"]) if s and p else "n/a"
        lines.append(f"| {label} | {cell(s, unit, scale, spec)} | {cell(p, unit, scale, spec)} | {r} |")
    return lines


def ratio(a, b) -> str:
    """a / b with two decimals (two significant digits below 0.1), or n/a."""
    if not (isinstance(a, (int, float)) and isinstance(b, (int, float)) and b):
        return "n/a"
    r = a / b
    return f"{r:.2g}" if 0 < abs(r) < 0.1 else f"{r:.2f}"


def fmt(x, spec: str = "{:.2f}") -> str:
    """x formatted with `spec`, or n/a when it is not a number."""
    return spec.format(x) if isinstance(x, (int, float)) else "n/a"


# --------------------------------------------------------------------------- reports


def common_args(ap: argparse.ArgumentParser) -> None:
    """The options every side-by-side benchmark takes: where the binaries and pm2 are,
    which side runs, the output, and the wait for a quiet machine."""
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


def rounds_args(ap: argparse.ArgumentParser, settle: float) -> None:
    """The options of the scripts that repeat their runs in rounds (scale, lifecycle)."""
    ap.add_argument("--rounds", type=int, default=3, help="rounds, alternating which side goes first (default 3)")
    ap.add_argument("--settle", type=float, default=settle,
                    help=f"seconds between all online and the RSS reading (default {settle:g})")
    ap.add_argument("--list-samples", type=int, default=10, help="timed `list` calls per run (default 10)")


def report_args(args) -> dict:
    """The parsed options as JSON-able values (paths as strings)."""
    return {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}


def begin(name: str, args) -> tuple[float, float]:
    """The start of a run: tags the progress lines, waits for a quiet machine; (the start
    time, how busy the machine was)."""
    set_name(name)
    t_start = time.monotonic()
    return t_start, wait_for_quiet(args)


def make_report(args, machine_info: dict, t_start: float, quiet: float, left: list, **parts) -> dict:
    """A script's JSON report: the machine, the options, its own `parts`, how quiet the
    machine was before the run, what was left over, and the total time since `t_start`."""
    return {"machine": machine_info, "args": report_args(args), **parts, "cpu_busy_before_pct": quiet,
            "leftovers": left, "total_seconds": round(time.monotonic() - t_start, 1)}


def rendered_saved(args, markdown) -> bool:
    """With --from-json, prints the Markdown of a saved report and says so."""
    if not args.from_json:
        return False
    print(markdown(json.loads(args.from_json.read_text())))
    return True


def emit(report: dict, args, markdown) -> None:
    """Writes the report to --json-out, prints it (JSON with --json, else Markdown)."""
    if args.json_out:
        args.json_out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2) if args.json else markdown(report))
    log(f"done in {report['total_seconds']} s")


def tail_md(report: dict, lines: list[str], errors=()) -> str:
    """The Markdown of a report: `lines`, the runs' failures, then the leftover check and the total time."""
    if errors:
        lines += ["", "Failures: " + "; ".join(errors)]
    lines += ["", f"Left-over processes after the run: {', '.join(report['leftovers']) or 'none'} "
                  f"(command lines and environments checked in /proc). Total {report['total_seconds']:.0f} s."]
    return "\n".join(lines)


def _out(cmd) -> str:
    """A command's output (stdout and stderr), or ? when it cannot run."""
    try:
        return subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True, timeout=10).stdout.strip()
    except Exception:  # noqa: BLE001
        return "?"


def machine(pm2_version: str | None, **extra) -> dict:
    """The machine and software a report was made on (plus `extra` keys)."""
    cpu = "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem = "?"
    with contextlib.suppress(OSError, ValueError, IndexError):
        kib = int(Path("/proc/meminfo").read_text().split("MemTotal:")[1].split()[0])
        mem = f"{kib / 1024 / 1024:.0f} GiB"
    rev = _out(["git", "-C", str(WORKSPACE), "rev-parse", "--short", "HEAD"])
    dirty = _out(["git", "-C", str(WORKSPACE), "status", "--porcelain", "--untracked-files=no"])
    return {
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "memory": mem,
        "kernel": platform.release(),
        "node": _out(["node", "--version"]),
        "pm2": pm2_version,
        "python": platform.python_version(),
        "supd_rev": rev + ("+dirty" if dirty else ""),
        **extra,
    }


def machine_line(m: dict) -> str:
    """The machine description of a report, as the first words of its Markdown."""
    return (f"Machine: {m['nproc']} CPUs ({m['cpu']}), Linux {m['kernel']}, node {m['node']}, "
            f"pm2 {m['pm2']}, supd {m['supd_rev']}")
