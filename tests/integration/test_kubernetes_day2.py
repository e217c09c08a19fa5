"""Day-2 verbs of the kubernetes layer on real lab nodes, against a STAND-IN k3s release.

As in test_kubernetes_layer.py, no Kubernetes release can run here (LAB-NOTES): the module
serves `standins/k3s-stand-in.py` as the "k3s" release, in two builds that differ only in the
version they report (A = v1.31.4+k3s1, B = v1.32.0+k3s1), each with its sha256 pinned in a
stand-in catalogue. The stand-in keeps the cluster's node list in a file on the server and
answers the `k3s kubectl` verbs the product runs (get, drain, uncordon, annotate, delete).
The product's own path runs: `blueprint upgrade`, `certs renew` and `remove-node` as
commands, their playbooks and the role's tasks, over SSH to the nodes.

What this proves: the upgrade plan on the command line, a downgrade refused; A -> B with the
control plane before the agents (the agents only once the server's Node is Ready again: the
stand-in answers NotReady twice after a start, and the wait asks until it says Ready), every
MainPID new, every node reporting B, a second upgrade
doing nothing and a deploy after it changing nothing; `certs renew` rotating the server's
certificates (an about-to-lapse STAND-IN certificate that validate names, then passes) and
the agents', servers first, with a new admin kubeconfig fetched; remove-node refusing the
only control plane with nothing changed, an unknown node, a live agent drained, cleaned and
deleted, a rerun refused, a dead agent (its link on the lab bridge down: a STAND-IN for a dead host)
deleted from the cluster with no connection to it beyond the probe. Real k3s, etcd and
kubeadm are not exercised (see docs/kubernetes.md).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import os
import shlex
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import yaml

from blueprint.artifacts import CATALOGUE_OVERRIDE_ENV
from blueprint.deploy import NODES_FILE, deployed_nodes
from blueprint.lab import overlay_digest
from blueprint.loader import load_site
from blueprint.secrets import PASSWORD_ENV
from blueprint.state import StateDir
from blueprint.validate import Status, run_validation
from blueprint.validation import build_target
from tests.helpers.x509certs import self_signed_pem
from tests.integration.test_kubernetes_layer import STAND_IN, _free_port, _wait_port

if TYPE_CHECKING:
    from tests.integration.conftest import LabHandle

pytestmark = pytest.mark.lab

# After the kubernetes layer's module (40), which resets its cluster at the end; this one
# makes its own and resets it too.
LAB_STAGE = 42

VERSION_A = "v1.31.4+k3s1"
VERSION_B = "v1.32.0+k3s1"
VAULT_PASSWORD = "stand-in vault password for the day-2 verbs"


@dataclass
class Day2Lab:
    lab: LabHandle
    site_file: Path
    state: StateDir
    outputs: list[str]

    def cli(self, *args: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
        """`blueprint VERB SITE ARGS` in a child process (the vault password in its env);
        VERB may be two words ("certs renew")."""
        verb, *rest = args
        done = subprocess.run(
            [sys.executable, "-m", "blueprint.cli", *verb.split(), str(self.site_file), *rest,
             "--state-dir", str(self.state.root)],
            capture_output=True, text=True, timeout=timeout, check=False,
            stdin=subprocess.DEVNULL, env={**os.environ, PASSWORD_ENV: VAULT_PASSWORD})
        self.outputs.append(done.stdout + done.stderr)
        return done

    @property
    def names(self) -> list[str]:
        return [node.name for node in self.lab.nodes]

    def set_version(self, version: str | None) -> None:
        data = yaml.safe_load(self.site_file.read_text())
        data["overrides"] = {"kubernetes_version": version} if version else {}
        self.site_file.write_text(yaml.safe_dump(data, sort_keys=False))

    def cluster_nodes(self) -> dict[str, str]:
        """The stand-in cluster's nodes (name -> version), as its kubectl lists them."""
        out = self.lab.ssh(self.names[0], "/usr/local/bin/k3s kubectl get nodes").stdout
        return {line.split()[0]: line.split()[-1] for line in out.splitlines()[1:]}

    def main_pids(self) -> dict[str, str]:
        return {name: self.lab.ssh(name, "systemctl show -p MainPID --value "
                                   + ("k3s" if index == 0 else "k3s-agent")).stdout.strip()
                for index, name in enumerate(self.names)}


def _build(version: str) -> bytes:
    """A build of the stand-in that reports `version`."""
    source = STAND_IN.read_text()
    old = f'VERSION = "{VERSION_A} (STAND-IN, not k3s)"'
    assert old in source
    return source.replace(old, f'VERSION = "{version} (STAND-IN, not k3s)"').encode()


@pytest.fixture(scope="module")
def day2(lab: LabHandle, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Day2Lab]:
    work = tmp_path_factory.mktemp("kubernetes-day2")

    # Two builds of the stand-in release, each with its checksums file, both pinned.
    releases = work / "releases"
    pins = {}
    for version in (VERSION_A, VERSION_B):
        content = _build(version)
        folder = releases / version
        folder.mkdir(parents=True)
        (folder / "k3s").write_bytes(content)
        pins[version] = hashlib.sha256(content).hexdigest()
        (folder / "sha256sum-amd64.txt").write_text(f"{pins[version]}  k3s\n")

    site_dir = work / "site"
    lab.write_k3s_site(site_dir, "kube-day2", VERSION_A, server=0)

    bridge = lab.state.bridge_ip
    port = _free_port(bridge)
    server = subprocess.Popen(
        [sys.executable, "-m", "http.server", "--bind", bridge, str(port),
         "--directory", str(releases)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base_url = f"http://{bridge}:{port}"
    catalogue = work / "stand-in-catalogue.yaml"
    catalogue.write_text(yaml.safe_dump({"binaries": {"k3s": {
        "layer": "kubernetes", "distribution": "k3s", "version_key": "k3s", "file": "k3s",
        "url": f"{base_url}/{{version_url}}/k3s",
        "checksums": f"{base_url}/{{version_url}}/sha256sum-amd64.txt",
        "licence": "Apache-2.0", "sha256": pins,
    }}}))
    saved = {name: os.environ.get(name) for name in (CATALOGUE_OVERRIDE_ENV, PASSWORD_ENV)}
    os.environ[CATALOGUE_OVERRIDE_ENV] = str(catalogue)
    os.environ[PASSWORD_ENV] = VAULT_PASSWORD
    ctx = Day2Lab(lab, site_dir / "site.yaml", StateDir.for_site(site_dir), [])
    try:
        _wait_port(bridge, port)
        deployed = ctx.cli("deploy")
        assert deployed.returncode == 0, deployed.stdout + deployed.stderr
        yield ctx
    finally:
        try:
            for node in lab.nodes:  # a link a test took down comes back first
                subprocess.run(["ip", "link", "set", node.veth, "up"], check=False)
            ctx.cli("reset", "--yes")
        finally:
            server.terminate()
            server.wait(timeout=10)
            for name, value in saved.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value


def _events(run_dir: Path) -> list[dict[str, Any]]:
    """ansible-runner's events of every playbook run under `run_dir`, in run order."""
    events = []
    for path in run_dir.rglob("job_events/*.json"):
        event = json.loads(path.read_text())
        events.append((str(path.parent), int(event.get("counter", 0)), event))
    return [event for _, _, event in sorted(events, key=lambda item: item[:2])]


def _last_run(state: StateDir, verb: str) -> Path:
    return max((state.root / "runs").glob(f"*-{verb}-*"))


READY_TASK = "Wait for the control plane's Node to be Ready."
ETCD_TASK = "Wait for the control plane's API server to report its etcd ready."


def _waited_until_ready(events: list[dict[str, Any]], server: str, agent_task: str) -> None:
    """The server's Ready wait asked until the stand-in said Ready (it answers NotReady twice
    after a start), its etcd check passed, and both came before any agent's `agent_task`."""
    oks = [(event["event_data"]["host"], event["event_data"].get("task"),
            event["event_data"].get("res", {})) for event in events
           if event.get("event") == "runner_on_ok"]
    ready = [(host, res.get("attempts")) for host, task, res in oks if task == READY_TASK]
    assert ready == [(server, 3)]
    tasks = [(host, task) for host, task, _ in oks]
    assert (server, ETCD_TASK) in tasks
    agent_steps = [index for index, (host, task) in enumerate(tasks)
                   if host != server and task == agent_task]
    assert agent_steps and tasks.index((server, ETCD_TASK)) < min(agent_steps)


def test_upgrade_plan_prints_one_step_and_refuses_a_downgrade(day2: Day2Lab) -> None:
    pids = day2.main_pids()
    day2.set_version(VERSION_B)
    planned = day2.cli("upgrade", "--plan", "--batch", "2")

    assert planned.returncode == 0, planned.stderr
    assert f"target {VERSION_B}; no upgrade recorded yet" in planned.stdout
    assert f"step 1: {VERSION_B}: control planes one at a time, then the other nodes 2 at" \
        in planned.stdout
    assert "step 2" not in planned.stdout
    assert day2.main_pids() == pids

    day2.set_version("v1.30.9+k3s1")
    refused = day2.cli("upgrade", "--plan")

    assert refused.returncode == 2
    assert "a downgrade is not supported" in refused.stderr
    day2.set_version(VERSION_B)


def test_upgrade_a_to_b_control_plane_first_every_service_restarted(day2: Day2Lab) -> None:
    server, *agents = day2.names
    day2.set_version(VERSION_B)
    pids = day2.main_pids()

    done = day2.cli("upgrade", "--yes", "--pause", "1")

    assert done.returncode == 0, done.stdout + done.stderr
    after = day2.main_pids()
    assert all(after[name] not in ("", "0", pids[name]) for name in day2.names), (pids, after)
    for name in day2.names:
        assert VERSION_B in day2.lab.ssh(name, "/usr/local/bin/k3s --version").stdout
    assert day2.cluster_nodes() == dict.fromkeys(day2.names, VERSION_B)
    restarts = [event["event_data"]["host"] for event in _events(_last_run(day2.state,
                                                                           "upgrade"))
                if event.get("event") == "runner_on_ok"
                and event["event_data"].get("task") == "Restart the node's Kubernetes "
                                                       "service on the new release."]
    assert restarts == [server, *agents]
    _waited_until_ready(_events(_last_run(day2.state, "upgrade")), server,
                        "Drain the node before its upgrade.")
    # Agents one at a time (--batch 1): one pause, between the two batches, none after.
    pauses = [event for event in _events(_last_run(day2.state, "upgrade"))
              if event.get("event") == "runner_on_ok"
              and event["event_data"].get("task") == "Wait before the next batch."]
    assert len(pauses) == 1
    recorded = json.loads((day2.state.root / "kubernetes-version.json").read_text())
    assert recorded["version"] == VERSION_B


def test_second_upgrade_does_nothing_and_deploy_agrees(day2: Day2Lab) -> None:
    pids = day2.main_pids()

    again = day2.cli("upgrade", "--yes")

    assert again.returncode == 0, again.stderr
    assert "nothing to do" in again.stdout
    assert f"last upgrade recorded {VERSION_B}" in again.stdout
    converge = day2.cli("deploy", "--layer", "kubernetes")
    assert converge.returncode == 0, converge.stdout + converge.stderr
    assert "deploy: ok, 0 change(s)" in converge.stdout
    assert day2.main_pids() == pids


def _fingerprint(day2: Day2Lab, path: str) -> str:
    return day2.lab.ssh(day2.names[0], f"openssl x509 -noout -fingerprint -in {path}").stdout


def test_certs_renew_rotates_the_certificates_and_fetches_a_new_kubeconfig(
    day2: Day2Lab, tmp_path: Path
) -> None:
    server = day2.names[0]
    tls = "/var/lib/rancher/k3s/server/tls"
    # A STAND-IN certificate about to lapse, where k3s keeps the API server's.
    soon = self_signed_pem("serving-kube-apiserver.crt",
                           dt.datetime.now(dt.UTC) + dt.timedelta(days=10))
    day2.lab.ssh(server, f"printf %s {shlex.quote(soon)} > {tls}/serving-kube-apiserver.crt")
    # A year's certificate: a restart alone keeps it (k3s renews within 90 days only).
    kubelet = _fingerprint(day2, f"{tls}/client-kubelet.crt")
    kubeconfig = (day2.state.root / "kubeconfig").read_text()
    pids = day2.main_pids()
    suite = tmp_path / "kube-certs.yaml"
    suite.write_text(yaml.safe_dump({"name": "kube-certs", "checks": [
        {"id": "kubernetes.certs.expiry", "mandatory": True}]}))
    target = dataclasses.replace(build_target(load_site(day2.site_file), day2.state),
                                 blueprint_layers=["kubernetes"], suite_file=suite)
    before = run_validation(target, tmp_path / "before")
    assert {r.node: r.status for r in before.results}[server] is Status.FAILED

    done = day2.cli("certs renew", "--yes")

    assert done.returncode == 0, done.stdout + done.stderr
    assert "certs renew: ok" in done.stdout
    assert "--check kubernetes.certs.expiry" in done.stdout
    after = run_validation(target, tmp_path / "after")
    assert {r.node: r.status for r in after.results}[server] is Status.PASSED
    assert _fingerprint(day2, f"{tls}/client-kubelet.crt") != kubelet
    backup = day2.lab.ssh(server, f"ls -d {tls}-*").stdout.split()
    assert len(backup) == 1
    assert day2.lab.ssh(server, f"cat {backup[0]}/serving-kube-apiserver.crt").stdout == soon
    renewed = (day2.state.root / "kubeconfig").read_text()
    assert renewed != kubeconfig and "client-certificate-data" in renewed
    assert oct((day2.state.root / "kubeconfig").stat().st_mode & 0o777) == "0o600"
    new_pids = day2.main_pids()
    assert all(new_pids[name] != pids[name] for name in day2.names), (pids, new_pids)
    rotated = [event["event_data"]["host"] for event in _events(_last_run(day2.state,
                                                                          "certs-renew"))
               if event.get("event") == "runner_on_ok"
               and event["event_data"].get("task") == "Rotate k3s's certificates."]
    assert rotated == day2.names
    _waited_until_ready(_events(_last_run(day2.state, "certs-renew")), server,
                        "Rotate k3s's certificates.")
    assert sorted(day2.cluster_nodes()) == sorted(day2.names)


def test_removing_the_only_control_plane_is_refused_and_changes_nothing(
    day2: Day2Lab,
) -> None:
    server = day2.names[0]
    before = {name: overlay_digest(day2.lab.name, name) for name in day2.names}
    recorded = (day2.state.root / NODES_FILE).read_text()

    refused = day2.cli("remove-node", server, "--yes")

    assert refused.returncode == 2
    assert f"node {server} is the cluster's only control plane (1 of 1)" in refused.stderr
    assert {name: overlay_digest(day2.lab.name, name) for name in day2.names} == before
    assert (day2.state.root / NODES_FILE).read_text() == recorded


def test_an_unknown_node_is_refused_in_one_line(day2: Day2Lab) -> None:
    refused = day2.cli("remove-node", "no-such-node", "--yes")

    assert refused.returncode == 2
    assert refused.stderr.strip().count("\n") == 0
    assert "node no-such-node is not in" in refused.stderr


def test_remove_a_live_worker_drains_cleans_and_forgets_it(day2: Day2Lab) -> None:
    agent = day2.names[1]

    done = day2.cli("remove-node", agent, "--yes")

    assert done.returncode == 0, done.stdout + done.stderr
    assert f"remove-node: ok, {agent} deleted from the cluster" in done.stdout
    assert f"now remove {agent} from" in done.stdout
    tasks = [(event["event_data"]["host"], event["event_data"]["task"])
             for event in _events(_last_run(day2.state, "remove-node"))
             if event.get("event") == "runner_on_ok" and event["event_data"].get("res", {})
             .get("changed")]
    assert (day2.names[0], "Drain the node (cordon, then evict its pods).") in tasks
    assert (day2.names[0], "Delete the node from the cluster.") in tasks
    assert agent not in day2.cluster_nodes()
    left = day2.lab.ssh(agent, "ls -d /usr/local/bin/k3s /etc/rancher/k3s /var/lib/rancher/k3s "
                               "/etc/systemd/system/k3s-agent.service 2>/dev/null; "
                               "systemctl is-active k3s-agent", check=False).stdout
    assert left.split() == ["inactive"]
    assert all(agent not in nodes for nodes in deployed_nodes(day2.state).values())

    again = day2.cli("remove-node", agent, "--yes")

    assert again.returncode == 2
    assert "nothing to remove" in again.stderr


def test_remove_a_dead_worker_deletes_it_from_the_cluster_alone(day2: Day2Lab) -> None:
    node = day2.lab.nodes[2]
    subprocess.run(["ip", "link", "set", node.veth, "down"], check=True)
    try:
        unforced = day2.cli("remove-node", node.name, "--yes")
        assert unforced.returncode == 2
        assert "does not answer SSH" in unforced.stderr and "--force" in unforced.stderr

        done = day2.cli("remove-node", node.name, "--yes", "--force")

        assert done.returncode == 0, done.stdout + done.stderr
        assert "its host was NOT cleaned (no SSH)" in done.stdout
        hosts = {event["event_data"].get("host") for event in
                 _events(_last_run(day2.state, "remove-node"))
                 if event.get("event_data", {}).get("host")}
        assert hosts == {day2.names[0]}
        assert day2.cluster_nodes() == {day2.names[0]: VERSION_B}
        assert all(node.name not in nodes for nodes in deployed_nodes(day2.state).values())
    finally:
        subprocess.run(["ip", "link", "set", node.veth, "up"], check=True)
    # The dead host kept what it had: nothing reached it.
    assert day2.lab.ssh(node.name, "test -x /usr/local/bin/k3s").returncode == 0
