"""Fixtures of the platform stack tests (defined in platform_helpers)."""

from __future__ import annotations

import pytest
from platform_helpers import checked, default_run, program_runs, require_checked

__all__ = ["checked", "default_run", "program_runs"]


def pytest_runtest_setup(item: pytest.Item) -> None:
    require_checked(item)
