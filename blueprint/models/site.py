"""The site: one place a blueprint is deployed (nodes, addresses, access, overrides, waivers)."""

from __future__ import annotations

import datetime as dt
import ipaddress
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    Field,
    IPvAnyAddress,
    IPvAnyNetwork,
    ValidationInfo,
    field_validator,
    model_validator,
)

from blueprint.models.blueprint import NodeRoleName
from blueprint.models.common import StrictModel

NODE_ROLES: tuple[str, ...] = ("control-plane", "worker", "gpu", "storage")
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
BASTION = re.compile(r"^(?:[A-Za-z0-9._-]+@)?[A-Za-z0-9.-]+(?::\d{1,5})?$")

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def _dns_label(value: str) -> str:
    if not DNS_LABEL.match(value):
        msg = (
            f"'{value}' is not a DNS label; use lower-case letters, digits and '-', "
            "at most 63 characters, not starting or ending with '-'"
        )
        raise ValueError(msg)
    return value


def _existing_file(value: Path | None, info: ValidationInfo) -> Path | None:
    """Resolve `value` against the site folder and require that the file exists."""
    if value is None:
        return None
    site_dir = (info.context or {}).get("site_dir")
    path = value if value.is_absolute() or site_dir is None else Path(site_dir) / value
    if site_dir is not None and not path.is_file():
        msg = f"file '{value}' does not exist (looked for {path})"
        raise ValueError(msg)
    return path


class SshSettings(StrictModel):
    """How the installer reaches the nodes: user, key, pinned host keys, optional bastion."""

    user: str = "root"
    key: Path | None = Field(default=None, description="private key file")
    known_hosts: Path | None = Field(
        default=None, description="pinned host keys; default: the user's own known_hosts"
    )
    bastion: str | None = Field(default=None, description="ProxyJump, user@host:port")
    admin_user: str = Field(default="edgeadmin", description="admin account made on each node")
    admin_keys: list[Path] = Field(
        default_factory=list, description="public keys of the admin account"
    )

    _key_exists = field_validator("key", "known_hosts")(_existing_file)

    @field_validator("admin_keys")
    @classmethod
    def _admin_keys_exist(cls, keys: list[Path], info: ValidationInfo) -> list[Path]:
        return [path for key in keys if (path := _existing_file(key, info)) is not None]

    @field_validator("bastion")
    @classmethod
    def _bastion_shape(cls, value: str | None) -> str | None:
        if value is not None and not BASTION.match(value):
            msg = f"bastion '{value}' is not of the form user@host:port"
            raise ValueError(msg)
        return value


class NodeSsh(StrictModel):
    """Per-node SSH settings that override the site's."""

    user: str | None = None
    key: Path | None = None

    _key_exists = field_validator("key")(_existing_file)


class Bmc(StrictModel):
    """A node's baseboard management controller; credentials are a name in the site's vault."""

    address: str
    protocol: Literal["redfish", "ipmi"] = "redfish"
    credentials: str = Field(description="key of the BMC's username/password in secrets.yaml")
    verify_tls: bool = True
    ca: Path | None = None

    _ca_exists = field_validator("ca")(_existing_file)


class Node(StrictModel):
    """One machine of the site."""

    name: str
    address: IPvAnyAddress
    roles: list[NodeRoleName] = Field(min_length=1)
    ssh: NodeSsh | None = None
    bmc: Bmc | None = None

    _name_is_label = field_validator("name")(_dns_label)

    @field_validator("roles")
    @classmethod
    def _roles_once(cls, roles: list[str]) -> list[str]:
        if len(set(roles)) != len(roles):
            msg = f"a role is listed twice: {', '.join(roles)}"
            raise ValueError(msg)
        return roles


class Network(StrictModel):
    """Addressing and the ways out that the nodes use."""

    subnet: IPvAnyNetwork | None = None
    http_proxy: str | None = None
    https_proxy: str | None = None
    no_proxy: list[str] = Field(default_factory=list)
    extra_ca: list[Path] = Field(default_factory=list, description="PEM files of extra CAs")

    @field_validator("extra_ca")
    @classmethod
    def _ca_files_exist(cls, files: list[Path], info: ValidationInfo) -> list[Path]:
        return [path for item in files if (path := _existing_file(item, info)) is not None]

    @field_validator("http_proxy", "https_proxy")
    @classmethod
    def _proxy_is_url(cls, value: str | None) -> str | None:
        if value is not None and not re.match(r"^https?://[^\s/]+", value):
            msg = f"proxy '{value}' is not an http:// or https:// URL"
            raise ValueError(msg)
        return value


class RegistryMirror(StrictModel):
    """A container registry and the mirror endpoints the runtime pulls it through."""

    registry: str
    endpoints: list[str] = Field(min_length=1)
    skip_verify: bool = False


class RepositoryMirror(StrictModel):
    """The site's mirror of one repository of the artifact catalogue."""

    url: str
    key: str | None = Field(default=None, description="signing key URL; default: upstream's")


class Artifacts(StrictModel):
    """Where every package, binary, chart and image comes from (see the artifact catalogue)."""

    mode: Literal["online", "mirror", "offline"] = "online"
    apt_proxy: str | None = Field(default=None, description="mirror mode: the site's apt proxy")
    registry_mirrors: list[RegistryMirror] = Field(default_factory=list)
    repositories: dict[str, RepositoryMirror] = Field(
        default_factory=dict, description="mirror mode: the site's mirror of catalogue entries"
    )

    @field_validator("repositories")
    @classmethod
    def _repositories_known(
        cls, value: dict[str, RepositoryMirror]
    ) -> dict[str, RepositoryMirror]:
        from blueprint.artifacts import load_catalogue

        known = load_catalogue().names
        for name in value:
            if name not in known:
                msg = f"repository '{name}' is not in the artifact catalogue; use one of " + (
                    ", ".join(known)
                )
                raise ValueError(msg)
        return value

    @field_validator("registry_mirrors", mode="before")
    @classmethod
    def _mirrors_as_list(cls, value: Any) -> Any:
        # Operators write mirrors as a mapping of registry to endpoint as often as a list;
        # both mean the same, so the mapping is normalised here instead of failing mid-run.
        if isinstance(value, dict):
            return [
                {"registry": registry, "endpoints": endpoint if isinstance(endpoint, list)
                 else [endpoint]}
                for registry, endpoint in value.items()
            ]
        return value

    @model_validator(mode="after")
    def _mode_has_its_source(self) -> Artifacts:
        if self.mode == "mirror" and not (self.apt_proxy or self.registry_mirrors):
            msg = "mode 'mirror' needs apt_proxy or registry_mirrors: the site's own mirror"
            raise ValueError(msg)
        return self


class Waiver(StrictModel):
    """An accepted failure of one validation check, with a reason and an end date."""

    check: str
    node: str | None = None
    reason: str = Field(min_length=3)
    expires: dt.date


class Site(StrictModel):
    """A site file: the nodes of one place and how the blueprint is deployed there."""

    name: str
    blueprint: str
    ssh: SshSettings = Field(default_factory=SshSettings)
    network: Network = Field(default_factory=Network)
    artifacts: Artifacts = Field(default_factory=Artifacts)
    nodes: list[Node] = Field(min_length=1)
    overrides: dict[str, Any] = Field(default_factory=dict)
    waivers: list[Waiver] = Field(default_factory=list)

    _name_is_label = field_validator("name")(_dns_label)

    def problems(self) -> list[tuple[tuple[str | int, ...], str]]:
        """Rules across nodes that a single field cannot see, as (field path, message)."""
        found: list[tuple[tuple[str | int, ...], str]] = []
        names: dict[str, int] = {}
        addresses: dict[IPAddress, str] = {}
        for index, node in enumerate(self.nodes):
            if node.name in names:
                msg = f"name '{node.name}' is already used by node #{names[node.name] + 1}"
                found.append((("nodes", index, "name"), msg))
            if node.address in addresses:
                msg = f"address {node.address} is already used by node {addresses[node.address]}"
                found.append((("nodes", index, "address"), msg))
            subnet = self.network.subnet
            if subnet is not None and node.address not in subnet:
                msg = f"address {node.address} is outside the site's subnet {subnet}"
                found.append((("nodes", index, "address"), msg))
            names.setdefault(node.name, index)
            addresses.setdefault(node.address, node.name)
        for index, waiver in enumerate(self.waivers):
            if waiver.node is not None and waiver.node not in names:
                msg = f"node '{waiver.node}' is not a node of this site"
                found.append((("waivers", index, "node"), msg))
        return found
