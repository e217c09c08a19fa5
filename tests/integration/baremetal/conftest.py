"""Real Redfish peers on loopback for the BMC tests, each stopped by the code that started it.

- `emulator`: sushy-tools' Redfish emulator (fake driver, full feature set) over HTTPS with a
  certificate from a test CA and basic auth from an htpasswd file.
- `emulator_minimum`: the same emulator with its `minimum` feature set: no virtual media.
- `silent_bmc`: a socket that accepts connections and never answers.
- `media_server`: an HTTP server of a small image file, which the emulator downloads on insert.
- `gpu_mockup`: a static mockup (stand-in) of a GPU server, for PCIe devices and BIOS.
"""

from __future__ import annotations

import datetime as dt
import http.server
import ipaddress
import json
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
                   systems: list[dict[str, Any]] | None = None, port: int | None = None
                   ) -> Emulator:
    """Start sushy-emulator (in a network namespace when `prefix` is `ip netns exec NS`)."""
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
                                   stdout=out, stderr=subprocess.STDOUT)
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
