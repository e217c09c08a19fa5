"""CLI verbs of the Kubernetes layer: reset, and import of other installers' inventories."""

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
    if not yes:
        if not sys.stdin.isatty():
            msg = ("reset deletes the cluster and its data; confirm with --yes when not at a "
                   "terminal")
            raise BadInput(msg)
        click.confirm(
            f"Remove Kubernetes and all cluster data from {len(loaded.site.nodes)} node(s) of "
            f"site {loaded.site.name} ({names})?", abort=True)
    state = StateDir.for_site(loaded.site_dir, state_dir)
    outcome = reset_kubernetes(loaded, state)
    changed = sum(counts["changed"] for counts in outcome.result.stats.values())
    CONSOLE.print(f"reset: ok, {changed} change(s) on {len(outcome.result.stats)} node(s); "
                  f"log in {outcome.result.stdout_file}")


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
