"""MLflow: the tracking server answers, logs a run with a metric and an artifact, and
registers a model version that reads back READY.

Spoken over MLflow's documented REST API (the one its Python client uses), so the product
does not carry the mlflow package and every failure names the request. Artifacts go through
the server's artifact proxy (`mlflow server --serve-artifacts`, the default since 2.0); a
server whose runs point straight at an object store fails the artifact step with that reason.

Not checked: which database backs the tracking server. MLflow's API does not expose its
backend store, so a server on a local file or SQLite store passes; the platform layer owns
that choice (PostgreSQL) and its stack tests check it.
"""

from __future__ import annotations

import logging
import time
import uuid
from typing import Any

from validation.ai.config import MlflowEndpoint, tls_verify
from validation.ai.result import AiCheckResult, CheckFailure, Recorder, run_check

log = logging.getLogger(__name__)

API = "/api/2.0/mlflow"
ARTIFACTS = "/api/2.0/mlflow-artifacts/artifacts"
PROXIED = "mlflow-artifacts:"
REGISTER_TIMEOUT = 60.0


def _server(recorders: list[Recorder], endpoint: MlflowEndpoint) -> Recorder:
    headers: dict[str, str] = {}
    auth = None
    if endpoint.token is not None:
        headers["Authorization"] = f"Bearer {endpoint.token.reveal()}"
    elif endpoint.username and endpoint.password is not None:
        auth = (endpoint.username, endpoint.password.reveal())
    server = Recorder(str(endpoint.url), headers=headers, auth=auth,
                      verify=tls_verify(endpoint.verify_tls))
    recorders.append(server)
    return server


def check_health(endpoint: MlflowEndpoint) -> AiCheckResult:
    """/health answers OK and the tracking API lists experiments (its database answers)."""

    def body(recorders: list[Recorder]) -> str:
        server = _server(recorders, endpoint)
        server.request("GET", "/health")
        server.json("POST", f"{API}/experiments/search", json={"max_results": 1})
        version = server.request("GET", "/version", expect=(200, 404))
        shown = version.text.strip() if version.status_code == 200 else "?"
        return f"MLflow {shown} answers and its tracking store lists experiments"

    return run_check("ai.mlflow.health", body)


def check_round_trip(endpoint: MlflowEndpoint) -> AiCheckResult:
    """Log a run (metric + artifact), register it as a model version, read both back."""

    def body(recorders: list[Recorder]) -> str:
        server = _server(recorders, endpoint)
        experiment_id = _experiment(server, endpoint.experiment)

        # A run with one metric.
        now = int(time.time() * 1000)
        run = server.json(
            "POST",
            f"{API}/runs/create",
            json={
                "experiment_id": experiment_id,
                "start_time": now,
                "run_name": f"validate-{now}",
                "tags": [{"key": "blueprint.validate", "value": "true"}],
            },
        )["run"]["info"]
        run_id, artifact_uri = run["run_id"], run["artifact_uri"]
        server.request(
            "POST",
            f"{API}/runs/log-metric",
            json={"run_id": run_id, "key": "accuracy", "value": 0.93, "timestamp": now, "step": 0},
        )

        # One artifact through the server's proxy, then read back.
        if not artifact_uri.startswith(PROXIED):
            raise CheckFailure(
                f"run {run_id} artifact_uri is {artifact_uri}",
                f"artifacts proxied by the server ({PROXIED}...; mlflow server --serve-artifacts)",
            )
        relative = artifact_uri.removeprefix(PROXIED).lstrip("/")
        content = f"blueprint validation {uuid.uuid4()}\n"
        server.request(
            "PUT", f"{ARTIFACTS}/{relative}/validate.txt", content=content.encode()
        )
        listed = server.json("GET", f"{API}/artifacts/list", params={"run_id": run_id})
        names = [item.get("path") for item in listed.get("files", [])]
        if "validate.txt" not in names:
            raise CheckFailure(f"run {run_id} artifacts: {names}", "validate.txt listed")
        read = server.request("GET", f"{ARTIFACTS}/{relative}/validate.txt")
        if read.text != content:
            raise CheckFailure("the artifact read back differs", "the bytes that were logged")
        server.request(
            "POST",
            f"{API}/runs/update",
            json={"run_id": run_id, "status": "FINISHED", "end_time": int(time.time() * 1000)},
        )
        metrics = server.json("GET", f"{API}/runs/get", params={"run_id": run_id})
        logged = {m["key"]: m["value"] for m in metrics["run"]["data"].get("metrics", [])}
        if logged.get("accuracy") != 0.93:
            raise CheckFailure(f"run {run_id} metrics {logged}", "accuracy = 0.93")

        version = _register(server, endpoint.model_name, artifact_uri, run_id)
        return (
            f"run {run_id} logged metric and artifact in experiment {endpoint.experiment}; "
            f"model {endpoint.model_name} version {version} READY"
        )

    return run_check("ai.mlflow.round_trip", body)


def _experiment(server: Recorder, name: str) -> str:
    found = server.request(
        "GET", f"{API}/experiments/get-by-name", params={"experiment_name": name},
        expect=(200, 404),
    )
    if found.status_code == 200:
        experiment: dict[str, Any] = found.json()["experiment"]
        if experiment.get("lifecycle_stage") == "deleted":
            server.request(
                "POST", f"{API}/experiments/restore",
                json={"experiment_id": experiment["experiment_id"]},
            )
        return str(experiment["experiment_id"])
    created = server.json("POST", f"{API}/experiments/create", json={"name": name})
    return str(created["experiment_id"])


def _register(server: Recorder, name: str, source: str, run_id: str) -> str:
    server.request(
        "POST", f"{API}/registered-models/create", json={"name": name}, expect=(200, 400)
    )
    created = server.json(
        "POST",
        f"{API}/model-versions/create",
        json={"name": name, "source": source, "run_id": run_id},
    )
    version = str(created["model_version"]["version"])
    deadline = time.monotonic() + REGISTER_TIMEOUT
    status = created["model_version"].get("status")
    while status != "READY" and time.monotonic() < deadline:
        time.sleep(1)
        read = server.json(
            "GET", f"{API}/model-versions/get", params={"name": name, "version": version}
        )
        status = read["model_version"].get("status")
        if status == "FAILED_REGISTRATION":
            break
    if status != "READY":
        raise CheckFailure(f"model {name} version {version} status {status}", "READY")
    return version
