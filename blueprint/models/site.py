"""The site: one place a blueprint is deployed (nodes, addresses, access, overrides, waivers)."""

from __future__ import annotations

import datetime as dt
import ipaddress
import re
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

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
from blueprint.platform.config import PlatformSite

NODE_ROLES: tuple[str, ...] = ("control-plane", "worker", "gpu", "storage")
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
MAC = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")
DISK = re.compile(r"^/dev/[A-Za-z0-9._/:-]+$")
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

    address: str = Field(description="https://host[:port] of a Redfish service, host of IPMI")
    protocol: Literal["redfish", "ipmi"] = "redfish"
    credentials: str = Field(
        description="key under bmc_credentials in secrets.yaml (username, password), or "
        "BLUEPRINT_BMC_<KEY>_USERNAME/_PASSWORD in the environment"
    )
    verify_tls: bool = True
    ca: Path | None = Field(default=None, description="PEM file of the CA that signed the BMC")
    system: str | None = Field(
        default=None, description="Redfish system id, needed when the BMC manages several"
    )
    timeout: float = Field(default=30.0, gt=0, le=600, description="seconds per BMC request")
    # Only suites that authenticate, check integrity and encrypt: suite 0 logs in without a
    # password on some BMCs (OpenIPMI's simulator among them).
    cipher_suite: Literal[3, 17] | None = Field(
        default=None, description="IPMI only: RMCP+ cipher suite, 17 (SHA-256) or 3 (SHA-1); "
        "by default 17, then 3 when the BMC does not offer 17"
    )
    boot_mode: Literal["uefi", "bios"] = Field(
        default="uefi", description="IPMI only: boot mode the one-time boot asks for (bios: legacy)"
    )

    _ca_exists = field_validator("ca")(_existing_file)

    @field_validator("address")
    @classmethod
    def _address_shape(cls, value: str) -> str:
        if re.match(r"^https?://", value) and " " not in value:
            return value.rstrip("/")
        if re.match(r"^[A-Za-z0-9.:\[\]-]+$", value):
            return value
        msg = f"BMC address '{value}' is neither an http(s):// URL nor a host name or address"
        raise ValueError(msg)

    @model_validator(mode="after")
    def _fields_of_its_protocol(self) -> Bmc:
        if self.protocol == "ipmi" and "://" in self.address:
            msg = (f"IPMI address '{self.address}' is a URL; give host or host:port "
                   "(UDP, port 623 by default)")
            raise ValueError(msg)
        ipmi_only = sorted({"cipher_suite", "boot_mode"} & self.model_fields_set)
        if self.protocol == "redfish" and ipmi_only:
            msg = f"{', '.join(ipmi_only)}: only for protocol ipmi, not redfish"
            raise ValueError(msg)
        return self


class Node(StrictModel):
    """One machine of the site."""

    name: str
    address: IPvAnyAddress
    roles: list[NodeRoleName] = Field(min_length=1)
    ssh: NodeSsh | None = None
    bmc: Bmc | None = None
    boot_mac: str | None = Field(
        default=None, description="MAC of the NIC the node boots from the network with"
    )
    install_disk: str | None = Field(
        default=None, description="disk the OS is installed on, e.g. /dev/disk/by-path/..."
    )

    _name_is_label = field_validator("name")(_dns_label)

    @field_validator("name")
    @classmethod
    def _not_reserved(cls, value: str) -> str:
        # The validation reports its cluster-scoped checks under this name (CLUSTER).
        if value == "cluster":
            msg = ("'cluster' is reserved: the validation reports the cluster's checks under "
                   "it; name the node otherwise")
            raise ValueError(msg)
        return value

    @field_validator("boot_mac", mode="before")
    @classmethod
    def _mac_shape(cls, value: Any) -> Any:
        if value is None:
            return None
        mac = str(value).strip().lower().replace("-", ":")
        if not MAC.match(mac):
            msg = f"'{value}' is not a MAC address; write six hex pairs, e.g. 52:54:00:12:34:56"
            raise ValueError(msg)
        return mac

    @field_validator("install_disk")
    @classmethod
    def _disk_shape(cls, value: str | None) -> str | None:
        if value is not None and not DISK.match(value):
            msg = f"install disk '{value}' is not a device path under /dev/"
            raise ValueError(msg)
        return value

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
    time_servers: list[str] = Field(
        default_factory=list,
        description="NTP servers of the nodes (e.g. the address `blueprint mirror serve --ntp` "
        "listens on); empty keeps the OS's own",
    )

    @field_validator("time_servers")
    @classmethod
    def _time_servers_are_hosts(cls, servers: list[str]) -> list[str]:
        for server in servers:
            if not re.match(r"^[A-Za-z0-9.:-]+$", server):
                msg = f"time server '{server}' is not a host name or an address"
                raise ValueError(msg)
        return servers

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
        return _without_credentials(value)


def _without_credentials(url: str | None) -> str | None:
    """Refuse a URL with a user or password: the site file holds no secrets.

    The proxy settings land in world-readable files on the nodes (/etc/environment, apt's
    configuration), so a password there would leak.
    """
    # TODO(issue 2): authenticated proxies (credentials from the vault, written to files
    # only root reads) are not supported yet.
    if url is not None and "@" in urlsplit(url).netloc:
        host = urlsplit(url).netloc.rpartition("@")[2]
        msg = (f"URL for host '{host}' holds a user or password; the site file holds no "
               "secrets and authenticated proxies are not supported yet: admit the nodes' "
               "addresses at the proxy instead")
        raise ValueError(msg)
    return url


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
    apt_proxy: str | None = Field(
        default=None,
        description="mirror mode: the site's apt proxy; offline: `blueprint mirror serve`",
    )
    registry_mirrors: list[RegistryMirror] = Field(default_factory=list)
    repositories: dict[str, RepositoryMirror] = Field(
        default_factory=dict, description="mirror mode: the site's mirror of catalogue entries"
    )

    @field_validator("apt_proxy")
    @classmethod
    def _apt_proxy_without_credentials(cls, value: str | None) -> str | None:
        return _without_credentials(value)

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
        if self.mode == "offline" and not self.apt_proxy:
            msg = ("mode 'offline' needs apt_proxy: the address `blueprint mirror serve` "
                   "listens on, e.g. http://10.20.0.2:3150")
            raise ValueError(msg)
        return self


class Provision(StrictModel):
    """How nodes are installed: the boot server on the provisioning network and the OS."""

    boot_server: IPvAnyAddress = Field(
        description="address of the host that runs dnsmasq and the HTTP server, in the subnet"
    )
    interface: str = Field(description="network interface of the boot server on that subnet")
    http_port: int = Field(default=8069, ge=1, le=65535)
    gateway: IPvAnyAddress | None = None
    dns: list[IPvAnyAddress] = Field(default_factory=list)
    domain: str = Field(default="edge.internal", description="DNS domain of the nodes")
    os: Literal["debian-12", "ubuntu-24.04"] = "debian-12"
    mirror: str | None = Field(
        default=None,
        description="package mirror of the installer and the nodes (http, host and path); "
        "default: deb.debian.org/debian or archive.ubuntu.com/ubuntu",
    )
    timezone: str = "Etc/UTC"
    boot: Literal["pxe", "http"] = Field(
        default="pxe", description="pxe: BIOS/UEFI PXE then iPXE; http: UEFI HTTP boot"
    )

    @field_validator("mirror")
    @classmethod
    def _mirror_is_http_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if not re.match(r"^https?://[^\s/]+/\S*$", value):
            msg = f"mirror '{value}' is not an http(s):// URL with a path, e.g. http://host/debian"
            raise ValueError(msg)
        return value.rstrip("/")

    @field_validator("interface")
    @classmethod
    def _interface_name(cls, value: str) -> str:
        if not re.match(r"^[A-Za-z0-9_.:@-]{1,15}$", value):
            msg = f"'{value}' is not a network interface name (at most 15 characters)"
            raise ValueError(msg)
        return value


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
    provision: Provision | None = Field(
        default=None, description="bare-metal install: boot server, OS, mirror"
    )
    platform: PlatformSite | None = Field(
        default=None, description="the AI platform layer: domain, addresses, SSO, federation"
    )

    _name_is_label = field_validator("name")(_dns_label)

    def problems(self) -> list[tuple[tuple[str | int, ...], str]]:
        """Rules across nodes that a single field cannot see, as (field path, message)."""
        found: list[tuple[tuple[str | int, ...], str]] = []
        names: dict[str, int] = {}
        addresses: dict[IPAddress, str] = {}
        macs: dict[str, str] = {}
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
            if node.boot_mac is not None and node.boot_mac in macs:
                msg = f"boot MAC {node.boot_mac} is already used by node {macs[node.boot_mac]}"
                found.append((("nodes", index, "boot_mac"), msg))
            names.setdefault(node.name, index)
            addresses.setdefault(node.address, node.name)
            if node.boot_mac is not None:
                macs.setdefault(node.boot_mac, node.name)
        if self.provision is not None:
            found += self._provision_problems(self.provision)
        for index, waiver in enumerate(self.waivers):
            if waiver.node is not None and waiver.node not in names:
                msg = f"node '{waiver.node}' is not a node of this site"
                found.append((("waivers", index, "node"), msg))
        return found

    def _provision_problems(
        self, provision: Provision
    ) -> list[tuple[tuple[str | int, ...], str]]:
        found: list[tuple[tuple[str | int, ...], str]] = []
        subnet = self.network.subnet
        if subnet is None:
            msg = "provisioning needs the site's subnet (network.subnet) for static addresses"
            found.append((("provision",), msg))
        else:
            for field in ("boot_server", "gateway"):
                value = getattr(provision, field)
                if value is not None and value not in subnet:
                    msg = f"{value} is outside the site's subnet {subnet}"
                    found.append((("provision", field), msg))
        for node in self.nodes:
            if node.address == provision.boot_server:
                msg = f"{node.address} is node {node.name}'s address; the boot server needs its own"
                found.append((("provision", "boot_server"), msg))
        return found
