"""Flower: the SuperLink answers with its SuperNodes online, and one federated round over
all of them completes.

Both use the `flwr` CLI (pip package flwr) against the SuperLink's Control API, with a
connection of its own in a throwaway FLWR_HOME, so the operator's own connections are never
read or changed. The round is the small Flower app beside this module (flower_app/): numpy
weights, every SuperNode adds one, the ServerApp checks the average.

Sites use TLS (root_certificates); only insecure connections were exercised on the
development machines.
"""

from __future__ import annotations

import json
import logging
import os
import shlex
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from validation.ai.config import FlowerEndpoint
from validation.ai.result import (
    COMMAND,
    AiCheckResult,
    CheckFailure,
    Exchange,
    excerpt,
    run_check,
)

log = logging.getLogger(__name__)

APP = Path(__file__).resolve().parent / "flower_app"
CONNECTION = "blueprint-site"
CLI_TIMEOUT = 120.0
POLL = 3.0


class FlowerCli:
    """The `flwr` CLI with one connection to the site's SuperLink; records each call."""

    def __init__(self, endpoint: FlowerEndpoint, home: Path) -> None:
        self.endpoint = endpoint
        self.home = home
        self.exchanges: list[Exchange] = []
        lines = ["[superlink]", f'default = "{CONNECTION}"', "", f"[superlink.{CONNECTION}]"]
        lines.append(f'address = "{endpoint.address}"')
        if endpoint.insecure:
            lines.append("insecure = true")
        if endpoint.root_certificates is not None:
            lines.append(f'root-certificates = "{endpoint.root_certificates}"')
        (home / "config.toml").write_text("\n".join(lines) + "\n", encoding="utf-8")

    def close(self) -> None:
        """Nothing to close: each call is its own process."""

    def call(self, *args: str, timeout: float = CLI_TIMEOUT) -> dict[str, Any]:
        """Run `flwr ARGS --format json`; a failure or an answer without success fails."""
        program = shutil.which(self.endpoint.flwr)
        if program is None:
            raise CheckFailure(
                f"the Flower CLI '{self.endpoint.flwr}' is not installed",
                "flwr on PATH (pip install flwr) where the validation runs",
            )
        command = [program, *args, "--format", "json"]
        shown = shlex.join([self.endpoint.flwr, *args, "--format", "json"])
        env = {**os.environ, "FLWR_HOME": str(self.home), "NO_COLOR": "1"}
        try:
            done = subprocess.run(
                command, capture_output=True, text=True, timeout=timeout, env=env, cwd=self.home
            )
        except subprocess.TimeoutExpired:
            self.exchanges.append(Exchange(COMMAND, shown, None, f"no answer in {timeout:g} s"))
            raise CheckFailure(f"{shown} gave no answer in {timeout:g} s", "an answer") from None
        output = done.stdout.strip()
        self.exchanges.append(
            Exchange(COMMAND, shown, done.returncode, excerpt(output or done.stderr))
        )
        try:
            answer: dict[str, Any] = json.loads(output[output.index("{"):])
        except ValueError:
            answer = {}
        if done.returncode != 0 or not answer.get("success"):
            detail = answer.get("error-message") or output or done.stderr
            raise CheckFailure(
                f"{shown} failed (exit {done.returncode}): {excerpt(str(detail))}",
                "the SuperLink's Control API to answer",
            )
        return answer


def _in_home(check: str, body: Any, endpoint: FlowerEndpoint) -> AiCheckResult:
    with tempfile.TemporaryDirectory(prefix="bp-flwr-") as home:
        cli = FlowerCli(endpoint, Path(home))

        def wrapped(recorders: list[Any]) -> str:
            try:
                return str(body(cli))
            finally:
                recorders.append(cli)

        result = run_check(check, wrapped)
    return result


def check_superlink(endpoint: FlowerEndpoint) -> AiCheckResult:
    """The SuperLink's Control API answers and lists at least the expected SuperNodes online."""

    def body(cli: FlowerCli) -> str:
        answer = cli.call("supernode", "list", CONNECTION)
        nodes = answer.get("nodes", [])
        online = [node for node in nodes if node.get("status") == "online"]
        if len(online) < endpoint.supernodes:
            raise CheckFailure(
                f"{len(online)} of {len(nodes)} SuperNodes online at {endpoint.address}",
                f"at least {endpoint.supernodes} online",
            )
        return f"SuperLink {endpoint.address} answers; {len(online)} SuperNodes online"

    return _in_home("ai.flower.superlink", body, endpoint)


def check_round(endpoint: FlowerEndpoint) -> AiCheckResult:
    """One federated round over `supernodes` SuperNodes finishes completed in time."""

    def body(cli: FlowerCli) -> str:
        config = f"num-supernodes={endpoint.supernodes} round-timeout={endpoint.round_timeout}"
        started = cli.call("run", str(APP), CONNECTION, "--run-config", config)
        run_id = str(started["run-id"])

        deadline = time.monotonic() + endpoint.run_timeout
        status, details = "pending", ""
        while time.monotonic() < deadline:
            runs = cli.call("list", CONNECTION, "--run-id", run_id).get("runs", [])
            if runs:
                status = str(runs[0].get("status", "?"))
                details = str(runs[0].get("status-details", ""))
            if status.startswith("finished:"):
                break
            time.sleep(POLL)
        else:
            # The run is of no use once the check has given up on it.
            try:
                cli.call("stop", run_id, CONNECTION)
            except CheckFailure:
                log.warning("Could not stop Flower run %s", run_id)
            raise CheckFailure(
                f"run {run_id} still {status} after {endpoint.run_timeout:g} s",
                "finished:completed",
            )
        if status != "finished:completed":
            raise CheckFailure(f"run {run_id} {status} ({details})", "finished:completed")
        return f"run {run_id} completed one round over {endpoint.supernodes} SuperNodes"

    return _in_home("ai.flower.round", body, endpoint)
