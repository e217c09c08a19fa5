"""`blueprint certs renew SITE`: renew the cluster's certificates, one node at a time."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from blueprint.deploy import check_nodes_reachable
from blueprint.errors import BadInput, DeployFailed, ExitCode, exit_code_of
from blueprint.inventory import render_inventory
from blueprint.kube.removal import cluster_nodes
from blueprint.kube.tokens import cluster_secrets
from blueprint.kube.variables import LAYER
from blueprint.loader import LoadedSite
from blueprint.playbook import PlaybookResult, require_ansible, run_layers
from blueprint.state import RunHistory, StateDir, new_run_id

log = logging.getLogger(__name__)

RENEW_PLAYBOOK = "kubernetes_certs_renew"


@dataclass
class RenewOutcome:
    run_id: str
    result: PlaybookResult


def renew_certificates(loaded: LoadedSite, state: StateDir) -> RenewOutcome:
    """Renew on every node of the cluster (control planes first); fetch the new kubeconfig."""
    if not any(layer.name == LAYER for layer in loaded.blueprint.layers):
        msg = f"{loaded.site_file}: blueprint {loaded.blueprint.name} has no kubernetes layer"
        raise BadInput(msg)
    nodes, _ = cluster_nodes(loaded, state)
    if not nodes:
        msg = f"site {loaded.site.name} has no deployed cluster in {state.root}; run deploy"
        raise BadInput(msg)
    require_ansible()
    run_id = new_run_id("certs-renew")
    with state.lock():
        inventory_dir = render_inventory(loaded, state)
        check_nodes_reachable([node for node in loaded.site.nodes if node.name in nodes],
                              state.root / "ssh_config")
        history = RunHistory(state)
        run_dir = state.run_dir(run_id)
        history.start(run_id, loaded.site.name, "certs-renew", [LAYER], run_dir)
        try:
            [result] = run_layers({RENEW_PLAYBOOK: []}, inventory_dir, run_dir,
                                  state.facts_dir, secret_vars=cluster_secrets(state, create=False),
                                  limit=",".join(nodes))
            history.record_layer(run_id, RENEW_PLAYBOOK, result.stats)
            if not result.ok:
                first = result.failures[0] if result.failures else None
                where = f" on {first.node}: task '{first.task}': {first.diff}" if first else ""
                msg = (f"certs renew failed{where}; log: {result.stdout_file}; nodes before it "
                       "have new certificates: fix it and run it again")
                raise DeployFailed(msg)
        except BaseException as exc:
            history.finish(run_id, "failed", int(exit_code_of(exc)))
            raise
        else:
            history.finish(run_id, "ok", ExitCode.OK)
        finally:
            history.close()
    return RenewOutcome(run_id, result)
