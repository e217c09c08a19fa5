"""What the day-2 verbs (remove-node, upgrade, certs renew) share: the deployed cluster.

Each verb starts from the same questions, answered here once: does the site's blueprint have
a kubernetes layer and with which settings, which of the site's nodes did deploy make part of
the cluster, which one creates it, and how a failed run is reported.
"""

from __future__ import annotations

from dataclasses import dataclass

from blueprint.deploy import deployed_nodes
from blueprint.errors import BadInput
from blueprint.inventory import role_variables
from blueprint.kube.topology import ClusterSettings, plan_nodes
from blueprint.kube.variables import LAYER, kubernetes_settings
from blueprint.loader import LoadedSite
from blueprint.playbook import PlaybookResult
from blueprint.state import StateDir


@dataclass(frozen=True)
class Cluster:
    """The site's deployed cluster: its nodes and control planes, in site-file order."""

    settings: ClusterSettings
    nodes: list[str]
    servers: list[str]


def cluster_settings_of(loaded: LoadedSite) -> ClusterSettings:
    """The site's cluster settings; bad input when its blueprint has no kubernetes layer."""
    settings = kubernetes_settings(loaded, role_variables(loaded))
    if settings is None:
        msg = (f"{loaded.site_file}: blueprint {loaded.blueprint.name} has no {LAYER} layer; "
               "this verb works on the cluster that layer deploys")
        raise BadInput(msg)
    return settings


def cluster_nodes(loaded: LoadedSite, state: StateDir) -> tuple[list[str], list[str]]:
    """(deployed nodes of the site's cluster, its control planes), in site-file order."""
    deployed = set(deployed_nodes(state).get(LAYER, []))
    nodes = [node for node in loaded.site.nodes if node.name in deployed]
    return ([node.name for node in nodes],
            [node.name for node in nodes if "control-plane" in node.roles])


def deployed_cluster(loaded: LoadedSite, state: StateDir) -> Cluster:
    """The site's settings and deployed nodes; bad input without a layer or a deploy."""
    settings = cluster_settings_of(loaded)
    nodes, servers = cluster_nodes(loaded, state)
    if not nodes:
        msg = f"site {loaded.site.name} has no deployed cluster in {state.root}; run deploy"
        raise BadInput(msg)
    if not servers:
        msg = (f"site {loaded.site.name}: {state.root} records no control plane of the "
               f"cluster (nodes: {', '.join(nodes)}); run deploy")
        raise BadInput(msg)
    return Cluster(settings, nodes, servers)


def init_node(loaded: LoadedSite) -> str:
    """The control plane that creates the cluster in deploy's rendering (topology's choice)."""
    plans = plan_nodes(loaded.site, cluster_settings_of(loaded))
    return next(name for name, plan in plans.items() if plan.init)


def first_failure(result: PlaybookResult) -> str:
    """` on NODE: task 'TASK': WHAT` for the run's first failure ('' when none was seen)."""
    first = result.failures[0] if result.failures else None
    return f" on {first.node}: task '{first.task}': {first.diff}" if first else ""
