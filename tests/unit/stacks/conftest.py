"""Fixtures of the platform stack tests (defined in platform_helpers)."""

from platform_helpers import checked, default_run, program_runs

__all__ = ["checked", "default_run", "program_runs"]
