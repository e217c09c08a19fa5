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


def _open(site: str, state_dir: Path | None) -> tuple[Any, Any, dict[str, Any]]:
    # Imported here: blueprint.cli registers this module's commands.
    from blueprint.cli import _open_site

    return _open_site(site, state_dir)


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


_input_file = click.Path(dir_okay=False, path_type=Path)


@click.command()
@click.argument("site", required=False)
@click.option("--state-dir", type=click.Path(path_type=Path), default=None,
              help="State folder (default: .state/ beside the site file; with --kubeconfig "
                   "alone: .state/cluster-<context> here).")
@click.option("--kubeconfig", type=_input_file, default=None,
              help="The cluster's kubeconfig (default: the one a deploy left in the state "
                   "folder). Without SITE: validate this cluster alone (Kubernetes and AI "
                   "layers), wherever it was installed from.")
@click.option("--context", "kube_context", default=None,
              help="The kubeconfig's context to use (default: its current one).")
@click.option("--ai-endpoints", type=_input_file, default=None,
              help="The AI platform's endpoints file (docs/ai-checks.md; default: "
                   "$BLUEPRINT_AI_ENDPOINTS, then ai-endpoints.yaml in the state folder).")
@click.option("--suite", default=None,
              help="With --kubeconfig and no SITE: the suite (name or file; default ai-edge).")
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
def validate(site: str | None, state_dir: Path | None, kubeconfig: Path | None,
             kube_context: str | None, ai_endpoints: Path | None, suite: str | None,
             layers: tuple[str, ...], checks: tuple[str, ...], include_optional: bool,
             junit: Path | None, json_path: Path | None, html: Path | None,
             list_only: bool, compare: bool) -> None:
    """Run the blueprint's validation suite on the site: one verdict, JUnit, JSON, HTML.

    With --kubeconfig and no SITE, run the Kubernetes and AI checks against that cluster.
    """
    from blueprint.validation import listing, validate_cluster, validate_site

    for path, option in ((kubeconfig, "--kubeconfig"), (ai_endpoints, "--ai-endpoints")):
        if path is not None and not path.is_file():
            msg = f"{option} {path}: no such file"
            raise BadInput(msg)
    if site is None:
        if kubeconfig is None:
            msg = "give a SITE (its site file or name), or --kubeconfig FILE to validate a cluster"
            raise BadInput(msg)
        if list_only:
            msg = "--list needs a SITE"
            raise BadInput(msg)
        _check_writable(junit, json_path, html)
        from blueprint.state import StateDir
        from blueprint.validation import cluster_run_name, kubeconfig_context

        context = kubeconfig_context(kubeconfig, kube_context)
        name = cluster_run_name(context)
        state = StateDir.for_site(Path.cwd(), state_dir or Path(".state") / name)
        report = validate_cluster(kubeconfig, state, suite=suite or "ai-edge",
                                  context=context, ai_endpoints=ai_endpoints,
                                  layers=list(layers) or None, checks=list(checks) or None,
                                  include_optional=include_optional)
        site_name = name
    else:
        if suite is not None:
            msg = "--suite goes with --kubeconfig and no SITE (a site's blueprint names its suite)"
            raise BadInput(msg)
        loaded, state, secrets = _open(site, state_dir)
        site_name = loaded.site.name
        if list_only:
            _print_listing(listing(loaded, state, layers=list(layers) or None,
                                   checks=list(checks) or None,
                                   include_optional=include_optional), site_name)
            return
        _check_writable(junit, json_path, html)
        report = validate_site(loaded, state, layers=list(layers) or None,
                               checks=list(checks) or None, include_optional=include_optional,
                               kubeconfig=kubeconfig, kube_context=kube_context,
                               ai_endpoints=ai_endpoints, secrets=secrets)
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
        summary += (f"; {mandatory_skipped} mandatory results skipped or not applicable here, "
                    "each with its reason in the report")
    for check_id, node in sorted(report.failed_checks() | report.errored_checks()):
        CONSOLE.print(f"  failed: {check_id} on {node}", highlight=False)
    if compare:
        _print_changes(report.changes, site_name)
    CONSOLE.print(f"verdict: {report.verdict} ({summary})")
    CONSOLE.print(f"report: {report.paths.html}")
    if report.exit_code != ExitCode.OK:
        msg = f"site {site_name} failed validation; see {report.paths.html}"
        raise ValidationFailed(msg)


def _print_listing(rows: list[Any], site_name: str) -> None:
    table = Table(title=f"checks of {site_name}")
    for column in ("check", "layer", "kind", "runs on", "runs here"):
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(row.check_id, row.layer, row.kind,
                      "each node" if row.scope == "node" else "the cluster, once",
                      "yes" if row.applicable else f"no: {row.reason}")
    CONSOLE.print(table)
    node_runs = sum(1 for row in rows if row.applicable and row.scope == "node")
    cluster_runs = sum(1 for row in rows if row.applicable and row.scope != "node")
    CONSOLE.print(f"{node_runs + cluster_runs} of {len(rows)} checks would run: {node_runs} on "
                  f"each node, {cluster_runs} once against the cluster")


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

    loaded, state, _ = _open(site, state_dir)
    _check_writable(output)
    if output is None:
        stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
        output = state.root / "support" / f"support-{loaded.site.name}-{stamp}.tar.gz"
    ssh_config = render_ssh_config(loaded.site, state)
    path = make_bundle(loaded.site.name, loaded.site_file, state.root, ssh_config,
                       [node.name for node in loaded.site.nodes], output)
    CONSOLE.print(f"support bundle: {path}")
