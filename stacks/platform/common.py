"""What every platform component shares: images, Helm releases, namespaces, protected ingress."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from blueprint.platform.config import PlatformConfig, Quota

PROJECT = "edge"
HELM_TIMEOUT_S = 900
GPU = "nvidia.com/gpu"


def type_token(name: str) -> str:
    """One type-token scheme for every component: edge:platform:<Name>."""
    return f"{PROJECT}:platform:{name}"


# --- Images -------------------------------------------------------------------------------


def split_image(ref: str) -> tuple[str, str, str]:
    """registry, path and tag of a pinned reference (registry/path:tag)."""
    registry, rest = ref.split("/", 1)
    path, tag = rest.rsplit(":", 1)
    return registry, path, tag


def canonical_image(ref: str) -> str:
    """A reference as a release manifest may write it (`mysql:8.0`, `org/app`), spelled in
    full with the container runtime's defaults: docker.io, library/, latest."""
    first, _, rest = ref.partition("/")
    if not rest or ("." not in first and ":" not in first and first != "localhost"):
        first, rest = "docker.io", ref if "/" in ref else f"library/{ref}"
    if "@" not in rest and ":" not in rest.rsplit("/", 1)[-1]:
        rest = f"{rest}:latest"
    return f"{first}/{rest}"


def override_registry(ref: str, registry: str | None) -> str:
    """The same image from the site's registry: its path and tag kept, its host replaced."""
    if not registry:
        return ref
    _, path, tag = split_image(ref)
    return f"{registry}/{path}:{tag}"


# How each chart spells an image in its values; the reference is already overridden.
def repository_tag(ref: str) -> dict[str, str]:
    registry, path, tag = split_image(ref)
    return {"repository": f"{registry}/{path}", "tag": tag}


def registry_repository_tag(ref: str) -> dict[str, str]:
    registry, path, tag = split_image(ref)
    return {"registry": registry, "repository": path, "tag": tag}


def registry_image_tag(ref: str) -> dict[str, str]:
    registry, path, tag = split_image(ref)
    return {"registry": registry, "image": path, "tag": tag, "digest": ""}


def name_tag(ref: str) -> dict[str, str]:
    registry, path, tag = split_image(ref)
    return {"name": f"{registry}/{path}", "tag": tag}


def repository_image_version(ref: str) -> dict[str, str]:
    registry, path, tag = split_image(ref)
    folder, _, image = path.rpartition("/")
    return {"repository": f"{registry}/{folder}" if folder else registry, "image": image,
            "version": tag}


# --- The context every component gets -----------------------------------------------------


@dataclass
class Platform:
    """The stack's config plus what components hand to each other."""

    config: PlatformConfig
    namespaces: dict[str, k8s.core.v1.Namespace] = field(default_factory=dict)
    # Resources others wait for: storage classes, cert-manager's issuers.
    storage_ready: list[pulumi.Resource] = field(default_factory=list)
    issuer_ready: list[pulumi.Resource] = field(default_factory=list)
    outputs: dict[str, Any] = field(default_factory=dict)

    @property
    def domain(self) -> str:
        return self.config.settings.domain

    @property
    def default_storage_class(self) -> str:
        return self.config.options.storage.default_class

    @property
    def pull_secret(self) -> str | None:
        registry = self.config.registry
        if registry.pull_secret:
            return registry.pull_secret
        return "platform-registry" if self.config.registry_auth else None

    def image(self, chart: str, role: str) -> str:
        """A chart's pinned image, from the site's registry when it names one."""
        ref = self.config.charts[chart].images[role]
        return override_registry(ref, self.config.registry.override)

    def own_image(self, role: str) -> str:
        return override_registry(self.config.options.images[role],
                                 self.config.registry.override)

    def host(self, name: str) -> str:
        return f"{name}.{self.domain}"

    def pull_secrets(self) -> list[dict[str, str]]:
        return [{"name": self.pull_secret}] if self.pull_secret else []

    def release(
        self, name: str, chart_key: str, namespace: str, values: dict[str, Any],
        parent: pulumi.Resource, depends_on: Sequence[pulumi.Resource] = (),
    ) -> k8s.helm.v3.Release:
        """A Helm release of a pinned chart from its catalogue source (hooks kept)."""
        chart = self.config.charts[chart_key]
        opts = pulumi.ResourceOptions(parent=parent, depends_on=list(depends_on))
        if chart.repository_url.startswith("oci://"):
            source: dict[str, Any] = {"chart": f"{chart.repository_url}/{chart.chart}"}
        else:
            source = {"chart": chart.chart,
                      "repository_opts": k8s.helm.v3.RepositoryOptsArgs(
                          repo=chart.repository_url)}
        return k8s.helm.v3.Release(
            name,
            k8s.helm.v3.ReleaseArgs(
                **source, version=chart.version, namespace=namespace, name=name,
                values=values, cleanup_on_fail=True, timeout=HELM_TIMEOUT_S, max_history=5,
            ),
            opts=opts,
        )


# --- Namespaces, quotas, policies -----------------------------------------------------------

# Namespaces whose pods may reach every component: the ingress controller and Prometheus.
SHARED_NAMESPACES = ("edge-access", "edge-monitoring")
# Which other components' pods may call a component: the object store serves every one,
# MLflow and model endpoints are called from notebooks and pipelines.
CLIENTS: dict[str, tuple[str, ...]] = {
    "storage": ("notebooks", "mlflow", "pipelines", "serving", "flower"),
    "mlflow": ("notebooks", "pipelines", "serving"),
    "serving": ("notebooks", "pipelines"),
}
# Ports open to any source: the API server calls admission webhooks from the node network
# and users reach the ingress controller from outside the cluster.
# TODO: narrow the webhook ports to the control-plane nodes once tried on a cluster whose
# CNI enforces policies (k3s's kube-router does).
OPEN_PORTS: dict[str, tuple[int, ...]] = {
    "access": (80, 443, 8443, 9443, 10250),
    "mlflow": (9443,),
    "serving": (9443,),
    "storage": (9443,),
    "monitoring": (10250,),
}
# Namespaces whose pods ask for GPUs. The GPU operator's own namespace is one: its device
# plugin validator starts a pod that takes one GPU on each node it checks.
GPU_COMPONENTS = ("gpu", "notebooks", "serving", "flower", "pipelines")


def default_quota(platform: Platform, component: str) -> Quota:
    """The blueprint's quota, or one sized to the site: GPUs only where GPU work runs."""
    chosen = platform.config.options.quotas.get(component)
    if chosen is not None:
        return chosen
    gpus = 0
    if component in GPU_COMPONENTS:
        options = platform.config.options.gpu
        per_node = options.time_slicing_replicas if options.sharing == "time-slicing" else 1
        gpus = max(1, len(platform.config.nodes_with("gpu")) * per_node)
    return Quota(gpus=gpus)


class ComponentNamespace(pulumi.ComponentResource):
    """A component's namespace with its quota, default requests and ingress policy."""

    def __init__(self, name: str, platform: Platform, component: str,
                 opts: pulumi.ResourceOptions | None = None, *,
                 made_by: pulumi.Resource | None = None, namespace: str | None = None,
                 open_ports: Sequence[int] | None = None) -> None:
        """`made_by`: the namespace `namespace` is made by that resource (a release's
        manifest), which this then waits for instead of making it."""
        super().__init__(type_token("ComponentNamespace"), name, None, opts)
        self.name = namespace or f"edge-{component}"
        child = pulumi.ResourceOptions(parent=self)
        labels = {"app.kubernetes.io/part-of": "edge-platform",
                  "edge.platform/component": component}
        self.namespace: pulumi.Resource
        if made_by is None:
            made = k8s.core.v1.Namespace(
                f"{name}-ns", metadata={"name": self.name, "labels": labels}, opts=child)
            platform.namespaces[component] = made
            self.namespace = made
        else:
            self.namespace = made_by
        in_ns = pulumi.ResourceOptions(parent=self, depends_on=[self.namespace])

        quota = default_quota(platform, component)
        self.quota = k8s.core.v1.ResourceQuota(
            f"{name}-quota",
            metadata={"name": "component-quota", "namespace": self.name},
            spec={"hard": {"requests.cpu": quota.cpu, "requests.memory": quota.memory,
                           "pods": str(quota.pods), f"requests.{GPU}": str(quota.gpus)}},
            opts=in_ns,
        )
        # A quota on requests refuses pods that state none; charts often do not.
        self.limits = k8s.core.v1.LimitRange(
            f"{name}-limits",
            metadata={"name": "default-requests", "namespace": self.name},
            spec={"limits": [{"type": "Container",
                              "defaultRequest": {"cpu": "100m", "memory": "128Mi"}}]},
            opts=in_ns,
        )
        sources = [*SHARED_NAMESPACES, *(f"edge-{c}" for c in CLIENTS.get(component, ()))]
        peers = [{"namespaceSelector": {"matchLabels": {
            "kubernetes.io/metadata.name": peer}}} for peer in sources]
        self.policy = k8s.networking.v1.NetworkPolicy(
            f"{name}-ingress-policy",
            metadata={"name": "same-namespace-and-shared", "namespace": self.name},
            spec={"podSelector": {}, "policyTypes": ["Ingress"],
                  "ingress": [{"from": [{"podSelector": {}}, *peers]}]},
            opts=in_ns,
        )
        ports = OPEN_PORTS.get(component, ()) if open_ports is None else open_ports
        if ports:
            k8s.networking.v1.NetworkPolicy(
                f"{name}-open-ports",
                metadata={"name": "webhooks-and-entry-points", "namespace": self.name},
                spec={"podSelector": {}, "policyTypes": ["Ingress"],
                      "ingress": [{"ports": [{"port": port, "protocol": "TCP"}
                                             for port in ports]}]},
                opts=in_ns,
            )
        if platform.config.registry_auth and platform.pull_secret:
            auth = pulumi.Output.secret(platform.config.registry_auth)
            k8s.core.v1.Secret(
                f"{name}-pull-secret",
                metadata={"name": platform.pull_secret, "namespace": self.name},
                type="kubernetes.io/dockerconfigjson",
                string_data={".dockerconfigjson": auth},
                opts=in_ns,
            )
        self.register_outputs({"name": self.name})


def protected_ingress(
    platform: Platform, name: str, namespace: str, host: str, service: str, port: int,
    parent: pulumi.Resource, depends_on: Sequence[pulumi.Resource] = (),
) -> k8s.networking.v1.Ingress:
    """An HTTPS endpoint behind oauth2-proxy: nobody reaches it without logging in."""
    auth = f"https://{platform.host('auth')}/oauth2"
    annotations = {
        "cert-manager.io/cluster-issuer": "site-ca",
        "nginx.ingress.kubernetes.io/auth-url":
            "http://oauth2-proxy.edge-access.svc.cluster.local/oauth2/auth",
        "nginx.ingress.kubernetes.io/auth-signin": f"{auth}/start?rd=$scheme://$host$request_uri",
        "nginx.ingress.kubernetes.io/auth-response-headers":
            "X-Auth-Request-User,X-Auth-Request-Email,Authorization",
    }
    return k8s.networking.v1.Ingress(
        name,
        metadata={"name": name, "namespace": namespace, "annotations": annotations},
        spec={
            "ingressClassName": platform.config.options.access.ingress_class,
            "tls": [{"hosts": [host], "secretName": f"{name}-tls"}],
            "rules": [{"host": host, "http": {"paths": [{
                "path": "/", "pathType": "Prefix",
                "backend": {"service": {"name": service, "port": {"number": port}}},
            }]}}],
        },
        opts=pulumi.ResourceOptions(parent=parent, depends_on=[*platform.issuer_ready,
                                                               *depends_on]),
    )


def api_ingress(
    platform: Platform, name: str, namespace: str, host: str, service: str, port: int,
    paths: Sequence[str], tls_secret: str, parent: pulumi.Resource,
    depends_on: Sequence[pulumi.Resource] = (),
) -> k8s.networking.v1.Ingress:
    """API paths of a protected host that skip oauth2-proxy: only for an application that
    authenticates every call to them itself (a token it issued), never for one that does not.

    The host's protected ingress owns the certificate; this one reuses its TLS secret, so
    ingress-nginx serves both from one server block and cert-manager makes one certificate.
    """
    return k8s.networking.v1.Ingress(
        name,
        metadata={"name": name, "namespace": namespace,
                  "labels": {"edge.platform/login": "application"}},
        spec={
            "ingressClassName": platform.config.options.access.ingress_class,
            "tls": [{"hosts": [host], "secretName": tls_secret}],
            "rules": [{"host": host, "http": {"paths": [{
                "path": path, "pathType": "Prefix",
                "backend": {"service": {"name": service, "port": {"number": port}}},
            } for path in paths]}}],
        },
        opts=pulumi.ResourceOptions(parent=parent, depends_on=[*platform.issuer_ready,
                                                               *depends_on]),
    )


# Where pods that log users in through the bundled Dex find the site CA's certificate.
SITE_CA_TRUST = "site-ca-trust"
SITE_CA_DIR = "/etc/site-ca"
SITE_CA_FILE = f"{SITE_CA_DIR}/ca.crt"


def trusts_site_ca(platform: Platform) -> bool:
    """The login provider's certificate is the site CA's (the bundled Dex at login.<domain>):
    the OIDC clients' calls to it from inside the cluster must trust that CA."""
    return platform.config.options.access.sso == "dex"


def site_ca_trust(platform: Platform, name: str, namespace: str,
                  parent: pulumi.Resource) -> pulumi.Resource:
    """The Secret `site-ca-trust` in `namespace`, whose ca.crt is the site CA's certificate.

    cert-manager writes the issuing CA's certificate into every certificate's Secret; this
    certificate exists for that alone (its own key is never used).
    """
    return k8s.apiextensions.CustomResource(
        name, api_version="cert-manager.io/v1", kind="Certificate",
        metadata={"name": SITE_CA_TRUST, "namespace": namespace},
        spec={"secretName": SITE_CA_TRUST, "commonName": f"site CA trust in {namespace}",
              "duration": "87600h", "issuerRef": {"name": "site-ca", "kind": "ClusterIssuer"}},
        opts=pulumi.ResourceOptions(parent=parent, depends_on=list(platform.issuer_ready)))


def site_ca_volume() -> dict[str, Any]:
    return {"name": "site-ca", "secret": {"secretName": SITE_CA_TRUST,
                                          "items": [{"key": "ca.crt", "path": "ca.crt"}]}}


def site_ca_mount() -> dict[str, Any]:
    return {"name": "site-ca", "mountPath": SITE_CA_DIR, "readOnly": True}


def to_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True)
