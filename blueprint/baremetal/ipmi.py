"""A node's BMC over IPMI (ipmitool, RMCP+): power, one-time boot device and identity.

The fallback for BMCs without Redfish. IPMI gives power control, a boot device for the next
boot (network or disk, UEFI or legacy) and what the BMC knows of itself: firmware, the FRU's
manufacturer, product and serial, the system GUID and its own LAN MAC. Virtual media, BIOS
settings and PCIe inventory are Redfish-only and are refused with the node's name.

ipmitool gets the password through its environment (-E reads IPMI_PASSWORD), never on its
command line, where any user of the machine could read it.
"""

from __future__ import annotations

import logging
import re
import shlex
import subprocess
from typing import Any

from blueprint.baremetal.bmc import (
    BmcError,
    BmcUnsupported,
    Capabilities,
    Credentials,
    Inventory,
    wait_for_power,
)
from blueprint.secrets import REDACTOR, child_environment

log = logging.getLogger(__name__)

DEFAULT_PORT = 623
# Suites with authentication, integrity and encryption, the stronger first: 17 is
# HMAC-SHA256 with AES-128, 3 is HMAC-SHA1 with AES-128 (all that older BMCs offer).
CIPHER_SUITES = (17, 3)
# The product's power actions (as for Redfish) as ipmitool's `chassis power` verbs.
POWER_COMMANDS = {
    "on": "on",
    "graceful-off": "soft",
    "force-off": "off",
    "reset": "reset",
    "cycle": "cycle",
}
# Redfish's names of the same resets, so capabilities read alike for both protocols.
RESET_TYPES = ("ForceOff", "ForceRestart", "GracefulShutdown", "On", "PowerCycle")
# Boot targets IPMI can give, by their Redfish names: ipmitool device, bootparam's wording.
BOOT_DEVICES = {"Pxe": ("pxe", "Force PXE"), "Hdd": ("disk", "Force Boot from default Hard-Drive")}
REDFISH_ONLY = "virtual media, BIOS settings and PCIe inventory need a Redfish BMC"

# What ipmitool says (with -v) when a session cannot be opened, and what it means.
REFUSED_CREDENTIALS = ("RAKP 2 HMAC is invalid", "unauthorized name", "invalid name length")
REFUSED_PRIVILEGE = ("unauthorized role", "Set Session Privilege Level to ADMINISTRATOR failed")
SUITE_NOT_OFFERED = re.compile(r"open session response message : .*(algorithm|cipher suite)",
                               re.IGNORECASE)
NO_SESSION = "Unable to establish IPMI v2 / RMCP+ session"


def split_address(address: str) -> tuple[str, int]:
    """host, [v6]:port or host:port -> (host, port); the IPMI port is 623 unless given."""
    bracketed = re.fullmatch(r"\[([^\]]+)\](?::(\d+))?", address)
    if bracketed:
        return bracketed.group(1), int(bracketed.group(2) or DEFAULT_PORT)
    if address.count(":") == 1:
        host, port = address.split(":")
        return host, int(port)
    return address, DEFAULT_PORT


class IpmiBmc:
    """One node's BMC, spoken to over IPMI 2.0 (RMCP+) with ipmitool.

    `cipher_suite` None tries 17, then 3 when the BMC answers that it does not offer 17;
    the suite that worked is kept for the rest of this client's life.
    """

    def __init__(
        self,
        node: str,
        address: str,
        credentials: Credentials,
        *,
        timeout: float = 30.0,
        cipher_suite: int | None = None,
        uefi: bool = True,
        ipmitool: str = "ipmitool",
    ) -> None:
        self.node = node
        self.address = address
        self._host, self._port = split_address(address)
        self._credentials = credentials
        self._timeout = timeout
        self._suites = (cipher_suite,) if cipher_suite is not None else CIPHER_SUITES
        self._uefi = uefi
        self._ipmitool = ipmitool
        self._session_checked = False
        REDACTOR.add([credentials.password])

    # The one place ipmitool's failures become one-line errors that say what to do.
    def _run(self, what: str, args: list[str], *, partial_ok: bool = False) -> str:
        """ipmitool `args` over the first cipher suite the BMC takes; its standard output.

        With `partial_ok`, a command the BMC answers in part or with an error gives what it
        did answer ("" for a part it does not have, such as a FRU); a session that cannot be
        opened still raises.
        """
        where = f"node {self.node}: BMC {self.address} (IPMI)"
        not_offered = []
        for suite in self._suites:
            done = self._ipmitool_run(suite, args, where, what)
            err = REDACTOR.redact(done.stderr)
            if SUITE_NOT_OFFERED.search(err):
                not_offered.append(str(suite))
                continue
            if any(marker in err for marker in REFUSED_CREDENTIALS):
                msg = (f"{where}: {what}: the BMC refused the credentials; check the node's "
                       "bmc.credentials entry in secrets.yaml or the environment")
                raise BmcError(msg)
            # TODO: verify on a real BMC with an operator-only user; OpenIPMI's simulator
            # grants ADMINISTRATOR to every user, so this answer was never seen here.
            if any(marker in err for marker in REFUSED_PRIVILEGE):
                msg = (f"{where}: {what}: the BMC took the credentials but not at the "
                       "administrator privilege level; give the user that privilege on the BMC")
                raise BmcError(msg)
            if NO_SESSION in err:
                msg = (f"{where}: {what}: no IPMI session within {self._timeout:g} s (no "
                       f"answer on UDP port {self._port}, or IPMI over LAN is off)")
                raise BmcError(msg)
            failed = [line for line in err.splitlines() if "failed" in line.lower()
                      or line.startswith("Error")]
            if done.returncode != 0 or failed:
                if partial_ok:
                    return REDACTOR.redact(done.stdout) if done.returncode == 0 else ""
                lines = failed or err.strip().splitlines() or [f"exit {done.returncode}"]
                msg = f"{where}: {what}: the BMC answered: {lines[-1].strip()}"
                raise BmcError(msg)
            self._suites = (suite,)
            return REDACTOR.redact(done.stdout)
        msg = (f"{where}: {what}: the BMC offers none of cipher suites "
               f"{', '.join(not_offered)}; set the node's bmc.cipher_suite to one it offers")
        raise BmcUnsupported(msg)

    def _command(self, suite: int, args: list[str]) -> tuple[list[str], dict[str, str]]:
        """ipmitool's command line and environment for `args` over cipher suite `suite`."""
        # -N is ipmitool's wait per try and -R its retries; a session is several exchanges,
        # so the whole command gets a wider bound of its own.
        per_try = max(1, round(self._timeout / 2))
        cmd = [self._ipmitool, "-I", "lanplus", "-H", self._host, "-p", str(self._port),
               "-U", self._credentials.username, "-E", "-C", str(suite),
               "-N", str(per_try), "-R", "1", *args]
        # The password in the environment ipmitool reads it from; other BMCs' passwords
        # that the product's own environment may hold are not handed on.
        env = child_environment(IPMI_PASSWORD=self._credentials.password)
        return cmd, env

    def _ipmitool_run(self, suite: int, args: list[str], where: str,
                      what: str) -> subprocess.CompletedProcess[str]:
        cmd, env = self._command(suite, ["-v", *args])
        log.debug("run: %s", shlex.join(cmd))
        try:
            return subprocess.run(cmd, capture_output=True, text=True, env=env, check=False,
                                  timeout=4 * self._timeout + 10)
        except subprocess.TimeoutExpired:
            msg = f"{where}: {what}: no answer within {4 * self._timeout + 10:g} s"
            raise BmcError(msg) from None
        except OSError as exc:
            msg = f"{where}: {what}: cannot run {self._ipmitool}: {exc.strerror}"
            raise BmcError(msg) from None

    def _refuse(self, what: str, instead: str = "") -> BmcUnsupported:
        msg = (f"node {self.node}: BMC {self.address} speaks IPMI, which cannot {what}; "
               f"{REDFISH_ONLY} (bmc.protocol: redfish){instead}")
        return BmcUnsupported(msg)

    # Identity

    def capabilities(self) -> Capabilities:
        """What IPMI offers, once the BMC has opened a session with the credentials: so
        provision's preflight finds an unreachable BMC or a wrong password before any
        node is touched, as it does over Redfish."""
        if not self._session_checked:
            self._run("open a session", ["mc", "info"])
            self._session_checked = True
        return Capabilities(reset_types=RESET_TYPES, boot_targets=tuple(sorted(BOOT_DEVICES)),
                            virtual_media=False, bios=False, secure_boot=False,
                            pcie_devices=False)

    def inventory(self) -> Inventory:
        """What IPMI tells of the machine: BMC firmware, FRU identity, GUID, BMC LAN MAC.

        CPUs, memory, disks, host NICs and PCIe devices are not in IPMI's standard commands:
        they stay absent (discover reports them as unknown), never guessed.
        """
        mc = _fields(self._run("read the BMC's device id", ["mc", "info"]))
        self._session_checked = True
        fru = _fields(self._run("read FRU 0", ["fru", "print", "0"], partial_ok=True))
        guid = _fields(self._run("read the system GUID", ["mc", "guid"], partial_ok=True))
        lan = _fields(self._run("read the LAN settings", ["lan", "print"], partial_ok=True))
        mac = lan.get("MAC Address")
        return Inventory(
            system_id=guid.get("System GUID") or self.address,
            manufacturer=_first(fru, "Product Manufacturer", "Board Mfg")
            or mc.get("Manufacturer Name"),
            model=_first(fru, "Product Name", "Board Product"),
            serial=_first(fru, "Product Serial", "Board Serial", "Chassis Serial"),
            uuid=guid.get("System GUID"),
            power_state=self.power_state(),
            bios_version=None,
            bmc_firmware=mc.get("Firmware Revision"),
            boot_mode=None,
            secure_boot=None,
            cpu_count=None,
            cpu_model=None,
            memory_gib=None,
            disks=(),
            nics=(),
            pcie_devices=(),
            capabilities=self.capabilities(),
            bmc_mac=mac.lower() if mac and mac != "00:00:00:00:00:00" else None,
        )

    # Power

    def power_state(self) -> str:
        out = self._run("read the power state", ["chassis", "power", "status"])
        found = re.search(r"Chassis Power is (on|off)", out)
        if found is None:
            msg = (f"node {self.node}: BMC {self.address} (IPMI): read the power state: "
                   f"unexpected answer '{out.strip()}'")
            raise BmcError(msg)
        return found.group(1).capitalize()

    def power(self, action: str) -> None:
        """One of POWER_COMMANDS: on, graceful-off, force-off, reset, cycle."""
        if action not in POWER_COMMANDS:
            msg = (f"node {self.node}: BMC {self.address} (IPMI) has no power action "
                   f"'{action}'; it offers {', '.join(POWER_COMMANDS)}")
            raise BmcUnsupported(msg)
        self._run(f"power {action}", ["chassis", "power", POWER_COMMANDS[action]])
        log.info("node %s: power %s requested", self.node, action)

    def wait_power(self, state: str, timeout: float, poll: float = 1.0) -> None:
        """Wait until the BMC reports power `state` ("On" or "Off")."""
        wait_for_power(self, state, timeout, poll)

    # Boot

    def boot_once(self, target: str, http_uri: str | None = None) -> None:
        """Boot device for the next boot only (Pxe or Hdd), read back from the BMC."""
        if target not in BOOT_DEVICES:
            msg = (f"node {self.node}: BMC {self.address} (IPMI) does not offer boot target "
                   f"{target}; it offers {', '.join(sorted(BOOT_DEVICES))}")
            raise BmcUnsupported(msg)
        device, wording = BOOT_DEVICES[target]
        args = ["chassis", "bootdev", device]
        if self._uefi:
            args.append("options=efiboot")
        # ipmitool also sets the optional boot-info parameter, which some BMCs refuse:
        # whether the boot device took is judged by reading it back.
        self._run(f"set a one-time boot to {target}", args, partial_ok=True)
        seen = self.boot_device()
        if seen != wording:
            msg = (f"node {self.node}: BMC {self.address} (IPMI): set a one-time boot to "
                   f"{target}: the BMC's boot device reads '{seen}' afterwards")
            raise BmcError(msg)
        log.info("node %s: next boot from %s", self.node, target)

    def boot_device(self) -> str | None:
        """The boot device selector the BMC holds now, in ipmitool's words."""
        out = self._run("read the boot flags", ["chassis", "bootparam", "get", "5"])
        found = re.search(r"Boot Device Selector : (.+)", out)
        return found.group(1).strip() if found else None

    # What only Redfish offers

    # Serial over LAN

    def sol_available(self) -> tuple[bool, str]:
        """(True, "") when the BMC has Serial-over-LAN switched on, else (False, why).

        Reading the SOL settings also settles the cipher suite that `sol_command` uses.
        """
        try:
            info = _fields(self._run("read the SOL settings", ["sol", "info"]))
        except BmcError as exc:
            return False, str(exc)
        if info.get("Enabled", "").lower() != "true":
            return False, f"Serial-over-LAN is switched off on BMC {self.address}"
        return True, ""

    def sol_command(self) -> tuple[list[str], dict[str, str]]:
        """`ipmitool sol activate` for this BMC (command line, environment); it runs until
        stopped. The password is in the environment only."""
        return self._command(self._suites[0], ["sol", "activate"])

    def sol_deactivate(self) -> None:
        """End the BMC's SOL session, so that the next activation finds the payload free."""
        self._run("end the SOL session", ["sol", "deactivate"], partial_ok=True)

    def bios_attributes(self) -> dict[str, Any]:
        raise self._refuse("read BIOS settings")

    def pending_bios_attributes(self) -> dict[str, Any]:
        raise self._refuse("read BIOS settings")

    def set_bios_attributes(self, attributes: dict[str, Any]) -> None:
        raise self._refuse("set BIOS settings")

    def insert_media(self, image_url: str) -> None:
        raise self._refuse("insert virtual media", "; boot it from the network (Pxe) instead")

    def media(self) -> tuple[str | None, bool]:
        raise self._refuse("read virtual media")

    def eject_media(self) -> None:
        raise self._refuse("eject virtual media")

    def boot_from_media_once(self, image_url: str) -> None:
        self.insert_media(image_url)

    def close(self) -> None:
        """Nothing to close: every ipmitool call opens and closes its own session."""


def _fields(text: str) -> dict[str, str]:
    """ipmitool's `Name : value` lines as a mapping (the first of a repeated name)."""
    found: dict[str, str] = {}
    for line in text.splitlines():
        name, sep, value = line.partition(":")
        if sep and name.strip() and value.strip():
            found.setdefault(name.strip(), value.strip())
    return found


def _first(fields: dict[str, str], *names: str) -> str | None:
    return next((fields[name] for name in names if fields.get(name)), None)
