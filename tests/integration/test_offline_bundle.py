"""Offline on real lab nodes: bom of the lab's Debian packages, a signed bundle, the site
mirror, and a deploy with `artifacts.mode: offline` while the lab's upstream proxy is off.

As in the field case tests/integration/fixtures/offline/missing-binary.md: with one package
gone from the mirror, the preflight names it (version, sha256, where it was looked for) and
no node changes (overlay digests).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import yaml

from blueprint.bom.lock import load_lock
from blueprint.lab import lab_up, overlay_digest
from blueprint.lab.lab import MIRROR_MARK
from blueprint.proc import pid_alive

if TYPE_CHECKING:
    from tests.integration.conftest import LabHandle

pytestmark = pytest.mark.lab

# After the end-to-end, molecule and GPU modules: this one switches the lab's mirror off.
LAB_STAGE = 60

MIRROR_PORT = 3150
# In the lab's os_baseline list and not in its node image: the offline deploy reinstalls it.
PROBE_PACKAGE = "curl"


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "blueprint.cli", *args], capture_output=True,
                          text=True, check=False, timeout=900)


def digests(lab: LabHandle) -> dict[str, str]:
    return {node.name: overlay_digest(lab.name, node.name) for node in lab.nodes}


@dataclass
class Offline:
    site_dir: Path
    bundle: Path
    pubkey: Path
    mirror_folder: Path
    mirror_url: str


def stop_upstream_proxy(lab: LabHandle) -> None:
    """Switch the lab's apt-cacher-ng off, by the PID the lab recorded."""
    pid = lab.state.mirror_pid
    if pid and pid_alive(pid, MIRROR_MARK):
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        while pid_alive(pid, MIRROR_MARK) and time.monotonic() < deadline:
            time.sleep(0.1)
    assert not pid_alive(pid, MIRROR_MARK)


@pytest.fixture(scope="module")
def offline(lab: LabHandle, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Offline]:
    """A copy of the lab's site, locked and bundled; its mirror served on the lab bridge.

    Afterwards: the bundle mirror is stopped, the lab's proxy started again, and the OS layer
    deployed from the lab's own site, so the nodes use the lab's proxy as before.
    """
    work = tmp_path_factory.mktemp("offline")
    site_dir = work / "site"
    shutil.copytree(lab.site_dir, site_dir, ignore=shutil.ignore_patterns(".state"))

    # The lock: the lab's packages beyond the node image, through the lab's proxy.
    baseline = Path(lab.state.image) / "var/lib/dpkg/status"
    done = run_cli("bom", str(site_dir), "--baseline-status", str(baseline))
    assert done.returncode == 0, done.stderr
    lock = load_lock(site_dir / "bom.lock.yaml")
    assert PROBE_PACKAGE in {item.name for item in lock.items}

    # A signed bundle of it, verified.
    key, pubkey = work / "operator.key", work / "operator.pub"
    subprocess.run(["minisign", "-G", "-W", "-s", str(key), "-p", str(pubkey)], check=True,
                   capture_output=True)
    bundle = work / "lab.tar"
    done = run_cli("bundle", "build", str(site_dir), "--key", str(key), "--out", str(bundle))
    assert done.returncode == 0, done.stderr
    done = run_cli("bundle", "verify", str(bundle), "--pubkey", str(pubkey))
    assert done.returncode == 0, done.stderr

    mirror_folder = work / "mirror"
    installer_apt_conf: dict[str, str] = {}
    listen = f"{lab.state.bridge_ip}:{MIRROR_PORT}"
    done = run_cli("mirror", "serve", str(bundle), "--pubkey", str(pubkey), "--listen", listen,
                   "--folder", str(mirror_folder))
    assert done.returncode == 0, done.stderr
    try:
        data = yaml.safe_load((site_dir / "site.yaml").read_text())
        data["artifacts"] = {"mode": "offline", "apt_proxy": f"http://{listen}"}
        (site_dir / "site.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
        # The nodes were installed through the lab's proxy, which their installer wrote to
        # /etc/apt/apt.conf (read after apt.conf.d, so it wins over the role's file): an
        # air-gapped site's installer names the site mirror there instead.
        installer_apt_conf = {node.name: lab.ssh(node, "cat /etc/apt/apt.conf").stdout
                              for node in lab.nodes}
        for node in lab.nodes:
            text = installer_apt_conf[node.name].replace(lab.state.apt_proxy, f"http://{listen}")
            lab.ssh(node, f"printf '%s' '{text}' > /etc/apt/apt.conf")
        stop_upstream_proxy(lab)
        # The nodes' package lists come from the site mirror, as after the site's install:
        # the roles reuse lists younger than an hour.
        for node in lab.nodes:
            lab.ssh(node, "apt-get update -qq")
        yield Offline(site_dir, bundle, pubkey, mirror_folder, f"http://{listen}")
    finally:
        for node in lab.nodes:
            original = installer_apt_conf.get(node.name)
            if original is not None:
                lab.ssh(node, f"printf '%s' '{original}' > /etc/apt/apt.conf")
        run_cli("mirror", "stop", "--folder", str(mirror_folder))
        lab_up(lab.name, nodes=len(lab.nodes), subnet=lab.state.subnet, site_dir=lab.site_dir)
        restored = run_cli("deploy", str(lab.site_file), "--layer", "os_baseline")
        assert restored.returncode == 0, restored.stderr


def test_lock_of_the_lab_is_complete(offline: Offline) -> None:
    lock = load_lock(offline.site_dir / "bom.lock.yaml")
    assert lock.unresolved == []
    debs = [item for item in lock.items if item.kind == "deb"]
    assert {"containerd", "chrony", PROBE_PACKAGE} <= {item.name for item in debs}
    assert all(len(item.sha256) == 64 and item.url.startswith("http") for item in debs)
    # Licences come from the packages' own copyright files.
    curl = next(item for item in debs if item.name == PROBE_PACKAGE)
    assert "curl" in curl.licence.split(" ")
    # The index files of the nodes' three suites, as apt fetches them, Debian's signature on.
    indices = {item.path for item in lock.items if item.kind == "apt-index"}
    for prefix, suite in (("debian", "bookworm"), ("debian", "bookworm-updates"),
                          ("debian-security", "bookworm-security")):
        assert f"{prefix}/dists/{suite}/InRelease" in indices
        assert f"{prefix}/dists/{suite}/main/binary-amd64/Packages.xz" in indices


def test_offline_deploy_from_the_bundle_with_the_proxy_off(
        lab: LabHandle, offline: Offline) -> None:
    node = lab.nodes[0]
    lab.ssh(node, f"DEBIAN_FRONTEND=noninteractive apt-get remove -y -qq {PROBE_PACKAGE}")
    done = run_cli("deploy", str(offline.site_dir))
    assert done.returncode == 0, done.stderr + done.stdout
    assert lab.ssh(node, f"dpkg-query -W -f '${{Status}}' {PROBE_PACKAGE}").stdout == \
        "install ok installed"
    # It came from the bundle's mirror: the node asked it for that very file.
    served = (offline.mirror_folder / "server.log").read_text()
    assert f"/{PROBE_PACKAGE}_" in served
    # The site file's URL as the product normalises it (pydantic adds the root path's '/').
    assert lab.ssh(node, "apt-config dump Acquire::http::Proxy").stdout.strip() == (
        f'Acquire::http::Proxy "{offline.mirror_url.rstrip("/")}/";')


def test_missing_package_stops_preflight_before_any_change(
        lab: LabHandle, offline: Offline) -> None:
    lock = load_lock(offline.site_dir / "bom.lock.yaml")
    gone = next(item for item in lock.items if item.name == "containerd")
    served_file = offline.mirror_folder / "root" / "files" / gone.path
    kept = served_file.read_bytes()
    served_file.unlink()
    before = digests(lab)
    try:
        done = run_cli("deploy", str(offline.site_dir))
    finally:
        served_file.write_bytes(kept)
    assert done.returncode == 4, done.stdout
    assert "not on the site mirror" in done.stderr
    assert f"deb containerd {gone.version} (sha256 {gone.sha256})" in done.stderr
    assert gone.path in done.stderr
    assert digests(lab) == before


def test_sbom_of_the_deployed_lab_validates(lab: LabHandle, offline: Offline) -> None:
    from cyclonedx.schema import SchemaVersion
    from cyclonedx.validation.json import JsonStrictValidator
    from spdx_tools.spdx.parser.parse_anything import parse_file
    from spdx_tools.spdx.validation.document_validator import validate_full_spdx_document

    out = offline.site_dir / "sbom"
    done = run_cli("sbom", str(offline.site_dir), "--out", str(out))
    assert done.returncode == 0, done.stderr
    text = (out / "sbom.cdx.json").read_text()
    assert JsonStrictValidator(SchemaVersion.V1_6).validate_str(text) is None
    document = parse_file(str(out / "sbom.spdx.json"))
    assert validate_full_spdx_document(document) == []

    import json

    components = {c["name"]: c for c in json.loads(text)["components"]}
    curl = {p["name"]: p["value"] for p in components[PROBE_PACKAGE]["properties"]
            if p["name"] != "blueprint:node"}
    assert curl["blueprint:lock"] == "locked"
    nodes = [p["value"] for p in components[PROBE_PACKAGE]["properties"]
             if p["name"] == "blueprint:node"]
    assert sorted(nodes) == sorted(node.name for node in lab.nodes)
    # The node image's own packages are listed too, as not in the lock.
    systemd = {p["name"]: p["value"] for p in components["systemd"]["properties"]}
    assert systemd["blueprint:lock"] == "not-in-lock"
