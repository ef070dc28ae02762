#!/usr/bin/env python3
"""How evenly supd's shared cluster socket spreads fresh connections.

Starts a 3-instance cluster app under a temporary SUPD_HOME (the platform's
Rust user-service, then the Node fixture tests/fixtures/ready.js), sends 150
sequential and 800 concurrent (8 clients) fresh-connection requests, and
prints how many each instance served. Run from the workspace root after
`cargo build --release`:

    python3 tests/bench/balance.py [--bin-dir target/release]
"""
import argparse
import collections
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import free_port  # noqa: E402 - the shared helpers, next to this script


def get(port):
    """One fresh-connection GET /health; the instance that answered."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    body = data.split(b"\r\n\r\n", 1)[1]
    return json.loads(body)["instance"]


def split(port, total, clients):
    """How many of `total` requests from `clients` threads each of the 3 instances served."""
    counts = collections.Counter()
    lock = threading.Lock()

    def worker(n):
        """One client: n requests in a row."""
        for _ in range(n):
            who = get(port)
            with lock:
                counts[who] += 1

    threads = [threading.Thread(target=worker, args=(total // clients,)) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return [counts[f"instance-{i}"] for i in range(3)]


def measure(bin_dir, label, script, args):
    """A 3-instance cluster app under a temporary SUPD_HOME: the sequential and concurrent splits."""
    home = tempfile.mkdtemp(prefix="supd-balance-")
    port = free_port()
    env = dict(os.environ, SUPD_HOME=home)
    supctl = os.path.join(bin_dir, "supctl")
    eco = os.path.join(home, "eco.toml")
    with open(eco, "w") as f:
        f.write(
            f'[[apps]]\nname = "b"\nscript = "{script}"\nargs = {json.dumps(args)}\n'
            f'exec_mode = "cluster"\ninstances = 3\nport = {port}\nwait_ready = true\n'
        )
    try:
        subprocess.run([supctl, "start", eco], env=env, check=True, capture_output=True)
        return label, split(port, 150, 1), split(port, 800, 8)
    finally:
        subprocess.run([supctl, "kill"], env=env, capture_output=True)


def main():
    """Both workers, then the table."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--bin-dir", default=os.path.join(ROOT, "target", "release"))
    a = parser.parse_args()
    # The worker's path goes into an ecosystem file, which resolves relative paths
    # against its own folder: make it absolute.
    a.bin_dir = os.path.abspath(a.bin_dir)
    rows = [
        measure(a.bin_dir, "Rust user-service (tokio)", os.path.join(a.bin_dir, "user-service"), []),
        measure(a.bin_dir, "Node http (ready.js)", "node", [os.path.join(ROOT, "tests", "fixtures", "ready.js")]),
    ]
    print("| workers | 150 sequential | 800 from 8 clients |")
    print("|---|---|---|")
    for label, seq, conc in rows:
        print(f"| {label} | {seq} | {conc} |")


if __name__ == "__main__":
    sys.exit(main())
