"""One lab node: its overlay root, its identity written before first boot, and its boot.

Host shapes: the lab was built and tested on a host with no systemd as PID 1 and cgroup v1
(CI runners and the developer machines). There nspawn needs `--register=no --keep-unit`, or it
stops on the missing system bus. On a host with systemd as PID 1 (a laptop, cgroup v2) nspawn
registers with systemd-machined and creates its own scope, so those two flags are left out;
that shape was not tested here. Neither was a host with cgroup v2 but without systemd as PID 1:
nspawn then needs a cgroup subtree it may write, which `--keep-unit` assumes it already has.
"""

from __future__ import annotations

import logging
import os
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from blueprint.proc import run, start_detached

log = logging.getLogger(__name__)

NSPAWN_ENV = {"SYSTEMD_NSPAWN_API_VFS_WRITABLE": "network"}


@dataclass(frozen=True)
class HostShape:
    """What kind of init and cgroup hierarchy the host runs."""

    systemd_pid1: bool
    cgroup_v2: bool


def host_shape() -> HostShape:
    comm = Path("/proc/1/comm").read_text().strip() if Path("/proc/1/comm").exists() else ""
    unified = Path("/sys/fs/cgroup/cgroup.controllers").exists()
    return HostShape(systemd_pid1=comm == "systemd", cgroup_v2=unified)


# --- the root -------------------------------------------------------------------------------


def mounted_paths() -> set[str]:
    """Mount points currently listed in /proc/mounts (octal escapes decoded)."""
    points: set[str] = set()
    for line in Path("/proc/mounts").read_text().splitlines():
        fields = line.split()
        if len(fields) >= 2:
            points.add(fields[1].encode().decode("unicode_escape"))
    return points


def mount_overlay(image: Path, node_dir: Path) -> Path:
    """Mount the node's copy-on-write view of the image at node_dir/root (once)."""
    upper, work, root = node_dir / "upper", node_dir / "work", node_dir / "root"
    for folder in (upper, work, root):
        folder.mkdir(parents=True, exist_ok=True)
    if str(root) not in mounted_paths():
        options = f"lowerdir={image},upperdir={upper},workdir={work}"
        run(["mount", "-t", "overlay", "overlay", "-o", options, str(root)])
    return root


def unmount(path: str) -> None:
    if path in mounted_paths():
        result = run(["umount", path], check=False)
        if result.returncode != 0:
            log.warning("umount %s failed (%s); detaching it lazily", path, result.stderr.strip())
            run(["umount", "-l", path], check=False)


@dataclass(frozen=True)
class NodeIdentity:
    """What makes a node itself, written into its root before it first boots."""

    name: str
    hosts: str
    authorized_key: str
    apt_proxy: str
    no_valid_until: bool


def write_identity(root: Path, ident: NodeIdentity) -> None:
    """Hostname, hosts, machine-id, SSH host keys, root's key, and apt through the mirror."""
    _write(root / "etc/hostname", f"{ident.name}\n")
    _write(root / "etc/hosts", ident.hosts)
    _write(root / "etc/machine-id", f"{uuid.uuid4().hex}\n", mode=0o444)

    # Fresh host keys: the image carries none, so each node's are its own.
    for old in (root / "etc/ssh").glob("ssh_host_*"):
        old.unlink()
    run(["ssh-keygen", "-A", "-f", str(root)])

    ssh_dir = root / "root/.ssh"
    ssh_dir.mkdir(mode=0o700, exist_ok=True)
    _write(ssh_dir / "authorized_keys", ident.authorized_key.strip() + "\n", mode=0o600)

    # The same shape debian-installer leaves on a real site that installs through a proxy.
    apt_conf = f'Acquire::http::Proxy "{ident.apt_proxy}/";\n'
    if ident.no_valid_until:
        # The host's mirror is a dated snapshot whose Release files are past Valid-Until.
        apt_conf += 'Acquire::Check-Valid-Until "false";\n'
    _write(root / "etc/apt/apt.conf", apt_conf)
    _write(
        root / "etc/apt/sources.list",
        "deb http://deb.debian.org/debian bookworm main\n"
        "deb http://deb.debian.org/debian bookworm-updates main\n"
        "deb http://deb.debian.org/debian-security bookworm-security main\n",
    )


def host_key(root: Path) -> str:
    """The node's own ed25519 public host key, "type base64" (no comment)."""
    fields = (root / "etc/ssh/ssh_host_ed25519_key.pub").read_text().split()
    return f"{fields[0]} {fields[1]}"


def _write(path: Path, text: str, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.is_symlink():
        path.unlink()
    path.write_text(text)
    os.chmod(path, mode)


# --- boot and stop --------------------------------------------------------------------------


def nspawn_command(root: Path, node: str, netns: str, shape: HostShape) -> list[str]:
    cmd = [
        "systemd-nspawn",
        "-b",
        "-D",
        str(root),
        f"--machine={node}",
        f"--network-namespace-path=/run/netns/{netns}",
        "--capability=CAP_NET_ADMIN",
        "--console=read-only",
    ]
    if not shape.systemd_pid1:
        # No system bus to register with, and no unit of our own to move into.
        cmd += ["--register=no", "--keep-unit"]
    return cmd


def start_supervisor(node_dir: Path, command: list[str]) -> int:
    """Start the node's supervisor in its own session, logging to node_dir/console.log."""
    pidfile = node_dir / "nspawn.pid"
    pidfile.unlink(missing_ok=True)
    cmd = [
        sys.executable,
        "-m",
        "blueprint.lab.supervise",
        "--pidfile",
        str(pidfile),
        "--",
        *command,
    ]
    proc = start_detached(cmd, node_dir / "console.log", env={**os.environ, **NSPAWN_ENV})
    return proc.pid


def read_nspawn_pid(node_dir: Path, timeout: float = 5.0) -> int | None:
    """The PID of the node's current systemd-nspawn, as its supervisor wrote it."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return int((node_dir / "nspawn.pid").read_text().strip())
        except (OSError, ValueError):
            if time.monotonic() >= deadline:
                return None
            time.sleep(0.1)
