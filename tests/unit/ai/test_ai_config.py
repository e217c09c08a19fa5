"""The AI endpoints file: its model, its errors, and the secrets it carries."""

from __future__ import annotations

from pathlib import Path

import pytest

from blueprint.errors import BadInput
from blueprint.secrets import REDACTOR
from validation.ai.config import ENDPOINTS_ENV, endpoints_from_env, load_endpoints

GOOD = """\
jupyterhub:
  url: https://hub.site.example
  token: {env: HUB_TOKEN}
  profiles: [tensorflow, pytorch]
mlflow:
  url: http://mlflow.site.example:5000
prometheus:
  url: http://prometheus.site.example:9090
  exporter_job: gpu-operator/nvidia-dcgm-exporter
flower:
  address: superlink.site.example:9093
  root_certificates: /etc/blueprint/flower-ca.pem
"""


def test_a_full_file_loads(tmp_path: Path) -> None:
    path = tmp_path / "ai-endpoints.yaml"
    path.write_text(GOOD)
    endpoints = load_endpoints(path)
    assert endpoints.jupyterhub is not None
    assert endpoints.jupyterhub.profiles == ["tensorflow", "pytorch"]
    assert endpoints.prometheus is not None
    assert endpoints.prometheus.metric == "DCGM_FI_DEV_GPU_UTIL"
    assert endpoints.flower is not None and endpoints.flower.supernodes == 2
    assert endpoints.pipelines is None and endpoints.serving is None


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("mlflow: {url: 5000}\n", "ai.yaml:1: mlflow.url: URL input should be a string"),
        (
            "jupyterhub:\n  url: http://hub\n  token: {env: T}\n  profiles: []\n",
            "ai.yaml:4: jupyterhub.profiles: List should have at least 1 item",
        ),
        ("mlfow: {url: http://x}\n", "ai.yaml:1: mlfow: Extra inputs are not permitted"),
        (
            "flower: {address: 'superlink'}\n",
            "ai.yaml:1: flower.address: String should match pattern",
        ),
        (
            "jupyterhub:\n  url: http://hub\n  token: {}\n  profiles: [a]\n",
            "ai.yaml:3: jupyterhub.token: Value error, give exactly one of 'value' or 'env'",
        ),
    ],
)
def test_bad_input_names_file_line_and_field(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "ai.yaml"
    path.write_text(text)
    with pytest.raises(BadInput) as raised:
        load_endpoints(path)
    assert message in str(raised.value)


def test_an_inline_token_is_redacted_and_never_echoed(tmp_path: Path) -> None:
    canary = "canary-9f8e7d6c5b4a"
    path = tmp_path / "ai.yaml"
    path.write_text(f"prometheus: {{url: http://p:9090, token: {{value: {canary}}}}}\n")
    load_endpoints(path)
    assert canary not in REDACTOR.redact(f"Authorization: Bearer {canary}")

    # A token of the wrong shape is reported without its value.
    path.write_text(f"prometheus: {{url: http://p:9090, token: {{value: [{canary}]}}}}\n")
    with pytest.raises(BadInput) as raised:
        load_endpoints(path)
    assert canary not in str(raised.value)


def test_no_file_means_not_applicable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENDPOINTS_ENV, raising=False)
    endpoints, reason = endpoints_from_env()
    assert endpoints is None
    assert reason == f"{ENDPOINTS_ENV} is not set (no AI platform endpoints for this site)"


def test_a_missing_token_variable_is_bad_input(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "ai.yaml"
    path.write_text(GOOD)
    monkeypatch.delenv("HUB_TOKEN", raising=False)
    endpoints = load_endpoints(path)
    assert endpoints.jupyterhub is not None
    with pytest.raises(BadInput, match="environment variable HUB_TOKEN"):
        endpoints.jupyterhub.token.reveal()
