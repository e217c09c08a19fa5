"""Hardware checks: what the node has against the blueprint's profile for its node roles.

The profile (`expected["hardware"]`) is the blueprint's `hardware:` entry for each of the
node's roles, merged by the runner (the largest minimum wins). A node whose roles have no
profile has every check skipped with that reason. Values are read on the node itself: CPUs
from `nproc --all`, memory from /proc/meminfo, the disk from `df` of the root filesystem, NICs
from /sys/class/net, GPUs from `lspci -nn -D`. In a container, the CPUs, memory and disk are
the host's: a lab node passes if the host meets its profile.
"""

from __future__ import annotations

import logging
from typing import Any

import pytest

from blueprint.gpu import detect
from blueprint.validate.plugin import Probe, expect

log = logging.getLogger(__name__)

GIB = 1024**3
# Interfaces that are not a NIC of the node: loopback, bridges and tunnels it may create.
VIRTUAL_PREFIXES = ("lo", "docker", "cni", "flannel", "cali", "veth", "virbr", "br-", "tun")


def _profile(expected: dict[str, Any], key: str) -> Any:
    profile = expected.get("hardware")
    if not profile:
        roles = ", ".join(expected.get("node_roles", [])) or "none"
        pytest.skip(f"the blueprint has no hardware profile for this node's roles ({roles})")
    return profile[key]


def _roles(expected: dict[str, Any]) -> str:
    return ", ".join(expected["hardware"].get("roles", []))


@pytest.mark.check("hardware.cpu.count")
def test_cpu_count(node: Probe, expected: dict[str, Any]) -> None:
    wanted = int(_profile(expected, "min_cpus"))
    result = node.run("nproc --all")
    count = int(result.stdout.strip()) if result.rc == 0 else 0
    expect(
        count >= wanted,
        seen=f"{count} CPUs" if result.rc == 0 else f"nproc failed ({result.rc})",
        expected=f"at least {wanted} CPUs (profile of {_roles(expected)})",
    )


@pytest.mark.check("hardware.memory.size")
def test_memory_size(node: Probe, expected: dict[str, Any]) -> None:
    wanted = float(_profile(expected, "min_memory_gib"))
    result = node.run("grep -m1 '^MemTotal:' /proc/meminfo")
    fields = result.stdout.split()
    gib = int(fields[1]) * 1024 / GIB if result.rc == 0 and len(fields) >= 2 else 0.0
    expect(
        gib >= wanted,
        seen=f"{gib:.1f} GiB of memory",
        expected=f"at least {wanted:g} GiB (profile of {_roles(expected)})",
    )


@pytest.mark.check("hardware.disk.size")
def test_disk_size(node: Probe, expected: dict[str, Any]) -> None:
    wanted = float(_profile(expected, "min_disk_gib"))
    result = node.run("df -B1 --output=size / | tail -n 1")
    text = result.stdout.strip()
    gib = int(text) / GIB if result.rc == 0 and text.isdigit() else 0.0
    expect(
        gib >= wanted,
        seen=f"root filesystem of {gib:.1f} GiB",
        expected=f"at least {wanted:g} GiB (profile of {_roles(expected)})",
    )


@pytest.mark.check("hardware.nic.count")
def test_nic_count(node: Probe, expected: dict[str, Any]) -> None:
    wanted = int(_profile(expected, "min_nics"))
    # One line per interface: name and operstate; a NIC with a link is "up".
    result = node.run(
        "for nic in /sys/class/net/*; do echo \"${nic##*/} $(cat $nic/operstate)\"; done"
    )
    nics = [
        line.split()[0]
        for line in result.stdout.splitlines()
        if len(line.split()) == 2
        and line.split()[1] == "up"
        and not line.split()[0].startswith(VIRTUAL_PREFIXES)
    ]
    expect(
        len(nics) >= wanted,
        seen=f"{len(nics)} NICs up ({', '.join(nics) or 'none'})",
        expected=f"at least {wanted} (profile of {_roles(expected)})",
    )


@pytest.mark.check("hardware.gpu.count")
def test_gpu_count(node: Probe, expected: dict[str, Any]) -> None:
    wanted = int(_profile(expected, "gpus"))
    if wanted == 0:
        pytest.skip(f"the profile of {_roles(expected)} asks for no GPU")
    lspci = node.run("lspci -nn -D")
    expect(lspci.rc == 0, seen=f"lspci failed ({lspci.rc})", expected="pciutils installed")
    count = detect(lspci.stdout, 0).count
    expect(
        count >= wanted,
        seen=f"{count} NVIDIA GPUs on the PCI bus",
        expected=f"at least {wanted} (profile of {_roles(expected)})",
    )


@pytest.mark.check("hardware.firmware.boot_mode")
def test_boot_mode(node: Probe, expected: dict[str, Any]) -> None:
    wanted = _profile(expected, "boot_mode")
    if wanted == "any":
        pytest.skip(f"the profile of {_roles(expected)} accepts any boot mode")
    node.skip_if_container("the boot firmware is the host's")
    mode = "uefi" if node.run("test -d /sys/firmware/efi").rc == 0 else "bios"
    expect(mode == wanted, seen=f"booted by {mode}", expected=f"booted by {wanted}")


# The SecureBoot EFI variable: 4 bytes of attributes, then 1 (on) or 0 (off).
SECURE_BOOT_VAR = "/sys/firmware/efi/efivars/SecureBoot-8be4df61-93ca-11d2-aa0d-00e098032b8c"


@pytest.mark.check("hardware.firmware.secure_boot")
def test_secure_boot(node: Probe, expected: dict[str, Any]) -> None:
    wanted = _profile(expected, "secure_boot")
    if wanted == "any":
        pytest.skip(f"the profile of {_roles(expected)} accepts Secure Boot on or off")
    node.skip_if_container("the boot firmware is the host's")
    result = node.run(f"od -An -t u1 -j4 -N1 {SECURE_BOOT_VAR}")
    state = "on" if result.stdout.strip() == "1" else "off"
    expect(
        state == wanted,
        seen=f"Secure Boot {state}" + ("" if result.rc == 0 else " (no SecureBoot variable)"),
        expected=f"Secure Boot {wanted}",
    )
