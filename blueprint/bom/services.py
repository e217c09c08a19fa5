"""The site mirror's time and name service for sites that have neither: chronyd serving the
mirror's clock over NTP, dnsmasq answering the site's node names and the mirror's own.

Both run in the foreground of their own session with a config rendered into the mirror's
folder, are started and stopped with the mirror by PID, and log into that folder.
"""

from __future__ import annotations

import errno
import ipaddress
import logging
import os
import pwd
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import jinja2

from blueprint.errors import BadInput, DeployFailed
from blueprint.proc import require_tool, start_detached, stop_pids

log = logging.getLogger(__name__)

NTP_PORT = 123
DNS_PORT = 53
CHRONY_CONF = "chrony.conf"
DNSMASQ_CONF = "dnsmasq.conf"
# chronyd drops root for this user (Debian's chrony package makes it); it writes its drift
# and PID files into a folder of its own.
CHRONY_USER = "_chrony"
START_TIMEOUT = 10.0


@dataclass(frozen=True)
class SiteServices:
    """What the mirror serves besides its files: NTP and DNS, each off unless asked for."""

    ntp_port: int | None = None
    dns_port: int | None = None
    # Name -> address: the site's nodes and the mirror itself.
    dns_records: dict[str, str] = field(default_factory=dict)
    dns_domain: str | None = None
    dns_upstreams: list[str] = field(default_factory=list)

    @property
    def wanted(self) -> bool:
        return self.ntp_port is not None or self.dns_port is not None


@dataclass(frozen=True)
class RunningServices:
    ntp_pid: int | None = None
    ntp_port: int | None = None
    dns_pid: int | None = None
    dns_port: int | None = None


def check_services(host: str, services: SiteServices) -> None:
    """Refuse what cannot start, before anything does: a missing tool, an address that is
    not this host's, a port another program holds or one that needs root."""
    if not services.wanted:
        return
    if services.ntp_port is not None and os.geteuid() != 0:
        msg = ("--ntp needs root: chronyd drops to _chrony after binding its port; run "
               "`blueprint mirror serve` as root, or leave out --ntp")
        raise BadInput(msg)
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        address = None
    if address is None or address.is_unspecified:
        msg = (f"--listen {host}: NTP and DNS need the one address the nodes reach the "
               "mirror at (e.g. --listen 10.20.0.2:3150), not a wildcard or a name")
        raise BadInput(msg)
    if services.ntp_port is not None:
        require_tool("chronyd", "chrony")
        check_port(host, services.ntp_port, "--ntp-port", (socket.SOCK_DGRAM,))
    if services.dns_port is not None:
        require_tool("dnsmasq", "dnsmasq-base")
        # dnsmasq answers over UDP and TCP on the same port.
        check_port(host, services.dns_port, "--dns-port",
                    (socket.SOCK_DGRAM, socket.SOCK_STREAM))
    for server in services.dns_upstreams:
        try:
            ipaddress.ip_address(server)
        except ValueError:
            msg = f"--dns-upstream {server}: not an IP address"
            raise BadInput(msg) from None


def check_port(host: str, port: int, option: str, kinds: tuple[socket.SocketKind, ...]) -> None:
    """Refuse `option`'s port when this host cannot bind it on `host` for each of `kinds`."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    for kind in kinds:
        proto = "udp" if kind == socket.SOCK_DGRAM else "tcp"
        with socket.socket(family, kind) as probe:
            if kind == socket.SOCK_STREAM:
                # As servers do: a closed connection's TIME_WAIT does not hold the port.
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((host, port))
            except OSError as exc:
                if exc.errno == errno.EADDRNOTAVAIL:
                    msg = (f"--listen {host}: not an address of this host; use one that "
                           "`ip -brief address` lists")
                elif exc.errno == errno.EADDRINUSE:
                    msg = (f"{option} {port}: {host}:{port}/{proto} is already in use; stop the "
                           "program that holds it or choose another port")
                elif exc.errno == errno.EACCES:
                    msg = f"{option} {port}: ports below 1024 need root"
                else:
                    msg = f"{option} {port}: cannot bind {host}:{port}/{proto}: {exc}"
                raise BadInput(msg) from exc


def _templates() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.PackageLoader("blueprint.bom", "templates"),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )


def render_configs(folder: Path, host: str, services: SiteServices) -> None:
    """Write chronyd's and dnsmasq's configs into `folder` (none for a service not asked for)."""
    env = _templates()
    for name in (CHRONY_CONF, DNSMASQ_CONF):
        (folder / name).unlink(missing_ok=True)
    if services.ntp_port is not None:
        state = folder / "ntp"
        state.mkdir(exist_ok=True)
        if _chrony_user() != "root":
            shutil.chown(state, CHRONY_USER, CHRONY_USER)
        text = env.get_template("chrony.conf.j2").render(
            host=host, port=services.ntp_port, state=state)
        (folder / CHRONY_CONF).write_text(text, encoding="utf-8")
    if services.dns_port is not None:
        text = env.get_template("dnsmasq.conf.j2").render(
            host=host, port=services.dns_port, domain=services.dns_domain,
            upstreams=services.dns_upstreams, records=sorted(services.dns_records.items()))
        (folder / DNSMASQ_CONF).write_text(text, encoding="utf-8")


def _chrony_user() -> str:
    try:
        pwd.getpwnam(CHRONY_USER)
    except KeyError:
        return "root"
    return CHRONY_USER


def start_services(folder: Path, host: str, ntp_port: int | None,
                   dns_port: int | None) -> RunningServices:
    """Start chronyd and dnsmasq from the configs in `folder`; wait until each holds its port.

    A service that exits or does not bind within the timeout is stopped with the others and
    named with the last line of its log.
    """
    started: dict[str, tuple[subprocess.Popen[bytes], int]] = {}
    if ntp_port is not None:
        conf = folder / CHRONY_CONF
        # -x: serve the clock, never set it (the mirror host's clock is not ours to change).
        proc = start_detached(["chronyd", "-d", "-x", "-u", _chrony_user(), "-f", str(conf)],
                              folder / "ntp.log")
        started["ntp"] = (proc, ntp_port)
    if dns_port is not None:
        conf = folder / DNSMASQ_CONF
        proc = start_detached(["dnsmasq", "--keep-in-foreground", f"--conf-file={conf}"],
                              folder / "dns.log")
        started["dns"] = (proc, dns_port)
    running = RunningServices(
        ntp_pid=started["ntp"][0].pid if "ntp" in started else None, ntp_port=ntp_port,
        dns_pid=started["dns"][0].pid if "dns" in started else None, dns_port=dns_port)

    waiting = dict(started)
    deadline = time.monotonic() + START_TIMEOUT
    while waiting and time.monotonic() < deadline:
        for what, (proc, port) in list(waiting.items()):
            # Our own child: its handle says whether it exited (no /proc reading to race).
            if proc.poll() is not None:
                stop_services(running, folder)
                msg = f"the mirror's {what} server exited at start: {_last_line(folder, what)}"
                raise DeployFailed(msg)
            if _bound(host, port):
                del waiting[what]
        time.sleep(0.1)
    if waiting:
        stop_services(running, folder)
        what = next(iter(waiting))
        msg = (f"the mirror's {what} server did not listen on {host}:{waiting[what][1]} "
               f"within {START_TIMEOUT:.0f} s: {_last_line(folder, what)}")
        raise DeployFailed(msg)
    return running


def _bound(host: str, port: int) -> bool:
    """Whether some program holds `host:port`/udp (both services bind UDP first)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as probe:
        try:
            probe.bind((host, port))
        except OSError as exc:
            return exc.errno == errno.EADDRINUSE
    return False


def _last_line(folder: Path, what: str) -> str:
    path = folder / f"{what}.log"
    lines = path.read_text(errors="replace").strip().splitlines() if path.is_file() else []
    return f"{lines[-1] if lines else 'no output'} (see {path})"


def stop_services(running: RunningServices, folder: Path) -> None:
    """Stop the mirror's chronyd and dnsmasq by PID; safe when they no longer run."""
    pids = [(pid, str(folder / conf)) for pid, conf in
            ((running.ntp_pid, CHRONY_CONF), (running.dns_pid, DNSMASQ_CONF)) if pid]
    stop_pids(pids, timeout=10)
