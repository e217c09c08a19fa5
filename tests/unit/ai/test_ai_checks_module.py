"""validation/checks/test_ai.py as the validation runner runs it: pytest with the plugin."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

from validation.ai.config import ENDPOINTS_ENV

CHECKS = Path(__file__).resolve().parents[3] / "validation" / "checks"
AI_CHECKS = {
    "ai.jupyterhub.health", "ai.jupyterhub.profiles", "ai.mlflow.health",
    "ai.mlflow.round_trip", "ai.flower.superlink", "ai.flower.round",
    "ai.prometheus.ready", "ai.prometheus.gpu_exporter", "ai.pipelines.workflow",
    "ai.serving.inference",
}


def run_checks(tmp_path: Path, endpoints: str | None) -> dict[str, dict[str, Any]]:
    env = {k: v for k, v in os.environ.items() if k != ENDPOINTS_ENV}
    if endpoints is not None:
        path = tmp_path / "ai-endpoints.yaml"
        path.write_text(endpoints)
        env[ENDPOINTS_ENV] = str(path)
    results = tmp_path / "results.json"
    command = [
        sys.executable, "-m", "pytest", str(CHECKS / "test_ai.py"), "-c",
        str(CHECKS / "pytest.ini"), "--rootdir", str(CHECKS), "-p", "blueprint.validate.plugin",
        "-q", f"--bp-results={results}",
    ]
    subprocess.run(command, cwd=CHECKS, env=env, capture_output=True, text=True, timeout=120)
    data = json.loads(results.read_text())
    return {entry["id"]: entry for entry in data["results"]}


def test_without_endpoints_every_check_is_not_applicable(tmp_path: Path) -> None:
    results = run_checks(tmp_path, None)
    assert set(results) == AI_CHECKS
    for entry in results.values():
        assert entry["outcome"] == "skipped"
        assert entry["message"] == (
            f"not applicable: {ENDPOINTS_ENV} is not set (no AI platform endpoints for this site)"
        )


def test_a_named_component_runs_and_the_others_are_not_applicable(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed = sock.getsockname()[1]
    results = run_checks(tmp_path, f"prometheus: {{url: 'http://127.0.0.1:{closed}'}}\n")

    ready = results["ai.prometheus.ready"]
    assert ready["outcome"] == "failed"
    assert f"GET http://127.0.0.1:{closed}/-/ready failed: ConnectError" in ready["message"]
    assert results["ai.mlflow.health"]["outcome"] == "skipped"
    assert results["ai.mlflow.health"]["message"] == (
        "not applicable: no mlflow endpoint (not deployed at this site)"
    )
