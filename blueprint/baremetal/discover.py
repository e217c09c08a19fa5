"""`discover`: read each node's hardware from its BMC and list how it differs from the site.

The site file says the boot MAC; the blueprint's hardware profile for the node's roles says
CPUs, memory, disk, GPUs, boot mode, Secure Boot, BIOS attributes and firmware minimums.
A value the BMC does not report is shown as unknown, never as passed.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from blueprint.baremetal.access import open_bmc
from blueprint.baremetal.bmc import BmcError, BmcUnsupported, Inventory
from blueprint.errors import BadInput, BlueprintError
from blueprint.loader import LoadedSite
from blueprint.models import Node
from blueprint.models.blueprint import Blueprint, HardwareProfile
from blueprint.state import StateDir

log = logging.getLogger(__name__)

Status = Literal["ok", "deviation", "unknown", "error"]
GIB = 1024**3


@dataclass(frozen=True)
class Finding:
    node: str
    check: str
    expected: str
    found: str
    status: Status


@dataclass
class Discovery:
    """What discover found: one finding per node and check, and the inventories read."""

    findings: list[Finding]
    inventories: dict[str, Inventory]

    @property
    def deviations(self) -> list[Finding]:
        return [f for f in self.findings if f.status == "deviation"]

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.status == "error"]


def node_profile(blueprint: Blueprint, roles: list[str]) -> HardwareProfile:
    """One profile for a node with several roles: the strictest of each of their values."""
    hardware: dict[str, HardwareProfile] = {str(k): v for k, v in blueprint.hardware.items()}
    profiles = [hardware[role] for role in roles if role in hardware]
    merged = HardwareProfile()
    if not profiles:
        return merged
    bios: dict[str, str | int | bool] = {}
    for profile in profiles:
        bios.update(profile.bios)
    return HardwareProfile(
        min_cpus=max(p.min_cpus for p in profiles),
        min_memory_gib=max(p.min_memory_gib for p in profiles),
        min_disk_gib=max(p.min_disk_gib for p in profiles),
        gpus=max(p.gpus for p in profiles),
        boot_mode=next((p.boot_mode for p in profiles if p.boot_mode != "any"), "any"),
        secure_boot=next((p.secure_boot for p in profiles if p.secure_boot != "any"), "any"),
        bios=bios,
        min_bios_version=_highest(p.min_bios_version for p in profiles),
        min_bmc_version=_highest(p.min_bmc_version for p in profiles),
    )


def version_key(version: str) -> tuple[int, ...]:
    """Firmware versions compare by their numbers in order: '2.10.1' > '2.9', 'U46 1.8' < '1.9'.

    Vendors write versions in many shapes (dates, letters, dots); only the digits compare.
    """
    return tuple(int(part) for part in re.findall(r"\d+", version))


def _highest(versions: Any) -> str | None:
    given = [v for v in versions if v]
    return max(given, key=version_key) if given else None


def check_node(node: Node, profile: HardwareProfile, inventory: Inventory,
               bios: dict[str, Any] | None, previous: dict[str, Any] | None,
               provisioned: dict[str, Any] | None = None) -> list[Finding]:
    """Every check of one node, as findings (ok, deviation or unknown).

    `previous` is the inventory the last discover kept, `provisioned` the board provision
    installed (serial, UUID, MACs): a board swapped since either shows as a deviation.
    """
    found: list[Finding] = []

    def add(check: str, expected: str, seen: Any, ok: bool | None) -> None:
        status: Status = "unknown" if ok is None else ("ok" if ok else "deviation")
        shown = "not reported by the BMC" if seen is None else str(seen)
        found.append(Finding(node.name, check, expected, shown, status))

    # Identity: the boot NIC and, against the last discover, the board.
    macs = ", ".join(inventory.macs) or None
    if node.boot_mac is None:
        found.append(Finding(node.name, "boot_mac", "set in the site file", macs or "no NIC",
                             "deviation"))
    else:
        add("boot_mac", node.boot_mac, macs,
            None if not inventory.macs else node.boot_mac in inventory.macs)
    if previous is not None and previous.get("serial") != inventory.serial:
        found.append(Finding(node.name, "serial", f"{previous.get('serial')} (last discover)",
                             str(inventory.serial), "deviation"))
    if provisioned is not None:
        found.extend(_board_swap(node, inventory, provisioned))

    # Sizes.
    add("cpus", f">= {profile.min_cpus}", inventory.cpu_count,
        None if inventory.cpu_count is None else inventory.cpu_count >= profile.min_cpus)
    add("memory_gib", f">= {profile.min_memory_gib:g}", inventory.memory_gib,
        None if inventory.memory_gib is None else inventory.memory_gib >= profile.min_memory_gib)
    sizes = [d.capacity_bytes / GIB for d in inventory.disks if d.capacity_bytes]
    largest = max(sizes) if sizes else None
    add("disk_gib", f">= {profile.min_disk_gib:g}",
        None if largest is None else f"{largest:.0f}",
        None if largest is None else largest >= profile.min_disk_gib)
    if profile.gpus:
        listed = inventory.capabilities.pcie_devices
        add("gpus", f">= {profile.gpus}", len(inventory.gpus) if listed else None,
            None if not listed else len(inventory.gpus) >= profile.gpus)

    # Firmware settings and versions.
    if profile.boot_mode != "any":
        want = "UEFI" if profile.boot_mode == "uefi" else "Legacy"
        add("boot_mode", want, inventory.boot_mode,
            None if inventory.boot_mode is None else inventory.boot_mode == want)
    if profile.secure_boot != "any":
        want_on = profile.secure_boot == "on"
        seen = None if inventory.secure_boot is None else ("on" if inventory.secure_boot else "off")
        add("secure_boot", profile.secure_boot, seen,
            None if inventory.secure_boot is None else inventory.secure_boot == want_on)
    for name, want_value in sorted(profile.bios.items()):
        value = None if bios is None else bios.get(name)
        add(f"bios.{name}", str(want_value), value,
            None if value is None else str(value).lower() == str(want_value).lower())
    for check, minimum, seen_version in (
        ("bios_version", profile.min_bios_version, inventory.bios_version),
        ("bmc_version", profile.min_bmc_version, inventory.bmc_firmware),
    ):
        if minimum is not None:
            add(check, f">= {minimum}", seen_version,
                None if not seen_version else version_key(seen_version) >= version_key(minimum))
    return found


def _inventory_file(state: StateDir, node: str) -> Path:
    return state.root / "bmc" / f"{node}.json"


def _provisioned_file(state: StateDir, node: str) -> Path:
    return state.root / "bmc" / f"{node}.provisioned.json"


def record_provisioned(state: StateDir, node: Node, inventory: Inventory, run_id: str) -> None:
    """Keep the identity of the board a node was installed on, for discover to compare."""
    path = _provisioned_file(state, node.name)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    identity = {"run_id": run_id, "serial": inventory.serial, "uuid": inventory.uuid,
                "boot_mac": node.boot_mac, "macs": list(inventory.macs)}
    path.write_text(json.dumps(identity, indent=2) + "\n", encoding="utf-8")


def _board_swap(node: Node, inventory: Inventory, provisioned: dict[str, Any]) -> list[Finding]:
    """A deviation when the board differs from the one provision installed, else ok."""
    run = provisioned.get("run_id", "an earlier run")
    pairs = [("serial", provisioned.get("serial"), inventory.serial),
             ("uuid", provisioned.get("uuid"), inventory.uuid)]
    if provisioned.get("boot_mac") and inventory.macs:
        seen_mac = provisioned["boot_mac"] if provisioned["boot_mac"] in inventory.macs else (
            ", ".join(inventory.macs))
        pairs.append(("boot NIC", provisioned["boot_mac"], seen_mac))
    compared = [(name, was, now) for name, was, now in pairs if was and now]
    if not compared:
        return []
    expected = ", ".join(f"{name} {was}" for name, was, _ in compared) + f" (provisioned, {run})"
    changed = [name for name, was, now in compared if was != now]
    seen = ", ".join(f"{name} {now}" for name, _, now in compared)
    if changed:
        seen += (f"; {' and '.join(changed)} changed since provisioning: re-install with "
                 f"provision --nodes {node.name} --force")
    return [Finding(node.name, "board", expected, seen, "deviation" if changed else "ok")]


def _read_node(node: Node, loaded: LoadedSite, secrets: dict[str, Any],
               state: StateDir) -> tuple[Inventory | None, list[Finding]]:
    bmc = open_bmc(node, secrets)
    try:
        inventory = bmc.inventory()
        profile = node_profile(loaded.blueprint, list(node.roles))
        bios: dict[str, Any] | None = None
        if profile.bios and inventory.capabilities.bios:
            try:
                bios = bmc.bios_attributes()
            except BmcUnsupported:
                bios = None
    except BmcError as exc:
        return None, [Finding(node.name, "bmc", "reachable, credentials accepted", str(exc),
                              "error")]
    finally:
        bmc.close()
    path = _inventory_file(state, node.name)
    previous = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None
    installed = _provisioned_file(state, node.name)
    provisioned = (json.loads(installed.read_text(encoding="utf-8")) if installed.is_file()
                   else None)
    findings = check_node(node, profile, inventory, bios, previous, provisioned)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    path.write_text(json.dumps(dataclasses.asdict(inventory), indent=2) + "\n",
                    encoding="utf-8")
    return inventory, findings


def discover(loaded: LoadedSite, secrets: dict[str, Any], state: StateDir,
             nodes: list[str] | None = None, parallel: int = 8) -> Discovery:
    """Read every named node's BMC (all nodes with a bmc section by default) and check it."""
    site_nodes = [n for n in loaded.site.nodes if n.bmc is not None]
    if nodes:
        known = {n.name for n in site_nodes}
        unknown = [name for name in nodes if name not in known]
        if unknown:
            msg = (
                f"node(s) {', '.join(unknown)} have no bmc section in {loaded.site_file}; "
                f"nodes with one: {', '.join(sorted(known)) or 'none'}"
            )
            raise BadInput(msg)
        site_nodes = [n for n in site_nodes if n.name in nodes]
    if not site_nodes:
        msg = f"{loaded.site_file}: no node has a bmc section; nothing to discover"
        raise BadInput(msg)

    # Credentials are resolved for every node before any BMC is contacted.
    for node in site_nodes:
        open_bmc(node, secrets)

    log.info("Reading %d BMC(s)", len(site_nodes))
    findings: list[Finding] = []
    inventories: dict[str, Inventory] = {}
    with ThreadPoolExecutor(max_workers=max(1, parallel)) as pool:
        futures = {node.name: pool.submit(_read_node, node, loaded, secrets, state)
                   for node in site_nodes}
        for name, future in futures.items():
            try:
                inventory, node_findings = future.result()
            except BlueprintError as exc:
                node_findings, inventory = [Finding(name, "bmc", "usable", str(exc), "error")], None
            findings.extend(node_findings)
            if inventory is not None:
                inventories[name] = inventory
    return Discovery(findings, inventories)
