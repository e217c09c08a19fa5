"""The platform layer's options (blueprint), site settings and the config its stack receives."""

from __future__ import annotations

import ipaddress
import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


class StrictModel(BaseModel):
    """As blueprint.models.common's: this module is imported by the site model itself."""

    model_config = ConfigDict(extra="forbid", frozen=True)


COMPONENTS: tuple[str, ...] = (
    "gpu", "storage", "access", "notebooks", "mlflow", "pipelines", "serving", "flower",
    "monitoring",
)
# An image reference pinned with its tag: registry/path:tag (a digest may follow).
IMAGE_REF = re.compile(
    r"^[a-z0-9.-]+(?::\d+)?/[a-z0-9._/-]+:[A-Za-z0-9._-]+(?:@sha256:[0-9a-f]{64})?$")
DNS_NAME = re.compile(
    r"^(?=.{1,253}$)[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
HOST_PORT = re.compile(r"^[A-Za-z0-9.-]+:\d{1,5}$")
REGISTRY = re.compile(r"^[a-z0-9.-]+(?::\d{1,5})?(?:/[a-z0-9._-]+)*$")


def _image_ref(value: str) -> str:
    if not IMAGE_REF.match(value):
        msg = (f"image '{value}' is not a pinned reference; write registry/path:tag, "
               "such as nvcr.io/nvidia/gpu-operator:v25.3.0")
        raise ValueError(msg)
    return value


def _dns_label(value: str) -> str:
    if not re.match(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$", value):
        msg = f"'{value}' is not a DNS label (lower-case letters, digits and '-')"
        raise ValueError(msg)
    return value


class Components(StrictModel):
    """Which components of the platform the blueprint switches on."""

    gpu: bool = True
    storage: bool = True
    access: bool = True
    notebooks: bool = True
    mlflow: bool = True
    pipelines: bool = True
    serving: bool = True
    flower: bool = True
    monitoring: bool = True

    @model_validator(mode="after")
    def _needs(self) -> Components:
        # Every user-facing app sits behind the access component's login and needs storage.
        apps = [name for name in ("notebooks", "mlflow", "pipelines", "monitoring")
                if getattr(self, name)]
        if apps and not (self.access and self.storage):
            msg = (f"{', '.join(apps)} need access (login in front of them) and storage; "
                   "switch those on or the apps off")
            raise ValueError(msg)
        if self.serving and not self.access:
            msg = "serving needs access: KServe uses cert-manager from the access component"
            raise ValueError(msg)
        return self


class Chart(StrictModel):
    """A Helm chart: its name, the catalogue repository it comes from, the images it runs."""

    chart: str
    repository: str = Field(description="name of a helm entry of the artifact catalogue")
    images: dict[str, str] = Field(
        default_factory=dict, description="image role to pinned reference, for this version"
    )

    @field_validator("images")
    @classmethod
    def _pinned(cls, images: dict[str, str]) -> dict[str, str]:
        for ref in images.values():
            _image_ref(ref)
        return images


class GpuOptions(StrictModel):
    """The NVIDIA GPU operator: who owns the driver, and how GPUs are shared."""

    driver: Literal["auto", "host", "operator"] = Field(
        default="auto", description="auto: host when the blueprint's gpu layer installs it"
    )
    sharing: Literal["none", "time-slicing", "mig"] = "none"
    time_slicing_replicas: int = Field(default=4, ge=2, le=64)
    mig_strategy: Literal["single", "mixed"] = "single"
    mig_profile: str = Field(default="all-1g.10gb", description="mig-manager config name")


StorageKind = Literal["local-path", "nfs", "longhorn", "rook-ceph"]


class StorageClassOption(StrictModel):
    """One storage class the cluster offers; its kind matches the storage layer's backend."""

    name: str
    kind: StorageKind
    default: bool = False
    nfs_server: str | None = Field(default=None, description="nfs: the export's server")
    nfs_path: str = "/srv/nfs"

    _label = field_validator("name")(_dns_label)

    @model_validator(mode="after")
    def _nfs_server(self) -> StorageClassOption:
        # The provisioner chart has no default server; without one it mounts nothing.
        if self.kind == "nfs" and not self.nfs_server:
            msg = f"storage class {self.name}: kind nfs needs nfs_server (the export's host)"
            raise ValueError(msg)
        return self


class StorageOptions(StrictModel):
    classes: list[StorageClassOption] = Field(min_length=1)
    object_store: Literal["seaweedfs", "ceph-rgw"] = "seaweedfs"
    object_store_size_gib: int = Field(default=100, ge=1)

    @field_validator("object_store", mode="before")
    @classmethod
    def _no_minio(cls, value: Any) -> Any:
        if value == "minio":
            msg = ("minio is refused: its community edition no longer ships images; "
                   "use seaweedfs or ceph-rgw")
            raise ValueError(msg)
        return value

    @model_validator(mode="after")
    def _one_default(self) -> StorageOptions:
        names = [item.name for item in self.classes]
        if len(set(names)) != len(names):
            msg = f"a storage class is listed twice: {', '.join(names)}"
            raise ValueError(msg)
        defaults = [item.name for item in self.classes if item.default]
        if len(defaults) != 1:
            msg = (f"exactly one storage class must be the default; got "
                   f"{', '.join(defaults) or 'none'}")
            raise ValueError(msg)
        if self.object_store == "ceph-rgw" and not any(
                item.kind == "rook-ceph" for item in self.classes):
            msg = "object_store ceph-rgw needs a storage class of kind rook-ceph"
            raise ValueError(msg)
        return self

    @property
    def default_class(self) -> str:
        return next(item.name for item in self.classes if item.default)


class AccessOptions(StrictModel):
    """Ingress, load balancer, certificates and single sign-on."""

    ingress_class: str = "nginx"
    sso: Literal["dex", "external"] = Field(
        default="dex", description="dex: bundled; external: the site's OIDC provider"
    )
    sso_groups: list[str] = Field(default_factory=list, description="groups allowed in")


class NotebookImage(StrictModel):
    """One entry of the notebook catalog: a ready image users pick at spawn time."""

    name: str
    display_name: str
    image: str
    gpu: bool = False
    frameworks: list[Literal["tensorflow", "pytorch", "tensorboard", "scipy"]] = Field(
        min_length=1
    )
    cpu: float = Field(default=2.0, gt=0)
    memory_gib: float = Field(default=8.0, gt=0)

    _label = field_validator("name")(_dns_label)
    _pinned = field_validator("image")(_image_ref)


class NotebookOptions(StrictModel):
    catalog: list[NotebookImage] = Field(min_length=1)
    storage_gib: int = Field(default=10, ge=1, description="per-user volume")
    storage_class: str | None = Field(default=None, description="default: the default class")
    collaboration: bool = Field(default=True, description="real-time collaboration")

    @model_validator(mode="after")
    def _catalog(self) -> NotebookOptions:
        names = [item.name for item in self.catalog]
        if len(set(names)) != len(names):
            msg = f"a notebook image is listed twice: {', '.join(names)}"
            raise ValueError(msg)
        covered = {framework for item in self.catalog for framework in item.frameworks}
        missing = sorted({"tensorflow", "pytorch", "tensorboard"} - covered)
        if missing:
            msg = f"the catalog has no image with {', '.join(missing)}"
            raise ValueError(msg)
        return self


class MlflowOptions(StrictModel):
    backend: str = Field(default="postgresql", description="only postgresql is accepted")
    database_storage_gib: int = Field(default=20, ge=1)
    database_instances: int = Field(default=1, ge=1, le=5)

    @field_validator("backend")
    @classmethod
    def _postgresql(cls, value: str) -> str:
        if value != "postgresql":
            msg = (f"backend '{value}' is refused: runs and models must survive a restart; "
                   "use postgresql")
            raise ValueError(msg)
        return value


class PipelinesOptions(StrictModel):
    engine: Literal["argo-workflows", "kubeflow-pipelines"] = "argo-workflows"


class ServingOptions(StrictModel):
    deployment_mode: str = "RawDeployment"
    # InferenceServices in edge-serving published behind the login, each at
    # <name>-edge-serving.<domain> (KServe's own ingress creation is off).
    published_models: list[str] = Field(default_factory=list)

    @field_validator("deployment_mode")
    @classmethod
    def _raw(cls, value: str) -> str:
        if value not in ("RawDeployment", "Standard"):
            msg = (f"deployment_mode '{value}' needs Knative, which this platform does not "
                   "install; use RawDeployment")
            raise ValueError(msg)
        return "RawDeployment"

    @field_validator("published_models")
    @classmethod
    def _dns_labels(cls, names: list[str]) -> list[str]:
        for name in names:
            if not re.fullmatch(r"[a-z]([-a-z0-9]{0,41}[a-z0-9])?", name):
                msg = (f"published_models: '{name}' is not an InferenceService name; use "
                       "lower-case letters, digits and '-', starting with a letter")
                raise ValueError(msg)
        return names


class FlowerOptions(StrictModel):
    supernode_roles: list[Literal["gpu", "worker"]] = Field(default=["gpu"])
    superlink_port: int = Field(default=9092, ge=1, le=65535)


class MonitoringOptions(StrictModel):
    gpu_dashboards: bool = True
    retention: str = Field(default="15d", pattern=r"^\d+[dhw]$")
    storage_gib: int = Field(default=50, ge=1)


class RegistryOptions(StrictModel):
    """Pull every image from this registry instead of upstream (air-gapped sites)."""

    override: str | None = None
    pull_secret: str | None = Field(default=None, description="Secret name for image pulls")

    @field_validator("override")
    @classmethod
    def _registry(cls, value: str | None) -> str | None:
        if value is not None and not REGISTRY.match(value):
            msg = f"registry '{value}' is not host[:port][/path] (such as registry.lan:5000)"
            raise ValueError(msg)
        return value


class Quota(StrictModel):
    cpu: str = "16"
    memory: str = "64Gi"
    pods: int = 100
    gpus: int = 0


class PlatformOptions(StrictModel):
    """The blueprint's `platform` layer `options`."""

    components: Components = Field(default_factory=Components)
    gpu: GpuOptions = Field(default_factory=GpuOptions)
    storage: StorageOptions
    access: AccessOptions = Field(default_factory=AccessOptions)
    notebooks: NotebookOptions
    mlflow: MlflowOptions = Field(default_factory=MlflowOptions)
    pipelines: PipelinesOptions = Field(default_factory=PipelinesOptions)
    serving: ServingOptions = Field(default_factory=ServingOptions)
    flower: FlowerOptions = Field(default_factory=FlowerOptions)
    monitoring: MonitoringOptions = Field(default_factory=MonitoringOptions)
    registry: RegistryOptions = Field(default_factory=RegistryOptions)
    quotas: dict[str, Quota] = Field(default_factory=dict, description="per component")
    charts: dict[str, Chart]
    images: dict[str, str] = Field(
        default_factory=dict, description="images the product's own objects run (Flower)"
    )

    @field_validator("quotas")
    @classmethod
    def _quota_components(cls, quotas: dict[str, Quota]) -> dict[str, Quota]:
        for name in quotas:
            if name not in COMPONENTS:
                msg = f"quota for '{name}': not a component; use one of {', '.join(COMPONENTS)}"
                raise ValueError(msg)
        return quotas

    @field_validator("images")
    @classmethod
    def _pinned(cls, images: dict[str, str]) -> dict[str, str]:
        for ref in images.values():
            _image_ref(ref)
        return images

    @model_validator(mode="after")
    def _charts_known(self) -> PlatformOptions:
        from blueprint.artifacts import load_catalogue

        helm = sorted(name for name, entry in load_catalogue().repositories.items()
                      if entry.kind == "helm")
        for key, chart in self.charts.items():
            if chart.repository not in helm:
                msg = (f"chart {key}: repository '{chart.repository}' is not a helm entry of "
                       f"the artifact catalogue; use one of {', '.join(helm)}")
                raise ValueError(msg)
        missing = sorted(set(required_charts(self)) - set(self.charts))
        if missing:
            msg = f"charts {', '.join(missing)} are needed by the switched-on components"
            raise ValueError(msg)
        if self.notebooks.storage_class not in (None, *[c.name for c in self.storage.classes]):
            msg = (f"notebooks.storage_class '{self.notebooks.storage_class}' is not one of the "
                   "storage classes")
            raise ValueError(msg)
        return self


def required_charts(options: PlatformOptions) -> list[str]:
    """The chart keys the switched-on components install."""
    on = options.components
    kinds = {item.kind for item in options.storage.classes}
    wanted: list[tuple[bool, str]] = [
        (on.gpu, "gpu-operator"),
        (on.storage and "nfs" in kinds, "nfs-subdir-external-provisioner"),
        (on.storage and "longhorn" in kinds, "longhorn"),
        (on.storage and "rook-ceph" in kinds, "rook-ceph"),
        (on.storage and "rook-ceph" in kinds, "rook-ceph-cluster"),
        (on.storage and options.storage.object_store == "seaweedfs", "seaweedfs"),
        (on.access, "ingress-nginx"),
        (on.access, "metallb"),
        (on.access, "cert-manager"),
        (on.access, "oauth2-proxy"),
        (on.access and options.access.sso == "dex", "dex"),
        (on.notebooks, "jupyterhub"),
        (on.mlflow, "cloudnative-pg"),
        (on.mlflow, "mlflow"),
        (on.pipelines and options.pipelines.engine == "argo-workflows", "argo-workflows"),
        (on.serving, "kserve-crd"),
        (on.serving, "kserve"),
        (on.monitoring, "kube-prometheus-stack"),
    ]
    return [key for enabled, key in wanted if enabled]


class PlatformLayer(StrictModel):
    """The blueprint's `platform` layer as a whole: options and pinned versions."""

    name: Literal["platform"]
    roles: list[str] = Field(default_factory=list, max_length=0)
    options: PlatformOptions
    versions: dict[str, str]
    validates: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _every_chart_pinned(self) -> PlatformLayer:
        unpinned = sorted(set(self.options.charts) - set(self.versions))
        if unpinned:
            msg = f"versions: charts {', '.join(unpinned)} have no pinned version"
            raise ValueError(msg)
        if self.options.pipelines.engine == "kubeflow-pipelines" and (
                "kubeflow-pipelines" not in self.versions):
            msg = "versions: kubeflow-pipelines needs a pinned version"
            raise ValueError(msg)
        if self.options.components.flower and not {"superlink", "supernode"} <= set(
                self.options.images):
            msg = "options.images: flower needs pinned superlink and supernode images"
            raise ValueError(msg)
        return self


# --- The site's own settings for the platform (site.yaml: platform:) -----------------------


class SiteSso(StrictModel):
    """The site's OIDC provider (access.sso external) or the bundled Dex's upstream."""

    issuer_url: str = Field(pattern=r"^https://")
    client_id: str


class SiteFlower(StrictModel):
    """Federation: the hub runs the SuperLink; a member's SuperNodes connect to the hub's."""

    role: Literal["hub", "member", "none"] = "none"
    superlink_address: str | None = Field(default=None, description="member: hub host:port")
    control_from: list[str] = Field(
        default_factory=list,
        description="hub: networks (CIDR) allowed to the SuperLink's Control API (flwr, "
                    "validate); none by default: the API has no login of its own")

    @field_validator("control_from")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        for item in value:
            try:
                ipaddress.ip_network(item, strict=False)
            except ValueError:
                msg = f"control_from '{item}' is not a network; write a CIDR, e.g. 10.20.0.5/32"
                raise ValueError(msg) from None
        return value

    @model_validator(mode="after")
    def _member_names_hub(self) -> SiteFlower:
        if self.role == "member" and not self.superlink_address:
            msg = "a member site needs superlink_address: the hub's SuperLink host:port"
            raise ValueError(msg)
        if self.superlink_address and not HOST_PORT.match(self.superlink_address):
            msg = f"superlink_address '{self.superlink_address}' is not host:port"
            raise ValueError(msg)
        if self.role == "hub" and self.superlink_address:
            msg = "a hub site runs the SuperLink itself; remove superlink_address"
            raise ValueError(msg)
        if self.role != "hub" and self.control_from:
            msg = "control_from opens a hub's SuperLink; only a hub site has one"
            raise ValueError(msg)
        return self


class PlatformSite(StrictModel):
    """`platform:` in a site file: names, addresses and federation of this site."""

    domain: str = Field(description="DNS zone of the endpoints, e.g. edge1.example.net")
    load_balancer_addresses: list[str] = Field(
        min_length=1, description="MetalLB pool: CIDRs or first-last ranges"
    )
    sso: SiteSso | None = None
    flower: SiteFlower = Field(default_factory=SiteFlower)
    registry: RegistryOptions | None = Field(
        default=None, description="replaces the blueprint's registry settings"
    )

    @field_validator("domain")
    @classmethod
    def _domain(cls, value: str) -> str:
        if not DNS_NAME.match(value):
            msg = f"domain '{value}' is not a DNS name"
            raise ValueError(msg)
        return value


# --- What the stack program receives: everything resolved, nothing left to look up ----------


class ResolvedChart(StrictModel):
    chart: str
    repository_url: str
    version: str
    images: dict[str, str]


class PlatformNode(StrictModel):
    name: str
    roles: list[str]
    address: str | None = Field(default=None, description="the node's address in the site")


# Images the GPU operator runs only when it installs driver and toolkit itself.
OPERATOR_DRIVER_IMAGES = ("driver", "toolkit")


class PlatformConfig(StrictModel):
    """The one config value of the platform stack, made by the product from site+blueprint."""

    site: str
    kubernetes_version: str = Field(description="e.g. 1.31, for the schemas of our objects")
    host_gpu_driver: bool = Field(description="the gpu layer installs driver and toolkit")
    options: PlatformOptions
    settings: PlatformSite
    charts: dict[str, ResolvedChart]
    nodes: list[PlatformNode] = Field(min_length=1)
    registry_auth: str | None = Field(
        default=None, description="dockerconfigjson for the pull secret; a Pulumi secret"
    )

    @property
    def registry(self) -> RegistryOptions:
        return self.settings.registry or self.options.registry

    @property
    def operator_driver(self) -> bool:
        """The GPU operator installs driver and toolkit (the host's gpu layer does not)."""
        driver = self.options.gpu.driver
        return driver == "operator" or (driver == "auto" and not self.host_gpu_driver)

    def nodes_with(self, *roles: str) -> list[str]:
        return [node.name for node in self.nodes if set(roles) & set(node.roles)]
