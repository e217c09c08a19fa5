"""Kubernetes-API checks: nodes, system pods, DNS, storage, GPUs, anonymous access.

These run once per site from the controller, in the runner's cluster run, and speak to the
cluster's API through the kubeconfig the context names (`expected["kubeconfig"]`). The runner
reports a deployed kubernetes layer without a kubeconfig as an error before these run; this
module run alone without one says "not applicable" with that reason, never passed. The check
code lives in validation/kube/.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from blueprint.validate.model import ClusterPolicy
from blueprint.validate.plugin import NOT_APPLICABLE, CheckFailed

# validation/ is not an installed package; the runner starts pytest inside validation/checks.
_REPO = str(Path(__file__).resolve().parents[2])
if _REPO not in sys.path:
    sys.path.insert(0, _REPO)

from validation.ai.result import CheckResult  # noqa: E402
from validation.kube import (  # noqa: E402
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

log = logging.getLogger(__name__)


@pytest.fixture(scope="module")
def cluster_policy(expected: dict[str, Any]) -> ClusterPolicy:
    return ClusterPolicy(**(expected.get("policy") or {}).get("cluster", {}))


@pytest.fixture(scope="module")
def kube(expected: dict[str, Any], cluster_policy: ClusterPolicy) -> Iterator[KubeSession]:
    kubeconfig = expected.get("kubeconfig")
    if not kubeconfig:
        pytest.skip(
            NOT_APPLICABLE + "no kubeconfig in the validation context (no cluster API to check)"
        )
    session = KubeSession(
        kubeconfig, expected.get("kube_context"), request_timeout=cluster_policy.request_timeout
    )
    yield session
    session.close()


def _verdict(result: CheckResult) -> None:
    log.info("%s: %s", result.check, result.describe())
    if result.skipped:
        pytest.skip(result.reason)
    if not result.passed:
        raise CheckFailed(result.describe())


@pytest.mark.check("kubernetes.cluster.nodes_ready")
def test_nodes_ready(kube: KubeSession, expected: dict[str, Any]) -> None:
    _verdict(check_nodes_ready(kube, expected.get("kube_nodes")))


@pytest.mark.check("kubernetes.cluster.system_pods")
def test_system_pods(kube: KubeSession) -> None:
    _verdict(check_system_pods(kube))


@pytest.mark.check("kubernetes.cluster.dns")
def test_dns(kube: KubeSession) -> None:
    _verdict(check_dns(kube))


@pytest.mark.check("kubernetes.cluster.default_storage_class")
def test_default_storage_class(kube: KubeSession) -> None:
    _verdict(check_default_storage_class(kube))


@pytest.mark.check("kubernetes.cluster.pvc_round_trip")
def test_pvc_round_trip(kube: KubeSession, cluster_policy: ClusterPolicy) -> None:
    settings = RoundTripSettings(
        storage_class=cluster_policy.pvc_storage_class,
        size=cluster_policy.pvc_size,
        image=cluster_policy.probe_image,
        pod_timeout=cluster_policy.pod_timeout,
        bind_timeout=cluster_policy.bind_timeout,
        cleanup_timeout=cluster_policy.cleanup_timeout,
    )
    _verdict(check_pvc_round_trip(kube, settings))


@pytest.mark.check("kubernetes.cluster.gpu_allocatable")
def test_gpu_allocatable(kube: KubeSession, expected: dict[str, Any]) -> None:
    _verdict(check_gpu_allocatable(kube, expected.get("gpu_nodes")))


@pytest.mark.check("kubernetes.cluster.anonymous_auth_off")
def test_anonymous_auth_off(kube: KubeSession) -> None:
    _verdict(check_anonymous_auth_off(kube))


@pytest.mark.check("kubernetes.cluster.conformance")
def test_conformance(
    kube: KubeSession, expected: dict[str, Any], cluster_policy: ClusterPolicy
) -> None:
    _verdict(
        check_conformance(
            kube,
            str(expected["kubeconfig"]),
            expected.get("kube_context"),
            cluster_policy.conformance_focus,
            cluster_policy.conformance_timeout,
        )
    )
