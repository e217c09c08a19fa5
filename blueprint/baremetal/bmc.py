"""A node's BMC over Redfish (sushy): discovery, inventory, power, boot override, media, BIOS.

What a BMC can do is read from what its service advertises (allowed reset types and boot
targets, a VirtualMedia or Bios link), never from its vendor or model name.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol

import requests
import sushy
from sushy import exceptions as sushy_errors

from blueprint.errors import DeployFailed

log = logging.getLogger(__name__)

# Reset types an operator asks for, by the product's own names.
POWER_ACTIONS = {
    "on": "On",
    "graceful-off": "GracefulShutdown",
    "force-off": "ForceOff",
    "reset": "ForceRestart",
    "graceful-reset": "GracefulRestart",
}
BOOT_TARGETS = ("Pxe", "UefiHttp", "Cd", "Hdd")
# PCI class 03 is a display controller, 12 a processing accelerator; 10de is NVIDIA.
GPU_CLASSES = ("DisplayController", "ProcessingAccelerators")
NVIDIA_VENDOR = "0x10de"


class BmcError(DeployFailed):
    """A BMC could not do what was asked; the message names the node and the BMC."""


class BmcUnsupported(BmcError):
    """The BMC does not advertise the feature asked for."""


@dataclass(frozen=True)
class Credentials:
    """A BMC's user name and password; the password never shows in a repr."""

    username: str
    password: str = field(repr=False)


@dataclass(frozen=True)
class Nic:
    id: str
    mac: str
    speed_mbps: int | None = None
    state: str | None = None


@dataclass(frozen=True)
class Disk:
    id: str
    name: str | None
    capacity_bytes: int | None
    media_type: str | None = None
    protocol: str | None = None


@dataclass(frozen=True)
class PcieDevice:
    id: str
    name: str | None
    manufacturer: str | None
    model: str | None
    device_class: str | None = None
    vendor_id: str | None = None
    device_id: str | None = None
    firmware_version: str | None = None

    @property
    def is_gpu(self) -> bool:
        return self.device_class in GPU_CLASSES or (
            (self.vendor_id or "").lower() == NVIDIA_VENDOR
            and self.device_class not in ("NetworkController", "Bridge")
        )


@dataclass(frozen=True)
class Capabilities:
    """What the BMC's service advertises for this system."""

    reset_types: tuple[str, ...]
    boot_targets: tuple[str, ...]
    virtual_media: bool
    bios: bool
    secure_boot: bool
    pcie_devices: bool


@dataclass(frozen=True)
class Inventory:
    """The hardware behind one BMC, as its Redfish service reports it."""

    system_id: str
    manufacturer: str | None
    model: str | None
    serial: str | None
    uuid: str | None
    power_state: str | None
    bios_version: str | None
    bmc_firmware: str | None
    boot_mode: str | None
    secure_boot: bool | None
    cpu_count: int | None
    cpu_model: str | None
    memory_gib: float | None
    disks: tuple[Disk, ...]
    nics: tuple[Nic, ...]
    pcie_devices: tuple[PcieDevice, ...]
    capabilities: Capabilities
    # Logical CPUs (threads), what `nproc` counts on the node; `cpu_count` is sockets.
    cpu_threads: int | None = None
    bmc_mac: str | None = None

    @property
    def gpus(self) -> tuple[PcieDevice, ...]:
        return tuple(device for device in self.pcie_devices if device.is_gpu)

    @property
    def macs(self) -> tuple[str, ...]:
        return tuple(nic.mac for nic in self.nics)


class BmcClient(Protocol):
    """What discover and provision ask of a node's BMC, over Redfish or IPMI."""

    node: str
    address: str

    def capabilities(self) -> Capabilities: ...
    def inventory(self) -> Inventory: ...
    def power_state(self) -> str: ...
    def power(self, action: str) -> None: ...
    def wait_power(self, state: str, timeout: float, poll: float = 1.0) -> None: ...
    def boot_once(self, target: str, http_uri: str | None = None) -> None: ...
    def bios_attributes(self) -> dict[str, Any]: ...
    def set_bios_attributes(self, attributes: dict[str, Any]) -> None: ...
    def close(self) -> None: ...


def wait_for_power(bmc: BmcClient, state: str, timeout: float, poll: float = 1.0) -> None:
    """Wait until `bmc` reports power `state` ("On" or "Off"); BmcError after `timeout`."""
    deadline = time.monotonic() + timeout
    seen = bmc.power_state()
    while seen != state:
        if time.monotonic() > deadline:
            msg = (
                f"node {bmc.node}: BMC {bmc.address}: power is still {seen} after "
                f"{timeout:g} s; expected {state}"
            )
            raise BmcError(msg)
        time.sleep(poll)
        seen = bmc.power_state()


class RedfishBmc:
    """One node's BMC, spoken to over Redfish.

    `verify` is True (system CAs), a CA bundle path (the site's CA), or False when the site
    file says `verify_tls: false`.
    """

    def __init__(
        self,
        node: str,
        address: str,
        credentials: Credentials,
        *,
        verify: bool | str = True,
        timeout: float = 30.0,
        system_id: str | None = None,
    ) -> None:
        self.node = node
        self.address = address if "://" in address else f"https://{address}"
        self._credentials = credentials
        self._verify = verify
        self._timeout = timeout
        self._system_id = system_id
        self._root: Any = None
        self._system: Any = None

    # The one place BMC faults become one-line errors that say what to do.
    @contextmanager
    def _calls(self, what: str) -> Iterator[None]:
        where = f"node {self.node}: BMC {self.address}"
        try:
            yield
        except BmcError:
            raise
        except sushy_errors.AccessError as exc:
            msg = (
                f"{where}: {what}: the BMC refused the credentials (HTTP {exc.status_code}); "
                "check the node's bmc.credentials entry in secrets.yaml or the environment"
            )
            raise BmcError(msg) from None
        except (requests.exceptions.Timeout, TimeoutError) as exc:
            msg = f"{where}: {what}: no answer within {self._timeout:g} s ({type(exc).__name__})"
            raise BmcError(msg) from None
        except sushy_errors.ConnectionError as exc:
            raise BmcError(self._connection_message(where, what, exc)) from None
        except requests.exceptions.RequestException as exc:
            raise BmcError(self._connection_message(where, what, exc)) from None
        except sushy_errors.HTTPError as exc:
            msg = f"{where}: {what}: HTTP {exc.status_code}: {exc.detail or exc.message}"
            raise BmcError(msg) from None
        except sushy_errors.SushyError as exc:
            msg = f"{where}: {what}: {exc}"
            raise BmcError(msg) from None

    def _connection_message(self, where: str, what: str, exc: Exception) -> str:
        text = str(exc)
        cause = getattr(exc, "kwargs", {}).get("error") or exc.__cause__ or exc
        if isinstance(cause, requests.exceptions.Timeout) or "timed out" in text:
            return f"{where}: {what}: no answer within {self._timeout:g} s"
        if isinstance(cause, requests.exceptions.SSLError) or "CERTIFICATE_VERIFY" in text:
            return (
                f"{where}: {what}: its TLS certificate is not trusted; give the CA that "
                "signed it as the node's bmc.ca (verification stays on)"
            )
        return f"{where}: {what}: cannot connect ({type(cause).__name__})"

    def _connect(self) -> Any:
        if self._root is None:
            with self._calls("connect"):
                self._root = sushy.Sushy(
                    f"{self.address}/redfish/v1/",
                    username=self._credentials.username,
                    password=self._credentials.password,
                    verify=self._verify,
                    read_timeout=self._timeout,
                    connect_timeout=min(self._timeout, 10.0),
                    # A BMC that answers 5xx is reported, not retried for half a minute.
                    server_side_retries=1,
                    server_side_retries_delay=1,
                )
        return self._root

    def system(self) -> Any:
        """The system behind the BMC: its only one, or the one the site file names."""
        if self._system is not None:
            return self._system
        root = self._connect()
        with self._calls("list systems"):
            members = list(root.get_system_collection().members_identities)
        ids = [path.rstrip("/").rsplit("/", 1)[-1] for path in members]
        if self._system_id is not None:
            if self._system_id not in ids:
                msg = (
                    f"node {self.node}: BMC {self.address}: system '{self._system_id}' is not "
                    f"there; it has {', '.join(ids) or 'no system'}"
                )
                raise BmcError(msg)
            path = members[ids.index(self._system_id)]
        elif len(members) == 1:
            path = members[0]
        else:
            msg = (
                f"node {self.node}: BMC {self.address} manages {len(members)} systems "
                f"({', '.join(ids) or 'none'}); name one as the node's bmc.system"
            )
            raise BmcError(msg)
        with self._calls("read the system"):
            self._system = root.get_system(path)
        return self._system

    def capabilities(self) -> Capabilities:
        system = self.system()
        with self._calls("read capabilities"):
            reset_types = tuple(sorted(str(v.value) for v in
                                       system.get_allowed_reset_system_values()))
            boot_targets = tuple(sorted(str(v.value) for v in
                                        system.get_allowed_system_boot_source_values()))
        return Capabilities(
            reset_types=reset_types,
            boot_targets=boot_targets,
            virtual_media=self._media_collection(required=False) is not None,
            bios="Bios" in system.json,
            secure_boot="SecureBoot" in system.json,
            pcie_devices="PCIeDevices" in system.json,
        )

    def inventory(self) -> Inventory:
        """Model, serial, firmware, CPUs, memory, disks, NICs and PCIe devices."""
        system = self.system()
        raw = system.json
        capabilities = self.capabilities()
        with self._calls("read the inventory"):
            summary = raw.get("ProcessorSummary") or {}
            cpu_count = summary.get("Count")
            cpu_threads = summary.get("LogicalProcessorCount")
            cpu_model = summary.get("Model")
            memory = (raw.get("MemorySummary") or {}).get("TotalSystemMemoryGiB")
            secure_boot = None
            if capabilities.secure_boot:
                secure_boot = self._optional(lambda: bool(system.secure_boot.enabled))
            inventory = Inventory(
                system_id=system.identity,
                manufacturer=system.manufacturer,
                model=system.model,
                serial=system.serial_number,
                uuid=system.uuid,
                power_state=_value(system.power_state),
                bios_version=system.bios_version,
                bmc_firmware=self._bmc_firmware(),
                boot_mode=_value(system.boot.mode),
                secure_boot=secure_boot,
                cpu_count=int(cpu_count) if cpu_count is not None else None,
                cpu_model=cpu_model,
                memory_gib=float(memory) if memory is not None else None,
                disks=self._disks(),
                nics=self._nics(),
                pcie_devices=self._pcie_devices(),
                capabilities=capabilities,
                cpu_threads=int(cpu_threads) if cpu_threads is not None else None,
            )
        return inventory

    def _optional(self, read: Any) -> Any:
        """A part the service links to but cannot serve is left out of the inventory."""
        try:
            return read()
        except (sushy_errors.MissingAttributeError, sushy_errors.HTTPError) as exc:
            if isinstance(exc, sushy_errors.AccessError):
                raise
            log.debug("node %s: BMC part not available: %s", self.node, exc)
            return None

    def _bmc_firmware(self) -> str | None:
        managers = self._optional(lambda: self.system().managers) or []
        versions = [m.firmware_version for m in managers if m.firmware_version]
        return versions[0] if versions else None

    def _nics(self) -> tuple[Nic, ...]:
        if "EthernetInterfaces" not in self.system().json:
            return ()
        members = self._optional(lambda: self.system().ethernet_interfaces.get_members()) or []
        return tuple(
            Nic(id=nic.identity, mac=(nic.mac_address or nic.permanent_mac_address or "").lower(),
                speed_mbps=nic.speed_mbps, state=_value(nic.status.state))
            for nic in members
        )

    def _disks(self) -> tuple[Disk, ...]:
        system = self.system()
        disks: list[Disk] = []
        if "Storage" in system.json:
            for storage in self._optional(lambda: system.storage.get_members()) or []:
                for drive in self._optional(lambda s=storage: s.drives) or []:
                    disks.append(Disk(id=drive.identity, name=drive.name,
                                      capacity_bytes=drive.capacity_bytes,
                                      media_type=drive.media_type,
                                      protocol=_value(drive.protocol)))
        if not disks and "SimpleStorage" in system.json:
            for storage in self._optional(lambda: system.simple_storage.get_members()) or []:
                for device in storage.devices:
                    disks.append(Disk(id=device.name, name=device.name,
                                      capacity_bytes=device.capacity_bytes))
        return tuple(disks)

    def _pcie_devices(self) -> tuple[PcieDevice, ...]:
        system = self.system()
        if "PCIeDevices" not in system.json:
            return ()
        devices = []
        for device in self._optional(lambda: system.pcie_devices.get_members()) or []:
            functions = self._optional(lambda d=device: d.pcie_functions.get_members()) or []
            first = functions[0] if functions else None
            devices.append(PcieDevice(
                id=device.identity,
                name=device.name,
                manufacturer=device.manufacturer,
                model=device.model,
                device_class=_value(first.device_class) if first else None,
                vendor_id=first.vendor_id if first else None,
                device_id=first.device_id if first else None,
                firmware_version=device.firmware_version,
            ))
        return tuple(devices)

    # Power

    def power_state(self) -> str:
        system = self.system()
        with self._calls("read the power state"):
            system.refresh(force=True)
            return str(_value(system.power_state))

    def power(self, action: str) -> None:
        """Ask for one of POWER_ACTIONS; refused if the BMC does not advertise it."""
        reset_type = POWER_ACTIONS[action]
        allowed = self.capabilities().reset_types
        if reset_type not in allowed:
            msg = (
                f"node {self.node}: BMC {self.address} does not offer power action {reset_type}; "
                f"it offers {', '.join(allowed) or 'none'}"
            )
            raise BmcUnsupported(msg)
        with self._calls(f"power {action}"):
            self.system().reset_system(sushy.ResetType(reset_type))
        log.info("node %s: power %s requested", self.node, action)

    def wait_power(self, state: str, timeout: float, poll: float = 1.0) -> None:
        """Wait until the system reports power `state` ("On" or "Off")."""
        wait_for_power(self, state, timeout, poll)

    # Boot

    def boot_once(self, target: str, http_uri: str | None = None) -> None:
        """One-time boot override to `target` (Pxe, UefiHttp, Cd, Hdd) for the next boot."""
        allowed = self.capabilities().boot_targets
        if target not in allowed:
            msg = (
                f"node {self.node}: BMC {self.address} does not offer boot target {target}; "
                f"it offers {', '.join(allowed) or 'none'}"
            )
            raise BmcUnsupported(msg)
        system = self.system()
        with self._calls(f"set a one-time boot to {target}"):
            system.set_system_boot_options(
                target=sushy.BootSource(target),
                enabled=sushy.BootSourceOverrideEnabled.ONCE,
                http_boot_uri=http_uri,
            )
            system.refresh(force=True)
        log.info("node %s: next boot from %s", self.node, target)

    def boot_override(self) -> tuple[str | None, str | None]:
        """The boot override the BMC holds now: (target, enabled)."""
        system = self.system()
        with self._calls("read the boot override"):
            system.refresh(force=True)
            return _value(system.boot.target), _value(system.boot.enabled)

    # Virtual media

    def _media_collection(self, *, required: bool) -> Any:
        system = self.system()
        holders: list[Any] = []
        if "VirtualMedia" in system.json:
            holders.append(lambda: system.virtual_media)
        holders.append(lambda: next(
            (m.virtual_media for m in system.managers if "VirtualMedia" in m.json), None))
        for holder in holders:
            collection = self._optional(holder)
            if collection is not None:
                return collection
        if required:
            msg = (
                f"node {self.node}: BMC {self.address} offers no virtual media; boot it from "
                "the network (boot target Pxe or UefiHttp) instead"
            )
            raise BmcUnsupported(msg)
        return None

    def _cd_drive(self) -> Any:
        collection = self._media_collection(required=True)
        with self._calls("list virtual media"):
            for media in collection.get_members():
                types = {str(_value(kind)) for kind in media.media_types or []}
                if types & {"CD", "DVD"}:
                    return media
        msg = f"node {self.node}: BMC {self.address}: no virtual CD/DVD drive is offered"
        raise BmcUnsupported(msg)

    def insert_media(self, image_url: str) -> None:
        media = self._cd_drive()
        with self._calls(f"insert virtual media {image_url}"):
            media.insert_media(image_url, inserted=True, write_protected=True)
        log.info("node %s: virtual media %s inserted", self.node, image_url)

    def media(self) -> tuple[str | None, bool]:
        """The image in the virtual CD drive and whether it counts as inserted."""
        media = self._cd_drive()
        with self._calls("read virtual media"):
            media.refresh(force=True)
            return media.image or None, bool(media.inserted)

    def eject_media(self) -> None:
        media = self._cd_drive()
        with self._calls("eject virtual media"):
            media.eject_media()
        log.info("node %s: virtual media ejected", self.node)

    def boot_from_media_once(self, image_url: str) -> None:
        """Insert `image_url` and boot from it once; eject it with eject_media afterwards."""
        self.insert_media(image_url)
        self.boot_once("Cd")

    # BIOS

    def _bios(self) -> Any:
        system = self.system()
        if "Bios" not in system.json:
            msg = f"node {self.node}: BMC {self.address} offers no BIOS attributes"
            raise BmcUnsupported(msg)
        with self._calls("read BIOS attributes"):
            return system.bios

    def bios_attributes(self) -> dict[str, Any]:
        bios = self._bios()
        with self._calls("read BIOS attributes"):
            bios.refresh(force=True)
            return dict(bios.attributes or {})

    def pending_bios_attributes(self) -> dict[str, Any]:
        bios = self._bios()
        with self._calls("read pending BIOS attributes"):
            return dict(bios.pending_attributes or {})

    def set_bios_attributes(self, attributes: dict[str, Any]) -> None:
        """Ask for BIOS attributes; they apply at the next reboot, as on real firmware."""
        bios = self._bios()
        unknown = sorted(set(attributes) - set(self.bios_attributes()))
        if unknown:
            msg = (
                f"node {self.node}: BMC {self.address}: BIOS attribute(s) "
                f"{', '.join(unknown)} are not offered by this firmware"
            )
            raise BmcUnsupported(msg)
        with self._calls("set BIOS attributes"):
            bios.set_attributes(attributes)
        log.info("node %s: BIOS attributes %s pending", self.node, ", ".join(sorted(attributes)))

    # Consoles

    def serial_console_types(self) -> tuple[str, ...] | None:
        """How the system's manager offers its serial console (`SerialConsole`'s connect
        types: SSH, Telnet, IPMI, Oem), or None when no manager advertises one enabled."""
        managers = self._optional(lambda: self.system().managers) or []
        for manager in managers:
            console = manager.json.get("SerialConsole") or {}
            if console.get("ServiceEnabled") and console.get("ConnectTypesSupported"):
                return tuple(str(kind) for kind in console["ConnectTypesSupported"])
        return None

    def close(self) -> None:
        """End the Redfish session, if one was made."""
        if self._root is not None:
            try:
                self._root._conn.close()
            except Exception as exc:  # a session that cannot be closed is left to expire
                log.debug("node %s: closing the BMC session: %s", self.node, exc)
            self._root = None
            self._system = None


def _value(item: Any) -> Any:
    """An enum's value, or the item itself."""
    return getattr(item, "value", item)
