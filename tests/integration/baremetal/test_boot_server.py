"""A real DHCP exchange with the product's boot server, in two network namespaces.

The boot server (dnsmasq and the HTTP server, started by `blueprint boot-server start`) runs
in namespace bmt-s*, a client in bmt-c*, joined by a veth pair. A listed MAC gets its address
and boot file name; an unlisted MAC gets nothing; a node's own files are served to it alone.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

pytestmark = [
    pytest.mark.lab,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root (network namespaces, DHCP)"),
    pytest.mark.skipif(shutil.which("dnsmasq") is None or shutil.which("busybox") is None,
                       reason="needs dnsmasq-base and busybox (scripts/setup installs them)"),
]

LISTED_MAC = "52:54:00:6b:02:01"
UNLISTED_MAC = "52:54:00:6b:02:99"
KEY_DIR = Path(__file__).parents[2] / "unit" / "fixtures" / "sites"


@dataclass
class ProvisioningNet:
    server_ns: str
    client_ns: str
    server_if: str
    client_if: str


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


@pytest.fixture
def prov_net() -> Iterator[ProvisioningNet]:
    tag = secrets.token_hex(3)
    net = ProvisioningNet(f"bmt-s{tag}", f"bmt-c{tag}", f"bmts{tag}", f"bmtc{tag}")
    try:
        ip("netns", "add", net.server_ns)
        ip("netns", "add", net.client_ns)
        ip("link", "add", net.server_if, "netns", net.server_ns, "type", "veth",
           "peer", "name", net.client_if, "netns", net.client_ns)
        for ns, link in ((net.server_ns, net.server_if), (net.client_ns, net.client_if)):
            ip("-n", ns, "link", "set", "lo", "up")
            ip("-n", ns, "link", "set", link, "up")
        ip("-n", net.server_ns, "address", "add", "10.93.0.2/24", "dev", net.server_if)
        yield net
    finally:
        # Deleting a namespace removes its end of the veth pair, and so the pair.
        for ns in (net.client_ns, net.server_ns):
            subprocess.run(["ip", "netns", "del", ns], check=False, capture_output=True)
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert net.server_ns not in listed and net.client_ns not in listed


def write_site(folder: Path, interface: str) -> Path:
    for name in ("good_key", "good_key.pub"):
        shutil.copy(KEY_DIR / name, folder / name)
    (folder / "site.yaml").write_text(f"""\
name: dhcp
blueprint: lab
ssh: {{user: root, key: good_key}}
network: {{subnet: 10.93.0.0/24}}
nodes:
  - {{name: edge-1, address: 10.93.0.11, roles: [worker], boot_mac: "{LISTED_MAC}",
     install_disk: /dev/sda}}
  - {{name: edge-2, address: 10.93.0.12, roles: [worker], boot_mac: "52:54:00:6b:02:02",
     install_disk: /dev/sda}}
provision: {{boot_server: 10.93.0.2, interface: {interface}, gateway: 10.93.0.1}}
""", encoding="utf-8")
    return folder / "site.yaml"


def in_ns(ns: str, *cmd: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", "netns", "exec", ns, *cmd], capture_output=True, text=True,
                          check=False, timeout=timeout)


def dhcp(net: ProvisioningNet, mac: str, out: Path) -> tuple[int, dict[str, str]]:
    """Run busybox udhcpc once with `mac`; return its exit code and the bound lease."""
    ip("-n", net.client_ns, "link", "set", net.client_if, "down")
    ip("-n", net.client_ns, "link", "set", net.client_if, "address", mac)
    ip("-n", net.client_ns, "link", "set", net.client_if, "up")
    script = out / "udhcpc.sh"
    script.write_text(f'#!/bin/sh\n[ "$1" = bound ] && env > {out}/lease.env\nexit 0\n')
    script.chmod(0o755)
    (out / "lease.env").unlink(missing_ok=True)
    done = in_ns(net.client_ns, "busybox", "udhcpc", "-i", net.client_if, "-n", "-q", "-f",
                 "-t", "4", "-T", "2", "-s", str(script))
    lease_file = out / "lease.env"
    lease = dict(line.split("=", 1) for line in lease_file.read_text().splitlines()
                 if "=" in line) if lease_file.exists() else {}
    return done.returncode, lease


def fetch(net: ProvisioningNet, url: str) -> int:
    code = ("import sys, urllib.request, urllib.error\n"
            "try:\n    print(urllib.request.urlopen(sys.argv[1], timeout=10).status)\n"
            "except urllib.error.HTTPError as e:\n    print(e.code)\n")
    done = in_ns(net.client_ns, sys.executable, "-c", code, url)
    assert done.returncode == 0, done.stderr
    return int(done.stdout.strip())


def test_listed_mac_gets_its_lease_unlisted_gets_nothing(prov_net: ProvisioningNet,
                                                         tmp_path: Path) -> None:
    site = write_site(tmp_path, prov_net.server_if)
    blueprint = [sys.executable, "-m", "blueprint.cli"]
    started = in_ns(prov_net.server_ns, *blueprint, "boot-server", "start", str(site))
    assert started.returncode == 0, started.stdout + started.stderr
    state = tmp_path / ".state" / "boot"
    try:
        code, lease = dhcp(prov_net, LISTED_MAC, tmp_path)
        assert code == 0
        assert lease["ip"] == "10.93.0.11"
        assert lease["boot_file"] == "undionly.kpxe"
        assert lease["siaddr"] == "10.93.0.2"
        assert lease["router"] == "10.93.0.1"

        # With its address, the node gets its own files and not another node's.
        ip("-n", prov_net.client_ns, "address", "add", "10.93.0.11/24", "dev",
           prov_net.client_if)
        base = "http://10.93.0.2:8069/nodes"
        assert fetch(prov_net, f"{base}/edge-1/boot.ipxe") == 200
        assert fetch(prov_net, f"{base}/edge-1/late.sh") == 200
        assert fetch(prov_net, f"{base}/edge-2/late.sh") == 403
        assert fetch(prov_net, f"{base}/") == 403
        ip("-n", prov_net.client_ns, "address", "flush", "dev", prov_net.client_if)

        code, lease = dhcp(prov_net, UNLISTED_MAC, tmp_path)
        assert code != 0
        assert lease == {}
        leases = (state / "dnsmasq.leases").read_text()
        assert LISTED_MAC in leases and UNLISTED_MAC not in leases
        assert f"{UNLISTED_MAC} ignored" in (state / "dnsmasq.log").read_text()
    finally:
        server = json.loads((state / "server.json").read_text())
        stopped = in_ns(prov_net.server_ns, *blueprint, "boot-server", "stop", str(site))
    assert stopped.returncode == 0, stopped.stderr
    assert stopped.stdout.strip() == "boot server: stopped dnsmasq, http"
    for pid in (server["dnsmasq_pid"], server["http_pid"]):
        assert not running(pid)


def running(pid: int) -> bool:
    """Whether `pid` still runs; a zombie left for init to reap has stopped."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"
