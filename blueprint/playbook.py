"""Running the project's playbooks through ansible-runner, with events for progress."""

from __future__ import annotations

import difflib
import logging
import os
import shutil
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ansible_mitogen
import ansible_runner

from blueprint.errors import EnvironmentMissing
from blueprint.paths import PLAYBOOKS_DIR, ROLES_DIR
from blueprint.secrets import REDACTOR

log = logging.getLogger(__name__)

EventHandler = Callable[[dict[str, Any]], None]
STAT_KEYS = {"ok": "ok", "changed": "changed", "failures": "failed", "dark": "unreachable",
             "skipped": "skipped"}


@dataclass
class TaskChange:
    """A task that changed (or would change, in check mode) something on a node."""

    node: str
    task: str
    diff: str = ""


@dataclass
class PlaybookResult:
    """What one playbook run did, per node."""

    playbook: str
    status: str
    rc: int
    stats: dict[str, dict[str, int]] = field(default_factory=dict)
    changes: list[TaskChange] = field(default_factory=list)
    failures: list[TaskChange] = field(default_factory=list)
    stdout_file: Path | None = None

    @property
    def ok(self) -> bool:
        return self.rc == 0 and not any(
            counts["failed"] or counts["unreachable"] for counts in self.stats.values()
        )

    @property
    def changed(self) -> int:
        return sum(counts["changed"] for counts in self.stats.values())


def ansible_environment(facts_dir: Path, *, stock: bool = False) -> dict[str, str]:
    """Ansible settings of the product; `stock` gives Ansible's defaults for comparison."""
    bin_dir = str(Path(sys.executable).parent)
    env = {
        "PATH": f"{bin_dir}:{os.environ.get('PATH', '/usr/bin:/bin')}",
        "ANSIBLE_ROLES_PATH": str(ROLES_DIR),
        "ANSIBLE_HOST_KEY_CHECKING": "True",
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_RETRY_FILES_ENABLED": "False",
        "ANSIBLE_DEPRECATION_WARNINGS": "False",
        "ANSIBLE_SYSTEM_WARNINGS": "False",
        "ANSIBLE_INVENTORY_UNPARSED_WARNING": "False",
        "ANSIBLE_LOCALHOST_WARNING": "False",
    }
    if stock:
        return env
    strategies = Path(ansible_mitogen.__file__).parent / "plugins" / "strategy"
    env.update({
        # mitogen keeps one Python interpreter per node for the whole play instead of
        # shipping each module over a fresh SSH command: the largest single speed-up.
        "ANSIBLE_STRATEGY_PLUGINS": str(strategies),
        "ANSIBLE_STRATEGY": "mitogen_linear",
        "ANSIBLE_PIPELINING": "True",
        # Facts are cached per node in the state folder so a re-run skips most gathering.
        "ANSIBLE_GATHERING": "smart",
        "ANSIBLE_CACHE_PLUGIN": "jsonfile",
        "ANSIBLE_CACHE_PLUGIN_CONNECTION": str(facts_dir),
        "ANSIBLE_CACHE_PLUGIN_TIMEOUT": "3600",
        "ANSIBLE_FORKS": "20",
    })
    return env


def playbook_path(name: str) -> Path:
    path = PLAYBOOKS_DIR / f"{name}.yml"
    if not path.is_file():
        msg = f"playbook {path} is missing from this checkout"
        raise EnvironmentMissing(msg)
    return path


def run_playbook(
    name: str,
    inventory_dir: Path,
    artifact_dir: Path,
    facts_dir: Path,
    *,
    check: bool = False,
    limit: str | None = None,
    on_event: EventHandler | None = None,
    stock: bool = False,
) -> PlaybookResult:
    """Run `playbooks/<name>.yml` on the inventory; `check` adds --check --diff."""
    if shutil.which("ansible-playbook", path=ansible_environment(facts_dir)["PATH"]) is None:
        msg = "ansible-playbook is not installed; run: pip install -e . (it brings ansible-core)"
        raise EnvironmentMissing(msg)
    playbook = playbook_path(name)
    result = PlaybookResult(playbook=name, status="unstarted", rc=-1)

    def handle(event: dict[str, Any]) -> bool:
        _collect(result, event)
        if on_event is not None:
            on_event(event)
        return True

    cmdline = "--check --diff" if check else ""
    # Runner's private folder holds the env files it writes; it lives in a private temp
    # folder that is removed after the run, while its artifacts go to the state folder.
    with tempfile.TemporaryDirectory(prefix="blueprint-runner-") as private:
        runner = ansible_runner.run(
            private_data_dir=private,
            artifact_dir=str(artifact_dir),
            ident=name,
            playbook=str(playbook),
            inventory=str(inventory_dir),
            envvars=ansible_environment(facts_dir, stock=stock),
            cmdline=cmdline or None,
            limit=limit,
            quiet=True,
            event_handler=handle,
            suppress_env_files=True,
        )
    result.status = runner.status
    result.rc = runner.rc
    stats = runner.stats or {}
    for key, name_ in STAT_KEYS.items():
        for node, count in (stats.get(key) or {}).items():
            result.stats.setdefault(node, dict.fromkeys(STAT_KEYS.values(), 0))[name_] = count
    stdout = artifact_dir / name / "stdout"
    if stdout.is_file():
        stdout.write_text(REDACTOR.redact(stdout.read_text(encoding="utf-8", errors="replace")))
        result.stdout_file = stdout
    return result


def _collect(result: PlaybookResult, event: dict[str, Any]) -> None:
    kind = event.get("event", "")
    data = event.get("event_data") or {}
    node = str(data.get("host", ""))
    task = str(data.get("task", ""))
    res = data.get("res") or {}
    if kind == "runner_on_ok" and res.get("changed"):
        result.changes.append(TaskChange(node, task, _diff_text(res)))
    elif kind in ("runner_on_failed", "runner_on_unreachable") and not data.get("ignore_errors"):
        message = str(res.get("msg") or res.get("stderr") or res.get("reason") or "").strip()
        result.failures.append(TaskChange(node, task, REDACTOR.redact(message)))


def _diff_text(res: dict[str, Any]) -> str:
    """A short unified-looking diff from a module result, when the module gave one."""
    diffs = res.get("diff") or []
    if isinstance(diffs, dict):
        diffs = [diffs]
    lines: list[str] = []
    for diff in diffs:
        if not isinstance(diff, dict):
            continue
        if "prepared" in diff:
            lines.append(str(diff["prepared"]).rstrip())
            continue
        before = str(diff.get("before", "")).splitlines()
        after = str(diff.get("after", "")).splitlines()
        header = diff.get("after_header") or diff.get("before_header") or ""
        if before != after:
            lines.extend(difflib.unified_diff(before, after, "before", str(header), lineterm=""))
    return REDACTOR.redact("\n".join(lines))
