"""The kubernetes layer's mechanics on real lab nodes, against a STAND-IN k3s release.

No Kubernetes release binary can be fetched or run here (LAB-NOTES), so this module serves
`standins/k3s-stand-in.py` as the "k3s" release: a real long-running program that opens the
API port, writes a node-token and an admin kubeconfig, and answers joins only with the right
token. It is served by `python -m http.server` on the lab's bridge address (started and stopped
here, by PID), with its sha256 pinned in a stand-in catalogue ($BLUEPRINT_CATALOGUE). The
product's own path runs: deploy (preflight play, cluster secrets from the state vault,
redaction), the role's tasks and templates, `blueprint reset`.

What this proves: download against the pinned checksum, refusal of a wrong file with nothing
changed, config files and units, a single server with two agents joined with the vault's
token, the token nowhere in output, artifacts or state, a second deploy with zero changes and
the same MainPIDs, reset. HA, CNI and real k3s are not exercised (see docs/kubernetes.md).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import io
import os
import shlex
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import yaml
from rich.console import Console

from blueprint.artifacts import CATALOGUE_OVERRIDE_ENV
from blueprint.deploy import DeployOutcome, deploy
from blueprint.errors import DeployFailed, ExitCode
from blueprint.kube.render import node_config
from blueprint.kube.tokens import cluster_secrets
from blueprint.kube.topology import plan_nodes
from blueprint.kube.variables import kubernetes_settings
from blueprint.lab import overlay_digest
from blueprint.loader import load_site
from blueprint.secrets import PASSWORD_ENV
from blueprint.state import RunHistory, StateDir
from blueprint.validate import Status, run_validation
from blueprint.validation import build_target
from tests.helpers.x509certs import self_signed_pem

if TYPE_CHECKING:
    from tests.integration.conftest import LabHandle

pytestmark = pytest.mark.lab

# After the end-to-end deploy of the lab blueprint (os_baseline, container_runtime), before
# the GPU layer's tests; reset at the end leaves the nodes as this module found them.
LAB_STAGE = 40

STAND_IN = Path(__file__).parent / "standins" / "k3s-stand-in.py"
VERSION = "v1.31.4+k3s1"
VAULT_PASSWORD = "stand-in vault password for the kubernetes layer"
SERVER = 0  # index of the lab node that is the control plane


@dataclass
class KubeLab:
    lab: LabHandle
    site_file: Path
    state: StateDir
    releases: Path
    base_url: str
    outputs: list[str]

    def deploy(self, site_file: Path | None = None, **kwargs: object) -> DeployOutcome:
        buffer = io.StringIO()
        try:
            return deploy(load_site(site_file or self.site_file), self.state,
                          Console(file=buffer), **kwargs)  # type: ignore[arg-type]
        finally:
            self.outputs.append(buffer.getvalue())

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        """`blueprint VERB SITE ARGS` in a child process (the vault password in its env)."""
        verb, *rest = args
        done = subprocess.run(
            [sys.executable, "-m", "blueprint.cli", verb, str(self.site_file), *rest,
             "--state-dir", str(self.state.root)],
            capture_output=True, text=True, timeout=900, check=False,
            env={**os.environ, PASSWORD_ENV: VAULT_PASSWORD})
        self.outputs.append(done.stdout + done.stderr)
        return done

    def reset(self) -> subprocess.CompletedProcess[str]:
        return self.cli("reset", "--yes")

    def node_names(self) -> list[str]:
        return [node.name for node in self.lab.nodes]


def _free_port(address: str) -> int:
    with socket.socket() as probe:
        probe.bind((address, 0))
        return int(probe.getsockname()[1])


def _wait_port(host: str, port: int) -> None:
    deadline = time.monotonic() + 10
    while True:
        try:
            socket.create_connection((host, port), timeout=1).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def _stand_in_catalogue(path: Path, base_url: str, folder: str, sha256: str) -> None:
    """The stand-in catalogue: the k3s entry pointing at this module's stand-in release."""
    path.write_text(yaml.safe_dump({"binaries": {"k3s": {
        "layer": "kubernetes", "distribution": "k3s", "version_key": "k3s", "file": "k3s",
        "url": f"{base_url}/{folder}/{{version_url}}/k3s",
        "checksums": f"{base_url}/{folder}/{{version_url}}/sha256sum-amd64.txt",
        "licence": "Apache-2.0", "sha256": {VERSION: sha256},
    }}}))


@pytest.fixture(scope="module")
def kube(lab: LabHandle, tmp_path_factory: pytest.TempPathFactory) -> Iterator[KubeLab]:
    work = tmp_path_factory.mktemp("kubernetes-layer")

    # The stand-in release and a wrong file under the same name, each with its checksums file.
    releases = work / "releases"
    good = STAND_IN.read_bytes()
    digest = hashlib.sha256(good).hexdigest()
    for folder, content in (("stand-in", good), ("wrong-file", b"#!/bin/sh\nexit 0\n")):
        # The URL carries %2B for '+'; http.server decodes it before looking up the folder.
        release = releases / folder / VERSION
        release.mkdir(parents=True)
        (release / "k3s").write_bytes(content)
        (release / "sha256sum-amd64.txt").write_text(
            f"{hashlib.sha256(content).hexdigest()}  k3s\n")

    # A site of the lab's nodes whose blueprint is the lab's lower layers plus kubernetes.
    site_dir = work / "site"
    lab.write_k3s_site(site_dir, "kube-stand-in", VERSION, server=SERVER)

    bridge = lab.state.bridge_ip
    port = _free_port(bridge)
    server = subprocess.Popen(
        [sys.executable, "-m", "http.server", "--bind", bridge, str(port),
         "--directory", str(releases)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base_url = f"http://{bridge}:{port}"
    catalogue = work / "stand-in-catalogue.yaml"
    _stand_in_catalogue(catalogue, base_url, "stand-in", digest)
    saved = {name: os.environ.get(name) for name in (CATALOGUE_OVERRIDE_ENV, PASSWORD_ENV)}
    os.environ[CATALOGUE_OVERRIDE_ENV] = str(catalogue)
    os.environ[PASSWORD_ENV] = VAULT_PASSWORD
    ctx = KubeLab(lab, site_dir / "site.yaml", StateDir.for_site(site_dir), releases, base_url,
                  [])
    try:
        _wait_port(bridge, port)
        # The lower layers, as the session's earlier stages left them (a no-op there).
        ctx.deploy(requested=["os_baseline", "container_runtime"])
        yield ctx
    finally:
        try:
            ctx.reset()
        finally:
            server.terminate()
            server.wait(timeout=10)
            for name, value in saved.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value


def _digests(kube: KubeLab) -> dict[str, str]:
    return {name: overlay_digest(kube.lab.name, name) for name in kube.node_names()}


def _main_pids(kube: KubeLab) -> dict[str, str]:
    pids = {}
    for index, name in enumerate(kube.node_names()):
        unit = "k3s" if index == SERVER else "k3s-agent"
        pids[name] = kube.lab.ssh(name, f"systemctl show -p MainPID --value {unit}").stdout
    return pids


def test_stand_in_wrong_file_is_refused_by_its_checksum_and_nothing_changes(
    kube: KubeLab,
) -> None:
    before = _digests(kube)
    good = os.environ[CATALOGUE_OVERRIDE_ENV]
    wrong = Path(good).with_name("stand-in-catalogue-wrong-file.yaml")
    digest = hashlib.sha256(STAND_IN.read_bytes()).hexdigest()
    # Same pinned checksum, but the URL serves another file.
    _stand_in_catalogue(wrong, kube.base_url, "wrong-file", digest)
    os.environ[CATALOGUE_OVERRIDE_ENV] = str(wrong)
    try:
        with pytest.raises(DeployFailed) as failed:
            kube.deploy(requested=["kubernetes"])
    finally:
        os.environ[CATALOGUE_OVERRIDE_ENV] = good

    assert "checksum" in str(failed.value).lower(), failed.value
    assert _digests(kube) == before
    for name in kube.node_names():
        assert kube.lab.ssh(name, "test -e /usr/local/bin/k3s", check=False).returncode == 1


def test_stand_in_k3s_installs_and_agents_join_with_the_vault_token(kube: KubeLab) -> None:
    # The cluster first without the last node; `blueprint scale` adds it below.
    server, *agents = kube.node_names()
    smaller = kube.site_file.with_name("site-without-last-node.yaml")
    data = yaml.safe_load(kube.site_file.read_text())
    data["nodes"] = data["nodes"][:-1]
    smaller.write_text(yaml.safe_dump(data, sort_keys=False))
    outcome = kube.deploy(smaller, requested=["kubernetes"])

    [result] = outcome.results
    assert result.ok and result.changed > 0
    assert sorted(result.stats) == [server, *agents[:-1]]
    assert kube.lab.ssh(agents[-1], "test -e /usr/local/bin/k3s", check=False).returncode == 1

    scaled = kube.cli("scale")

    assert scaled.returncode == 0, scaled.stdout + scaled.stderr
    assert f"scale: adding {agents[-1]} (with control plane {server})" in scaled.stdout
    run = max((kube.state.root / "runs").glob("*-scale-*"))
    history = RunHistory(kube.state)
    rows = history.node_results(run.name)
    history.close()
    # Every host layer ran on the new node; the control plane converged with no change;
    # the other agent was not in the run.
    assert {row["layer"] for row in rows} == {"os_baseline", "container_runtime", "kubernetes"}
    assert {row["node"] for row in rows} == {server, agents[-1]}
    assert [row for row in rows if row["node"] == server and row["changed"]] == []
    assert any(row["changed"] for row in rows if row["node"] == agents[-1])
    again = kube.cli("scale")
    assert again.returncode == 0 and "nothing to add" in again.stdout, again.stdout
    assert kube.lab.ssh(server, "systemctl is-active k3s").stdout.strip() == "active"
    for agent in agents:
        # The stand-in agent only runs once the server accepted its token.
        assert kube.lab.ssh(agent, "systemctl is-active k3s-agent").stdout.strip() == "active"
    version = kube.lab.ssh(server, "/usr/local/bin/k3s --version").stdout
    assert "STAND-IN" in version


def test_node_configs_are_what_the_python_renderer_makes_and_root_only(kube: KubeLab) -> None:
    loaded = load_site(kube.site_file)
    settings = kubernetes_settings(loaded, {})
    assert settings is not None
    plans = plan_nodes(loaded.site, settings)
    secrets = cluster_secrets(kube.state, create=False)
    for name in kube.node_names():
        config = kube.lab.ssh(name, "stat -c '%a %U' /etc/rancher/k3s/config.yaml; "
                                    "cat /etc/rancher/k3s/config.yaml").stdout
        mode, text = config.split("\n", 1)
        assert mode == "600 root"
        assert text == node_config(settings, name, plans[name], secrets)
        assert "container-runtime-endpoint: \"unix:///run/containerd/containerd.sock\"" in text


def test_kubeconfig_reaches_the_state_folder_mode_0600_with_the_api_endpoint(
    kube: KubeLab,
) -> None:
    kubeconfig = kube.state.root / "kubeconfig"
    assert oct(kubeconfig.stat().st_mode & 0o777) == "0o600"
    server_ip = kube.lab.nodes[SERVER].address
    assert f"server: https://{server_ip}:6443" in kubeconfig.read_text()


def test_second_deploy_changes_nothing_and_restarts_nothing(kube: KubeLab) -> None:
    pids = _main_pids(kube)
    assert all(pid.strip() not in ("", "0") for pid in pids.values()), pids

    outcome = kube.deploy(requested=["kubernetes"])

    [result] = outcome.results
    assert result.ok and result.changed == 0, [c.task for c in result.changes]
    assert _main_pids(kube) == pids


def test_busy_port_stops_preflight_naming_it_before_any_change(kube: KubeLab) -> None:
    # A foreign listener on 10250 of an agent whose k3s-agent is stopped for the test.
    agent = kube.node_names()[1]
    address = kube.lab.nodes[1].address
    kube.lab.ssh(agent, "systemctl stop k3s-agent")
    listener = kube.lab.ssh(
        agent, f"nohup python3 -c \"import socket,time; s=socket.socket(); "
               f"s.bind(('{address}', 10250)); s.listen(); time.sleep(600)\" "
               ">/dev/null 2>&1 & echo $!").stdout.strip()
    try:
        time.sleep(1)
        before = _digests(kube)
        with pytest.raises(DeployFailed) as failed:
            kube.deploy(requested=["kubernetes"])
        assert "preflight stopped the run before any change" in str(failed.value)
        assert "port(s) 10250" in str(failed.value)
        assert _digests(kube) == before
    finally:
        kube.lab.ssh(agent, f"kill {listener}", check=False)
        kube.lab.ssh(agent, "systemctl start k3s-agent")


def test_the_cluster_token_is_in_no_output_artifact_or_state_file(kube: KubeLab) -> None:
    secrets = cluster_secrets(kube.state, create=False)
    assert secrets["kubernetes_token"]
    vault = (kube.state.root / "vault.yaml").read_bytes()
    assert vault.startswith(b"$ANSIBLE_VAULT")
    assert oct((kube.state.root / "vault.yaml").stat().st_mode & 0o777) == "0o600"
    for secret in secrets.values():
        assert not [text for text in kube.outputs if secret in text]
        leaks = [str(path) for path in kube.state.root.rglob("*")
                 if path.is_file() and secret.encode() in path.read_bytes()]
        assert leaks == []


def test_validate_names_a_stand_in_certificate_about_to_lapse_on_the_server_only(
    kube: KubeLab, tmp_path: Path
) -> None:
    server = kube.node_names()[SERVER]
    tls = "/var/lib/rancher/k3s/server/tls"
    now = dt.datetime.now(dt.UTC)
    for name, days in (("client-ca.crt", 3650), ("serving-kube-apiserver.crt", 10)):
        # A STAND-IN for a certificate k3s writes (the stand-in release writes none).
        text = self_signed_pem(name, now + dt.timedelta(days=days))
        kube.lab.ssh(server, f"mkdir -p {tls} && printf %s {shlex.quote(text)} > {tls}/{name}")
    suite = tmp_path / "kube-certs.yaml"
    suite.write_text(yaml.safe_dump({"name": "kube-certs", "checks": [
        {"id": "kubernetes.certs.expiry", "mandatory": True}]}))
    target = dataclasses.replace(build_target(load_site(kube.site_file), kube.state),
                                 blueprint_layers=["kubernetes"], suite_file=suite)

    report = run_validation(target, tmp_path / "soon")

    results = {result.node: result for result in report.results}
    assert results[server].status is Status.FAILED
    assert results[server].message.startswith(
        f"seen: {tls}/serving-kube-apiserver.crt: expires on "), results[server].message
    assert "client-ca" not in results[server].message
    for agent in kube.node_names()[1:]:
        assert results[agent].status is Status.SKIPPED
        assert results[agent].message.startswith("not a control plane")
    assert report.exit_code is ExitCode.VALIDATION_FAILED

    kube.lab.ssh(server, f"rm {tls}/serving-kube-apiserver.crt")
    renewed = run_validation(target, tmp_path / "renewed")

    assert {r.node: r.status for r in renewed.results}[server] is Status.PASSED
    assert renewed.exit_code is ExitCode.OK


def test_reset_removes_what_the_role_installed(kube: KubeLab) -> None:
    done = kube.reset()

    assert done.returncode == 0, done.stderr
    for name in kube.node_names():
        left = kube.lab.ssh(
            name, "ls -d /usr/local/bin/k3s /etc/rancher/k3s /var/lib/rancher/k3s "
                  "/etc/systemd/system/k3s.service /etc/systemd/system/k3s-agent.service "
                  "2>/dev/null; systemctl is-active k3s k3s-agent", check=False).stdout
        assert left.split() == ["inactive", "inactive"], (name, left)
    assert not (kube.state.root / "kubeconfig").exists()
    assert "kubernetes_token" not in cluster_secrets(kube.state, create=False)
    # The runtime layer is untouched.
    for name in kube.node_names():
        assert kube.lab.ssh(name, "systemctl is-active containerd").stdout.strip() == "active"


def test_reset_without_yes_off_a_terminal_is_refused(kube: KubeLab) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "blueprint.cli", "reset", str(kube.site_file)],
        capture_output=True, text=True, timeout=60, check=False, stdin=subprocess.DEVNULL)
    assert done.returncode == 2
    assert "confirm with --yes" in done.stderr
