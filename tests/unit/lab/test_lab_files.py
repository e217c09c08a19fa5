"""What the lab writes and reads without root: site file, apt sources, overlay digest."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

from blueprint.lab import lab as labmod
from blueprint.lab.image import host_mirror, image_key
from blueprint.lab.lab import LabState, NodeState, overlay_digest, render_site_file
from blueprint.lab.mirror import host_security_mirror, mirror_config


def make_state(tmp_path: Path) -> LabState:
    nodes = [
        NodeState(f"lab-{i}", f"10.77.0.{10 + i}", roles, f"bp-lab-{i}", f"bplab_{i}", "/r")
        for i, roles in ((1, ["control-plane", "worker"]), (2, ["worker"]))
    ]
    return LabState(
        name="lab",
        subnet="10.77.0.0/24",
        bridge="bplab",
        bridge_ip="10.77.0.1",
        mirror_port=3149,
        site_dir=str(tmp_path),
        nodes=nodes,
    )


def test_site_file_matches_the_documented_format(tmp_path: Path) -> None:
    text = render_site_file(make_state(tmp_path))
    assert text.startswith("# Written by `blueprint lab up`")
    assert yaml.safe_load(text) == {
        "name": "lab",
        "blueprint": "lab",
        "ssh": {"user": "root", "key": "lab_ed25519", "known_hosts": "known_hosts"},
        "network": {"subnet": "10.77.0.0/24"},
        "artifacts": {"mode": "mirror", "apt_proxy": "http://10.77.0.1:3149"},
        "nodes": [
            {"name": "lab-1", "address": "10.77.0.11", "roles": ["control-plane", "worker"]},
            {"name": "lab-2", "address": "10.77.0.12", "roles": ["worker"]},
        ],
    }


def test_state_round_trips_through_its_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(labmod, "state_path", lambda name: tmp_path / name / "state.json")
    state = make_state(tmp_path)
    state.mirror_pid = 42
    state.save()
    assert labmod.load_state("lab") == state
    assert labmod.load_state("other") is None


def test_apt_sources_skip_comments(tmp_path: Path) -> None:
    (tmp_path / "sources.list.d").mkdir()
    (tmp_path / "sources.list.d/debian.sources").write_text(
        "Types: deb\n"
        "# http://snapshot.debian.org/archive/debian/20250520T000000Z\n"
        "URIs: http://mirror.example/debian/\n"
        "Suites: bookworm\n\n"
        "Types: deb\n"
        "# http://snapshot.debian.org/archive/debian-security/20250520T000000Z\n"
        "URIs: http://mirror.example/debian-security\n"
    )
    assert host_mirror(tmp_path) == "http://mirror.example/debian"
    assert host_security_mirror(tmp_path) == "http://mirror.example/debian-security"


def test_apt_sources_one_line_format_and_default(tmp_path: Path) -> None:
    assert host_mirror(tmp_path) == "http://deb.debian.org/debian"
    (tmp_path / "sources.list").write_text(
        "# deb http://old.example/debian bookworm main\n"
        "deb [arch=amd64] http://one.example/debian bookworm main\n"
    )
    assert host_mirror(tmp_path) == "http://one.example/debian"


def test_image_key_follows_the_package_list() -> None:
    assert image_key("bookworm", ("a", "b")) == image_key("bookworm", ("b", "a"))
    assert image_key("bookworm", ("a",)) != image_key("bookworm", ("a", "b"))
    assert image_key("trixie", ("a",)).startswith("trixie-minbase-")


def test_mirror_config_binds_the_bridge(tmp_path: Path) -> None:
    text = mirror_config("10.77.0.1", 3149, tmp_path / "c", tmp_path / "l", tmp_path)
    assert "BindAddress: 10.77.0.1\n" in text
    assert "Port: 3149\n" in text
    assert "file:backends_debian_security" in text


@pytest.fixture
def upper(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setattr(labmod, "node_dir", lambda name, node: tmp_path / name / node)
    folder = tmp_path / "lab" / "lab-1" / "upper"
    (folder / "etc").mkdir(parents=True)
    (folder / "etc/hostname").write_text("lab-1\n")
    (folder / "var/log/journal").mkdir(parents=True)
    os.symlink("/lib/systemd/system/ssh.service", folder / "etc/sshd.service")
    return folder


def test_digest_sees_contents_modes_links_but_not_volatile_paths(upper: Path) -> None:
    first = overlay_digest("lab", "lab-1")
    (upper / "var/log/journal/system.journal").write_text("noise")
    (upper / "tmp").mkdir()
    (upper / "tmp/x").write_text("noise")
    assert overlay_digest("lab", "lab-1") == first

    (upper / "etc/hostname").write_text("lab-9\n")
    changed = overlay_digest("lab", "lab-1")
    assert changed != first
    (upper / "etc/hostname").write_text("lab-1\n")
    assert overlay_digest("lab", "lab-1") == first

    os.chmod(upper / "etc/hostname", 0o600)
    assert overlay_digest("lab", "lab-1") != first
    os.chmod(upper / "etc/hostname", 0o644)

    (upper / "etc/sshd.service").unlink()
    os.symlink("/dev/null", upper / "etc/sshd.service")
    assert overlay_digest("lab", "lab-1") != first


def test_digest_of_unknown_node_is_bad_input(upper: Path) -> None:
    with pytest.raises(labmod.BadInput, match="no node"):
        overlay_digest("lab", "lab-7")


def test_preflight_needs_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    with pytest.raises(labmod.EnvironmentMissing, match="needs root") as err:
        labmod.preflight()
    assert err.value.exit_code == 4


def test_preflight_names_the_package_of_a_missing_tool(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    monkeypatch.setattr(
        "blueprint.proc.shutil.which", lambda tool: None if tool == "systemd-nspawn" else tool
    )
    with pytest.raises(labmod.EnvironmentMissing, match="apt-get install systemd-container"):
        labmod.preflight()
