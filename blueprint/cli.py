"""The `blueprint` command: one verb per operator task, each working on a site."""

from __future__ import annotations

import json
import logging
import sys
import traceback
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from rich.table import Table

from blueprint import __version__
from blueprint.console import CONSOLE, ERR_CONSOLE, setup_logging
from blueprint.errors import BlueprintError, ExitCode
from blueprint.inventory import secret_variables
from blueprint.kube.cli import import_ as kube_import
from blueprint.kube.cli import reset as kube_reset
from blueprint.lab.cli import lab
from blueprint.loader import LoadedSite, load_site
from blueprint.secrets import REDACTOR, load_site_secrets
from blueprint.state import RunHistory, StateDir

if TYPE_CHECKING:
    from blueprint.playbook import PlaybookResult

log = logging.getLogger(__name__)

EXIT_CODES_HELP = """Exit codes: 0 ok, 1 validation failed, 2 bad input, 3 deploy or provision
failed, 4 environment missing (a tool, privileges), 130 interrupted."""

site_argument = click.argument("site")
state_dir_option = click.option(
    "--state-dir", type=click.Path(path_type=Path), default=None,
    help="State folder (default: .state/ beside the site file).",
)
layer_option = click.option(
    "--layer", "layers", multiple=True, help="Only this layer (repeatable), in blueprint order."
)


def _open_site(
    site: str, state_dir: Path | None
) -> tuple[LoadedSite, StateDir, dict[str, Any]]:
    loaded = load_site(site)
    secrets = load_site_secrets(loaded.site_dir)
    # Credentials for a host no mirror uses are refused before any verb touches a node.
    secret_variables(loaded, secrets)
    return loaded, StateDir.for_site(loaded.site_dir, state_dir), secrets


@click.group(epilog=EXIT_CODES_HELP)
@click.version_option(__version__, prog_name="blueprint")
@click.option("-v", "--verbose", is_flag=True, help="Show the phases of each step.")
@click.option("--debug", is_flag=True, help="Show command lines and tracebacks.")
@click.pass_context
def cli(ctx: click.Context, verbose: bool, debug: bool) -> None:
    """Edge AI blueprint installer: deploy a blueprint to a site and validate it."""
    ctx.obj = {"debug": debug}
    setup_logging(verbose, debug)


@cli.command()
@click.argument("kind", type=click.Choice(["site", "blueprint"]), default="site")
def schema(kind: str) -> None:
    """Print the JSON Schema of a site file or a blueprint file."""
    from blueprint.models import Blueprint, Site

    model = Site if kind == "site" else Blueprint
    click.echo(json.dumps(model.model_json_schema(), indent=2))


@cli.command()
@site_argument
@layer_option
@state_dir_option
def plan(site: str, layers: tuple[str, ...], state_dir: Path | None) -> None:
    """Check the site, then show per layer and node what a deploy would change."""
    from blueprint.deploy import deploy as run_deploy

    loaded, state, secrets = _open_site(site, state_dir)
    outcome = run_deploy(loaded, state, CONSOLE, requested=list(layers), check=True,
                         secret_vars=secret_variables(loaded, secrets))
    for result in outcome.results:
        CONSOLE.print(f"[bold]layer {result.playbook}[/bold]: "
                      f"{result.changed} change(s) on {len(result.stats)} node(s)")
        for change in result.changes:
            CONSOLE.print(f"  {change.node}: {change.task}", highlight=False)
            for line in change.diff.splitlines()[:20]:
                CONSOLE.print(f"      {line}", highlight=False, markup=False)
    _print_notes(outcome.results)
    CONSOLE.print(f"plan: {outcome.changed} change(s) would be made")


@cli.command()
@site_argument
@layer_option
@state_dir_option
@click.option("--stock-ansible", is_flag=True, hidden=True,
              help="Run with Ansible's stock settings (for benchmarks).")
def deploy(site: str, layers: tuple[str, ...], state_dir: Path | None,
           stock_ansible: bool) -> None:
    """Preflight, then deploy the blueprint's host layers to the site."""
    from blueprint.deploy import deploy as run_deploy

    loaded, state, secrets = _open_site(site, state_dir)
    outcome = run_deploy(loaded, state, CONSOLE, requested=list(layers), stock=stock_ansible,
                         secret_vars=secret_variables(loaded, secrets))
    table = Table(title=f"deploy {outcome.run_id}")
    for column in ("layer", "node", "ok", "changed", "failed", "unreachable"):
        table.add_column(column)
    for result in outcome.results:
        for node, counts in sorted(result.stats.items()):
            table.add_row(result.playbook, node, *(str(counts[key]) for key in
                                                   ("ok", "changed", "failed", "unreachable")))
    CONSOLE.print(table)
    _print_notes(outcome.results)
    CONSOLE.print(f"deploy: ok, {outcome.changed} change(s); log in {outcome.run_dir}")


def _print_notes(results: list[PlaybookResult]) -> None:
    """What the roles reported for the operator: skipped layers and why, host-owned settings."""
    for result in results:
        for note in result.notes:
            CONSOLE.print(f"  note: {note.node}: {result.playbook}: {note.diff}", highlight=False,
                          markup=False)


@cli.command()
@site_argument
@state_dir_option
@click.option("--layer", "layers", multiple=True,
              help="Only checks of this layer (os, security, runtime, ...); repeatable.")
@click.option("--check", "checks", multiple=True, help="Only this check id; repeatable.")
def validate(site: str, state_dir: Path | None, layers: tuple[str, ...],
             checks: tuple[str, ...]) -> None:
    """Run the blueprint's validation suite on the site: one verdict, JUnit, JSON, HTML."""
    from blueprint.errors import ValidationFailed
    from blueprint.validation import validate_site

    loaded, state, _ = _open_site(site, state_dir)
    report = validate_site(loaded, state, layers=list(layers) or None,
                           checks=list(checks) or None)
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
    CONSOLE.print(f"verdict: {report.verdict} ({summary})")
    CONSOLE.print(f"report: {report.paths.html}")
    if report.exit_code != ExitCode.OK:
        msg = f"site {loaded.site.name} failed validation; see {report.paths.html}"
        raise ValidationFailed(msg)


@cli.command()
@site_argument
@state_dir_option
@click.option("--limit", default=10, show_default=True, help="How many runs to show.")
def runs(site: str, state_dir: Path | None, limit: int) -> None:
    """Show the site's run history."""
    loaded = load_site(site)
    history = RunHistory(StateDir.for_site(loaded.site_dir, state_dir))
    table = Table(title=f"runs of {loaded.site.name}")
    for column in ("id", "verb", "layers", "started", "finished", "status", "exit"):
        # The run id names the run's folder: it is never cut, whatever the width.
        table.add_column(column, no_wrap=column == "id", overflow="fold")
    for run in history.runs(limit):
        table.add_row(run["id"], run["verb"], ", ".join(json.loads(run["layers"])),
                      run["started"], run["finished"] or "", run["status"],
                      str(run["exit_code"] if run["exit_code"] is not None else ""))
    history.close()
    CONSOLE.print(table)


def main(argv: list[str] | None = None) -> Any:
    """Entry point: expected errors as one line and their exit code, tracebacks on --debug."""
    args = sys.argv[1:] if argv is None else argv
    debug = "--debug" in args
    try:
        cli.main(args=args, prog_name="blueprint", standalone_mode=False)
    except click.exceptions.Abort:
        ERR_CONSOLE.print("interrupted")
        sys.exit(ExitCode.INTERRUPTED)
    except click.ClickException as exc:
        exc.show()
        sys.exit(ExitCode.BAD_INPUT)
    except KeyboardInterrupt:
        ERR_CONSOLE.print("interrupted")
        sys.exit(ExitCode.INTERRUPTED)
    except BlueprintError as exc:
        if debug:
            ERR_CONSOLE.print(REDACTOR.redact(traceback.format_exc()), markup=False)
        for line in str(exc).splitlines():
            ERR_CONSOLE.print(f"error: {REDACTOR.redact(line)}", markup=False)
        sys.exit(exc.exit_code)
    except Exception as exc:  # an unexpected fault: one line, the traceback only with --debug
        if debug:
            ERR_CONSOLE.print(REDACTOR.redact(traceback.format_exc()), markup=False)
        message = REDACTOR.redact(f"{type(exc).__name__}: {exc}")
        ERR_CONSOLE.print(f"error: unexpected {message} (run with --debug for the traceback)",
                          markup=False)
        sys.exit(ExitCode.DEPLOY_FAILED)
    sys.exit(ExitCode.OK)


cli.add_command(lab)
cli.add_command(kube_reset)
cli.add_command(kube_import)

if __name__ == "__main__":
    main()
