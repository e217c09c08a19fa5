"""The PVC round trip: a claim, one pod that writes a random token onto it, a second pod that
reads it back, all in a throwaway namespace that is deleted at the end whatever happened."""

from __future__ import annotations

import logging
import secrets
import time
from dataclasses import dataclass
from typing import Any

from validation.ai.result import CheckFailure, CheckResult, excerpt
from validation.kube.session import KubeSession, run_check

log = logging.getLogger(__name__)

CHECK = "kubernetes.cluster.pvc_round_trip"
NAMESPACE_PREFIX = "bp-validate-"
CLAIM = "probe"
MOUNT_PATH = "/data"
POLL = 0.5
# Labels that let an operator find (and clean up) what a run left behind.
LABELS = {"app.kubernetes.io/managed-by": "blueprint-validate"}


@dataclass(frozen=True)
class RoundTripSettings:
    """What the round trip uses and how long it waits (the suite's policy.cluster)."""

    storage_class: str | None = None
    size: str = "64Mi"
    image: str = "busybox:1.36"
    pod_timeout: float = 180.0
    bind_timeout: float = 60.0
    cleanup_timeout: float = 60.0


def claim_manifest(storage_class: str | None, size: str) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "accessModes": ["ReadWriteOnce"],
        "resources": {"requests": {"storage": size}},
    }
    if storage_class is not None:
        spec["storageClassName"] = storage_class
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": CLAIM, "labels": LABELS},
        "spec": spec,
    }


def pod_manifest(name: str, image: str, script: str) -> dict[str, Any]:
    """A pod that runs `script` once with the claim mounted at /data, then ends."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": LABELS},
        "spec": {
            "restartPolicy": "Never",
            "terminationGracePeriodSeconds": 0,
            "containers": [
                {
                    "name": "probe",
                    "image": image,
                    "command": ["sh", "-c", script],
                    "volumeMounts": [{"name": "data", "mountPath": MOUNT_PATH}],
                }
            ],
            "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": CLAIM}}],
        },
    }


def _pod_state(pod: dict[str, Any]) -> str:
    """The phase of a pod and, when set, why its container waits or ended."""
    status = pod.get("status", {})
    parts = [status.get("phase", "Unknown")]
    for condition in status.get("conditions") or []:
        if condition.get("status") == "False" and condition.get("reason"):
            why = f"{condition['reason']} {condition.get('message', '')}"
            parts.append(f"{condition['type']}: {why}")
    for container in status.get("containerStatuses") or []:
        state = container.get("state") or {}
        for kind in ("waiting", "terminated"):
            if state.get(kind):
                detail = state[kind]
                parts.append(
                    f"{kind}: {detail.get('reason', '?')}"
                    + (f" (exit {detail['exitCode']})" if "exitCode" in detail else "")
                )
    return ", ".join(part.strip() for part in parts)


def _wait_pod(session: KubeSession, namespace: str, name: str, timeout: float) -> dict[str, Any]:
    """Poll a pod until it Succeeded; Failed or the timeout fail the check with its state."""
    path = f"/api/v1/namespaces/{namespace}/pods/{name}"
    deadline = time.monotonic() + timeout
    while True:
        pod: dict[str, Any] = session.call(
            "GET", path, session.core.read_namespaced_pod, name, namespace
        )
        phase = pod.get("status", {}).get("phase")
        if phase == "Succeeded":
            return pod
        if phase == "Failed":
            output = session.call(
                "GET", f"{path}/log", session.core.read_namespaced_pod_log, name, namespace,
                expect=(200, 400, 404), text=True,
            )
            raise CheckFailure(
                f"pod {name} ended {_pod_state(pod)}, log: {excerpt(str(output)) or 'empty'}",
                f"pod {name} Succeeded",
            )
        if time.monotonic() > deadline:
            raise CheckFailure(
                f"pod {name} still {_pod_state(pod)} after {timeout:g} s",
                f"pod {name} Succeeded within policy.cluster.pod_timeout",
            )
        time.sleep(POLL)


def _wait_bound(session: KubeSession, namespace: str, timeout: float) -> dict[str, Any]:
    path = f"/api/v1/namespaces/{namespace}/persistentvolumeclaims/{CLAIM}"
    deadline = time.monotonic() + timeout
    while True:
        claim: dict[str, Any] = session.call(
            "GET", path, session.core.read_namespaced_persistent_volume_claim, CLAIM, namespace
        )
        phase = claim.get("status", {}).get("phase", "Pending")
        if phase == "Bound":
            return claim
        if time.monotonic() > deadline:
            raise CheckFailure(
                f"PVC {CLAIM} is {phase} after {timeout:g} s", "the PVC Bound"
            )
        time.sleep(POLL)


def _delete_namespace(session: KubeSession, namespace: str, timeout: float) -> None:
    """Delete the throwaway namespace and wait (up to `timeout`) until the API no longer has
    it. Failures are logged, not raised: the check's own outcome stays what it was."""
    path = f"/api/v1/namespaces/{namespace}"
    try:
        session.call(
            "DELETE", path, session.core.delete_namespace, namespace, expect=(200, 202, 404)
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            answer = session.call(
                "GET", path, session.core.read_namespace, namespace, expect=(200, 404)
            )
            if not isinstance(answer, dict) or answer.get("kind") != "Namespace":
                return
            time.sleep(POLL)
        log.warning("namespace %s still terminating after %.0f s", namespace, timeout)
    except CheckFailure as exc:
        log.warning("namespace %s could not be deleted: %s", namespace, exc)


def check_pvc_round_trip(session: KubeSession, settings: RoundTripSettings) -> CheckResult:
    """A token written by one pod onto a fresh PVC is read back by a second pod."""
    namespace = NAMESPACE_PREFIX + secrets.token_hex(4)
    token = secrets.token_hex(16)

    def body() -> str:
        # A namespace of its own, so that everything the check makes goes with it.
        ns = {"apiVersion": "v1", "kind": "Namespace",
              "metadata": {"name": namespace, "labels": LABELS}}
        session.call("POST", "/api/v1/namespaces", session.core.create_namespace, ns)
        try:
            reason = round_trip()
        except BaseException:
            # Clean up, then put the failing request back last: it is the one the report
            # names, not the namespace's deletion.
            failing = len(session.exchanges) - 1
            _delete_namespace(session, namespace, settings.cleanup_timeout)
            session.exchanges.append(session.exchanges.pop(failing))
            raise
        _delete_namespace(session, namespace, settings.cleanup_timeout)
        return reason

    def round_trip() -> str:
        claims = f"/api/v1/namespaces/{namespace}/persistentvolumeclaims"
        session.call(
            "POST", claims, session.core.create_namespaced_persistent_volume_claim, namespace,
            claim_manifest(settings.storage_class, settings.size),
        )

        # The writer binds the claim (WaitForFirstConsumer classes bind only now).
        pods = f"/api/v1/namespaces/{namespace}/pods"
        writer = pod_manifest("writer", settings.image, f"echo {token} > {MOUNT_PATH}/token")
        session.call("POST", pods, session.core.create_namespaced_pod, namespace, writer)
        _wait_pod(session, namespace, "writer", settings.pod_timeout)
        claim = _wait_bound(session, namespace, settings.bind_timeout)
        volume = claim.get("spec", {}).get("volumeName", "?")
        used_class = claim.get("spec", {}).get("storageClassName", "?")

        # A second pod, a new container on the same volume, reads it back.
        reader = pod_manifest("reader", settings.image, f"cat {MOUNT_PATH}/token")
        session.call("POST", pods, session.core.create_namespaced_pod, namespace, reader)
        _wait_pod(session, namespace, "reader", settings.pod_timeout)
        text = session.call(
            "GET", f"{pods}/reader/log", session.core.read_namespaced_pod_log, "reader", namespace,
            text=True,
        )
        read_back = str(text).strip()
        if read_back != token:
            raise CheckFailure(
                f"pod reader read {read_back[:80]!r} from PVC {CLAIM} (volume {volume})",
                "the token the writer pod wrote",
            )
        return (
            f"token written and read back through PVC {CLAIM} of class {used_class} "
            f"(volume {volume}) in namespace {namespace}, deleted afterwards"
        )

    return run_check(CHECK, session, body)
