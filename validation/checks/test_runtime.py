"""Container runtime checks: containerd running under systemd, its cgroup driver, the CRI."""

from __future__ import annotations

import logging
import re
import tomllib
from typing import Any

import pytest

from blueprint.validate.plugin import Probe, expect

log = logging.getLogger(__name__)

SOCKET = "/run/containerd/containerd.sock"

# Where the runc runtime's options live: containerd 1.x, then 2.x.
CRI_PLUGINS = ("io.containerd.grpc.v1.cri", "io.containerd.cri.v1.runtime")


@pytest.mark.check("runtime.containerd.active")
def test_containerd_active(node: Probe) -> None:
    state = node.run("systemctl is-active containerd").stdout.strip()
    expect(state == "active", seen=f"containerd.service {state}", expected="active")


@pytest.mark.check("runtime.containerd.enabled")
def test_containerd_enabled(node: Probe) -> None:
    state = node.run("systemctl is-enabled containerd").stdout.strip() or "not installed"
    expect(state == "enabled", seen=f"containerd.service {state}", expected="enabled")


def _runc_options(config: dict[str, Any]) -> dict[str, Any] | None:
    plugins = config.get("plugins", {})
    for name in CRI_PLUGINS:
        runtimes = plugins.get(name, {}).get("containerd", {}).get("runtimes", {})
        if "runc" in runtimes:
            options: dict[str, Any] = runtimes["runc"].get("options", {})
            return options
    return None


@pytest.mark.check("runtime.containerd.systemd_cgroup")
def test_containerd_systemd_cgroup(node: Probe) -> None:
    dump = node.run("containerd config dump")
    expect(
        dump.rc == 0,
        seen=f"containerd config dump failed ({dump.rc})",
        expected="containerd installed and its config readable",
    )
    try:
        options = _runc_options(tomllib.loads(dump.stdout))
    except tomllib.TOMLDecodeError as exc:
        expect(False, seen=f"config dump is not TOML ({exc})", expected="a TOML config")
        return
    value = None if options is None else options.get("SystemdCgroup")
    shown = str(value).lower() if isinstance(value, bool) else "unset"
    expect(
        value is True,
        seen="no runc runtime in the CRI plugin"
        if options is None
        else f"runc options SystemdCgroup = {shown}",
        expected="SystemdCgroup = true in the CRI plugin's runc options",
    )


def _socket(expected: dict[str, Any]) -> str:
    """The CRI socket the runtime layer configures (the runner's context), or containerd's."""
    return str(expected.get("runtime", {}).get("cri_socket", SOCKET))


@pytest.mark.check("runtime.cri.socket")
def test_cri_socket(node: Probe, expected: dict[str, Any]) -> None:
    socket_path = _socket(expected)
    socket = node.run(f"test -S {socket_path}")
    expect(socket.rc == 0, seen=f"no socket at {socket_path}",
           expected=f"a socket at {socket_path}")
    # The socket the runtime listens on is the one its config names.
    dump = node.run("containerd config dump")
    try:
        address = tomllib.loads(dump.stdout).get("grpc", {}).get("address")
    except tomllib.TOMLDecodeError:
        address = None
    expect(
        address == socket_path,
        seen=f"containerd's grpc address is {address or 'not readable'}",
        expected=f"grpc address {socket_path}",
    )

    # crictl speaks CRI itself; without it, ctr proves the socket answers.
    if node.run("command -v crictl").rc == 0:
        answer = node.run(f"crictl --runtime-endpoint unix://{socket_path} version")
        wanted = "crictl version answering with RuntimeName containerd"
        ok = answer.rc == 0 and "containerd" in answer.stdout
    else:
        answer = node.run(f"ctr --address {socket_path} version")
        wanted = "ctr version printing a Server section"
        ok = answer.rc == 0 and "Server:" in answer.stdout
    last = (answer.stderr or answer.stdout).strip().splitlines()
    expect(ok, seen=f"exit {answer.rc}: {last[-1] if last else 'no output'}", expected=wanted)


CRI_ROW = re.compile(r"^io\.containerd\.grpc\.v1\s+cri\b")
CRI_OK = re.compile(r"^io\.containerd\.grpc\.v1\s+cri\s+.*\bok\s*$", re.MULTILINE)


@pytest.mark.check("runtime.cri.plugin_loaded")
def test_cri_plugin_loaded(node: Probe, expected: dict[str, Any]) -> None:
    plugins = node.run(f"ctr --address {_socket(expected)} plugins ls")
    rows = plugins.stdout.splitlines()
    line = next((row for row in rows if CRI_ROW.match(row)), None)
    expect(
        plugins.rc == 0 and CRI_OK.search(plugins.stdout) is not None,
        seen=f"ctr plugins ls failed ({plugins.rc})"
        if plugins.rc != 0
        else f"CRI plugin row: {' '.join(line.split()) if line else 'absent'}",
        expected="io.containerd.grpc.v1 cri ... ok",
    )
