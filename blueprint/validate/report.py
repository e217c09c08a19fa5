"""Outputs of a validation run: JUnit XML per layer, summary.json and a self-contained HTML."""

from __future__ import annotations

import json
import logging
import xml.etree.ElementTree as ET
from collections import defaultdict
from pathlib import Path
from typing import Any

import jinja2

from blueprint.validate.model import (
    CLUSTER,
    KNOWN_LAYERS,
    CheckResult,
    ReportPaths,
    Status,
    ValidationReport,
    Waiver,
)
from blueprint.validate.verdict import counts

log = logging.getLogger(__name__)

SCHEMA = "blueprint-validation/1"

STATUS_COLOURS = {
    Status.PASSED: "#2e7d32",
    Status.WAIVED: "#8e6c00",
    Status.SKIPPED: "#78909c",
    Status.NOT_APPLICABLE: "#b0bec5",
    Status.FAILED: "#c62828",
    Status.ERROR: "#6a1b9a",
}


def layers_in_order(results: list[CheckResult]) -> list[str]:
    present = {r.layer for r in results}
    return [layer for layer in KNOWN_LAYERS if layer in present]


def _waiver_json(waiver: Waiver) -> dict[str, Any]:
    return {
        "check": waiver.check,
        "node": waiver.node,
        "reason": waiver.reason,
        "expires": waiver.expires.isoformat(),
    }


def summary(report: ValidationReport, waiver_states: list[tuple[Waiver, str]]) -> dict[str, Any]:
    """The summary.json document (schema in docs/validation.md)."""
    by_layer = {
        layer: counts([r for r in report.results if r.layer == layer])
        for layer in layers_in_order(report.results)
    }
    return {
        "schema": SCHEMA,
        "run_id": report.run_id,
        "site": report.site_name,
        "suite": report.suite_name,
        "include_optional": report.include_optional,
        "started": report.started.isoformat(),
        "finished": report.finished.isoformat(),
        "duration": round((report.finished - report.started).total_seconds(), 3),
        "verdict": report.verdict.value,
        "exit_code": int(report.exit_code),
        # The site's nodes, then the cluster-scoped checks' pseudo-node.
        "nodes": sorted({r.node for r in report.results}, key=lambda n: (n == CLUSTER, n)),
        "counts": counts(report.results),
        "counts_by_layer": by_layer,
        "waivers": [_waiver_json(w) | {"state": state} for w, state in waiver_states],
        "changes": report.changes,
        "results": [
            {
                "check": r.check_id,
                "layer": r.layer,
                "node": r.node,
                "status": r.status.value,
                "mandatory": r.mandatory,
                "show_stopper": r.show_stopper,
                "duration": round(r.duration, 3),
                "message": r.message,
                "raw_status": r.raw_status.value if r.raw_status else None,
                "waiver": _waiver_json(r.waiver) if r.waiver else None,
                "waiver_expired": r.waiver_expired,
                "commands": [
                    {"command": c.command, "rc": c.rc, "stdout": c.stdout, "stderr": c.stderr}
                    for c in r.commands
                ],
            }
            for r in report.results
        ],
    }


def write_summary(document: dict[str, Any], path: Path) -> Path:
    path.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    return path


def _command_text(result: CheckResult) -> str:
    parts = []
    for command in result.commands:
        parts.append(f"$ {command.command}  (exit {command.rc})")
        parts.extend(text.rstrip() for text in (command.stdout, command.stderr) if text.strip())
    return "\n".join(parts)


FAILING = ("failed", "error")


def compare(current: dict[str, Any], previous: dict[str, Any] | None) -> dict[str, Any] | None:
    """What changed between two summary.json documents of the same site, per check and node.

    `newly_failing`: failed or error now, not before; `newly_passing`: passed now, failed or
    error before; `other_changes`: any other change of status; `new_checks` and
    `removed_checks`: results only in this run or only in the previous one.
    """
    if previous is None:
        return None
    before = {(r["check"], r["node"]): r for r in previous.get("results", [])}
    now = {(r["check"], r["node"]): r for r in current["results"]}
    changes: dict[str, Any] = {
        "previous_run": previous.get("run_id", ""),
        "previous_finished": previous.get("finished", ""),
        "previous_verdict": previous.get("verdict", ""),
        "newly_failing": [],
        "newly_passing": [],
        "other_changes": [],
        "new_checks": [],
        "removed_checks": [],
    }
    for key, result in now.items():
        entry = {"check": key[0], "node": key[1], "status": result["status"]}
        if key not in before:
            changes["new_checks"].append(entry)
            continue
        was = before[key]["status"]
        if was == result["status"]:
            continue
        entry["was"] = was
        if result["status"] in FAILING and was not in FAILING:
            changes["newly_failing"].append(entry | {"message": result["message"]})
        elif result["status"] == "passed" and was in FAILING:
            changes["newly_passing"].append(entry)
        else:
            changes["other_changes"].append(entry)
    for key, result in before.items():
        if key not in now:
            changes["removed_checks"].append(
                {"check": key[0], "node": key[1], "status": result["status"]}
            )
    return changes


def _junit_suite(layer: str, in_layer: list[CheckResult]) -> ET.Element:
    tally = counts(in_layer)
    suite = ET.Element(
        "testsuite",
        name=layer,
        tests=str(len(in_layer)),
        failures=str(tally["failed"]),
        errors=str(tally["error"]),
        skipped=str(tally["skipped"] + tally["not_applicable"] + tally["waived"]),
        time=f"{sum(r.duration for r in in_layer):.3f}",
    )
    for result in in_layer:
        case = ET.SubElement(
            suite,
            "testcase",
            classname=f"{layer}.{result.node}",
            name=result.check_id,
            time=f"{result.duration:.3f}",
        )
        _junit_outcome(case, result)
        output = _command_text(result)
        if output:
            ET.SubElement(case, "system-out").text = output
    return suite


def write_junit_combined(results: list[CheckResult], path: Path, name: str) -> Path:
    """Every layer in one JUnit XML file: one <testsuite> per layer (for `--junit PATH`)."""
    root = ET.Element("testsuites", name=name)
    for layer in layers_in_order(results):
        root.append(_junit_suite(layer, [r for r in results if r.layer == layer]))
    tree = ET.ElementTree(root)
    ET.indent(tree)
    tree.write(path, encoding="utf-8", xml_declaration=True)
    return path


def write_junit(results: list[CheckResult], out_dir: Path) -> list[Path]:
    """One JUnit XML file per layer: junit-<layer>.xml."""
    paths = []
    for layer in layers_in_order(results):
        suite = _junit_suite(layer, [r for r in results if r.layer == layer])
        path = out_dir / f"junit-{layer}.xml"
        root = ET.Element("testsuites", name=f"validation {layer}")
        root.append(suite)
        tree = ET.ElementTree(root)
        ET.indent(tree)
        tree.write(path, encoding="utf-8", xml_declaration=True)
        paths.append(path)
    return paths


def _junit_outcome(case: ET.Element, result: CheckResult) -> None:
    if result.status is Status.FAILED:
        ET.SubElement(case, "failure", message=result.message).text = result.message
    elif result.status is Status.ERROR:
        ET.SubElement(case, "error", message=result.message).text = result.message
    elif result.status in (Status.SKIPPED, Status.NOT_APPLICABLE):
        ET.SubElement(case, "skipped", message=f"{result.status.value}: {result.message}")
    elif result.status is Status.WAIVED and result.waiver is not None:
        text = f"waived until {result.waiver.expires}: {result.waiver.reason} ({result.message})"
        ET.SubElement(case, "skipped", message=text)


def _environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.PackageLoader("blueprint.validate", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def render_html(document: dict[str, Any]) -> str:
    """The HTML report: self-contained, no script, every value escaped."""
    results = document["results"]
    nodes = document["nodes"]
    checks = list(dict.fromkeys(r["check"] for r in results))
    grid = {(r["check"], r["node"]): r for r in results}
    check_meta = {r["check"]: r for r in results}
    problems = [r for r in results if r["status"] in ("failed", "error") or r["waiver_expired"]]
    durations: dict[str, list[float]] = defaultdict(list)
    for r in results:
        if r["status"] not in ("not_applicable",):
            durations[r["check"]].append(r["duration"])
    template = _environment().get_template("report.html.j2")
    return template.render(
        doc=document,
        nodes=nodes,
        checks=checks,
        grid=grid,
        check_meta=check_meta,
        problems=problems,
        durations=durations,
        colours={status.value: colour for status, colour in STATUS_COLOURS.items()},
        statuses=[status.value for status in STATUS_COLOURS],
    )


def write_html(document: dict[str, Any], path: Path) -> Path:
    path.write_text(render_html(document), encoding="utf-8")
    return path


def write_outputs(
    report: ValidationReport,
    waiver_states: list[tuple[Waiver, str]],
    out_dir: Path,
    *,
    previous: dict[str, Any] | None = None,
) -> ReportPaths:
    """Write every output of the run into `out_dir` and return their paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    junit = write_junit(report.results, out_dir)
    write_junit_combined(report.results, out_dir / "junit.xml", f"validation {report.site_name}")
    document = summary(report, waiver_states)
    report.changes = compare(document, previous)
    document["changes"] = report.changes
    json_path = write_summary(document, out_dir / "summary.json")
    html_path = write_html(document, out_dir / "report.html")
    return ReportPaths(junit=junit, json=json_path, html=html_path)
