"""Live progress of a deploy: nodes by task counts, the current task, failures as they come."""

from __future__ import annotations

from types import TracebackType
from typing import Any

from rich.console import Console
from rich.live import Live
from rich.table import Table

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
