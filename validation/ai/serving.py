"""Serving (KServe): an InferenceService is ready and answers one inference request in the
open inference protocol (v2): GET /v2/models/<m>/ready, POST /v2/models/<m>/infer.

NOT VERIFIED: KServe needs Kubernetes, which cannot run on the development machines; no
recorded KServe responses are in the repository, so this code has no test yet.
"""

from __future__ import annotations

import logging
import math

from validation.ai.config import ServingEndpoint
from validation.ai.result import AiCheckResult, CheckFailure, Recorder, run_check

log = logging.getLogger(__name__)

# TODO: test against recorded KServe answers once a cluster run records them.


def check_inference(endpoint: ServingEndpoint) -> AiCheckResult:
    """The model is ready and returns at least one output for a request of zeros."""

    def body(recorders: list[Recorder]) -> str:
        headers = {}
        if endpoint.token is not None:
            headers["Authorization"] = f"Bearer {endpoint.token.reveal()}"
        if endpoint.host_header:
            # Behind an ingress gateway the InferenceService is picked by its host name.
            headers["Host"] = endpoint.host_header
        verify = str(endpoint.verify_tls) if not isinstance(endpoint.verify_tls, bool) else (
            endpoint.verify_tls
        )
        api = Recorder(str(endpoint.url), headers=headers, verify=verify)
        recorders.append(api)
        model = endpoint.model
        api.request("GET", f"/v2/models/{model}/ready")

        count = math.prod(endpoint.input_shape)
        request = {
            "inputs": [
                {
                    "name": endpoint.input_name,
                    "shape": endpoint.input_shape,
                    "datatype": endpoint.input_datatype,
                    "data": [0] * count,
                }
            ]
        }
        answer = api.json("POST", f"/v2/models/{model}/infer", json=request)
        outputs = answer.get("outputs", [])
        if not outputs:
            raise CheckFailure(f"model {model} answered without outputs", "at least one output")
        return f"model {model} ready; inference returned {len(outputs)} output(s)"

    return run_check("ai.serving.inference", body)
