"""The fault table: each real per-node fault fails exactly its checks, on exactly its node.

Runs on the session's deployed lab (after test_site_end_to_end; deploys the lab blueprint
itself when run alone). Faults are injected three at a time, one per node, so that a run
answers for three faults at once; each round compares the whole set of failed (check, node)
pairs with the table's, then repairs every fault it injected, in `finally`. A last run proves
the repaired site green again. The hardware fault is the one a container cannot have on its
own (its CPUs and memory are the host's): the node gets a node role whose profile it does
not meet, the blueprint's profile for that role read as a real site would state it.
"""

from __future__ import annotations

import io
import shlex
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from rich.console import Console

from blueprint.deploy import deploy, deployed_layers
from blueprint.errors import ExitCode
from blueprint.loader import LoadedSite, load_site
from blueprint.models.blueprint import HardwareProfile
from blueprint.state import StateDir
from blueprint.validate import Status, ValidationReport, run_validation
from blueprint.validation import build_target

if TYPE_CHECKING:
    from tests.integration.conftest import LabHandle

pytestmark = pytest.mark.lab
# After test_site_end_to_end (20) left the lab deployed, before the molecule tests (30).
LAB_STAGE = 21

FAULT_PORT = 18080
SSH_FAULT_FILE = "/etc/ssh/sshd_config.d/00-aaa-validation-fault.conf"
# A package of os_baseline's list that the lab's mirror has in two versions (bookworm and
# bookworm-security), so that it can be held at the other one.
HELD_CANDIDATES = ("sudo", "curl", "openssh-server")


@dataclass
class Fault:
    """One fault: how to make it on a node, how to undo it, what validation must say."""

    name: str
    inject: str
    repair: str
    checks: set[str]
    reason: str
    # Filled by inject: what its command printed ({out} in `repair`).
    out: str = field(default="", init=False)


def _other_version(lab: LabHandle, node: str) -> tuple[str, str]:
    """A package installed on the node and another version of it the mirror has."""
    for package in HELD_CANDIDATES:
        installed = lab.ssh(node, f"dpkg-query -W -f='${{Version}}' {package}",
                            check=False).stdout.strip()
        versions = lab.ssh(node, f"apt-cache madison {package}").stdout
        others = [line.split("|")[1].strip() for line in versions.splitlines()
                  if line.count("|") >= 2 and line.split("|")[1].strip() != installed]
        if installed and others:
            return package, others[0]
    pytest.skip(f"none of {', '.join(HELD_CANDIDATES)} has a second version in the mirror")


def fault_table(lab: LabHandle, node: str) -> dict[str, Fault]:
    held, version = _other_version(lab, node)
    faults = [
        Fault("ip_forward off", "sysctl -qw net.ipv4.ip_forward=0",
              "sysctl -qw net.ipv4.ip_forward=1",
              {"os.sysctl.net_ipv4_ip_forward"}, "net.ipv4.ip_forward = 0"),
        Fault("bridge-nf-call-iptables off", "sysctl -qw net.bridge.bridge-nf-call-iptables=0",
              "sysctl -qw net.bridge.bridge-nf-call-iptables=1",
              {"os.sysctl.net_bridge_bridge_nf_call_iptables"},
              "net.bridge.bridge-nf-call-iptables = 0"),
        Fault("containerd stopped", "systemctl stop containerd", "systemctl start containerd",
              {"runtime.containerd.active", "runtime.cri.socket", "runtime.cri.plugin_loaded"},
              "containerd.service inactive"),
        Fault("CRI socket moved",
              "mv /run/containerd/containerd.sock /run/containerd/containerd.sock.moved",
              "mv /run/containerd/containerd.sock.moved /run/containerd/containerd.sock",
              {"runtime.cri.socket", "runtime.cri.plugin_loaded"},
              "no socket at /run/containerd/containerd.sock"),
        # The server's PID is what the repair stops, never a process found by name.
        Fault("a port opened",
              f"nohup python3 -m http.server --directory /tmp {FAULT_PORT} "
              "</dev/null >/dev/null 2>&1 & echo $!",
              "kill {out}", {"security.ports.allowed"},
              f"{FAULT_PORT}/tcp on 0.0.0.0 (python3)"),
        Fault("SSH password login on",
              f"echo 'PasswordAuthentication yes' > {SSH_FAULT_FILE} && systemctl reload ssh",
              f"rm {SSH_FAULT_FILE} && systemctl reload ssh",
              {"security.ssh.password_auth_off"}, "passwordauthentication yes"),
        Fault("SSH X11 forwarding on (lynis)",
              f"echo 'X11Forwarding yes' > {SSH_FAULT_FILE} && systemctl reload ssh",
              f"rm {SSH_FAULT_FILE} && systemctl reload ssh",
              {"security.lynis.tests"}, "SSH-7408:X11Forwarding"),
        Fault("a required package removed", "apt-get remove -y -q curl",
              "apt-get install -y -q curl", {"os.packages.installed"},
              "not installed: curl"),
        Fault("a package held at the wrong version",
              f"apt-get install -y -q --allow-downgrades {held}={shlex.quote(version)} "
              f"&& apt-mark hold {held}",
              f"apt-mark unhold {held} && apt-get install -y -q {held}",
              {"os.packages.held"}, f"{held} held at {version}"),
    ]
    return {fault.name: fault for fault in faults}


# One fault per node per run: the three nodes of a round carry independent faults.
ROUNDS = [
    ("ip_forward off", "bridge-nf-call-iptables off", "containerd stopped"),
    ("CRI socket moved", "a port opened", "SSH password login on"),
    ("a required package removed", "a package held at the wrong version",
     "SSH X11 forwarding on (lynis)"),
]
HARDWARE_CHECKS = {"hardware.cpu.count", "hardware.memory.size", "hardware.disk.size",
                   "hardware.nic.count"}


@pytest.fixture(scope="module")
def deployed(lab: LabHandle) -> Iterator[LoadedSite]:
    """The lab site, deployed (a no-op when an earlier module already did it)."""
    loaded = load_site(lab.site_file)
    state = StateDir.for_site(loaded.site_dir)
    if not {layer.name for layer in loaded.blueprint.layers} <= set(deployed_layers(state)):
        deploy(loaded, state, Console(file=io.StringIO()))
    yield loaded


def _validate(loaded: LoadedSite, tmp_path: Path, name: str) -> ValidationReport:
    state = StateDir.for_site(loaded.site_dir, tmp_path / "state")
    return run_validation(build_target(loaded, state), tmp_path / name)


def _inject(lab: LabHandle, node: str, fault: Fault, injected: list[tuple[str, Fault]]) -> None:
    fault.out = lab.ssh(node, fault.inject, timeout=300).stdout.strip()
    injected.append((node, fault))


def _repair_all(lab: LabHandle, injected: list[tuple[str, Fault]]) -> None:
    problems = []
    for node, fault in reversed(injected):
        done = lab.ssh(node, fault.repair.format(out=fault.out), check=False, timeout=300)
        if done.returncode != 0:
            problems.append(f"{node}: repair of {fault.name}: {done.stderr.strip()}")
    injected.clear()
    assert problems == []


def _assert_exactly(report: ValidationReport, expected: dict[str, Fault]) -> None:
    failed = report.failed_checks() | report.errored_checks()
    wanted = {(check, node) for node, fault in expected.items() for check in fault.checks}
    assert failed == wanted, {node: fault.name for node, fault in expected.items()}
    assert report.exit_code is ExitCode.VALIDATION_FAILED
    for node, fault in expected.items():
        messages = [r.message for r in report.results
                    if r.node == node and (r.check_id, node) in wanted]
        assert all(m.startswith("seen: ") for m in messages), messages
        # The fault's own words are in the message of the check that looks at it.
        assert any(fault.reason in m for m in messages), (fault.reason, messages)
    assert {r.status for r in report.results if (r.check_id, r.node) in wanted} == {
        Status.FAILED}


@pytest.mark.parametrize("round_faults", ROUNDS, ids=[" + ".join(r) for r in ROUNDS])
def test_each_fault_fails_exactly_its_checks_on_its_node(
    lab: LabHandle, deployed: LoadedSite, tmp_path: Path, round_faults: tuple[str, ...]
) -> None:
    nodes = [node.name for node in lab.nodes]
    table = fault_table(lab, nodes[1])
    expected = {node: table[name] for node, name in zip(nodes, round_faults, strict=True)}
    injected: list[tuple[str, Fault]] = []
    try:
        for node, fault in expected.items():
            _inject(lab, node, fault, injected)
        report = _validate(deployed, tmp_path, "faulty")
    finally:
        _repair_all(lab, injected)

    _assert_exactly(report, expected)


def test_a_hardware_profile_the_node_does_not_meet(
    lab: LabHandle, deployed: LoadedSite, tmp_path: Path
) -> None:
    # The node gains the storage role; the blueprint's storage profile asks for more than
    # this machine has. The other nodes keep their roles and profiles.
    node = lab.nodes[2].name
    big = HardwareProfile(min_cpus=4096, min_memory_gib=65536, min_disk_gib=10**7, min_nics=64)
    blueprint = deployed.blueprint.model_copy(
        update={"hardware": {**deployed.blueprint.hardware, "storage": big}})
    nodes = [n.model_copy(update={"roles": [*n.roles, "storage"]}) if n.name == node else n
             for n in deployed.site.nodes]
    site = deployed.site.model_copy(update={"nodes": nodes})
    loaded = LoadedSite(site, blueprint, deployed.site_file, deployed.blueprint_file)

    report = _validate(loaded, tmp_path, "hardware")

    fault = Fault("hardware profile not met", "", "", HARDWARE_CHECKS, "(profile of ")
    _assert_exactly(report, {node: fault})
    messages = {r.check_id: r.message for r in report.results if r.node == node}
    assert "expected: at least 4096 CPUs (profile of" in messages["hardware.cpu.count"]
    assert "storage)" in messages["hardware.memory.size"]


def test_repaired_site_is_green_again(deployed: LoadedSite, tmp_path: Path) -> None:
    report = _validate(deployed, tmp_path, "repaired")

    assert report.failed_checks() | report.errored_checks() == set()
    assert report.exit_code is ExitCode.OK

