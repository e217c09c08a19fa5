"""Boot artifacts rendered from a site: golden files, and each checked by its own tool.

Set BLUEPRINT_UPDATE_GOLDEN=1 to rewrite the golden files after a deliberate change; review
the diff before committing it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from blueprint.baremetal.render import BootPaths, render_boot_artifacts
from blueprint.errors import BadInput
from blueprint.loader import load_site
from blueprint.state import StateDir

FIXTURE = Path(__file__).parent / "fixtures" / "metal-site"
GOLDEN = Path(__file__).parent / "golden"
NODE_FILES = ("boot.ipxe", "preseed.cfg", "late.sh", "user-data", "meta-data")


@pytest.fixture
def rendered(tmp_path: Path) -> BootPaths:
    site_dir = tmp_path / "metal"
    shutil.copytree(FIXTURE, site_dir)
    state = StateDir.for_site(site_dir)
    shutil.copytree(site_dir / "host-keys", state.root / "boot" / "host-keys")
    return render_boot_artifacts(load_site(site_dir), state)


def _compare(actual: str, golden: Path) -> None:
    if os.environ.get("BLUEPRINT_UPDATE_GOLDEN"):
        golden.parent.mkdir(parents=True, exist_ok=True)
        golden.write_text(actual, encoding="utf-8")
    assert actual == golden.read_text(encoding="utf-8"), golden.name


@pytest.mark.parametrize("node", ["edge-bm-1", "edge-bm-2"])
@pytest.mark.parametrize("name", NODE_FILES)
def test_node_artifact_matches_golden_file(rendered: BootPaths, node: str, name: str) -> None:
    _compare((rendered.node_dir(node) / name).read_text(encoding="utf-8"),
             GOLDEN / node / name)


def test_dnsmasq_config_matches_golden_file(rendered: BootPaths) -> None:
    text = rendered.dnsmasq_conf.read_text(encoding="utf-8").replace(str(rendered.root),
                                                                     "{boot}")
    _compare(text, GOLDEN / "dnsmasq.conf")


def test_secret_bearing_files_are_private(rendered: BootPaths) -> None:
    late = rendered.node_dir("edge-bm-1") / "late.sh"
    assert late.stat().st_mode & 0o077 == 0
    assert "BEGIN OPENSSH PRIVATE KEY" in late.read_text(encoding="utf-8")


@pytest.mark.skipif(shutil.which("dnsmasq") is None, reason="needs dnsmasq (dnsmasq-base)")
def test_dnsmasq_accepts_the_config(rendered: BootPaths) -> None:
    done = subprocess.run(["dnsmasq", "--test", "-C", str(rendered.dnsmasq_conf)],
                          capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert "syntax check OK" in done.stderr


def test_dnsmasq_config_has_no_address_pool(rendered: BootPaths) -> None:
    lines = rendered.dnsmasq_conf.read_text(encoding="utf-8").splitlines()
    ranges = [line for line in lines if line.startswith("dhcp-range=")]
    assert ranges == ["dhcp-range=10.90.0.0,static,255.255.255.0,12h"]
    assert "dhcp-ignore=tag:!known" in lines
    assert sorted(line for line in lines if line.startswith("dhcp-host=")) == [
        "dhcp-host=52:54:00:6b:01:01,set:edge-bm-1,10.90.0.11,edge-bm-1,12h",
        "dhcp-host=52:54:00:6b:01:02,set:edge-bm-2,10.90.0.12,edge-bm-2,12h",
    ]


@pytest.mark.skipif(shutil.which("debconf-set-selections") is None, reason="needs debconf")
def test_preseed_is_valid_debconf(rendered: BootPaths) -> None:
    preseed = rendered.node_dir("edge-bm-1") / "preseed.cfg"
    done = subprocess.run(["debconf-set-selections", "--checkonly", str(preseed)],
                          capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""


def test_late_script_is_valid_shell(rendered: BootPaths) -> None:
    late = rendered.node_dir("edge-bm-2") / "late.sh"
    done = subprocess.run(["sh", "-n", str(late)], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr


@pytest.mark.skipif(shutil.which("cloud-init") is None, reason="needs cloud-init (Debian)")
def test_user_data_passes_cloud_init_schema(rendered: BootPaths) -> None:
    user_data = rendered.node_dir("edge-bm-1") / "user-data"
    done = subprocess.run(["cloud-init", "schema", "--config-file", str(user_data)],
                          capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Valid cloud-config" in done.stdout


def test_a_node_without_boot_mac_stops_rendering(tmp_path: Path) -> None:
    site_dir = tmp_path / "metal"
    shutil.copytree(FIXTURE, site_dir)
    text = (site_dir / "site.yaml").read_text(encoding="utf-8")
    (site_dir / "site.yaml").write_text(text.replace('    boot_mac: "52:54:00:6b:01:02"\n', ""),
                                        encoding="utf-8")
    with pytest.raises(BadInput) as caught:
        render_boot_artifacts(load_site(site_dir), StateDir.for_site(site_dir))
    assert str(caught.value) == (
        "node edge-bm-2: boot_mac is not set; provisioning needs it (blueprint discover lists "
        "the node's MACs)"
    )
