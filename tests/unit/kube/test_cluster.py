"""What the day-2 verbs share: the layer check, the deployed cluster, its first control plane."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from blueprint.deploy import NODES_FILE
from blueprint.errors import BadInput, DeployFailed, ExitCode
from blueprint.kube.cluster import deployed_cluster, first_failure, init_node
from blueprint.loader import load_site
from blueprint.playbook import PlaybookResult, TaskChange
from blueprint.state import RunHistory, StateDir, recorded_run

NODES = [{"name": "edge-w", "address": "10.0.0.9", "roles": ["worker"]},
         {"name": "edge-a", "address": "10.0.0.1", "roles": ["control-plane"]},
         {"name": "edge-b", "address": "10.0.0.2", "roles": ["control-plane"]},
         {"name": "edge-c", "address": "10.0.0.3", "roles": ["control-plane"]}]


def _site(tmp_path: Path, layers: list[dict[str, object]], vip: bool = True) -> Path:
    (tmp_path / "bp.yaml").write_text(yaml.safe_dump({
        "name": "bp", "version": "0.1.0", "description": "day-2", "layers": layers,
        "validation": {"suite": "lab"}}))
    (tmp_path / "site.yaml").write_text(yaml.safe_dump({
        "name": "edge", "blueprint": "bp.yaml", "ssh": {"user": "root"},
        "overrides": {"kubernetes_api_vip": "10.0.0.100"} if vip else {}, "nodes": NODES}))
    (tmp_path / ".state").mkdir()
    return tmp_path / "site.yaml"


K3S = [{"name": "kubernetes", "roles": ["kubernetes"], "versions": {"k3s": "v1.31.4+k3s1"}}]


def test_a_blueprint_without_the_layer_is_refused_naming_the_site_file(tmp_path: Path) -> None:
    site = _site(tmp_path, [{"name": "os_baseline", "roles": ["os_baseline"]}], vip=False)
    with pytest.raises(BadInput, match=r"site\.yaml: blueprint bp has no kubernetes layer"):
        deployed_cluster(load_site(site), StateDir.for_site(tmp_path))


def test_a_cluster_never_deployed_is_refused(tmp_path: Path) -> None:
    site = _site(tmp_path, K3S)
    with pytest.raises(BadInput, match=r"site edge has no deployed cluster in .*; run deploy"):
        deployed_cluster(load_site(site), StateDir.for_site(tmp_path))


def test_the_deployed_cluster_is_in_site_file_order(tmp_path: Path) -> None:
    site = _site(tmp_path, K3S)
    (tmp_path / ".state" / NODES_FILE).write_text(json.dumps(
        {"kubernetes": ["edge-c", "edge-a", "edge-w"]}))
    cluster = deployed_cluster(load_site(site), StateDir.for_site(tmp_path))
    assert cluster.nodes == ["edge-w", "edge-a", "edge-c"]
    assert cluster.servers == ["edge-a", "edge-c"]
    assert cluster.settings.distribution == "k3s"


def test_the_first_control_plane_is_topology_s_init_node(tmp_path: Path) -> None:
    # The worker comes first in the site file; the init node is the first control plane.
    assert init_node(load_site(_site(tmp_path, K3S))) == "edge-a"


def test_the_first_failure_names_node_task_and_what(tmp_path: Path) -> None:
    failed = PlaybookResult("p", "failed", 2, failures=[
        TaskChange("edge-b", "Drain the node.", "timed out"), TaskChange("edge-c", "x", "y")])
    assert first_failure(failed) == " on edge-b: task 'Drain the node.': timed out"
    assert first_failure(PlaybookResult("p", "failed", 2)) == ""


def test_a_recorded_run_finishes_ok_or_with_the_error_s_exit_code(tmp_path: Path) -> None:
    state = StateDir.for_site(tmp_path)
    with recorded_run(state, "run-ok", "edge", "upgrade", ["kubernetes"]):
        pass
    with pytest.raises(DeployFailed), recorded_run(state, "run-bad", "edge", "upgrade", []):
        raise DeployFailed("stand-in failure")
    history = RunHistory(state)
    runs = {run["id"]: (run["status"], run["exit_code"]) for run in history.runs()}
    history.close()
    assert runs == {"run-ok": ("ok", ExitCode.OK),
                    "run-bad": ("failed", ExitCode.DEPLOY_FAILED)}
