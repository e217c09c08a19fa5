"""Fixtures of the platform stack tests (defined in platform_helpers)."""

from __future__ import annotations

import inspect

import pytest
from platform_helpers import checked, default_run, program_runs

__all__ = ["checked", "default_run", "program_runs"]

RUN_FIXTURES = {"default_run", "program_runs"}


def pytest_runtest_setup(item: pytest.Item) -> None:
    """A test that reads a program run must count its checks (the `checked` fixture),
    whether it takes the run from a fixture or runs the program itself."""
    names = set(getattr(item, "fixturenames", ()))
    function = getattr(item, "function", None)
    runs_itself = function is not None and "run_program(" in inspect.getsource(function)
    if (names & RUN_FIXTURES or runs_itself) and "checked" not in names:
        pytest.fail(f"{item.nodeid} reads a program run without the `checked` counter, so "
                    "nothing would prove its assertions ran")
