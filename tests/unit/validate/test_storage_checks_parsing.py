"""The storage checks' readings: ganesha's exports, device signatures, packages per node."""

from __future__ import annotations

import sys
from pathlib import Path

import jinja2
import pytest

from blueprint.paths import ROLES_DIR

CHECKS = Path(__file__).resolve().parents[3] / "validation" / "checks"
sys.path.insert(0, str(CHECKS))

import test_storage  # noqa: E402  (the check modules live outside the package)


def test_ganesha_paths_of_the_config_the_role_writes() -> None:
    template = (ROLES_DIR / "storage" / "templates" / "ganesha.conf.j2").read_text()
    exports = [{"path": "/srv/nfs/models", "clients": ["10.20.0.0/24"], "access": "RW"},
               {"path": "/srv/nfs/data", "clients": ["h1", "h2"], "access": "RO"}]
    config = jinja2.Template(template).render(storage_nfs_exports=exports)

    assert test_storage.ganesha_paths(config) == ["/srv/nfs/models", "/srv/nfs/data"]


def test_ganesha_paths_reads_any_case_and_skips_comments() -> None:
    config = 'EXPORT {\n  path = /a;\n  # Path = "/b";\n  PATH="/c" ; # the third\n}\n'

    assert test_storage.ganesha_paths(config) == ["/a", "/c"]


LVM_BLKID = "DEVNAME=/dev/sdb\nUUID=x\nVERSION=LVM2 001\nTYPE=LVM2_member\nUSAGE=raid\n"


@pytest.mark.parametrize(
    ("blkid", "wipefs", "vg_name", "right", "seen"),
    [
        ("", "", "", True, "raw (no signature)"),
        ("DEVNAME=/dev/sdb\nTYPE=ceph_bluestore\nUSAGE=other\n", "", "", True,
         "taken by Ceph (bluestore label)"),
        (LVM_BLKID, "LVM2_member 0x218\n", "ceph-3f1c2a", True,
         "taken by Ceph (LVM volume group ceph-3f1c2a)"),
        (LVM_BLKID, "", "vg0", False, "LVM physical volume of vg0"),
        ("DEVNAME=/dev/sdb\nTYPE=ext4\nUSAGE=filesystem\n", "ext4 0x438\n", "", False,
         "signature ext4"),
        ("DEVNAME=/dev/sdb\nPTUUID=y\nPTTYPE=gpt\n", "gpt 0x200\nPMBR 0x1fe\n", "", False,
         "signature gpt, PMBR"),
        # A second signature only wipefs lists: not Ceph's alone.
        ("DEVNAME=/dev/sdb\nTYPE=ceph_bluestore\n", "ceph_bluestore 0x0\nxfs 0x0\n", "",
         False, "signature ceph_bluestore, xfs"),
    ],
    ids=["raw", "bluestore", "ceph-lvm", "other-lvm", "ext4", "gpt", "bluestore+xfs"],
)
def test_device_verdict(blkid: str, wipefs: str, vg_name: str, right: bool, seen: str) -> None:
    assert test_storage.device_verdict(blkid, wipefs, vg_name) == (right, seen)


STORAGE = {"packages": {"nfs": ["nfs-common"], "longhorn": ["open-iscsi", "nfs-common"]},
           "nfs_server": "st-1", "nfs_server_packages": ["nfs-ganesha", "nfs-ganesha-vfs"]}


def test_wanted_packages_name_what_needs_them_and_add_the_server_on_its_node() -> None:
    assert test_storage.wanted_packages(STORAGE, "cp-1") == {
        "nfs-common": ["nfs", "longhorn"], "open-iscsi": ["longhorn"]}
    assert test_storage.wanted_packages(STORAGE, "st-1")["nfs-ganesha-vfs"] == ["nfs server"]
    assert test_storage.wanted_packages({}, "cp-1") == {}
