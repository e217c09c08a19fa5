"""Which layers `deploy --resume` runs and which nodes `scale` adds, from the state folder."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from blueprint.deploy import mark_nodes, new_nodes, resume_layers, scale_limit
from blueprint.errors import BadInput
from blueprint.loader import LoadedSite, load_site
from blueprint.state import RunHistory, StateDir

OK = {"ok": 5, "changed": 1, "failed": 0, "unreachable": 0, "skipped": 0}
FAILED = {**OK, "failed": 1}
HOST_LAYERS = ["os_baseline", "container_runtime", "gpu", "kubernetes", "storage"]


def _site(tmp_path: Path, names: list[str]) -> tuple[LoadedSite, StateDir]:
    """A site whose nodes named cp* are control planes, the others workers."""
    nodes = [{"name": name, "address": f"10.30.0.{11 + index}",
              "roles": ["control-plane"] if name.startswith("cp") else ["worker"]}
             for index, name in enumerate(names)]
    (tmp_path / "site.yaml").write_text(yaml.safe_dump(
        {"name": "edge", "blueprint": "ai-edge", "nodes": nodes}))
    loaded = load_site(tmp_path / "site.yaml")
    return loaded, StateDir.for_site(tmp_path)


def _run(state: StateDir, run_id: str, layers: list[str],
         results: dict[str, dict[str, dict[str, int]]], status: str) -> None:
    history = RunHistory(state)
    history.start(run_id, "edge", "deploy", layers, state.root / run_id)
    for layer, stats in results.items():
        history.record_layer(run_id, layer, stats)
    if status != "running":
        history.finish(run_id, status, 0 if status == "ok" else 3)
    history.close()


def test_resume_starts_at_the_failed_layer_and_keeps_the_rest(tmp_path: Path) -> None:
    loaded, state = _site(tmp_path, ["cp1", "w1"])
    _run(state, "20261204T100000Z-deploy-aaaaaa", [*HOST_LAYERS, "platform"],
         {"os_baseline": {"cp1": OK, "w1": OK}, "container_runtime": {"cp1": OK, "w1": OK},
          "gpu": {"cp1": OK, "w1": FAILED}}, "failed")

    assert resume_layers(loaded, state) == ["gpu", "kubernetes", "storage", "platform"]


def test_a_run_cut_off_before_any_result_resumes_from_its_first_layer(tmp_path: Path) -> None:
    loaded, state = _site(tmp_path, ["cp1"])
    _run(state, "20261204T100000Z-deploy-bbbbbb", ["kubernetes", "storage"], {}, "running")

    assert resume_layers(loaded, state) == ["kubernetes", "storage"]


def test_nothing_to_resume_after_an_ok_deploy(tmp_path: Path) -> None:
    loaded, state = _site(tmp_path, ["cp1"])
    _run(state, "20261204T090000Z-deploy-cccccc", ["gpu"], {"gpu": {"cp1": FAILED}}, "failed")
    _run(state, "20261204T100000Z-deploy-dddddd", ["gpu"], {"gpu": {"cp1": OK}}, "ok")

    assert resume_layers(loaded, state) is None


def test_resume_without_any_deploy_is_bad_input(tmp_path: Path) -> None:
    loaded, state = _site(tmp_path, ["cp1"])
    with pytest.raises(BadInput, match="no deploy in its history"):
        resume_layers(loaded, state)


def test_scale_adds_only_nodes_some_layer_has_not_completed_on(tmp_path: Path) -> None:
    loaded, state = _site(tmp_path, ["cp1", "w1", "w2", "w3"])
    for layer in HOST_LAYERS:
        mark_nodes(state, layer, ["cp1", "w1"])
    mark_nodes(state, "os_baseline", ["w2"])  # a node whose first scale failed half-way

    assert new_nodes(loaded, state) == ["w2", "w3"]
    # The control plane runs too (a no-op there): joining kubeadm nodes read its CA hash.
    assert scale_limit(loaded, state) == (["w2", "w3"], ["cp1", "w2", "w3"])


def test_scale_of_a_site_without_a_deployed_cluster_is_refused(tmp_path: Path) -> None:
    loaded, state = _site(tmp_path, ["cp1", "w1"])
    with pytest.raises(BadInput, match="no deployed cluster"):
        scale_limit(loaded, state)


def test_nodes_forgotten_by_reset_are_new_and_the_cluster_undeployed(tmp_path: Path) -> None:
    loaded, state = _site(tmp_path, ["cp1", "w1"])
    for layer in HOST_LAYERS:
        mark_nodes(state, layer, ["cp1", "w1"])
    mark_nodes(state, "kubernetes", None)

    assert new_nodes(loaded, state) == ["cp1", "w1"]
    with pytest.raises(BadInput, match="no deployed cluster"):
        scale_limit(loaded, state)


def test_scale_refuses_a_new_control_plane(tmp_path: Path) -> None:
    loaded, state = _site(tmp_path, ["cp1", "w1", "cp2"])
    for layer in HOST_LAYERS:
        mark_nodes(state, layer, ["cp1", "w1"])
    with pytest.raises(BadInput, match="node cp2 has role control-plane"):
        scale_limit(loaded, state)


def test_a_cluster_of_nodes_no_longer_in_the_site_is_no_deployed_cluster(tmp_path: Path) -> None:
    loaded, state = _site(tmp_path, ["cp1", "w1"])
    mark_nodes(state, "kubernetes", ["old-cp"])
    with pytest.raises(BadInput, match="no deployed cluster"):
        scale_limit(loaded, state)
