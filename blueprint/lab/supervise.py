"""A small supervisor per lab node: runs systemd-nspawn, boots it again when the node reboots.

`systemd-nspawn -b` exits with 133 when the node's systemd reboots; systemd's own
systemd-nspawn@.service restarts on that code, and so does this. Any other exit ends the
supervisor with the same code. SIGTERM is passed on to nspawn (which then shuts the node
down cleanly) and stops further restarts.

Usage: python -m blueprint.lab.supervise --pidfile FILE -- systemd-nspawn ...
"""

from __future__ import annotations

import argparse
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import FrameType

REBOOT_EXIT = 133


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--" not in argv:
        print("usage: python -m blueprint.lab.supervise --pidfile FILE -- COMMAND...")
        return 2
    split = argv.index("--")
    parser = argparse.ArgumentParser(prog="blueprint.lab.supervise")
    parser.add_argument("--pidfile", type=Path, required=True)
    args = parser.parse_args(argv[:split])
    command = argv[split + 1 :]
    if not command:
        parser.error("no command given after --")

    stopping = False
    child: subprocess.Popen[bytes] | None = None

    def on_stop(signum: int, _frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True
        if child is not None and child.poll() is None:
            child.send_signal(signal.SIGTERM)

    signal.signal(signal.SIGTERM, on_stop)
    signal.signal(signal.SIGINT, on_stop)

    while True:
        _say(f"starting: {' '.join(command)}")
        child = subprocess.Popen(command, stdin=subprocess.DEVNULL)
        args.pidfile.write_text(f"{child.pid}\n")
        code = child.wait()
        _say(f"exited with {code}")
        if code == REBOOT_EXIT and not stopping:
            _say("the node rebooted itself; booting it again")
            continue
        args.pidfile.unlink(missing_ok=True)
        return code


def _say(text: str) -> None:
    stamp = time.strftime("%Y-%m-%d %H:%M:%S")
    print(f"[supervise {stamp}] {text}", flush=True)


if __name__ == "__main__":
    sys.exit(main())
