"""The optional conformance check: a quick run of the Kubernetes e2e tests by sonobuoy or
hydrophone, whichever the controller has on PATH.

Neither tool can run on this project's machines (no cluster, no images), so this module is
written from the tools' documented command lines and tested only with stand-in programs.
"""

from __future__ import annotations

import logging
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from blueprint.proc import run_bounded
from validation.ai.result import COMMAND, CheckFailure, CheckResult, Exchange, excerpt
from validation.kube.session import CheckSkipped, KubeSession, run_check

log = logging.getLogger(__name__)

CHECK = "kubernetes.cluster.conformance"
_STATUS = re.compile(r"(?im)^\s*Status:\s*(\w+)")


def sonobuoy_status(results_text: str) -> str | None:
    """The first plugin status `sonobuoy results` prints (passed, failed, ...), or None."""
    match = _STATUS.search(results_text)
    return match.group(1).lower() if match else None


def _run(
    session: KubeSession, cmd: list[str], timeout: float
) -> subprocess.CompletedProcess[str]:
    try:
        # Its own process group, stopped whole at the timeout: the tool's helpers too.
        done = run_bounded(cmd, timeout=timeout)
    except subprocess.TimeoutExpired:
        session.exchanges.append(Exchange(COMMAND, " ".join(cmd), None, "timed out"))
        raise CheckFailure(f"{cmd[0]} still running after {timeout:g} s",
                           "the run to end within policy.cluster.conformance_timeout") from None
    output = (done.stdout + "\n" + done.stderr).strip()
    session.exchanges.append(Exchange(COMMAND, " ".join(cmd), done.returncode, excerpt(output)))
    return done


def check_conformance(
    session: KubeSession, kubeconfig: str, context: str | None, focus: str, timeout: float
) -> CheckResult:
    """Run sonobuoy's quick mode (or hydrophone with `focus`) and pass by its result."""
    target = ["--kubeconfig", kubeconfig] + (["--context", context] if context else [])

    def with_sonobuoy(tool: str) -> str:
        deadline = time.monotonic() + timeout
        try:
            run = _run(session, [tool, "run", *target, "--mode", "quick", "--wait"], timeout)
            if run.returncode != 0:
                raise CheckFailure(f"sonobuoy run exited {run.returncode}: "
                                   f"{excerpt(run.stderr or run.stdout)}", "sonobuoy run to end")
            with tempfile.TemporaryDirectory(prefix="bp-sonobuoy-") as work:
                left = max(deadline - time.monotonic(), 60.0)
                fetched = _run(session, [tool, "retrieve", work, *target], left)
                tarballs = sorted(Path(work).glob("*.tar.gz"))
                if fetched.returncode != 0 or not tarballs:
                    raise CheckFailure("sonobuoy retrieve gave no results archive",
                                       "the run's results")
                shown = _run(session, [tool, "results", str(tarballs[0])], 120.0)
            status = sonobuoy_status(shown.stdout)
            if status != "passed":
                raise CheckFailure(f"sonobuoy quick mode: status {status or 'unknown'}: "
                                   f"{excerpt(shown.stdout)}", "status passed")
            return "sonobuoy quick mode passed"
        finally:
            _run(session, [tool, "delete", *target, "--wait"], 600.0)

    def with_hydrophone(tool: str) -> str:
        with tempfile.TemporaryDirectory(prefix="bp-hydrophone-") as work:
            try:
                run = _run(session, [tool, *target, "--focus", focus, "--output-dir", work],
                           timeout)
            finally:
                _run(session, [tool, *target, "--cleanup"], 600.0)
        if run.returncode != 0:
            raise CheckFailure(f"hydrophone --focus '{focus}' exited {run.returncode}: "
                               f"{excerpt(run.stdout + run.stderr)}", "exit 0 (tests passed)")
        return f"hydrophone --focus '{focus}' passed"

    def body() -> str:
        for name, runner in (("sonobuoy", with_sonobuoy), ("hydrophone", with_hydrophone)):
            tool = shutil.which(name)
            if tool is not None:
                return runner(tool)
        raise CheckSkipped("neither sonobuoy nor hydrophone is on PATH of the controller")

    return run_check(CHECK, session, body)
