"""The AI endpoints file: what the platform stack exported, in the shape the AI checks read.

`deploy` writes it to `<state>/ai-endpoints.yaml` (mode 0600) after `pulumi up`, with the two
CA certificates the checks must trust beside it. Its shape is validation/ai/config.py's
model (docs/ai-checks.md); a component the stack did not export is left out, so its checks
report not applicable.
"""

from __future__ import annotations

import base64
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from blueprint.errors import DeployFailed
from blueprint.secrets import REDACTOR
from blueprint.state import AI_ENDPOINTS_FILE

log = logging.getLogger(__name__)

ENDPOINTS_FILE = AI_ENDPOINTS_FILE
SITE_CA_FILE = "site-ca.pem"
CLUSTER_CA_FILE = "cluster-ca.pem"


@dataclass(frozen=True)
class ClusterApi:
    """The Kubernetes API server as the kubeconfig names it, and the CA it is trusted by."""

    server: str
    ca_pem: str | None


def cluster_api(kubeconfig: Path) -> ClusterApi:
    """The current context's API server and CA certificate from a kubeconfig file."""
    try:
        data = yaml.safe_load(kubeconfig.read_text(encoding="utf-8")) or {}
        contexts = {item["name"]: item["context"] for item in data.get("contexts") or []}
        clusters = {item["name"]: item["cluster"] for item in data.get("clusters") or []}
        current = data.get("current-context") or next(iter(contexts))
        cluster = clusters[contexts[current]["cluster"]]
        server = str(cluster["server"])
    except (OSError, yaml.YAMLError, KeyError, StopIteration, TypeError) as exc:
        msg = (f"layer platform: cannot read the API server from {kubeconfig} "
               f"({type(exc).__name__}: {exc}); check the kubernetes layer's kubeconfig")
        raise DeployFailed(msg) from None
    ca_pem = None
    if cluster.get("certificate-authority-data"):
        ca_pem = base64.b64decode(cluster["certificate-authority-data"]).decode()
    elif cluster.get("certificate-authority"):
        # A relative path in a kubeconfig is relative to the kubeconfig's own folder.
        ca_file = kubeconfig.parent / str(cluster["certificate-authority"])
        try:
            ca_pem = ca_file.read_text(encoding="utf-8")
        except OSError as exc:
            msg = (f"layer platform: {kubeconfig} names the CA file {ca_file}, which cannot be "
                   f"read ({exc.strerror}); check the kubernetes layer's kubeconfig")
            raise DeployFailed(msg) from None
    return ClusterApi(server.rstrip("/"), ca_pem)


def plain_outputs(outputs: Mapping[str, Any]) -> dict[str, Any]:
    """Stack outputs as plain values (the Automation API wraps each in an OutputValue)."""
    return {name: getattr(value, "value", value) for name, value in outputs.items()}


def endpoints_document(outputs: Mapping[str, Any], cluster: ClusterApi,
                       site_ca: Path | None, cluster_ca: Path | None) -> dict[str, Any]:
    """The endpoints file's content from the stack's outputs; absent components left out.

    JupyterHub and Flower are reached on the site's names (certificates from the site CA);
    MLflow, Prometheus and Argo's server through the API server's service proxy with the
    validation's ServiceAccount token (see stacks/platform/components/validation.py).
    """
    out = plain_outputs(outputs)
    document: dict[str, Any] = {}

    if out.get("jupyterhub_url") and out.get("jupyterhub_validate_token"):
        document["jupyterhub"] = {
            "url": out["jupyterhub_url"],
            "token": {"value": out["jupyterhub_validate_token"]},
            "user": out.get("jupyterhub_validate_user", "blueprint-validate"),
            "profiles": list(out.get("ai_catalog_profiles") or []),
            **_verify(site_ca),
        }

    token = out.get("validate_token")
    if out.get("mlflow_api_path") and token:
        document["mlflow"] = {"url": cluster.server + out["mlflow_api_path"],
                              "token": {"value": token}, **_verify(cluster_ca)}

    if out.get("flower_control_address"):
        flower: dict[str, Any] = {"address": out["flower_control_address"],
                                  # A hub without SuperNodes of its own waits for a member's.
                                  "supernodes": max(1, int(out.get("flower_supernodes", 1)))}
        if site_ca is not None:
            flower["root_certificates"] = str(site_ca)
        document["flower"] = flower

    if out.get("prometheus_api_path") and token:
        prometheus: dict[str, Any] = {"url": cluster.server + out["prometheus_api_path"],
                                      "token": {"value": token}, **_verify(cluster_ca)}
        if out.get("prometheus_exporter_job"):
            prometheus["exporter_job"] = out["prometheus_exporter_job"]
        document["prometheus"] = prometheus

    if out.get("pipelines_api_path") and token and out.get("pipelines_check_image"):
        document["pipelines"] = {"url": cluster.server + out["pipelines_api_path"],
                                 "token": {"value": token},
                                 "namespace": out.get("pipelines_namespace", "edge-pipelines"),
                                 "image": out["pipelines_check_image"], **_verify(cluster_ca)}

    # Serving (KServe) is left out: the stack serves no model yet (docs/ai-checks.md).
    return document


def _verify(ca: Path | None) -> dict[str, str]:
    return {"verify_tls": str(ca)} if ca is not None else {}


def write_endpoints(state_root: Path, outputs: Mapping[str, Any], kubeconfig: Path) -> Path:
    """Write `<state>/ai-endpoints.yaml` (0600) and the CA certificates the checks trust."""
    out = plain_outputs(outputs)
    # Every credential of the file is a secret from now on, in this process's output too.
    REDACTOR.add([out[name] for name in ("jupyterhub_validate_token", "validate_token")
                  if out.get(name)])

    cluster = cluster_api(kubeconfig)
    site_ca = _write_public(state_root / SITE_CA_FILE, out.get("site_ca_certificate"))
    cluster_ca = _write_public(state_root / CLUSTER_CA_FILE, cluster.ca_pem)
    if cluster_ca is None:
        log.warning("the kubeconfig %s names no CA: the checks through the API server will "
                    "verify it against the system's CAs", kubeconfig)

    document = endpoints_document(out, cluster, site_ca, cluster_ca)
    path = state_root / ENDPOINTS_FILE
    temporary = path.with_suffix(".tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    # A left-over temporary file keeps its old mode through O_CREAT: tighten it first.
    os.fchmod(fd, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write("# Written by blueprint deploy from the platform stack's outputs; "
                     "holds credentials.\n")
        yaml.safe_dump(document, handle, sort_keys=False)
    temporary.replace(path)
    path.chmod(0o600)
    log.info("AI endpoints for the validation: %s (%s)", path,
             ", ".join(document) or "no AI component")
    return path


def _write_public(path: Path, pem: Any) -> Path | None:
    """A CA certificate (public) for the checks to trust; None when there is none."""
    if not pem:
        return None
    path.write_text(str(pem), encoding="utf-8")
    path.chmod(0o644)
    return path
