"""`blueprint remove-node SITE NODE`: drain, delete from the cluster, clean the host, forget it.

Every refusal (unknown node, never deployed, etcd quorum, last control plane) comes before
any host is touched. A node at whose address nothing answers SSH (a short probe, up front:
timeout, no route) is dead: it is not drained or cleaned, only its Node object (and etcd
member) is deleted through a control plane that answers. A node that answers but refuses the
connection (sshd down) or the login, or shows another host key, is not dead: that stops the
run, naming the cause.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

from blueprint.deploy import NODES_FILE, deployed_nodes, probe_nodes
from blueprint.errors import BadInput, DeployFailed
from blueprint.inventory import render_inventory
from blueprint.kube.cluster import cluster_nodes, cluster_settings_of, first_failure
from blueprint.kube.tokens import cluster_secrets
from blueprint.kube.variables import LAYER
from blueprint.loader import LoadedSite
from blueprint.models import Node
from blueprint.playbook import PlaybookResult, require_ansible, run_layers
from blueprint.state import StateDir, new_run_id, recorded_run

log = logging.getLogger(__name__)

REMOVE_PLAYBOOK = "kubernetes_remove_node"
PROBE_TIMEOUT = 5  # seconds SSH may take to answer before a node counts as dead


@dataclass(frozen=True)
class RemovalPlan:
    """What a removal will do, decided before any host is touched."""

    node: str
    control_plane: bool
    reachable: bool
    via: str  # the control plane whose kubectl deletes the node
    members_before: int  # etcd members (control planes) now; 0 for a worker
    silence: str | None = None  # the probe's reason when the node does not answer SSH


def quorum(members: int) -> int:
    """The majority etcd needs to commit anything: more than half of its members."""
    return members // 2 + 1


def check_quorum(node: str, servers: list[str], healthy: set[str]) -> None:
    """Refuse a control plane's removal that would stop the cluster or lose etcd's quorum.

    `servers` are the cluster's control planes (one etcd member each, stacked/embedded
    etcd); `healthy` those that answer. The removal needs a majority of today's members to
    commit it, and the members left must still hold that majority.
    """
    if node not in servers:
        return
    if len(servers) == 1:
        msg = (f"node {node} is the cluster's only control plane (1 of 1); removing it would "
               "remove the cluster: use `blueprint reset` for that")
        raise BadInput(msg)
    need = quorum(len(servers))
    left = sorted(name for name in servers if name != node and name in healthy)
    if len(left) < need:
        down = sorted(name for name in servers if name != node and name not in healthy)
        msg = (f"node {node}: etcd has {len(servers)} members (quorum {need}); removing it "
               f"would leave {len(left)} healthy member(s) ({', '.join(left) or 'none'}; "
               f"not answering: {', '.join(down) or 'none'}), fewer than {need}: bring "
               "the others back first")
        raise BadInput(msg)


def check_removable(loaded: LoadedSite, state: StateDir, name: str) -> Node:
    """The node to remove; bad input (one line) when it is unknown or not deployed."""
    cluster_settings_of(loaded)
    node = next((node for node in loaded.site.nodes if node.name == name), None)
    if node is None:
        known = ", ".join(node.name for node in loaded.site.nodes)
        msg = (f"node {name} is not in {loaded.site_file} (nodes: {known}); remove-node needs "
               "it there to reach it")
        raise BadInput(msg)
    deployed, _ = cluster_nodes(loaded, state)
    if name not in deployed:
        msg = (f"node {name} is not in site {loaded.site.name}'s cluster "
               f"({state.root / NODES_FILE} does not list it for layer {LAYER}); nothing to "
               "remove")
        raise BadInput(msg)
    return node


def answering_nodes(nodes: list[Node], ssh_config: Path) -> dict[str, str | None]:
    """Each node's probe: None when it answers SSH within PROBE_TIMEOUT, else why it is dead;
    one that answers wrongly stops the run.

    Only silence at the node's address (timeout, no route) makes a node dead. A refused
    connection (sshd down, the host up), a refused login, a missing key or a changed host key
    say the node is there: removing it as dead would leave its agent running, and it would
    register itself again.
    """
    probes = probe_nodes(nodes, ssh_config, "true", connect_timeout=PROBE_TIMEOUT)
    problems = [probe.reason for probe in probes if probe.reason and not probe.dead]
    if problems:
        msg = "\n".join([*problems, "remove-node stopped before any change: fix SSH to the "
                          "node(s) above (a dead node is one at whose address nothing answers)"])
        raise DeployFailed(msg)
    return {probe.node: probe.reason for probe in probes}


def plan_removal(loaded: LoadedSite, state: StateDir, name: str) -> RemovalPlan:
    """Check the input, probe the cluster's nodes, check quorum: all before any change."""
    target = check_removable(loaded, state, name)
    _, servers = cluster_nodes(loaded, state)
    if target.name in servers and len(servers) == 1:
        check_quorum(target.name, servers, set())  # refuses before any probe
    render_inventory(loaded, state)  # also writes the SSH config the probe uses
    ssh_config = state.root / "ssh_config"
    probed = [node for node in loaded.site.nodes if node.name in servers or node is target]
    probed_reasons = answering_nodes(probed, ssh_config)
    healthy = {node for node, reason in probed_reasons.items() if reason is None}
    check_quorum(target.name, servers, healthy)
    via = next((server for server in servers if server != target.name and server in healthy),
               None)
    if via is None:
        msg = (f"no control plane of site {loaded.site.name} other than {target.name} answers "
               f"SSH ({', '.join(servers)}); the Node object cannot be deleted")
        raise DeployFailed(msg)
    return RemovalPlan(node=target.name, control_plane=target.name in servers,
                       reachable=target.name in healthy, via=via,
                       members_before=len(servers) if target.name in servers else 0,
                       silence=probed_reasons.get(target.name))


@dataclass
class RemovalOutcome:
    run_id: str
    plan: RemovalPlan
    result: PlaybookResult


def remove_node(
    loaded: LoadedSite, state: StateDir, plan: RemovalPlan, *, force: bool,
    drain_timeout: int,
) -> RemovalOutcome:
    """Drain, clean the host (when it answers), delete the Node; forget it in the state."""
    require_ansible()
    run_id = new_run_id("remove-node")
    with state.lock():
        inventory_dir = render_inventory(loaded, state)
        run_dir = state.run_dir(run_id)
        with recorded_run(state, run_id, loaded.site.name, "remove-node", [LAYER]) as history:
            # The dead node is left out of the run: no connection is tried beyond the probe.
            limit = [plan.via, plan.node] if plan.reachable else [plan.via]
            extra = {
                **cluster_secrets(state, create=False),
                "kubernetes_remove_node": plan.node,
                "kubernetes_remove_via": plan.via,
                "kubernetes_remove_reachable": plan.reachable,
                "kubernetes_remove_control_plane": plan.control_plane,
                "kubernetes_remove_force": force,
                "kubernetes_drain_timeout": drain_timeout,
            }
            [result] = run_layers({REMOVE_PLAYBOOK: []}, inventory_dir, run_dir,
                                  state.facts_dir, secret_vars=extra, limit=",".join(limit))
            history.record_layer(run_id, REMOVE_PLAYBOOK, result.stats)
            if not result.ok:
                msg = (f"remove-node {plan.node} failed{first_failure(result)}; log: "
                       f"{result.stdout_file}; the node is still recorded as deployed: fix it "
                       "and run it again")
                raise DeployFailed(msg)
            forget_node(state, plan.node)
    return RemovalOutcome(run_id, plan, result)


def forget_node(state: StateDir, name: str) -> None:
    """Drop the node from every layer in deployed-nodes.json (it left the cluster's site)."""
    layers = deployed_nodes(state)
    kept = {layer: [node for node in nodes if node != name] for layer, nodes in layers.items()}
    (state.root / NODES_FILE).write_text(json.dumps(kept, indent=2), encoding="utf-8")
