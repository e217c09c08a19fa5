"""The SSH client config written for a validation run."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from blueprint.validate.model import NodeTarget
from blueprint.validate.sshconfig import render_ssh_config, write_ssh_config

NODES = [NodeTarget("lab-1", "10.77.0.11", "root"), NodeTarget("lab-2", "10.77.0.12", "ops")]


def test_one_host_block_per_node_with_checked_host_keys(tmp_path: Path) -> None:
    path = write_ssh_config(
        tmp_path / "ssh_config",
        NODES,
        identity_file=Path("/site/lab_ed25519"),
        known_hosts=Path("/site/known_hosts"),
        control_dir=tmp_path / "cm",
    )
    text = path.read_text()
    assert text.count("\nHost ") == 2
    assert "Host lab-2\n  HostName 10.77.0.12\n  User ops\n" in text
    assert text.count("StrictHostKeyChecking yes") == 2
    assert "UserKnownHostsFile /site/known_hosts" in text
    assert f"ControlPath {tmp_path}/cm/%C" in text
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "cm").stat().st_mode) == 0o700


def test_control_dir_too_long_for_a_socket() -> None:
    with pytest.raises(ValueError, match="too long for a socket path"):
        render_ssh_config(
            NODES,
            identity_file=Path("k"),
            known_hosts=Path("h"),
            control_dir=Path("/" + "x" * 100),
        )
