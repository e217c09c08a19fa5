"""The main job on real lab nodes: plan, deploy, idempotence, drift, validate, faults, host keys.

One ordered story on the session's lab. "Changed nothing" is measured: a node's overlay upper
folder is exactly its change from the image, so its digest is compared before and after.
"""

from __future__ import annotations

import io
import os
import re
import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import yaml
from rich.console import Console

from blueprint.deploy import DeployOutcome, deploy
from blueprint.errors import ExitCode
from blueprint.inventory import secret_variables
from blueprint.lab import overlay_digest
from blueprint.loader import load_site
from blueprint.secrets import MASK, PASSWORD_ENV, load_site_secrets
from blueprint.state import RunHistory, StateDir

if TYPE_CHECKING:
    from tests.integration.conftest import LabHandle

pytestmark = pytest.mark.lab

# After the lab tests and the checks on fresh nodes, before the tests of single roles.
LAB_STAGE = 20

VAULT_PASSWORD = "correct horse battery staple"
CANARY = f"canary-{secrets.token_hex(12)}"
APT_PROXY_FILE = "/etc/apt/apt.conf.d/90blueprint-proxy"


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, PASSWORD_ENV: VAULT_PASSWORD}
    return subprocess.run([sys.executable, "-m", "blueprint.cli", *args], capture_output=True,
                          text=True, env=env, check=False, timeout=900)


def digests(lab: LabHandle) -> dict[str, str]:
    return {node.name: overlay_digest(lab.name, node.name) for node in lab.nodes}


def main_pids(lab: LabHandle) -> dict[str, dict[str, str]]:
    """MainPID of every running service, per node."""
    command = ("for unit in $(systemctl list-units --type=service --state=running "
               "--no-legend --plain | awk '{print $1}'); do "
               "echo \"$unit $(systemctl show -p MainPID --value $unit)\"; done")
    pids = {}
    for node in lab.nodes:
        lines = lab.ssh(node, command).stdout.split("\n")
        pids[node.name] = dict(line.split(" ", 1) for line in lines if line.strip())
    return pids


def changes(outcome: DeployOutcome) -> set[tuple[str, str, str]]:
    return {(result.playbook, change.node, change.task) for result in outcome.results
            for change in result.changes}


@pytest.fixture(scope="module")
def site(lab: LabHandle) -> Iterator[Path]:
    """The lab's site with a registry mirror whose password, the canary, is in the vault.

    Afterwards the site file is restored, the vault removed and the runtime layer deployed
    again, so the nodes hold no credentials and later modules see the lab as it was.
    """
    original = lab.site_file.read_text()
    mirror_host = f"{lab.state.bridge_ip}:5000"
    data = yaml.safe_load(original)
    data["artifacts"]["registry_mirrors"] = [
        {"registry": "docker.io", "endpoints": [f"http://{mirror_host}"]}
    ]
    lab.site_file.write_text(yaml.safe_dump(data, sort_keys=False))
    secrets_file = lab.site_dir / "secrets.yaml"
    secrets_file.write_text(yaml.safe_dump({
        "registry_password": CANARY,
        "registry_credentials": {mirror_host: {"username": "lab-puller", "password": CANARY}},
    }))
    password_file = lab.site_dir / ".vault-pass"
    password_file.write_text(VAULT_PASSWORD)
    ansible_vault = Path(sys.executable).parent / "ansible-vault"
    subprocess.run([str(ansible_vault), "encrypt", "--vault-password-file", str(password_file),
                    str(secrets_file)], check=True, capture_output=True)
    password_file.unlink()
    os.environ[PASSWORD_ENV] = VAULT_PASSWORD
    try:
        yield lab.site_file
    finally:
        os.environ.pop(PASSWORD_ENV, None)
        secrets_file.unlink()
        lab.site_file.write_text(original)
        loaded = load_site(lab.site_file)
        deploy(loaded, StateDir.for_site(loaded.site_dir), Console(file=io.StringIO()),
               requested=["container_runtime"])


@pytest.fixture(scope="module")
def outputs() -> list[str]:
    """Everything the product printed in this module, searched for the canary at the end."""
    return []


def api_deploy(site: Path, *, check: bool = False) -> DeployOutcome:
    """A deploy as the CLI runs it, the vault's secrets passed for this run only."""
    loaded = load_site(site)
    state = StateDir.for_site(loaded.site_dir)
    secret_vars = secret_variables(loaded, load_site_secrets(loaded.site_dir))
    return deploy(loaded, state, Console(file=io.StringIO()), check=check,
                  secret_vars=secret_vars)


def test_plan_on_fresh_nodes_lists_changes_and_changes_nothing(
    lab: LabHandle, site: Path, outputs: list[str]
) -> None:
    before = digests(lab)

    done = run_cli("plan", str(site))
    outputs.extend([done.stdout, done.stderr])

    assert done.returncode == ExitCode.OK, done.stderr
    assert "Ensure containerd is installed." in done.stdout
    assert "change(s) would be made" in done.stdout
    # The credentials fragment is listed without a diff: nothing had to be masked.
    assert "Ensure the registry credentials fragment is present." in done.stdout
    assert MASK not in done.stdout
    assert digests(lab) == before


def test_first_deploy_converges_every_node(lab: LabHandle, site: Path,
                                           outputs: list[str]) -> None:
    done = run_cli("deploy", str(site))
    outputs.extend([done.stdout, done.stderr])

    assert done.returncode == ExitCode.OK, done.stderr
    assert "deploy: ok" in done.stdout
    history = RunHistory(StateDir.for_site(site.parent))
    last = history.runs(1)[0]
    rows = history.node_results(last["id"])
    history.close()
    assert last["verb"] == "deploy" and last["status"] == "ok" and last["exit_code"] == 0
    assert {(row["layer"], row["node"]) for row in rows} == {
        (layer, node.name) for layer in ("os_baseline", "container_runtime", "gpu")
        for node in lab.nodes
    }
    assert all(row["failed"] == 0 and row["unreachable"] == 0 for row in rows)


def test_registry_credentials_reach_containerd_readable_by_root_only(lab: LabHandle,
                                                                    site: Path) -> None:
    for node in lab.nodes:
        config = lab.ssh(node, "cat /etc/containerd/config.toml").stdout
        mode = lab.ssh(node, "stat -c %a /etc/containerd/config.toml").stdout.strip()
        plugins = lab.ssh(node, "ctr plugins ls").stdout

        assert f'password = "{CANARY}"' in config, node.name
        assert mode == "600", node.name
        assert re.search(r"io\.containerd\.grpc\.v1\s+cri\s+\S+\s+ok", plugins), node.name


def test_second_deploy_changes_nothing_and_restarts_nothing(lab: LabHandle, site: Path) -> None:
    before, pids_before = digests(lab), main_pids(lab)

    outcome = api_deploy(site)

    assert changes(outcome) == set()
    assert outcome.changed == 0
    assert main_pids(lab) == pids_before
    assert digests(lab) == before


def test_deploy_reports_exactly_the_one_drifted_setting(lab: LabHandle, site: Path) -> None:
    drifted = lab.nodes[1]
    lab.ssh(drifted, f"echo '// edited by hand' >> {APT_PROXY_FILE}")

    outcome = api_deploy(site)

    assert changes(outcome) == {
        ("os_baseline", drifted.name, "Ensure apt uses the site's proxy or mirror.")
    }
    assert "edited by hand" not in lab.ssh(drifted, f"cat {APT_PROXY_FILE}").stdout


def test_validate_passes_on_the_deployed_site(site: Path, outputs: list[str]) -> None:
    done = run_cli("validate", str(site))
    outputs.extend([done.stdout, done.stderr])

    assert done.returncode == ExitCode.OK, done.stdout + done.stderr
    assert "verdict: passed" in done.stdout
    report = Path(done.stdout.split("report: ", 1)[1].split()[0])
    assert report.is_file() and report.name == "report.html"


def test_validate_names_exactly_the_broken_checks_on_the_broken_node(
    lab: LabHandle, site: Path, outputs: list[str]
) -> None:
    broken = lab.nodes[2]
    lab.ssh(broken, "sysctl -qw net.ipv4.ip_forward=0 && systemctl stop containerd")
    try:
        done = run_cli("validate", str(site))
        outputs.extend([done.stdout, done.stderr])
    finally:
        lab.ssh(broken, "sysctl -qw net.ipv4.ip_forward=1 && systemctl start containerd")

    assert done.returncode == ExitCode.VALIDATION_FAILED
    failed = {line.split("failed: ", 1)[1] for line in done.stdout.splitlines()
              if line.strip().startswith("failed: ")}
    assert failed == {
        f"{check} on {broken.name}" for check in (
            "os.sysctl.net_ipv4_ip_forward",
            "runtime.containerd.active",
            "runtime.cri.socket",
            "runtime.cri.plugin_loaded",
        )
    }
    assert "verdict: failed" in done.stdout


def test_a_replaced_host_key_makes_deploy_refuse_to_connect(
    lab: LabHandle, site: Path, outputs: list[str]
) -> None:
    node = lab.nodes[0]
    keys = "/etc/ssh/ssh_host_*"
    lab.ssh(node, f"mkdir -p /root/keys.saved && cp -a {keys} /root/keys.saved/")
    lab.ssh(node, f"rm -f {keys} && ssh-keygen -A -q && systemctl restart ssh")
    before = digests(lab)
    try:
        done = run_cli("deploy", str(site))
        outputs.extend([done.stdout, done.stderr])
        after = digests(lab)
    finally:
        # Put the pinned key back. Only this test's clean-up connects without checking the
        # host key: it is the one connection that knows the key was replaced on purpose.
        unchecked = ["ssh", "-i", str(lab.state.key_file), "-o", "StrictHostKeyChecking=no",
                     "-o", "UserKnownHostsFile=/dev/null", "-o", "BatchMode=yes",
                     f"root@{node.address}",
                     "cp -a /root/keys.saved/* /etc/ssh/ && rm -r /root/keys.saved && "
                     "systemctl restart ssh"]
        subprocess.run(unchecked, check=True, capture_output=True, timeout=60)
        lab.ssh(node, "true")

    assert done.returncode == ExitCode.DEPLOY_FAILED
    assert done.stderr.splitlines() == [
        f"error: node {node.name} ({node.address}): host key does not match the pinned one; "
        "if the node was reinstalled, check its new key and update known_hosts"
    ]
    assert after == before


def test_validate_through_a_bastion_goes_through_it(
    lab: LabHandle, site: Path, outputs: list[str]
) -> None:
    bastion, behind = lab.nodes[0], lab.nodes[1]
    data = yaml.safe_load(site.read_text())
    data["ssh"]["bastion"] = f"root@{bastion.address}"
    bastion_site = site.with_name("site-bastion.yaml")
    bastion_site.write_text(yaml.safe_dump(data, sort_keys=False))
    try:
        done = run_cli("validate", str(bastion_site), "--layer", "security")
        outputs.extend([done.stdout, done.stderr])
    finally:
        bastion_site.unlink()

    assert done.returncode == ExitCode.OK, done.stdout + done.stderr
    journal = lab.ssh(behind, "journalctl -u ssh --since '-5min' --no-pager").stdout
    assert f"Accepted publickey for root from {bastion.address}" in journal


def test_the_canary_secret_is_nowhere(site: Path, outputs: list[str]) -> None:
    assert outputs, "the earlier steps recorded no output"
    for secret in (CANARY, VAULT_PASSWORD):
        assert not [text for text in outputs if secret in text], secret
        state = site.parent / ".state"
        leaks = [str(path) for path in state.rglob("*")
                 if path.is_file() and secret.encode() in path.read_bytes()]
        assert leaks == [], secret
