"""The storage layer's host preparation on real lab nodes.

The lab kernel has no NFS, iSCSI or RBD (LAB-NOTES), so what can be real here is: the packages
and folders of every class, idempotent; an NFS export served by nfs-ganesha (userspace) on the
storage node and listed from another node with libnfs's userspace client `nfs-ls`; the
Rook-Ceph device check on real loop devices handed to a node (created by this module on the
host, removed at the end): a raw listed one passes, one with a filesystem is refused, an
unlisted one is never touched. Missing kernel features are reported as notes, not passed.

Two lab limits shape the NFS check. nfs-ganesha's VFS backend needs file handles: the node's
overlay root has none, so the test mounts a tmpfs on the export folder (as a real site has a
data disk there); and nspawn's seccomp filter refuses `open_by_handle_at` (EPERM, measured), so
the export's contents cannot be read through NFS in a lab node. What is proven is that the
export is served: another node lists it in the server's NFSv4 pseudo filesystem.

After the deploy, the storage layer's checks (validation/checks/test_storage.py, run by the
real runner with a suite of only those checks, since the lab suite has none) pass; three real
faults, one per node, fail exactly their check on exactly their node, and repairing them makes
the layer green again.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import yaml
from rich.console import Console

from blueprint.deploy import DeployOutcome, deploy
from blueprint.errors import DeployFailed, ExitCode
from blueprint.lab.node import read_nspawn_pid
from blueprint.lab.paths import node_dir
from blueprint.loader import load_site
from blueprint.state import StateDir
from blueprint.validate import Status, ValidationReport, run_validation
from blueprint.validation import build_target

if TYPE_CHECKING:
    from tests.integration.conftest import LabHandle

pytestmark = pytest.mark.lab

# After the kubernetes layer's module (40), before the GPU layer's; the packages it adds stay.
LAB_STAGE = 45

STORAGE, CLIENT, DISKS = 1, 0, 2  # lab node indexes: NFS server, NFS client, loop devices
EXPORT = "/srv/nfs/models"
LISTED_RAW, LISTED_EXT4, UNLISTED = "/dev/bp-raw", "/dev/bp-ext4", "/dev/bp-unlisted"
LOCAL_PATH = "/opt/local-path-provisioner"
STORAGE_CHECKS = ["storage.local_path.dir", "storage.packages", "storage.nfs.server",
                  "storage.iscsid.active", "storage.ceph.devices_raw"]


@dataclass
class StorageLab:
    lab: LabHandle
    site_file: Path
    state: StateDir
    images: dict[str, Path]
    # The host's loop device behind each device file of the node.
    loops: dict[str, str]
    suite_file: Path

    def write_site(self, devices: list[str]) -> None:
        data = yaml.safe_load(self.site_file.read_text())
        data["overrides"]["storage_ceph_devices"] = {self.lab.nodes[DISKS].name: devices}
        self.site_file.write_text(yaml.safe_dump(data, sort_keys=False))

    def deploy(self, **kwargs: object) -> DeployOutcome:
        return deploy(load_site(self.site_file), self.state, Console(file=io.StringIO()),
                      **kwargs)  # type: ignore[arg-type]

    def validate(self, out: Path) -> ValidationReport:
        """The storage checks on every node, by the real runner, as `blueprint validate`."""
        target = build_target(load_site(self.site_file), self.state)
        target = dataclasses.replace(target, suite_file=self.suite_file)
        return run_validation(target, out)


def _in_node(pid: int, command: list[str]) -> None:
    """Run a command in a node's namespaces from the host (as nspawn's --bind would set up)."""
    subprocess.run(["nsenter", "-t", str(pid), "-m", "-u", "-i", "-n", "-p", "--", *command],
                   check=True, capture_output=True, timeout=30)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def storage(lab: LabHandle, tmp_path_factory: pytest.TempPathFactory) -> Iterator[StorageLab]:
    work = tmp_path_factory.mktemp("storage-layer")
    names = [node.name for node in lab.nodes]

    # Three loop devices on the host, handed to one node as device files.
    images: dict[str, Path] = {}
    loops: dict[str, str] = {}

    def node_init(index: int) -> int:
        # The node's current systemd-nspawn (a node that rebooted has a new one), then
        # its child: the node's own init.
        nspawn = read_nspawn_pid(node_dir(lab.name, names[index]), timeout=0)
        assert nspawn is not None, f"{names[index]} has no running systemd-nspawn"
        found = subprocess.run(["pgrep", "-P", str(nspawn)], capture_output=True, text=True,
                               check=True)
        return int(found.stdout.split()[0])

    child = node_init(DISKS)
    server = node_init(STORAGE)
    mounted = False
    try:
        _in_node(server, ["mkdir", "-p", EXPORT])
        _in_node(server, ["mount", "-t", "tmpfs", "-o", "size=16m,mode=755", "tmpfs", EXPORT])
        mounted = True
        for device in (LISTED_RAW, LISTED_EXT4, UNLISTED):
            image = work / f"{Path(device).name}.img"
            subprocess.run(["truncate", "-s", "32M", str(image)], check=True)
            if device != LISTED_RAW:
                subprocess.run(["mkfs.ext4", "-q", "-F", str(image)], check=True)
            loop = subprocess.run(["losetup", "-f", "--show", str(image)], check=True,
                                  capture_output=True, text=True).stdout.strip()
            loops[device] = loop
            minor = os.minor(os.stat(loop).st_rdev)
            _in_node(child, ["mknod", device, "b", "7", str(minor)])
            images[device] = image

        site_dir = work / "site"
        site_dir.mkdir()
        data = lab.site_data("storage-lab", "storage-lab.yaml")
        data["nodes"][STORAGE]["roles"] = ["worker", "storage"]
        data["overrides"] = {
            "storage_classes": ["local-path", "nfs", "longhorn", "rook-ceph"],
            "storage_nfs_exports": [{"path": EXPORT, "clients": [str(lab.state.subnet)],
                                     "access": "RW"}],
        }
        (site_dir / "site.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
        (site_dir / "storage-lab.yaml").write_text(yaml.safe_dump({
            "name": "storage-lab", "version": "0.1.0",
            "description": "The lab's OS layer and storage host preparation",
            "layers": [{"name": "os_baseline", "roles": ["os_baseline"]},
                       {"name": "storage", "roles": ["storage"], "validates": ["storage"]}],
            "validation": {"suite": "lab"},
        }, sort_keys=False))
        # The lab suite has no storage check (the lab blueprint deploys no storage layer).
        suite_file = work / "storage-suite.yaml"
        suite_file.write_text(yaml.safe_dump({
            "name": "storage-lab",
            "checks": [{"id": check, "mandatory": True} for check in STORAGE_CHECKS],
        }, sort_keys=False))
        ctx = StorageLab(lab, site_dir / "site.yaml", StateDir.for_site(site_dir), images,
                         loops, suite_file)
        ctx.write_site([LISTED_RAW])
        ctx.deploy(requested=["os_baseline"])
        yield ctx
    finally:
        for device in images:
            subprocess.run(["nsenter", "-t", str(child), "-m", "--", "rm", "-f", device],
                           check=False, capture_output=True)
        for loop in loops.values():
            subprocess.run(["losetup", "-d", loop], check=False)
        # nfs-ganesha was started by the role on the storage node: stop it there.
        lab.ssh(names[STORAGE], "systemctl disable --now nfs-ganesha", check=False)
        if mounted:
            subprocess.run(["nsenter", "-t", str(server), "-m", "--", "umount", EXPORT],
                           check=False, capture_output=True)


def test_device_with_a_filesystem_is_refused_before_any_change(storage: StorageLab) -> None:
    storage.write_site([LISTED_RAW, LISTED_EXT4])
    before = {device: _sha256(image) for device, image in storage.images.items()}
    try:
        with pytest.raises(DeployFailed) as refused:
            storage.deploy(requested=["storage"])
    finally:
        storage.write_site([LISTED_RAW])

    message = str(refused.value)
    assert "preflight stopped the run before any change" in message
    assert f"device {LISTED_EXT4} is listed for Rook-Ceph but is not raw" in message
    assert "ext4" in message
    assert LISTED_RAW not in message.split("device", 1)[1].split("is listed")[0]
    assert {device: _sha256(image) for device, image in storage.images.items()} == before
    disks = storage.lab.nodes[DISKS].name
    assert storage.lab.ssh(disks, "dpkg -s lvm2", check=False).returncode != 0


def test_host_preparation_converges_then_changes_nothing(storage: StorageLab) -> None:
    unlisted = _sha256(storage.images[UNLISTED])

    first = storage.deploy(requested=["storage"])
    second = storage.deploy(requested=["storage"])

    [result] = first.results
    assert result.ok and result.changed > 0
    [again] = second.results
    assert again.ok and again.changed == 0, [c.task for c in again.changes]
    # Missing kernel features are said, never passed.
    notes = " ".join(note.diff for note in result.notes)
    assert "no iSCSI initiator" in notes and "no rbd module" in notes
    for node in storage.lab.nodes:
        packages = storage.lab.ssh(node, "dpkg-query -W -f='${Package}\\n' "
                                         "open-iscsi nfs-common lvm2").stdout.split()
        assert sorted(packages) == ["lvm2", "nfs-common", "open-iscsi"]
        assert storage.lab.ssh(node, "stat -c %a /opt/local-path-provisioner").stdout.strip() \
            == "755"
    # The unlisted device was never read or written.
    assert _sha256(storage.images[UNLISTED]) == unlisted


def test_nfs_export_is_served_and_seen_from_another_node_with_a_userspace_client(
    storage: StorageLab,
) -> None:
    server, client = storage.lab.nodes[STORAGE], storage.lab.nodes[CLIENT]
    assert storage.lab.ssh(server, "systemctl is-active nfs-ganesha").stdout.strip() == "active"
    storage.lab.ssh(client, "DEBIAN_FRONTEND=noninteractive apt-get install -y -q "
                            "libnfs-utils >/dev/null", timeout=300)

    # The NFSv4 pseudo filesystem holds exactly the exports that the server brought up.
    top = storage.lab.ssh(client, f"nfs-ls 'nfs://{server.address}/?version=4'", timeout=60)

    assert [line.split()[-1] for line in top.stdout.splitlines()] == [Path(EXPORT).parts[1]]


def _statuses(report: ValidationReport) -> dict[tuple[str, str], Status]:
    return {(r.check_id, r.node): r.status for r in report.results}


def test_storage_checks_pass_on_the_prepared_nodes(storage: StorageLab, tmp_path: Path) -> None:
    names = [node.name for node in storage.lab.nodes]

    report = storage.validate(tmp_path / "green")

    passed, skipped = Status.PASSED, Status.SKIPPED
    wanted: dict[tuple[str, str], Status] = {}
    for index, name in enumerate(names):
        wanted |= {
            ("storage.local_path.dir", name): passed,
            ("storage.packages", name): passed,
            ("storage.nfs.server", name): passed if index == STORAGE else skipped,
            # The lab kernel has no iscsi_tcp: host-owned in a container, never passed.
            ("storage.iscsid.active", name): skipped,
            ("storage.ceph.devices_raw", name): passed if index == DISKS else skipped,
        }
    assert _statuses(report) == wanted
    assert report.exit_code is ExitCode.OK
    messages = {(r.check_id, r.node): r.message for r in report.results}
    assert "host-owned in a container" in messages[("storage.iscsid.active", names[0])]
    assert "iscsi_tcp" in messages[("storage.iscsid.active", names[0])]
    assert f"the NFS server is {names[STORAGE]}" in messages[("storage.nfs.server", names[0])]
    # Only the listed device was opened: no command names the other two device files.
    commands = " ".join(c.command for r in report.results for c in r.commands)
    assert LISTED_RAW in commands
    assert LISTED_EXT4 not in commands and UNLISTED not in commands


def test_each_storage_fault_fails_exactly_its_check_on_its_node_until_repaired(
    storage: StorageLab, tmp_path: Path,
) -> None:
    lab, names = storage.lab, [node.name for node in storage.lab.nodes]
    loop = storage.loops[LISTED_RAW]
    wanted = {
        ("storage.local_path.dir", names[CLIENT]): f"seen: {LOCAL_PATH}: missing",
        ("storage.nfs.server", names[STORAGE]): "seen: nfs-ganesha.service inactive",
        ("storage.ceph.devices_raw", names[DISKS]): f"seen: {LISTED_RAW} signature ext4",
    }

    # One fault per node; the filesystem is written on the host, through the node's loop device.
    try:
        lab.ssh(names[CLIENT], f"rmdir {LOCAL_PATH}")
        lab.ssh(names[STORAGE], "systemctl stop nfs-ganesha")
        subprocess.run(["mkfs.ext4", "-q", "-F", loop], check=True, timeout=60)
        report = storage.validate(tmp_path / "faulty")
    finally:
        lab.ssh(names[CLIENT], f"mkdir -p -m 0755 {LOCAL_PATH}", check=False)
        lab.ssh(names[STORAGE], "systemctl start nfs-ganesha", check=False)
        subprocess.run(["wipefs", "-a", "-q", loop], check=False, timeout=60)

    assert report.failed_checks() | report.errored_checks() == set(wanted)
    assert report.exit_code is ExitCode.VALIDATION_FAILED
    for (check, name), reason in wanted.items():
        [message] = [r.message for r in report.results if (r.check_id, r.node) == (check, name)]
        assert message.startswith(reason), message

    repaired = storage.validate(tmp_path / "repaired")

    assert repaired.failed_checks() | repaired.errored_checks() == set()
    assert repaired.exit_code is ExitCode.OK
