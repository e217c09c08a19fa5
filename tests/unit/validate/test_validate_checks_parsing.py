"""What the host checks make of node output: version pins, listening sockets, profiles."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from blueprint.loader import load_site
from blueprint.models.blueprint import HardwareProfile
from blueprint.validation import expectations, hardware_profile

CHECKS = Path(__file__).resolve().parents[3] / "validation" / "checks"
SITE = Path(__file__).resolve().parents[1] / "fixtures" / "sites" / "full.yaml"
sys.path.insert(0, str(CHECKS))

import test_os  # noqa: E402  (the check modules live outside the package)
import test_security  # noqa: E402


@pytest.mark.parametrize(
    ("version", "pin", "matches"),
    [
        ("1.6.20~ds1-1+deb12u3", "1.6", True),
        ("1.6.20~ds1-1+deb12u3", "1.6.20", True),
        ("1.60.1-1", "1.6", False),
        ("1.7.0-1", "1.6", False),
        ("1:9.2p1-2+deb12u7", "9.2p1", True),
        ("535.247.01-1~deb12u1", "535", True),
        ("1.9.13p3-1+deb12u2", "1.9.13p3-1+deb12u4", False),
        ("1.9.13p3-1+deb12u4", "1.9.13p3-1+deb12u4", True),
    ],
)
def test_version_pins(version: str, pin: str, matches: bool) -> None:
    assert test_os.matches_pin(version, pin) is matches


SS = """\
tcp LISTEN 0 128 0.0.0.0:22 0.0.0.0:* users:(("sshd",pid=35,fd=3))
tcp LISTEN 0 4096 127.0.0.1:39257 0.0.0.0:* users:(("containerd",pid=1589,fd=11))
tcp LISTEN 0 128 [::]:22 [::]:* users:(("sshd",pid=35,fd=4))
tcp LISTEN 0 5 0.0.0.0:8000 0.0.0.0:* users:(("python3",pid=77,fd=3))
udp UNCONN 0 0 [::1]:323 [::]:* users:(("chronyd",pid=9,fd=6))
udp UNCONN 0 0 10.0.0.5%eth0:68 0.0.0.0:*
"""


def test_listeners_and_loopback() -> None:
    found = test_security.listeners(SS)
    assert found == [
        ("22/tcp", "0.0.0.0", "sshd"),
        ("39257/tcp", "127.0.0.1", "containerd"),
        ("22/tcp", "[::]", "sshd"),
        ("8000/tcp", "0.0.0.0", "python3"),
        ("323/udp", "[::1]", "chronyd"),
        ("68/udp", "10.0.0.5%eth0", "unknown process"),
    ]
    assert [test_security.is_loopback(address) for _, address, _ in found] == [
        False, True, False, False, True, False]


def test_hardware_profile_of_several_roles_takes_the_largest_minimum() -> None:
    loaded = load_site(SITE)
    loaded.blueprint.hardware["gpu"] = HardwareProfile(
        min_cpus=16, min_memory_gib=0.5, gpus=2, boot_mode="uefi")
    edge_2 = loaded.site.nodes[1]  # worker, gpu

    profile = hardware_profile(loaded, edge_2)

    assert profile == {"roles": ["worker", "gpu"], "min_cpus": 16, "min_memory_gib": 1.0,
                       "min_disk_gib": 10.0, "gpus": 2, "min_nics": 1,
                       "boot_mode": "uefi", "secure_boot": "any", "bios": {},
                       "min_bios_version": None, "min_bmc_version": None}
    loaded.blueprint.hardware.clear()
    assert hardware_profile(loaded, edge_2) is None


def test_expectations_follow_the_deployed_layers_and_overrides() -> None:
    loaded = load_site(SITE)  # lab blueprint; overrides add htop

    both = expectations(loaded, ["hardware", "os", "security", "runtime"])
    os_only = expectations(loaded, ["hardware", "os", "security"])

    assert {"chrony", "lynis", "htop", "containerd"} <= set(both["packages"]["required"])
    assert both["packages"]["pins"] == {"containerd": "1.6"}
    assert "containerd" not in os_only["packages"]["required"]
    assert os_only["packages"]["pins"] == {}
    assert both["runtime"]["cri_socket"] == "/run/containerd/containerd.sock"
