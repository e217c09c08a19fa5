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
from blueprint.validate.report import write_outputs
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


class SummaryDoc(_Strict):
    schema_: Literal["blueprint-validation/1"]
    site: str
    suite: str
    started: dt.datetime
    finished: dt.datetime
    duration: float
    verdict: Literal["passed", "failed"]
    exit_code: Literal[0, 1]
    nodes: list[str]
    counts: dict[StatusName, int]
    counts_by_layer: dict[str, dict[StatusName, int]]
    waivers: list[WaiverStateDoc]
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
    for model in (SummaryDoc, ResultDoc, CommandDoc, WaiverStateDoc):
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
