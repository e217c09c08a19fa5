"""The kubernetes layer's role variables: per node (its part) and for the whole site."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from blueprint.artifacts import resolve_binaries
from blueprint.kube.topology import ClusterSettings, cluster_settings, plan_nodes
from blueprint.loader import LoadedSite

LAYER = "kubernetes"


def kubernetes_settings(loaded: LoadedSite, variables: dict[str, Any]) -> ClusterSettings | None:
    """The cluster settings, or None when the site's blueprint has no kubernetes layer."""
    layer = next((ly for ly in loaded.blueprint.layers if ly.name == LAYER), None)
    if layer is None:
        return None
    merged = {**layer.options, **variables, "blueprint_site": loaded.site.name}
    return cluster_settings(merged, layer.versions)


def kubernetes_group_variables(
    loaded: LoadedSite, variables: dict[str, Any], kubeconfig: Path | None = None
) -> dict[str, Any]:
    """Site-wide variables of the kubernetes role: version, binaries, API endpoint, kubeconfig."""
    settings = kubernetes_settings(loaded, variables)
    if settings is None:
        return {}
    layer = next(ly for ly in loaded.blueprint.layers if ly.name == LAYER)
    binaries = resolve_binaries(loaded.site, LAYER, settings.distribution,
                                {**layer.versions, _version_key(settings): settings.version})
    result: dict[str, Any] = {
        "kubernetes_distribution": settings.distribution,
        "kubernetes_version": settings.version,
        "kubernetes_kubeadm_api": settings.kubeadm_api,
        "kubernetes_cni": settings.cni,
        "kubernetes_artifacts": [binary.as_variable() for binary in binaries],
    }
    if kubeconfig is not None:
        result["kubernetes_kubeconfig_dest"] = str(kubeconfig)
    return result


def kubernetes_host_variables(
    loaded: LoadedSite, variables: dict[str, Any]
) -> dict[str, dict[str, Any]]:
    """Per node: `kubernetes_node`, its part in the cluster ({} without a kubernetes layer)."""
    settings = kubernetes_settings(loaded, variables)
    if settings is None:
        return {}
    plans = plan_nodes(loaded.site, settings)
    return {name: {"kubernetes_node": plan.as_variable()} for name, plan in plans.items()}


def _version_key(settings: ClusterSettings) -> str:
    return "k3s" if settings.distribution == "k3s" else "kubernetes"
