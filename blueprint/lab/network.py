"""The lab's network: address plan, clash check, bridge, one namespace and veth per node."""

from __future__ import annotations

import ipaddress
import json
import logging
import re
from dataclasses import dataclass
from typing import Any

from blueprint.errors import BadInput
from blueprint.proc import run

log = logging.getLogger(__name__)

# Linux interface names hold at most 15 characters; the veth name "bp<lab>_<i>" (up to 99
# nodes) must fit, which bounds the lab name.
IFNAME_MAX = 15
LAB_NAME_MAX = 10
NODES_MAX = 99
FIRST_NODE_HOST = 11
NODE_IFNAME = "eth0"

_LAB_NAME = re.compile(r"^[a-z][a-z0-9-]*[a-z0-9]$|^[a-z]$")


@dataclass(frozen=True)
class AddressPlan:
    """Where the bridge and each node sit in the lab subnet."""

    subnet: ipaddress.IPv4Network
    bridge: ipaddress.IPv4Address
    nodes: tuple[ipaddress.IPv4Address, ...]

    @property
    def bridge_cidr(self) -> str:
        return f"{self.bridge}/{self.subnet.prefixlen}"

    def node_cidr(self, index: int) -> str:
        return f"{self.nodes[index]}/{self.subnet.prefixlen}"


def check_lab_name(name: str) -> None:
    """Refuse a lab name that is not a short DNS label (it ends up in interface names)."""
    if len(name) > LAB_NAME_MAX or not _LAB_NAME.match(name):
        msg = (
            f"lab name {name!r} is not usable; use a DNS label of at most {LAB_NAME_MAX} "
            "characters (a-z, 0-9, '-'), starting with a letter"
        )
        raise BadInput(msg)


def bridge_name(lab: str) -> str:
    return f"bp{lab}"


def netns_name(lab: str, index: int) -> str:
    return f"bp-{lab}-{index}"


def veth_name(lab: str, index: int) -> str:
    return f"bp{lab}_{index}"


def node_name(lab: str, index: int) -> str:
    return f"{lab}-{index}"


def plan_addresses(subnet: str, count: int) -> AddressPlan:
    """Bridge at host .1, nodes at .11, .12, ...; refuse a subnet too small for `count`."""
    try:
        net = ipaddress.ip_network(subnet, strict=True)
    except ValueError as err:
        msg = f"subnet {subnet!r} is not a network address in CIDR form ({err}); e.g. 10.77.0.0/24"
        raise BadInput(msg) from None
    if not isinstance(net, ipaddress.IPv4Network):
        msg = f"subnet {subnet!r} is IPv6; the lab needs an IPv4 subnet such as 10.77.0.0/24"
        raise BadInput(msg)
    if not 1 <= count <= NODES_MAX:
        msg = f"node count {count} is out of range; use 1 to {NODES_MAX}"
        raise BadInput(msg)
    last = FIRST_NODE_HOST + count - 1
    if last >= net.num_addresses - 1:
        msg = f"subnet {subnet} is too small for {count} nodes at .{FIRST_NODE_HOST} onwards"
        raise BadInput(msg)
    base = net.network_address
    nodes = tuple(base + FIRST_NODE_HOST + i for i in range(count))
    return AddressPlan(subnet=net, bridge=base + 1, nodes=nodes)


def find_clash(
    subnet: ipaddress.IPv4Network,
    routes: list[dict[str, Any]],
    addresses: list[dict[str, Any]],
    own_bridge: str,
) -> str | None:
    """Describe the first host route or address overlapping `subnet`, or None.

    `routes` and `addresses` are the JSON of `ip -j -4 route show table all` and
    `ip -j -4 addr show`. The default route and the lab's own bridge never clash.
    """
    for route in routes:
        dst = route.get("dst", "")
        if dst == "default" or route.get("dev") == own_bridge or route.get("type") == "broadcast":
            continue
        try:
            net = ipaddress.ip_network(dst, strict=False)
        except ValueError:
            continue
        if net.version == 4 and net.prefixlen > 0 and net.overlaps(subnet):
            return f"route {dst} on {route.get('dev', '?')}"
    for link in addresses:
        if link.get("ifname") == own_bridge:
            continue
        for info in link.get("addr_info", []):
            if info.get("family") != "inet":
                continue
            iface = ipaddress.ip_interface(f"{info['local']}/{info['prefixlen']}")
            if iface.network.overlaps(subnet):
                return f"address {iface} on {link.get('ifname', '?')}"
    return None


def check_subnet_free(subnet: ipaddress.IPv4Network, own_bridge: str) -> None:
    """Refuse with BadInput when the host already uses any part of `subnet`."""
    routes = json.loads(run(["ip", "-j", "-4", "route", "show", "table", "all"]).stdout or "[]")
    addresses = json.loads(run(["ip", "-j", "-4", "addr", "show"]).stdout or "[]")
    clash = find_clash(subnet, routes, addresses, own_bridge)
    if clash is not None:
        msg = (
            f"subnet {subnet} is already in use on this host ({clash}); "
            "choose another with --subnet"
        )
        raise BadInput(msg)


def link_exists(name: str, netns: str | None = None) -> bool:
    cmd = ["ip", *(["-n", netns] if netns else []), "link", "show", "dev", name]
    return run(cmd, check=False).returncode == 0


def netns_exists(name: str) -> bool:
    return name in list_netns()


def list_netns() -> list[str]:
    out = run(["ip", "-j", "netns", "list"], check=False).stdout.strip()
    return [entry["name"] for entry in json.loads(out or "[]")]


def create_bridge(name: str, cidr: str) -> None:
    """Create the bridge with the host's lab address; nothing routes from it to elsewhere."""
    if not link_exists(name):
        run(["ip", "link", "add", name, "type", "bridge"])
    current = run(["ip", "-j", "-4", "addr", "show", "dev", name]).stdout
    if cidr.split("/")[0] not in current:
        run(["ip", "addr", "add", cidr, "dev", name])
    run(["ip", "link", "set", name, "up"])


def create_netns(name: str) -> None:
    if not netns_exists(name):
        run(["ip", "netns", "add", name])
    run(["ip", "-n", name, "link", "set", "lo", "up"])


def create_node_link(netns: str, veth: str, bridge: str, cidr: str) -> None:
    """Plug a namespace into the bridge: `eth0` inside holds the node address, no gateway.

    The address is set from the host before boot; the image has no network manager
    (no ifupdown, systemd-networkd left disabled), so nothing in the node removes it.
    """
    if not link_exists(veth):
        run(
            ["ip", "link", "add", veth, "type", "veth", "peer", "name", NODE_IFNAME, "netns", netns]
        )
    run(["ip", "link", "set", veth, "master", bridge, "up"])
    current = run(["ip", "-n", netns, "-j", "-4", "addr", "show", "dev", NODE_IFNAME]).stdout
    if cidr.split("/")[0] not in current:
        run(["ip", "-n", netns, "addr", "add", cidr, "dev", NODE_IFNAME])
    run(["ip", "-n", netns, "link", "set", NODE_IFNAME, "up"])


def delete_link(name: str) -> None:
    if link_exists(name):
        run(["ip", "link", "del", name], check=False)


def delete_netns(name: str) -> None:
    if netns_exists(name):
        run(["ip", "netns", "del", name], check=False)
