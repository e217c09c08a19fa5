"""From a loaded site to the one config value the platform stack receives."""

from __future__ import annotations

import base64
import json
import re
from typing import Any

from blueprint.artifacts import resolve_repositories
from blueprint.errors import BadInput
from blueprint.loader import LoadedSite
from blueprint.models import Layer
from blueprint.platform.config import (
    OPERATOR_DRIVER_IMAGES,
    PlatformConfig,
    PlatformNode,
    PlatformOptions,
    ResolvedChart,
)

DEFAULT_KUBERNETES = "1.31"


def platform_layer(loaded: LoadedSite) -> Layer | None:
    return next((ly for ly in loaded.blueprint.layers if ly.name == "platform"), None)


def kubernetes_version(loaded: LoadedSite) -> str:
    """major.minor of the blueprint's Kubernetes (k3s v1.31.4+k3s1 -> 1.31)."""
    for layer in loaded.blueprint.layers:
        for value in layer.versions.values() if layer.name == "kubernetes" else ():
            found = re.match(r"^v?(\d+\.\d+)", value)
            if found:
                return found.group(1)
    return DEFAULT_KUBERNETES


def platform_config(loaded: LoadedSite, secrets: dict[str, Any] | None = None
                    ) -> PlatformConfig:
    """Resolve options, chart sources and site facts; BadInput when the site lacks them."""
    layer = platform_layer(loaded)
    if layer is None:
        msg = f"blueprint {loaded.blueprint.name} has no platform layer"
        raise BadInput(msg)
    settings = loaded.site.platform
    if settings is None:
        msg = (f"{loaded.site_file}: platform: the blueprint's platform layer needs the site's "
               "platform section (domain, load_balancer_addresses); see docs/platform.md")
        raise BadInput(msg)
    options = PlatformOptions.model_validate(layer.options)
    check_storage_layer(loaded, options)

    # Chart sources through the artifact catalogue: upstream, the site's mirror, or the
    # offline bundle's mirror.
    urls = {repo.name: repo.url for repo in resolve_repositories(loaded.site, ["platform"])}
    if loaded.site.artifacts.mode == "offline":
        urls.update(offline_chart_sources(loaded, options, layer.versions))
    charts = {key: ResolvedChart(chart=chart.chart, repository_url=urls[chart.repository],
                                 version=layer.versions[key], images=chart.images)
              for key, chart in options.charts.items()}
    if "kubeflow-pipelines" in layer.versions:
        charts["kubeflow-pipelines"] = ResolvedChart(
            chart="kubeflow-pipelines", repository_url=urls["kubeflow-pipelines"],
            version=layer.versions["kubeflow-pipelines"], images={})

    gpu_layer = next((ly for ly in loaded.blueprint.layers if ly.name == "gpu"), None)
    registry = settings.registry or options.registry
    config = PlatformConfig(
        site=loaded.site.name,
        kubernetes_version=kubernetes_version(loaded),
        host_gpu_driver=gpu_layer is not None and "gpu_driver" in gpu_layer.roles,
        options=options,
        settings=settings,
        charts=charts,
        nodes=[PlatformNode(name=node.name, roles=list(node.roles), address=str(node.address))
               for node in loaded.site.nodes],
        registry_auth=registry_auth_json(registry.override, secrets or {}),
    )

    # The operator's own driver and toolkit run from images the blueprint must pin.
    if config.options.components.gpu and config.operator_driver:
        # TODO: lock and bundle the driver image under each node OS's tag, then allow this.
        if loaded.site.artifacts.mode == "offline":
            msg = (f"{loaded.site_file}: artifacts: mode 'offline': the GPU operator installs "
                   f"the driver here (gpu.driver '{config.options.gpu.driver}') and pulls "
                   "nvcr.io/nvidia/driver under a tag with the node's OS appended "
                   "(570.124.06-ubuntu22.04), which the lock and the offline bundle do not "
                   "carry; let the blueprint's gpu layer install the driver (gpu.driver auto "
                   "with its gpu_driver role)")
            raise BadInput(msg)
        pinned = config.charts["gpu-operator"].images
        missing = [role for role in OPERATOR_DRIVER_IMAGES if role not in pinned]
        if missing:
            msg = (f"blueprint {loaded.blueprint.name}: layer platform: the GPU operator "
                   "installs the driver here (gpu.driver "
                   f"'{config.options.gpu.driver}', no gpu_driver role in the gpu layer) but "
                   f"charts.gpu-operator.images has no {', '.join(missing)}; pin them for "
                   "the chart's version")
            raise BadInput(msg)
    return config


def check_storage_layer(loaded: LoadedSite, options: PlatformOptions) -> None:
    """The platform's storage classes are of kinds the storage layer prepared nodes for.

    Longhorn needs open-iscsi on the nodes, Rook-Ceph lvm2 and its raw devices, NFS the
    server the storage layer runs: a class of any other kind would provision nothing.
    """
    if not any(ly.name == "storage" for ly in loaded.blueprint.layers):
        return
    from blueprint.inventory import role_defaults, role_variables

    # Unset in the blueprint and the site, the storage role prepares its own default.
    variables = {**role_defaults("storage"), **role_variables(loaded)}
    prepared = [str(kind) for kind in variables.get("storage_classes") or []]
    for item in options.storage.classes:
        if item.kind not in prepared:
            msg = (f"blueprint {loaded.blueprint.name}: layer platform: storage class "
                   f"{item.name} is of kind {item.kind}, which the storage layer does not "
                   f"prepare nodes for (storage_classes: {', '.join(prepared) or 'none'}); "
                   f"add {item.kind} there (the blueprint's storage layer or the site's "
                   "overrides) or drop the class")
            raise BadInput(msg)


def offline_chart_sources(loaded: LoadedSite, options: PlatformOptions,
                          versions: dict[str, str]) -> dict[str, str]:
    """An offline site's own copies of chart repositories, which win over the bundle's.

    The offline bundle carries the locked charts and `blueprint mirror serve` serves them
    (resolve_repositories names that mirror); a site may name its own copy instead, under
    artifacts.repositories. Kubeflow Pipelines comes as release manifests, which the bundle
    does not carry: an offline site that chooses that engine must name its own copy.
    """
    own = loaded.site.artifacts.repositories
    if ("kubeflow-pipelines" in versions and options.pipelines.engine == "kubeflow-pipelines"
            and "kubeflow-pipelines" not in own):
        msg = (f"{loaded.site_file}: artifacts: mode 'offline': the offline bundle carries no "
               "Kubeflow Pipelines manifests; name the site's own copy under "
               "artifacts.repositories.kubeflow-pipelines, or use the argo pipelines engine")
        raise BadInput(msg)
    return {name: entry.url for name, entry in own.items()}


def registry_auth_json(override: str | None, secrets: dict[str, Any]) -> str | None:
    """A dockerconfigjson for the override registry from the site vault's credentials."""
    if not override:
        return None
    host = override.split("/", 1)[0]
    login = (secrets.get("registry_credentials") or {}).get(host)
    if not isinstance(login, dict):
        return None
    user, password = str(login.get("username", "")), str(login.get("password", ""))
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return json.dumps({"auths": {host: {"username": user, "password": password,
                                        "auth": token}}})
