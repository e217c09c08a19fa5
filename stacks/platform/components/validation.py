"""How `blueprint validate` reaches APIs that have no login of their own.

MLflow, Prometheus and Argo's server (in its "server" auth mode) sit behind oauth2-proxy,
which takes browser logins, not tokens; publishing them without it would leave them open.
The validation goes through the Kubernetes API server's service proxy instead
(`/api/v1/namespaces/<ns>/services/<scheme>:<name>:<port>/proxy`) with the token of one
ServiceAccount that may use exactly those proxies and nothing else: the API server
authenticates and authorizes every call. Nothing new is published; the proxied pods' ports
admit the control-plane nodes, where the API server runs.
"""

from __future__ import annotations

import base64
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from stacks.platform.common import Platform, type_token

ACCOUNT = "blueprint-validate"
ACCOUNT_NAMESPACE = "edge-access"
TOKEN_SECRET = "blueprint-validate-token"


@dataclass(frozen=True)
class ProxiedService:
    """A Service the validation reaches through the API server's service proxy."""

    api: str
    component: str
    namespace: str
    service: str
    port: int
    pod_port: int
    scheme: str = "http"

    @property
    def proxy_name(self) -> str:
        return f"{self.scheme}:{self.service}:{self.port}"

    @property
    def path(self) -> str:
        """The proxy's path on the API server; the API's own paths follow it."""
        return f"/api/v1/namespaces/{self.namespace}/services/{self.proxy_name}/proxy"


def decoded_token(data: Any) -> str:
    """The token the API server's token controller wrote into the Secret ('' until then)."""
    token = (data or {}).get("token") or ""
    return base64.b64decode(token).decode() if token else ""


def api_server_sources(platform: Platform) -> list[dict[str, Any]]:
    """Network policy peers for the API server: the control-plane nodes' addresses."""
    peers = []
    for node in platform.config.nodes:
        if "control-plane" in node.roles and node.address:
            bits = ipaddress.ip_address(node.address).max_prefixlen
            peers.append({"ipBlock": {"cidr": f"{node.address}/{bits}"}})
    return peers


class ValidationAccess(pulumi.ComponentResource):
    """The validation's ServiceAccount, its token, and a proxy-only role per service."""

    def __init__(self, name: str, platform: Platform, services: Sequence[ProxiedService],
                 opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__(type_token("ValidationAccess"), name, None, opts)
        after_namespace = pulumi.ResourceOptions(
            parent=self, depends_on=[platform.namespaces["access"]])
        account = k8s.core.v1.ServiceAccount(
            f"{name}-account", metadata={"name": ACCOUNT, "namespace": ACCOUNT_NAMESPACE},
            automount_service_account_token=False, opts=after_namespace)
        # A long-lived token in a Secret the token controller fills; Pulumi waits for it.
        # Deleting the Secret revokes the token (the next deploy makes a new one).
        secret = k8s.core.v1.Secret(
            f"{name}-token",
            metadata={"name": TOKEN_SECRET, "namespace": ACCOUNT_NAMESPACE,
                      "annotations": {"kubernetes.io/service-account.name": ACCOUNT,
                                      "pulumi.com/waitFor": "jsonpath={.data.token}"}},
            type="kubernetes.io/service-account-token",
            opts=pulumi.ResourceOptions(parent=self, depends_on=[account]))

        subject = {"kind": "ServiceAccount", "name": ACCOUNT, "namespace": ACCOUNT_NAMESPACE}
        sources = api_server_sources(platform)
        for item in services:
            in_ns = pulumi.ResourceOptions(
                parent=self, depends_on=[platform.namespaces[item.component]])
            role = k8s.rbac.v1.Role(
                f"{name}-{item.component}-proxy",
                metadata={"name": f"{ACCOUNT}-proxy", "namespace": item.namespace},
                # The API server names the proxied service as written in the path.
                rules=[{"apiGroups": [""], "resources": ["services/proxy"],
                        "resourceNames": [item.service, item.proxy_name],
                        "verbs": ["get", "create", "update", "patch", "delete"]}],
                opts=in_ns)
            k8s.rbac.v1.RoleBinding(
                f"{name}-{item.component}-proxy-binding",
                metadata={"name": f"{ACCOUNT}-proxy", "namespace": item.namespace},
                role_ref={"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                          "name": f"{ACCOUNT}-proxy"},
                subjects=[subject], opts=pulumi.ResourceOptions(parent=self,
                                                                depends_on=[role]))
            # The proxy connects from the API server, which the namespace's policy does not
            # let in. TODO: verify on a cluster that the connection's source is the
            # control-plane node's address (an overlay may use its tunnel address instead).
            if sources:
                k8s.networking.v1.NetworkPolicy(
                    f"{name}-{item.component}-api-server",
                    metadata={"name": "api-server-proxy", "namespace": item.namespace},
                    spec={"podSelector": {}, "policyTypes": ["Ingress"],
                          "ingress": [{"from": sources, "ports": [
                              {"port": item.pod_port, "protocol": "TCP"}]}]},
                    opts=in_ns)

        self.token = pulumi.Output.secret(secret.data.apply(decoded_token))
        for item in services:
            platform.outputs[f"{item.api}_api_path"] = item.path
        platform.outputs["validate_token"] = self.token
        self.register_outputs({"account": ACCOUNT})
