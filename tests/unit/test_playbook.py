"""Running layers through ansible-runner: results per layer, and failures never lost."""

from __future__ import annotations

from pathlib import Path

import pytest

from blueprint import playbook
from blueprint.playbook import run_layers


@pytest.fixture
def local_inventory(tmp_path: Path) -> Path:
    inventory = tmp_path / "inventory"
    inventory.mkdir()
    (inventory / "hosts.yml").write_text(
        "all:\n  hosts:\n    here:\n      ansible_connection: local\n"
        "      ansible_python_interpreter: '{{ ansible_playbook_python }}'\n"
    )
    return inventory


@pytest.fixture
def playbooks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "playbooks"
    folder.mkdir()
    (folder / "good.yml").write_text(
        "- name: A layer that changes one thing.\n  hosts: all\n  gather_facts: false\n"
        "  tasks:\n    - name: Ensure a marker file exists.\n"
        f"      ansible.builtin.copy: {{content: x, dest: '{tmp_path}/marker', mode: '0600'}}\n"
    )
    (folder / "broken.yml").write_text("- name: Broken\n  hosts: all\n  tasks: [{nosuch: 1}]\n")
    monkeypatch.setattr(playbook, "PLAYBOOKS_DIR", folder)
    return folder


def test_each_layer_gets_its_own_counts_and_changes(
    tmp_path: Path, local_inventory: Path, playbooks: Path
) -> None:
    results = run_layers({"good": []}, local_inventory, tmp_path / "run", tmp_path / "facts")

    [good] = results
    assert good.ok
    assert good.stats["here"]["changed"] == 1
    assert [(c.node, c.task) for c in good.changes] == [("here", "Ensure a marker file exists.")]


def test_a_playbook_that_fails_before_any_task_is_a_failure(
    tmp_path: Path, local_inventory: Path, playbooks: Path
) -> None:
    results = run_layers({"broken": []}, local_inventory, tmp_path / "run", tmp_path / "facts")

    [broken] = results
    assert not broken.ok
    assert broken.failures[0].node == "controller"
    assert "nosuch" in broken.failures[0].diff
