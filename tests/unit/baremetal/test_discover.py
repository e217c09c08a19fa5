"""Hardware checks of discover, table-driven on inventories made here (no BMC needed)."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from blueprint.baremetal.bmc import Capabilities, Disk, Inventory, Nic, PcieDevice
from blueprint.baremetal.discover import check_node, node_profile, version_key
from blueprint.models import Node
from blueprint.models.blueprint import Blueprint, HardwareProfile

CAPS = Capabilities(reset_types=("On",), boot_targets=("Pxe",), virtual_media=False, bios=True,
                    secure_boot=True, pcie_devices=True)
INVENTORY = Inventory(
    system_id="1", manufacturer="M", model="X", serial="S1", uuid=None, power_state="Off",
    bios_version="2.1.7", bmc_firmware="3.10.0", boot_mode="UEFI", secure_boot=False,
    cpu_count=16, cpu_model="c", memory_gib=128.0,
    disks=(Disk("d0", "nvme", 960 * 1024**3),), nics=(Nic("n0", "52:54:00:00:00:01"),),
    pcie_devices=(PcieDevice("g0", "L40S", "NVIDIA", "L40S", "DisplayController", "0x10de"),),
    capabilities=CAPS,
)
NODE = Node(name="edge-1", address="10.0.0.1", roles=["worker", "gpu"],
            boot_mac="52:54:00:00:00:01")


def statuses(profile: HardwareProfile, inventory: Inventory = INVENTORY, bios: Any = None,
             previous: Any = None, node: Node = NODE) -> dict[str, tuple[str, str]]:
    return {f.check: (f.status, f.found)
            for f in check_node(node, profile, inventory, bios, previous)}


def test_a_matching_node_has_no_deviation() -> None:
    profile = HardwareProfile(min_cpus=8, min_memory_gib=64, min_disk_gib=500, gpus=1,
                              boot_mode="uefi", secure_boot="off",
                              bios={"Above4GDecoding": "Enabled"}, min_bios_version="2.1",
                              min_bmc_version="3.9.2")
    found = statuses(profile, bios={"Above4GDecoding": "enabled"})
    assert {check: status for check, (status, _) in found.items()} == {
        "boot_mac": "ok", "cpus": "ok", "memory_gib": "ok", "disk_gib": "ok", "gpus": "ok",
        "boot_mode": "ok", "secure_boot": "ok", "bios.Above4GDecoding": "ok",
        "bios_version": "ok", "bmc_version": "ok",
    }


@pytest.mark.parametrize(("profile", "check", "found"), [
    (HardwareProfile(min_cpus=32), "cpus", "16"),
    (HardwareProfile(min_memory_gib=256), "memory_gib", "128.0"),
    (HardwareProfile(min_disk_gib=2000), "disk_gib", "960"),
    (HardwareProfile(gpus=2), "gpus", "1"),
    (HardwareProfile(boot_mode="bios"), "boot_mode", "UEFI"),
    (HardwareProfile(secure_boot="on"), "secure_boot", "off"),
    (HardwareProfile(min_bios_version="2.10"), "bios_version", "2.1.7"),
    (HardwareProfile(min_bmc_version="3.10.1"), "bmc_version", "3.10.0"),
])
def test_each_deviation(profile: HardwareProfile, check: str, found: str) -> None:
    assert statuses(profile)[check] == ("deviation", found)


def test_unreported_values_are_unknown_never_ok() -> None:
    bare = dataclasses.replace(
        INVENTORY, cpu_count=None, memory_gib=None, disks=(), pcie_devices=(),
        secure_boot=None, bmc_firmware=None,
        capabilities=dataclasses.replace(CAPS, pcie_devices=False))
    profile = HardwareProfile(gpus=1, secure_boot="on", min_bmc_version="1.0",
                              bios={"IntelVTd": "Enabled"})
    found = statuses(profile, inventory=bare, bios=None)
    for check in ("cpus", "memory_gib", "disk_gib", "gpus", "secure_boot", "bmc_version",
                  "bios.IntelVTd"):
        assert found[check] == ("unknown", "not reported by the BMC"), check


def test_boot_mac_missing_from_site_or_hardware() -> None:
    unset = NODE.model_copy(update={"boot_mac": None})
    assert statuses(HardwareProfile(), node=unset)["boot_mac"] == (
        "deviation", "52:54:00:00:00:01")
    other = NODE.model_copy(update={"boot_mac": "52:54:00:00:00:09"})
    assert statuses(HardwareProfile(), node=other)["boot_mac"] == (
        "deviation", "52:54:00:00:00:01")


def test_board_swap_shows_as_a_serial_change() -> None:
    found = statuses(HardwareProfile(), previous={"serial": "S0"})
    assert found["serial"] == ("deviation", "S1")
    assert "serial" not in statuses(HardwareProfile(), previous={"serial": "S1"})


def test_profiles_of_several_roles_merge_to_the_strictest() -> None:
    blueprint = Blueprint.model_validate({
        "name": "b", "version": "1", "layers": [{"name": "os_baseline"}],
        "validation": {"suite": "lab"},
        "hardware": {
            "worker": {"min_cpus": 8, "min_memory_gib": 32, "boot_mode": "uefi",
                       "min_bios_version": "2.9", "bios": {"IntelVTd": "Enabled"}},
            "gpu": {"min_cpus": 4, "min_memory_gib": 64, "gpus": 1, "secure_boot": "off",
                    "min_bios_version": "2.10", "bios": {"Above4GDecoding": "Enabled"}},
        },
    })
    merged = node_profile(blueprint, ["worker", "gpu"])
    assert (merged.min_cpus, merged.min_memory_gib, merged.gpus) == (8, 64, 1)
    assert (merged.boot_mode, merged.secure_boot) == ("uefi", "off")
    assert merged.min_bios_version == "2.10"
    assert merged.bios == {"IntelVTd": "Enabled", "Above4GDecoding": "Enabled"}
    assert node_profile(blueprint, ["storage"]) == HardwareProfile()


@pytest.mark.parametrize(("low", "high"), [
    ("2.9", "2.10"), ("1.00", "1.1"), ("U46 v1.8 (2023)", "U46 v1.9 (2023)"),
    ("95.02.5D.00.01", "95.02.5E.00.02"),
])
def test_version_order(low: str, high: str) -> None:
    assert version_key(low) < version_key(high)


@pytest.mark.parametrize(("provisioned", "status", "changed"), [
    ({"run_id": "r1", "serial": "S1", "boot_mac": "52:54:00:00:00:01"}, "ok", ""),
    ({"run_id": "r1", "serial": "S0", "boot_mac": "52:54:00:00:00:01"}, "deviation", "serial"),
    ({"run_id": "r1", "serial": "S1", "boot_mac": "52:54:00:00:00:09"}, "deviation", "boot NIC"),
    ({"run_id": "r1", "uuid": "u-old"}, None, ""),  # the BMC reports no UUID: nothing compared
])
def test_a_board_swapped_since_provisioning_is_a_deviation(
        provisioned: dict[str, Any], status: str | None, changed: str) -> None:
    findings = {f.check: f for f in check_node(NODE, HardwareProfile(), INVENTORY, None, None,
                                               provisioned)}
    if status is None:
        assert "board" not in findings
        return
    assert findings["board"].status == status
    assert "(provisioned, r1)" in findings["board"].expected
    if changed:
        assert f"{changed} changed since provisioning" in findings["board"].found
        assert "provision --nodes edge-1 --force" in findings["board"].found
