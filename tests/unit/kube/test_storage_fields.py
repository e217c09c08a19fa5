"""The storage layer's site fields: bad exports and devices are refused with file, line, field."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from blueprint.errors import BadInput
from blueprint.inventory import render_inventory
from blueprint.loader import load_site
from blueprint.state import StateDir

GOOD_OVERRIDES = {
    "storage_classes": ["local-path", "nfs", "rook-ceph"],
    "storage_nfs_exports": [{"path": "/srv/nfs/models", "clients": ["10.20.0.0/24"],
                             "access": "RW"}],
    "storage_ceph_devices": {"st-1": ["/dev/sdb", "/dev/disk/by-id/wwn-0x5000c500a1b2c3d4"]},
}


def _site(tmp_path: Path, overrides: dict, storage_node: bool = True) -> Path:
    data = {
        "name": "edge", "blueprint": "ai-edge",
        "nodes": [
            {"name": "cp-1", "address": "10.20.0.11", "roles": ["control-plane"]},
            {"name": "st-1", "address": "10.20.0.12",
             "roles": ["worker", "storage"] if storage_node else ["worker"]},
        ],
        "overrides": overrides,
    }
    path = tmp_path / "site.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def _render(path: Path) -> dict:
    loaded = load_site(path)
    state = StateDir.for_site(path.parent)
    inventory = render_inventory(loaded, state)
    return yaml.safe_load((inventory / "group_vars" / "all.yml").read_text())


def test_good_storage_fields_reach_the_role_variables(tmp_path: Path) -> None:
    variables = _render(_site(tmp_path, GOOD_OVERRIDES))
    assert variables["storage_nfs_exports"] == GOOD_OVERRIDES["storage_nfs_exports"]
    assert variables["storage_ceph_devices"] == GOOD_OVERRIDES["storage_ceph_devices"]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"storage_nfs_exports": [{"path": "srv/nfs", "clients": ["10.20.0.0/24"]}]},
         "overrides.storage_nfs_exports.0.path: 'srv/nfs' is not an absolute path"),
        ({"storage_nfs_exports": [{"path": "/srv", "clients": ["10.20.0.0/33x"]}]},
         "overrides.storage_nfs_exports.0.clients.0: '10.20.0.0/33x' is neither a network"),
        ({"storage_nfs_exports": [{"path": "/srv", "clients": ["h"], "access": "rw"}]},
         "overrides.storage_nfs_exports.0.access: 'rw': use RW or RO"),
        ({"storage_nfs_exports": [{"path": "/srv", "clients": ["h"], "mode": "x"}]},
         "overrides.storage_nfs_exports.0: expected {path, clients, access}"),
        ({"storage_ceph_devices": {"st-9": ["/dev/sdb"]}},
         "overrides.storage_ceph_devices.st-9: 'st-9' is not a node of this site"),
        ({"storage_ceph_devices": {"st-1": ["sdb"]}},
         "overrides.storage_ceph_devices.st-1.0: 'sdb' is not a device path under /dev"),
        ({"storage_ceph_devices": {"st-1": ["/dev/sdb", "/dev/sdb"]}},
         "overrides.storage_ceph_devices.st-1: /dev/sdb listed twice"),
        ({"storage_classes": "nfs"}, "storage_classes"),
        ({"storage_ceph_devices": ["/dev/sdb"]}, "storage_ceph_devices"),
    ],
)
def test_bad_storage_fields_are_refused_with_line_and_field(
    tmp_path: Path, change: dict, message: str
) -> None:
    path = _site(tmp_path, {**GOOD_OVERRIDES, **change})
    with pytest.raises(BadInput) as refused:
        _render(path)
    [line] = str(refused.value).splitlines()
    assert line.startswith(f"{path}:")
    assert int(line.split(":")[1]) > 1  # the field's own line, not the file's start
    assert message in line


def test_nfs_without_a_storage_node_is_refused(tmp_path: Path) -> None:
    with pytest.raises(BadInput, match="nfs needs a node with role storage"):
        _render(_site(tmp_path, GOOD_OVERRIDES, storage_node=False))
