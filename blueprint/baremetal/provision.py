"""`provision`: from powered-off servers to nodes that answer SSH as themselves.

Per node: one-time network boot on its BMC, a power cycle, then wait until it answers SSH
with its expected host name and the host key the boot artifacts gave it; then the run history
marks it provisioned. Preflight covers every node before any BMC is told to do anything.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from blueprint.baremetal import bootserver
from blueprint.baremetal.access import open_bmc
from blueprint.baremetal.bmc import BmcClient, BmcError, BmcUnsupported
from blueprint.baremetal.console import ConsoleCapture, console_log_path, start_console
from blueprint.baremetal.discover import node_profile, record_provisioned
from blueprint.baremetal.render import (
    BootPaths,
    missing_boot_files,
    provisioned_nodes,
    render_boot_artifacts,
)
from blueprint.console import attach_run_log, detach_run_log
from blueprint.errors import BadInput, BlueprintError, DeployFailed, EnvironmentMissing, ExitCode
from blueprint.inventory import node_key, node_user
from blueprint.loader import LoadedSite
from blueprint.models import Node, Site
from blueprint.state import RunHistory, StateDir, new_run_id

log = logging.getLogger(__name__)

Result = Literal["provisioned", "skipped", "failed"]
BOOT_TARGET = {"pxe": "Pxe", "http": "UefiHttp"}


@dataclass(frozen=True)
class NodeOutcome:
    node: str
    result: Result
    detail: str
    seconds: float
    # The serial console log of the install, or why there is none ("" when not asked).
    console: str = ""


@dataclass
class ProvisionOutcome:
    run_id: str
    nodes: list[NodeOutcome]

    @property
    def failed(self) -> list[NodeOutcome]:
        return [n for n in self.nodes if n.result == "failed"]


@dataclass(frozen=True)
class Settings:
    force: bool = False
    parallel: int = 4
    power_timeout: float = 300.0
    ssh_timeout: float = 3600.0
    retries: int = 1
    poll: float = 5.0
    apply_bios: bool = False


def known_hosts_file(state: StateDir, site: Site, nodes: list[Node]) -> Path:
    """Pinned host keys of the nodes, from the keys their boot artifacts install."""
    paths = BootPaths.of(state)
    lines = []
    for node in nodes:
        public = paths.host_key(node.name).with_suffix(".pub").read_text(encoding="utf-8")
        key_type, key = public.split()[:2]
        lines.append(f"{node.address} {key_type} {key}")
    path = paths.root / "known_hosts"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def answers_ssh(address: str, timeout: float = 3.0) -> bool:
    """Whether an SSH server greets on port 22 of `address`."""
    try:
        with socket.create_connection((address, 22), timeout=timeout) as sock:
            sock.settimeout(timeout)
            return sock.recv(4).startswith(b"SSH-")
    except OSError:
        return False


def ssh_hostname(site: Site, node: Node, known_hosts: Path) -> tuple[str | None, str]:
    """(host name, "") when the node answers with its pinned key; (None, why) otherwise."""
    cmd = ["ssh", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes",
           "-o", f"UserKnownHostsFile={known_hosts}", "-o", "GlobalKnownHostsFile=/dev/null",
           "-o", "ConnectTimeout=10", "-o", "ControlPath=none", "-l", node_user(site, node)]
    key = node_key(site, node)
    if key is not None:
        cmd += ["-i", str(key), "-o", "IdentitiesOnly=yes"]
    cmd += [str(node.address), "hostname"]
    log.debug("run: %s", " ".join(cmd))
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)
    if done.returncode == 0:
        return done.stdout.strip(), ""
    lines = done.stderr.strip().splitlines()
    return None, lines[-1] if lines else f"ssh exited {done.returncode}"


def bios_changes(bmc: BmcClient, wanted: dict[str, Any]) -> dict[str, Any]:
    """The wanted BIOS attributes whose current value differs; unknown names are refused."""
    if not wanted:
        return {}
    current = bmc.bios_attributes()
    unknown = sorted(set(wanted) - set(current))
    if unknown:
        msg = (f"node {bmc.node}: BMC {bmc.address}: BIOS attribute(s) {', '.join(unknown)} "
               "of the hardware profile are not offered by this firmware")
        raise BmcUnsupported(msg)
    return {name: value for name, value in wanted.items()
            if str(current[name]).lower() != str(value).lower()}


def preflight(loaded: LoadedSite, secrets: dict[str, Any], state: StateDir,
              names: list[str] | None, apply_bios: bool = False
              ) -> list[tuple[Node, BmcClient, dict[str, Any]]]:
    """Every check before the first BMC is told anything; BadInput/EnvironmentMissing."""
    site = loaded.site
    nodes = provisioned_nodes(site, names)
    without_bmc = [node.name for node in nodes if node.bmc is None]
    if without_bmc:
        msg = (f"node(s) {', '.join(without_bmc)} have no bmc section; provision powers nodes "
               "through their BMC (give --nodes to leave them out)")
        raise BadInput(msg)
    pairs = [(node, open_bmc(node, secrets)) for node in nodes]

    # Artifacts, and the boot server that serves them.
    paths = render_boot_artifacts(loaded, state)
    assert site.provision is not None
    missing = missing_boot_files(paths, site.provision.os)
    if missing:
        msg = ("boot files are missing (the installer's kernel and initrd, iPXE): "
               + ", ".join(missing))
        raise EnvironmentMissing(msg)
    running = bootserver.status(loaded, state)
    if not all(running.values()):
        msg = (f"the boot server of site {site.name} is not running; start it on the "
               f"provisioning host: blueprint boot-server start {loaded.site_dir}")
        raise EnvironmentMissing(msg)

    # Each BMC answers, takes the credentials and offers the boot target (and, with
    # --apply-bios, the BIOS attributes of the node's hardware profile).
    target = BOOT_TARGET[site.provision.boot]
    problems = []
    planned: list[tuple[Node, BmcClient, dict[str, Any]]] = []
    for node, bmc in pairs:
        try:
            targets = bmc.capabilities().boot_targets
            wanted = node_profile(loaded.blueprint, list(node.roles)).bios if apply_bios else {}
            changes = bios_changes(bmc, wanted)
        except BmcError as exc:
            problems.append(str(exc))
            continue
        finally:
            bmc.close()
        if target not in targets:
            problems.append(f"node {node.name}: BMC {bmc.address} offers boot targets "
                            f"{', '.join(targets)}, not {target} (provision.boot)")
        planned.append((node, bmc, changes))
    if problems:
        raise DeployFailed("\n".join(problems))
    return planned


def provision_node(site: Site, node: Node, bmc: BmcClient, known_hosts: Path,
                   settings: Settings, done_before: bool,
                   bios: dict[str, Any] | None = None,
                   console: Callable[[], tuple[ConsoleCapture | None, str]] | None = None,
                   interrupted: threading.Event | None = None) -> NodeOutcome:
    """Boot override, power cycle, wait for SSH; never touches a node that needs no install.

    `console` starts the capture of the node's serial console (or says why there is none);
    the capture runs from before the power cycle until the node's outcome is known.
    """
    started = time.monotonic()
    if done_before and not settings.force:
        return NodeOutcome(node.name, "skipped",
                           "provisioned by an earlier run (--force to install again)", 0.0)
    if answers_ssh(str(node.address)) and not settings.force:
        return NodeOutcome(node.name, "skipped",
                           "already answers SSH; not power-cycled (--force to install)", 0.0)

    capture, note = console() if console is not None else (None, "")
    try:
        result = _install(site, node, bmc, known_hosts, settings, bios, started,
                          interrupted or threading.Event())
    finally:
        if capture is not None:
            note = capture.stop()
    return dataclasses.replace(result, console=note)


def _install(site: Site, node: Node, bmc: BmcClient, known_hosts: Path, settings: Settings,
             bios: dict[str, Any] | None, started: float,
             interrupted: threading.Event) -> NodeOutcome:
    def outcome(result: Result, detail: str) -> NodeOutcome:
        return NodeOutcome(node.name, result, detail, round(time.monotonic() - started, 1))

    assert site.provision is not None
    target = BOOT_TARGET[site.provision.boot]
    http_uri = (f"http://{site.provision.boot_server}:{site.provision.http_port}/ipxe.efi"
                if target == "UefiHttp" else None)

    # BIOS settings (pending until the power cycle), boot override and power cycle,
    # retried on a BMC fault.
    for attempt in range(settings.retries + 1):
        try:
            if bios:
                bmc.set_bios_attributes(bios)
            bmc.boot_once(target, http_uri)
            if bmc.power_state() == "On":
                bmc.power("reset")
            else:
                bmc.power("on")
            bmc.wait_power("On", settings.power_timeout)
            break
        except BmcError as exc:
            if attempt == settings.retries:
                return outcome("failed", str(exc))
            log.warning("node %s: %s; trying again", node.name, exc)
        finally:
            bmc.close()

    # The install runs; the node is done when it answers SSH as itself with its pinned key.
    log.info("node %s: waiting for SSH (up to %g s)", node.name, settings.ssh_timeout)
    deadline = time.monotonic() + settings.ssh_timeout
    last = "no answer on port 22"
    while time.monotonic() < deadline:
        if answers_ssh(str(node.address)):
            name, why = ssh_hostname(site, node, known_hosts)
            if name == node.name:
                applied = f"; BIOS set: {', '.join(sorted(bios))}" if bios else ""
                return outcome("provisioned", f"answers SSH as {name}{applied}")
            if name is not None:
                return outcome("failed", f"answers SSH as '{name}', expected '{node.name}'")
            if "Host key verification failed" in why or "IDENTIFICATION HAS CHANGED" in why:
                return outcome("failed", f"SSH host key is not the one its install was given: "
                                         f"{why}")
            last = why
        if interrupted.wait(settings.poll):
            return outcome("failed", "interrupted while waiting for SSH")
    return outcome("failed", f"no SSH login within {settings.ssh_timeout:g} s: {last}")


def _record_board(state: StateDir, node: Node, bmc: BmcClient, run_id: str) -> None:
    """The installed board's serial, UUID and MACs, so discover can tell a board swap."""
    try:
        record_provisioned(state, node, bmc.inventory(), run_id)
    except BmcError as exc:
        log.warning("node %s: board identity not recorded (discover cannot tell a board "
                    "swap from it): %s", node.name, exc)
    finally:
        bmc.close()


def provision(loaded: LoadedSite, secrets: dict[str, Any], state: StateDir,
              names: list[str] | None, settings: Settings) -> ProvisionOutcome:
    """Preflight, then provision the nodes in parallel; record the run and its nodes."""
    outcome = ProvisionOutcome(new_run_id("provision"), [])
    with state.lock():
        planned = preflight(loaded, secrets, state, names, settings.apply_bios)
        known_hosts = known_hosts_file(state, loaded.site, [node for node, _, _ in planned])
        run_dir = state.run_dir(outcome.run_id)
        run_log = attach_run_log(run_dir / "blueprint.log")
        history = RunHistory(state)
        history.start(outcome.run_id, loaded.site.name, "provision", [], run_dir)
        status, code = "failed", int(ExitCode.DEPLOY_FAILED)
        try:
            done_before = history.provisioned()
            log.info("Provisioning %d node(s), %d at a time", len(planned), settings.parallel)
            # On Ctrl-C the nodes' waits end at their next poll (and their console
            # captures stop) rather than at the end of --ssh-timeout.
            interrupted = threading.Event()
            pool = ThreadPoolExecutor(max_workers=max(1, settings.parallel))
            try:
                futures = [pool.submit(provision_node, loaded.site, node, bmc, known_hosts,
                                       settings, node.name in done_before, bios,
                                       functools.partial(start_console, node, bmc, secrets,
                                                         console_log_path(state, node.name,
                                                                          outcome.run_id)),
                                       interrupted)
                           for node, bmc, bios in planned]
                outcome.nodes = [future.result() for future in futures]
            except KeyboardInterrupt:
                interrupted.set()
                code = int(ExitCode.INTERRUPTED)
                raise
            finally:
                pool.shutdown(wait=True, cancel_futures=True)
            stats = {}
            bmcs = {node.name: (node, bmc) for node, bmc, _ in planned}
            for node_outcome in outcome.nodes:
                if node_outcome.result == "provisioned":
                    history.mark_provisioned(outcome.run_id, node_outcome.node)
                    _record_board(state, *bmcs[node_outcome.node], outcome.run_id)
                stats[node_outcome.node] = {
                    "ok": int(node_outcome.result != "failed"),
                    "changed": int(node_outcome.result == "provisioned"),
                    "failed": int(node_outcome.result == "failed"),
                    "unreachable": 0,
                    "skipped": int(node_outcome.result == "skipped"),
                }
            history.record_layer(outcome.run_id, "provision", stats)
            if not outcome.failed:
                status, code = "ok", int(ExitCode.OK)
        except BlueprintError as exc:
            code = int(exc.exit_code)
            raise
        finally:
            history.finish(outcome.run_id, status, code)
            history.close()
            detach_run_log(run_log)
    return outcome
