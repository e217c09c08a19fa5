"""`blueprint upgrade`'s plan: one step per minor version, refusals before any change."""

from __future__ import annotations

from pathlib import Path

import pytest

from blueprint.errors import BadInput
from blueprint.kube.upgrade import parse_release, record_version, recorded_version, upgrade_plan
from blueprint.state import StateDir

KNOWN = ["v1.29.9", "v1.30.2", "v1.30.10", "v1.30.4+k3s1", "v1.30.6+k3s1", "v1.31.1+k3s1"]


@pytest.mark.parametrize(("running", "target", "steps"), [
    ("v1.31.4+k3s1", "v1.31.4+k3s1", []),
    ("v1.31.4+k3s1", "v1.31.6+k3s1", ["v1.31.6+k3s1"]),  # a patch: one step
    ("v1.31.4+k3s1", "v1.31.4+k3s2", ["v1.31.4+k3s2"]),  # a k3s rebuild
    ("v1.31.4+k3s1", "v1.32.0+k3s1", ["v1.32.0+k3s1"]),
    ("v1.29.3+k3s1", "v1.31.4+k3s1", ["v1.30.6+k3s1", "v1.31.4+k3s1"]),
    ("v1.29.3", "v1.31.4", ["v1.30.10", "v1.31.4"]),  # 1.30.10 is newer than 1.30.2
    ("v1.28.1", "v1.29.9", ["v1.29.9"]),
])
def test_plan_has_one_step_per_minor(running: str, target: str, steps: list[str]) -> None:
    assert upgrade_plan(running, target, KNOWN) == steps


@pytest.mark.parametrize(("running", "target", "refusal"), [
    ("v1.31.4+k3s1", "v1.30.6+k3s1", "a downgrade is not supported"),
    ("v1.31.4+k3s2", "v1.31.4+k3s1", "a downgrade is not supported"),
    ("v1.31.4", "v1.31.3", "a downgrade is not supported"),
    ("v1.30.1", "v1.32.0", "goes through 1.31, and the artifact catalogue pins no 1.31"),
    ("v1.31.4", "v2.0.0", "change of major version"),
    ("v1.31.4", "v1.32.0+k3s1", "not the same distribution"),
    ("1.31", "v1.32.0", "'1.31' is not a release version"),
    ("v1.31.4+k3s1", "latest", "'latest' is not a release version"),
])
def test_plan_refuses_downgrades_gaps_and_unknown_versions(
    running: str, target: str, refusal: str
) -> None:
    with pytest.raises(BadInput, match=refusal.replace(".", r"\.").replace("(", r"\(")):
        upgrade_plan(running, target, KNOWN)


def test_k3s_steps_ignore_plain_kubernetes_releases_of_the_same_minor() -> None:
    with pytest.raises(BadInput, match=r"pins no 1\.30"):
        upgrade_plan("v1.29.1+k3s1", "v1.31.4+k3s1", ["v1.30.10"])


def test_releases_order_by_number_not_by_text() -> None:
    assert parse_release("v1.31.10") > parse_release("v1.31.9")
    assert parse_release("v1.31.4+k3s2") > parse_release("v1.31.4+k3s1")


def test_the_recorded_version_is_read_back_for_the_plan(tmp_path: Path) -> None:
    state = StateDir.for_site(tmp_path)
    assert recorded_version(state) is None
    record_version(state, "v1.32.0+k3s1", "run-1")
    assert recorded_version(state) == "v1.32.0+k3s1"
