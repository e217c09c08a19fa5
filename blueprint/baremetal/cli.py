"""Bare-metal verbs: discover (and, as they land, boot artifacts, boot server, provision)."""

from __future__ import annotations

from pathlib import Path

import click
from rich.table import Table

from blueprint.console import CONSOLE
from blueprint.errors import BadInput, DeployFailed, ValidationFailed
from blueprint.loader import LoadedSite, load_site
from blueprint.secrets import load_site_secrets
from blueprint.state import StateDir

state_dir_option = click.option(
    "--state-dir", type=click.Path(path_type=Path), default=None,
    help="State folder (default: .state/ beside the site file).",
)
STATUS_STYLE = {"ok": "green", "deviation": "yellow", "unknown": "cyan", "error": "red"}


@click.command()
@click.argument("site")
@state_dir_option
@click.option("--nodes", "nodes", multiple=True, help="Only this node (repeatable).")
@click.option("--all", "show_all", is_flag=True, help="Also list the checks that passed.")
@click.option("--parallel", default=8, show_default=True, help="BMCs read at once.")
@click.option("--write", is_flag=True,
              help="Write the boot MACs the BMCs report into the site file (where unset).")
@click.option("--boot-nic", "boot_nics", multiple=True, metavar="NODE=NIC",
              help="With --write: the node's boot NIC (NIC id or MAC) when it has several.")
@click.option("--force", is_flag=True,
              help="With --write: also replace a boot MAC the BMC does not report.")
def discover(site: str, state_dir: Path | None, nodes: tuple[str, ...], show_all: bool,
             parallel: int, write: bool, boot_nics: tuple[str, ...], force: bool) -> None:
    """Read each node's hardware from its BMC and list how it differs from the site.

    With --write, boot MACs go into the site file (comments and layout kept): where the site
    has none and the choice is clear (one NIC, or --boot-nic). A MAC the site sets that the
    BMC does not report is shown and kept unless --force is given.

    Exit 1 when a node deviates from the site file or the blueprint's hardware profile,
    3 when a BMC could not be read.
    """
    from blueprint.baremetal.discover import discover as run_discover
    from blueprint.baremetal.sitefile import fill_boot_macs, parse_boot_nics

    if (boot_nics or force) and not write:
        msg = "--boot-nic and --force only go with --write"
        raise BadInput(msg)
    chosen = parse_boot_nics(boot_nics)
    loaded = load_site(site)
    secrets = load_site_secrets(loaded.site_dir)
    state = StateDir.for_site(loaded.site_dir, state_dir)
    with state.lock():
        result = run_discover(loaded, secrets, state, nodes=list(nodes) or None,
                              parallel=parallel)
        changes = fill_boot_macs(loaded, result, chosen, force) if write else []

    table = Table(title=f"discover {loaded.site.name}")
    for column in ("node", "check", "expected", "found", "status"):
        table.add_column(column, overflow="fold")
    for finding in result.findings:
        if finding.status == "ok" and not show_all:
            continue
        style = STATUS_STYLE[finding.status]
        table.add_row(finding.node, finding.check, finding.expected, finding.found,
                      f"[{style}]{finding.status}[/{style}]")
    CONSOLE.print(table)
    if changes:
        written = Table(title=f"boot MACs in {loaded.site_file}")
        for column in ("node", "site file", "BMC", "action", "why"):
            written.add_column(column, overflow="fold")
        for change in changes:
            written.add_row(change.node, change.site_value or "-", change.bmc_value or "-",
                            change.action, change.detail)
        CONSOLE.print(written)
    counts = {status: sum(1 for f in result.findings if f.status == status)
              for status in ("ok", "deviation", "unknown", "error")}
    CONSOLE.print(f"discover: {len(result.inventories)} node(s) read; "
                  + ", ".join(f"{count} {status}" for status, count in counts.items()))
    if result.errors:
        msg = f"{len(result.errors)} BMC(s) could not be read; see the table above"
        raise DeployFailed(msg)
    if result.deviations:
        msg = (f"{len(result.deviations)} deviation(s) from {loaded.site_file} and blueprint "
               f"{loaded.blueprint.name}'s hardware profile")
        raise ValidationFailed(msg)


@click.group(name="boot-server")
def boot_server() -> None:
    """The site's boot server: dnsmasq (DHCP by MAC, TFTP) and HTTP for boot artifacts."""


def _boot_site(site: str, state_dir: Path | None) -> tuple[LoadedSite, StateDir]:
    loaded = load_site(site)
    return loaded, StateDir.for_site(loaded.site_dir, state_dir)


@boot_server.command()
@click.argument("site")
@state_dir_option
@click.option("--nodes", "nodes", multiple=True, help="Only this node (repeatable).")
def render(site: str, state_dir: Path | None, nodes: tuple[str, ...]) -> None:
    """Render the boot artifacts into the state folder, without serving them."""
    from blueprint.baremetal.render import missing_boot_files, render_boot_artifacts

    loaded, state = _boot_site(site, state_dir)
    paths = render_boot_artifacts(loaded, state, list(nodes) or None)
    CONSOLE.print(f"boot artifacts: {paths.root}")
    assert loaded.site.provision is not None
    for path in missing_boot_files(paths, loaded.site.provision.os):
        CONSOLE.print(f"  still missing (put it there before provisioning): {path}")


@boot_server.command()
@click.argument("site")
@state_dir_option
def start(site: str, state_dir: Path | None) -> None:
    """Render the artifacts and start dnsmasq and the HTTP server."""
    from blueprint.baremetal import bootserver

    loaded, state = _boot_site(site, state_dir)
    with state.lock():
        server = bootserver.start(loaded, state)
    CONSOLE.print(f"boot server: dnsmasq pid {server.dnsmasq_pid}, http pid {server.http_pid} "
                  f"on {server.interface} (http://{server.address}:{server.port}/)")


@boot_server.command()
@click.argument("site")
@state_dir_option
def stop(site: str, state_dir: Path | None) -> None:
    """Stop the site's dnsmasq and HTTP server, by the PIDs it recorded."""
    from blueprint.baremetal import bootserver

    loaded, state = _boot_site(site, state_dir)
    stopped = bootserver.stop(loaded, state)
    CONSOLE.print(f"boot server: stopped {', '.join(stopped) or 'nothing (not running)'}")


@boot_server.command()
@click.argument("site")
@state_dir_option
def status(site: str, state_dir: Path | None) -> None:
    """Say whether the site's boot server processes run."""
    from blueprint.baremetal import bootserver

    loaded, state = _boot_site(site, state_dir)
    for name, running in bootserver.status(loaded, state).items():
        CONSOLE.print(f"{name}: {'running' if running else 'stopped'}")


@click.command()
@click.argument("site")
@state_dir_option
@click.option("--nodes", "nodes", multiple=True, help="Only this node (repeatable).")
@click.option("--force", is_flag=True,
              help="Install again: also nodes provisioned before or answering SSH.")
@click.option("--parallel", default=4, show_default=True, help="Nodes provisioned at once.")
@click.option("--power-timeout", default=300.0, show_default=True,
              help="Seconds for a BMC to report power on.")
@click.option("--ssh-timeout", default=3600.0, show_default=True,
              help="Seconds per node for the install to end with an SSH login.")
@click.option("--retries", default=1, show_default=True,
              help="Retries of a node's boot override and power cycle on a BMC fault.")
@click.option("--apply-bios", is_flag=True,
              help="Set the hardware profile's BIOS attributes that differ, before the install.")
def provision(site: str, state_dir: Path | None, nodes: tuple[str, ...], force: bool,
              parallel: int, power_timeout: float, ssh_timeout: float, retries: int,
              apply_bios: bool) -> None:
    """Install the OS on the site's nodes: network boot through the BMC, wait for SSH.

    A node provisioned by an earlier run, or one that already answers SSH, is left alone
    unless --force is given. Exit 3 when a node failed.
    """
    from blueprint.baremetal.provision import Settings
    from blueprint.baremetal.provision import provision as run_provision

    loaded = load_site(site)
    secrets = load_site_secrets(loaded.site_dir)
    state = StateDir.for_site(loaded.site_dir, state_dir)
    settings = Settings(force=force, parallel=parallel, power_timeout=power_timeout,
                        ssh_timeout=ssh_timeout, retries=retries,
                        poll=min(5.0, max(0.5, ssh_timeout / 20)), apply_bios=apply_bios)
    outcome = run_provision(loaded, secrets, state, list(nodes) or None, settings)

    table = Table(title=f"provision {outcome.run_id}")
    for column in ("node", "result", "detail", "seconds", "serial console"):
        table.add_column(column, overflow="fold")
    styles = {"provisioned": "green", "skipped": "cyan", "failed": "red"}
    for node in outcome.nodes:
        style = styles[node.result]
        table.add_row(node.node, f"[{style}]{node.result}[/{style}]", node.detail,
                      f"{node.seconds:g}", node.console or "-")
    CONSOLE.print(table)
    if outcome.failed:
        msg = f"{len(outcome.failed)} node(s) failed to provision; see the table above"
        raise DeployFailed(msg)
    CONSOLE.print(f"provision: ok; {sum(n.result == 'provisioned' for n in outcome.nodes)} "
                  "node(s) installed")
