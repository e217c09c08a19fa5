"""Shared builders for the validation unit tests."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from blueprint.validate.model import CheckResult, CommandRecord, Status

MakeResult = Callable[..., CheckResult]


def _make_result(
    check: str,
    node: str = "n1",
    status: Status = Status.PASSED,
    *,
    mandatory: bool = True,
    message: str = "",
    show_stopper: bool = False,
    stdout: str = "0\n",
) -> CheckResult:
    return CheckResult(
        check_id=check,
        node=node,
        status=status,
        mandatory=mandatory,
        show_stopper=show_stopper,
        duration=0.25,
        message=message,
        commands=[CommandRecord("cat /proc/sys/net/ipv4/ip_forward", 0, stdout, "")],
    )


@pytest.fixture
def make_result() -> MakeResult:
    """Build one CheckResult: make_result(check, node, status, mandatory=...)."""
    return _make_result
