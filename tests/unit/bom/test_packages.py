"""Each role's meta/packages.yml agrees with its apt tasks; requests per layer and node role."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from bomhelpers import write_site

from blueprint.bom.packages import layer_requests, load_role_packages
from blueprint.loader import load_site
from blueprint.paths import ROLES_DIR

ROLES_WITH_APT = sorted(
    path.parent.parent.name for path in ROLES_DIR.glob("*/tasks/*.yml")
    if "ansible.builtin.apt:" in path.read_text()
)


def apt_task_names(role: str) -> list[str]:
    """The `name:` of every ansible.builtin.apt task of a role, as text.

    A role-internal variable (`__role_...` from vars/main.yml) is replaced by its definition,
    so a task installing `{{ __os_baseline_all_packages }}` shows the variables it is built of;
    the name as written is kept too, for a role that declares its internal variable itself.
    """
    vars_file = ROLES_DIR / role / "vars" / "main.yml"
    internal: dict[str, Any] = (yaml.safe_load(vars_file.read_text()) or {}
                                if vars_file.exists() else {})

    def expand(text: str) -> str:
        for _ in range(5):  # definitions may refer to other internal variables
            text = re.sub(r"(?<![\w-])__\w+", lambda m: str(internal.get(m[0], m[0])), text)
        return text

    found = []
    for path in sorted((ROLES_DIR / role / "tasks").glob("*.yml")):
        for task in yaml.safe_load(path.read_text()) or []:
            module: dict[str, Any] | None = task.get("ansible.builtin.apt")
            if module and "name" in module:
                name = str(module["name"])
                found.append(f"{name}\n{expand(name)}")
    return found


@pytest.mark.parametrize("role", ROLES_WITH_APT)
def test_declared_packages_are_what_the_tasks_install(role: str) -> None:
    declared = load_role_packages(role)
    tasks = apt_task_names(role)
    assert declared.apt, f"roles/{role}/meta/packages.yml is missing or declares nothing"
    text = "\n".join(tasks)
    for entry in declared.apt:
        word = entry.variable or entry.package
        assert word is not None
        assert re.search(rf"(?<![\w-]){re.escape(word)}(?![\w-])", text), (
            f"roles/{role}: {word} is declared for the bill of materials but no apt task "
            "installs it")
    words = {entry.variable or entry.package for entry in declared.apt}
    for name in tasks:
        # A task naming none of the declared sources installs what the lock cannot know,
        # unless the role says so under on_node (e.g. the running kernel's headers).
        if not any(re.search(rf"(?<![\w-]){re.escape(str(w))}(?![\w-])", name) for w in words):
            assert declared.on_node, f"roles/{role}: apt task installs {name!r}, undeclared"


def test_requests_follow_layers_node_roles_and_overrides(tmp_path: Path) -> None:
    loaded = load_site(write_site(tmp_path, overrides={"os_baseline_extra_packages": ["jq"]}))
    worker = {request.layer: request for request in layer_requests(loaded, "worker")}
    assert list(worker) == ["os_baseline", "container_runtime"]
    assert "jq" in worker["os_baseline"].packages
    assert "openssh-server" in worker["os_baseline"].packages
    assert worker["container_runtime"].packages == ["containerd"]
    assert worker["container_runtime"].optional == ["cri-tools"]

    gpu = {request.layer: request for request in layer_requests(loaded, "gpu")}
    assert "nvidia-driver" in gpu["gpu"].packages
    assert ("nvidia-container-toolkit", "nvidia-container-toolkit") in gpu["gpu"].third_party
    assert gpu["gpu"].on_node


@pytest.mark.parametrize(("source", "debian", "third_party"), [
    ("distribution", ["nvidia-kernel-dkms", "nvidia-driver", "nvidia-smi",
                      "nvidia-persistenced"], []),
    ("cuda-repo", [], [("cuda-drivers", "nvidia-cuda")]),
    ("preinstalled", [], []),
])
def test_the_driver_source_chooses_debian_or_the_cuda_repository(
    tmp_path: Path, source: str, debian: list[str], third_party: list[tuple[str, str]],
) -> None:
    loaded = load_site(write_site(tmp_path, overrides={"gpu_driver_source": source}))
    [gpu] = [request for request in layer_requests(loaded, "gpu") if request.layer == "gpu"]
    assert gpu.packages == ["dkms", *debian]
    assert sorted(gpu.third_party) == sorted(
        [*third_party, ("nvidia-container-toolkit", "nvidia-container-toolkit")])


def test_storage_classes_choose_the_storage_packages(tmp_path: Path) -> None:
    """local-path installs nothing; nfs adds the client everywhere and the server on storage."""
    site_file = write_site(tmp_path, blueprint="ai-edge", nodes=[
        {"name": "n1", "address": "10.9.0.11", "roles": ["control-plane", "worker"]},
        {"name": "s1", "address": "10.9.0.13", "roles": ["worker", "storage"]},
    ], overrides={
        "storage_classes": ["local-path", "nfs"],
        "storage_nfs_exports": [{"path": "/srv/nfs", "clients": ["10.0.0.0/24"]}]})
    loaded = load_site(site_file)

    def storage(node_role: str) -> list[str]:
        return next((r.packages for r in layer_requests(loaded, node_role)
                     if r.layer == "storage"), [])

    assert storage("worker") == ["nfs-common"]
    assert storage("storage") == ["nfs-common", "nfs-ganesha", "nfs-ganesha-vfs"]
