"""The runner: check selection, applicability, unreachable nodes, and the plugin's records."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import subprocess
import sys
from pathlib import Path

import pytest

from blueprint.errors import BadInput, ExitCode
from blueprint.validate.model import (
    NodeTarget,
    Status,
    SuiteCheck,
    ValidationTarget,
    Verdict,
    load_suite,
)
from blueprint.validate.runner import (
    NodeRun,
    is_applicable,
    list_checks,
    merge_results,
    node_context,
    pytest_command,
    run_validation,
    select_checks,
)

SUITE = Path(__file__).resolve().parents[3] / "validation" / "suites" / "lab.yaml"
EDGE_SUITE = SUITE.with_name("ai-edge.yaml")


def _target(
    tmp_path: Path, suite: Path = SUITE, layers: list[str] | None = None
) -> ValidationTarget:
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text("")
    config = tmp_path / "ssh_config"
    # Port 1 on loopback refuses at once: a node that is down.
    config.write_text(
        "Host n1 n2\n"
        "  HostName 127.0.0.1\n"
        "  Port 1\n"
        "  User root\n"
        f"  UserKnownHostsFile {known_hosts}\n"
        "  StrictHostKeyChecking yes\n"
        "  ControlMaster auto\n"
        f"  ControlPath {tmp_path}/cm-%n\n"
        "  ControlPersist 60\n"
    )
    return ValidationTarget(
        site_name="lab",
        blueprint_layers=layers if layers is not None else ["os", "runtime"],
        suite_file=suite,
        nodes=[
            NodeTarget("n1", "127.0.0.1", "root", ["worker"]),
            NodeTarget("n2", "127.0.0.1", "root", ["worker"]),
        ],
        ssh_config=config,
    )


@pytest.mark.parametrize(
    ("layer", "layers", "expected"),
    [
        ("os", ["os"], True),
        ("security", ["os"], True),
        ("security", ["runtime"], False),
        ("gpu", ["os", "runtime"], False),
    ],
)
def test_is_applicable(layer: str, layers: list[str], expected: bool) -> None:
    assert is_applicable(layer, layers) is expected


def test_select_checks_by_layer_and_id() -> None:
    suite = load_suite(SUITE)
    assert {c.layer for c in select_checks(suite, layers=["runtime"], checks=None)} == {"runtime"}
    chosen = select_checks(suite, layers=None, checks=["os.swap_off"])
    assert [c.id for c in chosen] == ["os.swap_off"]


@pytest.mark.parametrize(
    ("layers", "checks", "message"),
    [
        (None, ["os.nope"], "check os.nope is not in suite lab; use one of"),
        (["storage"], None, "layer storage has no check in suite lab; use one of"),
    ],
)
def test_select_unknown_is_bad_input(
    layers: list[str] | None, checks: list[str] | None, message: str
) -> None:
    with pytest.raises(BadInput, match=message):
        select_checks(load_suite(SUITE), layers=layers, checks=checks)


def test_merge_marks_missing_and_not_applicable(tmp_path: Path) -> None:
    target = _target(tmp_path, EDGE_SUITE, layers=["os", "runtime", "kubernetes"])
    suite = load_suite(EDGE_SUITE)
    selected = [
        c
        for c in suite.checks
        if c.id in {"os.swap_off", "gpu.driver.loaded"}
    ]
    # An entry whose check is not written (not collected by the node's run).
    selected.append(SuiteCheck(id="kubernetes.unwritten", mandatory=True))
    applicable = [c for c in selected if c.layer != "gpu"]
    record = {
        "id": "os.swap_off",
        "outcome": "skipped",
        "duration": 0.1,
        "message": "host-owned in a container (systemd-nspawn): swap",
        "commands": [],
    }
    runs = {
        "n1": NodeRun("n1", True, {"os.swap_off": record}, {"os.swap_off"}, "no result recorded"),
        "n2": NodeRun("n2", False, problem="node unreachable: Connection refused"),
    }

    results = {(r.check_id, r.node): r for r in merge_results(target, selected, applicable, runs)}

    assert results["os.swap_off", "n1"].status is Status.SKIPPED
    assert results["gpu.driver.loaded", "n1"].status is Status.NOT_APPLICABLE
    assert "layer 'gpu' is not deployed" in results["gpu.driver.loaded", "n1"].message
    assert results["kubernetes.unwritten", "n1"].status is Status.ERROR
    assert "no check with this id exists" in results["kubernetes.unwritten", "n1"].message
    assert results["os.swap_off", "n2"].status is Status.ERROR
    assert results["gpu.driver.loaded", "n2"].status is Status.NOT_APPLICABLE


def test_unreachable_nodes_error_on_every_check(tmp_path: Path) -> None:
    target = _target(tmp_path, EDGE_SUITE)
    report = run_validation(target, tmp_path / "run", include_optional=True,
                            today=dt.date(2026, 12, 3))

    assert report.verdict is Verdict.FAILED
    assert report.exit_code is ExitCode.VALIDATION_FAILED
    deployed = {"os", "security", "runtime"}
    lab_ids = {c.id for c in load_suite(EDGE_SUITE).checks if c.layer in deployed}
    assert report.errored_checks() == {(c, n) for c in lab_ids for n in ("n1", "n2")}
    assert report.failed_checks() == set()
    not_applicable = report.by_status(Status.NOT_APPLICABLE)
    assert {c for c, _ in not_applicable} == {
        c.id for c in load_suite(EDGE_SUITE).checks if c.id not in lab_ids
    }
    error = next(r for r in report.results if r.status is Status.ERROR)
    assert error.message.startswith("node unreachable:")
    assert error.commands[0].command.startswith("ssh -F ")
    assert {p.name for p in report.paths.junit} >= {"junit-os.xml", "junit-runtime.xml"}
    assert json.loads(report.paths.json.read_text())["verdict"] == "failed"
    assert report.paths.html.exists()


# The plugin, run the way the runner runs it, against this machine (testinfra local backend).
FAKE_CHECKS = """
import time
import pytest
from blueprint.validate.plugin import expect


@pytest.mark.check("os.fake_pass")
def test_pass(node):
    node.run("echo token = hunter2")


@pytest.mark.check("os.fake_fail")
def test_fail(node):
    seen = node.run("echo 0").stdout.strip()
    expect(seen == "1", seen=f"value {seen}", expected="value 1")


@pytest.mark.check("os.fake_error")
def test_error(node):
    raise RuntimeError("ssh: connect to host n1: Connection refused")


@pytest.mark.check("os.fake_slow")
def test_slow(node):
    time.sleep(5)


@pytest.mark.check("os.fake_skip")
def test_skip(node):
    pytest.skip("host-owned in a container (test)")


@pytest.mark.check("os.fake_unselected")
def test_unselected(node):
    pass
"""


def _run_plugin(
    tmp_path: Path, selection: dict[str, dict[str, object]]
) -> dict[str, dict[str, object]]:
    checks = tmp_path / "checks"
    checks.mkdir()
    (checks / "test_fake.py").write_text(FAKE_CHECKS)
    (checks / "pytest.ini").write_text("[pytest]\n")
    select = tmp_path / "select.json"
    select.write_text(json.dumps(selection))
    out = tmp_path / "results.json"
    command = [
        sys.executable,
        "-m",
        "pytest",
        str(checks),
        "-c",
        str(checks / "pytest.ini"),
        "--rootdir",
        str(checks),
        "-p",
        "no:cacheprovider",
        "-p",
        "blueprint.validate.plugin",
        "--hosts=local://",
        f"--bp-select={select}",
        f"--bp-results={out}",
        "--bp-node=here",
    ]
    subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    data = json.loads(out.read_text())
    assert "os.fake_unselected" in data["collected"]
    return {r["id"]: r for r in data["results"]}


def test_plugin_records_each_outcome(tmp_path: Path) -> None:
    selection: dict[str, dict[str, object]] = {
        name: {} for name in ("os.fake_pass", "os.fake_fail", "os.fake_error", "os.fake_skip")
    }
    selection["os.fake_slow"] = {"timeout": 0.5}
    results = _run_plugin(tmp_path, selection)

    assert {k: v["outcome"] for k, v in results.items()} == {
        "os.fake_pass": "passed",
        "os.fake_fail": "failed",
        "os.fake_error": "error",
        "os.fake_slow": "error",
        "os.fake_skip": "skipped",
    }
    assert results["os.fake_fail"]["message"] == "seen: value 0; expected: value 1"
    assert results["os.fake_fail"]["commands"] == [
        {"command": "echo 0", "rc": 0, "stdout": "0\n", "stderr": ""}
    ]
    assert results["os.fake_pass"]["commands"][0]["stdout"] == "token = <redacted>\n"
    assert "Connection refused" in str(results["os.fake_error"]["message"])
    assert "timed out after 0.5 s" in str(results["os.fake_slow"]["message"])
    assert results["os.fake_skip"]["message"] == "host-owned in a container (test)"
    assert all(r["node"] == "here" for r in results.values())


def test_plugin_show_stopper_stops_the_node(tmp_path: Path) -> None:
    results = _run_plugin(tmp_path, {"os.fake_pass": {}, "os.fake_fail": {"show_stopper": True}})
    assert results["os.fake_fail"]["outcome"] == "failed"
    assert results["os.fake_pass"]["outcome"] == "skipped"
    assert "show-stopper os.fake_fail failed" in str(results["os.fake_pass"]["message"])


def test_optional_checks_run_only_when_asked() -> None:
    suite = load_suite(SUITE)
    optional = {c.id for c in suite.checks if not c.counts_for_verdict}
    assert optional  # the lab suite has optional checks

    default = {c.id for c in select_checks(suite, layers=None, checks=None,
                                           include_optional=False)}
    everything = {c.id for c in select_checks(suite, layers=None, checks=None,
                                              include_optional=True)}
    named = select_checks(suite, layers=None, checks=["os.journald_limit"],
                          include_optional=False)

    assert default == {c.id for c in suite.checks} - optional
    assert everything == {c.id for c in suite.checks}
    assert [c.id for c in named] == ["os.journald_limit"]


def test_list_says_per_check_whether_it_runs_and_why_not(tmp_path: Path) -> None:
    target = _target(tmp_path, EDGE_SUITE, layers=["hardware", "os", "security", "runtime"])

    rows = {row.check_id: row for row in list_checks(target)}

    assert [row.check_id for row in rows.values()] == [c.id for c in load_suite(EDGE_SUITE).checks]
    assert rows["os.swap_off"].applicable and rows["os.swap_off"].kind == "mandatory"
    assert not rows["os.journald_limit"].applicable
    assert rows["os.journald_limit"].reason == "optional: runs with --include-optional"
    nodes_ready = rows["kubernetes.cluster.nodes_ready"]
    assert not nodes_ready.applicable
    assert (nodes_ready.kind, nodes_ready.scope) == ("show-stopper", "cluster")
    assert nodes_ready.reason.startswith("layer 'kubernetes' is not deployed")
    assert rows["hardware.cpu.count"].applicable
    with_optional = {row.check_id: row for row in list_checks(target, include_optional=True)}
    assert with_optional["os.journald_limit"].applicable


def test_each_node_gets_its_context_file(tmp_path: Path) -> None:
    target = _target(tmp_path)
    target = dataclasses.replace(
        target,
        context={"packages": {"required": ["curl"], "pins": {}}},
        nodes=[dataclasses.replace(target.nodes[0], hardware={"min_cpus": 4, "roles": ["worker"]})],
    )
    suite = load_suite(SUITE)

    context = node_context(target, suite, target.nodes[0])

    assert context["node"] == "n1" and context["node_roles"] == ["worker"]
    assert context["hardware"] == {"min_cpus": 4, "roles": ["worker"]}
    assert context["packages"]["required"] == ["curl"]
    assert context["policy"]["listening_ports"] == ["22/tcp"]
    assert "SSH-7408:PermitRootLogin" in context["policy"]["lynis"]["must_pass"]
    command = pytest_command(target, target.nodes[0], tmp_path / "s.json", tmp_path / "r.json",
                             tmp_path, tmp_path)
    assert f"--bp-context={tmp_path / 'context-n1.json'}" in command
