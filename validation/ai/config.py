"""Where the AI platform's endpoints are: the file the AI checks read, and its model.

The platform layer exports one JSON or YAML document per site (Pulumi stack outputs, see
docs/ai-checks.md); `BLUEPRINT_AI_ENDPOINTS` or the caller names the file. A component that
the document leaves out is not deployed at this site: its checks are not applicable.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Literal

import pydantic
from pydantic import BaseModel, ConfigDict, Field, HttpUrl, SecretStr

from blueprint.errors import BadInput
from blueprint.secrets import REDACTOR
from blueprint.validate.model import AI_ENDPOINTS_ENV
from blueprint.yamlfile import load_yaml

log = logging.getLogger(__name__)

ENDPOINTS_ENV = AI_ENDPOINTS_ENV

COMPONENTS = ("jupyterhub", "mlflow", "flower", "prometheus", "pipelines", "serving")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Secret(_Model):
    """A credential: the value itself, or the name of an environment variable holding it."""

    value: SecretStr | None = None
    env: str | None = None

    @pydantic.model_validator(mode="after")
    def _one_source(self) -> Secret:
        if (self.value is None) == (self.env is None):
            msg = "give exactly one of 'value' or 'env'"
            raise ValueError(msg)
        return self

    def reveal(self) -> str:
        """The credential; a missing environment variable is bad input."""
        if self.value is not None:
            return self.value.get_secret_value()
        value = os.environ.get(str(self.env), "")
        if not value:
            msg = f"environment variable {self.env} (an AI endpoint credential) is not set"
            raise BadInput(msg)
        REDACTOR.add([value])
        return value


class JupyterHubEndpoint(_Model):
    """JupyterHub's REST API and the notebook catalog's profiles to spawn."""

    url: HttpUrl
    token: Secret
    user: str = Field(default="blueprint-validate", min_length=1)
    profiles: list[str] = Field(min_length=1)
    spawn_timeout: float = Field(default=300, gt=0)
    verify_tls: bool | Path = True


class MlflowEndpoint(_Model):
    """MLflow's tracking server (with the model registry and proxied artifacts)."""

    url: HttpUrl
    token: Secret | None = None
    username: str | None = None
    password: Secret | None = None
    experiment: str = "blueprint-validate"
    model_name: str = "blueprint-validate-model"
    verify_tls: bool | Path = True


class FlowerEndpoint(_Model):
    """A Flower SuperLink: the address of its Control API, as the `flwr` CLI connects to it."""

    address: str = Field(pattern=r"^[^\s:]+:\d+$")
    insecure: bool = False
    root_certificates: Path | None = None
    supernodes: int = Field(default=2, ge=1)
    round_timeout: float = Field(default=120, gt=0)
    run_timeout: float = Field(default=600, gt=0)
    flwr: str = "flwr"


class PrometheusEndpoint(_Model):
    """Prometheus's HTTP API, the GPU exporter's scrape job and a metric it must serve."""

    url: HttpUrl
    token: Secret | None = None
    exporter_job: str = "dcgm-exporter"
    metric: str = "DCGM_FI_DEV_GPU_UTIL"
    verify_tls: bool | Path = True


class PipelinesEndpoint(_Model):
    """Argo Workflows' server API (the pipelines component)."""

    url: HttpUrl
    token: Secret
    namespace: str = "default"
    image: str
    run_timeout: float = Field(default=300, gt=0)
    verify_tls: bool | Path = True


class ServingEndpoint(_Model):
    """A KServe InferenceService that answers the open inference protocol (v2)."""

    url: HttpUrl
    model: str
    token: Secret | None = None
    host_header: str | None = None
    input_name: str = "input-0"
    input_shape: list[int] = Field(default_factory=lambda: [1, 4])
    input_datatype: Literal["FP32", "FP64", "INT32", "INT64"] = "FP32"
    verify_tls: bool | Path = True


class AiEndpoints(_Model):
    """The AI platform of one site, as its platform layer exported it."""

    jupyterhub: JupyterHubEndpoint | None = None
    mlflow: MlflowEndpoint | None = None
    flower: FlowerEndpoint | None = None
    prometheus: PrometheusEndpoint | None = None
    pipelines: PipelinesEndpoint | None = None
    serving: ServingEndpoint | None = None


def tls_verify(value: bool | Path) -> bool | str:
    """An endpoint's `verify_tls` as the HTTP client takes it: on, off, or a CA file."""
    return value if isinstance(value, bool) else str(value)


def load_endpoints(path: Path) -> AiEndpoints:
    """Read and check an endpoints file (JSON or YAML); errors name file:line and field."""
    loaded = load_yaml(path)
    if loaded.data is None:
        return AiEndpoints()
    try:
        endpoints = AiEndpoints.model_validate(loaded.data)
    except pydantic.ValidationError as exc:
        lines = []
        for err in exc.errors():
            loc = tuple(part for part in err["loc"] if not str(part).startswith("function-"))
            name = ".".join(str(part) for part in loc) or "(top)"
            seen = "" if _secret_field(loc) else _shown(err.get("input"))
            lines.append(f"{path}:{loaded.line_of(loc)}: {name}: {err['msg']}{seen}")
        raise BadInput("\n".join(lines)) from None
    _remember_secrets(endpoints)
    return endpoints


def _secret_field(loc: tuple[Any, ...]) -> bool:
    return any(part in ("token", "password", "value") for part in loc)


def _shown(value: Any) -> str:
    if isinstance(value, str | int | float) and not isinstance(value, bool):
        return f" (seen: {value!r})"
    return ""


def _remember_secrets(endpoints: AiEndpoints) -> None:
    # Inline credentials must never reach a check's reason or the report.
    for name in COMPONENTS:
        component = getattr(endpoints, name)
        for field in ("token", "password"):
            secret = getattr(component, field, None)
            if isinstance(secret, Secret) and secret.value is not None:
                REDACTOR.add([secret.value.get_secret_value()])


def endpoints_from_env() -> tuple[AiEndpoints | None, str]:
    """The endpoints named by BLUEPRINT_AI_ENDPOINTS, or None with the reason it has none."""
    value = os.environ.get(ENDPOINTS_ENV, "")
    if not value:
        return None, f"{ENDPOINTS_ENV} is not set (no AI platform endpoints for this site)"
    return load_endpoints(Path(value)), ""
