"""`blueprint remove-node`'s refusals: etcd quorum, the last control plane, bad node names."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from blueprint.deploy import NODES_FILE
from blueprint.errors import BadInput
from blueprint.kube.removal import check_quorum, check_removable, forget_node, quorum
from blueprint.loader import load_site
from blueprint.state import StateDir

THREE = ["cp-1", "cp-2", "cp-3"]
FIVE = ["cp-1", "cp-2", "cp-3", "cp-4", "cp-5"]


@pytest.mark.parametrize(("members", "majority"), [(1, 1), (2, 2), (3, 2), (4, 3), (5, 3)])
def test_quorum_is_a_majority(members: int, majority: int) -> None:
    assert quorum(members) == majority


@pytest.mark.parametrize(("node", "servers", "healthy"), [
    ("worker-1", ["cp-1"], set()),  # a worker: etcd is not concerned
    ("cp-2", THREE, set(THREE)),
    ("cp-2", THREE, {"cp-1", "cp-3"}),  # the dead one itself
    ("cp-1", FIVE, {"cp-2", "cp-3", "cp-4"}),
])
def test_removals_that_keep_quorum_pass(node: str, servers: list[str], healthy: set[str]) -> None:
    check_quorum(node, servers, healthy)


@pytest.mark.parametrize(("node", "servers", "healthy", "message"), [
    ("cp-1", ["cp-1"], {"cp-1"}, "only control plane (1 of 1)"),
    ("cp-2", THREE, {"cp-1", "cp-2"},
     "etcd has 3 members (quorum 2); removing it would leave 1 healthy member(s) (cp-1; "
     "not answering: cp-3), fewer than 2"),
    ("cp-1", FIVE, {"cp-1", "cp-2", "cp-3"},
     "etcd has 5 members (quorum 3); removing it would leave 2 healthy member(s)"),
])
def test_removals_that_lose_quorum_are_refused_naming_the_numbers(
    node: str, servers: list[str], healthy: set[str], message: str
) -> None:
    with pytest.raises(BadInput) as refused:
        check_quorum(node, servers, healthy)
    assert message in str(refused.value)


@pytest.fixture
def site(tmp_path: Path) -> Path:
    (tmp_path / "bp.yaml").write_text(yaml.safe_dump({
        "name": "bp", "version": "0.1.0", "description": "k3s only",
        "layers": [{"name": "kubernetes", "roles": ["kubernetes"],
                    "versions": {"k3s": "v1.31.4+k3s1"}}],
        "validation": {"suite": "lab"},
    }))
    (tmp_path / "site.yaml").write_text(yaml.safe_dump({
        "name": "edge", "blueprint": "bp.yaml",
        "ssh": {"user": "root"},
        "nodes": [{"name": "cp-1", "address": "10.0.0.1", "roles": ["control-plane"]},
                  {"name": "worker-1", "address": "10.0.0.2", "roles": ["worker"]},
                  {"name": "worker-2", "address": "10.0.0.3", "roles": ["worker"]}],
    }))
    state = tmp_path / ".state"
    state.mkdir()
    (state / NODES_FILE).write_text(json.dumps({"os_baseline": ["cp-1", "worker-1"],
                                                "kubernetes": ["cp-1", "worker-1"]}))
    return tmp_path / "site.yaml"


def test_an_unknown_node_is_refused_naming_the_site_nodes(site: Path) -> None:
    loaded = load_site(site)
    with pytest.raises(BadInput, match=r"node worker-9 is not in .*site\.yaml \(nodes: cp-1, "):
        check_removable(loaded, StateDir.for_site(site.parent), "worker-9")


def test_a_node_never_deployed_is_refused(site: Path) -> None:
    loaded = load_site(site)
    with pytest.raises(BadInput, match=r"node worker-2 is not in site edge's cluster .*"
                                       r"deployed-nodes\.json.*nothing to remove"):
        check_removable(loaded, StateDir.for_site(site.parent), "worker-2")


def test_forgetting_a_node_drops_it_from_every_layer(site: Path) -> None:
    state = StateDir.for_site(site.parent)
    forget_node(state, "worker-1")
    assert json.loads((state.root / NODES_FILE).read_text()) == {
        "os_baseline": ["cp-1"], "kubernetes": ["cp-1"]}
