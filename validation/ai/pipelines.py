"""Pipelines (Argo Workflows): submit a one-step workflow through the Argo Server API and
wait for it to succeed.

NOT VERIFIED: Argo needs Kubernetes, which cannot run on the development machines; no
recorded Argo Server responses are in the repository, so this code has no test yet.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from validation.ai.config import PipelinesEndpoint
from validation.ai.result import AiCheckResult, CheckFailure, Recorder, run_check

log = logging.getLogger(__name__)

# TODO: test against recorded Argo Server answers once a cluster run records them.
DONE = ("Succeeded", "Failed", "Error")


def workflow(image: str) -> dict[str, Any]:
    """The smallest workflow that proves a pod runs: one container that prints a line."""
    return {
        "metadata": {"generateName": "blueprint-validate-", "labels": {"blueprint/validate": "1"}},
        "spec": {
            "entrypoint": "main",
            "ttlStrategy": {"secondsAfterCompletion": 600},
            "templates": [
                {
                    "name": "main",
                    "container": {"image": image, "command": ["echo", "blueprint validate"]},
                }
            ],
        },
    }


def check_workflow(endpoint: PipelinesEndpoint) -> AiCheckResult:
    """A one-step workflow reaches Succeeded within the endpoint's timeout."""

    def body(recorders: list[Recorder]) -> str:
        verify = str(endpoint.verify_tls) if not isinstance(endpoint.verify_tls, bool) else (
            endpoint.verify_tls
        )
        api = Recorder(
            str(endpoint.url),
            headers={"Authorization": f"Bearer {endpoint.token.reveal()}"},
            verify=verify,
        )
        recorders.append(api)
        path = f"/api/v1/workflows/{endpoint.namespace}"
        created = api.json("POST", path, json={"workflow": workflow(endpoint.image)})
        name = created["metadata"]["name"]

        deadline = time.monotonic() + endpoint.run_timeout
        phase = ""
        while time.monotonic() < deadline:
            status = api.json("GET", f"{path}/{name}").get("status", {})
            phase = status.get("phase", "")
            if phase in DONE:
                break
            time.sleep(2)
        if phase != "Succeeded":
            message = status.get("message", "") if phase else "no phase yet"
            raise CheckFailure(
                f"workflow {name} phase {phase or 'pending'}: {message}",
                f"Succeeded within {endpoint.run_timeout:g} s",
            )
        return f"workflow {endpoint.namespace}/{name} Succeeded"

    return run_check("ai.pipelines.workflow", body)
