"""`blueprint certs renew SITE`: renew the cluster's certificates, one node at a time."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from blueprint.deploy import check_nodes_reachable
from blueprint.errors import DeployFailed
from blueprint.inventory import render_inventory
from blueprint.kube.cluster import deployed_cluster, first_failure
from blueprint.kube.tokens import cluster_secrets
from blueprint.kube.variables import LAYER
from blueprint.loader import LoadedSite
from blueprint.playbook import PlaybookResult, require_ansible, run_layers
from blueprint.state import StateDir, new_run_id, recorded_run

log = logging.getLogger(__name__)

RENEW_PLAYBOOK = "kubernetes_certs_renew"


@dataclass
class RenewOutcome:
    run_id: str
    result: PlaybookResult


def renew_certificates(loaded: LoadedSite, state: StateDir) -> RenewOutcome:
    """Renew on every node of the cluster (control planes first); fetch the new kubeconfig."""
    cluster = deployed_cluster(loaded, state)
    require_ansible()
    run_id = new_run_id("certs-renew")
    with state.lock():
        inventory_dir = render_inventory(loaded, state)
        check_nodes_reachable([node for node in loaded.site.nodes if node.name in cluster.nodes],
                              state.root / "ssh_config")
        run_dir = state.run_dir(run_id)
        with recorded_run(state, run_id, loaded.site.name, "certs-renew", [LAYER]) as history:
            extra = {**cluster_secrets(state, create=False),
                     "kubernetes_certs_via": cluster.servers[0]}
            [result] = run_layers({RENEW_PLAYBOOK: []}, inventory_dir, run_dir,
                                  state.facts_dir, secret_vars=extra,
                                  limit=",".join(cluster.nodes))
            history.record_layer(run_id, RENEW_PLAYBOOK, result.stats)
            if not result.ok:
                msg = (f"certs renew failed{first_failure(result)}; log: {result.stdout_file}; "
                       "nodes before it have new certificates: fix it and run it again")
                raise DeployFailed(msg)
    return RenewOutcome(run_id, result)
