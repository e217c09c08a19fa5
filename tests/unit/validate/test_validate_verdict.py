"""The verdict table: what a run's results and waivers make of its verdict and exit code."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

import pytest

from blueprint.errors import ExitCode
from blueprint.validate.model import (
    CheckResult,
    ReportPaths,
    Status,
    ValidationReport,
    Verdict,
    Waiver,
)
from blueprint.validate.verdict import apply_waivers, compute_verdict, counts, waiver_states

MakeResult = Callable[..., CheckResult]

TODAY = dt.date(2026, 12, 3)
LATER = dt.date(2027, 1, 31)
EARLIER = dt.date(2026, 11, 30)
CHECK = "os.sysctl.net_ipv4_ip_forward"

# (case, status, mandatory, show_stopper, waiver expiry or None, final status, verdict)
TABLE = [
    ("mandatory-pass", Status.PASSED, True, False, None, Status.PASSED, Verdict.PASSED),
    ("mandatory-fail", Status.FAILED, True, False, None, Status.FAILED, Verdict.FAILED),
    ("mandatory-error", Status.ERROR, True, False, None, Status.ERROR, Verdict.FAILED),
    ("optional-fail", Status.FAILED, False, False, None, Status.FAILED, Verdict.PASSED),
    ("optional-error", Status.ERROR, False, False, None, Status.ERROR, Verdict.PASSED),
    ("show-stopper-fail", Status.FAILED, False, True, None, Status.FAILED, Verdict.FAILED),
    ("mandatory-skipped", Status.SKIPPED, True, False, None, Status.SKIPPED, Verdict.PASSED),
    (
        "mandatory-not-applicable",
        Status.NOT_APPLICABLE,
        True,
        False,
        None,
        Status.NOT_APPLICABLE,
        Verdict.PASSED,
    ),
    ("waived-fail", Status.FAILED, True, False, LATER, Status.WAIVED, Verdict.PASSED),
    ("waived-error", Status.ERROR, True, False, LATER, Status.WAIVED, Verdict.PASSED),
    ("waiver-expires-today", Status.FAILED, True, False, TODAY, Status.WAIVED, Verdict.PASSED),
    ("expired-waiver", Status.FAILED, True, False, EARLIER, Status.FAILED, Verdict.FAILED),
    ("waiver-of-a-pass", Status.PASSED, True, False, LATER, Status.PASSED, Verdict.PASSED),
]


@pytest.mark.parametrize(
    ("status", "mandatory", "show_stopper", "expires", "final", "verdict"),
    [pytest.param(*row[1:], id=row[0]) for row in TABLE],
)
def test_verdict_table(
    make_result: MakeResult,
    status: Status,
    mandatory: bool,
    show_stopper: bool,
    expires: dt.date | None,
    final: Status,
    verdict: Verdict,
) -> None:
    results = [
        make_result("os.module.overlay"),
        make_result(CHECK, status=status, mandatory=mandatory, show_stopper=show_stopper),
    ]
    waivers = [] if expires is None else [Waiver(CHECK, None, "kernel is the host's", expires)]

    apply_waivers(results, waivers, TODAY)

    assert results[1].status is final
    assert compute_verdict(results) is verdict
    if expires is not None and expires < TODAY:
        assert results[1].waiver_expired
        assert waiver_states(results, waivers, TODAY)[0][1] == "expired"


def test_waiver_for_one_node_leaves_the_other(make_result: MakeResult) -> None:
    results = [
        make_result(CHECK, "n1", Status.FAILED),
        make_result(CHECK, "n2", Status.FAILED),
    ]
    waivers = [Waiver(CHECK, "n2", "n2 routes on purpose", LATER)]

    apply_waivers(results, waivers, TODAY)

    assert [r.status for r in results] == [Status.FAILED, Status.WAIVED]
    assert results[1].raw_status is Status.FAILED
    assert compute_verdict(results) is Verdict.FAILED


def test_unused_waiver_is_listed_as_unused(make_result: MakeResult) -> None:
    results = [make_result(CHECK)]
    waivers = [Waiver("os.swap_off", None, "swap on purpose", LATER)]
    apply_waivers(results, waivers, TODAY)
    assert waiver_states(results, waivers, TODAY) == [(waivers[0], "unused")]


def test_counts_name_every_status(make_result: MakeResult) -> None:
    tally = counts([make_result(CHECK, status=Status.FAILED), make_result("os.swap_off")])
    assert tally == {
        "passed": 1,
        "failed": 1,
        "error": 0,
        "skipped": 0,
        "not_applicable": 0,
        "waived": 0,
    }


@pytest.mark.parametrize(
    ("verdict", "code"),
    [(Verdict.PASSED, ExitCode.OK), (Verdict.FAILED, ExitCode.VALIDATION_FAILED)],
)
def test_exit_code_follows_the_verdict(
    make_result: MakeResult, verdict: Verdict, code: ExitCode
) -> None:
    now = dt.datetime(2026, 12, 3, tzinfo=dt.UTC)
    results = [
        make_result(CHECK, "n1", Status.FAILED),
        make_result(CHECK, "n2", Status.ERROR),
        make_result("os.swap_off", "n1", Status.WAIVED),
    ]
    report = ValidationReport(
        "lab",
        "lab",
        now,
        now,
        verdict,
        results,
        [],
        ReportPaths([], None, None),  # type: ignore[arg-type]
    )
    assert report.exit_code is code
    assert report.failed_checks() == {(CHECK, "n1")}
    assert report.errored_checks() == {(CHECK, "n2")}
