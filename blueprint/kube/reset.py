"""`blueprint reset SITE`: remove the kubernetes layer from every node, after confirmation."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from blueprint.deploy import check_nodes_reachable, mark_nodes
from blueprint.errors import BadInput, DeployFailed
from blueprint.inventory import render_inventory
from blueprint.kube.tokens import read_state_vault, write_state_vault
from blueprint.kube.variables import LAYER
from blueprint.loader import LoadedSite
from blueprint.playbook import PlaybookResult, require_ansible, run_layers
from blueprint.state import StateDir, new_run_id, recorded_run

log = logging.getLogger(__name__)

RESET_PLAYBOOK = "kubernetes_reset"
CLUSTER_SECRETS = ("kubernetes_token", "kubernetes_kubeadm_token", "kubernetes_certificate_key")


@dataclass
class ResetOutcome:
    run_id: str
    result: PlaybookResult


def reset_kubernetes(loaded: LoadedSite, state: StateDir) -> ResetOutcome:
    """Remove what the kubernetes role installed on every node; forget the cluster's secrets."""
    if not any(layer.name == LAYER for layer in loaded.blueprint.layers):
        msg = (f"{loaded.site_file}: blueprint {loaded.blueprint.name} has no kubernetes layer; "
               "there is nothing to reset")
        raise BadInput(msg)
    require_ansible()
    run_id = new_run_id("reset")
    with state.lock():
        inventory_dir = render_inventory(loaded, state)
        check_nodes_reachable(loaded.site.nodes, state.root / "ssh_config")
        run_dir = state.run_dir(run_id)
        with recorded_run(state, run_id, loaded.site.name, "reset", [LAYER]) as history:
            [result] = run_layers({RESET_PLAYBOOK: []}, inventory_dir, run_dir, state.facts_dir)
            history.record_layer(run_id, RESET_PLAYBOOK, result.stats)
            if not result.ok:
                first = result.failures[0] if result.failures else None
                where = f" on {first.node}: task '{first.task}': {first.diff}" if first else ""
                msg = f"reset failed{where}; log: {result.stdout_file}; fix it and run it again"
                raise DeployFailed(msg)

            # The old cluster is gone: its kubeconfig and join secrets mean nothing now, and
            # the next deploy makes a new cluster with new ones.
            state.kubeconfig.unlink(missing_ok=True)
            mark_nodes(state, LAYER, None)
            vault = read_state_vault(state)
            if any(name in vault for name in CLUSTER_SECRETS):
                write_state_vault(state, {key: value for key, value in vault.items()
                                          if key not in CLUSTER_SECRETS})
    return ResetOutcome(run_id, result)
