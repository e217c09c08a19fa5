"""`blueprint remove-node`'s refusals: etcd quorum, the last control plane, bad node names,
a node that answers SSH wrongly (not dead)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from blueprint.deploy import NODES_FILE, Probe
from blueprint.errors import BadInput, DeployFailed
from blueprint.kube import cli, removal
from blueprint.kube.removal import (
    answering_nodes,
    check_quorum,
    check_removable,
    forget_node,
    quorum,
)
from blueprint.loader import load_site
from blueprint.models import Node
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


def _probes(monkeypatch: pytest.MonkeyPatch, *probes: Probe) -> None:
    monkeypatch.setattr(removal, "probe_nodes", lambda *args, **kwargs: list(probes))


NODE_OBJECTS = [Node(name=name, address=f"10.0.0.{index}", roles=["worker"])
                for index, name in enumerate(("cp-1", "worker-1"), 1)]


def test_only_silence_at_the_address_makes_a_node_dead(monkeypatch: pytest.MonkeyPatch) -> None:
    silence = "node worker-1 (10.0.0.2): no answer over SSH: ..."
    _probes(monkeypatch, Probe("cp-1", None), Probe("worker-1", silence, dead=True))
    assert answering_nodes(NODE_OBJECTS, Path("ssh_config")) == {
        "cp-1": None, "worker-1": silence}


def test_a_node_that_refuses_the_login_is_an_error_not_a_dead_node(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    refused = ("node worker-1 (10.0.0.2): SSH refused the login (root@10.0.0.2: Permission "
               "denied (publickey).); check the site's ssh user and key, and that the key is "
               "in the node's authorized_keys")
    _probes(monkeypatch, Probe("cp-1", None), Probe("worker-1", refused))
    with pytest.raises(DeployFailed) as stopped:
        answering_nodes(NODE_OBJECTS, Path("ssh_config"))
    assert str(stopped.value).splitlines() == [
        refused, "remove-node stopped before any change: fix SSH to the node(s) above (a dead "
                 "node is one at whose address nothing answers)"]


def test_a_dead_node_is_refused_without_force_naming_the_probes_reason(
    site: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    silence = "node worker-1 (10.0.0.2): no answer over SSH: ssh: connect to host ... timed out"
    plan = removal.RemovalPlan(node="worker-1", control_plane=False, reachable=False,
                               via="cp-1", members_before=0, silence=silence)
    monkeypatch.setattr(removal, "plan_removal", lambda *args: plan)
    with pytest.raises(BadInput) as refused:
        cli.remove_node.callback(str(site), "worker-1", True, False, 300, None)  # type: ignore[misc]
    assert str(refused.value).startswith(f"node worker-1 does not answer SSH ({silence}): ")
    assert "--force" in str(refused.value)
