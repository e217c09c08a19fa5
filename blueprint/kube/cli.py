"""CLI verbs of the Kubernetes layer: reset, remove-node, upgrade, certs, inventory imports."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from blueprint.console import CONSOLE
from blueprint.errors import BadInput


@click.command()
@click.argument("site")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.option("--state-dir", type=click.Path(path_type=Path), default=None,
              help="State folder (default: .state/ beside the site file).")
def reset(site: str, yes: bool, state_dir: Path | None) -> None:
    """Remove Kubernetes (k3s or kubeadm) and its data from every node of the site."""
    from blueprint.kube.reset import reset_kubernetes
    from blueprint.loader import load_site
    from blueprint.state import StateDir

    loaded = load_site(site)
    names = ", ".join(node.name for node in loaded.site.nodes)
    _confirm(yes, f"Remove Kubernetes and all cluster data from {len(loaded.site.nodes)} "
                  f"node(s) of site {loaded.site.name} ({names})?",
             "reset deletes the cluster and its data")
    state = StateDir.for_site(loaded.site_dir, state_dir)
    outcome = reset_kubernetes(loaded, state)
    changed = sum(counts["changed"] for counts in outcome.result.stats.values())
    CONSOLE.print(f"reset: ok, {changed} change(s) on {len(outcome.result.stats)} node(s); "
                  f"log in {outcome.result.stdout_file}")


def _confirm(yes: bool, question: str, what: str) -> None:
    """Ask at a terminal; refuse off one without --yes (nothing changed yet)."""
    if yes:
        return
    if not sys.stdin.isatty():
        msg = f"{what}; confirm with --yes when not at a terminal"
        raise BadInput(msg)
    click.confirm(question, abort=True)


@click.command(name="remove-node")
@click.argument("site")
@click.argument("node")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.option("--force", is_flag=True,
              help="Drain ignoring PodDisruptionBudgets and unmanaged pods, go on when the "
                   "drain fails, and remove a node that does not answer SSH (no drain, no "
                   "host cleanup).")
@click.option("--drain-timeout", default=300, show_default=True, type=click.IntRange(1),
              help="Seconds the drain may take.")
@click.option("--state-dir", type=click.Path(path_type=Path), default=None,
              help="State folder (default: .state/ beside the site file).")
def remove_node(site: str, node: str, yes: bool, force: bool, drain_timeout: int,
                state_dir: Path | None) -> None:
    """Drain NODE, delete it from the cluster, clean its host and forget it.

    Refuses, before any change, to remove the last control plane or a control plane whose
    removal would leave etcd without quorum. Removing the node from the site file stays
    yours to do afterwards.
    """
    from blueprint.kube.cluster import init_node
    from blueprint.kube.removal import plan_removal, quorum, remove_node
    from blueprint.loader import load_site
    from blueprint.state import StateDir

    loaded = load_site(site)
    state = StateDir.for_site(loaded.site_dir, state_dir)
    plan = plan_removal(loaded, state, node)
    first = init_node(loaded)  # before any change: the note after it must not fail
    if not plan.reachable and not force:
        msg = (f"node {node} does not answer SSH ({plan.silence}): it cannot be drained or "
               "cleaned. If it is dead, run again with --force to delete it from the cluster "
               "alone")
        raise BadInput(msg)
    if plan.control_plane:
        CONSOLE.print(f"remove-node: {node} is a control plane and etcd member: "
                      f"{plan.members_before} member(s) -> {plan.members_before - 1} "
                      f"(quorum {quorum(plan.members_before)} -> "
                      f"{quorum(plan.members_before - 1)})", highlight=False)
    steps = ("drain, clean the host, delete from the cluster" if plan.reachable
             else "no drain and no host cleanup (it does not answer SSH); delete from the "
                  "cluster")
    _confirm(yes, f"Remove node {node} from site {loaded.site.name}'s cluster ({steps})?",
             f"remove-node changes the cluster ({steps})")
    outcome = remove_node(loaded, state, plan, force=force, drain_timeout=drain_timeout)
    for note in outcome.result.notes:
        CONSOLE.print(f"  note: {note.node}: {note.diff}", highlight=False, markup=False)
    CONSOLE.print(f"remove-node: ok, {node} deleted from the cluster through {plan.via}"
                  + ("" if plan.reachable else "; its host was NOT cleaned (no SSH): wipe or "
                     "reinstall it before it runs again, or its k3s/kubelet registers it again")
                  + f"; log in {outcome.result.stdout_file}", highlight=False)
    CONSOLE.print(f"remove-node: now remove {node} from {loaded.site_file}: until then "
                  "deploy and scale would add it again", highlight=False)
    if node == first:
        CONSOLE.print(f"remove-node: {node} was the site's first control plane: once it is out "
                      "of the site file the next one takes its part in deploy's rendering "
                      "(check `blueprint plan` first), and a kubeconfig that named its address "
                      "needs a deploy to be fetched again", highlight=False)
    if plan.control_plane and (plan.members_before - 1) % 2 == 0:
        CONSOLE.print(f"remove-node: {plan.members_before - 1} control planes are left; "
                      "deploy needs an odd number: add or remove one more", highlight=False)


@click.command()
@click.argument("site")
@click.option("--plan", "plan_only", is_flag=True, help="Print the plan only; change nothing.")
@click.option("--batch", default=1, show_default=True, type=click.IntRange(1),
              help="Nodes other than control planes upgraded at a time.")
@click.option("--pause", default=0, show_default=True, type=click.IntRange(0),
              help="Seconds to wait between batches of nodes.")
@click.option("--drain-timeout", default=300, show_default=True, type=click.IntRange(1),
              help="Seconds each node's drain may take.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.option("--state-dir", type=click.Path(path_type=Path), default=None,
              help="State folder (default: .state/ beside the site file).")
def upgrade(site: str, plan_only: bool, batch: int, pause: int, drain_timeout: int,
            yes: bool, state_dir: Path | None) -> None:
    """Upgrade the cluster to the pinned version, one minor version at a time."""
    from blueprint.kube.upgrade import plan_upgrade, run_upgrade
    from blueprint.loader import load_site
    from blueprint.state import StateDir

    loaded = load_site(site)
    state = StateDir.for_site(loaded.site_dir, state_dir)
    plan = plan_upgrade(loaded, state)
    running = ", ".join(f"{node} {version}" for node, version in plan.running.items())
    recorded = (f"; last upgrade recorded {plan.recorded}" if plan.recorded
                else "; no upgrade recorded yet")
    CONSOLE.print(f"upgrade: running {running}; target {plan.target}{recorded}",
                  highlight=False)
    if not plan.steps:
        CONSOLE.print("upgrade: every node runs the target version; nothing to do")
        return
    for index, version in enumerate(plan.steps, 1):
        CONSOLE.print(f"  step {index}: {version}: control planes one at a time, then the "
                      f"other nodes {batch} at a time (drain, upgrade, uncordon)"
                      + (f", {pause} s between batches" if pause else ""), highlight=False)
    if plan_only:
        return
    _confirm(yes, f"Upgrade site {loaded.site.name} to {plan.target} in "
                  f"{len(plan.steps)} step(s)?", "upgrade drains and restarts every node")
    outcome = run_upgrade(loaded, state, plan, batch=batch, pause=pause,
                          drain_timeout=drain_timeout)
    changed = sum(result.changed for result in outcome.results)
    CONSOLE.print(f"upgrade: ok, {plan.target} on every node, {changed} change(s); log in "
                  f"{state.run_dir(outcome.run_id)}", highlight=False)


@click.group()
def certs() -> None:
    """The cluster's certificates."""


@certs.command()
@click.argument("site")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.option("--state-dir", type=click.Path(path_type=Path), default=None,
              help="State folder (default: .state/ beside the site file).")
def renew(site: str, yes: bool, state_dir: Path | None) -> None:
    """Renew the cluster's certificates, one node at a time; fetch the new kubeconfig."""
    from blueprint.kube.certs import renew_certificates
    from blueprint.loader import load_site
    from blueprint.state import StateDir

    loaded = load_site(site)
    state = StateDir.for_site(loaded.site_dir, state_dir)
    _confirm(yes, f"Renew the certificates of site {loaded.site.name}'s cluster (each node's "
                  "Kubernetes service restarts in turn)?",
             "certs renew restarts every node's Kubernetes service")
    outcome = renew_certificates(loaded, state)
    changed = sum(counts["changed"] for counts in outcome.result.stats.values())
    CONSOLE.print(f"certs renew: ok, {changed} change(s) on {len(outcome.result.stats)} "
                  f"node(s); new kubeconfig in {state.kubeconfig}; log in "
                  f"{outcome.result.stdout_file}", highlight=False)
    CONSOLE.print(f"certs renew: check them with `blueprint validate {site} --check "
                  "kubernetes.certs.expiry`", highlight=False, markup=False)


@click.group(name="import")
def import_() -> None:
    """Write a site file from another installer's inventory (kubespray, k3s-ansible)."""


def _import_command(kind: str) -> click.Command:
    @click.command(name=kind)
    @click.argument("inventory", type=click.Path(path_type=Path))
    @click.option("--output", "output", type=click.Path(path_type=Path), required=True,
                  help="Folder for the new site (site.yaml, and the vault in .state/).")
    @click.option("--name", default=None, help="Site name (default: from the file name).")
    @click.option("--blueprint", "blueprint_name", default="ai-edge", show_default=True,
                  help="Blueprint of the new site.")
    @click.option("--translate-legacy", is_flag=True,
                  help="Translate legacy group names (with a notice) instead of refusing.")
    def command(inventory: Path, output: Path, name: str | None, blueprint_name: str,
                translate_legacy: bool) -> None:
        from blueprint.kube.importer import default_site_name, import_inventory, site_yaml
        from blueprint.kube.tokens import read_state_vault, write_state_vault
        from blueprint.loader import load_site
        from blueprint.state import StateDir

        site_file = output / "site.yaml"
        if site_file.exists():
            msg = f"{site_file} exists already; choose another --output folder"
            raise BadInput(msg)
        imported = import_inventory(kind, inventory, site_name=name or default_site_name(
            inventory), blueprint=blueprint_name, translate_legacy=translate_legacy)
        output.mkdir(parents=True, exist_ok=True)
        site_file.write_text(site_yaml(imported, inventory, kind), encoding="utf-8")
        if imported.secrets:
            state = StateDir.for_site(output)
            write_state_vault(state, {**read_state_vault(state), **imported.secrets})
        # The new site must load like any other before anyone deploys it.
        try:
            load_site(site_file)
        except BadInput:
            site_file.rename(site_file.with_suffix(".rejected.yaml"))
            raise
        for notice in imported.notices:
            CONSOLE.print(f"  notice: {notice}", highlight=False, markup=False)
        CONSOLE.print(f"import: {len(imported.site['nodes'])} node(s) written to {site_file}")

    command.__doc__ = f"Write a site file from a {kind} inventory (INI or YAML)."
    return command


import_.add_command(_import_command("kubespray"))
import_.add_command(_import_command("k3s-ansible"))
