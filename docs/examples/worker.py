"""The background worker of docs/getting-started.md: no port, one line on
stdout every few seconds (read it with `supctl logs worker`), and a clean
exit on supd's stop signal (SIGINT by default, as PM2)."""

import os
import signal
import sys
import time

INTERVAL = float(os.environ.get("TICK_SECONDS", "5"))


def main():
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    tick = 0
    try:
        while True:
            tick += 1
            print(f"worker {os.getpid()}: tick {tick}", flush=True)
            time.sleep(INTERVAL)
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
