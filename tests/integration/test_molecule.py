"""Molecule's converge, idempotence and verify of the host roles on the session's lab nodes.

The nodes are the `lab` fixture's; molecule neither creates nor destroys them (the shared
scenario in molecule/lab/ uses the delegated driver, unmanaged). The test writes the
inventory molecule reads through MOLECULE_LAB_INVENTORY, as the product would render it.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from blueprint.inventory import render_inventory
from blueprint.loader import load_site
from blueprint.state import StateDir

pytestmark = pytest.mark.lab

# After the site end-to-end test (20): these converge the nodes again anyway.
LAB_STAGE = 30

REPO = Path(__file__).resolve().parents[2]
ROLES = ["os_baseline", "container_runtime", "gpu_driver"]
MOLECULE_TIMEOUT = 1800
NVIDIA_FRAGMENT = "/etc/containerd/blueprint.d/50-test-nvidia.toml"

# A stand-in of the GPU toolkit's drop-in: a runtime handler in its own new tables.
NVIDIA_RUNTIME = """\
[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.nvidia]
  runtime_type = "io.containerd.runc.v2"

[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.nvidia.options]
  BinaryName = "/usr/bin/nvidia-container-runtime"
  SystemdCgroup = true
"""


@pytest.fixture(scope="module")
def molecule_inventory(lab: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The product's own inventory of the lab site, with two registry mirrors added.

    A plain-HTTP mirror (containerd must still load CRI with it) and one that skips TLS
    verification; the lab key doubles as the admin's, so verify logs in as the admin too.
    """
    work = tmp_path_factory.mktemp("molecule")
    data = yaml.safe_load(lab.site_file.read_text())
    data["artifacts"]["registry_mirrors"] = [
        {"registry": "docker.io", "endpoints": [f"http://{lab.state.bridge_ip}:5000"]},
        {"registry": "repo.example.internal:5000",
         "endpoints": ["http://repo.example.internal:5000"], "skip_verify": True},
    ]
    site_file = lab.site_dir / "site-molecule.yaml"
    site_file.write_text(yaml.safe_dump(data, sort_keys=False))
    try:
        loaded = load_site(site_file)
        return render_inventory(loaded, StateDir.for_site(lab.site_dir, work / "state"))
    finally:
        site_file.unlink()


def run_molecule(role: str, inventory: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run molecule in a role's folder; molecule needs the venv's ansible tools on PATH."""
    venv_bin = str(Path(sys.executable).parent)
    env = {
        **os.environ,
        "PATH": f"{venv_bin}{os.pathsep}{os.environ.get('PATH', '')}",
        "MOLECULE_LAB_INVENTORY": str(inventory),
        "ANSIBLE_FORCE_COLOR": "false",
        "NO_COLOR": "1",
    }
    return subprocess.run(
        [f"{venv_bin}/molecule", *args],
        cwd=REPO / "roles" / role,
        env=env,
        capture_output=True,
        text=True,
        timeout=MOLECULE_TIMEOUT,
    )


def recap_changes(output: str) -> dict[str, int]:
    """changed=N per host from the last PLAY RECAP in an Ansible output."""
    found = re.findall(r"^\W*(\S+)\s+:\s+ok=\d+\s+changed=(\d+)", output, re.MULTILINE)
    return {host: int(changed) for host, changed in found}


def tail(result: subprocess.CompletedProcess[str], lines: int = 60) -> str:
    return "\n".join((result.stdout + result.stderr).splitlines()[-lines:])


@pytest.mark.parametrize("role", ROLES)
def test_role_converges_idempotently_and_verifies(role: str, molecule_inventory: Path) -> None:
    result = run_molecule(role, molecule_inventory, "test")
    assert result.returncode == 0, f"molecule test of {role} failed:\n{tail(result)}"


def test_gpu_runtime_handler_survives_a_rerun_of_the_runtime_role(
    lab: Any, molecule_inventory: Path, tmp_path: Path
) -> None:
    # A stand-in of the GPU layer: drop the fragment, assemble through the runtime role.
    for node in lab.nodes:
        lab.ssh(node, f"cat > {NVIDIA_FRAGMENT} <<'EOF'\n{NVIDIA_RUNTIME}EOF")
    playbook = tmp_path / "assemble.yml"
    playbook.write_text(
        yaml.safe_dump(
            [
                {
                    "name": "Assemble containerd's config after a GPU fragment.",
                    "hosts": "all",
                    "become": True,
                    "gather_facts": False,
                    "tasks": [
                        {
                            "name": "Run the runtime role's assemble step.",
                            "ansible.builtin.include_role": {
                                "name": "container_runtime",
                                "tasks_from": "assemble",
                            },
                        }
                    ],
                }
            ]
        )
    )
    venv_bin = Path(sys.executable).parent
    env = {**os.environ, "ANSIBLE_ROLES_PATH": str(REPO / "roles"), "ANSIBLE_FORCE_COLOR": "0"}
    try:
        assembled = subprocess.run(
            [f"{venv_bin}/ansible-playbook", "-i", str(molecule_inventory), str(playbook)],
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert assembled.returncode == 0, tail(assembled)

        # The runtime layer again: no change, and the nvidia runtime is still there.
        rerun = run_molecule("container_runtime", molecule_inventory, "converge")
        assert rerun.returncode == 0, tail(rerun)
        changes = recap_changes(rerun.stdout)
        assert changes and set(changes.values()) == {0}, f"re-run changed: {changes}"
        for node in lab.nodes:
            lab.ssh(node, "systemctl restart containerd")
            dump = lab.ssh(node, "containerd config dump").stdout
            assert "runtimes.nvidia]" in dump, f"{node.name}: nvidia runtime lost"
            plugins = lab.ssh(node, "ctr plugins ls").stdout
            assert re.search(r"io\.containerd\.grpc\.v1\s+cri\s+\S+\s+ok", plugins), plugins
    finally:
        for node in lab.nodes:
            lab.ssh(node, f"rm -f {NVIDIA_FRAGMENT}", check=False)
        subprocess.run(
            [f"{venv_bin}/ansible-playbook", "-i", str(molecule_inventory), str(playbook)],
            env=env,
            capture_output=True,
            timeout=600,
        )
