"""The offline preview: the stack program run under Pulumi's mock runtime, listed as rows."""

from __future__ import annotations

import asyncio
import importlib
import json
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import Any

from blueprint.loader import LoadedSite
from blueprint.platform.config import PlatformConfig

PROJECT = "edge-platform"
# Stand-in outputs for generated secrets: never a real value, so nothing real can leak.
STAND_IN_SECRET = "preview-stand-in-secret"
# What the cluster writes into Secrets the program reads back (a token, a CA certificate).
STAND_IN_CERTIFICATE = "-----BEGIN CERTIFICATE-----\npreview stand-in\n-----END CERTIFICATE-----\n"
SERVICE_ACCOUNT_TOKEN = "kubernetes.io/service-account-token"


@dataclass(frozen=True)
class Registered:
    """One resource the program registered, as the mock runtime saw it."""

    urn: str
    type: str
    name: str
    custom: bool
    parent: str
    inputs: dict[str, Any]
    dependencies: tuple[str, ...]


@dataclass(frozen=True)
class PreviewRow:
    component: str
    kind: str
    name: str
    chart: str
    version: str
    namespace: str
    values: str

    def cells(self) -> tuple[str, ...]:
        return (self.component, self.kind, self.name, self.chart, self.version,
                self.namespace, self.values)


@dataclass
class ProgramRun:
    """What one run of the program registered, and its stack outputs' names."""

    resources: list[Registered] = field(default_factory=list)
    output_names: list[str] = field(default_factory=list)
    # The outputs' values, secrets included (stand-ins): what a deploy's `up` would return.
    outputs: dict[str, Any] = field(default_factory=dict)
    secret_outputs: list[str] = field(default_factory=list)

    def by_type(self, type_: str) -> list[Registered]:
        return [item for item in self.resources if item.type == type_]

    def by_name(self, name: str) -> Registered:
        return next(item for item in self.resources if item.name == name)


def run_program(config: PlatformConfig) -> ProgramRun:
    """Run the stack's own program under mocks with `config` set as the stack config."""
    import pulumi
    from pulumi.runtime import mocks

    run = ProgramRun()

    class Mocks(pulumi.runtime.Mocks):
        def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict[str, Any]]:
            state = dict(args.inputs)
            if args.typ == "random:index/randomPassword:RandomPassword":
                state.update(result=STAND_IN_SECRET, bcryptHash="$2a$10$stand.in")
            if args.typ == "kubernetes:core/v1:Secret":
                state.update(data=_stand_in_data(args))
            return f"{args.name}-id", state

        def call(self, args: pulumi.runtime.MockCallArgs) -> tuple[dict[str, Any], None]:
            return {}, None

    class Recorder(mocks.MockMonitor):
        def RegisterResource(self, request: Any) -> Any:
            from pulumi.runtime import rpc

            response = super().RegisterResource(request)  # type: ignore[no-untyped-call]
            if request.type != "pulumi:pulumi:Stack":
                inputs = rpc.deserialize_properties(request.object)
                run.resources.append(Registered(
                    urn=response.urn, type=request.type, name=request.name,
                    custom=bool(request.custom), parent=request.parent,
                    inputs=_plain(inputs), dependencies=tuple(request.dependencies)))
            return response

    # A fresh root stack per run: exports of an earlier run in this process stay with it.
    from pulumi.runtime import settings

    settings.ROOT.set(None)
    pulumi.runtime.set_mocks(Mocks(), project=PROJECT, stack=config.site, preview=False,
                             monitor=Recorder(Mocks()))
    program = importlib.import_module("stacks.platform.program")
    pulumi.runtime.set_all_config(
        {f"{PROJECT}:{program.CONFIG_KEY}": config.model_dump_json()})

    def body() -> Any:
        program.main()
        # The program's exports sit on the root stack (the mock engine never receives them).
        exported = getattr(pulumi.runtime.get_root_resource(), "outputs", {}) or {}
        run.output_names = sorted(exported)
        flags = {name: value.is_secret() for name, value in exported.items()
                 if isinstance(value, pulumi.Output)}

        async def secret_names() -> list[str]:
            # Which outputs are secrets: a deploy must keep their values out of every output.
            return sorted([name for name, flag in flags.items() if await flag])

        found: Awaitable[list[str]] = asyncio.ensure_future(secret_names())
        secrets: pulumi.Output[list[str]] = pulumi.Output.from_input(found)
        return pulumi.Output.all(pulumi.Output.all(**exported).apply(run.outputs.update),
                                 secrets.apply(run.secret_outputs.extend))

    pulumi.runtime.test(body)()  # type: ignore[no-untyped-call]
    return run


def _stand_in_data(args: Any) -> dict[str, str]:
    """A Secret's data as the cluster would fill it: a token, or a certificate read back."""
    import base64

    def encoded(text: str) -> str:
        return base64.b64encode(text.encode()).decode()

    data = dict(args.inputs.get("data") or {})
    if args.inputs.get("type") == SERVICE_ACCOUNT_TOKEN:
        data["token"] = encoded(STAND_IN_SECRET)
    if args.resource_id:
        data["ca.crt"] = encoded(STAND_IN_CERTIFICATE)
    return data


def _plain(value: Any) -> Any:
    """Inputs as plain data: secrets unwrapped to their stand-ins, unknowns as None."""
    if isinstance(value, dict):
        if value.get("4dabf18193072939515e22adb298388d") == "1b47061264138c4ac30d75fd1eb44270":
            return _plain(value.get("value"))
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    return value


# --- Rows -----------------------------------------------------------------------------------

# The values of each chart an operator checks first, as dotted paths.
KEY_VALUES: dict[str, tuple[str, ...]] = {
    "gpu-operator": ("driver.enabled", "toolkit.enabled", "dcgmExporter.enabled",
                     "devicePlugin.config.name", "migManager.enabled"),
    "seaweedfs": ("master.defaultReplication", "volume.replicas"),
    "rook-ceph-cluster": ("cephClusterSpec.mon.count",),
    "ingress-nginx": ("controller.ingressClassResource.name",),
    "cert-manager": ("crds.enabled",),
    "jupyterhub": ("singleuser.storage.dynamic.storageClass",
                   "hub.config.JupyterHub.authenticator_class"),
    "mlflow": ("backendStore.postgres.host", "artifactRoot.s3.bucket"),
    "argo-workflows": ("server.authModes",),
    "kserve": ("kserve.controller.deploymentMode",),
    "kube-prometheus-stack": ("prometheus.prometheusSpec.serviceMonitorSelectorNilUsesHelmValues",
                              "grafana.grafana.ini.auth.generic_oauth.enabled"),
}


def dig(tree: Any, path: str) -> Any:
    """A value of a nested mapping by dotted path; keys may themselves hold dots."""
    node = tree
    parts = path.split(".")
    while parts and isinstance(node, dict):
        for size in range(len(parts), 0, -1):
            key = ".".join(parts[:size])
            if key in node:
                node, parts = node[key], parts[size:]
                break
        else:
            return None
    return node if not parts else None


def _component(item: Registered, by_urn: dict[str, Registered]) -> str:
    """The top-level component a resource belongs to, by walking its parents."""
    found = "-"
    current: Registered | None = item
    while current is not None:
        if current.type.startswith("edge:platform:"):
            found = current.type.rsplit(":", 1)[-1].lower()
        current = by_urn.get(current.parent)
    return found


def _json(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return json.dumps(value)


def _summary(item: Registered) -> str:
    inputs = item.inputs
    kind = item.type.rsplit(":", 1)[-1]
    found: list[str] = []
    if kind == "Release":
        for path in KEY_VALUES.get(str(inputs.get("chart", "")).rsplit("/", 1)[-1], ()):
            found.append(f"{path}={_json(dig(inputs.get('values', {}), path))}")
        profiles = dig(inputs.get("values", {}), "singleuser.profileList") or []
        for profile in profiles:
            limits = profile["kubespawner_override"].get("extra_resource_limits", {})
            found.append(f"profile {profile['slug']} gpu={limits.get('nvidia.com/gpu', 0)}")
    elif kind == "StorageClass":
        default = dig(inputs, "metadata.annotations") or {}
        found.append(f"provisioner={inputs.get('provisioner')}")
        found.append(f"default={default.get('storageclass.kubernetes.io/is-default-class')}")
    elif kind == "ResourceQuota":
        hard = dig(inputs, "spec.hard") or {}
        found += [f"{key}={value}" for key, value in sorted(hard.items())]
    elif kind == "Ingress":
        rule = (dig(inputs, "spec.rules") or [{}])[0]
        auth = "nginx.ingress.kubernetes.io/auth-url" in (dig(inputs, "metadata.annotations")
                                                          or {})
        own = (dig(inputs, "metadata.labels") or {}).get("edge.platform/login")
        login = "oauth2-proxy" if auth else (own or "none")
        paths = [item["path"] for item in (rule.get("http") or {}).get("paths", [])]
        found.append(f"host={rule.get('host')} login={login}"
                     + (f" paths={','.join(paths)}" if paths != ["/"] else ""))
    elif kind in ("Deployment", "DaemonSet"):
        for container in dig(inputs, "spec.template.spec.containers") or []:
            found.append(f"image={container['image']}")
    elif kind == "CustomResource" or "/" in item.type:
        found.append(f"kind={inputs.get('kind', kind)}")
    return "; ".join(found)


def preview_rows(run: ProgramRun) -> list[PreviewRow]:
    """One row per Kubernetes resource and Helm release (components are the grouping)."""
    rows = []
    by_urn = {item.urn: item for item in run.resources}
    for item in run.resources:
        if not item.custom or item.type.startswith("random:"):
            continue
        inputs = item.inputs
        kind = str(inputs.get("kind") or item.type.rsplit(":", 1)[-1])
        namespace = inputs.get("namespace") or dig(inputs, "metadata.namespace") or ""
        if kind == "Namespace":
            namespace = dig(inputs, "metadata.name") or ""
        chart = str(inputs.get("chart", "")).rsplit("/", 1)[-1]
        rows.append(PreviewRow(_component(item, by_urn), kind, item.name, chart,
                               str(inputs.get("version") or ""), str(namespace),
                               _summary(item)))
    # The runtime registers in no fixed order; the listing is sorted to read the same.
    return sorted(rows, key=lambda row: (row.component, row.namespace, row.kind, row.name))


def format_rows(rows: list[PreviewRow]) -> str:
    """Plain text, one resource a line: what `blueprint plan` prints for the platform."""
    header = ("component", "kind", "name", "chart", "version", "namespace", "key values")
    table = [header, *(row.cells() for row in rows)]
    widths = [max(len(line[col]) for line in table) for col in range(len(header) - 1)]
    lines = []
    for line in table:
        cells = [cell.ljust(width) for cell, width in zip(line, widths, strict=False)]
        lines.append("  ".join([*cells, line[-1]]).rstrip())
    return "\n".join(lines) + "\n"


def platform_plan(loaded: LoadedSite, secrets: dict[str, Any] | None = None) -> str:
    """What `blueprint plan` prints for the platform layer, made without the Pulumi CLI."""
    from blueprint.platform.resolve import platform_config

    rows = preview_rows(run_program(platform_config(loaded, secrets)))
    charts = sum(1 for row in rows if row.kind == "Release")
    head = (f"layer platform (offline preview under Pulumi's mock runtime): {len(rows)} "
            f"resources, {charts} Helm releases\n")
    return head + format_rows(rows)
