"""Checks of a site's Kubernetes cluster through its API, run once per site from the
controller (not per node).

Each check function takes a KubeSession (validation.kube.session: the official client with a
kubeconfig, every request recorded) and returns a CheckResult with a readable reason and the
requests it made. The pytest wrappers are validation/checks/test_cluster.py; the checks are
described in docs/validation.md.
"""

from validation.kube.cluster import (
    check_anonymous_auth_off,
    check_default_storage_class,
    check_dns,
    check_gpu_allocatable,
    check_nodes_ready,
    check_system_pods,
)
from validation.kube.conformance import check_conformance
from validation.kube.roundtrip import RoundTripSettings, check_pvc_round_trip
from validation.kube.session import CheckSkipped, KubeSession

__all__ = [
    "CheckSkipped",
    "KubeSession",
    "RoundTripSettings",
    "check_anonymous_auth_off",
    "check_conformance",
    "check_default_storage_class",
    "check_dns",
    "check_gpu_allocatable",
    "check_nodes_ready",
    "check_pvc_round_trip",
    "check_system_pods",
]
