"""Cluster checks that read the API: nodes, kube-system's pods, DNS, storage classes, GPUs,
and what an anonymous client may do.

Each check takes a KubeSession and returns a CheckResult. The parsing helpers take objects as
the API serves them (plain dicts, the API's own field names), so unit tests feed them fixtures.
"""

from __future__ import annotations

import logging
from typing import Any

import httpx

from validation.ai.result import CheckFailure, CheckResult, Exchange, excerpt
from validation.kube.session import CheckSkipped, KubeSession, run_check

log = logging.getLogger(__name__)

DEFAULT_CLASS_ANNOTATIONS = (
    "storageclass.kubernetes.io/is-default-class",
    "storageclass.beta.kubernetes.io/is-default-class",
)
GPU_RESOURCE = "nvidia.com/gpu"
GPU_LABEL = "nvidia.com/gpu.present=true"
DNS_NAMESPACE = "kube-system"
DNS_SERVICE = "kube-dns"


def _name(obj: dict[str, Any]) -> str:
    return str(obj.get("metadata", {}).get("name", "?"))


# --- parsing ------------------------------------------------------------------------------


def node_not_ready(node: dict[str, Any]) -> str | None:
    """Why a node is not Ready ("Ready=False (reason: message)"), or None when it is."""
    for condition in node.get("status", {}).get("conditions") or []:
        if condition.get("type") == "Ready":
            if condition.get("status") == "True":
                return None
            detail = ": ".join(
                part for part in (condition.get("reason"), condition.get("message")) if part
            )
            return f"Ready={condition.get('status')}" + (f" ({detail})" if detail else "")
    return "no Ready condition"


def pod_problem(pod: dict[str, Any]) -> str | None:
    """What is wrong with a pod ("Running, container coredns waiting: CrashLoopBackOff,
    7 restarts"), or None when it runs with every container ready or has Succeeded."""
    status = pod.get("status", {})
    phase = status.get("phase", "Unknown")
    containers = status.get("containerStatuses") or []
    if phase == "Succeeded":
        return None
    if phase == "Running" and containers and all(c.get("ready") for c in containers):
        return None

    details = [phase]
    for container in containers:
        if container.get("ready"):
            continue
        state = container.get("state") or {}
        waiting, terminated = state.get("waiting"), state.get("terminated")
        if waiting:
            how = f"waiting: {waiting.get('reason', '?')}"
        elif terminated:
            how = f"terminated: {terminated.get('reason', '?')} (exit {terminated.get('exitCode')})"
        else:
            how = "running, not ready"
        details.append(f"container {container.get('name')} {how}")
    if not containers and status.get("reason"):
        details.append(str(status["reason"]))
    restarts = sum(int(c.get("restartCount", 0)) for c in containers)
    details.append(f"{restarts} restarts")
    return ", ".join(details)


def default_classes(classes: list[dict[str, Any]]) -> list[str]:
    """Names of the StorageClasses annotated as the cluster's default."""
    return [
        _name(sc)
        for sc in classes
        if any(
            (sc.get("metadata", {}).get("annotations") or {}).get(key) == "true"
            for key in DEFAULT_CLASS_ANNOTATIONS
        )
    ]


def ready_slice_addresses(slices: list[dict[str, Any]]) -> tuple[list[str], list[str]]:
    """(ready, not ready) addresses of EndpointSlices; a missing `ready` counts as ready, as
    the EndpointSlice API defines it."""
    ready: list[str] = []
    not_ready: list[str] = []
    for item in slices:
        for endpoint in item.get("endpoints") or []:
            is_ready = (endpoint.get("conditions") or {}).get("ready")
            addresses = endpoint.get("addresses") or []
            (not_ready if is_ready is False else ready).extend(addresses)
    return ready, not_ready


def gpu_count(node: dict[str, Any]) -> int:
    """The node's allocatable nvidia.com/gpu (0 when it lists none)."""
    value = (node.get("status", {}).get("allocatable") or {}).get(GPU_RESOURCE, "0")
    try:
        return int(str(value))
    except ValueError:
        return 0


# --- checks -------------------------------------------------------------------------------


def check_nodes_ready(session: KubeSession, expected_nodes: list[str] | None) -> CheckResult:
    """Every expected node (None: every node the API lists) exists and is Ready."""

    def body() -> str:
        items = session.call("GET", "/api/v1/nodes", session.core.list_node)["items"]
        nodes = {_name(node): node for node in items}
        wanted = sorted(nodes) if expected_nodes is None else list(expected_nodes)
        if not wanted:
            raise CheckFailure("the API lists no node", "at least one Ready node")

        missing = [name for name in wanted if name not in nodes]
        not_ready = {
            name: why
            for name in wanted
            if name in nodes and (why := node_not_ready(nodes[name])) is not None
        }
        if missing or not_ready:
            seen = [f"node {name} is not in the cluster" for name in missing]
            seen += [f"node {name} {why}" for name, why in not_ready.items()]
            raise CheckFailure("; ".join(seen), f"nodes {', '.join(wanted)} Ready")
        return f"{len(wanted)} nodes Ready: {', '.join(wanted)}"

    return run_check("kubernetes.cluster.nodes_ready", session, body)


def check_system_pods(session: KubeSession) -> CheckResult:
    """Every pod in kube-system runs with all containers ready, or has Succeeded."""

    def body() -> str:
        path = "/api/v1/namespaces/kube-system/pods"
        pods = session.call("GET", path, session.core.list_namespaced_pod, "kube-system")["items"]
        if not pods:
            raise CheckFailure("no pod in kube-system", "the cluster's system pods running")
        bad = [(_name(pod), why) for pod in pods if (why := pod_problem(pod)) is not None]
        if bad:
            seen = "; ".join(f"pod {name}: {why}" for name, why in bad)
            raise CheckFailure(
                f"{len(bad)} of {len(pods)} pods not healthy: {seen}",
                "every kube-system pod Running with all containers ready, or Succeeded",
            )
        return f"{len(pods)} kube-system pods healthy"

    return run_check("kubernetes.cluster.system_pods", session, body)


def check_dns(session: KubeSession) -> CheckResult:
    """The cluster DNS service exists and has at least one ready endpoint address."""

    def body() -> str:
        where = f"{DNS_NAMESPACE}/{DNS_SERVICE}"
        service_path = f"/api/v1/namespaces/{DNS_NAMESPACE}/services/{DNS_SERVICE}"
        service = session.call(
            "GET", service_path, session.core.read_namespaced_service, DNS_SERVICE,
            DNS_NAMESPACE, expect=(200, 404),
        )
        if not isinstance(service, dict) or service.get("kind") != "Service":
            raise CheckFailure(f"no Service {where}", "the cluster DNS service")

        selector = f"kubernetes.io/service-name={DNS_SERVICE}"
        slices_path = (
            f"/apis/discovery.k8s.io/v1/namespaces/{DNS_NAMESPACE}/endpointslices"
            f"?labelSelector={selector}"
        )
        slices = session.call(
            "GET", slices_path, session.discovery.list_namespaced_endpoint_slice,
            DNS_NAMESPACE, label_selector=selector,
        )["items"]
        ready, not_ready = ready_slice_addresses(slices)
        source = "EndpointSlices"
        if not slices:
            # A cluster without EndpointSlice mirroring: the core Endpoints object.
            endpoints_path = f"/api/v1/namespaces/{DNS_NAMESPACE}/endpoints/{DNS_SERVICE}"
            endpoints = session.call(
                "GET", endpoints_path, session.core.read_namespaced_endpoints, DNS_SERVICE,
                DNS_NAMESPACE, expect=(200, 404),
            )
            subsets = (endpoints.get("subsets") or []) if isinstance(endpoints, dict) else []
            ready = [a.get("ip", "?") for s in subsets for a in s.get("addresses") or []]
            not_ready = [
                a.get("ip", "?") for s in subsets for a in s.get("notReadyAddresses") or []
            ]
            source = "Endpoints"
        if not ready:
            listed = f" (not ready: {', '.join(not_ready)})" if not_ready else ""
            raise CheckFailure(
                f"Service {where} has no ready address in its {source}{listed}",
                "at least one ready DNS endpoint",
            )
        return f"Service {where}: ready {', '.join(ready)}"

    return run_check("kubernetes.cluster.dns", session, body)


def check_default_storage_class(session: KubeSession) -> CheckResult:
    """Exactly one StorageClass is annotated as the default."""

    def body() -> str:
        path = "/apis/storage.k8s.io/v1/storageclasses"
        classes = session.call("GET", path, session.storage.list_storage_class)["items"]
        defaults = default_classes(classes)
        if len(defaults) != 1:
            every = ", ".join(_name(sc) for sc in classes) or "none"
            seen = (
                f"no default StorageClass (classes: {every})"
                if not defaults
                else f"{len(defaults)} default StorageClasses: {', '.join(defaults)}"
            )
            raise CheckFailure(seen, f"exactly one class annotated {DEFAULT_CLASS_ANNOTATIONS[0]}")
        return f"default StorageClass {defaults[0]}"

    return run_check("kubernetes.cluster.default_storage_class", session, body)


def check_gpu_allocatable(session: KubeSession, gpu_nodes: list[str] | None) -> CheckResult:
    """Each GPU node (None: each node labelled nvidia.com/gpu.present=true) can allocate a GPU."""

    def body() -> str:
        if gpu_nodes is None:
            path = f"/api/v1/nodes?labelSelector={GPU_LABEL}"
            found = session.call("GET", path, session.core.list_node, label_selector=GPU_LABEL)
            nodes = {_name(node): node for node in found["items"]}
            if not nodes:
                raise CheckSkipped(f"no GPU node: no node is labelled {GPU_LABEL}")
            wanted = sorted(nodes)
        else:
            if not gpu_nodes:
                raise CheckSkipped("no GPU node: the site expects none")
            found = session.call("GET", "/api/v1/nodes", session.core.list_node)
            nodes = {_name(node): node for node in found["items"]}
            wanted = list(gpu_nodes)

        missing = [name for name in wanted if name not in nodes]
        counts = {name: gpu_count(nodes[name]) for name in wanted if name in nodes}
        without = [f"node {name} allocatable {GPU_RESOURCE} = {n}" for name, n in counts.items()
                   if n <= 0]
        if missing or without:
            seen = [f"GPU node {name} is not in the cluster" for name in missing] + without
            raise CheckFailure("; ".join(seen), f"{GPU_RESOURCE} > 0 on {', '.join(wanted)}")
        return ", ".join(f"{name}: {n} GPUs" for name, n in counts.items())

    return run_check("kubernetes.cluster.gpu_allocatable", session, body)


def check_anonymous_auth_off(session: KubeSession) -> CheckResult:
    """A request without credentials to /api is refused (401 or 403)."""

    def body() -> str:
        url = session.server + "/api"
        try:
            with httpx.Client(verify=session.verify, timeout=session.request_timeout) as http:
                response = http.get(url)
        except httpx.HTTPError as exc:
            session.exchanges.append(Exchange("GET", url, None, excerpt(str(exc))))
            raise CheckFailure(
                f"GET {url} without credentials failed: {type(exc).__name__}: "
                f"{excerpt(str(exc))}",
                "the API server to answer",
            ) from None
        session.exchanges.append(Exchange("GET", url, response.status_code, excerpt(response.text)))
        if response.status_code in (401, 403):
            how = "anonymous auth off" if response.status_code == 401 else "anonymous denied"
            return f"GET {url} without credentials: HTTP {response.status_code} ({how})"
        raise CheckFailure(
            f"GET {url} without credentials answered HTTP {response.status_code}: "
            f"{excerpt(response.text)}",
            "HTTP 401 or 403 (system:anonymous may not read the API)",
        )

    return run_check("kubernetes.cluster.anonymous_auth_off", session, body)
