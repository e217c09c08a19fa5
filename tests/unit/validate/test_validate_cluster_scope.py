"""Cluster-scoped checks: one run on the controller per site, one result row named `cluster`.

The checks here are small pytest modules run by the real runner and plugin in a subprocess,
the way `blueprint validate` runs the Kubernetes-API and AI checks; no node is involved.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from blueprint.deploy import mark_nodes
from blueprint.errors import BadInput
from blueprint.loader import load_site
from blueprint.state import StateDir
from blueprint.validate.model import (
    CLUSTER,
    CheckResult,
    ClusterTarget,
    ReportPaths,
    Status,
    ValidationReport,
    ValidationTarget,
    Verdict,
    is_cluster_scoped,
)
from blueprint.validate.report import summary
from blueprint.validate.runner import run_validation
from blueprint.validation import (
    cluster_run_name,
    cluster_suite,
    cluster_target,
    kubeconfig_context,
)

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "sites"

MakeResult = Callable[..., CheckResult]

CLUSTER_CHECKS = """
import os
import pytest
from blueprint.validate.plugin import NOT_APPLICABLE, expect


@pytest.mark.check("kubernetes.cluster.fake_nodes")
def test_nodes(expected):
    expect(expected["kube_nodes"] is None, seen=str(expected["kube_nodes"]), expected="None")
    expect(expected["kubeconfig"].endswith("kubeconfig"), seen=expected["kubeconfig"],
           expected="the kubeconfig's path")


@pytest.mark.check("kubernetes.cluster.fake_na")
def test_not_applicable(expected):
    pytest.skip(NOT_APPLICABLE + "no GPU node in this cluster")


@pytest.mark.check("ai.fake_endpoints")
def test_endpoints(expected):
    seen = os.environ.get("BLUEPRINT_AI_ENDPOINTS")
    expect(seen == expected["ai_endpoints"], seen=str(seen), expected=expected["ai_endpoints"])
"""

SUITE = {
    "name": "fake",
    "checks": [
        {"id": "os.fake_node_check", "mandatory": True},
        {"id": "kubernetes.cluster.fake_nodes", "mandatory": True},
        {"id": "kubernetes.cluster.fake_na", "mandatory": True},
        {"id": "ai.fake_endpoints", "mandatory": True},
    ],
}


def _setup(tmp_path: Path, *, endpoints: bool, kubeconfig: bool = True) -> ValidationTarget:
    checks = tmp_path / "checks"
    checks.mkdir()
    (checks / "test_cluster_fake.py").write_text(CLUSTER_CHECKS)
    (checks / "pytest.ini").write_text("[pytest]\n")
    suite = tmp_path / "suite.yaml"
    suite.write_text(yaml.safe_dump(SUITE))
    config = tmp_path / "kubeconfig"
    if kubeconfig:
        config.write_text("kind: Config\n")
    ai = tmp_path / "ai-endpoints.yaml"
    if endpoints:
        ai.write_text("{}\n")
    return ValidationTarget(
        site_name="cluster-edge",
        blueprint_layers=["os", "kubernetes", "ai"],
        suite_file=suite,
        nodes=[],
        ssh_config=tmp_path / "ssh_config",
        cluster=ClusterTarget(kubeconfig=config, ai_endpoints=ai),
    )


def _by_id(results: list[CheckResult]) -> dict[str, tuple[str, Status, str]]:
    return {r.check_id: (r.node, r.status, r.message) for r in results}


def test_ids_name_their_scope() -> None:
    assert is_cluster_scoped("kubernetes.cluster.nodes_ready")
    assert is_cluster_scoped("ai.mlflow.health")
    assert not is_cluster_scoped("kubernetes.certs.expiry")
    assert not is_cluster_scoped("os.swap_off")


def test_cluster_checks_run_once_on_the_controller(tmp_path: Path) -> None:
    target = _setup(tmp_path, endpoints=True)
    out = tmp_path / "out"
    report = run_validation(target, out, checks_dir=tmp_path / "checks")

    results = _by_id(report.results)
    assert results["kubernetes.cluster.fake_nodes"][:2] == (CLUSTER, Status.PASSED)
    # A "not applicable: " skip is reported as not applicable, with its reason.
    assert results["kubernetes.cluster.fake_na"] == (
        CLUSTER, Status.NOT_APPLICABLE, "not applicable: no GPU node in this cluster")
    assert results["ai.fake_endpoints"][:2] == (CLUSTER, Status.PASSED)
    # No node in the target: the node-scoped check is one not-applicable row, not dropped.
    assert results["os.fake_node_check"] == (
        CLUSTER, Status.NOT_APPLICABLE,
        "not applicable: runs on each node over SSH; validate the SITE to run it")
    assert report.verdict is Verdict.PASSED

    context = json.loads((out / "nodes" / "context-cluster.json").read_text())
    assert context["kubeconfig"] == str(tmp_path / "kubeconfig")
    assert context["node"] == CLUSTER
    summary = json.loads((out / "summary.json").read_text())
    assert summary["nodes"] == [CLUSTER]


def test_the_cluster_column_comes_after_the_nodes(make_result: MakeResult) -> None:
    results = [make_result("os.swap_off", "zz-node"), make_result("os.swap_off", "a-node"),
               make_result("kubernetes.cluster.nodes_ready", CLUSTER)]
    now = dt.datetime.now(dt.UTC)
    report = ValidationReport("edge", "ai-edge", now, now, Verdict.PASSED, results, [],
                              ReportPaths([], Path("summary.json"), Path("report.html")))
    assert summary(report, [])["nodes"] == ["a-node", "zz-node", CLUSTER]


def test_missing_kubeconfig_or_endpoints_is_an_error_never_a_pass(tmp_path: Path) -> None:
    target = _setup(tmp_path, endpoints=False, kubeconfig=False)
    report = run_validation(target, tmp_path / "out", checks_dir=tmp_path / "checks")

    results = _by_id(report.results)
    node, status, message = results["kubernetes.cluster.fake_nodes"]
    assert (node, status) == (CLUSTER, Status.ERROR)
    assert message.startswith(f"no kubeconfig at {tmp_path / 'kubeconfig'}")
    assert "--kubeconfig" in message
    node, status, message = results["ai.fake_endpoints"]
    assert status is Status.ERROR
    assert message.startswith("no AI endpoints file")
    assert report.verdict is Verdict.FAILED


def test_kubeconfig_context_is_checked(tmp_path: Path) -> None:
    config = tmp_path / "kubeconfig"
    config.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "edge",
        "contexts": [{"name": "edge", "context": {"cluster": "c", "user": "u"}},
                     {"name": "other", "context": {"cluster": "c", "user": "u"}}],
    }))
    assert kubeconfig_context(config) == "edge"
    assert kubeconfig_context(config, "other") == "other"
    with pytest.raises(BadInput, match="not in the file; use one of: edge, other"):
        kubeconfig_context(config, "nope")
    config.write_text("- a list\n")
    with pytest.raises(BadInput, match="not a kubeconfig"):
        kubeconfig_context(config)


def test_cluster_suite_by_name_or_file(tmp_path: Path) -> None:
    assert cluster_suite("ai-edge").name == "ai-edge.yaml"
    assert cluster_suite(str(tmp_path / "mine.yaml")) == tmp_path / "mine.yaml"
    with pytest.raises(BadInput, match="suite 'nope' is not known; use one of ai-edge, lab"):
        cluster_suite("nope")


def test_a_context_name_becomes_one_folder_name() -> None:
    assert cluster_run_name("arn:aws:eks:eu-west-1:123:cluster/prod") == (
        "cluster-arn-aws-eks-eu-west-1-123-cluster-prod")
    assert cluster_run_name("edge") == "cluster-edge"


def test_a_removed_node_is_not_expected_in_the_cluster(tmp_path: Path) -> None:
    site_dir = tmp_path / "site"
    site_dir.mkdir()
    (site_dir / "good_key").write_bytes((FIXTURES / "good_key").read_bytes())
    (site_dir / "site.yaml").write_text(yaml.safe_dump({
        "name": "edge", "blueprint": "lab", "ssh": {"key": "good_key"},
        "nodes": [{"name": "cp-1", "address": "10.0.0.1", "roles": ["control-plane"]},
                  {"name": "gpu-1", "address": "10.0.0.2", "roles": ["worker", "gpu"]},
                  {"name": "gone-1", "address": "10.0.0.3", "roles": ["worker", "gpu"]}],
    }))
    loaded = load_site(site_dir / "site.yaml")
    state = StateDir.for_site(site_dir)

    # No deploy record: the site file is all there is.
    target = cluster_target(loaded, state)
    assert target.kube_nodes == ["cp-1", "gpu-1", "gone-1"]
    assert target.gpu_nodes == ["gpu-1", "gone-1"]
    assert target.kubeconfig == state.kubeconfig

    # remove-node took gone-1 out of the kubernetes layer; the site file still lists it.
    mark_nodes(state, "kubernetes", ["cp-1", "gpu-1"])
    target = cluster_target(loaded, state)
    assert target.kube_nodes == ["cp-1", "gpu-1"]
    assert target.gpu_nodes == ["gpu-1"]
