"""The NVIDIA GPU operator: device plugin, DCGM exporter, sharing; driver left to the host."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from stacks.platform.common import (
    GPU,
    ComponentNamespace,
    Platform,
    repository_image_version,
    repository_tag,
    type_token,
)

SHARING_CONFIG = "gpu-sharing"
# The `job` label of the DCGM exporter's targets, set by a relabeling of the operator's
# ServiceMonitor so that it does not depend on the Service's name (validate's
# ai.prometheus.gpu_exporter looks the targets up by it).
DCGM_JOB = "nvidia-dcgm-exporter"


def gpu_operator_values(platform: Platform) -> dict[str, Any]:
    """Values of the gpu-operator chart for this site."""
    options = platform.config.options.gpu
    # The host's gpu layer installs driver and toolkit; the operator's own driver pod would
    # otherwise fetch kernel headers from the internet at every start.
    host = not platform.config.operator_driver
    monitoring = platform.config.options.components.monitoring

    def image(role: str) -> dict[str, str]:
        return repository_image_version(platform.image("gpu-operator", role))

    # Driver and toolkit images are set whenever pinned, so that a switch to the operator's
    # own driver never pulls them from upstream past a registry override.
    pinned = platform.config.charts["gpu-operator"].images

    def optional(role: str) -> dict[str, str]:
        return image(role) if role in pinned else {}

    values: dict[str, Any] = {
        "operator": {**image("operator"), "imagePullSecrets": platform.pull_secrets()},
        "validator": image("validator"),
        "driver": {**optional("driver"), "enabled": not host},
        "toolkit": {**optional("toolkit"), "enabled": not host},
        "devicePlugin": image("device_plugin"),
        "gfd": image("device_plugin"),
        # Without the monitoring component there is no ServiceMonitor CRD to create one of.
        "dcgmExporter": {**image("dcgm_exporter"), "enabled": True,
                         "serviceMonitor": {"enabled": monitoring, "relabelings": [
                             {"action": "replace", "targetLabel": "job",
                              "replacement": DCGM_JOB}]}},
        "migManager": {**image("mig_manager"), "enabled": options.sharing == "mig"},
        "mig": {"strategy": options.mig_strategy},
        "node-feature-discovery": {
            "image": repository_tag(platform.image("gpu-operator", "nfd")),
            "imagePullSecrets": platform.pull_secrets(),
        },
        "daemonsets": {"imagePullSecrets": platform.pull_secrets()},
    }
    if options.sharing == "time-slicing":
        values["devicePlugin"]["config"] = {"name": SHARING_CONFIG, "default": "any"}
    if options.sharing == "mig":
        values["migManager"]["config"] = {"default": options.mig_profile}
    return values


def time_slicing_config(replicas: int) -> str:
    return (
        "version: v1\n"
        "sharing:\n"
        "  timeSlicing:\n"
        "    resources:\n"
        f"      - name: {GPU}\n"
        f"        replicas: {replicas}\n"
    )


class GpuOperator(pulumi.ComponentResource):
    """The GPU operator release, with its sharing config when the blueprint asks for one."""

    def __init__(self, name: str, platform: Platform,
                 after: Sequence[pulumi.Resource] = (),
                 opts: pulumi.ResourceOptions | None = None) -> None:
        """`after`: what the operator's own custom resources need first (the monitoring
        release, which brings the ServiceMonitor CRD the DCGM exporter's monitor uses)."""
        super().__init__(type_token("GpuOperator"), name, None, opts)
        space = ComponentNamespace(f"{name}-space", platform, "gpu",
                                   pulumi.ResourceOptions(parent=self))
        options = platform.config.options.gpu
        waits: list[pulumi.Resource] = [space, *after]
        if options.sharing == "time-slicing":
            waits.append(k8s.core.v1.ConfigMap(
                f"{name}-sharing",
                metadata={"name": SHARING_CONFIG, "namespace": space.name},
                data={"any": time_slicing_config(options.time_slicing_replicas)},
                opts=pulumi.ResourceOptions(parent=self, depends_on=[space]),
            ))
        self.release = platform.release(f"{name}-operator", "gpu-operator", space.name,
                                        gpu_operator_values(platform), self, waits)
        self.register_outputs({"namespace": space.name})
