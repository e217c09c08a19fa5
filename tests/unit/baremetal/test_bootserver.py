"""Boot server checks that stop before anything starts (the DHCP exchange is a lab test)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

FIXTURE = Path(__file__).parent / "fixtures" / "metal-site"


def blueprint(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "blueprint.cli", *args], capture_output=True,
                          text=True, check=False)


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("dnsmasq") is None,
                    reason="the interface check comes after the root and dnsmasq checks")
def test_missing_interface_stops_start_with_exit_4(tmp_path: Path) -> None:
    site = tmp_path / "metal"
    shutil.copytree(FIXTURE, site)
    done = blueprint("boot-server", "start", str(site))
    assert done.returncode == 4
    assert done.stderr.strip() == (
        "error: interface eth-prov (provision.interface) does not exist on this host; the boot "
        "server runs on the host attached to the provisioning network"
    )
    assert not (site / ".state" / "boot" / "server.json").exists()


def test_status_and_stop_of_a_server_never_started(tmp_path: Path) -> None:
    site = tmp_path / "metal"
    shutil.copytree(FIXTURE, site)
    assert blueprint("boot-server", "status", str(site)).stdout.splitlines() == [
        "dnsmasq: stopped", "http: stopped"]
    done = blueprint("boot-server", "stop", str(site))
    assert done.returncode == 0
    assert done.stdout.strip() == "boot server: stopped nothing (not running)"


def test_render_lists_what_it_cannot_make(tmp_path: Path) -> None:
    site = tmp_path / "metal"
    shutil.copytree(FIXTURE, site)
    done = blueprint("boot-server", "render", str(site))
    assert done.returncode == 0, done.stderr
    boot = site / ".state" / "boot"
    assert (boot / "http" / "nodes" / "edge-bm-1" / "preseed.cfg").is_file()
    assert f"still missing (put it there before provisioning): {boot}/http/installer/" \
           "debian-12/linux" in done.stdout
