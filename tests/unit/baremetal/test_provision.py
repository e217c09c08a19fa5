"""provision_node's flow with a fake BMC: what is asked of it, and how a wait ends."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

from blueprint.baremetal.console import ConsoleCapture
from blueprint.baremetal.provision import Settings, provision_node
from blueprint.models import Site

SITE = Site.model_validate({
    "name": "metal", "blueprint": "lab", "network": {"subnet": "192.0.2.0/24"},
    "provision": {"boot_server": "192.0.2.2", "interface": "lo"},
    "nodes": [{"name": "edge-1", "address": "192.0.2.21", "roles": ["worker"],
               "boot_mac": "52:54:00:6b:02:01", "install_disk": "/dev/vda"}],
})


class FakeBmc:
    node = "edge-1"
    address = "fake"

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.state = "Off"

    def boot_once(self, target: str, http_uri: str | None = None) -> None:
        self.calls.append(f"boot {target}")

    def power_state(self) -> str:
        return self.state

    def power(self, action: str) -> None:
        self.calls.append(f"power {action}")
        self.state = "On"

    def wait_power(self, state: str, timeout: float, poll: float = 1.0) -> None:
        assert self.state == state

    def close(self) -> None:
        pass


def test_an_interrupt_ends_the_ssh_wait_and_the_console_capture(tmp_path: Path) -> None:
    bmc = FakeBmc()
    interrupted = threading.Event()
    stopped: list[bool] = []

    class Capture:
        def stop(self) -> str:
            stopped.append(True)
            return "console.log (0 bytes)"

    def console() -> tuple[Any, str]:
        assert bmc.calls == []  # the capture starts before the power cycle
        return Capture(), ""

    threading.Timer(0.5, interrupted.set).start()
    started = time.monotonic()
    outcome = provision_node(SITE, SITE.nodes[0], bmc, tmp_path / "known_hosts",  # type: ignore[arg-type]
                             Settings(ssh_timeout=600, poll=0.2), done_before=False,
                             console=console, interrupted=interrupted)
    assert time.monotonic() - started < 15
    assert (outcome.result, outcome.detail) == ("failed", "interrupted while waiting for SSH")
    assert outcome.console == "console.log (0 bytes)" and stopped == [True]
    assert bmc.calls == ["boot Pxe", "power on"]


def test_a_skipped_node_starts_no_console(tmp_path: Path) -> None:
    def console() -> tuple[ConsoleCapture | None, str]:
        raise AssertionError("no capture for a node that is not installed")

    outcome = provision_node(SITE, SITE.nodes[0], FakeBmc(), tmp_path / "k",  # type: ignore[arg-type]
                             Settings(), done_before=True, console=console)
    assert outcome.result == "skipped" and outcome.console == ""
