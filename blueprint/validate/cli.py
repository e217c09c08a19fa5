"""`blueprint validate` and `blueprint support-bundle` from the command line."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any

import click
from rich.table import Table

from blueprint.console import CONSOLE
from blueprint.errors import BadInput, ExitCode, ValidationFailed

log = logging.getLogger(__name__)

_output_path = click.Path(dir_okay=False, path_type=Path)


def _open(site: str, state_dir: Path | None) -> tuple[Any, Any]:
    # Imported here: blueprint.cli registers this module's commands.
    from blueprint.cli import _open_site

    loaded, state, _ = _open_site(site, state_dir)
    return loaded, state


def _copy_to(source: Path, destination: Path | None) -> None:
    if destination is None:
        return
    try:
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, destination)
    except OSError as exc:
        msg = f"{destination}: cannot write the report there: {exc.strerror}"
        raise BadInput(msg) from exc


def _check_writable(*paths: Path | None) -> None:
    """An output path that cannot be written is bad input, found before any node is touched."""
    for path in paths:
        if path is None:
            continue
        folder = path.parent
        if folder.exists() and not folder.is_dir():
            msg = f"{path}: {folder} is not a folder"
            raise BadInput(msg)


@click.command()
@click.argument("site")
@click.option("--state-dir", type=click.Path(path_type=Path), default=None,
              help="State folder (default: .state/ beside the site file).")
@click.option("--layer", "layers", multiple=True,
              help="Only checks of this layer (os, security, runtime, ...); repeatable.")
@click.option("--check", "checks", multiple=True,
              help="Only this check id (optional ones too); repeatable.")
@click.option("--include-optional", is_flag=True,
              help="Also run the suite's optional checks (reported, never fail the verdict).")
@click.option("--junit", type=_output_path, help="Also write all layers' JUnit XML here.")
@click.option("--json", "json_path", type=_output_path, help="Also write summary.json here.")
@click.option("--html", type=_output_path, help="Also write the HTML report here.")
@click.option("--list", "list_only", is_flag=True,
              help="List the checks and whether they would run here; touch no node.")
@click.option("--compare", is_flag=True,
              help="Show what changed since the site's previous validation run.")
def validate(site: str, state_dir: Path | None, layers: tuple[str, ...],
             checks: tuple[str, ...], include_optional: bool, junit: Path | None,
             json_path: Path | None, html: Path | None, list_only: bool,
             compare: bool) -> None:
    """Run the blueprint's validation suite on the site: one verdict, JUnit, JSON, HTML."""
    from blueprint.validation import listing, validate_site

    loaded, state = _open(site, state_dir)
    if list_only:
        _print_listing(listing(loaded, state, layers=list(layers) or None,
                               checks=list(checks) or None,
                               include_optional=include_optional), loaded.site.name)
        return
    _check_writable(junit, json_path, html)

    report = validate_site(loaded, state, layers=list(layers) or None,
                           checks=list(checks) or None, include_optional=include_optional)
    out_dir = report.paths.json.parent
    _copy_to(out_dir / "junit.xml", junit)
    _copy_to(report.paths.json, json_path)
    _copy_to(report.paths.html, html)

    counts: dict[str, int] = {}
    for result in report.results:
        counts[str(result.status)] = counts.get(str(result.status), 0) + 1
    summary = ", ".join(f"{count} {status}" for status, count in sorted(counts.items()))
    mandatory_skipped = sum(1 for r in report.results
                            if r.mandatory and str(r.status) in ("skipped", "not_applicable"))
    if mandatory_skipped:
        summary += f"; {mandatory_skipped} mandatory results not run here, see the report"
    for check_id, node in sorted(report.failed_checks() | report.errored_checks()):
        CONSOLE.print(f"  failed: {check_id} on {node}", highlight=False)
    if compare:
        _print_changes(report.changes, loaded.site.name)
    CONSOLE.print(f"verdict: {report.verdict} ({summary})")
    CONSOLE.print(f"report: {report.paths.html}")
    if report.exit_code != ExitCode.OK:
        msg = f"site {loaded.site.name} failed validation; see {report.paths.html}"
        raise ValidationFailed(msg)


def _print_listing(rows: list[Any], site_name: str) -> None:
    table = Table(title=f"checks of {site_name}")
    for column in ("check", "layer", "kind", "runs here"):
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(row.check_id, row.layer, row.kind,
                      "yes" if row.applicable else f"no: {row.reason}")
    CONSOLE.print(table)
    runs = sum(1 for row in rows if row.applicable)
    CONSOLE.print(f"{runs} of {len(rows)} checks would run on each node")


def _print_changes(changes: dict[str, Any] | None, site_name: str) -> None:
    if changes is None:
        CONSOLE.print(f"compare: no earlier validation run of {site_name} to compare with")
        return
    CONSOLE.print(f"compare: since run {changes['previous_run']} "
                  f"({changes['previous_verdict']}):", highlight=False)
    labels = (("newly_failing", "newly failing"), ("newly_passing", "newly passing"),
              ("other_changes", "changed"), ("new_checks", "new"),
              ("removed_checks", "removed"))
    total = 0
    for key, label in labels:
        for entry in changes[key]:
            total += 1
            was = f"{entry['was']} -> " if "was" in entry else ""
            CONSOLE.print(f"  {label}: {entry['check']} on {entry['node']} "
                          f"({was}{entry['status']})", highlight=False)
    if total == 0:
        CONSOLE.print("  no change")


@click.command(name="support-bundle")
@click.argument("site")
@click.option("--state-dir", type=click.Path(path_type=Path), default=None,
              help="State folder (default: .state/ beside the site file).")
@click.option("--output", "-o", type=_output_path, default=None,
              help="Archive to write (default: <state>/support/support-<site>-<time>.tar.gz).")
def support_bundle(site: str, state_dir: Path | None, output: Path | None) -> None:
    """Collect logs, journals, configs and the last results of every node into one archive.

    Secrets of the site's vault and credential-looking settings are masked in every file.
    """
    import datetime as dt

    from blueprint.inventory import render_ssh_config
    from blueprint.validate.bundle import make_bundle

    loaded, state = _open(site, state_dir)
    _check_writable(output)
    if output is None:
        stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
        output = state.root / "support" / f"support-{loaded.site.name}-{stamp}.tar.gz"
    ssh_config = render_ssh_config(loaded.site, state)
    path = make_bundle(loaded.site.name, loaded.site_file, state.root, ssh_config,
                       [node.name for node in loaded.site.nodes], output)
    CONSOLE.print(f"support bundle: {path}")
