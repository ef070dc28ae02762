#!/usr/bin/env python3
"""The app of the chaos soak (tests/bench/chaos.py): a service that drains correctly,
logs numbered lines and, capped, proves it never runs twice.

    chaos_app.py STATE_DIR [--http] [--lock FILE] [--rate N]

- `--http`: serves GET / (200, a short body) on the listening socket supd hands over as
  fd 3 (LISTEN_FDS), HTTP/1.1 keep-alive. On its stop signal (SIGINT, supd's default, or
  SIGTERM) it drains the way a client never sees a failure: it stops accepting (the
  socket stays open in the daemon and the other instances), finishes the request in
  flight, answers the next request on each kept-alive connection with
  `Connection: close` and closes it, and closes a connection that stays idle only after
  GRACE seconds, then exits.
- `--lock FILE`: takes an exclusive flock on FILE at start, without waiting. When
  another process holds it (two instances of a capped app at once), it appends
  `CONFLICT <pid> <time>` to STATE_DIR/conflicts and exits with status 3.
- Always: writes `chaos seq=<N> id=<pid>-<random> t=<unix time>` on stdout, N = 1, 2, ...
  at `--rate` lines a second, and after each line records in STATE_DIR/written/<id>
  `<start time> <N>`: the last line `write` handed to the pipe. The soak checks that
  every line recorded as written is in the app's log files. (The id, not the pid, names
  a process: pids are reused within a ten-minute soak on a busy machine.)
- Ready: `READY=1` to NOTIFY_SOCKET once serving (supd's readiness protocol).

Python 3.11 standard library only; one thread per connection, enough for the soak's
modest load.
"""

from __future__ import annotations

import argparse
import fcntl
import os
import secrets
import select
import signal
import socket
import sys
import threading
import time

GRACE = 2.0  # how long an idle kept-alive connection is kept open once stopping
STOP_BOUND = 4.0  # exit after this long stopping, whatever is left (kill_timeout is longer)
BODY = b"chaos ok\n"

stop_requested = False  # set by the signal handler, which must take no lock
stopping = threading.Event()
connections_lock = threading.Lock()
connections = 0  # open client connections, for the exit once drained


def notify(state: bytes) -> None:
    """One datagram to NOTIFY_SOCKET (an abstract socket when it starts with @)."""
    path = os.environ.get("NOTIFY_SOCKET")
    if not path:
        return
    addr = "\0" + path[1:] if path.startswith("@") else path
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        s.sendto(state, addr)


def take_lock(path: str, state_dir: str) -> int:
    """The exclusive flock on `path`, or exit 3 after recording the conflict."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        with open(os.path.join(state_dir, "conflicts"), "a") as f:
            f.write(f"CONFLICT {os.getpid()} {time.time():.6f}\n")
        print(f"chaos conflict: another instance holds {path}", file=sys.stderr, flush=True)
        os._exit(3)
    return fd


def ticker(state_dir: str, rate: float) -> None:
    """The numbered lines, and the record of the last one written."""
    ident = f"{os.getpid()}-{secrets.token_hex(4)}"
    started = time.time()
    record = os.open(os.path.join(state_dir, "written", ident), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    period, seq, due = 1.0 / rate, 0, time.monotonic()
    while True:
        seq += 1
        os.write(1, f"chaos seq={seq} id={ident} t={time.time():.6f}\n".encode())
        os.pwrite(record, f"{started:.6f} {seq:012d}\n".encode(), 0)
        due += period
        time.sleep(max(0.0, due - time.monotonic()))


def read_request(conn: socket.socket, buf: bytes, timeout: float | None) -> tuple[bytes | None, bytes]:
    """Reads up to the end of one request's headers (GET: no body). (request, rest), or
    (None, b"") when the peer closed or nothing came within `timeout`."""
    conn.settimeout(timeout)
    while b"\r\n\r\n" not in buf:
        try:
            chunk = conn.recv(65536)
        except (TimeoutError, OSError):
            return None, b""
        if not chunk:
            return None, b""
        buf += chunk
    head, _, rest = buf.partition(b"\r\n\r\n")
    return head, rest


def serve(conn: socket.socket) -> None:
    """One client connection, kept alive until the client closes it or the app stops."""
    global connections
    buf = b""
    try:
        while True:
            # While serving, an idle connection waits as long as the client likes (the
            # stop flag polled); once stopping, it gets GRACE seconds for its next request.
            if not stopping.is_set() and not buf:
                ready, _, _ = select.select([conn], [], [], 0.2)
                if not ready:
                    continue
            head, buf = read_request(conn, buf, GRACE if stopping.is_set() else None)
            if head is None:
                return
            close = stopping.is_set() or b"connection: close" in head.lower()
            conn.settimeout(None)
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n%s\r\n%s" % (
                len(BODY), b"Connection: close\r\n" if close else b"", BODY))
            if close:
                return
    except OSError:
        return
    finally:
        conn.close()
        with connections_lock:
            connections -= 1


def accept_loop(listener: socket.socket) -> None:
    """Accepts until stopping; the listening socket is shared with the daemon and the
    other instances, so it is only closed here, never shut down."""
    global connections
    listener.setblocking(False)
    while not stopping.is_set():
        ready, _, _ = select.select([listener], [], [], 0.1)
        if not ready or stopping.is_set():
            continue
        try:
            conn, _ = listener.accept()
        except (BlockingIOError, InterruptedError):
            continue  # another instance took it
        conn.setblocking(True)
        with connections_lock:
            connections += 1
        threading.Thread(target=serve, args=(conn,), daemon=True).start()
    listener.close()


def on_stop(*_) -> None:
    """The stop signal. Only a flag: Event.set() here could deadlock on the Event's own
    lock if the signal lands while the main thread holds it."""
    global stop_requested
    stop_requested = True


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("state_dir")
    ap.add_argument("--http", action="store_true")
    ap.add_argument("--lock")
    ap.add_argument("--rate", type=float, default=20.0)
    args = ap.parse_args()

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, on_stop)
    if args.lock:
        take_lock(args.lock, args.state_dir)
    threading.Thread(target=ticker, args=(args.state_dir, args.rate), daemon=True).start()
    if args.http:
        if int(os.environ.get("LISTEN_FDS", "0")) < 1:
            sys.exit("chaos_app: --http needs the listening socket on fd 3 (LISTEN_FDS)")
        listener = socket.socket(fileno=3)
        threading.Thread(target=accept_loop, args=(listener,), daemon=True).start()
    notify(b"READY=1")
    while not stop_requested:
        time.sleep(0.02)
    stopping.set()
    deadline = time.monotonic() + STOP_BOUND
    while time.monotonic() < deadline:
        with connections_lock:
            if connections == 0:
                break
        time.sleep(0.02)
    # Each line is one write() under PIPE_BUF, atomic: exiting never leaves half a line.
    os._exit(0)


if __name__ == "__main__":
    main()
