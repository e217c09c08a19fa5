"""Running layers through ansible-runner: results per layer, and failures never lost."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from blueprint import playbook
from blueprint.playbook import run_layers
from blueprint.secrets import Redactor


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
    (folder / "secret.yml").write_text(
        "- name: A layer that uses a secret.\n  hosts: all\n  gather_facts: false\n"
        "  tasks:\n    - name: Ensure the secret is written.\n"
        f"      ansible.builtin.copy: {{content: '{{{{ probe_secret }}}}', dest: '{tmp_path}/got',"
        " mode: '0600'}\n      no_log: true\n"
    )
    (folder / "failing.yml").write_text(
        "- name: A layer whose task fails.\n  hosts: all\n  gather_facts: false\n"
        "  tasks:\n    - name: Ensure the impossible.\n"
        "      ansible.builtin.fail: {msg: no such thing}\n"
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


def test_secret_vars_reach_ansible_but_not_its_command_line_or_artifacts(
    tmp_path: Path, local_inventory: Path, playbooks: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A redactor that knows nothing: what is found is what the run itself left behind.
    monkeypatch.setattr(playbook, "REDACTOR", Redactor())
    secret = "zz-probe-secret-31"

    [result] = run_layers({"secret": []}, local_inventory, tmp_path / "run",
                          tmp_path / "facts", secret_vars={"probe_secret": secret})

    assert result.ok
    assert (tmp_path / "got").read_text() == secret
    # The task is no_log: its change is still counted, from the display line.
    assert [(c.node, c.task) for c in result.changes] == [("here", "Ensure the secret is written.")]
    command = json.loads((tmp_path / "run" / "ansible" / "command").read_text())["command"]
    extravars = Path(command[command.index("-e") + 1].removeprefix("@"))
    assert extravars.name == "extravars" and not extravars.exists()
    leaks = [str(path) for path in (tmp_path / "run").rglob("*")
             if path.is_file() and secret.encode() in path.read_bytes()]
    assert leaks == []


def test_a_layer_that_finished_before_a_later_one_failed_stays_ok(
    tmp_path: Path, local_inventory: Path, playbooks: Path
) -> None:
    results = run_layers({"good": [], "failing": []}, local_inventory, tmp_path / "run",
                         tmp_path / "facts")

    good, failing = results
    assert good.ok and good.status == "successful"
    assert not failing.ok
    assert [(f.node, f.task, f.diff) for f in failing.failures] == [
        ("here", "Ensure the impossible.", "no such thing")]
