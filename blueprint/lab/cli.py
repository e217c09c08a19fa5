"""`blueprint lab up|status|down`: the local lab from the command line."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import click

from blueprint.lab.lab import (
    DEFAULT_MIRROR_PORT,
    DEFAULT_NAME,
    DEFAULT_NODES,
    DEFAULT_SITE_DIR,
    DEFAULT_SUBNET,
    lab_down,
    lab_status,
    lab_up,
)

log = logging.getLogger(__name__)


@click.group(name="lab")
def lab() -> None:
    """The local lab: Debian nodes with their own systemd on this machine (needs root)."""


@lab.command()
@click.option("--name", default=DEFAULT_NAME, show_default=True, help="Lab name (DNS label).")
@click.option("--nodes", default=DEFAULT_NODES, show_default=True, type=int, help="Node count.")
@click.option("--subnet", default=DEFAULT_SUBNET, show_default=True, help="Nodes' IPv4 subnet.")
@click.option(
    "--site-dir",
    default=str(DEFAULT_SITE_DIR),
    show_default=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Where site.yaml, the lab key and known_hosts are written.",
)
@click.option("--mirror-port", default=DEFAULT_MIRROR_PORT, show_default=True, type=int)
def up(name: str, nodes: int, subnet: str, site_dir: Path, mirror_port: int) -> None:
    """Bring the lab up; on a running lab nothing changes."""
    started = time.monotonic()
    state = lab_up(name, nodes=nodes, subnet=subnet, site_dir=site_dir, mirror_port=mirror_port)
    took = time.monotonic() - started
    if state.changes:
        click.echo(f"lab {name} is up in {took:.0f} s; created: {', '.join(state.changes)}")
    else:
        click.echo(f"lab {name} was already up; nothing changed")
    for node in state.nodes:
        click.echo(f"  {node.name:<14} {node.address:<15} {', '.join(node.roles)}")
    click.echo(f"site file: {state.site_file}")
    click.echo(f"mirror:    {state.apt_proxy}")


@lab.command()
@click.option("--name", default=DEFAULT_NAME, show_default=True, help="Lab name.")
def status(name: str) -> None:
    """Show whether the lab's nodes and mirror run."""
    report = lab_status(name)
    if not report.exists:
        click.echo(f"lab {name} is not up")
        return
    click.echo(f"lab {name}: mirror {'running' if report.mirror_running else 'stopped'}")
    for node in report.nodes:
        state = "running" if node.running else "stopped"
        click.echo(f"  {node.name:<14} {node.address:<15} {state:<8} pid {node.nspawn_pid or '-'}")


@lab.command()
@click.option("--name", default=DEFAULT_NAME, show_default=True, help="Lab name.")
def down(name: str) -> None:
    """Stop the lab's nodes and mirror and remove all it created; safe to repeat."""
    started = time.monotonic()
    lab_down(name)
    click.echo(f"lab {name} is down ({time.monotonic() - started:.1f} s)")
