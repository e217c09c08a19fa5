"""remove-node of a k3s server: the Node is deleted only after k3s removed its etcd member.

The role's `remove_delete` tasks run with ansible-playbook on this machine (connection
local) against a STAND-IN `k3s kubectl` written here: a shell script that answers `get node
-o json` with the annotations the scenario gives and logs every command. What k3s's etcd
controller does (it records etcd.k3s.cattle.io/removed-node-name, or clears the remove
annotation when etcd refuses) is taken from k3s's source; real k3s does not run here.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import yaml

from blueprint.paths import ROLES_DIR

REMOVE = "etcd.k3s.cattle.io/remove"
REMOVED = "etcd.k3s.cattle.io/removed-node-name"


def _stand_in(folder: Path, annotations_after: list[dict[str, str]]) -> Path:
    """`k3s`: each `get -o json` answers the next annotations of the list (the last repeats)."""
    answers = folder / "answers"
    answers.mkdir()
    for index, given in enumerate(annotations_after):
        (answers / f"{index:02d}.json").write_text(json.dumps(
            {"metadata": {"name": "cp-2", "annotations": given}}))
    script = folder / "k3s"
    script.write_text(f"""#!/bin/bash
echo "$*" >> {folder}/calls
case "$*" in
  *"-o json"*)
    next=$(ls {answers} | head -1)
    cat "{answers}/$next"
    if [ "$(ls {answers} | wc -l)" -gt 1 ]; then rm "{answers}/$next"; fi
    ;;
  *"-o name"*) echo node/cp-2 ;;
  *) echo "node/cp-2 done" ;;
esac
""")
    script.chmod(0o755)
    return folder / "calls"


def _run(tmp_path: Path, annotations_after: list[dict[str, str]],
         timeout: int = 10) -> tuple[subprocess.CompletedProcess[str], list[str]]:
    calls = _stand_in(tmp_path, annotations_after)
    playbook = tmp_path / "play.yml"
    playbook.write_text(yaml.safe_dump([{
        "name": "remove_delete with a stand-in k3s", "hosts": "localhost",
        "gather_facts": False, "connection": "local",
        "tasks": [{"name": "Delete the node.", "ansible.builtin.include_role": {
            "name": "kubernetes", "tasks_from": "remove_delete"}}],
    }]))
    extra = {"kubernetes_distribution": "k3s", "kubernetes_bin_dir": str(tmp_path),
             "kubernetes_remove_node": "cp-2", "kubernetes_remove_reachable": True,
             "kubernetes_remove_control_plane": True,
             "kubernetes_etcd_remove_timeout": timeout,
             "ansible_python_interpreter": sys.executable}
    done = subprocess.run(
        [str(Path(sys.executable).parent / "ansible-playbook"), "-i", "localhost,",
         str(playbook), "-e", json.dumps(extra)],
        capture_output=True, text=True, check=False, timeout=120,
        env={**os.environ, "ANSIBLE_ROLES_PATH": str(ROLES_DIR), "ANSIBLE_NOCOLOR": "1",
             "ANSIBLE_LOCALHOST_WARNING": "False"})
    return done, calls.read_text().splitlines()


def test_the_node_is_deleted_after_k3s_records_the_member_removed(tmp_path: Path) -> None:
    done, calls = _run(tmp_path, [{REMOVE: "true"}, {REMOVE: "true"},
                                  {REMOVE: "true", REMOVED: "cp-2-1a2b3c4d"}])

    assert done.returncode == 0, done.stdout
    assert calls == ["kubectl get node cp-2 -o name",
                     f"kubectl annotate --overwrite node cp-2 {REMOVE}=true",
                     *["kubectl get node cp-2 -o json"] * 3,
                     "kubectl delete node cp-2"]


def test_a_removal_etcd_refused_stops_before_the_delete(tmp_path: Path) -> None:
    done, calls = _run(tmp_path, [{REMOVE: "true"}, {}])  # k3s cleared the annotation

    assert done.returncode != 0
    assert "cp-2: k3s did not remove its etcd member: etcd refused the removal" in done.stdout
    assert "Its Node was not deleted" in done.stdout
    assert "kubectl delete node cp-2" not in calls


def test_no_answer_from_k3s_in_time_stops_before_the_delete(tmp_path: Path) -> None:
    timeout = 4  # seconds: two polls after the first, 2 s apart
    done, calls = _run(tmp_path, [{REMOVE: "true"}], timeout=timeout)

    assert done.returncode != 0
    assert f"k3s did not remove its etcd member within {timeout} s" in done.stdout
    assert calls.count("kubectl get node cp-2 -o json") == 1 + timeout // 2
    assert "kubectl delete node cp-2" not in calls
