"""The site mirror's NTP (chronyd) and DNS (dnsmasq) on loopback, asked with real clients:
an SNTP request over a UDP socket and Debian's `dig`; `mirror stop` ends both by PID.

Ports are free high ones (the options exist for this; a site uses 123 and 53).
"""

from __future__ import annotations

import json
import shutil
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest
from bomhelpers import KeyPair, StandInRelease, free_port, free_ports, write_site
from test_bundle import standin_lock

from blueprint.bom.bundle import build_bundle
from blueprint.bom.mirror import load_mirror_state
from blueprint.proc import pid_alive

# Seconds between NTP's era (1900) and the Unix epoch.
NTP_EPOCH = 2208988800

pytestmark = pytest.mark.skipif(
    not all(shutil.which(tool) for tool in ("chronyd", "dnsmasq", "dig")),
    reason="needs chrony, dnsmasq-base and bind9-dnsutils (scripts/setup installs them)")


def blueprint(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "blueprint.cli", *args], capture_output=True,
                          text=True, check=False, timeout=120)


def sntp(port: int) -> tuple[int, int, float]:
    """Mode, stratum and transmit time of the server's answer to one SNTPv4 client request."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(3)
        sock.sendto(b"\x23" + bytes(47), ("127.0.0.1", port))  # LI 0, version 4, mode 3
        reply, _ = sock.recvfrom(512)
    seconds, fraction = struct.unpack("!II", reply[40:48])
    return reply[0] & 0x7, reply[1], seconds - NTP_EPOCH + fraction / 2**32


def dig(port: int, name: str) -> tuple[str, str]:
    """The answer's status and its A records, as `dig` reports them."""
    out = subprocess.run(["dig", "@127.0.0.1", "-p", str(port), name, "A", "+tries=1",
                          "+time=3"], capture_output=True, text=True, check=True).stdout
    status = out.split("status: ", 1)[1].split(",", 1)[0]
    answers = subprocess.run(["dig", "@127.0.0.1", "-p", str(port), name, "A", "+short",
                              "+tries=1", "+time=3"], capture_output=True, text=True,
                             check=True).stdout.split()
    return status, " ".join(answers)


@pytest.fixture
def bundle(tmp_path: Path, standin_release: StandInRelease, keys: KeyPair) -> Path:
    lock_file = standin_lock(tmp_path / "site", standin_release, ["alpha"])
    return build_bundle(lock_file, tmp_path / "b.tar", keys.secret, tmp_path / "cache").path


def dns_site(folder: Path) -> Path:
    """The bundle's site with a provisioning section, so its nodes have a domain."""
    folder.mkdir(parents=True, exist_ok=True)
    return write_site(folder, network={"subnet": "10.9.0.0/24"},
                      provision={"boot_server": "10.9.0.2", "interface": "eth0",
                                 "domain": "edge.test"})


def test_mirror_serves_time_and_names_and_stop_ends_them(tmp_path: Path, bundle: Path,
                                                         keys: KeyPair) -> None:
    site = dns_site(tmp_path / "dns-site")
    folder = tmp_path / "mirror"
    ntp_port, dns_port, http_port = free_ports(3)
    started = time.monotonic()
    done = blueprint("mirror", "serve", str(bundle), "--pubkey", str(keys.public),
                     "--listen", f"127.0.0.1:{http_port}", "--folder", str(folder),
                     "--ntp", "--ntp-port", str(ntp_port), "--dns", str(site),
                     "--dns-port", str(dns_port), "--mirror-name", "depot")
    state = load_mirror_state(folder)
    try:
        assert done.returncode == 0, done.stderr + done.stdout
        assert time.monotonic() - started < 60
        assert state is not None and state.ntp_pid and state.dns_pid
        assert f"NTP on 127.0.0.1:{ntp_port}/udp" in done.stdout
        assert f"DNS on 127.0.0.1:{dns_port}" in done.stdout

        # NTP: a server's answer (mode 4) at the configured stratum, with this host's time.
        mode, stratum, transmit = sntp(ntp_port)
        assert (mode, stratum) == (4, 10)
        assert abs(transmit - time.time()) < 5

        # DNS: the site's nodes by short and full name, the mirror by its own name.
        assert dig(dns_port, "n1") == ("NOERROR", "10.9.0.11")
        assert dig(dns_port, "n2.edge.test") == ("NOERROR", "10.9.0.12")
        assert dig(dns_port, "depot") == ("NOERROR", "127.0.0.1")
        # Not a site name: the site's domain is answered here only, nothing goes upstream.
        assert dig(dns_port, "n9.edge.test")[0] == "NXDOMAIN"
        assert dig(dns_port, "deb.debian.org")[0] in ("REFUSED", "NXDOMAIN")

        # Configs and logs in the mirror's folder.
        conf = (folder / "dnsmasq.conf").read_text()
        assert "no-resolv" in conf and "server=" not in conf
        assert "local stratum 10" in (folder / "chrony.conf").read_text()
        assert "query[A] n2.edge.test" in (folder / "dns.log").read_text()
        assert (folder / "ntp.log").is_file()
    finally:
        stopped = blueprint("mirror", "stop", "--folder", str(folder))
    assert stopped.returncode == 0, stopped.stderr
    assert state is not None
    for pid in (state.pid, state.ntp_pid, state.dns_pid):
        assert not pid_alive(pid), f"PID {pid} still runs after mirror stop"
    assert load_mirror_state(folder) is None


def test_bad_service_options_are_refused_before_anything_starts(
        tmp_path: Path, bundle: Path, keys: KeyPair) -> None:
    site = dns_site(tmp_path / "dns-site")
    folder = tmp_path / "mirror"
    base = ["mirror", "serve", str(bundle), "--pubkey", str(keys.public), "--folder",
            str(folder)]
    http = f"{free_port()}"

    # A port another program holds (here the test's own socket on the NTP port).
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as holder:
        holder.bind(("127.0.0.1", 0))
        taken = holder.getsockname()[1]
        done = blueprint(*base, "--listen", f"127.0.0.1:{http}", "--ntp", "--ntp-port",
                         str(taken))
    assert done.returncode == 2, done.stderr
    assert f"--ntp-port {taken}: 127.0.0.1:{taken}/udp is already in use" in done.stderr

    # DNS needs TCP too: a listener on the TCP port alone is enough to refuse it.
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        taken = holder.getsockname()[1]
        done = blueprint(*base, "--listen", f"127.0.0.1:{http}", "--dns", str(site),
                         "--dns-port", str(taken))
    assert done.returncode == 2, done.stderr
    assert f"127.0.0.1:{taken}/tcp is already in use" in done.stderr

    # An address that is not this host's (TEST-NET-1), and a wildcard.
    done = blueprint(*base, "--listen", f"192.0.2.1:{http}", "--ntp", "--ntp-port",
                     str(free_port()))
    assert done.returncode == 2, done.stderr
    assert "--listen 192.0.2.1: not an address of this host" in done.stderr
    done = blueprint(*base, "--listen", f"0.0.0.0:{http}", "--dns", str(site))
    assert done.returncode == 2, done.stderr
    assert "not a wildcard" in done.stderr

    # A DNS setting without --dns, and an upstream that is not an address.
    done = blueprint(*base, "--listen", f"127.0.0.1:{http}", "--dns-upstream", "10.0.0.53")
    assert done.returncode == 2 and "which is not given" in done.stderr
    done = blueprint(*base, "--listen", f"127.0.0.1:{http}", "--dns", str(site),
                     "--dns-port", str(free_port()), "--dns-upstream", "resolver.example")
    assert done.returncode == 2 and "--dns-upstream resolver.example" in done.stderr

    # Nothing was unpacked, started or recorded.
    assert not (folder / "root").exists()
    assert load_mirror_state(folder) is None


def test_dns_forwards_only_to_the_upstreams_given(tmp_path: Path, bundle: Path,
                                                  keys: KeyPair) -> None:
    site = dns_site(tmp_path / "dns-site")
    folder = tmp_path / "mirror"
    done = blueprint("mirror", "serve", str(bundle), "--pubkey", str(keys.public),
                     "--listen", f"127.0.0.1:{free_port()}", "--folder", str(folder),
                     "--dns", str(site), "--dns-port", str(free_port()),
                     "--dns-upstream", "10.9.0.53", "--mirror-name", "depot")
    try:
        assert done.returncode == 0, done.stderr + done.stdout
        conf = (folder / "dnsmasq.conf").read_text()
        assert "server=10.9.0.53" in conf
        assert "local=/edge.test/" in conf
        state = json.loads((folder / "mirror.json").read_text())
        assert state["ntp_pid"] is None and state["dns_pid"]
    finally:
        blueprint("mirror", "stop", "--folder", str(folder))
    assert not pid_alive(state["dns_pid"])


def test_an_update_restarts_time_and_names_as_they_were(
        tmp_path: Path, standin_release: StandInRelease, keys: KeyPair) -> None:
    from blueprint.bom.mirror import serve, stop
    from blueprint.bom.services import SiteServices
    from blueprint.errors import BadInput

    site = tmp_path / "site"
    old_lock = standin_lock(site, standin_release, ["alpha"])
    kept = tmp_path / "old.lock.yaml"
    kept.write_text(old_lock.read_text())
    full = build_bundle(old_lock, tmp_path / "full.tar", keys.secret, tmp_path / "cache")
    folder = tmp_path / "mirror"
    ntp_port, dns_port, http_port = free_ports(3)
    services = SiteServices(ntp_port=ntp_port, dns_port=dns_port,
                            dns_records={"n1": "10.9.0.11", "depot": "127.0.0.1"})
    state = serve(full.path, keys.public, folder, "127.0.0.1", http_port, services=services)
    try:
        new_lock = standin_lock(site, standin_release, ["alpha", "beta"])
        update = build_bundle(new_lock, tmp_path / "u.tar", keys.secret, tmp_path / "cache",
                              since=kept).path

        # Service options with an update are refused; the running mirror is left as it was.
        with pytest.raises(BadInput, match="keeps the running mirror's address, NTP and DNS"):
            serve(update, keys.public, folder, "127.0.0.1", free_port(), services=services)
        assert pid_alive(state.ntp_pid) and pid_alive(state.dns_pid)

        applied = serve(update, keys.public, folder, "127.0.0.1", free_port())
        assert (applied.ntp_port, applied.dns_port) == (state.ntp_port, state.dns_port)
        assert applied.ntp_pid != state.ntp_pid and applied.dns_pid != state.dns_pid
        assert not pid_alive(state.ntp_pid) and not pid_alive(state.dns_pid)
        assert applied.dns_port is not None and applied.ntp_port is not None
        assert dig(applied.dns_port, "n1") == ("NOERROR", "10.9.0.11")
        assert sntp(applied.ntp_port)[:2] == (4, 10)
    finally:
        stop(folder)
    assert not pid_alive(applied.ntp_pid) and not pid_alive(applied.dns_pid)
