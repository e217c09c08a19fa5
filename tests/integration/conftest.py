"""The session's lab: one real lab (systemd-nspawn nodes) shared by every integration test.

The fixture `lab` brings up lab `bpt` (3 nodes, 10.79.0.0/24; BLUEPRINT_TEST_LAB and
BLUEPRINT_TEST_SUBNET choose others) once per session and takes it
down at the end, checking that nothing of it is left. Tests that need root and
systemd-nspawn are skipped with the reason when either is missing.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from blueprint.lab import LabState, NodeState, lab_down, lab_up
from blueprint.lab.lab import load_state, ssh_command
from blueprint.lab.network import bridge_name, list_netns

# Two test sessions on one machine (two checkouts, or CI beside a developer) each set their own.
LAB_NAME = os.environ.get("BLUEPRINT_TEST_LAB", "bpt")
LAB_NODES = 3
LAB_SUBNET = os.environ.get("BLUEPRINT_TEST_SUBNET", "10.79.0.0/24")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Fast tests first, then lab tests by their module's LAB_STAGE (default 50).

    The session shares one lab, so order matters: checks of fresh nodes run before the
    first deploy changes them.
    """
    def stage(item: pytest.Item) -> tuple[int, int]:
        if item.get_closest_marker("lab") is None:
            return (0, 0)
        module = getattr(item, "module", None)
        return (1, int(getattr(module, "LAB_STAGE", 50)))

    items.sort(key=stage)


def lab_skip_reason() -> str | None:
    """Why lab tests cannot run here, or None when they can."""
    if os.geteuid() != 0:
        return "lab tests need root (network namespaces, mounts, systemd-nspawn)"
    if shutil.which("systemd-nspawn") is None:
        return "lab tests need systemd-nspawn (apt-get install systemd-container)"
    return None


@dataclass
class LabHandle:
    """A running lab as tests see it."""

    state: LabState

    @property
    def name(self) -> str:
        return self.state.name

    @property
    def site_dir(self) -> Path:
        return Path(self.state.site_dir)

    @property
    def site_file(self) -> Path:
        return self.state.site_file

    @property
    def nodes(self) -> list[NodeState]:
        return self.state.nodes

    def node(self, name: str) -> NodeState:
        return next(node for node in self.nodes if node.name == name)

    def site_data(self, name: str, blueprint: str) -> dict[str, Any]:
        """The lab's site file as a mapping for a test site kept in another folder: renamed,
        with its own blueprint file, the lab's SSH key and known_hosts as absolute paths."""
        data: dict[str, Any] = yaml.safe_load(self.site_file.read_text())
        data["name"] = name
        data["blueprint"] = blueprint
        for field in ("key", "known_hosts"):
            data["ssh"][field] = str(self.site_dir / data["ssh"][field])
        return data

    def write_k3s_site(self, site_dir: Path, name: str, k3s_version: str,
                       server: int = 0) -> Path:
        """A site of the lab's nodes (node `server` the control plane, the others workers)
        whose blueprint is the lab's lower layers plus kubernetes with k3s `k3s_version`,
        written into `site_dir`; the site file's path."""
        site_dir.mkdir(parents=True, exist_ok=True)
        data = self.site_data(name, f"{name}.yaml")
        data["nodes"] = [{**node, "roles": ["control-plane"] if index == server else ["worker"]}
                         for index, node in enumerate(data["nodes"])]
        (site_dir / "site.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
        (site_dir / f"{name}.yaml").write_text(yaml.safe_dump({
            "name": name, "version": "0.1.0",
            "description": "The lab's lower layers and Kubernetes with a STAND-IN k3s release",
            "layers": [
                {"name": "os_baseline", "roles": ["os_baseline"]},
                {"name": "container_runtime", "roles": ["container_runtime"]},
                {"name": "kubernetes", "roles": ["kubernetes"],
                 "options": {"kubernetes_distribution": "k3s"},
                 "versions": {"k3s": k3s_version}},
            ],
            "validation": {"suite": "lab"},
        }, sort_keys=False))
        return site_dir / "site.yaml"

    def ssh(
        self, node: NodeState | str, command: str, *, check: bool = True, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        """Run a shell command on a node as root over SSH, host key checked."""
        target = self.node(node) if isinstance(node, str) else node
        result = subprocess.run(
            ssh_command(self.state, target, command),
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if check and result.returncode != 0:
            msg = f"{target.name}: {command!r} exited {result.returncode}: {result.stderr}"
            raise AssertionError(msg)
        return result


def leftovers(state: LabState) -> list[str]:
    """Anything of the lab that still exists on the host: netns, bridge, mount, process."""
    found = [f"netns {ns}" for ns in list_netns() if ns in state.netns]
    bridge = bridge_name(state.name)
    if subprocess.run(["ip", "link", "show", "dev", bridge], capture_output=True).returncode == 0:
        found.append(f"bridge {bridge}")
    lab_folder = f"/var/lib/blueprint/lab/{state.name}/"
    for line in Path("/proc/mounts").read_text().splitlines():
        if line.split()[1].startswith(lab_folder):
            found.append(f"mount {line.split()[1]}")
    for pid in Path("/proc").iterdir():
        if not pid.name.isdigit():
            continue
        try:
            cmdline = (pid / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if lab_folder in cmdline or f"/run/netns/bp-{state.name}-" in cmdline:
            found.append(f"process {pid.name}: {cmdline[:80]}")
    return found


def wait_gone(state: LabState, timeout: float = 10) -> list[str]:
    deadline = time.monotonic() + timeout
    while (left := leftovers(state)) and time.monotonic() < deadline:
        time.sleep(0.2)
    return left


@pytest.fixture(scope="session")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabHandle]:
    reason = lab_skip_reason()
    if reason:
        pytest.skip(reason)
    if load_state(LAB_NAME) is not None:
        pytest.fail(
            f"lab {LAB_NAME} already exists: another test session may be using it; set "
            "BLUEPRINT_TEST_LAB and BLUEPRINT_TEST_SUBNET, or run `blueprint lab down "
            f"--name {LAB_NAME}` if it is a leftover"
        )
    site_dir = tmp_path_factory.mktemp("lab-site")
    started = time.monotonic()
    try:
        state = lab_up(LAB_NAME, nodes=LAB_NODES, subnet=LAB_SUBNET, site_dir=site_dir)
    except BaseException:
        lab_down(LAB_NAME)
        raise
    print(f"lab {LAB_NAME} up in {time.monotonic() - started:.1f} s")
    yield LabHandle(state)

    started = time.monotonic()
    lab_down(LAB_NAME)
    print(f"lab {LAB_NAME} down in {time.monotonic() - started:.1f} s")
    assert wait_gone(state) == []
