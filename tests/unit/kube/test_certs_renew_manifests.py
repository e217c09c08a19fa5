"""certs renew on a kubeadm control plane: the static pod manifests always come back.

The kubeadm path cannot run here (no release binaries), so this runs the two shell steps of
`roles/kubernetes/tasks/certs_renew.yml` with bash on a folder standing in for
/etc/kubernetes, and checks that the put-back is in the block's `always`.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from blueprint.paths import ROLES_DIR

TASKS = ROLES_DIR / "kubernetes" / "tasks" / "certs_renew.yml"
TAKE = "Take the control plane's static pod manifests away."
PUT = "Put the static pod manifests back."
MANIFESTS = ["etcd.yaml", "kube-apiserver.yaml", "kube-controller-manager.yaml"]


def _block() -> dict[str, Any]:
    tasks = yaml.safe_load(TASKS.read_text())
    return next(task for task in tasks if "block" in task)


def _run(name: str, root: Path) -> subprocess.CompletedProcess[str]:
    block = _block()
    task = next(task for task in block["block"] + block["always"] if task["name"] == name)
    script = task["ansible.builtin.shell"].replace("/etc/kubernetes", str(root))
    return subprocess.run(["bash", "-c", script], capture_output=True, text=True, check=False)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    (tmp_path / "manifests").mkdir()
    for name in MANIFESTS:
        (tmp_path / "manifests" / name).write_text(name)
    return tmp_path


def _names(folder: Path) -> list[str]:
    return sorted(path.name for path in folder.glob("*.yaml"))


def test_the_put_back_is_in_always_after_the_take_away_and_the_wait() -> None:
    block = _block()
    assert [task["name"] for task in block["block"]] == [TAKE, "Wait for the API server to stop."]
    assert [task["name"] for task in block["always"]] == [PUT]


def test_take_away_then_put_back(root: Path) -> None:
    taken = _run(TAKE, root)
    assert taken.returncode == 0 and taken.stdout.startswith("moved 3")
    assert _names(root / "manifests") == [] and _names(root / "manifests-held") == MANIFESTS

    back = _run(PUT, root)

    assert back.returncode == 0 and back.stdout.startswith("returned 3")
    assert _names(root / "manifests") == MANIFESTS
    assert not (root / "manifests-held").exists()


def test_a_rerun_with_the_manifests_still_held_moves_nothing(root: Path) -> None:
    _run(TAKE, root)

    again = _run(TAKE, root)

    assert again.returncode == 0 and again.stdout.startswith("held already")
    assert _names(root / "manifests-held") == MANIFESTS


def test_no_manifests_anywhere_fails_naming_both_folders(tmp_path: Path) -> None:
    (tmp_path / "manifests").mkdir()
    failed = _run(TAKE, tmp_path)
    assert failed.returncode == 1
    assert f"no static pod manifests found in {tmp_path}/manifests or" in failed.stderr
    # The always step then has nothing to return and does not fail.
    back = _run(PUT, tmp_path)
    assert back.returncode == 0 and back.stdout == ""
