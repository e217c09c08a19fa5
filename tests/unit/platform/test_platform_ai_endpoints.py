"""The AI endpoints file a platform deploy writes, read back by the AI checks' own loader.

Stand-in: the stack outputs are recorded in this file (the shape the Automation API returns
after `pulumi up`: one OutputValue per output); no Pulumi CLI or cluster is involved.
"""

from __future__ import annotations

import base64
import io
import logging
import stat
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import yaml
from rich.console import Console

from blueprint.errors import DeployFailed
from blueprint.platform import deploy as platform_deploy
from blueprint.platform.config import SiteFlower
from blueprint.platform.endpoints import (
    ClusterApi,
    cluster_api,
    endpoints_document,
    write_endpoints,
)
from blueprint.secrets import REDACTOR
from blueprint.state import StateDir
from validation.ai.config import load_endpoints

HUB_CANARY = "canary-hub-token-5c1d9e"
SA_CANARY = "canary-sa-token-77ab03"
CA_PEM = "-----BEGIN CERTIFICATE-----\nsite\n-----END CERTIFICATE-----\n"
CLUSTER_PEM = "-----BEGIN CERTIFICATE-----\ncluster\n-----END CERTIFICATE-----\n"


@dataclass
class OutputValue:
    """As pulumi.automation returns each stack output."""

    value: Any
    secret: bool = False


def recorded_outputs(hub_token: str = HUB_CANARY, sa_token: str = SA_CANARY,
                     ) -> dict[str, OutputValue]:
    return {
        "jupyterhub_url": OutputValue("https://hub.edge1.example.net"),
        "jupyterhub_validate_token": OutputValue(hub_token, secret=True),
        "jupyterhub_validate_user": OutputValue("blueprint-validate"),
        "ai_catalog_profiles": OutputValue(["pytorch-gpu", "scipy-cpu"]),
        "mlflow_url": OutputValue("https://mlflow.edge1.example.net"),
        "mlflow_api_path": OutputValue(
            "/api/v1/namespaces/edge-mlflow/services/http:mlflow-server:80/proxy"),
        "prometheus_api_path": OutputValue(
            "/api/v1/namespaces/edge-monitoring/services/http:prometheus-operated:9090/proxy"),
        "prometheus_exporter_job": OutputValue("nvidia-dcgm-exporter"),
        "flower_control_address": OutputValue("flower.edge1.example.net:9093"),
        "flower_supernodes": OutputValue(2),
        "site_ca_certificate": OutputValue(CA_PEM),
        "pipelines_api_path": OutputValue(
            "/api/v1/namespaces/edge-pipelines/services/http:argo-workflows-server:2746/proxy"),
        "pipelines_namespace": OutputValue("edge-pipelines"),
        "pipelines_check_image": OutputValue("registry.lan:5000/library/busybox:1.37.0"),
        "validate_token": OutputValue(sa_token, secret=True),
        "grafana_admin_password": OutputValue("unrelated-secret-value", secret=True),
    }


def kubeconfig(path: Path) -> Path:
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "admin@edge1",
        "contexts": [{"name": "admin@edge1", "context": {"cluster": "edge1", "user": "admin"}}],
        "clusters": [{"name": "edge1", "cluster": {
            "server": "https://10.20.0.11:6443/",
            "certificate-authority-data": base64.b64encode(CLUSTER_PEM.encode()).decode()}}],
        "users": [{"name": "admin", "user": {"token": "not-used-here"}}],
    }))
    return path


def test_the_written_file_loads_into_the_right_endpoints(tmp_path: Path) -> None:
    path = write_endpoints(tmp_path, recorded_outputs(), kubeconfig(tmp_path / "kubeconfig"))

    assert path == tmp_path / "ai-endpoints.yaml"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert (tmp_path / "site-ca.pem").read_text() == CA_PEM
    assert (tmp_path / "cluster-ca.pem").read_text() == CLUSTER_PEM
    loaded = load_endpoints(path)

    hub = loaded.jupyterhub
    assert hub is not None
    assert str(hub.url).rstrip("/") == "https://hub.edge1.example.net"
    assert hub.token.reveal() == HUB_CANARY
    assert hub.user == "blueprint-validate"
    assert hub.profiles == ["pytorch-gpu", "scipy-cpu"]
    assert hub.verify_tls == tmp_path / "site-ca.pem"

    # MLflow and Prometheus through the API server's service proxy, trusting its CA.
    assert loaded.mlflow is not None and loaded.prometheus is not None
    assert str(loaded.mlflow.url) == ("https://10.20.0.11:6443/api/v1/namespaces/edge-mlflow/"
                                      "services/http:mlflow-server:80/proxy")
    assert loaded.mlflow.token is not None and loaded.mlflow.token.reveal() == SA_CANARY
    assert loaded.mlflow.verify_tls == tmp_path / "cluster-ca.pem"
    assert loaded.prometheus.exporter_job == "nvidia-dcgm-exporter"
    assert loaded.prometheus.verify_tls == tmp_path / "cluster-ca.pem"

    flower = loaded.flower
    assert flower is not None
    assert flower.address == "flower.edge1.example.net:9093"
    assert flower.root_certificates == tmp_path / "site-ca.pem" and not flower.insecure
    assert flower.supernodes == 2

    pipelines = loaded.pipelines
    assert pipelines is not None
    assert pipelines.token.reveal() == SA_CANARY
    assert pipelines.namespace == "edge-pipelines"
    assert pipelines.image == "registry.lan:5000/library/busybox:1.37.0"
    assert pipelines.verify_tls == tmp_path / "cluster-ca.pem"

    # Not exported by the stack: its checks say not applicable.
    assert loaded.serving is None


def test_a_component_the_stack_did_not_export_is_left_out(tmp_path: Path) -> None:
    outputs = {name: value for name, value in recorded_outputs().items()
               if not name.startswith(("prometheus_", "flower_", "pipelines_"))}
    document = endpoints_document(outputs, ClusterApi("https://k:6443", None), None, None)

    assert sorted(document) == ["jupyterhub", "mlflow"]
    path = tmp_path / "ai.yaml"
    path.write_text(yaml.safe_dump(document))
    loaded = load_endpoints(path)
    assert loaded.prometheus is None and loaded.flower is None
    # Without a CA file the checks use the system's trust.
    assert loaded.jupyterhub is not None and loaded.jupyterhub.verify_tls is True


def test_loading_the_file_teaches_the_redactor_every_token(tmp_path: Path) -> None:
    hub, account = "canary-load-hub-41f0", "canary-load-sa-93c2"
    document = endpoints_document(
        recorded_outputs(hub, account), ClusterApi("https://k:6443", None), None, None)
    path = tmp_path / "ai.yaml"
    path.write_text(yaml.safe_dump(document))
    # endpoints_document itself tells nobody: the loader must (a check runs in its own
    # process and only reads the file).
    assert hub in REDACTOR.redact(hub)

    load_endpoints(path)

    assert hub not in REDACTOR.redact(f"token {hub}")
    assert account not in REDACTOR.redact(f"Bearer {account}")


@pytest.mark.parametrize(("flower", "message"), [
    ({"role": "hub", "control_from": ["10.20.0.300/32"]}, "is not a network"),
    ({"role": "member", "superlink_address": "hub.example.net:9092",
      "control_from": ["10.20.0.5/32"]}, "only a hub site"),
])
def test_the_control_api_networks_are_checked_when_the_site_loads(
        flower: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        SiteFlower.model_validate(flower)


def test_a_kubeconfig_without_a_server_stops_with_what_to_check(tmp_path: Path) -> None:
    bad = tmp_path / "kubeconfig"
    bad.write_text("apiVersion: v1\nclusters: []\n")
    with pytest.raises(DeployFailed) as raised:
        cluster_api(bad)
    assert str(bad) in str(raised.value) and "kubeconfig" in str(raised.value)


def test_a_kubeconfig_may_name_its_ca_file_relative_to_itself(tmp_path: Path) -> None:
    (tmp_path / "ca.crt").write_text(CLUSTER_PEM)
    path = tmp_path / "kubeconfig"
    path.write_text(yaml.safe_dump({
        "current-context": "c", "contexts": [{"name": "c", "context": {"cluster": "k"}}],
        "clusters": [{"name": "k", "cluster": {"server": "https://k:6443",
                                               "certificate-authority": "ca.crt"}}]}))
    assert cluster_api(path) == ClusterApi("https://k:6443", CLUSTER_PEM)

    (tmp_path / "ca.crt").unlink()
    with pytest.raises(DeployFailed, match="cannot be read"):
        cluster_api(path)


class FakeStack:
    """The site's stack as `_site_stack` returns it; `up` answers like the Automation API."""

    def __init__(self, outputs: dict[str, OutputValue]) -> None:
        self.outputs = outputs

    def up(self, on_event: Any, color: str) -> Any:
        summary = SimpleNamespace(resource_changes={"create": 3})
        return SimpleNamespace(outputs=self.outputs, summary=summary)


def test_no_token_reaches_the_deploys_output_or_logs(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
) -> None:
    hub, account = "canary-deploy-hub-0d6e", "canary-deploy-sa-a4b8"
    monkeypatch.setattr(platform_deploy, "_site_stack",
                        lambda ready, state: FakeStack(recorded_outputs(hub, account)))
    state = StateDir(tmp_path)
    # Only the site's name is read from the config (for the progress line).
    ready = platform_deploy.PlatformReady(config=SimpleNamespace(site="edge1"),  # type: ignore[arg-type]
                                          pulumi=Path("/usr/bin/pulumi"),
                                          kubeconfig=kubeconfig(tmp_path / "kubeconfig"))
    printed = io.StringIO()
    console = Console(file=printed, width=200)
    caplog.set_level(logging.DEBUG)

    done = platform_deploy.deploy_platform(ready, state, console)
    # What `blueprint deploy` prints for the layer (blueprint/cli.py).
    console.print(f"stack outputs: {', '.join(done.outputs)}; AI endpoints in {done.endpoints}")

    assert done.endpoints is not None and hub in done.endpoints.read_text()
    shown = printed.getvalue() + caplog.text
    assert "ai-endpoints.yaml" in shown
    assert hub not in shown and account not in shown
    # From here on every log record and report of this process masks both.
    assert hub not in REDACTOR.redact(shown + hub) and account not in REDACTOR.redact(account)
