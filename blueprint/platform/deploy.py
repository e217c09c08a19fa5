"""Deploying the platform layer: preflight of the Pulumi tools, then the Automation API."""

from __future__ import annotations

import importlib
import logging
import os
import shutil
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from rich.console import Console

from blueprint.errors import DeployFailed, EnvironmentMissing
from blueprint.loader import LoadedSite
from blueprint.platform.config import PlatformConfig
from blueprint.platform.endpoints import write_endpoints
from blueprint.platform.resolve import platform_config
from blueprint.progress import PlatformProgress
from blueprint.secrets import generated_secret
from blueprint.state import StateDir

log = logging.getLogger(__name__)

PROJECT = "edge-platform"
PASSPHRASE = "pulumi_passphrase"
# The provider plugins the stack's SDKs talk to, at the SDKs' own versions.
PLUGINS = {"kubernetes": "pulumi_kubernetes", "random": "pulumi_random"}


@dataclass
class PlatformReady:
    """What the preflight found: the config to deploy and where the tools are."""

    config: PlatformConfig
    pulumi: Path
    kubeconfig: Path
    outputs: list[str] = field(default_factory=list)
    changes: dict[str, int] = field(default_factory=dict)
    endpoints: Path | None = None


def plugin_dir() -> Path:
    return Path(os.environ.get("PULUMI_HOME", Path.home() / ".pulumi")) / "plugins"


def missing_plugins() -> list[tuple[str, str]]:
    """(plugin, version) of each provider plugin not installed for the stack's SDKs."""
    missing = []
    for plugin, package in PLUGINS.items():
        version = metadata.version(package)
        if not (plugin_dir() / f"resource-{plugin}-v{version}").is_dir():
            missing.append((plugin, version))
    return missing


def preflight_platform(loaded: LoadedSite, state: StateDir,
                       secrets: dict[str, Any] | None = None, *,
                       cluster_in_run: bool = False) -> PlatformReady:
    """Everything the platform deploy needs, checked before any layer changes anything.

    `cluster_in_run`: the kubernetes layer runs first in the same run and writes the
    kubeconfig then; it is checked again just before the stack runs.
    """
    # The site's platform settings resolve (BadInput otherwise).
    config = platform_config(loaded, secrets)

    # The Pulumi CLI and the provider plugins: the Automation API drives them.
    problems = []
    pulumi = shutil.which("pulumi")
    if pulumi is None:
        problems.append(
            "layer platform: the pulumi CLI is not on PATH; install it online with "
            "'curl -fsSL https://get.pulumi.com | sh' or from the offline bundle's "
            "pulumi/ folder (tar -xzf pulumi-*.tar.gz -C /usr/local/lib; put its bin/ on PATH)")
    for plugin, version in missing_plugins():
        problems.append(
            f"layer platform: the Pulumi {plugin} provider plugin v{version} is not in "
            f"{plugin_dir()}; install it online with 'pulumi plugin install resource {plugin} "
            f"v{version}' or from the offline bundle with 'pulumi plugin install resource "
            f"{plugin} v{version} --file pulumi/plugins/pulumi-resource-{plugin}-v{version}"
            "-linux-amd64.tar.gz'")

    # The cluster: the kubernetes layer leaves its kubeconfig in the state folder.
    kubeconfig = state.kubeconfig
    if not kubeconfig.is_file() and not cluster_in_run:
        problems.append(
            f"layer platform: no kubeconfig at {kubeconfig}; deploy the kubernetes layer "
            "first (deploy --layer kubernetes)")
    if problems:
        raise EnvironmentMissing("\n".join(problems))
    assert pulumi is not None
    return PlatformReady(config, Path(pulumi), kubeconfig)


def _site_stack(ready: PlatformReady, state: StateDir) -> Any:
    """The site's stack: file backend and passphrase in the state folder, config set."""
    from pulumi import automation as auto

    # Imported by name: the stack is its own program, not a part of this package's types.
    program = importlib.import_module("stacks.platform.program")

    # One stack per site, its state beside the site's other state.
    backend = state.root / "pulumi"
    backend.mkdir(mode=0o700, exist_ok=True)
    env = {
        "PULUMI_CONFIG_PASSPHRASE": generated_secret(state.root, PASSPHRASE),
        "PULUMI_BACKEND_URL": backend.as_uri(),
        "KUBECONFIG": str(ready.kubeconfig),
        "PULUMI_SKIP_UPDATE_CHECK": "true",
    }
    settings = auto.ProjectSettings(name=PROJECT, runtime="python",
                                    backend=auto.ProjectBackend(url=backend.as_uri()))
    stack = auto.create_or_select_stack(
        stack_name=ready.config.site, project_name=PROJECT, program=program.main,
        opts=auto.LocalWorkspaceOptions(work_dir=str(backend), env_vars=env,
                                        secrets_provider="passphrase",
                                        project_settings=settings,
                                        pulumi_command=auto.PulumiCommand(
                                            root=str(ready.pulumi.parent.parent))))

    # The config is generated from the site, never hand-edited; a secret as it may hold
    # the registry login.
    stack.set_all_config({program.CONFIG_KEY: auto.ConfigValue(
        value=ready.config.model_dump_json(), secret=True)})
    return stack


def _failure(verb: str, site: str, exc: Exception) -> DeployFailed:
    last = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
    return DeployFailed(f"layer platform failed: pulumi {verb} of stack {site}: {last}; "
                        f"fix it and re-run {'plan' if verb == 'preview' else 'deploy'} "
                        "--layer platform")


def deploy_platform(ready: PlatformReady, state: StateDir, console: Console) -> PlatformReady:
    """`pulumi up` of the site's stack: file backend and passphrase in the state folder."""
    from pulumi import automation as auto

    if not ready.kubeconfig.is_file():
        msg = (f"layer platform: the kubernetes layer left no kubeconfig at {ready.kubeconfig}; "
               "check its run and re-run deploy --layer platform")
        raise DeployFailed(msg)
    stack = _site_stack(ready, state)
    try:
        with PlatformProgress(console, ready.config.site) as progress:
            result = stack.up(on_event=progress.on_event, color="never")
    except auto.CommandError as exc:
        raise _failure("up", ready.config.site, exc) from None
    ready.outputs = sorted(result.outputs)
    ready.changes = _op_counts(result.summary.resource_changes)

    # What the AI checks read: the stack's endpoints and credentials, 0600 in the state folder.
    ready.endpoints = write_endpoints(state.root, result.outputs, ready.kubeconfig)
    return ready


def tools_ready(loaded: LoadedSite, state: StateDir,
                secrets: dict[str, Any] | None = None) -> PlatformReady | str:
    """The preflight's result for a plan: ready, or why `pulumi preview` is left out."""
    try:
        return preflight_platform(loaded, state, secrets)
    except EnvironmentMissing as exc:
        return str(exc).splitlines()[0].removeprefix("layer platform: ")


def preview_platform(ready: PlatformReady, state: StateDir, console: Console) -> dict[str, int]:
    """`pulumi preview` against the cluster, when the CLI and a kubeconfig are there."""
    from pulumi import automation as auto

    stack = _site_stack(ready, state)
    try:
        with PlatformProgress(console, ready.config.site, "preview") as progress:
            result = stack.preview(on_event=progress.on_event, color="never")
    except auto.CommandError as exc:
        raise _failure("preview", ready.config.site, exc) from None
    return _op_counts(result.change_summary)


def _op_counts(changes: Any) -> dict[str, int]:
    """Counts per operation ("create": 3). The engine's JSON gives plain strings, though the
    SDK types them as OpType, whose str() would read "OpType.CREATE"."""
    return {str(getattr(op, "value", op)): count for op, count in (changes or {}).items()}
