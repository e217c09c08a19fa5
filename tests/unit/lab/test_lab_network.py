"""Address plan, names and subnet clash detection of the lab network (no root needed)."""

from __future__ import annotations

import ipaddress
from typing import Any

import pytest

from blueprint.errors import BadInput
from blueprint.lab import network

ROUTES: list[dict[str, Any]] = [
    {"dst": "default", "gateway": "192.0.2.1", "dev": "eth0"},
    {"dst": "192.0.2.0/24", "dev": "eth0", "protocol": "kernel", "prefsrc": "192.0.2.2"},
    {"type": "local", "dst": "127.0.0.0/8", "dev": "lo", "table": "local"},
    {"type": "broadcast", "dst": "127.255.255.255", "dev": "lo", "table": "local"},
    {"dst": "10.77.0.0/24", "dev": "bplab", "protocol": "kernel", "prefsrc": "10.77.0.1"},
]
ADDRESSES: list[dict[str, Any]] = [
    {"ifname": "lo", "addr_info": [{"family": "inet", "local": "127.0.0.1", "prefixlen": 8}]},
    {"ifname": "eth0", "addr_info": [{"family": "inet", "local": "192.0.2.2", "prefixlen": 24}]},
    {"ifname": "bplab", "addr_info": [{"family": "inet", "local": "10.77.0.1", "prefixlen": 24}]},
    {"ifname": "wg0", "addr_info": [{"family": "inet", "local": "172.16.5.1", "prefixlen": 32}]},
]


def net(text: str) -> ipaddress.IPv4Network:
    return ipaddress.IPv4Network(text)


def test_plan_puts_bridge_at_1_and_nodes_from_11() -> None:
    plan = network.plan_addresses("10.77.0.0/24", 3)
    assert str(plan.bridge) == "10.77.0.1"
    assert [str(a) for a in plan.nodes] == ["10.77.0.11", "10.77.0.12", "10.77.0.13"]
    assert plan.bridge_cidr == "10.77.0.1/24"
    assert plan.node_cidr(2) == "10.77.0.13/24"


@pytest.mark.parametrize(
    ("subnet", "count", "fragment"),
    [
        ("10.77.0.1/24", 3, "not a network address"),
        ("fd00::/64", 3, "IPv6"),
        ("10.77.0.0/28", 5, "too small"),
        ("10.77.0.0/24", 0, "out of range"),
        ("10.77.0.0/24", 100, "out of range"),
        ("banana", 1, "CIDR"),
    ],
)
def test_plan_refuses_bad_input(subnet: str, count: int, fragment: str) -> None:
    with pytest.raises(BadInput, match=fragment):
        network.plan_addresses(subnet, count)


def test_plan_fits_exactly_into_a_small_subnet() -> None:
    plan = network.plan_addresses("10.77.0.0/27", 20)
    assert str(plan.nodes[-1]) == "10.77.0.30"
    with pytest.raises(BadInput):
        network.plan_addresses("10.77.0.0/27", 21)


@pytest.mark.parametrize(
    ("subnet", "own", "expected"),
    [
        ("10.79.0.0/24", "bpbpt", None),
        ("10.77.0.0/24", "bplab", None),  # the lab's own bridge
        ("10.77.0.0/24", "bpother", "route 10.77.0.0/24 on bplab"),
        ("192.0.2.0/25", "bpx", "route 192.0.2.0/24 on eth0"),
        ("127.0.0.0/16", "bpx", "route 127.0.0.0/8 on lo"),
        ("172.16.5.0/24", "bpx", "address 172.16.5.1/32 on wg0"),
    ],
)
def test_find_clash(subnet: str, own: str, expected: str | None) -> None:
    assert network.find_clash(net(subnet), ROUTES, ADDRESSES, own) == expected


def test_default_route_is_no_clash() -> None:
    assert network.find_clash(net("8.8.8.0/24"), ROUTES, [], "bpx") is None


@pytest.mark.parametrize("name", ["lab", "bpt", "x", "a-b", "abcdefghij"])
def test_names_fit_linux_interface_limits(name: str) -> None:
    network.check_lab_name(name)
    for name_of in (network.bridge_name(name), network.veth_name(name, network.NODES_MAX)):
        assert len(name_of) <= network.IFNAME_MAX


@pytest.mark.parametrize("name", ["abcdefghijk", "Lab", "1lab", "lab-", "la_b", ""])
def test_lab_names_refused(name: str) -> None:
    with pytest.raises(BadInput, match="DNS label"):
        network.check_lab_name(name)


def test_names_follow_the_scheme() -> None:
    assert network.bridge_name("lab") == "bplab"
    assert network.netns_name("lab", 2) == "bp-lab-2"
    assert network.veth_name("lab", 2) == "bplab_2"
    assert network.node_name("lab", 2) == "lab-2"
