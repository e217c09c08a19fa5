"""The boot server of a site: dnsmasq (DHCP, TFTP) and the HTTP server of boot artifacts.

Both run on the provisioning host, on the interface the site file names. They are started
and stopped by PID; `<state>/boot/server.json` says which processes are the site's.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from blueprint.baremetal.render import BootPaths, render_boot_artifacts
from blueprint.errors import BadInput, DeployFailed, EnvironmentMissing
from blueprint.loader import LoadedSite
from blueprint.proc import run as run_command
from blueprint.state import StateDir

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ServerState:
    dnsmasq_pid: int
    http_pid: int
    address: str
    port: int
    interface: str

    @property
    def pids(self) -> dict[str, int]:
        return {"dnsmasq": self.dnsmasq_pid, "http": self.http_pid}


def _state_file(paths: BootPaths) -> Path:
    return paths.root / "server.json"


def _alive(pid: int, marker: str) -> bool:
    """Whether `pid` runs and is still ours (its command line names our files)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return False
    return marker in cmdline


def read_state(paths: BootPaths) -> ServerState | None:
    path = _state_file(paths)
    if not path.is_file():
        return None
    data = json.loads(path.read_text(encoding="utf-8"))
    return ServerState(**data)


def status(loaded: LoadedSite, state: StateDir) -> dict[str, bool]:
    """Which of the site's boot server processes are running."""
    paths = BootPaths.of(state)
    current = read_state(paths)
    if current is None:
        return {"dnsmasq": False, "http": False}
    return {name: _alive(pid, str(paths.root)) for name, pid in current.pids.items()}


def _check_host(loaded: LoadedSite) -> None:
    provision = loaded.site.provision
    assert provision is not None
    if shutil.which("dnsmasq") is None:
        msg = "the boot server needs dnsmasq; install it: apt-get install dnsmasq-base"
        raise EnvironmentMissing(msg)
    if os.geteuid() != 0:
        msg = "the boot server needs root (DHCP on port 67, TFTP on port 69)"
        raise EnvironmentMissing(msg)
    done = run_command(["ip", "-j", "address", "show", "dev", provision.interface], check=False)
    if done.returncode != 0:
        msg = (f"interface {provision.interface} (provision.interface) does not exist on this "
               "host; the boot server runs on the host attached to the provisioning network")
        raise EnvironmentMissing(msg)
    addresses = {info["local"] for link in json.loads(done.stdout or "[]")
                 for info in link.get("addr_info", [])}
    if str(provision.boot_server) not in addresses:
        msg = (f"interface {provision.interface} has no address {provision.boot_server} "
               f"(provision.boot_server); it has {', '.join(sorted(addresses)) or 'none'}")
        raise EnvironmentMissing(msg)


def start(loaded: LoadedSite, state: StateDir) -> ServerState:
    """Render the artifacts, then start dnsmasq and the HTTP server; refuse a second start."""
    provision = loaded.site.provision
    if provision is None:
        msg = "the site file has no provision section (boot server, interface, OS)"
        raise BadInput(msg)
    paths = BootPaths.of(state)
    running = status(loaded, state)
    if any(running.values()):
        msg = (f"the boot server of site {loaded.site.name} is already running; "
               "stop it first: blueprint boot-server stop")
        raise DeployFailed(msg)
    _check_host(loaded)
    render_boot_artifacts(loaded, state)

    # dnsmasq stays in the foreground of its own session, so its PID is the one we start.
    dnsmasq_log = open(paths.root / "dnsmasq.stderr", "wb")  # noqa: SIM115 - handed to the child
    dnsmasq = subprocess.Popen(
        ["dnsmasq", "--keep-in-foreground", f"--conf-file={paths.dnsmasq_conf}"],
        stdout=dnsmasq_log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    dnsmasq_log.close()
    nodes = [f"{node.name}={node.address}" for node in loaded.site.nodes]
    http_log = open(paths.root / "http.log", "wb")  # noqa: SIM115 - handed to the child
    http = subprocess.Popen(
        [sys.executable, "-m", "blueprint.baremetal.httpserver", str(paths.http),
         str(provision.boot_server), str(provision.http_port), *nodes],
        stdout=http_log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    http_log.close()
    server = ServerState(dnsmasq.pid, http.pid, str(provision.boot_server),
                         provision.http_port, provision.interface)
    _state_file(paths).write_text(json.dumps(server.__dict__) + "\n", encoding="utf-8")

    # Both must still run after they bound their ports; a bind error ends them at once.
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if dnsmasq.poll() is not None or http.poll() is not None:
            break
        if _http_listening(server):
            return server
        time.sleep(0.2)
    failed = "dnsmasq" if dnsmasq.poll() is not None else "http"
    logs = {"dnsmasq": paths.root / "dnsmasq.stderr", "http": paths.root / "http.log"}
    tail = (logs[failed].read_text(errors="replace").strip().splitlines() or ["no output"])[-1]
    stop(loaded, state)
    msg = f"boot server: {failed} did not start: {tail}"
    raise DeployFailed(msg)


def _http_listening(server: ServerState) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((server.address, server.port)) == 0


def stop(loaded: LoadedSite, state: StateDir) -> list[str]:
    """Stop the site's boot server processes by PID; return the names stopped."""
    paths = BootPaths.of(state)
    current = read_state(paths)
    if current is None:
        return []
    stopped = []
    for name, pid in current.pids.items():
        if not _alive(pid, str(paths.root)):
            continue
        os.kill(pid, signal.SIGTERM)
        if not _wait_gone(pid, 10):
            os.kill(pid, signal.SIGKILL)
            _wait_gone(pid, 5)
        stopped.append(name)
    _state_file(paths).unlink(missing_ok=True)
    log.info("Boot server of %s stopped (%s)", loaded.site.name, ", ".join(stopped) or "none")
    return stopped


def _wait_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            waited, _ = os.waitpid(pid, os.WNOHANG)
            if waited == pid:
                return True
        except ChildProcessError:
            pass  # not our child: started by another blueprint process
        if not Path(f"/proc/{pid}").exists():
            return True
        stat = Path(f"/proc/{pid}/stat").read_text(errors="replace")
        if stat.rsplit(")", 1)[-1].split()[0] == "Z":
            return True
        time.sleep(0.1)
    return False
