"""Waivers and the verdict: computed from the results, never from pytest's exit code."""

from __future__ import annotations

import datetime as dt
import logging
from collections import Counter

from blueprint.validate.model import CheckResult, Status, Verdict, Waiver

log = logging.getLogger(__name__)

# Results that a mandatory check may have without failing the run.
_ACCEPTABLE = (Status.PASSED, Status.SKIPPED, Status.NOT_APPLICABLE, Status.WAIVED)


def apply_waivers(results: list[CheckResult], waivers: list[Waiver], today: dt.date) -> None:
    """Turn failed or errored results that a waiver covers into `waived`, unless it expired.

    An expired waiver stops counting: the result keeps its status and shows the waiver as
    expired. A waiver never touches a result that passed, was skipped or not applicable.
    """
    for result in results:
        if result.status not in (Status.FAILED, Status.ERROR):
            continue
        waiver = next((w for w in waivers if w.matches(result.check_id, result.node)), None)
        if waiver is None:
            continue
        result.waiver = waiver
        result.raw_status = result.status
        if waiver.expired(today):
            result.waiver_expired = True
            log.warning(
                "Waiver of %s on %s expired on %s", result.check_id, result.node, waiver.expires
            )
        else:
            result.status = Status.WAIVED


def compute_verdict(results: list[CheckResult]) -> Verdict:
    """`passed` when every mandatory (or show-stopper) check passed, was waived or skipped."""
    for result in results:
        if result.counts_for_verdict and result.status not in _ACCEPTABLE:
            return Verdict.FAILED
    return Verdict.PASSED


def waiver_states(
    results: list[CheckResult], waivers: list[Waiver], today: dt.date
) -> list[tuple[Waiver, str]]:
    """Each waiver with its state: expired, applied (covers a result) or unused."""
    states = []
    for waiver in waivers:
        used = any(r.waiver is waiver for r in results)
        if waiver.expired(today):
            state = "expired"
        elif used:
            state = "applied"
        else:
            state = "unused"
        states.append((waiver, state))
    return states


def counts(results: list[CheckResult]) -> dict[str, int]:
    """Number of results per status, every status present."""
    seen = Counter(r.status for r in results)
    return {status.value: seen.get(status, 0) for status in Status}
