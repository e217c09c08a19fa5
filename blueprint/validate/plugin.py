"""pytest plugin loaded into the validation subprocess: selects checks, records their results.

The runner starts `python -m pytest -p blueprint.validate.plugin ...` once per node. This
plugin keeps only the checks the runner selected (`--bp-select`), runs show-stoppers first,
enforces each check's timeout, and writes one JSON record per check (`--bp-results`) with its
id, outcome, duration, message and the commands it ran. pytest's own exit code is not used.
"""

from __future__ import annotations

import json
import logging
import re
import signal
import time
from collections.abc import Generator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

import pytest

log = logging.getLogger(__name__)

MAX_OUTPUT = 20_000
# A skip reason that starts so is reported as not applicable (e.g. a component the site does
# not deploy), never as a skip the operator might want to look at.
NOT_APPLICABLE = "not applicable: "

# Registry credentials can sit in containerd's config; nothing like them may reach a report.
_SECRET_LINE = re.compile(
    r"(?im)^(\s*[\w.-]*(?:password|passwd|token|secret|auth|identitytoken)[\w.-]*\s*[=:]\s*)(.+)$"
)

_COMMANDS = pytest.StashKey[list[dict[str, Any]]]()
_RECORD = pytest.StashKey[dict[str, Any]]()


class CheckFailed(AssertionError):
    """A check saw something other than what it expects."""


class CheckTimeout(Exception):
    """A check ran longer than its suite timeout."""


def redact(text: str) -> str:
    """Hide values of lines that look like credentials."""
    return _SECRET_LINE.sub(lambda m: m.group(1) + "<redacted>", text)


def _clip(text: str) -> str:
    if len(text) <= MAX_OUTPUT:
        return text
    return text[:MAX_OUTPUT] + f"\n... ({len(text) - MAX_OUTPUT} more characters cut)"


@dataclass
class Probe:
    """A node as the checks see it: runs commands over testinfra and records each one."""

    host: Any
    commands: list[dict[str, Any]] = field(default_factory=list)

    def run(self, command: str) -> Any:
        """Run a shell command on the node; its line, exit code and output go to the report."""
        result = self.host.run(command)
        self.commands.append(
            {
                "command": command,
                "rc": result.rc,
                "stdout": _clip(redact(result.stdout)),
                "stderr": _clip(redact(result.stderr)),
            }
        )
        return result

    def container(self) -> str | None:
        """The container technology the node runs in (systemd-detect-virt -c), or None."""
        result = self.run("systemd-detect-virt -c || true")
        kind = result.stdout.strip()
        return None if kind in ("", "none") else kind

    def skip_if_container(self, what: str) -> None:
        """Skip a check of a setting that a container cannot own."""
        kind = self.container()
        if kind is not None:
            pytest.skip(f"host-owned in a container ({kind}): {what}")


def expect(ok: bool, *, seen: str, expected: str) -> None:
    """Fail the check unless `ok`, saying what was seen and what was expected."""
    if not ok:
        raise CheckFailed(f"seen: {seen}; expected: {expected}")


@pytest.fixture
def node(host: Any, request: pytest.FixtureRequest) -> Iterator[Probe]:
    """The node under validation, recording every command the check runs."""
    probe = Probe(host)
    request.node.stash[_COMMANDS] = probe.commands
    yield probe


@pytest.fixture(scope="session")
def expected(request: pytest.FixtureRequest) -> dict[str, Any]:
    """What this node should be, from the blueprint and the suite (the runner's context file)."""
    path = request.config.getoption("--bp-context")
    if not path:
        return {}
    data: dict[str, Any] = json.loads(Path(path).read_text(encoding="utf-8"))
    return data


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("blueprint validation")
    group.addoption("--bp-context", help="JSON file: what the node should be (`expected`)")
    group.addoption("--bp-select", help="JSON file: {check id: {timeout, show_stopper}}")
    group.addoption("--bp-results", help="JSON file the results are written to")
    group.addoption("--bp-node", default="", help="node name recorded in the results")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "check(id): the stable id <layer>.<name> of a check")
    config.stash[_RECORD] = {"node": config.getoption("--bp-node"), "collected": [], "results": []}


def check_id(item: pytest.Item) -> str:
    marker = item.get_closest_marker("check")
    if marker is None or not marker.args:
        msg = f"{item.nodeid}: a validation check needs @pytest.mark.check('<layer>.<name>')"
        raise pytest.UsageError(msg)
    return str(marker.args[0])


def _selection(config: pytest.Config) -> dict[str, dict[str, Any]] | None:
    path = config.getoption("--bp-select")
    if not path:
        return None
    data: dict[str, dict[str, Any]] = json.loads(Path(path).read_text(encoding="utf-8"))
    return data


def pytest_collection_modifyitems(
    session: pytest.Session, config: pytest.Config, items: list[pytest.Item]
) -> None:
    record = config.stash[_RECORD]
    record["collected"] = sorted({check_id(item) for item in items})
    selection = _selection(config)
    if selection is None:
        return

    kept = [item for item in items if check_id(item) in selection]
    dropped = [item for item in items if check_id(item) not in selection]
    if dropped:
        config.hook.pytest_deselected(items=dropped)
    # Show-stoppers first, so that one failing stops the rest of this node's run early.
    kept.sort(key=lambda item: not selection[check_id(item)].get("show_stopper", False))
    items[:] = kept


_STOPPED = pytest.StashKey[str]()


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    stopped = item.session.stash.get(_STOPPED, None)
    if stopped is not None:
        pytest.skip(f"show-stopper {stopped} failed on this node; not run")


def _alarm(seconds: float) -> Any:
    def on_alarm(signum: int, frame: FrameType | None) -> None:
        raise CheckTimeout(f"timed out after {seconds:g} s")

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    return previous


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, None, None]:
    selection = _selection(item.config) or {}
    timeout = float(selection.get(check_id(item), {}).get("timeout", 60))
    previous = _alarm(timeout)
    try:
        return (yield)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _message(excinfo: pytest.ExceptionInfo[BaseException]) -> str:
    value = excinfo.value
    if isinstance(value, pytest.skip.Exception):
        return str(value.msg)
    if isinstance(value, CheckFailed):
        return str(value)
    if isinstance(value, AssertionError):
        # A plain assert: pytest's rewritten text, first lines only.
        return "\n".join(str(value).splitlines()[:6])
    return f"{type(value).__name__}: {redact(str(value))}"[:2000]


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    entry = item.stash.get(_RESULT, None)
    if entry is None:
        entry = {
            "id": check_id(item),
            "layer": check_id(item).split(".", 1)[0],
            "node": item.config.getoption("--bp-node"),
            "outcome": "passed",
            "duration": 0.0,
            "message": "",
            "started": time.time(),
        }
        item.stash[_RESULT] = entry
    entry["duration"] += report.duration

    if report.skipped and entry["outcome"] == "passed":
        entry["outcome"] = "skipped"
        entry["message"] = _skip_reason(report, call)
    elif report.failed and entry["outcome"] in ("passed", "skipped"):
        failed_check = call.excinfo is not None and isinstance(call.excinfo.value, AssertionError)
        entry["outcome"] = "failed" if report.when == "call" and failed_check else "error"
        entry["message"] = _message(call.excinfo) if call.excinfo else report.longreprtext[-2000:]

    if report.when == "teardown":
        entry["commands"] = item.stash.get(_COMMANDS, [])
        item.config.stash[_RECORD]["results"].append(entry)
        selection = _selection(item.config) or {}
        show_stopper = selection.get(entry["id"], {}).get("show_stopper", False)
        if show_stopper and entry["outcome"] in ("failed", "error"):
            item.session.stash[_STOPPED] = entry["id"]
    return report


_RESULT = pytest.StashKey[dict[str, Any]]()


def _skip_reason(report: pytest.TestReport, call: pytest.CallInfo[None]) -> str:
    if call.excinfo is not None:
        return _message(call.excinfo)
    if isinstance(report.longrepr, tuple):
        return str(report.longrepr[2]).removeprefix("Skipped: ")
    return str(report.longrepr)


def pytest_sessionfinish(session: pytest.Session) -> None:
    path = session.config.getoption("--bp-results")
    if not path:
        return
    record = session.config.stash[_RECORD]
    Path(path).write_text(json.dumps(record, indent=2), encoding="utf-8")
