"""The validation checks against real lab nodes (systemd-nspawn containers), over SSH.

Uses the session fixture `lab` (tests/integration/conftest.py): `.name`, `.site_dir` (with
`lab_ed25519` and `known_hosts`) and `.nodes` (each with `.name` and `.address`).
"""

from __future__ import annotations

import dataclasses
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from blueprint.errors import ExitCode
from blueprint.loader import load_site
from blueprint.state import StateDir
from blueprint.validate import (
    NodeTarget,
    Status,
    ValidationReport,
    ValidationTarget,
    run_validation,
)
from blueprint.validation import build_target

pytestmark = pytest.mark.lab
# Run before any deploy changes the shared lab's nodes (see tests/integration/conftest.py).
LAB_STAGE = 10

SUITES = Path(__file__).resolve().parents[2] / "validation" / "suites"

# What a lab node is before any role ran: Debian minbase with sshd, no containerd.
FRESH_FAILURES_PER_NODE = {
    "os.sysctl.net_ipv4_ip_forward",
    "os.journald_limit",
    "os.packages.installed",
    "security.ssh.password_auth_off",
    "security.lynis.hardening_index",
    "security.lynis.tests",
    "runtime.containerd.active",
    "runtime.containerd.enabled",
    "runtime.containerd.systemd_cgroup",
    "runtime.cri.socket",
    "runtime.cri.plugin_loaded",
}
# Owned by the host kernel when the node is a container: skipped, never passed.
HOST_OWNED = {
    "os.sysctl.vm_overcommit_memory",
    "os.sysctl.kernel_panic",
    "os.sysctl.kernel_panic_on_oops",
    "os.swap_off",
    "os.time_sync",
}


def lab_target(lab: Any, tmp_path: Path, extra: list[NodeTarget] | None = None) -> ValidationTarget:
    """The product's own ValidationTarget for the lab site, its check layers set to os/runtime.

    `extra` adds nodes the site does not have (an unreachable address, say).
    """
    loaded = load_site(lab.site_file)
    target = build_target(loaded, StateDir.for_site(loaded.site_dir, tmp_path / "state"))
    return dataclasses.replace(target, blueprint_layers=["os", "security", "runtime"],
                               nodes=[*target.nodes, *(extra or [])])


def _deployed(target: ValidationTarget) -> list[str]:
    """Nodes where containerd is installed: a role already ran on them."""
    deployed = []
    for node in target.nodes:
        probe = ["ssh", "-F", str(target.ssh_config), node.name, "test -e /usr/bin/containerd"]
        if subprocess.run(probe, capture_output=True, timeout=30).returncode == 0:
            deployed.append(node.name)
    return deployed


@pytest.fixture(scope="module")
def fresh_run(lab: Any, tmp_path_factory: pytest.TempPathFactory) -> ValidationReport:
    tmp_path = tmp_path_factory.mktemp("validate")
    target = lab_target(lab, tmp_path)
    deployed = _deployed(target)
    assert not deployed, f"lab nodes {', '.join(deployed)} were deployed by an earlier test"
    started = time.monotonic()
    report = run_validation(target, tmp_path / "run", include_optional=True)
    print(f"validation of {len(target.nodes)} nodes took {time.monotonic() - started:.1f} s")
    return report


def test_fresh_nodes_fail_exactly_the_undeployed_checks(
    lab: Any, fresh_run: ValidationReport
) -> None:
    names = [n.name for n in lab.nodes]
    assert fresh_run.failed_checks() == {(c, n) for c in FRESH_FAILURES_PER_NODE for n in names}
    assert fresh_run.errored_checks() == set()
    assert fresh_run.exit_code is ExitCode.VALIDATION_FAILED


def test_host_owned_settings_are_skipped_with_the_reason(
    lab: Any, fresh_run: ValidationReport
) -> None:
    skipped = [r for r in fresh_run.results if r.status is Status.SKIPPED]
    assert {r.check_id for r in skipped} == HOST_OWNED
    assert all(r.message.startswith("host-owned in a container") for r in skipped)


def test_failures_carry_command_and_output(fresh_run: ValidationReport) -> None:
    failure = next(
        r for r in fresh_run.results if r.check_id == "runtime.containerd.systemd_cgroup"
    )
    assert failure.message.startswith("seen: containerd config dump failed")
    assert failure.commands[0].command == "containerd config dump"
    assert "not found" in failure.commands[0].stderr
    html = fresh_run.paths.html.read_text()
    assert "$ containerd config dump" in html


def test_unreachable_node_errors_on_every_check(lab: Any, tmp_path: Path) -> None:
    # An address on the lab's subnet where nothing answers.
    first = lab.nodes[0].address.rsplit(".", 1)[0]
    ghost = NodeTarget("ghost", f"{first}.250", "root", ["worker"])
    target = lab_target(lab, tmp_path, extra=[ghost])

    report = run_validation(target, tmp_path / "run", layers=["security"])

    ghost_results = [r for r in report.results if r.node == "ghost"]
    assert {r.status for r in ghost_results} == {Status.ERROR}
    assert all(r.message.startswith("node unreachable") for r in ghost_results)
    assert report.exit_code is ExitCode.VALIDATION_FAILED
