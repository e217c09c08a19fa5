"""kube-prometheus-stack that also picks up other releases' ServiceMonitors, GPU dashboards."""

from __future__ import annotations

from typing import Any

import pulumi
import pulumi_kubernetes as k8s
import pulumi_random as random

from stacks.platform.common import (
    SITE_CA_DIR,
    SITE_CA_FILE,
    SITE_CA_TRUST,
    ComponentNamespace,
    Platform,
    protected_ingress,
    registry_repository_tag,
    site_ca_trust,
    to_json,
    trusts_site_ca,
    type_token,
)

# DCGM exporter metrics, one panel each: what an operator looks at first on a GPU node.
GPU_PANELS = (
    ("GPU utilisation (%)", "DCGM_FI_DEV_GPU_UTIL"),
    ("GPU memory used (MiB)", "DCGM_FI_DEV_FB_USED"),
    ("GPU temperature (C)", "DCGM_FI_DEV_GPU_TEMP"),
    ("GPU power (W)", "DCGM_FI_DEV_POWER_USAGE"),
    ("XID errors", "DCGM_FI_DEV_XID_ERRORS"),
)


def gpu_dashboard() -> str:
    panels = [{
        "id": index + 1, "type": "timeseries", "title": title,
        "gridPos": {"x": (index % 2) * 12, "y": (index // 2) * 8, "w": 12, "h": 8},
        "datasource": {"type": "prometheus", "uid": "prometheus"},
        "targets": [{"expr": f"{metric}", "legendFormat": "{{Hostname}} GPU {{gpu}}"}],
    } for index, (title, metric) in enumerate(GPU_PANELS)]
    return to_json({"title": "GPUs (DCGM)", "uid": "edge-gpus", "schemaVersion": 39,
                    "tags": ["gpu", "edge"], "panels": panels, "time": {"from": "now-6h",
                                                                        "to": "now"}})


def prometheus_values(platform: Platform, issuer: str, client_secret: Any,
                      admin_password: Any) -> dict[str, Any]:
    options = platform.config.options.monitoring

    def image(role: str) -> dict[str, str]:
        return registry_repository_tag(platform.image("kube-prometheus-stack", role))

    # Grafana calls the login provider's token and userinfo URLs itself.
    trust = trusts_site_ca(platform)
    storage = {"volumeClaimTemplate": {"spec": {
        "storageClassName": platform.default_storage_class, "accessModes": ["ReadWriteOnce"],
        "resources": {"requests": {"storage": f"{options.storage_gib}Gi"}}}}}
    return {
        "global": {"imagePullSecrets": platform.pull_secrets()},
        "prometheusOperator": {"image": image("operator")},
        "prometheus": {"prometheusSpec": {
            "image": image("prometheus"), "retention": options.retention,
            # The default selects only this release's monitors; the GPU operator's DCGM
            # exporter and ingress-nginx bring their own.
            "serviceMonitorSelectorNilUsesHelmValues": False,
            "podMonitorSelectorNilUsesHelmValues": False,
            "ruleSelectorNilUsesHelmValues": False,
            "storageSpec": storage}},
        "alertmanager": {"alertmanagerSpec": {"image": image("alertmanager")}},
        "kube-state-metrics": {"image": image("kube_state_metrics")},
        "prometheus-node-exporter": {"image": image("node_exporter")},
        "grafana": {
            "image": image("grafana"),
            "adminPassword": admin_password,
            "ingress": {"enabled": False},
            "persistence": {"enabled": True, "storageClassName":
                            platform.default_storage_class},
            "sidecar": {"dashboards": {"enabled": True, "label": "grafana_dashboard",
                                       "searchNamespace": "ALL"}},
            **({"extraSecretMounts": [{"name": "site-ca", "secretName": SITE_CA_TRUST,
                                       "mountPath": SITE_CA_DIR, "readOnly": True}]}
               if trust else {}),
            "grafana.ini": {
                "server": {"root_url": f"https://{platform.host('grafana')}"},
                "auth": {"disable_login_form": True},
                "auth.generic_oauth": {
                    "enabled": True, "name": "Site login", "allow_sign_up": True,
                    "client_id": "grafana", "client_secret": client_secret,
                    "scopes": "openid email profile groups",
                    "auth_url": f"{issuer}/auth", "token_url": f"{issuer}/token",
                    "api_url": f"{issuer}/userinfo",
                    **({"tls_client_ca": SITE_CA_FILE} if trust else {})},
            },
        },
    }


class Monitoring(pulumi.ComponentResource):
    def __init__(self, name: str, platform: Platform, issuer: str, client_secret: Any,
                 opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__(type_token("Monitoring"), name, None, opts)
        space = ComponentNamespace(f"{name}-space", platform, "monitoring",
                                   pulumi.ResourceOptions(parent=self))
        admin = random.RandomPassword(f"{name}-grafana-admin", length=24, special=False,
                                      opts=pulumi.ResourceOptions(parent=self))
        platform.outputs["grafana_admin_password"] = pulumi.Output.secret(admin.result)
        waits: list[pulumi.Resource] = [space, *platform.storage_ready]
        if trusts_site_ca(platform):
            waits.append(site_ca_trust(platform, f"{name}-site-ca-trust", space.name, self))
        self.release = platform.release(
            f"{name}-prometheus", "kube-prometheus-stack", space.name,
            prometheus_values(platform, issuer, client_secret, admin.result), self, waits)
        if platform.config.options.monitoring.gpu_dashboards:
            k8s.core.v1.ConfigMap(
                f"{name}-gpu-dashboard",
                metadata={"name": "gpu-dashboard", "namespace": space.name,
                          "labels": {"grafana_dashboard": "1"}},
                data={"gpus.json": gpu_dashboard()},
                opts=pulumi.ResourceOptions(parent=self, depends_on=[space]))
        protected_ingress(platform, "grafana", space.name, platform.host("grafana"),
                          f"{name}-prometheus-grafana", 80, self, [self.release])
        platform.outputs["grafana_url"] = f"https://{platform.host('grafana')}"
        self.register_outputs({"namespace": space.name})
