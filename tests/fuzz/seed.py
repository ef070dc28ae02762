#!/usr/bin/env python3
"""Writes the fuzz targets' seed inputs from the repository's own files.

Run from the repository root before a first fuzzing run (or to reseed):
    python3 tests/fuzz/seed.py /tmp/seeds
then `cargo fuzz run TARGET /tmp/seeds/TARGET tests/fuzz/corpus/TARGET ...`
(docs/fuzzing.md). Seeds: ecosystem/*.toml, the TOML blocks of docs/, the
test files of crates/supd-config/src/tests.rs; the PM2 files of
tests/import.rs and docs/; a frame of each request; log streams.
"""
import json
import pathlib
import re
import struct
import sys

ROOT = pathlib.Path(__file__).resolve().parents[2]
RAW = re.compile(r'r#"(.*?)"#', re.S)
# A Rust string literal (no raw string), and the `app("…")` helper of the
# config tests, which puts a first app before its argument.
LITERAL = r'"((?:[^"\\]|\\.)*)"'
APP_HEAD = '[[apps]]\nname = "a"\nscript = "x"\n'


def unescape(literal):
    """The text of a Rust string literal's body (the escapes the tests use)."""
    text = re.sub(r"\\\n\s*", "", literal)  # line continuations
    return text.encode().decode("unicode_escape")


def node_json(js):
    """What a PM2 JavaScript file exports, as JSON text (None without node)."""
    import subprocess
    code = "const m = {exports: {}}; (function(module, exports) {" + js + "})(m, m.exports);" \
        "process.stdout.write(JSON.stringify(m.exports))"
    try:
        done = subprocess.run(["node", "-e", code], capture_output=True, text=True, timeout=20)
    except OSError:
        return None
    return done.stdout if done.returncode == 0 else None


def write(out, target, name, data):
    folder = out / target
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_bytes(data if isinstance(data, bytes) else data.encode())


def ecosystem(out):
    for path in sorted((ROOT / "ecosystem").glob("*.toml")):
        write(out, "ecosystem", path.name, path.read_text())
    for doc in sorted((ROOT / "docs").glob("*.md")):
        for i, block in enumerate(re.findall(r"```toml\n(.*?)```", doc.read_text(), re.S)):
            write(out, "ecosystem", f"{doc.stem}-{i}.toml", block)
    tests = (ROOT / "crates/supd-config/src/tests.rs").read_text()
    for i, text in enumerate(RAW.findall(tests)):
        write(out, "ecosystem", f"tests-raw-{i}.toml", text)
    for i, text in enumerate(re.findall(r"app\(" + LITERAL, tests)):
        write(out, "ecosystem", f"tests-app-{i}.toml", APP_HEAD + unescape(text) + "\n")
    for i, text in enumerate(re.findall(LITERAL, tests)):
        if text.startswith("[[apps]]") or text.startswith("[daemon]"):
            write(out, "ecosystem", f"tests-file-{i}.toml", unescape(text))


def imports(out):
    tests = (ROOT / "tests/import.rs").read_text()
    texts = RAW.findall(tests)
    for doc in sorted((ROOT / "docs").glob("*.md")):
        texts += re.findall(r"```(?:json|yaml|js)\n(.*?)```", doc.read_text(), re.S)
    for i, text in enumerate(texts):
        if "module.exports" in text:
            text = node_json(text)
        if text:
            write(out, "import", f"pm2-{i}", text)


APP = {
    "name": "web", "script": "node", "args": ["server.js"], "cwd": "/srv/web",
    "exec_mode": "cluster", "instances": 2, "port": 8080, "wait_ready": True,
    "listen_timeout": 3000, "kill_signal": "SIGINT", "kill_timeout": 1600,
    "autorestart": True, "max_restarts": 16, "min_uptime": 1000, "restart_delay": 0,
    "exp_backoff_restart_delay": None, "stop_exit_codes": [0],
    "max_memory_restart": 157286400, "cron_restart": "0 3 * * *",
    "instance_var": "INSTANCE_ID", "max_instances": 4, "max_instances_reason": "db",
    "log_date_format": "%Y-%m-%d", "env": {"NODE_ENV": "production"},
    "health_check": "http://127.0.0.1:{port}/health", "watch": ["/srv/web/src"],
    "ignore_watch": ["*.log"],
}


def frames(out):
    requests = [
        {"cmd": "ping"}, {"cmd": "list"}, {"cmd": "save"}, {"cmd": "kill"},
        {"cmd": "stop", "target": "all"}, {"cmd": "show", "name": "web"},
        {"cmd": "scale", "name": "web", "to": {"add": 2}},
        {"cmd": "signal", "signal": "SIGUSR2", "target": "web"},
        {"cmd": "start", "apps": [APP], "base_env": {"PATH": "/usr/bin"},
         "daemon": {"sample_interval": 1000, "log_retain": 3}},
        {"cmd": "reload_apps", "apps": [APP], "base_env": {}},
    ]
    for r in requests:
        body = json.dumps(r).encode()
        write(out, "frame", r["cmd"], struct.pack(">I", len(body)) + body)


def lines(out):
    # pending-length byte, seed byte, then literals (op < 128) and runs.
    write(out, "lines", "short-lines", bytes([0, 7, 12]) + b"one\ntwo\nthr")
    write(out, "lines", "long-line", bytes([4, 9, 130, ord("x"), 2]) + b"\nz")
    write(out, "lines", "endless", bytes([0, 3, 200, ord("y"), 1, ord("\n")]))


if __name__ == "__main__":
    out = pathlib.Path(sys.argv[1])
    ecosystem(out)
    imports(out)
    frames(out)
    lines(out)
