"""Host commands with their command line logged at DEBUG; long-running ones started and
stopped by PID."""

from __future__ import annotations

import contextlib
import logging
import os
import shlex
import shutil
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from blueprint.errors import DeployFailed, EnvironmentMissing

log = logging.getLogger(__name__)

STOP_TIMEOUT = 30.0


def run(
    cmd: Sequence[str],
    *,
    check: bool = True,
    input: str | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run `cmd`, capture its output as text, raise DeployFailed when it fails and `check`."""
    log.debug("run: %s", shlex.join(cmd))
    result = subprocess.run(
        list(cmd), capture_output=True, text=True, input=input, env=env, timeout=timeout
    )
    if check and result.returncode != 0:
        detail = (result.stderr or result.stdout).strip().splitlines()
        last = detail[-1] if detail else "no output"
        msg = f"command failed ({result.returncode}): {shlex.join(cmd)}: {last}"
        raise DeployFailed(msg)
    return result


def run_bounded(
    cmd: Sequence[str],
    *,
    timeout: float,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run `cmd` in a session of its own and capture its output; past `timeout`, stop the
    whole process group it started (its children too, e.g. ssh sessions) and raise
    subprocess.TimeoutExpired, as subprocess.run does for the direct child only."""
    log.debug("run: %s", shlex.join(cmd))
    process = subprocess.Popen(list(cmd), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, env=env, cwd=cwd, start_new_session=True)
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except BaseException:
        _stop_group(process)
        raise
    return subprocess.CompletedProcess(list(cmd), process.returncode, stdout, stderr)


def _stop_group(process: subprocess.Popen[str]) -> None:
    """SIGTERM the group `process` leads (it was started with start_new_session), then KILL."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.communicate(timeout=10)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.communicate()


def require_tool(name: str, package: str) -> str:
    """Return the path of `name`, or stop with exit 4 naming the Debian package to install."""
    path = shutil.which(name)
    if path is None:
        msg = f"'{name}' is not installed; install it with: apt-get install {package}"
        raise EnvironmentMissing(msg)
    return path


def start_detached(
    cmd: Sequence[str],
    log_file: Path,
    *,
    env: Mapping[str, str] | None = None,
    user: str | None = None,
    cwd: Path | str = "/",
) -> subprocess.Popen[bytes]:
    """Start a long-running `cmd` in its own session, output appended to `log_file`.

    The caller keeps the PID (with a marker from its command line, see `pid_alive`) and
    stops it with `stop_pids`: nothing is ever stopped by name.
    """
    log.debug("start: %s", shlex.join(cmd))
    with open(log_file, "ab") as out:
        return subprocess.Popen(
            list(cmd),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=env,
            user=user,
            group=user,
            cwd=cwd,
        )


def pid_alive(pid: int | None, marker: str = "") -> bool:
    """True when `pid` runs (not a zombie) and its command line contains `marker`.

    The marker guards against a PID reused by an unrelated process after a crash.
    """
    if not pid:
        return False
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return False
    state = stat.rsplit(")", 1)[1].split()[0]
    return state not in ("Z", "X") and marker in cmdline


def stop_pids(pids: list[tuple[int, str]], timeout: float = STOP_TIMEOUT) -> None:
    """SIGTERM each live (pid, marker), wait up to `timeout`, then SIGKILL what is left."""
    live = [(pid, marker) for pid, marker in pids if pid_alive(pid, marker)]
    for pid, _ in live:
        _signal(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(pid_alive(p, m) for p, m in live):
        time.sleep(0.2)
    for pid, marker in live:
        if pid_alive(pid, marker):
            log.warning("PID %d did not stop within %.0f s; killing it", pid, timeout)
            _signal(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(pid_alive(p, m) for p, m in live):
        time.sleep(0.1)


def _signal(pid: int, sig: signal.Signals) -> None:
    log.debug("kill -%s %d", sig.name, pid)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)
