"""How deploy sets up the site's stack for the Automation API (no Pulumi CLI here).

Stand-in: `create_or_select_stack` and `PulumiCommand` are replaced by recorders, since both
shell out to the CLI; what is checked is what the product hands them: one stack per site,
the file backend and passphrase in the site's state folder, the generated config.
"""

from __future__ import annotations

import stat
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import yaml
from pulumi import automation as auto
from rich.console import Console

from blueprint.platform import deploy as platform_deploy
from blueprint.platform.config import PlatformConfig
from blueprint.state import StateDir

# The stack tests' helper makes the ai-edge platform config without a site on disk.
STACK_TESTS = Path(__file__).resolve().parents[1] / "stacks"


class RecordedStack:
    def __init__(self) -> None:
        self.config: dict[str, auto.ConfigValue] = {}
        self.events: list[Any] = []

    def set_all_config(self, config: dict[str, auto.ConfigValue]) -> None:
        self.config = config

    def preview(self, on_event: Any, color: str) -> Any:
        # Typed as OpType keys; the engine's JSON gives plain strings. Both read the same.
        return SimpleNamespace(change_summary={auto.OpType.CREATE: 93, "same": 2})

    def up(self, on_event: Any, color: str) -> Any:
        step = SimpleNamespace(metadata=SimpleNamespace(
            op="create", type="kubernetes:core/v1:Namespace",
            urn="urn:pulumi:edge1::edge-platform::kubernetes:core/v1:Namespace::gpu-space-ns"))
        on_event(SimpleNamespace(resource_pre_event=step))
        return SimpleNamespace(outputs={}, summary=SimpleNamespace(resource_changes={}))


@pytest.fixture
def recorded(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    seen: dict[str, Any] = {"stack": RecordedStack()}

    def create_or_select_stack(**kwargs: Any) -> RecordedStack:
        seen.update(kwargs)
        return seen["stack"]  # type: ignore[no-any-return]

    monkeypatch.setattr(auto, "create_or_select_stack", create_or_select_stack)
    monkeypatch.setattr(auto, "PulumiCommand", lambda root: SimpleNamespace(root=root))
    return seen


def _config() -> PlatformConfig:
    import sys

    if str(STACK_TESTS) not in sys.path:
        sys.path.insert(0, str(STACK_TESTS))
    from platform_helpers import make_config

    config: PlatformConfig = make_config()
    return config


def test_the_site_stack_lives_in_the_state_folder_with_generated_config(
        tmp_path: Path, recorded: dict[str, Any]) -> None:
    state = StateDir(tmp_path)
    config = _config()
    ready = platform_deploy.PlatformReady(config=config, pulumi=Path("/opt/pulumi/bin/pulumi"),
                                          kubeconfig=tmp_path / "kubeconfig")

    stack = platform_deploy._site_stack(ready, state)

    # One stack per site, named after it, running the stack's own program inline.
    assert recorded["stack_name"] == "edge1"
    assert recorded["project_name"] == "edge-platform"
    assert recorded["program"].__module__ == "stacks.platform.program"
    options = recorded["opts"]
    backend = tmp_path / "pulumi"
    assert options.project_settings.backend.url == backend.as_uri()
    assert stat.S_IMODE(backend.stat().st_mode) == 0o700
    assert options.secrets_provider == "passphrase"
    assert options.pulumi_command.root == "/opt/pulumi"
    # The passphrase is the one generated into the state folder's vault (0600).
    vault = yaml.safe_load((tmp_path / "vault.yaml").read_text())
    assert options.env_vars["PULUMI_CONFIG_PASSPHRASE"] == vault["pulumi_passphrase"]
    assert stat.S_IMODE((tmp_path / "vault.yaml").stat().st_mode) == 0o600
    assert options.env_vars["PULUMI_BACKEND_URL"] == backend.as_uri()
    assert options.env_vars["KUBECONFIG"] == str(tmp_path / "kubeconfig")
    # The config is the product's, whole and secret: set_all_config, never hand-edited.
    value = stack.config["platform"]
    assert value.secret is True
    assert PlatformConfig.model_validate_json(value.value) == config


def test_a_second_stack_setup_keeps_the_passphrase(tmp_path: Path,
                                                   recorded: dict[str, Any]) -> None:
    state = StateDir(tmp_path)
    ready = platform_deploy.PlatformReady(config=_config(), pulumi=Path("/usr/bin/pulumi"),
                                          kubeconfig=tmp_path / "kubeconfig")
    platform_deploy._site_stack(ready, state)
    first = recorded["opts"].env_vars["PULUMI_CONFIG_PASSPHRASE"]
    platform_deploy._site_stack(ready, state)
    assert recorded["opts"].env_vars["PULUMI_CONFIG_PASSPHRASE"] == first


def test_deploy_shows_its_progress_like_the_ansible_layers(
        tmp_path: Path, recorded: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    import io

    monkeypatch.setattr(platform_deploy, "write_endpoints", lambda *args: None)
    (tmp_path / "kubeconfig").write_text("")
    ready = platform_deploy.PlatformReady(config=_config(), pulumi=Path("/usr/bin/pulumi"),
                                          kubeconfig=tmp_path / "kubeconfig")
    printed = io.StringIO()

    platform_deploy.deploy_platform(ready, StateDir(tmp_path), Console(file=printed, width=200))

    # Off a terminal: one line for the layer, no line per resource step (see
    # test_platform_progress.py for the table).
    assert printed.getvalue() == "layer platform: pulumi up of stack edge1\n"


def test_plan_with_the_cli_previews_the_same_stack(tmp_path: Path,
                                                  recorded: dict[str, Any]) -> None:
    import io

    ready = platform_deploy.PlatformReady(config=_config(), pulumi=Path("/usr/bin/pulumi"),
                                          kubeconfig=tmp_path / "kubeconfig")
    changes = platform_deploy.preview_platform(ready, StateDir(tmp_path),
                                               Console(file=io.StringIO()))

    assert changes == {"create": 93, "same": 2}
    assert recorded["stack_name"] == "edge1"
    assert recorded["stack"].config["platform"].secret is True
