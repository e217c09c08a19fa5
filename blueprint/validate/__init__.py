"""`blueprint validate`: layered checks of a site's nodes, one verdict, JUnit/JSON/HTML reports."""

from __future__ import annotations

from blueprint.validate.model import (
    CheckResult,
    ClusterTarget,
    NodeTarget,
    ReportPaths,
    Status,
    ValidationReport,
    ValidationTarget,
    Verdict,
    Waiver,
    load_suite,
)
from blueprint.validate.runner import run_validation

__all__ = [
    "CheckResult",
    "ClusterTarget",
    "NodeTarget",
    "ReportPaths",
    "Status",
    "ValidationReport",
    "ValidationTarget",
    "Verdict",
    "Waiver",
    "load_suite",
    "run_validation",
]
