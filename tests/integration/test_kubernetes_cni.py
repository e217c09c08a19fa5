"""kubeadm's pod network (the role's tasks/cni.yml) on a real lab node, with a STAND-IN kubectl.

No kubeadm, kubelet, API server or container image can run here (LAB-NOTES), and nothing in
the lab exercises the kubeadm path: `kubeadm init` cannot run. So this module runs only the
CNI task file, as the role runs it on the first control plane after `kubeadm init`, against:

- a STAND-IN calico release: a small file served as `tigera-operator.yaml` by
  `python -m http.server` on the lab bridge (started and stopped here, by PID), its URL and
  sha256 in a stand-in catalogue ($BLUEPRINT_CATALOGUE), resolved by the product's own
  `resolve_binaries` as a deploy resolves it;
- `standins/kubectl-stand-in.py` as the node's kubectl (and an empty admin.conf): it records
  each server-side apply with the applied file's sha256 and answers node readiness.

For cilium, a STAND-IN cilium release: an archive holding a `cilium` shell script that
records its arguments (in place of the CLI) and a chart archive holding only `Chart.yaml`.

What this proves: the release file is fetched against its pinned checksum and a wrong file is
refused with nothing applied; the operator and the rendered resources (pod CIDR) are applied
once, server side with the field manager; a second converge changes and applies nothing; a
new pod CIDR is applied again; a pod network that never makes the nodes Ready fails with a
message naming the node and the pod; cilium's archives are unpacked and the CLI runs
`install` with the chart folder and the values once, nothing on a second converge, `upgrade`
when the values change, and `upgrade` too when the cluster holds cilium's release (the
stand-in kubectl's helm secret) but the sha256 file is gone. Real calico or cilium, the real
CLI and chart and the readiness of real nodes are not exercised (see docs/kubernetes.md).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import subprocess
import sys
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import yaml

from blueprint.artifacts import CATALOGUE_OVERRIDE_ENV, resolve_binaries
from blueprint.kube.render import render
from blueprint.lab.lab import ssh_command
from blueprint.models import Site
from blueprint.paths import ROLES_DIR

if TYPE_CHECKING:
    from tests.integration.conftest import LabHandle

pytestmark = pytest.mark.lab

# Needs only booted nodes; it leaves nothing of its own behind (see the fixture's cleanup).
LAB_STAGE = 41

KUBECTL = Path(__file__).parent / "standins" / "kubectl-stand-in.py"
CALICO = "v3.29.1"
CILIUM, CILIUM_CLI = "v1.16.5", "v0.16.22"
VERSIONS = {"kubernetes": "v1.31.4", "calico": CALICO, "cilium": CILIUM,
            "cilium_cli": CILIUM_CLI}
# A STAND-IN for calico's tigera-operator.yaml: what the role applies is only recorded.
OPERATOR = b"""# STAND-IN tigera-operator.yaml for the CNI lab test; not calico's manifest.
apiVersion: v1
kind: Namespace
metadata:
  name: tigera-operator
"""
# A STAND-IN for the cilium CLI: it records how it was called.
CILIUM_SCRIPT = b"""#!/bin/sh
# STAND-IN cilium CLI for the CNI lab test; records its arguments and KUBECONFIG.
echo "$KUBECONFIG $*" >> /var/lib/kubectl-stand-in/cilium.log
"""


def _tgz(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o755
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


CILIUM_CLI_TGZ = _tgz({"cilium": CILIUM_SCRIPT})
CILIUM_CHART_TGZ = _tgz({"cilium/Chart.yaml": b"# STAND-IN chart\nname: cilium\n"
                                              b"version: 1.16.5\n"})
LEFT_BY_TEST = ("/usr/local/bin/kubectl /etc/kubernetes /var/lib/blueprint-cni "
                "/var/lib/kubectl-stand-in")


@dataclass
class CniLab:
    lab: LabHandle
    node: str
    work: Path
    base_url: str

    def artifacts(self, folder: str, sha256: str, cni: str = "calico") -> list[dict[str, str]]:
        """kubernetes_cni_artifacts as the product resolves them from a stand-in catalogue."""
        catalogue = self.work / f"catalogue-{folder}.yaml"
        entry = {"layer": "kubernetes", "distribution": "kubeadm", "checksums": "",
                 "licence": "Apache-2.0"}
        catalogue.write_text(yaml.safe_dump({"binaries": {
            "calico-operator": {
                **entry, "cni": "calico", "version_key": "calico",
                "file": "tigera-operator.yaml",
                "url": f"{self.base_url}/{folder}/{{version}}/tigera-operator.yaml",
                "sha256": {CALICO: sha256}},
            "cilium-cli": {
                **entry, "cni": "cilium", "version_key": "cilium_cli",
                "file": "cilium-linux-amd64.tar.gz",
                "url": f"{self.base_url}/{folder}/{{version}}/cilium-linux-amd64.tar.gz",
                "sha256": {CILIUM_CLI: hashlib.sha256(CILIUM_CLI_TGZ).hexdigest()}},
            "cilium-chart": {
                **entry, "cni": "cilium", "version_key": "cilium",
                "file": "cilium-{version_number}.tgz",
                "url": f"{self.base_url}/{folder}/{{version}}/cilium-{{version_number}}.tgz",
                "sha256": {CILIUM: hashlib.sha256(CILIUM_CHART_TGZ).hexdigest()}},
        }}))
        saved = os.environ.get(CATALOGUE_OVERRIDE_ENV)
        os.environ[CATALOGUE_OVERRIDE_ENV] = str(catalogue)
        try:
            site = Site.model_validate({"name": "cni", "blueprint": "ai-edge", "nodes": [
                {"name": self.node, "address": "10.0.0.1", "roles": ["control-plane"]}]})
            binaries = resolve_binaries(site, "kubernetes", "kubeadm", VERSIONS, cni=cni)
        finally:
            if saved is None:
                os.environ.pop(CATALOGUE_OVERRIDE_ENV)
            else:
                os.environ[CATALOGUE_OVERRIDE_ENV] = saved
        return [binary.as_variable() for binary in binaries if binary.cni]

    def converge(self, artifacts: list[dict[str, str]], **extra: Any) -> tuple[int, int, str]:
        """Run the role's cni tasks on the node: (exit code, changed tasks, output)."""
        variables = {"kubernetes_distribution": "kubeadm", "kubernetes_cni": "calico",
                     "kubernetes_node": {"kind": "control-plane", "init": True, "ha": False,
                                         "endpoint": "10.0.0.1", "port": 6443},
                     "kubernetes_cni_artifacts": artifacts,
                     "kubernetes_pod_cidr": "10.244.0.0/16", **extra}
        (self.work / "vars.json").write_text(json.dumps(variables))
        bin_dir = Path(sys.executable).parent
        done = subprocess.run(
            [str(bin_dir / "ansible-playbook"), "-i", str(self.work / "inventory.yml"),
             "-e", f"@{self.work / 'vars.json'}", str(self.work / "cni.yml")],
            capture_output=True, text=True, timeout=300, check=False,
            env={**os.environ, "ANSIBLE_ROLES_PATH": str(ROLES_DIR),
                 "ANSIBLE_HOST_KEY_CHECKING": "True", "ANSIBLE_NOCOLOR": "1",
                 "PATH": f"{bin_dir}:{os.environ['PATH']}"})
        output = done.stdout + done.stderr
        recap = re.search(rf"^{re.escape(self.node)}\s+:.*changed=(\d+)", output, re.M)
        return done.returncode, int(recap.group(1)) if recap else -1, output

    def applied(self) -> list[str]:
        log = self.lab.ssh(self.node, "cat /var/lib/kubectl-stand-in/applied.log", check=False)
        return log.stdout.splitlines()


def _put(lab: LabHandle, node: str, path: str, data: bytes, mode: str) -> None:
    target = lab.node(node)
    subprocess.run(ssh_command(lab.state, target, f"mkdir -p $(dirname {path}) && "
                                                  f"cat > {path} && chmod {mode} {path}"),
                   input=data, check=True, capture_output=True, timeout=60)


@pytest.fixture(scope="module")
def cni(lab: LabHandle, tmp_path_factory: pytest.TempPathFactory) -> Iterator[CniLab]:
    work = tmp_path_factory.mktemp("kubernetes-cni")
    node = lab.nodes[0]

    # The stand-in release and a wrong file under the same name.
    for folder, content in (("stand-in", OPERATOR), ("wrong-file", b"kind: Wrong\n")):
        release = work / "releases" / folder / CALICO
        release.mkdir(parents=True)
        (release / "tigera-operator.yaml").write_bytes(content)
    cilium = work / "releases" / "stand-in"
    (cilium / CILIUM_CLI).mkdir()
    (cilium / CILIUM_CLI / "cilium-linux-amd64.tar.gz").write_bytes(CILIUM_CLI_TGZ)
    (cilium / CILIUM).mkdir()
    (cilium / CILIUM / "cilium-1.16.5.tgz").write_bytes(CILIUM_CHART_TGZ)

    # One lab node as the first control plane, reached as the product reaches it.
    (work / "inventory.yml").write_text(yaml.safe_dump({"all": {"hosts": {node.name: {
        "ansible_host": str(node.address), "ansible_user": "root",
        "ansible_ssh_private_key_file": str(lab.state.key_file),
        "ansible_ssh_common_args": f"-o UserKnownHostsFile={lab.state.known_hosts} "
                                   "-o StrictHostKeyChecking=yes -o IdentitiesOnly=yes"}}}}))
    (work / "cni.yml").write_text(yaml.safe_dump([{
        "name": "kubeadm's pod network on the first control plane (STAND-IN kubectl)",
        "hosts": "all", "gather_facts": False,
        "tasks": [{"name": "Apply the pod network.", "ansible.builtin.include_role": {
            "name": "kubernetes", "tasks_from": "cni"}}]}], sort_keys=False))

    _put(lab, node.name, "/usr/local/bin/kubectl", KUBECTL.read_bytes(), "0755")
    _put(lab, node.name, "/etc/kubernetes/admin.conf", b"# STAND-IN admin.conf\n", "0600")

    bridge = lab.state.bridge_ip
    server = subprocess.Popen(
        [sys.executable, "-u", "-m", "http.server", "--bind", bridge, "0",
         "--directory", str(work / "releases")],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert server.stdout is not None
        # "Serving HTTP on ADDRESS port PORT (...)": the port the kernel chose.
        port = re.search(r"port (\d+)", server.stdout.readline())
        assert port is not None
        yield CniLab(lab, node.name, work, f"http://{bridge}:{port.group(1)}")
    finally:
        server.terminate()
        server.wait(timeout=10)
        lab.ssh(node.name, f"rm -rf {LEFT_BY_TEST}", check=False)


def test_stand_in_wrong_file_is_refused_by_its_checksum_and_nothing_is_applied(
    cni: CniLab,
) -> None:
    # The pinned sha256 is the stand-in's, but the URL serves another file.
    artifacts = cni.artifacts("wrong-file", hashlib.sha256(OPERATOR).hexdigest())

    code, _, output = cni.converge(artifacts)

    assert code != 0
    assert re.search(r"checksum .* did not match", output), output[-2000:]
    assert cni.applied() == []
    kept = cni.lab.ssh(cni.node, "ls /var/lib/blueprint-cni", check=False).stdout.split()
    assert [name for name in kept if name.startswith("calico-operator")] == []


def test_stand_in_operator_and_resources_are_applied_once_server_side(cni: CniLab) -> None:
    artifacts = cni.artifacts("stand-in", hashlib.sha256(OPERATOR).hexdigest())

    code, changed, output = cni.converge(artifacts)

    assert code == 0, output[-3000:]
    assert changed > 0
    operator = f"/var/lib/blueprint-cni/calico-operator-{CALICO}-tigera-operator.yaml"
    resources = "/var/lib/blueprint-cni/calico-resources.yaml"
    rendered = render("calico-resources.yaml.j2", {"kubernetes_pod_cidr": "10.244.0.0/16"})
    assert [line.split()[1:] for line in cni.applied()] == [
        [operator, "blueprint"], [resources, "blueprint"]]
    assert cni.applied()[0].split()[0] == hashlib.sha256(OPERATOR).hexdigest()
    assert cni.applied()[1].split()[0] == hashlib.sha256(rendered.encode()).hexdigest()
    on_node = cni.lab.ssh(cni.node, f"stat -c '%a %U' {resources}; cat {resources}").stdout
    mode, text = on_node.split("\n", 1)
    assert mode == "600 root"
    assert text == rendered
    assert 'cidr: "10.244.0.0/16"' in text


def test_second_converge_changes_nothing_and_applies_nothing(cni: CniLab) -> None:
    artifacts = cni.artifacts("stand-in", hashlib.sha256(OPERATOR).hexdigest())
    before = cni.applied()

    code, changed, output = cni.converge(artifacts)

    assert (code, changed) == (0, 0), output[-3000:]
    assert cni.applied() == before


def test_a_new_pod_cidr_is_applied_again(cni: CniLab) -> None:
    artifacts = cni.artifacts("stand-in", hashlib.sha256(OPERATOR).hexdigest())
    before = len(cni.applied())

    code, changed, output = cni.converge(artifacts, kubernetes_pod_cidr="10.96.64.0/18")
    assert code == 0 and changed > 0, output[-3000:]
    assert len(cni.applied()) == before + 2
    # Back to the cluster's CIDR for the tests after this one.
    code, _, output = cni.converge(artifacts)
    assert code == 0, output[-3000:]


def test_a_pod_network_that_never_gets_ready_fails_with_a_readable_message(
    cni: CniLab,
) -> None:
    artifacts = cni.artifacts("stand-in", hashlib.sha256(OPERATOR).hexdigest())
    cni.lab.ssh(cni.node, "touch /var/lib/kubectl-stand-in/not-ready")
    try:
        code, _, output = cni.converge(artifacts, kubernetes_cni_ready_timeout=5)
    finally:
        cni.lab.ssh(cni.node, "rm -f /var/lib/kubectl-stand-in/not-ready")

    assert code != 0
    flat = " ".join(output.split())
    assert "the pod network calico did not make every node Ready within 5 s" in flat, flat
    assert f"timed out waiting for the condition on nodes/{cni.node}" in flat
    assert f"node {cni.node} NotReady" in flat
    assert "pod calico-system/calico-node-stand-in ImagePullBackOff" in flat


def test_stand_in_cilium_is_unpacked_installed_once_then_upgraded(cni: CniLab) -> None:
    artifacts = cni.artifacts("stand-in", hashlib.sha256(OPERATOR).hexdigest(), "cilium")
    assert [item["name"] for item in artifacts] == ["cilium-chart", "cilium-cli"]
    log = "cat /var/lib/kubectl-stand-in/cilium.log"

    code, changed, output = cni.converge(artifacts, kubernetes_cni="cilium")

    assert code == 0 and changed > 0, output[-3000:]
    base = "/var/lib/blueprint-cni"
    chart = f"{base}/cilium-chart-{CILIUM}-cilium-1.16.5.tgz.d/cilium"
    values = f"{base}/cilium-values.yaml"
    install = (f"/etc/kubernetes/admin.conf install --namespace=kube-system "
               f"--chart-directory={chart} --values={values}")
    assert cni.lab.ssh(cni.node, log).stdout.splitlines() == [install]
    assert cni.lab.ssh(cni.node, f"cat {chart}/Chart.yaml").stdout.startswith(
        "# STAND-IN chart")
    rendered = cni.lab.ssh(cni.node, f"cat {values}").stdout
    assert "mode: kubernetes" in rendered and 'k8sServiceHost: "10.0.0.1"' in rendered

    code, changed, output = cni.converge(artifacts, kubernetes_cni="cilium")
    assert (code, changed) == (0, 0), output[-3000:]
    assert cni.lab.ssh(cni.node, log).stdout.splitlines() == [install]

    code, changed, output = cni.converge(artifacts, kubernetes_cni="cilium",
                                         kubernetes_cluster_name="renamed")
    assert code == 0 and changed > 0, output[-3000:]
    assert cni.lab.ssh(cni.node, log).stdout.splitlines() == [
        install, install.replace(" install ", " upgrade ")]

    # No sha256 file (a new first control plane, or a first install that failed after
    # the release was made): the release on the cluster still makes it an upgrade.
    cni.lab.ssh(cni.node, f"rm {base}/applied-cilium.sha256")
    code, changed, output = cni.converge(artifacts, kubernetes_cni="cilium",
                                         kubernetes_cluster_name="renamed")
    assert code == 0 and changed > 0, output[-3000:]
    assert cni.lab.ssh(cni.node, log).stdout.splitlines()[-1] == install.replace(
        " install ", " upgrade ")
