"""AI platform checks: each takes one component's endpoint and returns an AiCheckResult.

Checked against real programs on the development machine: JupyterHub, MLflow, Flower,
Prometheus. Not verified anywhere yet: pipelines (Argo) and serving (KServe), which need
Kubernetes.
"""

from __future__ import annotations

from validation.ai.config import (
    ENDPOINTS_ENV,
    AiEndpoints,
    FlowerEndpoint,
    JupyterHubEndpoint,
    MlflowEndpoint,
    PipelinesEndpoint,
    PrometheusEndpoint,
    ServingEndpoint,
    endpoints_from_env,
    load_endpoints,
)
from validation.ai.result import AiCheckResult

__all__ = [
    "ENDPOINTS_ENV",
    "AiCheckResult",
    "AiEndpoints",
    "FlowerEndpoint",
    "JupyterHubEndpoint",
    "MlflowEndpoint",
    "PipelinesEndpoint",
    "PrometheusEndpoint",
    "ServingEndpoint",
    "endpoints_from_env",
    "load_endpoints",
]
