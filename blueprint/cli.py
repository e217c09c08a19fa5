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
from blueprint.baremetal.cli import boot_server, discover, provision
from blueprint.bom.cli import bom, bundle, compliance, mirror, sbom
from blueprint.console import CONSOLE, ERR_CONSOLE, setup_logging
from blueprint.errors import BadInput, BlueprintError, ExitCode
from blueprint.inventory import secret_variables
from blueprint.kube.cli import certs as kube_certs
from blueprint.kube.cli import import_ as kube_import
from blueprint.kube.cli import remove_node as kube_remove_node
from blueprint.kube.cli import reset as kube_reset
from blueprint.kube.cli import upgrade as kube_upgrade
from blueprint.lab.cli import lab
from blueprint.loader import LoadedSite, load_site
from blueprint.secrets import REDACTOR, load_site_secrets
from blueprint.state import RunHistory, StateDir
from blueprint.validate.cli import support_bundle, validate

if TYPE_CHECKING:
    from blueprint.deploy import DeployOutcome

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
    from blueprint.deploy import select_layers, wants_platform

    loaded, state, secrets = _open_site(site, state_dir)
    if wants_platform(loaded, list(layers)):
        from blueprint.platform.deploy import preview_platform, tools_ready
        from blueprint.platform.preview import platform_plan

        CONSOLE.print(platform_plan(loaded, secrets), highlight=False, markup=False)
        ready = tools_ready(loaded, state, secrets)
        if isinstance(ready, str):
            CONSOLE.print(f"layer platform: pulumi preview left out: {ready}", highlight=False,
                          markup=False)
        else:
            changes = preview_platform(ready, state, CONSOLE)
            CONSOLE.print(f"layer platform: pulumi preview: {changes}", highlight=False)
        if not select_layers(loaded, list(layers)):
            return
    outcome = run_deploy(loaded, state, CONSOLE, requested=list(layers), check=True,
                         secret_vars=secret_variables(loaded, secrets))
    for result in outcome.results:
        CONSOLE.print(f"[bold]layer {result.playbook}[/bold]: "
                      f"{result.changed} change(s) on {len(result.stats)} node(s)")
        for change in result.changes:
            CONSOLE.print(f"  {change.node}: {change.task}", highlight=False)
            for line in change.diff.splitlines()[:20]:
                CONSOLE.print(f"      {line}", highlight=False, markup=False)
    _print_notes(outcome)
    CONSOLE.print(f"plan: {outcome.changed} change(s) would be made")


@cli.command()
@site_argument
@layer_option
@state_dir_option
@click.option("--resume", is_flag=True,
              help="Run the last failed deploy's failed layer and the layers after it.")
@click.option("--stock-ansible", is_flag=True, hidden=True,
              help="Run with Ansible's stock settings (for benchmarks).")
def deploy(site: str, layers: tuple[str, ...], state_dir: Path | None, resume: bool,
           stock_ansible: bool) -> None:
    """Preflight, then deploy the blueprint's layers to the site."""
    from blueprint.deploy import deploy as run_deploy
    from blueprint.deploy import resume_layers

    loaded, state, secrets = _open_site(site, state_dir)
    requested = list(layers)
    if resume:
        if layers:
            msg = "--resume picks the layers itself; give --resume or --layer, not both"
            raise BadInput(msg)
        remaining = resume_layers(loaded, state)
        if remaining is None:
            CONSOLE.print("deploy: nothing to resume, the last deploy finished ok")
            return
        CONSOLE.print(f"deploy: resuming with layer {', '.join(remaining)}", highlight=False)
        requested = remaining
    outcome = run_deploy(loaded, state, CONSOLE, requested=requested, stock=stock_ansible,
                         secret_vars=secret_variables(loaded, secrets), site_secrets=secrets)
    _print_outcome(outcome, "deploy")


@cli.command()
@site_argument
@state_dir_option
def scale(site: str, state_dir: Path | None) -> None:
    """Add the site file's new nodes: every host layer on them, as a full deploy would."""
    from blueprint.deploy import deploy as run_deploy
    from blueprint.deploy import scale_limit

    loaded, state, secrets = _open_site(site, state_dir)
    fresh, limit = scale_limit(loaded, state)
    if not fresh:
        CONSOLE.print("scale: every node of the site file is deployed already; nothing to add")
        return
    CONSOLE.print(f"scale: adding {', '.join(fresh)}"
                  + (f" (with control plane {', '.join(n for n in limit if n not in fresh)})"
                     if len(limit) > len(fresh) else ""), highlight=False)
    outcome = run_deploy(loaded, state, CONSOLE, limit=limit, verb="scale",
                         secret_vars=secret_variables(loaded, secrets), site_secrets=secrets)
    _print_outcome(outcome, "scale")


def _print_outcome(outcome: DeployOutcome, verb: str) -> None:
    table = Table(title=f"{verb} {outcome.run_id}")
    for column in ("layer", "node", "ok", "changed", "failed", "unreachable"):
        table.add_column(column)
    for result in outcome.results:
        for node, counts in sorted(result.stats.items()):
            table.add_row(result.playbook, node, *(str(counts[key]) for key in
                                                   ("ok", "changed", "failed", "unreachable")))
    CONSOLE.print(table)
    _print_notes(outcome)
    if outcome.platform is not None:
        changes = ", ".join(f"{op} {n}" for op, n in sorted(outcome.platform.changes.items()))
        CONSOLE.print(f"layer platform: {changes or 'no change'}; stack outputs: "
                      f"{', '.join(outcome.platform.outputs)}", highlight=False)
        if outcome.platform.endpoints is not None:
            CONSOLE.print(f"layer platform: AI endpoints for validate in "
                          f"{outcome.platform.endpoints}", highlight=False)
    CONSOLE.print(f"{verb}: ok, {outcome.changed} change(s); log in {outcome.run_dir}")


def _print_notes(outcome: DeployOutcome) -> None:
    """What the roles reported for the operator: skipped layers and why, host-owned settings."""
    from blueprint.playbook import PREFLIGHT

    notes = [(PREFLIGHT, note) for note in outcome.preflight_notes]
    notes += [(result.playbook, note) for result in outcome.results for note in result.notes]
    for where, note in notes:
        CONSOLE.print(f"  note: {note.node}: {where}: {note.diff}", highlight=False,
                      markup=False)


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
cli.add_command(discover)
cli.add_command(boot_server)
cli.add_command(validate)
cli.add_command(support_bundle)
cli.add_command(bom)
cli.add_command(bundle)
cli.add_command(mirror)
cli.add_command(sbom)
cli.add_command(compliance)
cli.add_command(provision)
cli.add_command(kube_reset)
cli.add_command(kube_import)
cli.add_command(kube_remove_node)
cli.add_command(kube_upgrade)
cli.add_command(kube_certs)

if __name__ == "__main__":
    main()
