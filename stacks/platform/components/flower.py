"""Federated learning with Flower: the SuperLink on the hub site, SuperNodes on every site."""

from __future__ import annotations

from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from stacks.platform.common import GPU, ComponentNamespace, Platform, type_token

NAMESPACE = "edge-flower"
CERT_SECRET = "superlink-tls"
FLEET_PORT = 9092
# ServerAppIo (9091) stays in the cluster; the Fleet API (9092) is what SuperNodes of every
# site dial; the Control API (9093) is for `flwr run` from inside the site.
CONTROL_PORT = 9093
PORTS = {"serverappio": 9091, "fleet": FLEET_PORT, "control": CONTROL_PORT}


def superlink_deployment(platform: Platform) -> dict[str, Any]:
    labels = {"app.kubernetes.io/name": "flower-superlink"}
    args = ["--ssl-ca-certfile=/certs/ca.crt", "--ssl-certfile=/certs/tls.crt",
            "--ssl-keyfile=/certs/tls.key", "--isolation=subprocess",
            "--database=/state/state.db"]
    return {
        "metadata": {"name": "superlink", "namespace": NAMESPACE, "labels": labels},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": labels},
            "strategy": {"type": "Recreate"},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "imagePullSecrets": platform.pull_secrets(),
                    "securityContext": {"runAsNonRoot": True, "runAsUser": 49999,
                                        "fsGroup": 49999},
                    "containers": [{
                        "name": "superlink",
                        "image": platform.own_image("superlink"),
                        "args": args,
                        "ports": [{"name": name, "containerPort": port}
                                  for name, port in PORTS.items()],
                        "resources": {"requests": {"cpu": "250m", "memory": "256Mi"},
                                      "limits": {"cpu": "2", "memory": "2Gi"}},
                        "readinessProbe": {"tcpSocket": {"port": FLEET_PORT},
                                           "periodSeconds": 10},
                        "volumeMounts": [{"name": "certs", "mountPath": "/certs",
                                          "readOnly": True},
                                         {"name": "state", "mountPath": "/state"}],
                    }],
                    "volumes": [{"name": "certs", "secret": {"secretName": CERT_SECRET}},
                                {"name": "state", "persistentVolumeClaim": {
                                    "claimName": "superlink-state"}}],
                },
            },
        },
    }


def superlink_service(platform: Platform) -> dict[str, Any]:
    return {
        "metadata": {"name": "superlink", "namespace": NAMESPACE},
        # Local keeps the caller's address, which the Control API's policy admits or not.
        # TODO: verify with MetalLB's L2 mode on a cluster (it announces from the pod's node).
        "spec": {"type": "LoadBalancer", "externalTrafficPolicy": "Local",
                 "selector": {"app.kubernetes.io/name": "flower-superlink"},
                 "ports": [{"name": name, "port": service_port(platform, name),
                            "targetPort": port, "protocol": "TCP"}
                           for name, port in PORTS.items()]},
    }


def service_port(platform: Platform, name: str) -> int:
    """The Service's port: the Fleet API's is the blueprint's `flower.superlink_port` (the
    port SuperNodes of every site dial); the pod listens on Flower's own ports."""
    return platform.config.options.flower.superlink_port if name == "fleet" else PORTS[name]


def superlink_address(platform: Platform) -> str:
    """Where this site's SuperNodes dial: its own SuperLink on a hub, the hub's on a member."""
    flower = platform.config.settings.flower
    if flower.role == "member" and flower.superlink_address:
        return flower.superlink_address
    return f"superlink.{NAMESPACE}.svc.cluster.local:{service_port(platform, 'fleet')}"


def supernode_daemonset(platform: Platform, kind: str, nodes: list[str]) -> dict[str, Any]:
    """SuperNodes on the given nodes; on GPU nodes each takes one GPU."""
    labels = {"app.kubernetes.io/name": f"flower-supernode-{kind}"}
    resources: dict[str, Any] = {"requests": {"cpu": "500m", "memory": "1Gi"},
                                 "limits": {"cpu": "4", "memory": "16Gi"}}
    if kind == "gpu":
        resources["limits"][GPU] = "1"
        resources["requests"][GPU] = "1"
    # A member trusts the hub's CA, which the site puts in the flower-hub-ca Secret.
    ca_secret = "flower-hub-ca" if platform.config.settings.flower.role == "member" \
        else CERT_SECRET
    return {
        "metadata": {"name": f"supernode-{kind}", "namespace": NAMESPACE, "labels": labels},
        "spec": {
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "imagePullSecrets": platform.pull_secrets(),
                    "affinity": {"nodeAffinity": {
                        "requiredDuringSchedulingIgnoredDuringExecution": {
                            "nodeSelectorTerms": [{"matchExpressions": [{
                                "key": "kubernetes.io/hostname", "operator": "In",
                                "values": nodes}]}]}}},
                    "securityContext": {"runAsNonRoot": True, "runAsUser": 49999},
                    "containers": [{
                        "name": "supernode",
                        "image": platform.own_image("supernode"),
                        "args": [f"--superlink={superlink_address(platform)}",
                                 "--root-certificates=/certs/ca.crt",
                                 "--isolation=subprocess"],
                        "resources": resources,
                        "volumeMounts": [{"name": "certs", "mountPath": "/certs",
                                          "readOnly": True}],
                    }],
                    "volumes": [{"name": "certs", "secret": {
                        "secretName": ca_secret, "items": [{"key": "ca.crt",
                                                            "path": "ca.crt"}]}}],
                },
            },
        },
    }


def supernode_nodes(platform: Platform) -> dict[str, list[str]]:
    """GPU nodes and plain worker nodes that run a SuperNode, per the blueprint."""
    roles = platform.config.options.flower.supernode_roles
    gpu_nodes = platform.config.nodes_with("gpu") if "gpu" in roles else []
    workers = [node for node in platform.config.nodes_with("worker")
               if node not in gpu_nodes] if "worker" in roles else []
    return {kind: nodes for kind, nodes in (("gpu", gpu_nodes), ("cpu", workers)) if nodes}


class Flower(pulumi.ComponentResource):
    def __init__(self, name: str, platform: Platform,
                 opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__(type_token("Flower"), name, None, opts)
        space = ComponentNamespace(f"{name}-space", platform, "flower",
                                   pulumi.ResourceOptions(parent=self))
        after = pulumi.ResourceOptions(parent=self, depends_on=[space, *platform.issuer_ready])
        role = platform.config.settings.flower.role
        waits: list[pulumi.Resource] = [space]
        if role == "hub":
            host = platform.host("flower")
            cert = k8s.apiextensions.CustomResource(
                f"{name}-superlink-cert", api_version="cert-manager.io/v1", kind="Certificate",
                metadata={"name": "superlink", "namespace": NAMESPACE},
                spec={"secretName": CERT_SECRET, "dnsNames": [
                    host, f"superlink.{NAMESPACE}.svc.cluster.local", "superlink"],
                      "issuerRef": {"name": "site-ca", "kind": "ClusterIssuer"}},
                opts=after)
            state = k8s.core.v1.PersistentVolumeClaim(
                f"{name}-superlink-state",
                metadata={"name": "superlink-state", "namespace": NAMESPACE},
                spec={"accessModes": ["ReadWriteOnce"],
                      "storageClassName": platform.default_storage_class,
                      "resources": {"requests": {"storage": "1Gi"}}},
                opts=pulumi.ResourceOptions(parent=self,
                                            depends_on=[space, *platform.storage_ready]))
            body = superlink_deployment(platform)
            link = k8s.apps.v1.Deployment(
                f"{name}-superlink", metadata=body["metadata"], spec=body["spec"],
                opts=pulumi.ResourceOptions(parent=self, depends_on=[cert, state]))
            service = superlink_service(platform)
            k8s.core.v1.Service(f"{name}-superlink-service", metadata=service["metadata"],
                                spec=service["spec"],
                                opts=pulumi.ResourceOptions(parent=self, depends_on=[space]))
            # SuperNodes of member sites reach the Fleet API from outside the cluster.
            k8s.networking.v1.NetworkPolicy(
                f"{name}-fleet-policy",
                metadata={"name": "superlink-fleet-from-anywhere", "namespace": NAMESPACE},
                spec={"podSelector": {"matchLabels": {
                    "app.kubernetes.io/name": "flower-superlink"}},
                      "policyTypes": ["Ingress"],
                      "ingress": [{"ports": [{"port": FLEET_PORT, "protocol": "TCP"}]}]},
                opts=pulumi.ResourceOptions(parent=self, depends_on=[space]))
            # The Control API runs Flower apps (code) on every SuperNode and has no login
            # in open-source Flower: only the networks the site names may reach it.
            control_from = platform.config.settings.flower.control_from
            if control_from:
                k8s.networking.v1.NetworkPolicy(
                    f"{name}-control-policy",
                    metadata={"name": "superlink-control-from-site", "namespace": NAMESPACE},
                    spec={"podSelector": {"matchLabels": {
                        "app.kubernetes.io/name": "flower-superlink"}},
                          "policyTypes": ["Ingress"],
                          "ingress": [{"from": [{"ipBlock": {"cidr": cidr}}
                                                for cidr in control_from],
                                       "ports": [{"port": CONTROL_PORT, "protocol": "TCP"}]}]},
                    opts=pulumi.ResourceOptions(parent=self, depends_on=[space]))
            waits.append(link)
            platform.outputs["flower_superlink_address"] = (
                f"{host}:{service_port(platform, 'fleet')}")
            # What the validation's Flower checks use: `flwr` speaks to the Control API,
            # whose certificate the site CA issued; every SuperNode of this site takes part.
            platform.outputs["flower_control_address"] = f"{host}:{CONTROL_PORT}"
            platform.outputs["flower_supernodes"] = sum(
                len(nodes) for nodes in supernode_nodes(platform).values())
        for kind, nodes in supernode_nodes(platform).items():
            body = supernode_daemonset(platform, kind, nodes)
            k8s.apps.v1.DaemonSet(f"{name}-supernode-{kind}", metadata=body["metadata"],
                                  spec=body["spec"],
                                  opts=pulumi.ResourceOptions(parent=self, depends_on=waits))
        self.register_outputs({"role": role})
