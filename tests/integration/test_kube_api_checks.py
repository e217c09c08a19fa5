"""The Kubernetes-API checks (validation/kube/) against a STAND-IN API server.

No Kubernetes can run here, so `standins/kubeapi.py` plays the cluster: a real HTTPS server
with its own CA, bearer-token auth, objects from a snapshot (`standins/kubeapi-cluster.yaml`)
checked against the Kubernetes OpenAPI schema, and a provisioner and kubelet that really run
the round trip's pods under bubblewrap. Each check passes against the healthy stand-in, and
each fault the stand-in is started with makes exactly the expected checks fail, with a
readable reason. The checks also run through validation/checks/test_cluster.py with the
validation plugin, as the runner starts them. A canary bearer token never shows in a result.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from blueprint.proc import pid_alive, start_detached, stop_pids
from validation.ai.result import CheckResult
from validation.kube import (
    KubeSession,
    RoundTripSettings,
    check_anonymous_auth_off,
    check_conformance,
    check_default_storage_class,
    check_dns,
    check_gpu_allocatable,
    check_nodes_ready,
    check_pvc_round_trip,
    check_system_pods,
)

pytestmark = [pytest.mark.lab]
# Needs no lab node: runs before the session's lab is brought up, so they share no CPU time.
LAB_STAGE = -11

STANDINS = Path(__file__).resolve().parent / "standins"
STAND_IN = STANDINS / "kubeapi.py"
SNAPSHOT = STANDINS / "kubeapi-cluster.yaml"
CHECKS = Path(__file__).resolve().parents[2] / "validation" / "checks"
NODES = ["cp-1", "worker-1", "gpu-1"]
SETTINGS = RoundTripSettings(pod_timeout=5.0, bind_timeout=5.0, cleanup_timeout=5.0)
CLUSTER_POLICY = {"pod_timeout": 5.0, "bind_timeout": 5.0, "cleanup_timeout": 5.0}

NODES_READY = "kubernetes.cluster.nodes_ready"
SYSTEM_PODS = "kubernetes.cluster.system_pods"
DNS = "kubernetes.cluster.dns"
DEFAULT_CLASS = "kubernetes.cluster.default_storage_class"
ROUND_TRIP = "kubernetes.cluster.pvc_round_trip"
GPU = "kubernetes.cluster.gpu_allocatable"
ANONYMOUS = "kubernetes.cluster.anonymous_auth_off"
CONFORMANCE = "kubernetes.cluster.conformance"

# fault the stand-in starts with -> {check that fails: text its reason must contain}
FAULTS: dict[str, dict[str, str]] = {
    "node_not_ready": {
        NODES_READY: "node worker-1 Ready=False (KubeletNotReady: container runtime network "
        "not ready",
    },
    "crashloop_pod": {
        SYSTEM_PODS: "pod kube-proxy-x7k2p: Running, container kube-proxy waiting: "
        "CrashLoopBackOff, 7 restarts",
    },
    "no_default_storage_class": {
        DEFAULT_CLASS: "seen: no default StorageClass (classes: local-path, slow)",
        # Without a default class the claim names none, and nothing provisions it.
        ROUND_TRIP: "pod writer still Pending",
    },
    "two_default_storage_classes": {
        DEFAULT_CLASS: "seen: 2 default StorageClasses: local-path, slow",
    },
    "pvc_never_binds": {
        ROUND_TRIP: "pod writer still Pending, PodScheduled: Unschedulable 0/3 nodes are "
        "available: pod has unbound immediate PersistentVolumeClaims",
    },
    "volume_not_kept": {
        # The reader's `cat` finds no file on its fresh volume.
        ROUND_TRIP: "seen: pod reader ended Failed, terminated: Error (exit 1), log: cat: "
        "/data/token: No such file or directory",
    },
    "gpu_allocatable_zero": {
        GPU: "seen: node gpu-1 allocatable nvidia.com/gpu = 0",
    },
    "dns_endpoints_not_ready": {
        DNS: "seen: Service kube-system/kube-dns has no ready address in its EndpointSlices "
        "(not ready: 10.42.0.4)",
        # A failing readiness probe shows on the pod too.
        SYSTEM_PODS: "pod coredns-6799fbcd5-9xq4z: Running, container coredns running, not ready",
    },
    "anonymous_allowed": {
        ANONYMOUS: "without credentials answered HTTP 200",
    },
}


@dataclass
class StandIn:
    """A running stand-in API server and a kubeconfig for it."""

    kubeconfig: Path
    state: Path
    server: str
    token: str

    def get(self, path: str) -> Any:
        headers = {"Authorization": f"Bearer {self.token}"}
        verify = ssl.create_default_context(cafile=str(self.state / "ca.crt"))
        with httpx.Client(verify=verify, headers=headers) as http:
            response = http.get(self.server + path)
        response.raise_for_status()
        return response.json()


def _needs_bwrap() -> None:
    if shutil.which("bwrap") is None:
        pytest.skip("the stand-in's kubelet needs bubblewrap (apt-get install bubblewrap)")


@contextmanager
def stand_in(
    work: Path, faults: tuple[str, ...] = (), *, violations_expected: bool = False
) -> Iterator[StandIn]:
    """Start the stand-in with `faults`, write its kubeconfig; stop it by PID at the end and
    fail when it saw an object that the Kubernetes schema refuses (unless a test made one)."""
    _needs_bwrap()
    state = work / "state"
    token = "canary-" + secrets.token_hex(16)
    token_file = work / "token"
    token_file.write_text(token)
    token_file.chmod(0o600)
    command = [sys.executable, str(STAND_IN), "--snapshot", str(SNAPSHOT), "--state",
               str(state), "--token-file", str(token_file)]
    for fault in faults:
        command += ["--fault", fault]
    process = start_detached(command, work / "kubeapi.log")
    try:
        deadline = time.monotonic() + 20
        while not (state / "port").exists():
            assert process.poll() is None, (work / "kubeapi.log").read_text()
            assert time.monotonic() < deadline, "the stand-in did not start in 20 s"
            time.sleep(0.1)
        server = f"https://127.0.0.1:{(state / 'port').read_text()}"
        kubeconfig = work / "kubeconfig"
        kubeconfig.write_text(yaml.safe_dump({
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "stand-in", "cluster": {
                "server": server, "certificate-authority": str(state / "ca.crt")}}],
            "users": [{"name": "validator", "user": {"token": token}}],
            "contexts": [{"name": "stand-in",
                          "context": {"cluster": "stand-in", "user": "validator"}}],
            "current-context": "stand-in",
        }))
        yield StandIn(kubeconfig, state, server, token)
    finally:
        stop_pids([(process.pid, str(STAND_IN))], timeout=10)
        assert not pid_alive(process.pid, str(STAND_IN))
    violations = state / "violations.log"
    if not violations_expected:
        assert not violations.exists(), f"schema violations: {violations.read_text()}"


def run_all(cluster: StandIn, gpu_nodes: list[str] | None = None) -> dict[str, CheckResult]:
    session = KubeSession(str(cluster.kubeconfig))
    try:
        results = [
            check_nodes_ready(session, NODES),
            check_system_pods(session),
            check_dns(session),
            check_default_storage_class(session),
            check_pvc_round_trip(session, SETTINGS),
            check_gpu_allocatable(session, gpu_nodes),
            check_anonymous_auth_off(session),
        ]
    finally:
        session.close()
    return {result.check: result for result in results}


def all_text(result: CheckResult) -> str:
    return result.describe() + "\n" + "\n".join(str(item) for item in result.exchanges)


def assert_clean(cluster: StandIn, results: dict[str, CheckResult]) -> None:
    """No throwaway namespace or volume left, no token in any result."""
    names = [ns["metadata"]["name"] for ns in cluster.get("/api/v1/namespaces")["items"]]
    assert sorted(names) == ["default", "kube-system"]
    volumes = cluster.state / "volumes"
    assert not volumes.exists() or not any(volumes.iterdir())
    for result in results.values():
        assert cluster.token not in all_text(result)


def test_every_check_passes_on_the_healthy_stand_in(tmp_path: Path) -> None:
    with stand_in(tmp_path) as cluster:
        results = run_all(cluster)
        assert_clean(cluster, results)

    failed = {check: r.describe() for check, r in results.items() if not r.passed}
    assert not failed
    assert results[NODES_READY].reason == "3 nodes Ready: cp-1, worker-1, gpu-1"
    assert results[SYSTEM_PODS].reason == "4 kube-system pods healthy"
    assert results[DNS].reason == "Service kube-system/kube-dns: ready 10.42.0.4"
    assert results[DEFAULT_CLASS].reason == "default StorageClass local-path"
    assert results[ROUND_TRIP].reason.startswith(
        "token written and read back through PVC probe of class local-path (volume pvc-")
    assert results[GPU].reason == "gpu-1: 2 GPUs"
    assert results[ANONYMOUS].reason.endswith("without credentials: HTTP 401 (anonymous auth off)")
    # The round trip's requests are recorded for the report, the namespace's deletion last.
    methods = [(item.method, item.url.rsplit("/", 1)[-1]) for item in results[ROUND_TRIP].exchanges]
    assert ("POST", "namespaces") in methods
    assert any(method == "DELETE" for method, _ in methods)


@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_a_fault_fails_exactly_its_checks(tmp_path: Path, fault: str) -> None:
    with stand_in(tmp_path, (fault,)) as cluster:
        results = run_all(cluster)
        assert_clean(cluster, results)

    failed = {check for check, result in results.items() if not result.passed}
    assert failed == set(FAULTS[fault]), {c: results[c].describe() for c in failed}
    for check, text in FAULTS[fault].items():
        assert text in results[check].describe(), results[check].describe()
        assert "; expected: " in results[check].describe()


def test_named_nodes_that_the_cluster_lacks_are_named(tmp_path: Path) -> None:
    with stand_in(tmp_path) as cluster:
        session = KubeSession(str(cluster.kubeconfig))
        nodes = check_nodes_ready(session, ["cp-1", "edge-9"])
        gpus = check_gpu_allocatable(session, ["gpu-1", "worker-1"])
        no_gpus = check_gpu_allocatable(session, [])
        session.close()

    assert not nodes.passed
    assert nodes.reason == (
        "seen: node edge-9 is not in the cluster; expected: nodes cp-1, edge-9 Ready"
    )
    assert not gpus.passed
    assert "node worker-1 allocatable nvidia.com/gpu = 0" in gpus.reason
    assert no_gpus.skipped and no_gpus.reason == "no GPU node: the site expects none"


def test_the_stand_in_refuses_an_object_the_schema_refuses(tmp_path: Path) -> None:
    bad_pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "bad"},
               "spec": {"containers": [{"name": "c", "image": "busybox:1.36",
                                        "mountPath": "/data"}]}}
    with stand_in(tmp_path, violations_expected=True) as cluster:
        verify = ssl.create_default_context(cafile=str(cluster.state / "ca.crt"))
        headers = {"Authorization": f"Bearer {cluster.token}"}
        with httpx.Client(verify=verify, headers=headers) as http:
            answer = http.post(cluster.server + "/api/v1/namespaces/default/pods", json=bad_pod)
        logged = (cluster.state / "violations.log").read_text()

    assert answer.status_code == 422
    assert "'mountPath' was unexpected" in answer.json()["message"]
    assert logged.startswith("accepted Pod bad: Additional properties are not allowed")


def test_a_wrong_token_is_refused_without_showing_it(tmp_path: Path) -> None:
    with stand_in(tmp_path) as cluster:
        config = yaml.safe_load(cluster.kubeconfig.read_text())
        wrong = "canary-wrong-" + secrets.token_hex(8)
        config["users"][0]["user"]["token"] = wrong
        cluster.kubeconfig.write_text(yaml.safe_dump(config))
        session = KubeSession(str(cluster.kubeconfig))
        result = check_nodes_ready(session, NODES)
        session.close()

    assert not result.passed
    assert "/api/v1/nodes answered HTTP 401" in result.describe()
    assert wrong not in all_text(result)


def test_conformance_is_skipped_without_sonobuoy_or_hydrophone(tmp_path: Path) -> None:
    with stand_in(tmp_path) as cluster:
        session = KubeSession(str(cluster.kubeconfig))
        saved = os.environ["PATH"]
        os.environ["PATH"] = str(tmp_path)  # neither tool there
        try:
            result = check_conformance(session, str(cluster.kubeconfig), None, "x", 60.0)
        finally:
            os.environ["PATH"] = saved
            session.close()
    assert result.skipped
    assert result.reason == "neither sonobuoy nor hydrophone is on PATH of the controller"


# --- through the validation plugin, as the runner runs the cluster checks -------------------


def run_plugin(work: Path, context: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """pytest on validation/checks/test_cluster.py with the plugin, without --hosts."""
    context_file = work / "context-cluster.json"
    context_file.write_text(json.dumps(context))
    results = work / "results.json"
    command = [
        sys.executable, "-m", "pytest", str(CHECKS / "test_cluster.py"), "-c",
        str(CHECKS / "pytest.ini"), "--rootdir", str(CHECKS), "-p", "no:cacheprovider",
        "-p", "blueprint.validate.plugin", "-q", f"--bp-results={results}",
        "--bp-node=cluster", f"--bp-context={context_file}",
    ]
    done = subprocess.run(command, cwd=CHECKS, capture_output=True, text=True, timeout=180)
    assert results.exists(), done.stdout + done.stderr
    return {entry["id"]: entry for entry in json.loads(results.read_text())["results"]}


def test_the_checks_run_through_the_plugin(tmp_path: Path) -> None:
    with stand_in(tmp_path, ("crashloop_pod",)) as cluster:
        context = {
            "kubeconfig": str(cluster.kubeconfig),
            "kube_context": None,
            "kube_nodes": NODES,
            "gpu_nodes": None,
            "policy": {"cluster": CLUSTER_POLICY},
        }
        results = run_plugin(tmp_path, context)
        raw = (tmp_path / "results.json").read_text()
        token = cluster.token

    outcomes = {check: entry["outcome"] for check, entry in results.items()}
    assert outcomes == {
        NODES_READY: "passed", SYSTEM_PODS: "failed", DNS: "passed", DEFAULT_CLASS: "passed",
        ROUND_TRIP: "passed", GPU: "passed", ANONYMOUS: "passed", CONFORMANCE: "skipped",
    }
    assert "CrashLoopBackOff, 7 restarts" in results[SYSTEM_PODS]["message"]
    assert token not in raw


def test_without_a_kubeconfig_every_check_is_not_applicable(tmp_path: Path) -> None:
    results = run_plugin(tmp_path, {"kubeconfig": None, "policy": {}})
    assert len(results) == 8
    for entry in results.values():
        assert entry["outcome"] == "skipped"
        assert entry["message"] == (
            "not applicable: no kubeconfig in the validation context (no cluster API to check)"
        )


# --- `blueprint validate --kubeconfig`: the whole command against the stand-in --------------


def validate_cluster_cli(
    work: Path, cluster: StandIn, *args: str
) -> subprocess.CompletedProcess[str]:
    """`blueprint validate --kubeconfig` without a site, as an operator runs it."""
    command = [sys.executable, "-m", "blueprint.cli", "validate", "--kubeconfig",
               str(cluster.kubeconfig), "--state-dir", str(work / "runs"), *args]
    env = {**os.environ, "COLUMNS": "200"}
    env.pop("BLUEPRINT_AI_ENDPOINTS", None)
    return subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=work,
                          env=env)


def summary_of(work: Path) -> dict[str, Any]:
    found = sorted((work / "runs" / "runs").glob("*/validation/summary.json"))
    assert found, "no summary.json written"
    data: dict[str, Any] = json.loads(found[-1].read_text())
    return data


def test_validate_a_cluster_by_its_kubeconfig(tmp_path: Path) -> None:
    with stand_in(tmp_path) as cluster:
        done = validate_cluster_cli(tmp_path, cluster, "--layer", "kubernetes")
        token = cluster.token
    assert done.returncode == 0, done.stdout + done.stderr
    assert "verdict: passed" in done.stdout
    summary = summary_of(tmp_path)
    assert summary["site"] == "cluster-stand-in"
    # No node is reached: every result is the cluster's; the node-scoped certificate check
    # (it needs SSH to the control planes) is reported not applicable, not dropped.
    assert summary["nodes"] == ["cluster"]
    statuses = {r["check"]: r["status"] for r in summary["results"]}
    assert statuses == {NODES_READY: "passed", SYSTEM_PODS: "passed", DNS: "passed",
                        ANONYMOUS: "passed", DEFAULT_CLASS: "passed", ROUND_TRIP: "passed",
                        GPU: "passed", "kubernetes.certs.expiry": "not_applicable"}
    certs = next(r for r in summary["results"] if r["check"] == "kubernetes.certs.expiry")
    assert certs["message"] == ("not applicable: runs on each node over SSH; validate the "
                                "SITE to run it")
    for path in (tmp_path / "runs").rglob("*"):
        if path.is_file():
            assert token not in path.read_text(errors="replace"), path


def test_a_cluster_fault_fails_the_verdict_and_the_show_stopper_ends_the_run(
    tmp_path: Path,
) -> None:
    with stand_in(tmp_path, ("node_not_ready",)) as cluster:
        done = validate_cluster_cli(tmp_path, cluster, "--layer", "kubernetes")
    assert done.returncode == 1, done.stdout + done.stderr
    assert f"failed: {NODES_READY} on cluster" in done.stdout
    results = {r["check"]: r for r in summary_of(tmp_path)["results"]}
    assert "node worker-1 Ready=False" in results[NODES_READY]["message"]
    # nodes_ready is the suite's show-stopper: the rest of the cluster run is not run.
    assert results[DNS]["status"] == "skipped"
    assert results[DNS]["message"].startswith(f"show-stopper {NODES_READY} failed")


def test_without_an_endpoints_file_the_ai_checks_fail_the_verdict(tmp_path: Path) -> None:
    with stand_in(tmp_path) as cluster:
        done = validate_cluster_cli(tmp_path, cluster, "--check", NODES_READY,
                                    "--check", "ai.mlflow.health")
    assert done.returncode == 1, done.stdout + done.stderr
    results = {r["check"]: r for r in summary_of(tmp_path)["results"]}
    assert results[NODES_READY]["status"] == "passed"
    assert results["ai.mlflow.health"]["status"] == "error"
    assert results["ai.mlflow.health"]["message"].startswith("no AI endpoints file: pass "
                                                             "--ai-endpoints FILE")
