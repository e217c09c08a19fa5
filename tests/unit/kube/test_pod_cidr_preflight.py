"""kubeadm's pod CIDR is fixed at init: the role's preflight refuses another one, naming both.

The preflight's podSubnet tasks run with ansible-playbook on this machine (connection local)
against a STAND-IN kubectl written here: a shell script that answers the kubeadm-config
ConfigMap's ClusterConfiguration as kubeadm stores it, or fails as kubectl does when the API
server does not answer. Only the admin.conf path is pointed at a file here.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from blueprint.paths import ROLES_DIR

CLUSTER_CONFIGURATION = """\
apiServer: {}
kind: ClusterConfiguration
networking:
  dnsDomain: cluster.local
  podSubnet: 10.42.0.0/16
  serviceSubnet: 10.43.0.0/16
"""
FIRST = "Check whether kubeadm already created the cluster here."


def _run(tmp_path: Path, pod_cidr: str, kubectl: str) -> subprocess.CompletedProcess[str]:
    stand_in = tmp_path / "kubectl"
    stand_in.write_text(kubectl)
    stand_in.chmod(0o755)
    (tmp_path / "admin.conf").touch()
    tasks = yaml.safe_load((ROLES_DIR / "kubernetes" / "tasks" / "preflight.yml").read_text())
    start = [task["name"] for task in tasks].index(FIRST)
    chosen = tasks[start:start + 4]
    chosen[0]["ansible.builtin.stat"]["path"] = str(tmp_path / "admin.conf")
    playbook = tmp_path / "play.yml"
    playbook.write_text(yaml.safe_dump([{
        "name": "podSubnet preflight with a stand-in kubectl", "hosts": "localhost",
        "gather_facts": False, "connection": "local", "tasks": chosen}]))
    extra = {"kubernetes_distribution": "kubeadm", "kubernetes_node": {"init": True},
             "kubernetes_pod_cidr": pod_cidr, "__kubernetes_kubectl": [str(stand_in)],
             "ansible_python_interpreter": sys.executable}
    return subprocess.run(
        [str(Path(sys.executable).parent / "ansible-playbook"), "-i", "localhost,",
         str(playbook), "-e", json.dumps(extra)],
        capture_output=True, text=True, check=False, timeout=120,
        env={**os.environ, "ANSIBLE_NOCOLOR": "1", "ANSIBLE_LOCALHOST_WARNING": "False"})


ANSWERS = f"#!/bin/sh\ncat <<'EOF'\n{CLUSTER_CONFIGURATION}EOF\n"


@pytest.mark.parametrize(("pod_cidr", "refused"), [("10.42.0.0/16", False),
                                                    ("10.244.0.0/16", True)])
def test_another_pod_cidr_than_the_clusters_podsubnet_is_refused_naming_both(
    tmp_path: Path, pod_cidr: str, refused: bool,
) -> None:
    done = _run(tmp_path, pod_cidr, ANSWERS)
    assert (done.returncode != 0) == refused, done.stdout[-3000:]
    flat = " ".join(done.stdout.split())
    message = ("kubernetes: kubernetes_pod_cidr is 10.244.0.0/16, but the cluster was created "
               "with podSubnet 10.42.0.0/16")
    assert (message in flat) == refused, flat[-3000:]


def test_a_cluster_whose_config_cannot_be_read_is_reported_not_refused(tmp_path: Path) -> None:
    done = _run(tmp_path, "10.244.0.0/16",
                "#!/bin/sh\necho 'The connection to the server was refused' >&2\nexit 1\n")
    assert done.returncode == 0, done.stdout[-3000:]
    flat = " ".join(done.stdout.split())
    assert "the cluster's podSubnet could not be read from the kubeadm-config ConfigMap" in flat
