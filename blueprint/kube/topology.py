"""Who is what in a site's cluster: control planes, workers, the API endpoint, per node.

The product decides this once, in Python, and hands each node its part as the host variable
`kubernetes_node`; the role's templates only render it. The golden-file tests render the same
templates from the same values.
"""

from __future__ import annotations

import logging
import re
from dataclasses import asdict, dataclass, field
from typing import Any

from blueprint.errors import BadInput
from blueprint.models import Site

log = logging.getLogger(__name__)

DISTRIBUTIONS = ("k3s", "kubeadm")
CNIS = {"k3s": ("flannel",), "kubeadm": ("calico", "cilium")}
DEFAULT_CNI = {"k3s": "flannel", "kubeadm": "calico"}
API_PORT = 6443
VERSION = re.compile(r"^v(\d+)\.(\d+)\.(\d+)(?:\+k3s\d+)?$")


@dataclass(frozen=True)
class ClusterSettings:
    """The cluster-wide choices: from the blueprint's layer, then the site's overrides."""

    distribution: str
    version: str
    cni: str
    api_vip: str = ""
    api_lb: str = ""
    pod_cidr: str = "10.42.0.0/16"
    service_cidr: str = "10.43.0.0/16"
    cluster_name: str = "cluster"
    containerd_socket: str = "/run/containerd/containerd.sock"

    @property
    def minor(self) -> tuple[int, int]:
        match = VERSION.match(self.version)
        assert match is not None  # checked in cluster_settings
        return int(match.group(1)), int(match.group(2))

    @property
    def kubeadm_api(self) -> str:
        """The kubeadm configuration API this Kubernetes version reads by default."""
        return "kubeadm.k8s.io/v1beta4" if self.minor >= (1, 31) else "kubeadm.k8s.io/v1beta3"


@dataclass(frozen=True)
class NodePlan:
    """One node's part in the cluster, as the role's templates read it."""

    kind: str  # control-plane or worker
    init: bool  # the first control plane: it creates the cluster, the others join it
    ha: bool
    node_ip: str
    endpoint: str  # host of the API endpoint every joining node talks to
    port: int
    tls_sans: list[str] = field(default_factory=list)

    @property
    def server_url(self) -> str:
        host = f"[{self.endpoint}]" if ":" in self.endpoint else self.endpoint
        return f"https://{host}:{self.port}"

    def as_variable(self) -> dict[str, Any]:
        return {**asdict(self), "server_url": self.server_url}


def cluster_settings(variables: dict[str, Any], versions: dict[str, str]) -> ClusterSettings:
    """Settings from merged role variables (layer options, site overrides) and pinned versions."""
    distribution = str(variables.get("kubernetes_distribution", "k3s"))
    if distribution not in DISTRIBUTIONS:
        msg = (f"kubernetes_distribution '{distribution}' is not known; use one of "
               f"{', '.join(DISTRIBUTIONS)}")
        raise BadInput(msg)
    key = "k3s" if distribution == "k3s" else "kubernetes"
    version = str(variables.get("kubernetes_version") or versions.get(key, ""))
    if not VERSION.match(version) or (distribution == "k3s") != ("+k3s" in version):
        shape = "v1.31.4+k3s1" if distribution == "k3s" else "v1.31.4"
        msg = (f"layer kubernetes: version '{version}' (versions.{key}) is not a "
               f"{distribution} release version like {shape}")
        raise BadInput(msg)
    cni = str(variables.get("kubernetes_cni") or DEFAULT_CNI[distribution])
    if not any(cni in known for known in CNIS.values()):
        msg = (f"kubernetes_cni '{cni}' is not known; use flannel with k3s, calico or cilium "
               "with kubeadm")
        raise BadInput(msg)
    if cni not in CNIS[distribution]:
        why = ("k3s runs its own flannel here" if distribution == "k3s"
               else "kubeadm's pod network is installed by this product")
        msg = (f"kubernetes_cni '{cni}' does not go with {distribution} ({why}); use "
               f"{' or '.join(CNIS[distribution])}")
        raise BadInput(msg)
    settings = ClusterSettings(
        distribution=distribution, version=version, cni=cni,
        api_vip=str(variables.get("kubernetes_api_vip") or ""),
        api_lb=str(variables.get("kubernetes_api_lb") or ""),
        pod_cidr=str(variables.get("kubernetes_pod_cidr") or ClusterSettings.pod_cidr),
        service_cidr=str(variables.get("kubernetes_service_cidr")
                         or ClusterSettings.service_cidr),
        cluster_name=str(variables.get("blueprint_site") or "cluster"),
    )
    if distribution == "kubeadm" and settings.minor < (1, 22):
        msg = f"kubeadm {version}: versions before v1.22 (kubeadm API v1beta3) are not supported"
        raise BadInput(msg)
    if settings.api_vip and settings.api_lb:
        msg = "give kubernetes_api_vip (kube-vip) or kubernetes_api_lb (a load balancer), not both"
        raise BadInput(msg)
    return settings


def _lb_host_port(address: str) -> tuple[str, int]:
    if address.startswith("["):
        host, _, rest = address[1:].partition("]")
        return host, int(rest.lstrip(":") or API_PORT)
    if address.count(":") == 1:
        host, port = address.split(":")
        return host, int(port)
    return address, API_PORT


def plan_nodes(site: Site, settings: ClusterSettings) -> dict[str, NodePlan]:
    """Every node's part; control planes in site-file order, the first one creates the cluster."""
    servers = [node for node in site.nodes if "control-plane" in node.roles]
    if not servers:
        msg = "layer kubernetes: the site has no node with role control-plane; give one or three"
        raise BadInput(msg)
    if len(servers) % 2 == 0:
        names = ", ".join(node.name for node in servers)
        msg = (f"layer kubernetes: {len(servers)} control-plane nodes ({names}); etcd keeps "
               "quorum only with an odd number: use 1, 3 or 5")
        raise BadInput(msg)
    ha = len(servers) > 1

    # The API endpoint every joining node and the kubeconfig use.
    if settings.api_vip:
        endpoint, port = settings.api_vip, API_PORT
    elif settings.api_lb:
        endpoint, port = _lb_host_port(settings.api_lb)
    else:
        if ha and settings.distribution == "kubeadm":
            msg = ("layer kubernetes: kubeadm with several control planes needs a stable API "
                   "endpoint; set kubernetes_api_vip (kube-vip) or kubernetes_api_lb in the "
                   "site's overrides")
            raise BadInput(msg)
        if ha:
            log.warning("k3s HA without kubernetes_api_vip or kubernetes_api_lb: nodes register "
                        "through %s, which is then a single point of failure", servers[0].name)
        endpoint, port = str(servers[0].address), API_PORT

    sans = sorted({endpoint, *(str(node.address) for node in servers)})
    plans = {}
    for node in site.nodes:
        is_server = "control-plane" in node.roles
        plans[node.name] = NodePlan(
            kind="control-plane" if is_server else "worker",
            init=node.name == servers[0].name,
            ha=ha,
            node_ip=str(node.address),
            endpoint=endpoint,
            port=port,
            tls_sans=sans if is_server else [],
        )
    return plans
