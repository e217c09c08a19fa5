"""The HTML report as a browser renders it: Debian's chromium, headless, no network.

The DOM chromium builds (`--dump-dom`) must show the verdict and each failed check, and hold
no reference to anything outside the file: no href, src or CSS url() to another host.
"""

from __future__ import annotations

import datetime as dt
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest

from blueprint.validate.model import (
    CheckResult,
    CommandRecord,
    ReportPaths,
    Status,
    ValidationReport,
    Waiver,
)
from blueprint.validate.report import write_outputs
from blueprint.validate.verdict import apply_waivers, compute_verdict, waiver_states

CHROMIUM = shutil.which("chromium")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium (scripts/setup)")

TODAY = dt.date(2026, 12, 3)


class References(HTMLParser):
    """Every URL-like attribute value and inline style of a document."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []
        self.styles: list[str] = []
        self.text: list[str] = []
        self.tags: set[str] = set()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.add(tag)
        for name, value in attrs:
            if name in ("href", "src", "action", "srcset", "data", "poster") and value:
                self.urls.append(value)
            if name == "style" and value:
                self.styles.append(value)

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def _report(tmp_path: Path) -> Path:
    def result(check: str, node: str, status: Status, message: str = "") -> CheckResult:
        command = CommandRecord("sysctl net.ipv4.ip_forward", 0,
                                "see https://example.com/docs <img src=https://evil.example/x>",
                                "")
        return CheckResult(check, node, status, True, duration=0.2, message=message,
                           commands=[command])

    results = [
        result("os.sysctl.net_ipv4_ip_forward", "lab-1", Status.FAILED,
               "seen: net.ipv4.ip_forward = 0; expected: net.ipv4.ip_forward = 1"),
        result("os.sysctl.net_ipv4_ip_forward", "lab-2", Status.PASSED),
        result("runtime.containerd.active", "lab-2", Status.FAILED,
               "seen: containerd.service inactive; expected: active"),
        result("security.ports.allowed", "lab-1", Status.PASSED),
        result("os.swap_off", "lab-1", Status.SKIPPED, "host-owned in a container"),
        result("os.packages.held", "lab-2", Status.FAILED, "seen: sudo held"),
    ]
    waivers = [Waiver("os.packages.held", "lab-2", "pinned until the fix", dt.date(2027, 1, 1))]
    apply_waivers(results, waivers, TODAY)
    now = dt.datetime(2026, 12, 3, 12, 0, tzinfo=dt.UTC)
    report = ValidationReport("lab", "lab", now, now + dt.timedelta(seconds=3),
                              compute_verdict(results), results, waivers,
                              ReportPaths([], tmp_path / "summary.json", tmp_path / "r.html"))
    return write_outputs(report, waiver_states(results, waivers, TODAY), tmp_path).html


def test_chromium_renders_verdict_failures_and_no_external_reference(tmp_path: Path) -> None:
    html = _report(tmp_path)
    assert CHROMIUM is not None

    # No network at all: any fetch the page tried would go to a closed port.
    done = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
         f"--user-data-dir={tmp_path / 'profile'}", "--proxy-server=127.0.0.1:9",
         "--virtual-time-budget=2000", "--dump-dom", html.as_uri()],
        capture_output=True, text=True, timeout=120, check=False)

    assert done.returncode == 0, done.stderr[-2000:]
    dom = References()
    dom.feed(done.stdout)
    text = " ".join(" ".join(dom.text).split())
    assert "FAILED" in text and "exit code 1" in text
    assert "failed os.sysctl.net_ipv4_ip_forward on lab-1 (mandatory)" in text
    assert "failed runtime.containerd.active on lab-2 (mandatory)" in text
    assert "waived" in text and "pinned until the fix" in text
    assert "script" not in dom.tags and "img" not in dom.tags
    assert [url for url in dom.urls if "://" in url or url.startswith("//")] == []
    assert [style for style in dom.styles if "url(" in style] == []
    assert "url(" not in done.stdout.split("</style>", 1)[0]
    # Command output is shown as text, never turned into markup.
    assert "<img src=https://evil.example/x>" in text
