"""discover --write: which boot MAC is chosen, and that only its line of the site changes."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from blueprint.baremetal.bmc import Capabilities, Inventory, Nic
from blueprint.baremetal.sitefile import choose_boot_mac, parse_boot_nics, write_boot_macs
from blueprint.errors import BadInput
from blueprint.loader import load_site
from blueprint.models import Node

CAPS = Capabilities(reset_types=("On",), boot_targets=("Pxe",), virtual_media=False,
                    bios=False, secure_boot=False, pcie_devices=False)
ONE_NIC = Inventory(
    system_id="1", manufacturer=None, model=None, serial="S1", uuid=None, power_state="Off",
    bios_version=None, bmc_firmware=None, boot_mode=None, secure_boot=None, cpu_count=None,
    cpu_model=None, memory_gib=None, disks=(), nics=(Nic("NIC.1", "52:54:00:00:00:01"),),
    pcie_devices=(), capabilities=CAPS,
)
TWO_NICS = dataclasses.replace(ONE_NIC, nics=(Nic("NIC.1", "52:54:00:00:00:01"),
                                              Nic("NIC.2", "52:54:00:00:00:02")))
NO_NICS = dataclasses.replace(ONE_NIC, nics=())


def node(mac: str | None = None) -> Node:
    return Node(name="edge-1", address="10.0.0.1", roles=["worker"], boot_mac=mac)


@pytest.mark.parametrize(("site_mac", "inventory", "boot_nic", "force", "action", "mac"), [
    (None, ONE_NIC, None, False, "written", "52:54:00:00:00:01"),
    (None, TWO_NICS, None, False, "ambiguous", None),
    (None, TWO_NICS, "NIC.2", False, "written", "52:54:00:00:00:02"),
    (None, TWO_NICS, "52:54:00:00:00:02", False, "written", "52:54:00:00:00:02"),
    (None, TWO_NICS, "NIC.9", False, "ambiguous", None),
    (None, NO_NICS, None, False, "unknown", None),
    ("52:54:00:00:00:02", TWO_NICS, None, False, "unchanged", "52:54:00:00:00:02"),
    ("52:54:00:00:00:02", TWO_NICS, "NIC.1", True, "unchanged", "52:54:00:00:00:02"),
    ("52:54:00:00:00:99", ONE_NIC, None, False, "conflict", "52:54:00:00:00:01"),
    ("52:54:00:00:00:99", ONE_NIC, None, True, "replaced", "52:54:00:00:00:01"),
    ("52:54:00:00:00:99", TWO_NICS, None, True, "ambiguous", None),
])
def test_choose_boot_mac(site_mac: str | None, inventory: Inventory, boot_nic: str | None,
                         force: bool, action: str, mac: str | None) -> None:
    change = choose_boot_mac(node(site_mac), inventory, boot_nic, force)
    assert (change.action, change.bmc_value) == (action, mac)


BLUEPRINT = ("name: t\nversion: '1'\nlayers: [{name: os_baseline, roles: [os_baseline]}]\n"
             "validation: {suite: lab}\n")
SITE = """\
# The test site.   Odd spacing and comments must survive.
name: t
blueprint: bp.yaml
nodes:
    -   name: edge-1          # first
        address: 10.0.0.1
        roles: [worker]
    # between the nodes
    -   name: edge-2
        address: 10.0.0.2
        boot_mac: '52:54:00:00:00:99'   # set by hand
        roles:
          - worker
"""


def site_file(tmp_path: Path, text: str = SITE) -> Path:
    (tmp_path / "bp.yaml").write_text(BLUEPRINT)
    path = tmp_path / "site.yaml"
    path.write_text(text)
    path.chmod(0o640)
    return path


def test_write_adds_or_replaces_only_the_boot_mac_lines(tmp_path: Path) -> None:
    path = site_file(tmp_path)
    write_boot_macs(load_site(path), {"edge-1": "52:54:00:00:00:01",
                                      "edge-2": "52:54:00:00:00:02"})
    expected = SITE.replace(
        "        address: 10.0.0.1\n",
        '        address: 10.0.0.1\n        boot_mac: "52:54:00:00:00:01"\n',
    ).replace("'52:54:00:00:00:99'   # set by hand", '"52:54:00:00:00:02"   # set by hand')
    assert path.read_text() == expected
    assert path.stat().st_mode & 0o777 == 0o640
    assert [n.boot_mac for n in load_site(path).site.nodes] == [
        "52:54:00:00:00:01", "52:54:00:00:00:02"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bp.yaml", "site.yaml"]


def test_write_refuses_a_mac_another_node_uses_and_leaves_the_file(tmp_path: Path) -> None:
    path = site_file(tmp_path)
    refused = r"not written; .*/site.yaml:12: node edge-2: .*already used by node edge-1"
    with pytest.raises(BadInput, match=refused):
        write_boot_macs(load_site(path), {"edge-1": "52:54:00:00:00:99"})
    assert path.read_text() == SITE
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bp.yaml", "site.yaml"]


def test_write_refuses_a_node_written_as_a_flow_mapping(tmp_path: Path) -> None:
    text = ("name: t\nblueprint: bp.yaml\nnodes:\n"
            "  - {name: edge-1, address: 10.0.0.1, roles: [worker]}\n")
    path = site_file(tmp_path, text)
    with pytest.raises(BadInput, match="set its boot_mac"):
        write_boot_macs(load_site(path), {"edge-1": "52:54:00:00:00:01"})
    assert path.read_text() == text


def test_boot_nic_option_shape() -> None:
    assert parse_boot_nics(["edge-1=NIC.1", "edge-2=52:54:00:00:00:01"]) == {
        "edge-1": "NIC.1", "edge-2": "52:54:00:00:00:01"}
    with pytest.raises(BadInput, match="NODE=NIC"):
        parse_boot_nics(["edge-1"])
