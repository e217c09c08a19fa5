"""Storage layer checks: each node prepared for the storage classes the blueprint selects.

What the storage role was asked to do comes from `expected["storage"]` (classes, the
local-path folder, packages per class, the NFS server node and its exports, the Rook-Ceph
devices per node). A check of a class that is not selected, or of a part that belongs to
another node, is skipped with that reason. Kernel features the host owns are skipped in a
container, as the role's preflight reports them there; on a host they fail.

Rook-Ceph devices: before Rook takes a listed device it must carry no signature at all; once
Rook has made it an OSD it carries Ceph's own (a bluestore label, or an LVM physical volume of
a `ceph-*` volume group). Both are right; any other signature fails. Only listed devices are
opened, read-only (`blkid -p`, `wipefs -n`, `pvs`).
"""

from __future__ import annotations

import logging
import re
import shlex
from typing import Any

import pytest

from blueprint.validate.plugin import Probe, expect

log = logging.getLogger(__name__)

GANESHA_CONFIG = "/etc/ganesha/ganesha.conf"
# ganesha.conf keys are case-insensitive; the value may be quoted.
GANESHA_PATH = re.compile(r'^\s*path\s*=\s*"?([^";]+?)"?\s*;', re.IGNORECASE)
# Signatures ceph-volume leaves on a device it prepared as an OSD (raw mode, LVM mode).
CEPH_BLUESTORE = "ceph_bluestore"
LVM_MEMBER = "LVM2_member"
CEPH_VG_PREFIX = "ceph-"


def _storage(expected: dict[str, Any]) -> dict[str, Any]:
    storage: dict[str, Any] = expected.get("storage") or {}
    return storage


def _skip_unless_selected(storage: dict[str, Any], name: str) -> None:
    classes = storage.get("classes") or []
    if name not in classes:
        pytest.skip(f"storage class {name} is not selected (classes: {', '.join(classes)})")


@pytest.mark.check("storage.local_path.dir")
def test_local_path_dir(node: Probe, expected: dict[str, Any]) -> None:
    storage = _storage(expected)
    _skip_unless_selected(storage, "local-path")
    local = storage["local_path"]
    folder, wanted = local["dir"], f"directory {local['owner']} {local['mode']}"
    shown = node.run(f"stat -c '%F %U:%G %a' {shlex.quote(folder)}")
    seen = shown.stdout.strip() if shown.rc == 0 else "missing"
    expect(seen == wanted, seen=f"{folder}: {seen}", expected=f"{folder}: {wanted}")
    # As root, test -w fails only on a read-only filesystem.
    writable = node.run(f"test -w {shlex.quote(folder)}")
    expect(writable.rc == 0, seen=f"{folder} is not writable (read-only filesystem?)",
           expected=f"{folder} writable by root")


def _installed(node: Probe, names: list[str]) -> set[str]:
    """The named packages dpkg has installed (status `?i`)."""
    query = node.run("dpkg-query -W -f='${Package} ${db:Status-Abbrev}\\n' "
                     + " ".join(shlex.quote(name) for name in names) + " 2>/dev/null || true")
    found = set()
    for line in query.stdout.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1][1:2] == "i":
            found.add(parts[0])
    return found


def wanted_packages(storage: dict[str, Any], node: str) -> dict[str, list[str]]:
    """Package -> what needs it on this node: the selected classes, and the NFS server."""
    wanted: dict[str, list[str]] = {}
    for name, packages in (storage.get("packages") or {}).items():
        for package in packages:
            wanted.setdefault(package, []).append(name)
    if storage.get("nfs_server") == node:
        for package in storage.get("nfs_server_packages") or []:
            wanted.setdefault(package, []).append("nfs server")
    return wanted


@pytest.mark.check("storage.packages")
def test_storage_packages(node: Probe, expected: dict[str, Any]) -> None:
    storage = _storage(expected)
    wanted = wanted_packages(storage, str(expected.get("node", "")))
    if not wanted:
        classes = ", ".join(storage.get("classes") or [])
        pytest.skip(f"the storage classes {classes} need no package on this node")
    installed = _installed(node, sorted(wanted))
    missing = [f"{name} ({', '.join(wanted[name])})" for name in sorted(wanted)
               if name not in installed]
    expect(not missing, seen=f"not installed: {', '.join(missing)}",
           expected=f"all of {', '.join(sorted(wanted))} installed")


def ganesha_paths(config: str) -> list[str]:
    """The `Path =` of every export in an nfs-ganesha config (comments left out)."""
    paths = []
    for line in config.splitlines():
        found = GANESHA_PATH.match(line.split("#", 1)[0])
        if found:
            paths.append(found.group(1).strip())
    return paths


@pytest.mark.check("storage.nfs.server")
def test_nfs_server(node: Probe, expected: dict[str, Any]) -> None:
    storage = _storage(expected)
    _skip_unless_selected(storage, "nfs")
    server = storage.get("nfs_server")
    if server != expected.get("node"):
        pytest.skip(f"the NFS server is {server} (the first node with node role storage)")

    state = node.run("systemctl is-active nfs-ganesha").stdout.strip() or "not installed"
    config = node.run(f"cat {GANESHA_CONFIG}")
    listed = ganesha_paths(config.stdout) if config.rc == 0 else []
    exports = list(storage.get("nfs_exports") or [])
    missing = [path for path in exports if path not in listed]
    problems = []
    if state != "active":
        problems.append(f"nfs-ganesha.service {state}")
    if config.rc != 0:
        problems.append(f"{GANESHA_CONFIG} not readable")
    elif missing:
        problems.append(f"{GANESHA_CONFIG} does not export {', '.join(missing)}")
    expect(not problems, seen="; ".join(problems),
           expected=f"nfs-ganesha active, exporting {', '.join(exports)}")


@pytest.mark.check("storage.iscsid.active")
def test_iscsid_active(node: Probe, expected: dict[str, Any]) -> None:
    _skip_unless_selected(_storage(expected), "longhorn")
    # The role starts iscsid only where the kernel shows the transport under /sys/module.
    if node.run("test -d /sys/module/iscsi_tcp").rc != 0:
        missing = "the kernel has no iSCSI transport (iscsi_tcp): iscsid cannot run"
        node.skip_if_container(missing)
        expect(False, seen=missing,
               expected="iscsi_tcp loaded or built in (Longhorn volumes need it)")
    state = node.run("systemctl is-active iscsid").stdout.strip() or "not installed"
    expect(state == "active", seen=f"iscsid.service {state}", expected="active")


def device_verdict(blkid: str, wipefs: str, vg_name: str) -> tuple[bool, str]:
    """(right, what was seen) for a listed device from `blkid -p -o export`, `wipefs -n
    --noheadings -O TYPE,OFFSET` and the volume group `pvs` names (empty: none)."""
    types = [line.split("=", 1)[1] for line in blkid.splitlines()
             if line.startswith(("TYPE=", "PTTYPE="))]
    for line in wipefs.splitlines():
        parts = line.split()
        if parts and parts[0] not in types:
            types.append(parts[0])
    if not types:
        return True, "raw (no signature)"
    if types == [CEPH_BLUESTORE]:
        return True, "taken by Ceph (bluestore label)"
    if types == [LVM_MEMBER] and vg_name.startswith(CEPH_VG_PREFIX):
        return True, f"taken by Ceph (LVM volume group {vg_name})"
    if types == [LVM_MEMBER]:
        return False, f"LVM physical volume of {vg_name or 'no volume group'}"
    return False, f"signature {', '.join(types)}"


@pytest.mark.check("storage.ceph.devices_raw")
def test_ceph_devices_raw(node: Probe, expected: dict[str, Any]) -> None:
    storage = _storage(expected)
    _skip_unless_selected(storage, "rook-ceph")
    devices = list((storage.get("ceph_devices") or {}).get(expected.get("node"), []))
    if not devices:
        pytest.skip("no raw device is listed for this node (storage_ceph_devices)")

    wrong: list[str] = []
    seen: list[str] = []
    for device in devices:
        quoted = shlex.quote(device)
        if node.run(f"test -b {quoted}").rc != 0:
            wrong.append(f"{device} is not a block device")
            continue
        blkid = node.run(f"blkid -p -o export {quoted}")
        # blkid exits 2 when it finds nothing; wipefs may find a signature blkid does not
        # report first, and fails on a device in use (then blkid alone decides).
        wipefs = node.run(f"wipefs -n --noheadings -O TYPE,OFFSET {quoted}")
        vg_name = ""
        if "TYPE=" + LVM_MEMBER in blkid.stdout.splitlines():
            vg_name = node.run(f"pvs --noheadings -o vg_name {quoted}").stdout.strip()
        if blkid.rc not in (0, 2):
            wrong.append(f"{device}: blkid failed ({blkid.rc})")
            continue
        right, what = device_verdict(blkid.stdout, wipefs.stdout if wipefs.rc == 0 else "",
                                     vg_name)
        (seen if right else wrong).append(f"{device} {what}")
    expect(not wrong, seen="; ".join(wrong + seen),
           expected="every listed device a block device, raw or taken by Ceph")
