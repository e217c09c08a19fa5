"""Outputs: summary.json follows its documented schema, the HTML is self-contained and escaped."""

from __future__ import annotations

import datetime as dt
import json
import re
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path
from typing import Literal

import pytest
from pydantic import BaseModel, ConfigDict

from blueprint.validate.model import (
    CheckResult,
    ReportPaths,
    Status,
    ValidationReport,
    Verdict,
    Waiver,
)
from blueprint.validate.report import compare, write_outputs
from blueprint.validate.verdict import apply_waivers, compute_verdict, waiver_states

MakeResult = Callable[..., CheckResult]
TODAY = dt.date(2026, 12, 3)
HOSTILE = '<script>alert("x")</script><img src="https://evil.example/x.png">'

StatusName = Literal["passed", "failed", "error", "skipped", "not_applicable", "waived"]


# The schema of summary.json as docs/validation.md documents it.
class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CommandDoc(_Strict):
    command: str
    rc: int | None
    stdout: str
    stderr: str


class WaiverDoc(_Strict):
    check: str
    node: str | None
    reason: str
    expires: dt.date


class WaiverStateDoc(WaiverDoc):
    state: Literal["applied", "expired", "unused"]


class ResultDoc(_Strict):
    check: str
    layer: str
    node: str
    status: StatusName
    mandatory: bool
    show_stopper: bool
    duration: float
    message: str
    raw_status: StatusName | None
    waiver: WaiverDoc | None
    waiver_expired: bool
    commands: list[CommandDoc]


class ChangeDoc(_Strict):
    check: str
    node: str
    status: StatusName
    was: StatusName | None = None
    message: str | None = None


class ChangesDoc(_Strict):
    previous_run: str
    previous_finished: str
    previous_verdict: Literal["passed", "failed", ""]
    newly_failing: list[ChangeDoc]
    newly_passing: list[ChangeDoc]
    other_changes: list[ChangeDoc]
    new_checks: list[ChangeDoc]
    removed_checks: list[ChangeDoc]


class SummaryDoc(_Strict):
    schema_: Literal["blueprint-validation/1"]
    run_id: str
    site: str
    suite: str
    include_optional: bool
    started: dt.datetime
    finished: dt.datetime
    duration: float
    verdict: Literal["passed", "failed"]
    exit_code: Literal[0, 1]
    nodes: list[str]
    counts: dict[StatusName, int]
    counts_by_layer: dict[str, dict[StatusName, int]]
    waivers: list[WaiverStateDoc]
    changes: ChangesDoc | None
    results: list[ResultDoc]


@pytest.fixture
def written(tmp_path: Path, make_result: MakeResult) -> tuple[ValidationReport, Path]:
    results = [
        make_result("os.module.overlay", "n1"),
        make_result("os.module.overlay", "n2"),
        make_result(
            "os.sysctl.net_ipv4_ip_forward",
            "n1",
            Status.FAILED,
            message=f"seen: {HOSTILE}; expected: 1",
            stdout=HOSTILE,
        ),
        make_result("os.swap_off", "n1", Status.SKIPPED, message="host-owned in a container"),
        make_result("runtime.containerd.active", "n2", Status.FAILED),
        make_result("runtime.cri.socket", "n2", Status.ERROR, message="node unreachable"),
        make_result("gpu.driver.loaded", "n1", Status.NOT_APPLICABLE, message="not deployed"),
    ]
    waivers = [
        Waiver("runtime.containerd.active", "n2", "being replaced", dt.date(2027, 1, 1)),
        Waiver("os.swap_off", None, "old <b>waiver</b>", dt.date(2026, 1, 1)),
    ]
    apply_waivers(results, waivers, TODAY)
    now = dt.datetime(2026, 12, 3, 12, 0, tzinfo=dt.UTC)
    report = ValidationReport(
        site_name="lab",
        suite_name="lab",
        started=now,
        finished=now + dt.timedelta(seconds=4.5),
        verdict=compute_verdict(results),
        results=results,
        waivers=waivers,
        paths=ReportPaths([], tmp_path / "summary.json", tmp_path / "report.html"),
    )
    report.paths = write_outputs(report, waiver_states(results, waivers, TODAY), tmp_path)
    return report, tmp_path


def test_summary_matches_the_documented_schema(
    written: tuple[ValidationReport, Path],
) -> None:
    report, out = written
    data = json.loads((out / "summary.json").read_text())
    data["schema_"] = data.pop("schema")
    doc = SummaryDoc.model_validate(data)

    assert doc.verdict == "failed" and doc.exit_code == 1
    assert doc.counts["waived"] == 1 and doc.counts["failed"] == 1
    assert doc.counts_by_layer["gpu"]["not_applicable"] == 1
    assert [w.state for w in doc.waivers] == ["applied", "expired"]
    assert len(doc.results) == len(report.results)


def test_schema_in_the_docs_names_every_field() -> None:
    docs = (Path(__file__).resolve().parents[3] / "docs" / "validation.md").read_text()
    for model in (SummaryDoc, ResultDoc, CommandDoc, WaiverStateDoc, ChangesDoc, ChangeDoc):
        for name in model.model_fields:
            assert f"`{name.rstrip('_')}`" in docs, f"{model.__name__}.{name} is not documented"


def test_html_has_no_external_url_and_no_script(written: tuple[ValidationReport, Path]) -> None:
    html = (written[1] / "report.html").read_text()
    assert not re.search(r"""(src|href)\s*=\s*["']?https?://""", html, re.IGNORECASE)
    assert "<script" not in html.lower()
    assert "<link" not in html.lower()


def test_html_escapes_output(written: tuple[ValidationReport, Path]) -> None:
    html = (written[1] / "report.html").read_text()
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in html
    assert "old &lt;b&gt;waiver&lt;/b&gt;" in html


def test_html_shows_verdict_failures_and_waivers(written: tuple[ValidationReport, Path]) -> None:
    html = (written[1] / "report.html").read_text()
    assert html.index("FAILED") < html.index("Counts per layer")
    assert "$ cat /proc/sys/net/ipv4/ip_forward" in html
    assert "being replaced" in html and "expired" in html


def test_junit_per_layer(written: tuple[ValidationReport, Path]) -> None:
    report, out = written
    assert sorted(p.name for p in report.paths.junit) == [
        "junit-gpu.xml",
        "junit-os.xml",
        "junit-runtime.xml",
    ]
    suite = ET.parse(out / "junit-os.xml").getroot().find("testsuite")
    assert suite is not None
    assert suite.get("tests") == "4"
    assert suite.get("failures") == "1"
    runtime = ET.parse(out / "junit-runtime.xml").getroot().find("testsuite")
    assert runtime is not None
    assert runtime.get("errors") == "1"
    assert runtime.get("failures") == "0"  # the waived one


def test_verdict_enum_in_report(written: tuple[ValidationReport, Path]) -> None:
    assert written[0].verdict is Verdict.FAILED


def _doc(*results: tuple[str, str, str]) -> dict[str, object]:
    return {
        "run_id": "r1",
        "finished": "2026-12-03T12:00:00+00:00",
        "verdict": "failed",
        "results": [{"check": c, "node": n, "status": s, "message": f"{c} {s}"}
                    for c, n, s in results],
    }


def test_compare_sorts_every_change_into_its_list() -> None:
    previous = _doc(("os.a", "n1", "passed"), ("os.b", "n1", "failed"),
                    ("os.c", "n1", "skipped"), ("os.gone", "n1", "passed"),
                    ("os.d", "n1", "waived"), ("os.same", "n1", "failed"))
    current = _doc(("os.a", "n1", "failed"), ("os.b", "n1", "passed"),
                   ("os.c", "n1", "not_applicable"), ("os.new", "n1", "error"),
                   ("os.d", "n1", "error"), ("os.same", "n1", "failed"))

    changes = compare(current, previous)

    assert changes is not None
    assert changes["previous_run"] == "r1" and changes["previous_verdict"] == "failed"
    assert [(e["check"], e["was"], e["status"]) for e in changes["newly_failing"]] == [
        ("os.a", "passed", "failed"), ("os.d", "waived", "error")]
    assert changes["newly_failing"][0]["message"] == "os.a failed"
    assert [(e["check"], e["was"]) for e in changes["newly_passing"]] == [("os.b", "failed")]
    assert [(e["check"], e["was"], e["status"]) for e in changes["other_changes"]] == [
        ("os.c", "skipped", "not_applicable")]
    assert [(e["check"], e["status"]) for e in changes["new_checks"]] == [("os.new", "error")]
    assert [(e["check"], e["status"]) for e in changes["removed_checks"]] == [
        ("os.gone", "passed")]
    ChangesDoc.model_validate(changes)


def test_compare_without_a_previous_run_is_none() -> None:
    assert compare(_doc(("os.a", "n1", "passed")), None) is None


def test_changes_reach_summary_and_html(tmp_path: Path, make_result: MakeResult) -> None:
    results = [make_result("os.module.overlay", "n1", Status.FAILED, message="seen: x")]
    now = dt.datetime(2026, 12, 3, 12, 0, tzinfo=dt.UTC)
    report = ValidationReport("lab", "lab", now, now, compute_verdict(results), results, [],
                              ReportPaths([], tmp_path / "summary.json", tmp_path / "r.html"),
                              run_id="r2")
    previous = _doc(("os.module.overlay", "n1", "passed"))

    write_outputs(report, [], tmp_path, previous=previous)

    data = json.loads((tmp_path / "summary.json").read_text())
    assert data["run_id"] == "r2"
    assert data["changes"]["newly_failing"][0]["check"] == "os.module.overlay"
    html = (tmp_path / "report.html").read_text()
    assert "Changes since the previous run" in html
    assert re.search(r"<td>newly failing</td><td>os.module.overlay</td><td>n1</td>\s*"
                     r"<td>passed</td>\s*<td>failed</td>", html)


def test_junit_combined_holds_every_layer(written: tuple[ValidationReport, Path]) -> None:
    _, out = written
    root = ET.parse(out / "junit.xml").getroot()
    assert root.tag == "testsuites"
    assert [s.get("name") for s in root.findall("testsuite")] == ["os", "runtime", "gpu"]
    cases = root.findall(".//testcase")
    assert len(cases) == 7
    assert len(root.findall(".//failure")) == 1 and len(root.findall(".//error")) == 1
