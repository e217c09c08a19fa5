"""The blueprint: the reusable recipe of layers, pinned versions, hardware and validation."""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import Field, field_validator

from blueprint.models.common import StrictModel

LayerName = Literal["os_baseline", "container_runtime", "gpu", "kubernetes", "storage", "platform"]
NodeRoleName = Literal["control-plane", "worker", "gpu", "storage"]

# The order a deploy runs host layers in; the platform layer always comes last.
LAYER_ORDER: tuple[str, ...] = (
    "os_baseline",
    "container_runtime",
    "gpu",
    "kubernetes",
    "storage",
    "platform",
)


class Layer(StrictModel):
    """One layer of the blueprint: the Ansible role (or stack) that builds it and its options."""

    name: LayerName
    roles: list[str] = Field(default_factory=list, description="Ansible roles of the layer")
    options: dict[str, Any] = Field(default_factory=dict, description="role variables")
    versions: dict[str, str] = Field(default_factory=dict, description="pinned versions")
    validates: list[str] = Field(
        default_factory=list, description="validation layers whose checks this layer enables"
    )


class HardwareProfile(StrictModel):
    """What a node of one node role must have; checked by the hardware validation layer."""

    min_cpus: int = Field(default=1, ge=1)
    min_memory_gib: float = Field(default=1.0, gt=0)
    min_disk_gib: float = Field(default=10.0, gt=0)
    gpus: int = Field(default=0, ge=0, description="NVIDIA GPUs a node of this role must have")
    min_nics: int = Field(default=1, ge=0, description="network interfaces with a link")
    boot_mode: Literal["uefi", "bios", "any"] = "any"
    secure_boot: Literal["on", "off", "any"] = "any"
    bios: dict[str, str | int | bool] = Field(
        default_factory=dict,
        description="BIOS attributes the node must have, by their Redfish names "
        "(e.g. Above4GDecoding: Enabled); vendors name them differently",
    )
    min_bios_version: str | None = Field(default=None, description="lowest BIOS version")
    min_bmc_version: str | None = Field(default=None, description="lowest BMC firmware")

    @field_validator("min_bios_version", "min_bmc_version")
    @classmethod
    def _version_has_numbers(cls, value: str | None) -> str | None:
        if value is not None and not re.search(r"\d", value):
            msg = f"version '{value}' has no number to compare"
            raise ValueError(msg)
        return value


class ValidationSettings(StrictModel):
    """Which validation suite the blueprint runs."""

    suite: str


class Blueprint(StrictModel):
    """An Akraino-style blueprint: ordered layers, hardware per node role, validation suite."""

    name: str
    version: str
    description: str = ""
    layers: list[Layer] = Field(min_length=1)
    hardware: dict[NodeRoleName, HardwareProfile] = Field(default_factory=dict)
    validation: ValidationSettings

    @field_validator("layers")
    @classmethod
    def _layers_in_order(cls, layers: list[Layer]) -> list[Layer]:
        names = [layer.name for layer in layers]
        if len(set(names)) != len(names):
            msg = f"a layer is listed twice: {', '.join(names)}"
            raise ValueError(msg)
        expected = [name for name in LAYER_ORDER if name in names]
        if names != expected:
            msg = f"layers must run in the order {', '.join(expected)}; got {', '.join(names)}"
            raise ValueError(msg)
        return layers
