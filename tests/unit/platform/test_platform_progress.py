"""The platform layer's progress: the engine's events as a table per component, as the
Ansible layers show their nodes, and failures as one line each.

Stand-in: no Pulumi CLI runs here, so the events are built with the Automation API's own
event types, in the order the engine sends them for one step.
"""

from __future__ import annotations

import io

import pytest
from pulumi.automation import events
from rich.console import Console

from blueprint.progress import PlatformProgress, component_of
from blueprint.secrets import REDACTOR

STACK = "urn:pulumi:edge1::edge-platform::"
RELEASE = f"{STACK}edge:platform:Access$kubernetes:helm.sh/v3:Release::access-ingress"
NAMESPACE = (f"{STACK}edge:platform:Serving$edge:platform:ComponentNamespace$"
             "kubernetes:core/v1:Namespace::serving-space-ns")


@pytest.mark.parametrize(("urn", "component"), [
    (RELEASE, "access"),
    (NAMESPACE, "serving"),
    (f"{STACK}edge:platform:Storage::storage", "storage"),
    (f"{STACK}pulumi:pulumi:Stack::edge-platform-edge1", "stack"),
    (f"{STACK}pulumi:providers:kubernetes::default_4_34_2", "stack"),
])
def test_each_resource_counts_for_its_component(urn: str, component: str) -> None:
    assert component_of(urn) == component


def _step(kind: str, op: events.OpType, urn: str) -> events.EngineEvent:
    meta = events.StepEventMetadata(op=op, urn=urn, type=urn.split("::")[2].rsplit("$")[-1],
                                    provider="")
    if kind == "pre":
        return events.EngineEvent(sequence=0, timestamp=0,
                                  resource_pre_event=events.ResourcePreEvent(metadata=meta))
    if kind == "done":
        return events.EngineEvent(sequence=0, timestamp=0,
                                  res_outputs_event=events.ResOutputsEvent(metadata=meta))
    return events.EngineEvent(sequence=0, timestamp=0, res_op_failed_event=events.ResOpFailedEvent(
        metadata=meta, status=1, steps=1))


def _error(message: str, urn: str) -> events.EngineEvent:
    return events.EngineEvent(sequence=0, timestamp=0, diagnostic_event=events.DiagnosticEvent(
        message=message, color="never", severity="error", urn=urn))


def _run(console: Console) -> PlatformProgress:
    with PlatformProgress(console, "edge1") as progress:
        for event in (_step("pre", events.OpType.CREATE, RELEASE),
                      _step("done", events.OpType.CREATE, RELEASE),
                      _step("pre", events.OpType.SAME, NAMESPACE),
                      _step("done", events.OpType.SAME, NAMESPACE),
                      _step("pre", events.OpType.UPDATE, RELEASE),
                      _step("failed", events.OpType.UPDATE, RELEASE),
                      _error("release access-ingress: timed out [canary-Pw-4k2]\nmore", RELEASE)):
            progress.on_event(event)
    return progress


def test_off_a_terminal_one_line_and_each_failure_with_secrets_masked() -> None:
    REDACTOR.add(["canary-Pw-4k2"])
    printed = io.StringIO()
    progress = _run(Console(file=printed, width=200))

    lines = printed.getvalue().splitlines()
    assert lines[0] == "layer platform: pulumi up of stack edge1"
    assert len(lines) == 2
    assert lines[1].startswith("failed platform access-ingress: release access-ingress: timed")
    assert "canary-Pw-4k2" not in printed.getvalue()
    assert progress.counts == {
        "access": {"ok": 0, "created": 1, "updated": 0, "replaced": 0, "deleted": 0,
                   "failed": 1},
        "serving": {"ok": 1, "created": 0, "updated": 0, "replaced": 0, "deleted": 0,
                    "failed": 0}}


def test_on_a_terminal_a_live_table_of_components_and_the_current_step() -> None:
    printed = io.StringIO()
    progress = _run(Console(file=printed, width=200, force_terminal=True))

    assert progress.step == "update access-ingress (kubernetes:helm.sh/v3:Release)"
    table = io.StringIO()
    Console(file=table, width=200).print(progress._table())
    rows = table.getvalue()
    assert "layer platform: update access-ingress" in rows
    cells = {line.split()[1]: line.split()[3::2] for line in rows.splitlines()
             if line.split()[1:2] in (["access"], ["serving"])}
    # ok, created, updated, replaced, deleted, failed
    assert cells == {"access": ["0", "1", "0", "0", "0", "1"],
                     "serving": ["1", "0", "0", "0", "0", "0"]}
    # The live table is transient: only the failure stays on the screen.
    assert "pulumi up of stack" not in printed.getvalue()
