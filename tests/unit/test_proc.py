"""blueprint.proc.run_bounded: a command past its timeout is stopped with its children."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from blueprint.proc import pid_alive, run_bounded


def test_output_and_exit_code_come_back() -> None:
    done = run_bounded([sys.executable, "-c", "import sys; print('out'); "
                        "print('err', file=sys.stderr); sys.exit(3)"], timeout=30)
    assert (done.returncode, done.stdout, done.stderr) == (3, "out\n", "err\n")


def test_a_timeout_stops_the_whole_group(tmp_path: Path) -> None:
    # The command starts a grandchild that would outlive it (as ssh sessions of a pytest run
    # or a conformance tool's helpers do) and writes its PID down.
    pid_file = tmp_path / "grandchild.pid"
    script = (
        "import subprocess, sys, time\n"
        "child = subprocess.Popen(['sleep', '300'])\n"
        f"open({str(pid_file)!r}, 'w').write(str(child.pid))\n"
        "time.sleep(300)\n"
    )
    started = time.monotonic()
    with pytest.raises(subprocess.TimeoutExpired):
        run_bounded([sys.executable, "-c", script], timeout=2)
    assert time.monotonic() - started < 20
    grandchild = int(pid_file.read_text())
    deadline = time.monotonic() + 5
    while pid_alive(grandchild, "sleep") and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not pid_alive(grandchild, "sleep"), f"grandchild {grandchild} outlived the timeout"
