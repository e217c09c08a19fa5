"""Running the project's playbooks through ansible-runner, with events for progress."""

from __future__ import annotations

import difflib
import json
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
import yaml

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
    notes: list[TaskChange] = field(default_factory=list)
    stdout_file: Path | None = None

    @property
    def ok(self) -> bool:
        """The layer ran, and no task failed and no node was unreachable."""
        return self.status not in ("unstarted", "failed") and not self.failures

    @property
    def changed(self) -> int:
        return sum(counts["changed"] for counts in self.stats.values())


def ansible_environment(*, stock: bool = False) -> dict[str, str]:
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
    # TODO: a no-op re-converge measured 1.9-2.2x faster than stock (benchmarks/converge.py),
    # short of the 2.5x aimed for; Ansible's per-task controller work dominates now, so the
    # next gain is fewer, larger tasks in the roles rather than another setting here.
    strategies = Path(ansible_mitogen.__file__).parent / "plugins" / "strategy"
    env.update({
        # mitogen keeps one Python interpreter per node for the whole play instead of
        # shipping each module over a fresh SSH command: the largest single speed-up.
        "ANSIBLE_STRATEGY_PLUGINS": str(strategies),
        "ANSIBLE_STRATEGY": "mitogen_linear",
        "ANSIBLE_PIPELINING": "True",
        # Facts are cached per node in the state folder (see run_layers) and gathered only
        # when missing, so a re-run skips gathering.
        "ANSIBLE_GATHERING": "smart",
        "ANSIBLE_CACHE_PLUGIN_TIMEOUT": "3600",
        "ANSIBLE_FORKS": "20",
    })
    return env


def require_ansible() -> None:
    """Stop with exit 4 when ansible-playbook is not beside the product's Python."""
    if shutil.which("ansible-playbook", path=ansible_environment()["PATH"]) is None:
        msg = "ansible-playbook is not installed; run: pip install -e . (it brings ansible-core)"
        raise EnvironmentMissing(msg)


def playbook_path(name: str) -> Path:
    path = PLAYBOOKS_DIR / f"{name}.yml"
    if not path.is_file():
        msg = f"playbook {path} is missing from this checkout"
        raise EnvironmentMissing(msg)
    return path


def plays_in(name: str) -> int:
    """How many plays `playbooks/<name>.yml` has (a layer playbook imports no other)."""
    plays = yaml.safe_load(playbook_path(name).read_text(encoding="utf-8")) or []
    return len(plays)


PREFLIGHT = "preflight"


def preflight_play(layer_roles: dict[str, list[str]]) -> dict[str, Any] | None:
    """One play of every role's `tasks/preflight.yml`, before any layer changes anything.

    A role puts there what can stop it (a GPU without usable driver, a missing artifact) and
    nothing that changes a node; one node's failure ends the whole run at once.
    """
    tasks = [
        {"name": f"Preflight of layer {layer} (role {role}).",
         "ansible.builtin.include_role": {"name": role, "tasks_from": "preflight"}}
        for layer, roles in layer_roles.items() for role in roles
        if (ROLES_DIR / role / "tasks" / "preflight.yml").is_file()
    ]
    if not tasks:
        return None
    return {"name": "Preflight of every requested layer", "hosts": "all", "become": True,
            "any_errors_fatal": True, "tasks": tasks}


def run_layers(
    layer_roles: dict[str, list[str]],
    inventory_dir: Path,
    artifact_dir: Path,
    facts_dir: Path,
    *,
    check: bool = False,
    limit: str | None = None,
    on_event: EventHandler | None = None,
    on_layer: Callable[[str], None] | None = None,
    stock: bool = False,
    secret_vars: dict[str, Any] | None = None,
) -> list[PlaybookResult]:
    """Run the layers' playbooks (layer name to its roles) in one ansible-playbook run.

    First comes the preflight play of every role that has one, then each layer's playbook.
    One run instead of one per layer saves Ansible's start-up, the connection set-up and
    the fact gathering of every layer after the first. Events are told apart by play: each
    layer playbook's plays, in order. Returns one result per play group (the preflight,
    then each layer). `check` adds --check --diff. `secret_vars` reach Ansible as extra
    variables from a file in the runner's private temp folder, never from the state folder.
    """
    require_ansible()
    artifact_dir.mkdir(parents=True, exist_ok=True)
    playbook = artifact_dir / "layers.yml"
    preflight = preflight_play(layer_roles)
    plays: list[dict[str, Any]] = [preflight] if preflight else []
    plays += [
        {"name": f"Layer {name}", "ansible.builtin.import_playbook": str(playbook_path(name))}
        for name in layer_roles
    ]
    playbook.write_text(yaml.safe_dump(plays, sort_keys=False), encoding="utf-8")
    play_layers = [PREFLIGHT] if preflight else []
    play_layers += [name for name in layer_roles for _ in range(plays_in(name))]
    names = [PREFLIGHT, *layer_roles] if preflight else list(layer_roles)
    results = {name: PlaybookResult(playbook=name, status="unstarted", rc=-1) for name in names}
    current: list[PlaybookResult] = []

    def handle(event: dict[str, Any]) -> bool:
        if event.get("event") == "playbook_on_play_start":
            index = len(current)
            layer = play_layers[min(index, len(play_layers) - 1)]
            current.append(results[layer])
            if on_layer is not None and (index == 0 or play_layers[index - 1] != layer):
                on_layer(layer)
        if current:
            _collect(current[-1], event)
        if on_event is not None:
            on_event(event)
        return True

    cmdline = "--check --diff" if check else ""
    # Runner's private folder holds the env files it writes; it lives in a private temp
    # folder that is removed after the run, while its artifacts go to the state folder.
    with tempfile.TemporaryDirectory(prefix="blueprint-runner-") as private:
        if secret_vars:
            _write_private_extravars(Path(private), secret_vars)
        runner = ansible_runner.run(
            private_data_dir=private,
            artifact_dir=str(artifact_dir),
            ident="ansible",
            playbook=str(playbook),
            inventory=str(inventory_dir),
            envvars=ansible_environment(stock=stock),
            cmdline=cmdline or None,
            limit=limit,
            quiet=True,
            event_handler=handle,
            suppress_env_files=True,
            # ansible-runner sets the fact cache folder itself; an absolute path keeps it
            # in the state folder across runs instead of in each run's artifacts.
            fact_cache_type="jsonfile",
            fact_cache=str(facts_dir),
        )
    REDACTOR.redact_tree(artifact_dir)
    stdout = artifact_dir / "ansible" / "stdout"
    last = current[-1] if current else None
    any_failure = any(result.failures for result in results.values())
    for result in results.values():
        if result.status == "running":
            # A play group that finished before a later one failed keeps its own outcome:
            # only the group a failure happened in, or the one running when ansible-playbook
            # stopped, takes the run's status.
            own = result.failures or (result is last and not any_failure)
            result.status = runner.status if own else "successful"
        result.rc = runner.rc if result.status != "unstarted" else -1
        result.stdout_file = stdout if stdout.is_file() else None
    if runner.rc != 0 and not any(r.failures for r in results.values()):
        # ansible-playbook stopped before or outside any task (a syntax error, a missing
        # role or module, an interrupt): no event says so, only its exit code and output.
        tail = _tail(stdout) if stdout.is_file() else f"status {runner.status}"
        where = last or next(r for r in results.values())
        where.failures.append(TaskChange("controller", "ansible-playbook", tail))
        where.status = "failed"
    return [results[name] for name in names]


def _write_private_extravars(private: Path, secret_vars: dict[str, Any]) -> None:
    """Runner passes env/extravars as `-e @file`; a dict would go on the command line."""
    env_dir = private / "env"
    env_dir.mkdir(mode=0o700)
    path = env_dir / "extravars"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump(secret_vars, handle)


def _tail(path: Path, lines: int = 3) -> str:
    text = path.read_text(encoding="utf-8", errors="replace").strip().splitlines()
    return " | ".join(line.strip() for line in text[-lines:]) or "no output"


EVENT_COUNTS = {"runner_on_ok": "ok", "runner_on_failed": "failed",
                "runner_on_unreachable": "unreachable", "runner_on_skipped": "skipped"}


def _collect(result: PlaybookResult, event: dict[str, Any]) -> None:
    kind = event.get("event", "")
    data = event.get("event_data") or {}
    node = str(data.get("host", ""))
    task = str(data.get("task", ""))
    res = data.get("res") or {}
    column = EVENT_COUNTS.get(kind)
    if column is None or not node:
        return
    result.status = "running"
    counts = result.stats.setdefault(node, dict.fromkeys(STAT_KEYS.values(), 0))
    if column == "failed" and data.get("ignore_errors"):
        column = "ok"
    counts[column] += 1
    if column == "ok" and (res.get("changed") or _censored_change(res, event)):
        counts["changed"] += 1
        result.changes.append(TaskChange(node, task, _diff_text(res)))
    # Roles name a task "Report ..." when its message is something the operator must see
    # in the summary: a layer skipped on a node and why, settings the host owns.
    if column == "ok" and task.startswith("Report") and res.get("msg"):
        result.notes.append(TaskChange(node, task, REDACTOR.redact(str(res["msg"]))))
    elif column in ("failed", "unreachable"):
        message = str(res.get("msg") or res.get("stderr") or res.get("reason") or "").strip()
        # A loop's own message only says that an item failed; the first item's says why.
        items = res.get("results")
        if isinstance(items, list):
            why = [str(item.get("msg")) for item in items
                   if isinstance(item, dict) and item.get("failed") and item.get("msg")]
            message = why[0] if why else message
        result.failures.append(TaskChange(node, task, REDACTOR.redact(message)))


def _censored_change(res: dict[str, Any], event: dict[str, Any]) -> bool:
    """A no_log task's result keeps no `changed` key; only its display line says it."""
    return "censored" in res and str(event.get("stdout", "")).lstrip().startswith("changed:")


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
