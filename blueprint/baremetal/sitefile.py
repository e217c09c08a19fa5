"""`discover --write`: put the boot MACs the BMCs report into the site file.

Only `boot_mac` is ever written, and only where the choice is clear: the node has one NIC,
or the operator named the NIC (`--boot-nic NODE=NIC`). A MAC the operator set that the BMC
does not report is a conflict: shown, and replaced only with `force`.

The file is edited in place, line by line: ruamel.yaml (round-trip) finds where each node's
`boot_mac` (or its `address`) sits, and only that line changes or one line is added, so
comments, quoting, key order and indentation stay the operator's. The edited text is loaded
and checked like any site file before it replaces the old one.
"""

from __future__ import annotations

import logging
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq

from blueprint.baremetal.bmc import Inventory
from blueprint.baremetal.discover import Discovery, Finding
from blueprint.errors import BadInput
from blueprint.loader import LoadedSite, load_site
from blueprint.models import Node

log = logging.getLogger(__name__)

Action = Literal["written", "replaced", "unchanged", "conflict", "ambiguous", "unknown"]
# A YAML scalar as the value of `boot_mac:`: quoted, or plain up to a comment or line end.
VALUE = re.compile(r"\"[^\"]*\"|'[^']*'|[^\s#]+")


@dataclass(frozen=True)
class MacChange:
    """What --write did, or would not do, about one node's boot MAC."""

    node: str
    action: Action
    site_value: str | None
    bmc_value: str | None
    detail: str


def choose_boot_mac(node: Node, inventory: Inventory, boot_nic: str | None,
                    force: bool) -> MacChange:
    """The change to the node's boot MAC that the BMC's NICs support, or why there is none."""
    macs = [nic.mac for nic in inventory.nics if nic.mac]
    site_mac = node.boot_mac

    def change(action: Action, mac: str | None, detail: str) -> MacChange:
        return MacChange(node.name, action, site_mac, mac, detail)

    if site_mac is not None and site_mac in macs:
        return change("unchanged", site_mac, "the site's boot MAC is one of the BMC's NICs")
    if not macs:
        return change("unknown", None, "the BMC reports no NIC MACs (IPMI reports none); "
                                       "set boot_mac by hand")

    # Which NIC: the one the operator named, else the only one.
    listed = ", ".join(nic.mac if nic.id == nic.mac else f"{nic.id} ({nic.mac})"
                       for nic in inventory.nics if nic.mac)
    not_reported = "" if site_mac is None else f"; the site's {site_mac} is not one of them"
    if boot_nic is not None:
        named = [nic.mac for nic in inventory.nics
                 if boot_nic in (nic.id, nic.mac) or boot_nic.lower() == nic.mac]
        if not named:
            return change("ambiguous", None, f"--boot-nic {node.name}={boot_nic} is not a NIC "
                                             f"of this BMC; it has {listed}")
        mac = named[0]
    elif len(macs) == 1:
        mac = macs[0]
    else:
        return change("ambiguous", None, f"{len(macs)} NICs: {listed}{not_reported}; name the "
                                         f"boot NIC with --boot-nic {node.name}=ID")

    if site_mac is None:
        return change("written", mac, "filled from the BMC")
    if not force:
        return change("conflict", mac, f"the site says {site_mac}, which the BMC does not "
                                       "report (board or NIC swapped?); --force replaces it")
    return change("replaced", mac, f"was {site_mac} (replaced with --force)")


def write_boot_macs(loaded: LoadedSite, macs: dict[str, str]) -> None:
    """Set `boot_mac` of each named node in the site file; everything else stays as it is.

    The new text must load as a valid site (a MAC another node uses is refused there)
    before it replaces the file; it is written to a temporary file and renamed over it.
    """
    if not macs:
        return
    path = loaded.site_file
    text = path.read_text(encoding="utf-8")
    lines = text.splitlines(keepends=True)
    data = YAML(typ="rt").load(text)
    nodes = data.get("nodes") if isinstance(data, CommentedMap) else None
    if not isinstance(nodes, CommentedSeq):
        msg = f"{path}: no block list of nodes to write boot MACs into"
        raise BadInput(msg)

    # Edits from the bottom up, so line numbers above an edit stay right.
    edits: list[tuple[int, str, int, int]] = []  # line, new text, start col, end col
    by_name = {str(item.get("name")): item for item in nodes if isinstance(item, CommentedMap)}
    for name, mac in macs.items():
        item = by_name.get(name)
        if item is None or item.fa.flow_style():
            msg = (f"{path}: node {name} is not a block mapping in the nodes list; "
                   f"set its boot_mac: \"{mac}\" by hand")
            raise BadInput(msg)
        quoted = f'"{mac}"'
        if "boot_mac" in item:
            line, col = item.lc.value("boot_mac")
            found = VALUE.match(lines[line], col)
            if found is None:
                msg = f"{path}:{line + 1}: node {name}: cannot read the boot_mac value"
                raise BadInput(msg)
            edits.append((line, quoted, found.start(), found.end()))
        else:
            anchor = "address" if "address" in item else "name"
            line, col = item.lc.key(anchor)
            newline = "\r\n" if lines[line].endswith("\r\n") else "\n"
            edits.append((line + 1, f"{' ' * col}boot_mac: {quoted}{newline}", -1, -1))
    for line, new, start, end in sorted(edits, reverse=True):
        if start < 0:
            lines.insert(line, new)
        else:
            lines[line] = lines[line][:start] + new + lines[line][end:]
    new_text = "".join(lines)

    # The edited file must load as a site before it replaces the old one.
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as out:
            out.write(new_text)
        os.chmod(tmp, path.stat().st_mode & 0o7777)
        try:
            checked = load_site(tmp)
        except BadInput as exc:
            msg = (f"the boot MACs were not written; with them the site would not load: "
                   f"{str(exc).replace(str(tmp), str(path))}")
            raise BadInput(msg) from None
        for name, mac in macs.items():
            node = next(n for n in checked.site.nodes if n.name == name)
            assert node.boot_mac == mac, (name, node.boot_mac, mac)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    log.info("%s: boot MAC written for %s", path, ", ".join(sorted(macs)))


def parse_boot_nics(values: tuple[str, ...] | list[str]) -> dict[str, str]:
    """--boot-nic NODE=NIC (a Redfish NIC id or a MAC), repeatable."""
    chosen: dict[str, str] = {}
    for value in values:
        node, sep, nic = value.partition("=")
        if not sep or not node or not nic:
            msg = f"--boot-nic {value}: write NODE=NIC, NIC being a NIC id or MAC on its BMC"
            raise BadInput(msg)
        chosen[node] = nic
    return chosen


def fill_boot_macs(loaded: LoadedSite, discovery: Discovery, boot_nics: dict[str, str],
                   force: bool) -> list[MacChange]:
    """Write the boot MACs discover can vouch for; the findings say what the file now holds.

    A node whose BMC could not be read is left alone. A boot_mac deviation that was written
    becomes `ok`; a conflict or an ambiguous NIC stays a deviation.
    """
    unknown = sorted(set(boot_nics) - set(discovery.inventories))
    if unknown:
        msg = (f"--boot-nic names node(s) {', '.join(unknown)}, which this discover did not "
               f"read; read: {', '.join(sorted(discovery.inventories)) or 'none'}")
        raise BadInput(msg)
    changes = [choose_boot_mac(node, discovery.inventories[node.name],
                               boot_nics.get(node.name), force)
               for node in loaded.site.nodes if node.name in discovery.inventories]
    to_write = {c.node: c.bmc_value for c in changes
                if c.action in ("written", "replaced") and c.bmc_value}
    write_boot_macs(loaded, to_write)
    for index, finding in enumerate(discovery.findings):
        if finding.check == "boot_mac" and finding.node in to_write:
            discovery.findings[index] = Finding(
                finding.node, "boot_mac", f"{to_write[finding.node]} (written to the site file)",
                finding.found, "ok")
    return changes
