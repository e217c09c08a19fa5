"""The platform layer in plan and deploy: offline preview listing, and the preflight stop."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from blueprint.loader import load_site
from blueprint.paths import PROJECT_ROOT
from blueprint.platform.preview import STAND_IN_SECRET, platform_plan

GOLDEN = Path(__file__).parent / "golden" / "example-site-plan.txt"


@pytest.fixture
def example_site(tmp_path: Path) -> Path:
    site_dir = tmp_path / "example-site"
    shutil.copytree(PROJECT_ROOT / "inventory" / "example-site", site_dir)
    key = site_dir / "deploy_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    (site_dir / "known_hosts").write_text("")
    return site_dir


def test_example_site_platform_plan_matches_the_golden_listing(example_site: Path) -> None:
    listing = platform_plan(load_site(example_site))
    if os.environ.get("UPDATE_GOLDEN"):
        GOLDEN.write_text(listing)
    assert listing == GOLDEN.read_text()
    assert STAND_IN_SECRET not in listing


def blueprint_cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "blueprint.cli", *args], capture_output=True,
                          text=True, check=False, env=env)


def _env_without_pulumi(tmp_path: Path) -> dict[str, str]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("ssh", "ssh-keygen"):
        found = shutil.which(tool)
        if found:
            (bin_dir / tool).symlink_to(found)
    return {**os.environ, "PATH": f"{Path(sys.executable).parent}:{bin_dir}",
            "PULUMI_HOME": str(tmp_path / "pulumi-home")}


def test_deploy_stops_with_exit_4_when_the_pulumi_cli_and_plugins_are_missing(
        example_site: Path, tmp_path: Path) -> None:
    env = _env_without_pulumi(tmp_path)
    assert shutil.which("pulumi", path=env["PATH"]) is None

    done = blueprint_cli("deploy", str(example_site), "--layer", "platform", env=env)

    assert done.returncode == 4, done.stderr
    lines = done.stderr.splitlines()
    assert lines[0].startswith("error: layer platform: the pulumi CLI is not on PATH; install "
                               "it online with 'curl -fsSL https://get.pulumi.com | sh' or "
                               "from the offline bundle")
    assert any("kubernetes provider plugin" in line and "pulumi plugin install resource "
               "kubernetes" in line for line in lines)
    assert "Traceback" not in done.stderr
    # Stopped before any change: no stack backend, no generated passphrase.
    assert not (example_site / ".state" / "pulumi").exists()
    assert not (example_site / ".state" / "vault.yaml").exists()


def test_full_deploy_of_ai_edge_also_stops_in_the_platform_preflight(
        example_site: Path, tmp_path: Path) -> None:
    done = blueprint_cli("deploy", str(example_site), env=_env_without_pulumi(tmp_path))
    assert done.returncode == 4
    assert "layer platform: the pulumi CLI is not on PATH" in done.stderr


def test_preflight_names_the_missing_kubeconfig_once_the_tools_exist(
        example_site: Path, tmp_path: Path) -> None:
    # Stand-ins: an executable named pulumi and empty plugin folders, enough for the
    # preflight's presence checks (the real CLI and plugins cannot be downloaded here).
    from importlib import metadata

    env = _env_without_pulumi(tmp_path)
    stand_in = tmp_path / "bin" / "pulumi"
    stand_in.write_text("#!/bin/sh\nexit 0\n")
    stand_in.chmod(0o755)
    plugins = tmp_path / "pulumi-home" / "plugins"
    for plugin, package in (("kubernetes", "pulumi_kubernetes"), ("random", "pulumi_random")):
        (plugins / f"resource-{plugin}-v{metadata.version(package)}").mkdir(parents=True)

    done = blueprint_cli("deploy", str(example_site), "--layer", "platform", env=env)

    assert done.returncode == 4
    assert done.stderr.splitlines() == [
        f"error: layer platform: no kubeconfig at {example_site / '.state' / 'kubeconfig'}; "
        "deploy the kubernetes layer first (deploy --layer kubernetes)"]


def test_plan_of_the_platform_layer_prints_the_preview(example_site: Path,
                                                       tmp_path: Path) -> None:
    done = blueprint_cli("plan", str(example_site), "--layer", "platform",
                         env=_env_without_pulumi(tmp_path))
    assert done.returncode == 0, done.stderr
    assert "layer platform (offline preview under Pulumi's mock runtime)" in done.stdout
    assert "gpu-operator" in done.stdout
    assert "layer platform: pulumi preview left out: the pulumi CLI is not on PATH" in (
        done.stdout)


def test_a_full_deploy_does_not_need_the_kubeconfig_before_its_kubernetes_layer(
        example_site: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Stand-ins for the CLI and plugins, as above.
    from importlib import metadata

    from blueprint.errors import EnvironmentMissing
    from blueprint.platform.deploy import preflight_platform
    from blueprint.state import StateDir

    (tmp_path / "bin").mkdir()
    stand_in = tmp_path / "bin" / "pulumi"
    stand_in.write_text("#!/bin/sh\nexit 0\n")
    stand_in.chmod(0o755)
    for plugin, package in (("kubernetes", "pulumi_kubernetes"), ("random", "pulumi_random")):
        (tmp_path / "home" / "plugins" / f"resource-{plugin}-v{metadata.version(package)}"
         ).mkdir(parents=True)
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    monkeypatch.setenv("PULUMI_HOME", str(tmp_path / "home"))
    loaded = load_site(example_site)
    state = StateDir.for_site(example_site)

    ready = preflight_platform(loaded, state, cluster_in_run=True)
    assert ready.pulumi == stand_in
    assert ready.config.site == "example-site"
    with pytest.raises(EnvironmentMissing, match="no kubeconfig at"):
        preflight_platform(loaded, state, cluster_in_run=False)
