"""Run a blueprint's validation suite against a site's nodes and decide the verdict.

Checks are pytest + testinfra functions in `validation/checks/`. Each node gets its own pytest
subprocess (in parallel threads), connected over SSH with the caller's client config; a small
plugin (`blueprint.validate.plugin`) records one result per check. The verdict is computed here
from those results, never from pytest's exit code.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import shlex
import subprocess
import sys
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from blueprint.errors import BadInput
from blueprint.proc import run_bounded
from blueprint.secrets import child_environment
from blueprint.validate.model import (
    AI_ENDPOINTS_ENV,
    CLUSTER,
    LAYER_DEPLOYED_BY,
    CheckResult,
    CommandRecord,
    NodeTarget,
    ReportPaths,
    Status,
    Suite,
    SuiteCheck,
    ValidationReport,
    ValidationTarget,
    load_suite,
)
from blueprint.validate.plugin import NOT_APPLICABLE
from blueprint.validate.report import write_outputs
from blueprint.validate.verdict import apply_waivers, compute_verdict, waiver_states

log = logging.getLogger(__name__)

CHECKS_DIR = Path(__file__).resolve().parents[2] / "validation" / "checks"
SSH_CONNECT_TIMEOUT = 10


@dataclass
class NodeRun:
    """What one node's pytest run left behind."""

    node: str
    reachable: bool
    results: dict[str, dict[str, Any]] = field(default_factory=dict)
    collected: set[str] = field(default_factory=set)
    problem: str = ""
    commands: list[CommandRecord] = field(default_factory=list)


def run_validation(
    target: ValidationTarget,
    out_dir: Path,
    *,
    layers: list[str] | None = None,
    checks: list[str] | None = None,
    include_optional: bool = False,
    previous: dict[str, Any] | None = None,
    run_id: str = "",
    checks_dir: Path = CHECKS_DIR,
    today: dt.date | None = None,
) -> ValidationReport:
    """Validate the target's nodes with its suite; write JUnit, JSON and HTML into `out_dir`.

    Optional checks run only with `include_optional` or when named in `checks`. `previous`
    is the summary.json of the site's previous run: the outputs then say what changed.
    """
    started = dt.datetime.now(dt.UTC)
    today = today or started.date()
    suite = load_suite(target.suite_file)
    selected = select_checks(
        suite, layers=layers, checks=checks, include_optional=include_optional
    )

    # A check of a layer this blueprint does not deploy is not applicable, never passed.
    applicable = [c for c in selected if is_applicable(c.layer, target.blueprint_layers)]
    log.info(
        "Validating site %s: %d checks on %d nodes (%d not applicable)",
        target.site_name,
        len(applicable),
        len(target.nodes),
        len(selected) - len(applicable),
    )

    out_dir.mkdir(parents=True, exist_ok=True)
    work_dir = out_dir / "nodes"
    work_dir.mkdir(exist_ok=True)
    node_checks = [c for c in applicable if not c.cluster_scoped]
    cluster_checks, unrunnable = _cluster_runnable(target, applicable)
    try:
        # The cluster's checks run on the controller while the nodes run theirs.
        with ThreadPoolExecutor(max_workers=1) as pool:
            cluster_future = pool.submit(
                _run_cluster, target, suite, cluster_checks, work_dir, checks_dir
            )
            runs = _run_nodes(target, suite, node_checks, work_dir, checks_dir)
            cluster_run = cluster_future.result()
    finally:
        _close_connections(target)
    if cluster_run is not None or unrunnable:
        runs[CLUSTER] = cluster_run or NodeRun(CLUSTER, True)
        runs[CLUSTER].results.update(unrunnable)

    results = merge_results(target, selected, applicable, runs)
    apply_waivers(results, target.waivers, today)
    verdict = compute_verdict(results)

    report = ValidationReport(
        site_name=target.site_name,
        suite_name=suite.name,
        started=started,
        finished=dt.datetime.now(dt.UTC),
        verdict=verdict,
        results=results,
        waivers=list(target.waivers),
        paths=ReportPaths(junit=[], json=out_dir / "summary.json", html=out_dir / "report.html"),
        run_id=run_id,
        include_optional=include_optional,
    )
    report.paths = write_outputs(
        report, waiver_states(results, target.waivers, today), out_dir, previous=previous
    )
    log.info("Validation of %s: %s (report %s)", target.site_name, verdict, report.paths.html)
    return report


def is_applicable(check_layer: str, blueprint_layers: Sequence[str]) -> bool:
    return LAYER_DEPLOYED_BY.get(check_layer, check_layer) in blueprint_layers


def select_checks(
    suite: Suite,
    *,
    layers: list[str] | None,
    checks: list[str] | None,
    include_optional: bool = True,
) -> list[SuiteCheck]:
    """The suite entries the caller asked for; an unknown name is bad input.

    Without `include_optional`, optional checks are left out unless named in `checks`.
    """
    known = {c.id for c in suite.checks}
    unknown = sorted(set(checks or []) - known)
    if unknown:
        msg = f"check {', '.join(unknown)} is not in suite {suite.name}; use one of: "
        raise BadInput(msg + ", ".join(sorted(known)))
    suite_layers = {c.layer for c in suite.checks}
    unknown = sorted(set(layers or []) - suite_layers)
    if unknown:
        msg = f"layer {', '.join(unknown)} has no check in suite {suite.name}; use one of: "
        raise BadInput(msg + ", ".join(sorted(suite_layers)))

    selected = list(suite.checks)
    if layers:
        selected = [c for c in selected if c.layer in layers]
    if checks:
        selected = [c for c in selected if c.id in checks]
    elif not include_optional:
        selected = [c for c in selected if c.counts_for_verdict]
    return selected


@dataclass(frozen=True)
class ListedCheck:
    """One row of `blueprint validate --list`."""

    check_id: str
    layer: str
    kind: str
    applicable: bool
    reason: str
    # "node": on each node over SSH; "cluster": once per site, from the controller.
    scope: str = "node"


def list_checks(
    target: ValidationTarget,
    *,
    layers: list[str] | None = None,
    checks: list[str] | None = None,
    include_optional: bool = False,
) -> list[ListedCheck]:
    """The suite's checks for this site, each with whether a run would run it and why not."""
    suite = load_suite(target.suite_file)
    wanted = {
        c.id
        for c in select_checks(
            suite, layers=layers, checks=checks, include_optional=include_optional
        )
    }
    rows = []
    for check in select_checks(suite, layers=layers, checks=checks, include_optional=True):
        kind = "show-stopper" if check.show_stopper else (
            "mandatory" if check.mandatory else "optional")
        scope = CLUSTER if check.cluster_scoped else "node"
        if not is_applicable(check.layer, target.blueprint_layers):
            reason = _not_deployed(check.layer, target.blueprint_layers)
            rows.append(ListedCheck(check.id, check.layer, kind, False, reason, scope))
        elif check.id not in wanted:
            reason = "optional: runs with --include-optional"
            rows.append(ListedCheck(check.id, check.layer, kind, False, reason, scope))
        else:
            rows.append(ListedCheck(check.id, check.layer, kind, True, "", scope))
    return rows


def _not_deployed(layer: str, blueprint_layers: Sequence[str]) -> str:
    deployed = ", ".join(blueprint_layers) or "none"
    return f"layer '{layer}' is not deployed by this blueprint (its layers: {deployed})"


def node_context(target: ValidationTarget, suite: Suite, node: NodeTarget) -> dict[str, Any]:
    """What the checks on one node expect (the `expected` fixture): documented in
    docs/validation.md."""
    return {
        **target.context,
        "site": target.site_name,
        "node": node.name,
        "node_roles": list(node.node_roles),
        "hardware": node.hardware,
        "bmc": node.bmc,
        "check_layers": list(target.blueprint_layers),
        "policy": suite.policy.model_dump(),
    }


def _run_nodes(
    target: ValidationTarget,
    suite: Suite,
    applicable: list[SuiteCheck],
    work_dir: Path,
    checks_dir: Path,
) -> dict[str, NodeRun]:
    if not applicable or not target.nodes:
        return {}
    select_file = _write_selection(applicable, work_dir / "selection.json")
    for node in target.nodes:
        context = node_context(target, suite, node)
        (work_dir / f"context-{node.name}.json").write_text(
            json.dumps(context, indent=2), encoding="utf-8"
        )
    # The whole node's run may take every check's timeout, plus pytest's start-up.
    budget = sum(c.timeout for c in applicable) + 60

    with ThreadPoolExecutor(max_workers=len(target.nodes)) as pool:
        futures = {
            node.name: pool.submit(
                _run_node, target, node, select_file, work_dir, checks_dir, budget
            )
            for node in target.nodes
        }
        return {name: future.result() for name, future in futures.items()}


def _cluster_runnable(
    target: ValidationTarget, applicable: list[SuiteCheck]
) -> tuple[list[SuiteCheck], dict[str, dict[str, Any]]]:
    """The cluster-scoped checks that can run, and an error record for each that cannot.

    A layer that is deployed but whose target is missing (no kubeconfig, no AI endpoints
    file) is an error, never skipped: the verdict must not pass on checks that never ran.
    """
    cluster = target.cluster
    missing: dict[str, str] = {}
    if cluster.kubeconfig is None or not cluster.kubeconfig.is_file():
        where = f" at {cluster.kubeconfig}" if cluster.kubeconfig else ""
        missing["kubernetes"] = (
            f"no kubeconfig{where}: deploy the kubernetes layer (it fetches one to the state "
            "folder) or pass --kubeconfig FILE"
        )
    if cluster.ai_endpoints is None or not cluster.ai_endpoints.is_file():
        where = f" at {cluster.ai_endpoints}" if cluster.ai_endpoints else ""
        missing["ai"] = (
            f"no AI endpoints file{where}: pass --ai-endpoints FILE "
            "(docs/ai-checks.md says what it holds)"
        )
    runnable, unrunnable = [], {}
    for check in applicable:
        if not check.cluster_scoped:
            continue
        if check.layer in missing:
            unrunnable[check.id] = {"outcome": "error", "message": missing[check.layer]}
        else:
            runnable.append(check)
    return runnable, unrunnable


def _write_selection(checks: list[SuiteCheck], path: Path) -> Path:
    selection = {c.id: {"timeout": c.timeout, "show_stopper": c.show_stopper} for c in checks}
    path.write_text(json.dumps(selection, indent=2), encoding="utf-8")
    return path


def cluster_context(target: ValidationTarget, suite: Suite) -> dict[str, Any]:
    """What the cluster-scoped checks expect (their `expected`): documented in
    docs/validation.md."""
    return {
        "site": target.site_name,
        "node": CLUSTER,
        "check_layers": list(target.blueprint_layers),
        "policy": suite.policy.model_dump(),
        **target.cluster.context(),
    }


def _run_cluster(
    target: ValidationTarget,
    suite: Suite,
    checks: list[SuiteCheck],
    work_dir: Path,
    checks_dir: Path,
) -> NodeRun | None:
    """One pytest run on the controller for the checks that speak to the cluster's API."""
    if not checks:
        return None
    select_file = _write_selection(checks, work_dir / "selection-cluster.json")
    context_file = work_dir / f"context-{CLUSTER}.json"
    context_file.write_text(json.dumps(cluster_context(target, suite), indent=2),
                            encoding="utf-8")
    results_file = work_dir / f"results-{CLUSTER}.json"
    command = [
        *_pytest_base(checks_dir),
        f"--junitxml={work_dir / f'pytest-{CLUSTER}.xml'}",
        f"--bp-select={select_file}",
        f"--bp-results={results_file}",
        f"--bp-node={CLUSTER}",
        f"--bp-context={context_file}",
    ]
    env = child_environment()
    if target.cluster.ai_endpoints is not None:
        env[AI_ENDPOINTS_ENV] = str(target.cluster.ai_endpoints)
    else:
        env.pop(AI_ENDPOINTS_ENV, None)
    budget = sum(c.timeout for c in checks) + 60
    return _run_pytest(CLUSTER, command, env, results_file, work_dir, checks_dir, budget)


def ssh_command(target: ValidationTarget, node: NodeTarget, *args: str) -> list[str]:
    return ["ssh", "-F", str(target.ssh_config), "-o", "BatchMode=yes", *args, node.name]


def _run_node(
    target: ValidationTarget,
    node: NodeTarget,
    select_file: Path,
    work_dir: Path,
    checks_dir: Path,
    budget: float,
) -> NodeRun:
    # Reachability first: an unreachable node reports every check as error, with the reason.
    probe = [*ssh_command(target, node, "-o", f"ConnectTimeout={SSH_CONNECT_TIMEOUT}"), "true"]
    try:
        reach = subprocess.run(
            probe, capture_output=True, text=True, timeout=SSH_CONNECT_TIMEOUT + 20
        )
        rc: int | None = reach.returncode
        stdout, stderr = reach.stdout, reach.stderr
    except subprocess.TimeoutExpired:
        rc, stdout, stderr = None, "", "no answer within the connect timeout"
    record = CommandRecord(shlex.join(probe), rc, stdout, stderr)
    if rc != 0:
        last = stderr.strip().splitlines()[-1:] or [f"exit {rc}"]
        log.warning("Node %s is not reachable over SSH: %s", node.name, last[0])
        return NodeRun(node.name, False, problem=f"node unreachable: {last[0]}", commands=[record])

    results_file = work_dir / f"results-{node.name}.json"
    command = pytest_command(target, node, select_file, results_file, work_dir, checks_dir)
    # The BMC password reaches the checks only through this process's environment.
    return _run_pytest(node.name, command, node.check_environment(), results_file, work_dir,
                       checks_dir, budget)


def _run_pytest(
    name: str,
    command: list[str],
    env: dict[str, str] | None,
    results_file: Path,
    work_dir: Path,
    checks_dir: Path,
    budget: float,
) -> NodeRun:
    log.debug("run: %s", shlex.join(command))
    log_file = work_dir / f"pytest-{name}.log"
    try:
        run = run_bounded(command, timeout=budget, cwd=checks_dir, env=env)
        log_file.write_text(run.stdout + run.stderr)
        # The last error line says why, e.g. a check module that does not import.
        errors = [line for line in (run.stdout + run.stderr).splitlines() if line.startswith("E ")]
        exit_note = f"pytest exited {run.returncode}"
        if errors:
            exit_note += f": {errors[-1][1:].strip()}"
        exit_note += f"; log {log_file}"
    except subprocess.TimeoutExpired:
        exit_note = f"pytest did not finish within {budget:g} s and was stopped"

    if not results_file.exists():
        return NodeRun(name, True, problem=f"no results recorded ({exit_note})")
    data = json.loads(results_file.read_text(encoding="utf-8"))
    return NodeRun(
        name,
        True,
        results={r["id"]: r for r in data["results"]},
        collected=set(data["collected"]),
        problem=f"no result recorded ({exit_note})",
    )


def pytest_command(
    target: ValidationTarget,
    node: NodeTarget,
    select_file: Path,
    results_file: Path,
    work_dir: Path,
    checks_dir: Path,
) -> list[str]:
    """The pytest command line of one node's run."""
    return [
        *_pytest_base(checks_dir),
        f"--hosts=ssh://{node.name}",
        f"--ssh-config={target.ssh_config}",
        f"--junitxml={work_dir / f'pytest-{node.name}.xml'}",
        f"--bp-select={select_file}",
        f"--bp-results={results_file}",
        f"--bp-node={node.name}",
        f"--bp-context={work_dir / f'context-{node.name}.json'}",
    ]


def _pytest_base(checks_dir: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "pytest",
        str(checks_dir),
        "-c",
        str(checks_dir / "pytest.ini"),
        "--rootdir",
        str(checks_dir),
        "-p",
        "no:cacheprovider",
        "-p",
        "blueprint.validate.plugin",
        "-q",
    ]


def merge_results(
    target: ValidationTarget,
    selected: list[SuiteCheck],
    applicable: list[SuiteCheck],
    runs: dict[str, NodeRun],
) -> list[CheckResult]:
    """One result per selected check per node (cluster-scoped: one per site), in suite order."""
    applicable_ids = {c.id for c in applicable}
    results = []
    for check in selected:
        names = [CLUSTER] if check.cluster_scoped else [node.name for node in target.nodes]
        if not names:
            # A cluster validated by its kubeconfig alone: a node check is reported, not
            # dropped, so that nothing mandatory disappears from the verdict unseen.
            results.append(CheckResult(
                check_id=check.id, node=CLUSTER, status=Status.NOT_APPLICABLE,
                mandatory=check.mandatory, show_stopper=check.show_stopper,
                message=NOT_APPLICABLE + "runs on each node over SSH; validate the SITE to "
                        "run it"))
            continue
        for name in names:
            result = CheckResult(
                check_id=check.id,
                node=name,
                status=Status.NOT_APPLICABLE,
                mandatory=check.mandatory,
                show_stopper=check.show_stopper,
            )
            if check.id not in applicable_ids:
                result.message = _not_deployed(check.layer, target.blueprint_layers)
            else:
                _fill_from_run(result, runs[name])
            results.append(result)
    return results


def _fill_from_run(result: CheckResult, run: NodeRun) -> None:
    recorded = run.results.get(result.check_id)
    if not run.reachable:
        result.status = Status.ERROR
        result.message = run.problem
        result.commands = list(run.commands)
    elif recorded is not None:
        result.status = Status(recorded["outcome"])
        if result.status is Status.SKIPPED and recorded.get("message", "").startswith(
            NOT_APPLICABLE
        ):
            result.status = Status.NOT_APPLICABLE
        result.duration = float(recorded.get("duration", 0.0))
        result.message = str(recorded.get("message", ""))
        result.commands = [CommandRecord.from_json(c) for c in recorded.get("commands", [])]
    elif run.collected and result.check_id not in run.collected:
        result.status = Status.ERROR
        result.message = "no check with this id exists in validation/checks"
    else:
        result.status = Status.ERROR
        result.message = run.problem


def _close_connections(target: ValidationTarget) -> None:
    # testinfra leaves one SSH master per node (ControlPersist); close them now.
    for node in target.nodes:
        command = ssh_command(target, node, "-O", "exit")
        try:
            subprocess.run(command, capture_output=True, text=True, timeout=10)
        except subprocess.TimeoutExpired:
            log.warning("Could not close the SSH connection to %s", node.name)
