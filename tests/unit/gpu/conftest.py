"""The GPU unit tests import validation/checks/test_gpu.py, whose `check` marker the
validation plugin registers only in its own pytest run: register it here too."""

from __future__ import annotations

import pytest


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "check(id): the stable id <layer>.<name> of a check")
