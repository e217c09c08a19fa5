"""Running host commands with their command line logged at DEBUG."""

from __future__ import annotations

import logging
import shlex
import shutil
import subprocess
from collections.abc import Mapping, Sequence

from blueprint.errors import DeployFailed, EnvironmentMissing

log = logging.getLogger(__name__)


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


def require_tool(name: str, package: str) -> str:
    """Return the path of `name`, or stop with exit 4 naming the Debian package to install."""
    path = shutil.which(name)
    if path is None:
        msg = f"'{name}' is not installed; install it with: apt-get install {package}"
        raise EnvironmentMissing(msg)
    return path
