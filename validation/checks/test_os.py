"""OS layer checks: kernel modules, sysctls, swap, time sync and journald on each node.

Network sysctls belong to the node's network namespace and are checked everywhere. Kernel-wide
sysctls, swap and the clock belong to the host kernel when the node is a container, so there
they are skipped with that reason, never passed.
"""

from __future__ import annotations

import logging
from typing import Any

import pytest

from blueprint.validate.plugin import Probe, expect

log = logging.getLogger(__name__)


def _read(node: Probe, path: str) -> str | None:
    result = node.run(f"cat {path}")
    return result.stdout.strip() if result.rc == 0 else None


@pytest.mark.check("os.module.overlay")
def test_overlay_module(node: Probe) -> None:
    # Built-in modules show under /sys/module; overlay also lists itself as a filesystem.
    sysfs = node.run("test -d /sys/module/overlay")
    filesystems = node.run("grep -w overlay /proc/filesystems")
    expect(
        sysfs.rc == 0 or filesystems.rc == 0,
        seen="no /sys/module/overlay and no overlay in /proc/filesystems",
        expected="the overlay module loaded or built into the kernel",
    )


@pytest.mark.check("os.module.br_netfilter")
def test_br_netfilter_module(node: Probe) -> None:
    # br_netfilter built into bridge shows only as /proc/sys/net/bridge.
    sysfs = node.run("test -d /sys/module/br_netfilter")
    sysctl = node.run("test -d /proc/sys/net/bridge")
    expect(
        sysfs.rc == 0 or sysctl.rc == 0,
        seen="no /sys/module/br_netfilter and no /proc/sys/net/bridge",
        expected="br_netfilter loaded or built in (its sysctls under /proc/sys/net/bridge)",
    )


NET_SYSCTLS = [
    ("os.sysctl.net_ipv4_ip_forward", "net/ipv4/ip_forward"),
    ("os.sysctl.net_bridge_bridge_nf_call_iptables", "net/bridge/bridge-nf-call-iptables"),
    ("os.sysctl.net_bridge_bridge_nf_call_ip6tables", "net/bridge/bridge-nf-call-ip6tables"),
]


@pytest.mark.parametrize(
    "key",
    [pytest.param(key, marks=pytest.mark.check(cid), id=cid) for cid, key in NET_SYSCTLS],
)
def test_net_sysctl(node: Probe, key: str) -> None:
    value = _read(node, f"/proc/sys/{key}")
    name = key.replace("/", ".")
    expect(
        value == "1",
        seen=f"{name} = {value}" if value is not None else f"{name} does not exist",
        expected=f"{name} = 1",
    )


# kubelet's --protect-kernel-defaults values; k3s and kubeadm both expect them.
KERNEL_SYSCTLS = [
    ("os.sysctl.vm_overcommit_memory", "vm/overcommit_memory", "1"),
    ("os.sysctl.kernel_panic", "kernel/panic", "10"),
    ("os.sysctl.kernel_panic_on_oops", "kernel/panic_on_oops", "1"),
]


@pytest.mark.parametrize(
    ("key", "wanted"),
    [
        pytest.param(key, wanted, marks=pytest.mark.check(cid), id=cid)
        for cid, key, wanted in KERNEL_SYSCTLS
    ],
)
def test_kernel_sysctl(node: Probe, key: str, wanted: str) -> None:
    name = key.replace("/", ".")
    node.skip_if_container(f"{name} is a kernel-wide setting")
    value = _read(node, f"/proc/sys/{key}")
    expect(value == wanted, seen=f"{name} = {value}", expected=f"{name} = {wanted}")


@pytest.mark.check("os.swap_off")
def test_swap_off(node: Probe) -> None:
    node.skip_if_container("swap is the host's")
    swaps = node.run("cat /proc/swaps")
    active = [line.split()[0] for line in swaps.stdout.splitlines()[1:] if line.strip()]
    expect(
        swaps.rc == 0 and not active,
        seen=f"active swap: {', '.join(active)}" if active else f"cat failed ({swaps.rc})",
        expected="no active swap (kubelet refuses to start with swap on)",
    )


@pytest.mark.check("os.time_sync")
def test_time_sync(node: Probe) -> None:
    node.skip_if_container("the clock is the host's and systemd skips time sync units")
    shown = node.run("timedatectl show -p NTP -p NTPSynchronized")
    values = dict(line.split("=", 1) for line in shown.stdout.splitlines() if "=" in line)
    expect(
        shown.rc == 0 and values.get("NTP") == "yes" and values.get("NTPSynchronized") == "yes",
        seen=f"NTP={values.get('NTP')} NTPSynchronized={values.get('NTPSynchronized')}"
        if shown.rc == 0
        else f"timedatectl failed ({shown.rc})",
        expected="NTP=yes NTPSynchronized=yes (a time sync service running and in sync)",
    )


@pytest.mark.check("os.journald_limit")
def test_journald_limit(node: Probe) -> None:
    # The effective config: journald.conf plus its drop-ins, last assignment wins.
    config = node.run("systemd-analyze cat-config systemd/journald.conf")
    limits = [
        line.split("=", 1)[1].strip()
        for line in config.stdout.splitlines()
        if line.strip().startswith("SystemMaxUse=")
    ]
    limit = limits[-1] if limits else ""
    expect(
        config.rc == 0 and limit != "",
        seen=f"SystemMaxUse={limit}" if limits else "no SystemMaxUse= set",
        expected="SystemMaxUse= set in journald.conf or a drop-in (a bounded journal)",
    )


def _installed(node: Probe, names: list[str]) -> dict[str, str]:
    """Installed version of each named package that dpkg has fully installed.

    The status is two letters, wanted action then state: `ii` installed, `hi` installed and
    held, `rc` removed with its config files left.
    """
    query = node.run(
        "dpkg-query -W -f='${Package} ${db:Status-Abbrev} ${Version}\\n' "
        + " ".join(names)
        + " 2>/dev/null || true"
    )
    versions = {}
    for line in query.stdout.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[1][1:2] == "i":
            versions[parts[0]] = parts[2]
    return versions


def matches_pin(version: str, pin: str) -> bool:
    """A Debian version matches a pin when, without its epoch, it starts with the pin at a
    version boundary: 1.6 matches 1.6.20~ds1-1, not 1.60.1."""
    bare = version.split(":", 1)[1] if ":" in version else version
    if not bare.startswith(pin):
        return False
    rest = bare[len(pin):]
    return rest == "" or not rest[0].isdigit() or not pin[-1].isdigit()


@pytest.mark.check("os.packages.installed")
def test_packages_installed(node: Probe, expected: dict[str, Any]) -> None:
    required = list(expected.get("packages", {}).get("required", []))
    if not required:
        pytest.skip("the deployed layers name no package")
    installed = _installed(node, required)
    missing = [name for name in required if name not in installed]
    expect(
        not missing,
        seen=f"not installed: {', '.join(missing)}",
        expected=f"all of {', '.join(required)} installed (the deployed layers' packages)",
    )


@pytest.mark.check("os.packages.pinned")
def test_packages_pinned(node: Probe, expected: dict[str, Any]) -> None:
    pins: dict[str, str] = expected.get("packages", {}).get("pins", {})
    if not pins:
        pytest.skip("the blueprint pins no package version")
    installed = _installed(node, sorted(pins))
    wrong = [
        f"{name} {installed[name]} (pinned {pin})"
        for name, pin in sorted(pins.items())
        if name in installed and not matches_pin(installed[name], pin)
    ]
    expect(
        not wrong,
        seen=f"at another version: {', '.join(wrong)}",
        expected="every installed pinned package at its pinned version: "
        + ", ".join(f"{name} {pin}" for name, pin in sorted(pins.items())),
    )


def _candidate(node: Probe, name: str) -> str:
    policy = node.run(f"apt-cache policy {name}")
    for line in policy.stdout.splitlines():
        if line.strip().startswith("Candidate:"):
            return line.split(":", 1)[1].strip()
    return "unknown"


@pytest.mark.check("os.packages.held")
def test_packages_held(node: Probe, expected: dict[str, Any]) -> None:
    # A hold keeps a package from the site's updates: only a version the blueprint pins may be
    # held, and only at that version.
    pins: dict[str, str] = expected.get("packages", {}).get("pins", {})
    holds = node.run("apt-mark showhold")
    expect(holds.rc == 0, seen=f"apt-mark failed ({holds.rc})", expected="apt-mark answering")
    held = sorted(set(holds.stdout.split()))
    installed = _installed(node, held) if held else {}
    wrong = []
    for name in held:
        version = installed.get(name, "not installed")
        if name not in pins:
            wrong.append(f"{name} held at {version} (candidate {_candidate(node, name)}; "
                         "the blueprint pins no version of it)")
        elif not matches_pin(version, pins[name]):
            wrong.append(f"{name} held at {version} (pinned {pins[name]})")
    expect(
        not wrong,
        seen="; ".join(wrong),
        expected="no package held, or held at the version the blueprint pins",
    )


@pytest.mark.check("os.services.active")
def test_os_services_active(node: Probe) -> None:
    services = ["ssh", "systemd-journald"]
    if node.container() is None:
        services.append("chrony")
    states = node.run(f"systemctl is-active {' '.join(services)}").stdout.split()
    down = [f"{name} {state}" for name, state in zip(services, states, strict=False)
            if state != "active"]
    expect(
        len(states) == len(services) and not down,
        seen=", ".join(down) or f"systemctl answered {states}",
        expected=f"{', '.join(services)} active",
    )


@pytest.mark.check("os.services.none_failed")
def test_no_failed_units(node: Probe) -> None:
    failed = node.run("systemctl list-units --failed --no-legend --plain")
    units = [line.split()[0] for line in failed.stdout.splitlines() if line.strip()]
    expect(
        failed.rc == 0 and not units,
        seen=f"failed units: {', '.join(units)}" if units else f"systemctl failed ({failed.rc})",
        expected="no failed systemd unit",
    )
