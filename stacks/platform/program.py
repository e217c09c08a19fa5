"""The platform stack's program: the site's components in dependency order."""

from __future__ import annotations

from typing import Any

import pulumi

from blueprint.platform.config import PlatformConfig
from stacks.platform.common import Platform
from stacks.platform.components.access import Access
from stacks.platform.components.flower import Flower
from stacks.platform.components.gpu import DCGM_JOB, GpuOperator
from stacks.platform.components.mlflow import Mlflow
from stacks.platform.components.monitoring import Monitoring
from stacks.platform.components.notebooks import Notebooks
from stacks.platform.components.pipelines import Pipelines
from stacks.platform.components.serving import Serving
from stacks.platform.components.storage import Storage
from stacks.platform.components.validation import ProxiedService, ValidationAccess

CONFIG_KEY = "platform"


def read_config() -> PlatformConfig:
    """The one config value the product sets (set_all_config), checked before anything."""
    raw = pulumi.Config().require_object(CONFIG_KEY)
    return PlatformConfig.model_validate(raw)


def build_platform(config: PlatformConfig) -> Platform:
    """Register every switched-on component; storage and the site CA come first."""
    platform = Platform(config)
    on = config.options.components

    # Storage and access first: the others wait for their storage classes and CA issuer.
    storage = Storage("storage", platform) if on.storage else None
    access = Access("access", platform) if on.access else None
    issuer = access.issuer_url if access else ""
    secrets: dict[str, Any] = {client: secret.result for client, secret in
                               (access.client_secrets.items() if access else [])}

    # Monitoring before the GPU operator: the operator creates the DCGM exporter's
    # ServiceMonitor, whose CRD comes with kube-prometheus-stack.
    monitoring = None
    if on.monitoring:
        monitoring = Monitoring("monitoring", platform, issuer, secrets["grafana"])
    if on.gpu:
        GpuOperator("gpu", platform, [monitoring.release] if monitoring else [])
        if monitoring is not None:
            platform.outputs["prometheus_exporter_job"] = DCGM_JOB

    if on.notebooks:
        Notebooks("notebooks", platform, issuer, secrets["jupyterhub"])
    if on.mlflow and storage is not None:
        Mlflow("mlflow", platform, storage)
    if on.pipelines and storage is not None:
        Pipelines("pipelines", platform, storage)
    if on.serving:
        Serving("serving", platform)
    if on.flower and config.settings.flower.role != "none":
        Flower("flower", platform)

    # The validation reaches the APIs without a login of their own through the API server.
    proxied = [service for service in validation_services(config)
               if service.component in platform.namespaces]
    if proxied and access is not None:
        ValidationAccess("validation", platform, proxied)

    # What the validation layer reads: endpoints, and the generated secrets (as secrets).
    for key, value in sorted(platform.outputs.items()):
        pulumi.export(key, value)
    return platform


def validation_services(config: PlatformConfig) -> list[ProxiedService]:
    """The Services `blueprint validate` calls through the API server's service proxy."""
    on = config.options.components
    services = []
    if on.mlflow:
        # The mlflow chart's Service (named after the release) in front of port 5000.
        services.append(ProxiedService("mlflow", "mlflow", "edge-mlflow", "mlflow-server",
                                       port=80, pod_port=5000))
    if on.pipelines and config.options.pipelines.engine == "argo-workflows":
        # Argo's server in its "server" auth mode: the API server's proxy is the gate.
        services.append(ProxiedService("pipelines", "pipelines", "edge-pipelines",
                                       "argo-workflows-server", port=2746, pod_port=2746))
    if on.monitoring:
        # The operator's own Service for every Prometheus it runs.
        services.append(ProxiedService("prometheus", "monitoring", "edge-monitoring",
                                       "prometheus-operated", port=9090, pod_port=9090))
    return services


def main() -> None:
    build_platform(read_config())
