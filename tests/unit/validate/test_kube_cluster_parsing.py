"""The cluster checks' parsing of API objects, and the conformance check's use of sonobuoy and
hydrophone (stand-in scripts on PATH: neither tool can run here)."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from blueprint.secrets import REDACTOR
from blueprint.validate.model import ClusterPolicy, Suite
from validation.kube.cluster import (
    default_classes,
    gpu_count,
    node_not_ready,
    pod_problem,
    ready_slice_addresses,
)
from validation.kube.conformance import check_conformance, sonobuoy_status
from validation.kube.session import KubeSession, remember_credentials


def node(ready: dict[str, Any] | None) -> dict[str, Any]:
    conditions = [] if ready is None else [{"type": "Ready", **ready}]
    return {"metadata": {"name": "n"}, "status": {"conditions": conditions}}


@pytest.mark.parametrize(
    ("ready", "expected"),
    [
        ({"status": "True"}, None),
        ({"status": "False", "reason": "KubeletNotReady", "message": "PLEG is not healthy"},
         "Ready=False (KubeletNotReady: PLEG is not healthy)"),
        ({"status": "Unknown", "reason": "NodeStatusUnknown"}, "Ready=Unknown (NodeStatusUnknown)"),
        (None, "no Ready condition"),
    ],
)
def test_node_readiness(ready: dict[str, Any] | None, expected: str | None) -> None:
    assert node_not_ready(node(ready)) == expected


def pod(phase: str, *containers: dict[str, Any], reason: str = "") -> dict[str, Any]:
    status: dict[str, Any] = {"phase": phase, "containerStatuses": list(containers)}
    if reason:
        status["reason"] = reason
    return {"metadata": {"name": "p"}, "status": status}


@pytest.mark.parametrize(
    ("obj", "expected"),
    [
        (pod("Running", {"name": "a", "ready": True, "restartCount": 2}), None),
        (pod("Succeeded", {"name": "a", "ready": False}), None),
        (pod("Running", {"name": "a", "ready": False, "restartCount": 9,
                         "state": {"waiting": {"reason": "CrashLoopBackOff"}}},
             {"name": "b", "ready": True, "restartCount": 1}),
         "Running, container a waiting: CrashLoopBackOff, 10 restarts"),
        (pod("Pending", {"name": "a", "ready": False,
                         "state": {"waiting": {"reason": "ImagePullBackOff"}}}),
         "Pending, container a waiting: ImagePullBackOff, 0 restarts"),
        (pod("Failed", {"name": "a", "ready": False, "restartCount": 0,
                        "state": {"terminated": {"reason": "OOMKilled", "exitCode": 137}}}),
         "Failed, container a terminated: OOMKilled (exit 137), 0 restarts"),
        (pod("Failed", reason="Evicted"), "Failed, Evicted, 0 restarts"),
        (pod("Running"), "Running, 0 restarts"),
    ],
)
def test_pod_problem(obj: dict[str, Any], expected: str | None) -> None:
    assert pod_problem(obj) == expected


def test_default_classes_read_both_annotations() -> None:
    classes: list[dict[str, Any]] = [
        {"metadata": {"name": "a", "annotations": {
            "storageclass.kubernetes.io/is-default-class": "true"}}},
        {"metadata": {"name": "b", "annotations": {
            "storageclass.beta.kubernetes.io/is-default-class": "true"}}},
        {"metadata": {"name": "c", "annotations": {
            "storageclass.kubernetes.io/is-default-class": "false"}}},
        {"metadata": {"name": "d"}},
    ]
    assert default_classes(classes) == ["a", "b"]


def test_slice_addresses_without_ready_count_as_ready() -> None:
    slices: list[dict[str, Any]] = [{"endpoints": [
        {"addresses": ["10.0.0.1"], "conditions": {"ready": True}},
        {"addresses": ["10.0.0.2"], "conditions": {}},
        {"addresses": ["10.0.0.3"], "conditions": {"ready": False}},
    ]}, {"endpoints": None}]
    assert ready_slice_addresses(slices) == (["10.0.0.1", "10.0.0.2"], ["10.0.0.3"])


@pytest.mark.parametrize(("value", "count"), [("2", 2), ("0", 0), (None, 0), ("1k", 0)])
def test_gpu_count(value: str | None, count: int) -> None:
    allocatable = {} if value is None else {"nvidia.com/gpu": value}
    assert gpu_count({"status": {"allocatable": allocatable}}) == count


def test_cluster_policy_defaults_and_suite_field() -> None:
    suite = Suite.model_validate(yaml.safe_load(
        "name: x\npolicy: {cluster: {pvc_storage_class: fast, probe_image: "
        "mirror.site/busybox:1.36}}\nchecks: []\n"))
    assert suite.policy.cluster.pvc_storage_class == "fast"
    assert suite.policy.cluster.probe_image == "mirror.site/busybox:1.36"
    assert ClusterPolicy().probe_image == "busybox:1.36"
    assert ClusterPolicy().pvc_storage_class is None


def test_sonobuoy_status() -> None:
    text = "Plugin: e2e\nStatus: passed\nTotal: 1\nPassed: 1\nFailed: 0\n"
    assert sonobuoy_status(text) == "passed"
    assert sonobuoy_status("Plugin: e2e\nStatus: failed\n") == "failed"
    assert sonobuoy_status("nothing") is None


# --- conformance with stand-in tools ----------------------------------------------------------

KUBECONFIG = """\
apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://127.0.0.1:1"}}]
users: [{name: u, user: {token: unit-canary-token-5e1f}}]
contexts: [{name: c, context: {cluster: c, user: u}}]
current-context: c
"""


@pytest.fixture
def tools(tmp_path: Path) -> Iterator[Path]:
    """An empty folder as the only PATH entry besides /usr/bin, for stand-in tools."""
    folder = tmp_path / "bin"
    folder.mkdir()
    saved = os.environ["PATH"]
    os.environ["PATH"] = f"{folder}:/usr/bin"
    yield folder
    os.environ["PATH"] = saved


def stand_in_tool(folder: Path, name: str, script: str) -> Path:
    """A STAND-IN for sonobuoy or hydrophone: logs its arguments, then runs `script`."""
    path = folder / name
    path.write_text(f'#!/bin/sh\necho "$@" >> {folder}/calls\n{script}\n')
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return folder / "calls"


def session(tmp_path: Path) -> tuple[KubeSession, str]:
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(KUBECONFIG)
    return KubeSession(str(kubeconfig)), str(kubeconfig)


SONOBUOY = """\
case "$1" in
  retrieve) touch "$2/202612042200_sonobuoy_x.tar.gz"; echo "$2/202612042200_sonobuoy_x.tar.gz";;
  results) printf 'Plugin: e2e\\nStatus: %s\\nTotal: 1\\n' "$RESULT";;
esac
"""


@pytest.mark.parametrize("result", ["passed", "failed"])
def test_sonobuoy_quick_mode(tmp_path: Path, tools: Path, result: str,
                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RESULT", result)
    calls = stand_in_tool(tools, "sonobuoy", SONOBUOY)
    kube, kubeconfig = session(tmp_path)
    outcome = check_conformance(kube, kubeconfig, None, "focus", 60.0)

    assert outcome.passed == (result == "passed")
    if result == "failed":
        assert outcome.reason.startswith("seen: sonobuoy quick mode: status failed")
    lines = calls.read_text().splitlines()
    assert lines[0] == f"run --kubeconfig {kubeconfig} --mode quick --wait"
    assert lines[-1] == f"delete --kubeconfig {kubeconfig} --wait"


def test_hydrophone_failure_and_cleanup(tmp_path: Path, tools: Path) -> None:
    calls = stand_in_tool(tools, "hydrophone", 'case "$*" in *--focus*) exit 1;; esac')
    kube, kubeconfig = session(tmp_path)
    outcome = check_conformance(kube, kubeconfig, "site", r"\[sig-node\] Pods", 60.0)

    assert not outcome.passed
    assert outcome.reason.startswith(r"seen: hydrophone --focus '\[sig-node\] Pods' exited 1")
    lines = calls.read_text().splitlines()
    assert lines[0].startswith(f"--kubeconfig {kubeconfig} --context site --focus ")
    assert lines[-1] == f"--kubeconfig {kubeconfig} --context site --cleanup"


def test_kubeconfig_credentials_are_masked(tmp_path: Path) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(KUBECONFIG)
    remember_credentials(str(kubeconfig))
    assert "unit-canary-token-5e1f" not in REDACTOR.redact("token unit-canary-token-5e1f")
