"""The OpenSSH client config the validation runner connects with: one Host block per node."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path

from blueprint.validate.model import NodeTarget

log = logging.getLogger(__name__)

# Unix socket paths are limited to about 104 bytes; %C is a short hash of the connection.
CONTROL_PATH_MAX_DIR = 80


def render_ssh_config(
    nodes: Sequence[NodeTarget],
    *,
    identity_file: Path,
    known_hosts: Path,
    control_dir: Path,
    proxy_jump: str | None = None,
) -> str:
    """Host blocks for `nodes`: key login only, host keys checked, one reused connection each."""
    if len(str(control_dir)) > CONTROL_PATH_MAX_DIR:
        msg = f"control_dir {control_dir} is too long for a socket path; use a shorter one"
        raise ValueError(msg)
    lines = ["# Written for one validation run; one Host block per node."]
    for node in nodes:
        lines += [
            f"Host {node.name}",
            f"  HostName {node.address}",
            f"  User {node.ssh_user}",
            f"  IdentityFile {identity_file}",
            "  IdentitiesOnly yes",
            f"  UserKnownHostsFile {known_hosts}",
            "  GlobalKnownHostsFile /dev/null",
            "  StrictHostKeyChecking yes",
            "  PasswordAuthentication no",
            "  BatchMode yes",
            "  ControlMaster auto",
            f"  ControlPath {control_dir}/%C",
            "  ControlPersist 120",
            "  LogLevel ERROR",
        ]
        if proxy_jump:
            lines.append(f"  ProxyJump {proxy_jump}")
    return "\n".join(lines) + "\n"


def write_ssh_config(
    path: Path,
    nodes: Sequence[NodeTarget],
    *,
    identity_file: Path,
    known_hosts: Path,
    control_dir: Path,
    proxy_jump: str | None = None,
) -> Path:
    """Write the config (mode 0600) and make `control_dir` (mode 0700)."""
    control_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    text = render_ssh_config(
        nodes,
        identity_file=identity_file,
        known_hosts=known_hosts,
        control_dir=control_dir,
        proxy_jump=proxy_jump,
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
    return path
