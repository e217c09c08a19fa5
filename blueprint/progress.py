"""Live progress of a deploy: nodes by task counts, the current task, failures as they come."""

from __future__ import annotations

from types import TracebackType
from typing import Any

from rich.console import Console
from rich.live import Live
from rich.table import Table
from rich.text import Text

from blueprint.secrets import REDACTOR

COLUMNS = ("ok", "changed", "failed", "unreachable", "skipped")
EVENT_COLUMN = {"runner_on_ok": "ok", "runner_on_failed": "failed",
                "runner_on_unreachable": "unreachable", "runner_on_skipped": "skipped"}


class DeployProgress:
    """A rich live table on a terminal; one line per layer and failure otherwise."""

    def __init__(self, console: Console, nodes: list[str]) -> None:
        self.console = console
        self.nodes = nodes
        self.layer = ""
        self.task = ""
        self.counts: dict[str, dict[str, int]] = {}
        self._live: Live | None = None

    def __enter__(self) -> DeployProgress:
        if self.console.is_terminal:
            self._live = Live(self._table(), console=self.console, refresh_per_second=4,
                              transient=True)
            self._live.__enter__()
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 traceback: TracebackType | None) -> None:
        if self._live is not None:
            self._live.__exit__(kind, value, traceback)

    def start_layer(self, layer: str) -> None:
        self.layer = layer
        self.task = ""
        self.counts = {node: dict.fromkeys(COLUMNS, 0) for node in self.nodes}
        if self._live is None:
            self.console.print(f"[bold]layer {layer}[/bold]: running on {len(self.nodes)} nodes")
        self._refresh()

    def on_event(self, event: dict[str, Any]) -> None:
        kind = event.get("event", "")
        data = event.get("event_data") or {}
        if kind == "playbook_on_task_start":
            self.task = str(data.get("task", ""))
        column = EVENT_COLUMN.get(kind)
        node = str(data.get("host", ""))
        if column is None or node not in self.counts:
            return
        # Counted as in PlaybookResult: an ignored failure is ok, a change is also ok.
        if column == "failed" and data.get("ignore_errors"):
            column = "ok"
        self.counts[node][column] += 1
        if column == "ok" and (data.get("res") or {}).get("changed"):
            self.counts[node]["changed"] += 1
        if column in ("failed", "unreachable") and not data.get("ignore_errors"):
            res = data.get("res") or {}
            message = str(res.get("msg") or res.get("stderr") or "").strip().splitlines()
            first = REDACTOR.redact(message[0]) if message else ""
            self.console.print(
                f"[red]{column}[/red] {node}: {data.get('task', '')}: {first}", highlight=False
            )
        self._refresh()

    def _refresh(self) -> None:
        if self._live is not None:
            self._live.update(self._table())

    def _table(self) -> Table:
        table = Table(title=f"layer {self.layer}: {self.task}", title_justify="left")
        table.add_column("node")
        for column in COLUMNS:
            table.add_column(column, justify="right")
        for node, counts in self.counts.items():
            table.add_row(node, *(str(counts[column]) for column in COLUMNS))
        return table


# What each Pulumi step did, in the platform table's columns; steps not named count as ok.
PLATFORM_COLUMNS = ("ok", "created", "updated", "replaced", "deleted", "failed")
OP_COLUMN = {"create": "created", "update": "updated", "replace": "replaced",
             "create-replacement": "replaced", "delete": "deleted", "delete-replaced": "deleted"}
# The program's components: type tokens edge:platform:<Name> (stacks/platform/common.py).
COMPONENT_TYPE = "edge:platform:"


def component_of(urn: str) -> str:
    """The platform component a resource belongs to, from its URN's type chain
    (`urn:pulumi:STACK::PROJECT::edge:platform:Access$kubernetes:...::NAME` is Access);
    resources outside every component (the stack, providers) are `stack`."""
    parts = urn.split("::")
    chain = parts[2] if len(parts) > 3 else ""
    for item in chain.split("$"):
        if item.startswith(COMPONENT_TYPE):
            return item.removeprefix(COMPONENT_TYPE).lower()
    return "stack"


class PlatformProgress:
    """The platform layer's `pulumi up` as the Ansible layers show theirs: a rich live table
    on a terminal (steps per component, the current step), one line and failures otherwise."""

    def __init__(self, console: Console, stack: str, verb: str = "up") -> None:
        self.console = console
        self.stack = stack
        self.verb = verb
        self.step = ""
        self.counts: dict[str, dict[str, int]] = {}
        self._live: Live | None = None

    def __enter__(self) -> PlatformProgress:
        if self.console.is_terminal:
            self._live = Live(self._table(), console=self.console, refresh_per_second=4,
                              transient=True)
            self._live.__enter__()
        else:
            self.console.print(f"[bold]layer platform[/bold]: pulumi {self.verb} of stack "
                               f"{self.stack}")
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 traceback: TracebackType | None) -> None:
        if self._live is not None:
            self._live.__exit__(kind, value, traceback)

    def on_event(self, event: Any) -> None:
        """One engine event of the Automation API (pulumi.automation.EngineEvent)."""
        started = getattr(event, "resource_pre_event", None)
        done = getattr(event, "res_outputs_event", None)
        failed = getattr(event, "res_op_failed_event", None)
        diagnostic = getattr(event, "diagnostic_event", None)
        if started is not None:
            meta = started.metadata
            self.step = f"{_op(meta.op)} {meta.urn.rsplit('::', 1)[-1]} ({meta.type})"
            self._row(meta.urn)
        elif done is not None:
            meta = done.metadata
            self._row(meta.urn)[OP_COLUMN.get(_op(meta.op), "ok")] += 1
        elif failed is not None:
            self._row(failed.metadata.urn)["failed"] += 1
        elif diagnostic is not None and diagnostic.severity == "error":
            lines = str(diagnostic.message).strip().splitlines()
            first = REDACTOR.redact(lines[0]) if lines else ""
            where = (diagnostic.urn or "").rsplit("::", 1)[-1] or self.stack
            # As text, not markup: the engine's messages may hold brackets.
            self.console.print(Text.assemble(("failed", "red"), f" platform {where}: {first}"),
                               highlight=False)
        self._refresh()

    def _row(self, urn: str) -> dict[str, int]:
        component = component_of(urn)
        if component not in self.counts:
            self.counts[component] = dict.fromkeys(PLATFORM_COLUMNS, 0)
        return self.counts[component]

    def _refresh(self) -> None:
        if self._live is not None:
            self._live.update(self._table())

    def _table(self) -> Table:
        table = Table(title=f"layer platform: {self.step}", title_justify="left")
        table.add_column("component")
        for column in PLATFORM_COLUMNS:
            table.add_column(column, justify="right")
        for component, counts in self.counts.items():
            table.add_row(component, *(str(counts[column]) for column in PLATFORM_COLUMNS))
        return table


def _op(op: Any) -> str:
    """An operation's name: the engine's JSON gives a plain string, the SDK an OpType."""
    return str(getattr(op, "value", op))
