"""AI platform checks: a health endpoint and a functional round trip per component.

These speak to the platform's endpoints from the controller, not to a node: the endpoints
come from the file named by BLUEPRINT_AI_ENDPOINTS (see docs/ai-checks.md). A component that
the file does not name is not deployed at this site, and its checks say "not applicable"
with that reason, never passed. The check code lives in validation/ai/.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any

import pytest

from blueprint.validate.plugin import NOT_APPLICABLE, CheckFailed

# validation/ is not an installed package; the runner starts pytest inside validation/checks.
_REPO = str(Path(__file__).resolve().parents[2])
if _REPO not in sys.path:
    sys.path.insert(0, _REPO)

from validation.ai import flower, jupyterhub, mlflow, pipelines, prometheus, serving  # noqa: E402
from validation.ai.config import AiEndpoints, endpoints_from_env  # noqa: E402
from validation.ai.result import AiCheckResult  # noqa: E402

log = logging.getLogger(__name__)


@pytest.fixture(scope="module")
def ai_endpoints() -> AiEndpoints:
    endpoints, reason = endpoints_from_env()
    if endpoints is None:
        pytest.skip(NOT_APPLICABLE + reason)
    return endpoints


def _endpoint(endpoints: AiEndpoints, component: str) -> Any:
    endpoint = getattr(endpoints, component)
    if endpoint is None:
        pytest.skip(NOT_APPLICABLE + f"no {component} endpoint (not deployed at this site)")
    return endpoint


def _verdict(result: AiCheckResult) -> None:
    log.info("%s: %s", result.check, result.describe())
    if not result.passed:
        raise CheckFailed(result.describe())


@pytest.mark.check("ai.jupyterhub.health")
def test_jupyterhub_health(ai_endpoints: AiEndpoints) -> None:
    _verdict(jupyterhub.check_health(_endpoint(ai_endpoints, "jupyterhub")))


@pytest.mark.check("ai.jupyterhub.profiles")
def test_jupyterhub_profiles(ai_endpoints: AiEndpoints) -> None:
    endpoint = _endpoint(ai_endpoints, "jupyterhub")
    results = [jupyterhub.check_profile(endpoint, profile) for profile in endpoint.profiles]
    failed = [result for result in results if not result.passed]
    if failed:
        names = ", ".join(result.check.rsplit(".", 1)[-1] for result in failed)
        details = " | ".join(result.describe() for result in failed)
        raise CheckFailed(f"{len(failed)} of {len(results)} profiles failed ({names}): {details}")


@pytest.mark.check("ai.mlflow.health")
def test_mlflow_health(ai_endpoints: AiEndpoints) -> None:
    _verdict(mlflow.check_health(_endpoint(ai_endpoints, "mlflow")))


@pytest.mark.check("ai.mlflow.round_trip")
def test_mlflow_round_trip(ai_endpoints: AiEndpoints) -> None:
    _verdict(mlflow.check_round_trip(_endpoint(ai_endpoints, "mlflow")))


@pytest.mark.check("ai.flower.superlink")
def test_flower_superlink(ai_endpoints: AiEndpoints) -> None:
    _verdict(flower.check_superlink(_endpoint(ai_endpoints, "flower")))


@pytest.mark.check("ai.flower.round")
def test_flower_round(ai_endpoints: AiEndpoints) -> None:
    _verdict(flower.check_round(_endpoint(ai_endpoints, "flower")))


@pytest.mark.check("ai.prometheus.ready")
def test_prometheus_ready(ai_endpoints: AiEndpoints) -> None:
    _verdict(prometheus.check_ready(_endpoint(ai_endpoints, "prometheus")))


@pytest.mark.check("ai.prometheus.gpu_exporter")
def test_prometheus_gpu_exporter(ai_endpoints: AiEndpoints) -> None:
    _verdict(prometheus.check_exporter(_endpoint(ai_endpoints, "prometheus")))


# Not verified: Argo and KServe need Kubernetes (see validation/ai/pipelines.py, serving.py).
@pytest.mark.check("ai.pipelines.workflow")
def test_pipelines_workflow(ai_endpoints: AiEndpoints) -> None:
    _verdict(pipelines.check_workflow(_endpoint(ai_endpoints, "pipelines")))


@pytest.mark.check("ai.serving.inference")
def test_serving_inference(ai_endpoints: AiEndpoints) -> None:
    _verdict(serving.check_inference(_endpoint(ai_endpoints, "serving")))
