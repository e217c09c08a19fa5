"""Hardware checks read from the node's BMC, against the blueprint's profile.

These run in the node's pytest process on the controller and reach the BMC from there, with
the product's own clients (`blueprint.baremetal`: Redfish, or ipmitool for an IPMI BMC, which
reports far less: what it does not report is skipped); the node's shell is not used.
The BMC is read once per run, by the first of these checks that runs, under its timeout.

Where the BMC is (`expected["bmc"]`) comes from the site file; its password only from this
process's environment (`BLUEPRINT_VALIDATE_BMC_PASSWORD`), never from a file. A node without
a bmc section has every check skipped with that reason. A value the BMC does not report
(many report no logical CPU count, no PCIe devices, no Secure Boot resource) is skipped
with that reason, never passed. When the BMC cannot be read at all, `hardware.bmc.reachable`
fails with the reason and the other checks are `error`: they could not decide.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any

import pytest

from blueprint.baremetal.access import connect_bmc
from blueprint.baremetal.bmc import BmcError, Credentials, Inventory
from blueprint.baremetal.discover import version_key
from blueprint.models.site import Bmc
from blueprint.secrets import MASK
from blueprint.validate.model import BMC_PASSWORD_ENV
from blueprint.validate.plugin import expect

log = logging.getLogger(__name__)

GIB = 1024**3
# NIC states that mean the port is not in use (Redfish Status.State).
UNUSED_NIC_STATES = ("Disabled", "Absent", "StandbyOffline")


class BmcUnusable(Exception):
    """The check cannot decide: no credentials to ask with, or the BMC could not be read."""


@dataclass
class Reading:
    """What the BMC said, or why it could not be read (`problem`)."""

    inventory: Inventory | None = None
    bios: dict[str, Any] | None = None
    problem: str = ""
    bios_problem: str = ""


class BmcReader:
    """Reads the node's BMC on first use and keeps what it read for the other checks."""

    def __init__(self, node: str, settings: dict[str, Any], profile: dict[str, Any] | None):
        self.node = node
        self.settings = settings
        self.profile = profile or {}
        self._reading: Reading | None = None

    def read(self) -> Reading:
        if self._reading is None:
            try:
                self._reading = self._read()
            except BmcUnusable:
                raise
            except BaseException as exc:
                # Cut by the check's timeout (or worse): the next checks say so, at once.
                self._reading = Reading(problem=f"reading the BMC stopped: {exc}")
                raise
        return self._reading

    def _read(self) -> Reading:
        settings = self.settings
        password = os.environ.get(BMC_PASSWORD_ENV)
        if settings.get("problem"):
            raise BmcUnusable(settings["problem"])
        if password is None or not settings.get("username"):
            msg = f"no BMC password was handed to this run ({BMC_PASSWORD_ENV} is not set)"
            raise BmcUnusable(msg)
        ipmi = settings.get("protocol") == "ipmi"
        bmc = connect_bmc(self.node, Bmc(
            address=str(settings["address"]),
            protocol="ipmi" if ipmi else "redfish",
            credentials=str(settings.get("credentials", "")),
            verify_tls=bool(settings.get("verify_tls", True)),
            ca=settings.get("ca"),
            system=settings.get("system"),
            timeout=float(settings.get("timeout", 30)),
            **({"cipher_suite": settings.get("cipher_suite"),
                "boot_mode": settings.get("boot_mode") or "uefi"} if ipmi else {}),
        ), Credentials(str(settings["username"]), password))
        # The client never quotes the password; masked here as well, to be sure.
        try:
            try:
                inventory = bmc.inventory()
            except BmcError as exc:
                return Reading(problem=str(exc).replace(password, MASK))
            if not (self.profile.get("bios") and inventory.capabilities.bios):
                return Reading(inventory=inventory)
            # BIOS attributes that cannot be read leave the rest of the inventory usable.
            try:
                return Reading(inventory=inventory, bios=bmc.bios_attributes())
            except BmcError as exc:
                return Reading(inventory=inventory, bios_problem=str(exc).replace(password, MASK))
        finally:
            bmc.close()


@pytest.fixture(scope="session")
def bmc_reader(expected: dict[str, Any]) -> BmcReader | None:
    settings = expected.get("bmc")
    if not settings:
        return None
    return BmcReader(str(expected.get("node", "")), settings, expected.get("hardware"))


def _bmc(reader: BmcReader | None) -> BmcReader:
    if reader is None:
        pytest.skip("no BMC in the site file")
    return reader


def _inventory(reader: BmcReader) -> Inventory:
    """The BMC's inventory; an error (not a failure) when it could not be read."""
    reading = reader.read()
    if reading.inventory is None:
        msg = f"the BMC could not be read: {reading.problem}"
        raise BmcUnusable(msg)
    return reading.inventory


def _profile(expected: dict[str, Any], key: str) -> Any:
    profile = expected.get("hardware")
    if not profile:
        roles = ", ".join(expected.get("node_roles", [])) or "none"
        pytest.skip(f"the blueprint has no hardware profile for this node's roles ({roles})")
    return profile.get(key)


def _roles(expected: dict[str, Any]) -> str:
    return ", ".join(expected["hardware"].get("roles", []))


def _not_reported(what: str) -> None:
    pytest.skip(f"the BMC does not report {what}")


@pytest.mark.check("hardware.bmc.reachable")
def test_bmc_reachable(bmc_reader: BmcReader | None) -> None:
    reader = _bmc(bmc_reader)
    reading = reader.read()
    where = f"BMC {reader.settings.get('address')}"
    expect(reading.inventory is not None, seen=reading.problem,
           expected=f"{where} answers with the site's credentials for user "
           f"{reader.settings.get('username')}")
    assert reading.inventory is not None

    # The system behind the BMC is this node's: the named system (the client refuses a
    # system id that is not there) and, when the site names one, the boot NIC among its NICs.
    # TODO: compare the Redfish UUID with the node's SMBIOS UUID once a check may read
    # /sys/class/dmi/id/product_uuid (root only) on real hosts; lab nodes have the host's.
    inventory = reading.inventory
    boot_mac = reader.settings.get("boot_mac")
    if boot_mac and inventory.macs:
        expect(boot_mac.lower() in inventory.macs,
               seen=f"system {inventory.system_id} with NICs {', '.join(inventory.macs)}",
               expected=f"the node's boot MAC {boot_mac} among them (is this node's BMC?)")


@pytest.mark.check("hardware.bmc.cpu_count")
def test_bmc_cpu_count(bmc_reader: BmcReader | None, expected: dict[str, Any]) -> None:
    reader = _bmc(bmc_reader)
    wanted = int(_profile(expected, "min_cpus"))
    inventory = _inventory(reader)
    if inventory.cpu_threads is None:
        sockets = "" if inventory.cpu_count is None else f" ({inventory.cpu_count} processors)"
        _not_reported(f"the logical CPU count{sockets}")
    expect(
        (inventory.cpu_threads or 0) >= wanted,
        seen=f"{inventory.cpu_threads} logical CPUs ({inventory.cpu_count} x "
        f"{inventory.cpu_model or 'unnamed processor'})",
        expected=f"at least {wanted} CPUs (profile of {_roles(expected)})",
    )


@pytest.mark.check("hardware.bmc.memory_size")
def test_bmc_memory_size(bmc_reader: BmcReader | None, expected: dict[str, Any]) -> None:
    reader = _bmc(bmc_reader)
    wanted = float(_profile(expected, "min_memory_gib"))
    inventory = _inventory(reader)
    if inventory.memory_gib is None:
        _not_reported("the system's memory")
    expect(
        (inventory.memory_gib or 0.0) >= wanted,
        seen=f"{inventory.memory_gib:g} GiB of memory",
        expected=f"at least {wanted:g} GiB (profile of {_roles(expected)})",
    )


@pytest.mark.check("hardware.bmc.disk_size")
def test_bmc_disk_size(bmc_reader: BmcReader | None, expected: dict[str, Any]) -> None:
    reader = _bmc(bmc_reader)
    wanted = float(_profile(expected, "min_disk_gib"))
    inventory = _inventory(reader)
    sized = [d for d in inventory.disks if d.capacity_bytes]
    if not sized:
        _not_reported("any drive with its capacity")
    largest = max(sized, key=lambda d: d.capacity_bytes or 0)
    gib = (largest.capacity_bytes or 0) / GIB
    expect(
        gib >= wanted,
        seen=f"largest drive {largest.name or largest.id} of {gib:.0f} GiB",
        expected=f"at least {wanted:g} GiB (profile of {_roles(expected)})",
    )


@pytest.mark.check("hardware.bmc.nic_count")
def test_bmc_nic_count(bmc_reader: BmcReader | None, expected: dict[str, Any]) -> None:
    reader = _bmc(bmc_reader)
    wanted = int(_profile(expected, "min_nics"))
    inventory = _inventory(reader)
    if not inventory.nics:
        _not_reported("network interfaces")
    used = [nic for nic in inventory.nics if nic.state not in UNUSED_NIC_STATES]
    shown = ", ".join(nic.mac or nic.id for nic in used) or "none"
    expect(
        len(used) >= wanted,
        seen=f"{len(used)} NICs not disabled ({shown})",
        expected=f"at least {wanted} (profile of {_roles(expected)})",
    )


@pytest.mark.check("hardware.bmc.gpu_count")
def test_bmc_gpu_count(bmc_reader: BmcReader | None, expected: dict[str, Any]) -> None:
    reader = _bmc(bmc_reader)
    wanted = int(_profile(expected, "gpus"))
    if wanted == 0:
        pytest.skip(f"the profile of {_roles(expected)} asks for no GPU")
    inventory = _inventory(reader)
    if not inventory.capabilities.pcie_devices:
        _not_reported("PCIe devices")
    gpus = inventory.gpus
    shown = ", ".join(f"{g.id} {g.model or g.name or g.device_id}" for g in gpus) or "none"
    expect(
        len(gpus) >= wanted,
        seen=f"{len(gpus)} GPUs among the PCIe devices ({shown})",
        expected=f"at least {wanted} (profile of {_roles(expected)})",
    )


@pytest.mark.check("hardware.bmc.boot_mode")
def test_bmc_boot_mode(bmc_reader: BmcReader | None, expected: dict[str, Any]) -> None:
    reader = _bmc(bmc_reader)
    wanted = _profile(expected, "boot_mode")
    if wanted == "any":
        pytest.skip(f"the profile of {_roles(expected)} accepts any boot mode")
    inventory = _inventory(reader)
    if inventory.boot_mode is None:
        _not_reported("the boot mode (Boot.BootSourceOverrideMode)")
    want = "UEFI" if wanted == "uefi" else "Legacy"
    expect(inventory.boot_mode == want, seen=f"boot mode {inventory.boot_mode}",
           expected=f"boot mode {want} (profile of {_roles(expected)})")


@pytest.mark.check("hardware.bmc.secure_boot")
def test_bmc_secure_boot(bmc_reader: BmcReader | None, expected: dict[str, Any]) -> None:
    reader = _bmc(bmc_reader)
    wanted = _profile(expected, "secure_boot")
    if wanted == "any":
        pytest.skip(f"the profile of {_roles(expected)} accepts Secure Boot on or off")
    inventory = _inventory(reader)
    if inventory.secure_boot is None:
        _not_reported("Secure Boot (no SecureBoot resource)")
    state = "on" if inventory.secure_boot else "off"
    expect(state == wanted, seen=f"Secure Boot {state} (SecureBootEnable)",
           expected=f"Secure Boot {wanted} (profile of {_roles(expected)})")


@pytest.mark.check("hardware.bmc.bios_attributes")
def test_bmc_bios_attributes(bmc_reader: BmcReader | None, expected: dict[str, Any]) -> None:
    reader = _bmc(bmc_reader)
    wanted: dict[str, Any] = _profile(expected, "bios") or {}
    if not wanted:
        pytest.skip(f"the profile of {_roles(expected)} asks for no BIOS attribute")
    inventory = _inventory(reader)
    reading = reader.read()
    if reading.bios_problem:
        msg = f"the BIOS attributes could not be read: {reading.bios_problem}"
        raise BmcUnusable(msg)
    bios = reading.bios
    if not inventory.capabilities.bios or bios is None:
        _not_reported("BIOS attributes")
    assert bios is not None
    # Vendors differ in case ("Enabled", "enabled"); a missing attribute is a finding.
    wrong = {
        name: bios.get(name, "not offered")
        for name, value in sorted(wanted.items())
        if str(bios.get(name, "")).lower() != str(value).lower()
    }
    expect(
        not wrong,
        seen=", ".join(f"{name} = {value}" for name, value in wrong.items()),
        expected=", ".join(f"{name} = {wanted[name]}" for name in wrong)
        + f" (profile of {_roles(expected)})",
    )


@pytest.mark.check("hardware.bmc.firmware_versions")
def test_bmc_firmware_versions(bmc_reader: BmcReader | None, expected: dict[str, Any]) -> None:
    reader = _bmc(bmc_reader)
    minimums = {
        "BIOS": _profile(expected, "min_bios_version"),
        "BMC firmware": _profile(expected, "min_bmc_version"),
    }
    if not any(minimums.values()):
        pytest.skip(f"the profile of {_roles(expected)} asks for no firmware version")
    inventory = _inventory(reader)
    seen_versions = {"BIOS": inventory.bios_version, "BMC firmware": inventory.bmc_firmware}
    unknown = [part for part, low in minimums.items() if low and not seen_versions[part]]
    if unknown:
        _not_reported(" or ".join(f"the {part} version" for part in unknown))
    low = [part for part, minimum in minimums.items()
           if minimum and version_key(str(seen_versions[part])) < version_key(minimum)]
    expect(
        not low,
        seen=", ".join(f"{part} {seen_versions[part]}" for part in low),
        expected=", ".join(f"{part} at least {minimums[part]}" for part in low)
        + f" (profile of {_roles(expected)})",
    )
