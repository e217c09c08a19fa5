"""Real Redfish peers on loopback for the BMC tests, each stopped by the code that started it.

- `emulator`: sushy-tools' Redfish emulator (fake driver, full feature set) over HTTPS with a
  certificate from a test CA and basic auth from an htpasswd file.
- `emulator_minimum`: the same emulator with its `minimum` feature set: no virtual media.
- `silent_bmc`: a socket that accepts connections and never answers.
- `media_server`: an HTTP server of a small image file, which the emulator downloads on insert.
- `gpu_mockup`: a static mockup (stand-in) of a GPU server, for PCIe devices and BIOS.
- `ipmi_sim`: OpenIPMI's IPMI LAN simulator on a free UDP port, its chassis driving a
  stand-in machine (a `sleep` process that runs while the power is on).
- `ipmi_sim_console`: the same, with Serial-over-LAN to a stand-in serial port that talks
  while the stand-in machine runs.
- `silent_ipmi`: a UDP port that takes datagrams and never answers.
"""

from __future__ import annotations

import datetime as dt
import http.server
import ipaddress
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import bcrypt
import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from blueprint.proc import pid_alive, start_detached, stop_pids

USERNAME = "admin"
PASSWORD = "bmc-canary-Zq81x"  # a canary: it must never show in output or errors
SYSTEM_UUID = "0a7f2d51-6f1e-4b52-9a3c-5b2a1c9e7d01"
BOOT_MAC = "52:54:00:6b:01:01"
SECOND_MAC = "52:54:00:6b:01:02"
MOCKUP_DIR = Path(__file__).parent / "redfish_mockup"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Emulator:
    url: str
    ca: Path | None
    process: subprocess.Popen[bytes]
    log: Path


def _make_ca_and_cert(folder: Path) -> tuple[Path, Path, Path]:
    """A test CA and a server certificate for 127.0.0.1 signed by it."""
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "bmc test CA")])
    ca_cert = (
        x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
        .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                     content_commitment=False, key_encipherment=False,
                                     data_encipherment=False, key_agreement=False,
                                     encipher_only=False, decipher_only=False), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName(
            [x509.IPAddress(ipaddress.IPv4Address("127.0.0.1"))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    ca_path, cert_path, key_path = folder / "ca.pem", folder / "bmc.pem", folder / "bmc.key"
    ca_path.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return ca_path, cert_path, key_path


def start_emulator(folder: Path, *, feature_set: str = "full", tls: bool = False,
                   auth: bool = True, prefix: tuple[str, ...] = (),
                   systems: list[dict[str, Any]] | None = None, port: int | None = None,
                   libvirt: dict[str, Any] | None = None, env: dict[str, str] | None = None
                   ) -> Emulator:
    """Start sushy-emulator (in a network namespace when `prefix` is `ip netns exec NS`).

    With `libvirt` (extra settings: the libvirt URI, the domains it may touch), its libvirt
    driver replaces the fake one.
    """
    folder.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    config: dict[str, Any] = {
        "SUSHY_EMULATOR_FAKE_DRIVER": True,
        "SUSHY_EMULATOR_LISTEN_IP": "127.0.0.1",
        "SUSHY_EMULATOR_LISTEN_PORT": port,
        "SUSHY_EMULATOR_FEATURE_SET": feature_set,
        # Its own state folder: by default every emulator on the machine shares one in /tmp.
        "SUSHY_EMULATOR_STATE_DIR": str(folder / "state"),
        "SUSHY_EMULATOR_FAKE_SYSTEMS": systems or [{
            "uuid": SYSTEM_UUID, "name": "edge-bm-1", "power_state": "Off",
            "nics": [{"mac": BOOT_MAC, "ip": "10.90.0.11"},
                     {"mac": SECOND_MAC, "ip": "10.90.1.11"}],
        }],
        "SUSHY_EMULATOR_STORAGE": {SYSTEM_UUID: [{
            "Id": "1", "Name": "Local Storage Controller",
            "StorageControllers": [{"MemberId": "0", "Name": "Contoso Integrated RAID",
                                    "SpeedGbps": 12}],
            "Drives": ["disk-0"],
        }]},
        "SUSHY_EMULATOR_DRIVES": {(SYSTEM_UUID, "1"): [{
            "Id": "disk-0", "Name": "NVMe 960 GB", "CapacityBytes": 960_197_124_096,
            "Protocol": "NVMe",
        }]},
    }
    if libvirt is not None:
        del config["SUSHY_EMULATOR_FAKE_DRIVER"], config["SUSHY_EMULATOR_FAKE_SYSTEMS"]
        config.update(libvirt)
    ca = None
    if tls:
        ca, cert, key = _make_ca_and_cert(folder)
        config["SUSHY_EMULATOR_SSL_CERT"] = str(cert)
        config["SUSHY_EMULATOR_SSL_KEY"] = str(key)
    if auth:
        digest = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=4)).decode()
        (folder / "htpasswd").write_text(f"{USERNAME}:{digest}\n", encoding="utf-8")
        config["SUSHY_EMULATOR_AUTH_FILE"] = str(folder / "htpasswd")
    conf = folder / "emulator.conf"
    conf.write_text("".join(f"{key} = {value!r}\n" for key, value in config.items()),
                    encoding="utf-8")
    log = folder / "emulator.log"
    emulator_bin = Path(sys.executable).parent / "sushy-emulator"
    with open(log, "wb") as out:
        process = subprocess.Popen([*prefix, str(emulator_bin), "--config", str(conf)],
                                   stdout=out, stderr=subprocess.STDOUT, env=env)
    url = f"{'https' if tls else 'http'}://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            if prefix:  # in another namespace: its log says when it listens
                if "Running on" not in log.read_text(errors="replace"):
                    raise requests.ConnectionError("not yet")
            else:
                requests.get(f"{url}/redfish/v1/", verify=str(ca) if ca else True, timeout=2)
            break
        except requests.RequestException:
            if process.poll() is not None or time.monotonic() > deadline:
                _stop(process)
                pytest.fail(f"sushy-emulator did not start: {log.read_text()[-2000:]}")
            time.sleep(0.3)
    return Emulator(url=url, ca=ca, process=process, log=log)


def stop_emulator(emulator: Emulator) -> None:
    _stop(emulator.process)


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


@pytest.fixture(scope="session")
def emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emulator]:
    started = start_emulator(tmp_path_factory.mktemp("emulator-full"), feature_set="full",
                             tls=True, auth=True)
    yield started
    _stop(started.process)
    assert started.process.poll() is not None


@pytest.fixture(scope="session")
def emulator_minimum(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emulator]:
    started = start_emulator(tmp_path_factory.mktemp("emulator-min"), feature_set="minimum",
                             tls=False, auth=False)
    yield started
    _stop(started.process)


@pytest.fixture
def silent_bmc() -> Iterator[str]:
    """A TCP port that accepts connections (kernel backlog) and never says a word."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        return


@pytest.fixture(scope="session")
def media_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    folder = tmp_path_factory.mktemp("media")
    (folder / "installer.iso").write_bytes(b"CD001 not a real image, a test file\n" * 64)
    handler = lambda *a, **k: _QuietHandler(*a, directory=str(folder), **k)  # noqa: E731
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


class StaticMockup(http.server.BaseHTTPRequestHandler):
    """Serves redfish_mockup/ (a stand-in); a PATCH is merged into the resource in memory."""

    patched: ClassVar[dict[str, dict[str, Any]]] = {}

    def _resource(self) -> tuple[str, dict[str, Any] | None]:
        path = self.path.split("?", 1)[0].rstrip("/")
        if path in self.patched:
            return path, self.patched[path]
        file = MOCKUP_DIR / path.lstrip("/") / "index.json"
        return path, json.loads(file.read_text()) if file.is_file() else None

    def _send(self, code: int, body: dict[str, Any] | None = None) -> None:
        data = json.dumps(body).encode() if body is not None else b""
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        _, body = self._resource()
        self._send(200 if body is not None else 404, body or {"error": "not found"})

    def do_PATCH(self) -> None:
        path, body = self._resource()
        if body is None:
            self._send(404, {"error": "not found"})
            return
        change = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        for key, value in change.items():
            if isinstance(value, dict) and isinstance(body.get(key), dict):
                body[key].update(value)
            else:
                body[key] = value
        self.patched[path] = body
        self._send(204)

    def log_message(self, format: str, *args: Any) -> None:
        return


@pytest.fixture
def gpu_mockup() -> Iterator[str]:
    StaticMockup.patched = {}
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), StaticMockup)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


# OpenIPMI's simulator (ipmi_sim). Its chassis control runs STANDIN_MACHINE: `set power 1`
# starts a stand-in for the machine, `get power` says whether it runs, `set boot pxe` keeps
# the boot device in a file; every call is logged, so a test can read what the BMC was told.
IPMI_SERIAL = "SN-IPMI-0001"
IPMI_BMC_MAC = "52:54:00:aa:bb:01"
STANDIN_SECONDS = "86401"  # the stand-in machine is `sleep 86401`, found again by this
STANDIN_MACHINE = """\
#!/bin/sh
# Stand-in machine behind ipmi_sim: DIR get NAME... | DIR set NAME VALUE...
dir=$1; op=$2; shift 2
echo "$op $*" >> "$dir/calls.log"
running() { [ -f "$dir/machine.pid" ] && kill -0 "$(cat "$dir/machine.pid")" 2>/dev/null; }
start() { setsid sleep {seconds} </dev/null >/dev/null 2>&1 & echo $! > "$dir/machine.pid"; }
stop() { running && kill "$(cat "$dir/machine.pid")"; rm -f "$dir/machine.pid"; }
if [ "$op" = get ]; then
  for name; do case $name in
    power) if running; then echo power:1; else echo power:0; fi ;;
    boot) echo "boot:$(cat "$dir/boot" 2>/dev/null || echo default)" ;;
  esac; done
else
  while [ $# -ge 2 ]; do name=$1; value=$2; shift 2; case $name in
    power) if [ "$value" = 1 ]; then running || start; else stop; fi ;;
    reset) stop; start ;;
    shutdown) stop ;;
    boot) echo "$value" > "$dir/boot" ;;
  esac; done
fi
"""
# The BMC's own LAN settings, as the simulator's lan_config_program answers them.
LAN_SETTINGS = """\
#!/bin/sh
[ "$1" = get ] || exit 0
shift
for name; do case $name in
  ip_addr_src) echo ip_addr_src:static ;;
  ip_addr) echo ip_addr:127.0.0.1 ;;
  mac_addr) echo mac_addr:{mac} ;;
  subnet_mask) echo subnet_mask:255.0.0.0 ;;
  *_ip_addr) echo "$name:0.0.0.0" ;;
  *_mac_addr) echo "$name:00:00:00:00:00:00" ;;
esac; done
"""


class SerialStandIn:
    """The stand-in machine's serial port: a TCP server that ipmi_sim's SOL connects to.

    While the stand-in machine runs (its power is on), it writes a numbered console line
    every 0.2 s from step 0 of each boot, the fourth carrying the canary password, as a
    careless late script might; with the power off it is silent, as a real serial port is.
    """

    def __init__(self, powered: Any) -> None:
        self._powered = powered
        self._server = socket.socket()
        self._server.bind(("127.0.0.1", 0))
        self._server.listen(2)
        self.port = int(self._server.getsockname()[1])
        self._connections: list[socket.socket] = []
        self._stopping = threading.Event()
        self._accepter = threading.Thread(target=self._accept, daemon=True)
        self._accepter.start()

    def _accept(self) -> None:
        while not self._stopping.is_set():
            try:
                conn, _ = self._server.accept()
            except OSError:
                return
            self._connections.append(conn)
            threading.Thread(target=self._feed, args=(conn,), daemon=True).start()

    def _feed(self, conn: socket.socket) -> None:
        step = 0
        try:
            while not self._stopping.is_set():
                if not self._powered():
                    step = 0  # the next power on boots from the start
                else:
                    line = (f"stand-in install: late.sh password={PASSWORD}" if step == 3
                            else f"stand-in machine: boot step {step}")
                    conn.sendall(f"{line}\r\n".encode())
                    step += 1
                time.sleep(0.2)
        except OSError:
            return

    def close(self) -> None:
        self._stopping.set()
        self._server.close()
        for conn in self._connections:
            conn.close()
        self._accepter.join(timeout=5)


@dataclass
class IpmiSim:
    address: str  # 127.0.0.1:PORT, as a site file names it
    folder: Path
    process: subprocess.Popen[bytes]
    serial: SerialStandIn | None = None

    @property
    def calls(self) -> list[str]:
        path = self.folder / "calls.log"
        return path.read_text().splitlines() if path.exists() else []

    def machine_pid(self) -> int | None:
        """PID of the stand-in machine while its power is on."""
        path = self.folder / "machine.pid"
        pid = int(path.read_text()) if path.exists() else None
        return pid if pid_alive(pid, STANDIN_SECONDS) else None


def _fru_field(text: str) -> bytes:
    data = text.encode()
    return bytes([0xC0 | len(data)]) + data  # type/length byte: 8-bit ASCII


def _fru_area(body: bytes) -> bytes:
    area = bytes([0x01, 0]) + body + b"\xc1"
    area += b"\x00" * ((-len(area) - 1) % 8)
    area = bytes([0x01, (len(area) + 1) // 8]) + area[2:]
    return area + bytes([-sum(area) & 0xFF])


def fru_bytes() -> bytes:
    """An IPMI FRU (platform management FRU format 1.0): chassis and product areas."""
    chassis = _fru_area(bytes([0x17]) + _fru_field("CP-1") + _fru_field("CH-0042"))
    product = _fru_area(bytes([0x00]) + _fru_field("Contoso") + _fru_field("Edge 1U")
                        + _fru_field("PN-1") + _fru_field("1.0") + _fru_field(IPMI_SERIAL)
                        + _fru_field("") + _fru_field(""))
    header = bytes([0x01, 0, 1, 0, 1 + len(chassis) // 8, 0, 0])
    return header + bytes([-sum(header) & 0xFF]) + chassis + product


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_ipmi_sim(folder: Path, *, console: bool = False) -> IpmiSim:
    """ipmi_sim on 127.0.0.1, one administrator with the canary password; with `console`,
    Serial-over-LAN to a stand-in serial port (SerialStandIn)."""
    ipmi_sim = shutil.which("ipmi_sim")
    if ipmi_sim is None or shutil.which("ipmitool") is None:
        pytest.fail("ipmi_sim and ipmitool are needed: apt-get install openipmi ipmitool")
    (folder / "state").mkdir(parents=True)
    machine, lan = folder / "standin-machine.sh", folder / "lan-settings.sh"
    machine.write_text(STANDIN_MACHINE.replace("{seconds}", STANDIN_SECONDS))
    lan.write_text(LAN_SETTINGS.replace("{mac}", IPMI_BMC_MAC))
    machine.chmod(0o755)
    lan.chmod(0o755)
    port = free_udp_port()
    machine_pid = folder / "machine.pid"
    serial = (SerialStandIn(lambda: machine_pid.exists() and pid_alive(
        int(machine_pid.read_text() or 0), STANDIN_SECONDS)) if console else None)
    sol = f'  sol "tcp:127.0.0.1:{serial.port}" 115200\n' if serial else ""
    (folder / "lan.conf").write_text(f"""\
name "blueprint-test"
set_working_mc 0x20
  startlan 1
    addr 127.0.0.1 {port}
    priv_limit admin
    allowed_auths_admin md5
    guid a123456789abcdefa123456789abcdef
    lan_config_program "{lan}"
  endlan
  chassis_control "{machine} {folder}"
  user 2 true "{USERNAME}" "{PASSWORD}" admin 10 md5
{sol}""")
    fru = fru_bytes()
    (folder / "bmc.emu").write_text(
        "mc_setbmc 0x20\n"
        "mc_add 0x20 0 no-device-sdrs 0x23 9 8 0x9f 0x1291 0xf02 persist_sdr\n"
        "sel_enable 0x20 1000 0x0a\n"
        f"mc_add_fru_data 0x20 0 {len(fru)} data {' '.join(f'0x{b:02x}' for b in fru)}\n"
        "mc_enable 0x20\n"
    )
    process = start_detached(
        [ipmi_sim, "-n", "-c", str(folder / "lan.conf"), "-f", str(folder / "bmc.emu"),
         "-s", str(folder / "state")], folder / "ipmi_sim.log", cwd=folder)
    sim = IpmiSim(f"127.0.0.1:{port}", folder, process, serial)
    env = dict(os.environ, IPMI_PASSWORD=PASSWORD)
    deadline = time.monotonic() + 20
    while subprocess.run(["ipmitool", "-I", "lanplus", "-H", "127.0.0.1", "-p", str(port),
                          "-U", USERNAME, "-E", "-C", "3", "-N", "1", "-R", "1", "mc", "info"],
                         capture_output=True, env=env, check=False).returncode != 0:
        if process.poll() is not None or time.monotonic() > deadline:
            stop_ipmi_sim(sim)
            pytest.fail(f"ipmi_sim did not start: {(folder / 'ipmi_sim.log').read_text()}")
        time.sleep(0.3)
    return sim


def stop_ipmi_sim(sim: IpmiSim) -> None:
    """The stand-in machine and the simulator, each by its PID."""
    pids = [(sim.process.pid, "ipmi_sim")]
    machine = sim.machine_pid()
    if machine is not None:
        pids.append((machine, STANDIN_SECONDS))
    stop_pids(pids, timeout=10)
    sim.process.wait(timeout=10)
    if sim.serial is not None:
        sim.serial.close()


@pytest.fixture
def ipmi_sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[IpmiSim]:
    sim = start_ipmi_sim(tmp_path_factory.mktemp("ipmi-sim"))
    yield sim
    stop_ipmi_sim(sim)
    assert sim.process.poll() is not None


@pytest.fixture
def ipmi_sim_console(tmp_path_factory: pytest.TempPathFactory) -> Iterator[IpmiSim]:
    """ipmi_sim whose SOL carries the stand-in machine's serial console."""
    sim = start_ipmi_sim(tmp_path_factory.mktemp("ipmi-sim-sol"), console=True)
    yield sim
    stop_ipmi_sim(sim)
    assert sim.process.poll() is not None


@pytest.fixture
def silent_ipmi() -> Iterator[str]:
    """A UDP port that takes every datagram and never answers."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        yield f"127.0.0.1:{sock.getsockname()[1]}"
