"""The kubernetes layer's role variables: per node (its part) and for the whole site."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from blueprint.artifacts import ResolvedBinary, resolve_binaries
from blueprint.errors import BadInput
from blueprint.kube.cni import check_image_mirrors
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
    binaries = site_binaries(loaded, variables, locked_binaries(loaded))
    result: dict[str, Any] = {
        "kubernetes_distribution": settings.distribution,
        "kubernetes_version": settings.version,
        "kubernetes_kubeadm_api": settings.kubeadm_api,
        "kubernetes_cni": settings.cni,
        "kubernetes_pod_cidr": settings.pod_cidr,
        "kubernetes_service_cidr": settings.service_cidr,
        "kubernetes_artifacts": [binary.as_variable() for binary in binaries if not binary.cni],
        # kubeadm's pod network: applied by the first control plane (k3s ships flannel).
        "kubernetes_cni_artifacts": [binary.as_variable() for binary in binaries
                                     if binary.cni],
    }
    if kubeconfig is not None:
        result["kubernetes_kubeconfig_dest"] = str(kubeconfig)
    return result


def check_offline_kubeadm(loaded: LoadedSite, variables: dict[str, Any]) -> None:
    """Refuse an offline kubeadm site: the images its cluster starts are not in the bundle.

    Its preflight would pass and the first control plane would then wait out the pod
    network's ready timeout for images no node can pull.
    """
    # TODO: lock kubeadm's and the pod network's images in the bill of materials (and the
    # bundle), then let an offline kubeadm site through.
    settings = kubernetes_settings(loaded, variables)
    if (settings is None or settings.distribution != "kubeadm"
            or loaded.site.artifacts.mode != "offline"):
        return
    msg = (f"{loaded.site_file}: artifacts.mode: offline is not supported with kubernetes "
           f"distribution kubeadm yet: the images kubeadm and its pod network {settings.cni} "
           "start are not in the bill of materials yet, so no offline node could pull them; "
           "use artifacts.mode mirror or online, or distribution k3s")
    raise BadInput(msg)


def check_kubernetes_images(loaded: LoadedSite, variables: dict[str, Any]) -> None:
    """Refuse a site whose nodes could not pull the kubernetes layer's images.

    Deploy's and plan's preflight call it, not every inventory render: reset, remove-node,
    certs renew and upgrade pull no pod network image and must still run on such a site.
    """
    if kubernetes_settings(loaded, variables) is None:
        return
    binaries = site_binaries(loaded, variables, locked_binaries(loaded))
    check_image_mirrors(loaded.site, binaries, loaded.site_file)


def site_binaries(
    loaded: LoadedSite, variables: dict[str, Any],
    locked: dict[tuple[str, str], str] | None = None,
) -> list[ResolvedBinary]:
    """The release files the site's kubernetes layer installs, its pod network's among them
    ([] without the layer)."""
    settings = kubernetes_settings(loaded, variables)
    if settings is None:
        return []
    layer = next(ly for ly in loaded.blueprint.layers if ly.name == LAYER)
    return resolve_binaries(loaded.site, LAYER, settings.distribution,
                            {**layer.versions, _version_key(settings): settings.version}, locked,
                            cni=settings.cni)


def locked_binaries(loaded: LoadedSite) -> dict[tuple[str, str], str] | None:
    """An offline site's binaries as its bill of materials pins them (None otherwise)."""
    if loaded.site.artifacts.mode != "offline":
        return None
    from blueprint.bom.lock import load_lock, lock_path

    path = lock_path(loaded)
    if not path.exists():
        return {}  # every binary is then refused by name; deploy asks for a lock first
    lock = load_lock(path)
    return {(item.name, item.version): item.sha256 for item in lock.items if item.kind == "file"}


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
