"""The storage layer's `expected` context: built from the role variables a deploy uses."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from blueprint.loader import load_site
from blueprint.paths import ROLES_DIR
from blueprint.validation import LOCAL_PATH_MODE, LOCAL_PATH_OWNER, expectations

LAYERS = ["hardware", "os", "security", "runtime", "storage"]


def _storage(tmp_path: Path, overrides: dict[str, Any],
             roles: tuple[list[str], ...] = (["worker", "storage"], ["worker", "storage"])
             ) -> dict[str, Any]:
    nodes = [{"name": "cp-1", "address": "10.20.0.11", "roles": ["control-plane"]}]
    nodes += [{"name": f"st-{number}", "address": f"10.20.0.{20 + number}", "roles": list(r)}
              for number, r in enumerate(roles, start=1)]
    site = tmp_path / "site.yaml"
    site.write_text(yaml.safe_dump({"name": "edge", "blueprint": "ai-edge", "nodes": nodes,
                                    "overrides": overrides}, sort_keys=False))
    storage: dict[str, Any] = expectations(load_site(site), LAYERS)["storage"]
    return storage


def test_blueprint_option_alone_asks_for_the_local_path_folder_only(tmp_path: Path) -> None:
    storage = _storage(tmp_path, {})

    assert storage == {
        "classes": ["local-path"],
        "local_path": {"dir": "/opt/local-path-provisioner", "owner": "root:root",
                       "mode": "755"},
        "packages": {},
        "nfs_server": None,
        "nfs_server_packages": [],
        "nfs_exports": [],
        "ceph_devices": {},
    }


def test_site_overrides_select_every_class_and_name_the_first_storage_node(
    tmp_path: Path,
) -> None:
    storage = _storage(tmp_path, {
        "storage_classes": ["local-path", "nfs", "longhorn", "rook-ceph"],
        "storage_local_path_dir": "/data/local-path",
        "storage_nfs_exports": [{"path": "/srv/nfs/models", "clients": ["10.20.0.0/24"]},
                                {"path": "/srv/nfs/data", "clients": ["h"], "access": "RO"}],
        "storage_ceph_devices": {"st-2": ["/dev/sdb", "/dev/sdc"]},
    })

    assert storage["classes"] == ["local-path", "nfs", "longhorn", "rook-ceph"]
    assert storage["local_path"]["dir"] == "/data/local-path"
    # The role's defaults per class (roles/storage/defaults/main.yml).
    assert storage["packages"] == {"nfs": ["nfs-common"],
                                   "longhorn": ["open-iscsi", "nfs-common"],
                                   "rook-ceph": ["lvm2"]}
    assert storage["nfs_server"] == "st-1"
    assert storage["nfs_server_packages"] == ["nfs-ganesha", "nfs-ganesha-vfs"]
    assert storage["nfs_exports"] == ["/srv/nfs/models", "/srv/nfs/data"]
    assert storage["ceph_devices"] == {"st-2": ["/dev/sdb", "/dev/sdc"]}


def test_unselected_classes_promise_nothing_even_when_their_fields_are_set(
    tmp_path: Path,
) -> None:
    storage = _storage(tmp_path, {
        "storage_classes": ["longhorn"],
        "storage_nfs_exports": [{"path": "/srv/nfs/models", "clients": ["10.20.0.0/24"]}],
        "storage_ceph_devices": {"st-2": ["/dev/sdb"]},
    })

    assert storage["local_path"] is None
    assert storage["packages"] == {"longhorn": ["open-iscsi", "nfs-common"]}
    assert storage["nfs_server"] is None
    assert storage["nfs_server_packages"] == []
    assert storage["nfs_exports"] == []
    assert storage["ceph_devices"] == {}


def test_a_site_package_map_replaces_the_roles_whole(tmp_path: Path) -> None:
    # As in Ansible (hash_behaviour replace): a class the site's map leaves out needs nothing.
    storage = _storage(tmp_path, {"storage_classes": ["nfs", "rook-ceph"],
                                  "storage_nfs_exports": [{"path": "/srv", "clients": ["h"]}],
                                  "storage_packages": {"rook-ceph": ["lvm2", "sg3-utils"]}},
                       roles=(["worker"], ["storage"]))

    assert storage["packages"] == {"rook-ceph": ["lvm2", "sg3-utils"]}
    assert storage["nfs_server"] == "st-2"


def test_the_local_path_folder_is_expected_as_the_role_makes_it() -> None:
    tasks = yaml.safe_load((ROLES_DIR / "storage" / "tasks" / "main.yml").read_text())
    [made] = [task["ansible.builtin.file"] for task in tasks
              if task.get("ansible.builtin.file", {}).get("path") == "{{ storage_local_path_dir }}"]

    assert made["state"] == "directory"
    assert f"{made['owner']}:{made['group']}" == LOCAL_PATH_OWNER
    assert int(made["mode"], 8) == int(LOCAL_PATH_MODE, 8)
