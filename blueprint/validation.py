"""`blueprint validate` for a site: build the validation target and record the run."""

from __future__ import annotations

import logging

from blueprint.console import attach_run_log, detach_run_log
from blueprint.deploy import deployed_layers
from blueprint.errors import exit_code_of
from blueprint.inventory import node_user, render_ssh_config
from blueprint.loader import LoadedSite
from blueprint.paths import VALIDATION_DIR
from blueprint.secrets import REDACTOR
from blueprint.state import RunHistory, StateDir, new_run_id
from blueprint.validate import (
    NodeTarget,
    ValidationReport,
    ValidationTarget,
    Waiver,
    run_validation,
)

log = logging.getLogger(__name__)


def check_layers(loaded: LoadedSite, state: StateDir) -> list[str]:
    """Check layers to run: those of the blueprint layers this site has deployed.

    A site with no deploy record (state folder lost, or deployed by another tool) is
    validated against everything its blueprint promises.
    """
    deployed = deployed_layers(state)
    layers = ["hardware"]
    for layer in loaded.blueprint.layers:
        if not deployed or layer.name in deployed:
            layers.extend(layer.validates)
    return layers


def build_target(loaded: LoadedSite, state: StateDir) -> ValidationTarget:
    site = loaded.site
    return ValidationTarget(
        site_name=site.name,
        blueprint_layers=check_layers(loaded, state),
        suite_file=VALIDATION_DIR / "suites" / f"{loaded.blueprint.validation.suite}.yaml",
        nodes=[
            NodeTarget(name=node.name, address=str(node.address),
                       ssh_user=node_user(site, node), node_roles=list(node.roles))
            for node in site.nodes
        ],
        ssh_config=render_ssh_config(site, state),
        waivers=[
            Waiver(check=w.check, node=w.node, reason=w.reason, expires=w.expires)
            for w in site.waivers
        ],
    )


def validate_site(
    loaded: LoadedSite,
    state: StateDir,
    *,
    layers: list[str] | None = None,
    checks: list[str] | None = None,
) -> ValidationReport:
    """Run the blueprint's suite on the site; the run and its verdict go to the history."""
    run_id = new_run_id("validate")
    with state.lock():
        run_dir = state.run_dir(run_id)
        run_log = attach_run_log(run_dir / "blueprint.log")
        history = RunHistory(state)
        history.start(run_id, loaded.site.name, "validate", layers or [], run_dir)
        try:
            target = build_target(loaded, state)
            report = run_validation(target, run_dir / "validation", layers=layers,
                                    checks=checks)
        except BaseException as exc:
            history.finish(run_id, "error", int(exit_code_of(exc)))
            raise
        else:
            history.finish(run_id, str(report.verdict), int(report.exit_code))
        finally:
            history.close()
            detach_run_log(run_log)
            # Check output quotes node files (containerd's config, sshd's settings): any
            # secret the site handed to a role is masked in every output of the run.
            REDACTOR.redact_tree(run_dir)
    return report
