"""Bringing a lab up, reporting on it and taking it down again, by what its state file records."""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import hashlib
import json
import logging
import os
import shutil
import stat
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from blueprint.errors import BadInput, DeployFailed, EnvironmentMissing
from blueprint.lab import network
from blueprint.lab.image import ensure_image
from blueprint.lab.mirror import start_mirror
from blueprint.lab.node import (
    NodeIdentity,
    host_key,
    host_shape,
    mount_overlay,
    mounted_paths,
    nspawn_command,
    read_nspawn_pid,
    start_supervisor,
    unmount,
    write_identity,
)
from blueprint.lab.paths import LAB_ROOT, lab_dir, node_dir
from blueprint.proc import pid_alive, require_tool, run, stop_pids

log = logging.getLogger(__name__)

DEFAULT_NAME = "lab"
DEFAULT_NODES = 3
DEFAULT_SUBNET = "10.77.0.0/24"
DEFAULT_SITE_DIR = Path("inventory/lab")
DEFAULT_MIRROR_PORT = 3149
READY_TIMEOUT = 180.0
KEY_FILE = "lab_ed25519"
KNOWN_HOSTS_FILE = "known_hosts"
SITE_FILE = "site.yaml"

NSPAWN_PROPAGATE = Path("/run/systemd/nspawn/propagate")
SUPERVISOR_MARK = "blueprint.lab.supervise"
MIRROR_MARK = "apt-cacher-ng"

# Paths in a node's overlay upper folder that change on their own while a node merely runs,
# so they say nothing about what a deploy changed:
#   var/log, tmp, var/tmp, run         logs (journal included) and scratch space
#   var/cache/apt, var/lib/apt/lists   apt's download cache and indexes (`apt-get update`)
#   var/lib/systemd/timers|random-seed|timesync   timer stamps and seeds systemd rewrites
#   var/lib/logrotate                  the daily logrotate stamp
#   root/.ansible                      Ansible's own working folder on the target
DIGEST_EXCLUDES = (
    "var/log",
    "tmp",
    "var/tmp",
    "run",
    "var/cache/apt",
    "var/lib/apt/lists",
    "var/lib/systemd/timers",
    "var/lib/systemd/random-seed",
    "var/lib/systemd/timesync",
    "var/lib/logrotate",
    "root/.ansible",
)

# Which Debian package provides each tool `lab up` runs.
REQUIRED_TOOLS = {
    "debootstrap": "debootstrap",
    "systemd-nspawn": "systemd-container",
    "apt-cacher-ng": "apt-cacher-ng",
    "ip": "iproute2",
    "ssh": "openssh-client",
    "ssh-keygen": "openssh-client",
    "mount": "mount",
}


@dataclass
class NodeState:
    """One node as recorded: its place on the network and the processes that run it."""

    name: str
    address: str
    roles: list[str]
    netns: str
    veth: str
    root: str
    supervisor_pid: int | None = None
    nspawn_pid: int | None = None


@dataclass
class LabState:
    """Everything one lab created, recorded in state.json as it is created."""

    name: str
    subnet: str
    bridge: str
    bridge_ip: str
    mirror_port: int
    site_dir: str
    nodes: list[NodeState] = field(default_factory=list)
    image: str = ""
    mirror_pid: int | None = None
    bridge_created: bool = False
    netns: list[str] = field(default_factory=list)
    veths: list[str] = field(default_factory=list)
    mounts: list[str] = field(default_factory=list)
    changes: list[str] = field(default_factory=list)

    @property
    def site_file(self) -> Path:
        return Path(self.site_dir) / SITE_FILE

    @property
    def key_file(self) -> Path:
        return Path(self.site_dir) / KEY_FILE

    @property
    def known_hosts(self) -> Path:
        return Path(self.site_dir) / KNOWN_HOSTS_FILE

    @property
    def apt_proxy(self) -> str:
        return f"http://{self.bridge_ip}:{self.mirror_port}"

    def save(self) -> None:
        path = state_path(self.name)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(dataclasses.asdict(self), indent=2) + "\n")
        os.replace(tmp, path)


@dataclass(frozen=True)
class NodeStatus:
    name: str
    address: str
    running: bool
    supervisor_pid: int | None
    nspawn_pid: int | None


@dataclass(frozen=True)
class LabStatus:
    """What runs of a lab right now."""

    name: str
    exists: bool
    mirror_running: bool
    nodes: tuple[NodeStatus, ...] = ()

    @property
    def running(self) -> bool:
        return self.exists and self.mirror_running and all(n.running for n in self.nodes)


def state_path(name: str) -> Path:
    return lab_dir(name) / "state.json"


def load_state(name: str) -> LabState | None:
    path = state_path(name)
    if not path.is_file():
        return None
    data: dict[str, Any] = json.loads(path.read_text())
    nodes = [NodeState(**node) for node in data.pop("nodes", [])]
    return LabState(nodes=nodes, **data)


@contextmanager
def _lab_lock(name: str) -> Iterator[None]:
    LAB_ROOT.mkdir(parents=True, exist_ok=True)
    with open(LAB_ROOT / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def preflight() -> None:
    """Stop with exit 4 unless root and every tool the lab runs is installed."""
    if os.geteuid() != 0:
        msg = "the lab needs root (network namespaces, mounts, systemd-nspawn); run it as root"
        raise EnvironmentMissing(msg)
    for tool, package in REQUIRED_TOOLS.items():
        require_tool(tool, package)


# --- up -------------------------------------------------------------------------------------


def lab_up(
    name: str = DEFAULT_NAME,
    nodes: int = DEFAULT_NODES,
    subnet: str = DEFAULT_SUBNET,
    site_dir: Path | str = DEFAULT_SITE_DIR,
    mirror_port: int = DEFAULT_MIRROR_PORT,
    timeout: float = READY_TIMEOUT,
) -> LabState:
    """Bring the lab up, or finish bringing it up; a running lab is left as it is.

    Returns the recorded state; `changes` lists what this call did (empty: nothing).
    """
    network.check_lab_name(name)
    plan = network.plan_addresses(subnet, nodes)
    if not 1024 <= mirror_port <= 65535:
        msg = f"mirror port {mirror_port} is out of range; use 1024 to 65535"
        raise BadInput(msg)
    preflight()
    site = Path(site_dir).resolve()

    with _lab_lock(name):
        # Nothing is created, not even the state file, before the subnet is known to be free.
        existing = _matching_state(name, plan, mirror_port, site)
        network.check_subnet_free(plan.subnet, network.bridge_name(name))
        state = existing or _new_state(name, plan, mirror_port, site)
        state.changes = []

        image = ensure_image()
        state.image = str(image)
        _ensure_site_key(site, state)

        # The bridge, recorded before it is made so a crash midway still gets it removed.
        if not network.link_exists(state.bridge):
            log.info("Creating bridge %s at %s", state.bridge, plan.bridge_cidr)
            state.bridge_created = True
            state.save()
            state.changes.append(f"bridge {state.bridge}")
        network.create_bridge(state.bridge, plan.bridge_cidr)

        # The mirror, so nodes can install packages from their first boot.
        if not pid_alive(state.mirror_pid, MIRROR_MARK):
            state.mirror_pid = start_mirror(name, state.bridge_ip, mirror_port)
            state.save()
            state.changes.append("mirror")

        hosts = _hosts_file(state)
        for index, node in enumerate(state.nodes):
            _ensure_node(state, index, node, image, hosts, plan.node_cidr(index))

        _write_known_hosts(state)
        _write_site_file(state)
        _wait_ready(state, timeout)
        for node in state.nodes:
            node.nspawn_pid = read_nspawn_pid(node_dir(name, node.name), timeout=0)
        state.save()

    if state.changes:
        log.info("Lab %s is up (%s)", name, ", ".join(state.changes))
    else:
        log.info("Lab %s was already up; nothing changed", name)
    return state


def _matching_state(
    name: str, plan: network.AddressPlan, mirror_port: int, site: Path
) -> LabState | None:
    """The lab's recorded state, refused when it was made with other settings."""
    state = load_state(name)
    if state is not None:
        wanted = (str(plan.subnet), len(plan.nodes), mirror_port, str(site))
        have = (state.subnet, len(state.nodes), state.mirror_port, state.site_dir)
        if wanted != have:
            msg = (
                f"lab {name} exists with subnet {have[0]}, {have[1]} nodes, mirror port "
                f"{have[2]}, site dir {have[3]}; asked for {wanted[0]}, {wanted[1]}, "
                f"{wanted[2]}, {wanted[3]}: run `blueprint lab down --name {name}` first"
            )
            raise BadInput(msg)
    return state


def _new_state(name: str, plan: network.AddressPlan, mirror_port: int, site: Path) -> LabState:
    state = LabState(
        name=name,
        subnet=str(plan.subnet),
        bridge=network.bridge_name(name),
        bridge_ip=str(plan.bridge),
        mirror_port=mirror_port,
        site_dir=str(site),
    )
    for index, address in enumerate(plan.nodes, start=1):
        node = network.node_name(name, index)
        state.nodes.append(
            NodeState(
                name=node,
                address=str(address),
                roles=["control-plane", "worker"] if index == 1 else ["worker"],
                netns=network.netns_name(name, index),
                veth=network.veth_name(name, index),
                root=str(node_dir(name, node) / "root"),
            )
        )
    state.save()
    return state


def _ensure_node(
    state: LabState, index: int, node: NodeState, image: Path, hosts: str, cidr: str
) -> None:
    folder = node_dir(state.name, node.name)
    folder.mkdir(parents=True, exist_ok=True)

    # Its network namespace and link, each recorded before it is made.
    if node.netns not in state.netns:
        state.netns.append(node.netns)
        state.save()
    if not network.netns_exists(node.netns):
        state.changes.append(f"netns {node.netns}")
    network.create_netns(node.netns)
    if node.veth not in state.veths:
        state.veths.append(node.veth)
        state.save()
    network.create_node_link(node.netns, node.veth, state.bridge, cidr)

    # Its root: the image seen through an overlay, its identity written once.
    if node.root not in state.mounts:
        state.mounts.append(node.root)
        state.save()
    root = mount_overlay(image, folder)
    marker = folder / "identity-written"
    if not marker.exists():
        identity = NodeIdentity(
            name=node.name,
            hosts=hosts,
            authorized_key=(Path(state.site_dir) / f"{KEY_FILE}.pub").read_text(),
            apt_proxy=state.apt_proxy,
            no_valid_until=_host_skips_valid_until(),
        )
        write_identity(root, identity)
        marker.write_text(f"{node.name}\n")

    # Its boot, under a supervisor that boots it again after a reboot.
    if pid_alive(node.supervisor_pid, SUPERVISOR_MARK):
        return
    stale = read_nspawn_pid(folder, timeout=0) or node.nspawn_pid
    if pid_alive(stale, f"--machine={node.name}"):
        log.warning("Node %s runs without its supervisor; stopping it first", node.name)
        stop_pids([(stale or 0, f"--machine={node.name}")])
    log.info("Starting node %s at %s", node.name, node.address)
    command = nspawn_command(root, node.name, node.netns, host_shape())
    node.supervisor_pid = start_supervisor(folder, command)
    state.save()
    node.nspawn_pid = read_nspawn_pid(folder)
    state.save()
    state.changes.append(f"node {node.name}")


def _ensure_site_key(site: Path, state: LabState) -> None:
    """The lab's SSH key: generated once per site dir, reused afterwards."""
    site.mkdir(parents=True, exist_ok=True)
    key = site / KEY_FILE
    if key.exists() and key.with_suffix(".pub").exists():
        return
    log.info("Generating the lab SSH key %s", key)
    key.unlink(missing_ok=True)
    comment = f"blueprint-lab-{state.name}"
    run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(key)])
    state.changes.append("ssh key")


def _host_skips_valid_until(apt_dir: Path = Path("/etc/apt")) -> bool:
    """True when the host's apt is told to ignore Valid-Until (a dated snapshot mirror)."""
    files = [apt_dir / "apt.conf", *sorted((apt_dir / "apt.conf.d").glob("*"))]
    for path in files:
        if path.is_file() and 'Check-Valid-Until "false"' in path.read_text(errors="replace"):
            return True
    return False


def _hosts_file(state: LabState) -> str:
    lines = ["127.0.0.1\tlocalhost", "::1\tlocalhost ip6-localhost ip6-loopback"]
    lines += [f"{node.address}\t{node.name}" for node in state.nodes]
    return "\n".join(lines) + "\n"


def _write_known_hosts(state: LabState) -> None:
    """One line per node, from the host key file inside the node (never ssh-keyscan)."""
    lines = [f"{node.name},{node.address} {host_key(Path(node.root))}" for node in state.nodes]
    state.known_hosts.write_text("\n".join(lines) + "\n")


def render_site_file(state: LabState) -> str:
    """site.yaml for the lab in the format of docs/site-file.md."""
    lines = [
        "# Written by `blueprint lab up`; it is rewritten on every `lab up`, edit nothing here.",
        "# The lab's nodes are systemd-nspawn containers on this machine (see README.md).",
        f"name: {state.name}",
        "blueprint: lab",
        "ssh:",
        "  user: root",
        f"  key: {KEY_FILE}",
        f"  known_hosts: {KNOWN_HOSTS_FILE}",
        "network:",
        f"  subnet: {state.subnet}",
        "artifacts:",
        "  mode: mirror",
        f"  apt_proxy: {state.apt_proxy}",
        "nodes:",
    ]
    for node in state.nodes:
        lines += [
            f"  - name: {node.name}",
            f"    address: {node.address}",
            f"    roles: [{', '.join(node.roles)}]",
        ]
    return "\n".join(lines) + "\n"


def _write_site_file(state: LabState) -> None:
    state.site_file.write_text(render_site_file(state))


def ssh_command(state: LabState, node: NodeState, *command: str) -> list[str]:
    """The ssh command line that runs `command` on `node` as root, host key checked."""
    options = {
        "IdentitiesOnly": "yes",
        "UserKnownHostsFile": str(state.known_hosts),
        "GlobalKnownHostsFile": "/dev/null",
        "StrictHostKeyChecking": "yes",
        "BatchMode": "yes",
        "ConnectTimeout": "3",
        "LogLevel": "ERROR",
    }
    flags = [part for key, value in options.items() for part in ("-o", f"{key}={value}")]
    return [
        "ssh",
        *("-F", "/dev/null", "-i", str(state.key_file)),
        *flags,
        f"root@{node.address}",
        *command,
    ]


def _wait_ready(state: LabState, timeout: float) -> None:
    """Wait until every node answers SSH and its systemd says running or degraded."""
    waiting = {node.name: node for node in state.nodes}
    deadline = time.monotonic() + timeout
    last: dict[str, str] = {}
    while waiting:
        for name, node in list(waiting.items()):
            result = run(
                ssh_command(state, node, "systemctl", "is-system-running"), check=False, timeout=15
            )
            answer = result.stdout.strip() or result.stderr.strip()
            last[name] = answer
            if result.stdout.strip() in ("running", "degraded"):
                log.info("Node %s is ready (%s)", name, result.stdout.strip())
                del waiting[name]
        if not waiting:
            return
        # A node whose supervisor ended will never answer: say so now, not at the timeout.
        dead = [
            n for n, node in waiting.items() if not pid_alive(node.supervisor_pid, SUPERVISOR_MARK)
        ]
        if dead or time.monotonic() > deadline:
            name = sorted(dead or waiting)[0]
            console = node_dir(state.name, name) / "console.log"
            why = "stopped while booting" if dead else f"was not ready within {timeout:.0f} s"
            msg = (
                f"node {name} {why} (last answer: {last.get(name) or 'none'}); "
                f"tail of {console}:\n{_tail(console, 15)}"
            )
            raise DeployFailed(msg)
        time.sleep(0.5)


def _tail(path: Path, lines: int) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


# --- status ---------------------------------------------------------------------------------


def lab_status(name: str = DEFAULT_NAME) -> LabStatus:
    """What of the lab runs now, from its state file and the live processes."""
    state = load_state(name)
    if state is None:
        return LabStatus(name=name, exists=False, mirror_running=False)
    nodes = []
    for node in state.nodes:
        nspawn = read_nspawn_pid(node_dir(name, node.name), timeout=0)
        running = pid_alive(node.supervisor_pid, SUPERVISOR_MARK) and pid_alive(
            nspawn, f"--machine={node.name}"
        )
        nodes.append(NodeStatus(node.name, node.address, running, node.supervisor_pid, nspawn))
    return LabStatus(name, True, pid_alive(state.mirror_pid, MIRROR_MARK), tuple(nodes))


# --- down -----------------------------------------------------------------------------------


def lab_down(name: str = DEFAULT_NAME) -> None:
    """Remove exactly what the lab recorded; safe to run twice and after a crash."""
    network.check_lab_name(name)
    if os.geteuid() != 0:
        msg = "the lab needs root to take its nodes down; run it as root"
        raise EnvironmentMissing(msg)
    with _lab_lock(name):
        state = load_state(name)
        if state is None:
            log.info("Lab %s is not up; nothing to take down", name)
            return

        # Nodes first, gracefully: SIGTERM makes nspawn shut its node down.
        log.info("Stopping %d nodes of lab %s", len(state.nodes), name)
        pids: list[tuple[int, str]] = []
        for node in state.nodes:
            mark = f"--machine={node.name}"
            current = read_nspawn_pid(node_dir(name, node.name), timeout=0)
            pids += [(pid, mark) for pid in {node.nspawn_pid, current} if pid]
            if node.supervisor_pid:
                pids.append((node.supervisor_pid, SUPERVISOR_MARK))
        stop_pids(pids)
        for node in state.nodes:
            # nspawn leaves an empty folder per machine here; it is this node's only trace.
            with contextlib.suppress(OSError):
                (NSPAWN_PROPAGATE / node.name).rmdir()

        # Then every mount under the lab folder, deepest first.
        folder = str(lab_dir(name)) + "/"
        mounts = set(state.mounts) | {m for m in mounted_paths() if m.startswith(folder)}
        for mount in sorted(mounts, key=len, reverse=True):
            unmount(mount)

        log.info("Removing the network of lab %s", name)
        for veth in state.veths:
            network.delete_link(veth)
        for netns in state.netns:
            network.delete_netns(netns)
        if state.bridge_created:
            network.delete_link(state.bridge)

        if state.mirror_pid:
            log.info("Stopping the mirror of lab %s", name)
            stop_pids([(state.mirror_pid, MIRROR_MARK)], timeout=10)

        # The node folders go only when nothing is mounted in them any more.
        still = [m for m in mounted_paths() if m.startswith(folder)]
        if still:
            msg = f"lab {name}: still mounted after unmount: {', '.join(still)}"
            raise DeployFailed(msg)
        shutil.rmtree(lab_dir(name))
        log.info("Lab %s is down", name)


# --- overlay digest -------------------------------------------------------------------------


def overlay_digest(name: str, node: str, exclude: tuple[str, ...] = DIGEST_EXCLUDES) -> str:
    """A SHA-256 over the node's overlay upper folder: its whole change from the image.

    Covers each path, its type and mode, file contents, symlink targets, device numbers
    (overlay whiteouts are 0:0 character devices) and the opaque-directory mark. A folder
    that overlayfs only copied up to hold a changed child (same mode as in the image, not
    opaque) is no change of its own: only its contents count, so a write to an excluded
    path such as var/cache/apt does not show through its parent var/cache.
    """
    upper = node_dir(name, node) / "upper"
    if not upper.is_dir():
        msg = f"lab {name} has no node {node} (no {upper})"
        raise BadInput(msg)
    state = load_state(name)
    lower = Path(state.image) if state is not None else None
    prefixes = tuple(p.strip("/") for p in exclude)
    digest = hashlib.sha256()
    for dirpath, dirnames, filenames in os.walk(upper):
        rel_dir = os.path.relpath(dirpath, upper)
        dirnames[:] = sorted(d for d in dirnames if not _excluded(_join(rel_dir, d), prefixes))
        for entry in [*dirnames, *sorted(filenames)]:
            rel = _join(rel_dir, entry)
            if _excluded(rel, prefixes):
                continue
            path = os.path.join(dirpath, entry)
            info = os.lstat(path)
            in_image = lower / rel if lower is not None else None
            if stat.S_ISDIR(info.st_mode) and in_image and _copied_up(path, in_image, info.st_mode):
                continue
            digest.update(f"{rel}\0{info.st_mode:o}\0".encode())
            if stat.S_ISREG(info.st_mode):
                with open(path, "rb") as handle:
                    digest.update(hashlib.file_digest(handle, "sha256").digest())
            elif stat.S_ISLNK(info.st_mode):
                digest.update(os.readlink(path).encode())
            elif stat.S_ISCHR(info.st_mode) or stat.S_ISBLK(info.st_mode):
                digest.update(f"{info.st_rdev}".encode())
            elif stat.S_ISDIR(info.st_mode):
                digest.update(_opaque(path))
            digest.update(b"\n")
    return digest.hexdigest()


def _copied_up(path: str, in_image: Path, mode: int) -> bool:
    """A folder overlayfs copied up unchanged: in the image with this mode, not opaque."""
    try:
        image_mode = os.lstat(in_image).st_mode
    except OSError:
        return False
    return image_mode == mode and not _opaque(path)


def _join(rel_dir: str, entry: str) -> str:
    return entry if rel_dir == "." else f"{rel_dir}/{entry}"


def _excluded(rel: str, prefixes: tuple[str, ...]) -> bool:
    return any(rel == p or rel.startswith(p + "/") for p in prefixes)


def _opaque(path: str) -> bytes:
    try:
        return os.getxattr(path, "trusted.overlay.opaque", follow_symlinks=False)
    except OSError:
        return b""
