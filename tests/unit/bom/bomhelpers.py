"""Helpers of the bill of materials tests: a stand-in upstream release, minisign keys, sites,
throwaway OpenPGP keys and stand-in flat apt repositories made of real .deb files."""

from __future__ import annotations

import email.utils
import functools
import gzip
import hashlib
import shutil
import subprocess
import tempfile
import threading
from dataclasses import dataclass
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml

from blueprint.artifacts import CatalogueRepository


@dataclass
class StandInRelease:
    """A stand-in for an upstream release server (no real one is reachable here)."""

    root: Path
    url: str

    def publish(self, path: str, data: bytes) -> str:
        """Put a file at `path`; return its sha256."""
        target = self.root / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        return hashlib.sha256(data).hexdigest()


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@dataclass
class KeyPair:
    secret: Path
    public: Path


def make_keypair(folder: Path, name: str) -> KeyPair:
    if shutil.which("minisign") is None:
        pytest.skip("minisign is not installed (apt-get install minisign)")
    folder.mkdir(parents=True, exist_ok=True)
    pair = KeyPair(folder / f"{name}.key", folder / f"{name}.pub")
    subprocess.run(["minisign", "-G", "-W", "-p", str(pair.public), "-s", str(pair.secret)],
                   check=True, capture_output=True)
    return pair


def serve_folder(root: Path) -> tuple[ThreadingHTTPServer, threading.Thread]:
    handler = functools.partial(_Quiet, directory=str(root))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    return server, thread


def write_site(folder: Path, **extra: Any) -> Path:
    """A lab-blueprint site with a control-plane/worker node and a worker/gpu node."""
    site = {"name": "bomtest", "blueprint": "lab", "nodes": [
        {"name": "n1", "address": "10.9.0.11", "roles": ["control-plane", "worker"]},
        {"name": "n2", "address": "10.9.0.12", "roles": ["worker", "gpu"]},
    ], **extra}
    path = folder / "site.yaml"
    path.write_text(yaml.safe_dump(site))
    return path


@dataclass
class SigningKey:
    """A throwaway OpenPGP key in its own GNUPGHOME (removed by `close`)."""

    home: Path
    fingerprint: str
    public: bytes

    def gpg(self, *args: str, data: bytes | None = None) -> bytes:
        return subprocess.run(["gpg", "--homedir", str(self.home), "--batch", "--yes", *args],
                              input=data, check=True, capture_output=True).stdout

    def close(self) -> None:
        subprocess.run(["gpgconf", "--homedir", str(self.home), "--kill", "all"],
                       capture_output=True, check=False)
        shutil.rmtree(self.home, ignore_errors=True)


def make_signing_key(user: str) -> SigningKey:
    if shutil.which("gpg") is None or shutil.which("gpgv") is None:
        pytest.skip("gpg and gpgv are not installed (apt-get install gpg gpgv)")
    # A short path: gpg-agent's socket must fit in a Unix socket address.
    home = Path(tempfile.mkdtemp(prefix="bp-gpg-"))
    home.chmod(0o700)
    key = SigningKey(home, "", b"")
    key.gpg("--passphrase", "", "--quick-gen-key", user, "ed25519", "sign", "never")
    listing = key.gpg("--with-colons", "--list-keys").decode()
    key.fingerprint = next(line.split(":")[9] for line in listing.splitlines()
                           if line.startswith("fpr:"))
    key.public = key.gpg("--armor", "--export", key.fingerprint)
    return key


@dataclass
class StandInDeb:
    name: str
    version: str
    depends: str
    copyright: str | None = None


def build_deb(folder: Path, package: StandInDeb) -> Path:
    """A real .deb made by dpkg-deb, with a copyright file when the package has one."""
    root = folder / f"{package.name}-root"
    (root / "DEBIAN").mkdir(parents=True)
    (root / "DEBIAN" / "control").write_text(
        f"Package: {package.name}\nVersion: {package.version}\nArchitecture: amd64\n"
        "Maintainer: edge-blueprint tests <tests@example.invalid>\n"
        f"Depends: {package.depends}\n"
        f"Description: STAND-IN for NVIDIA's {package.name} (test double, not NVIDIA's)\n")
    if package.copyright is not None:
        doc = root / "usr" / "share" / "doc" / package.name
        doc.mkdir(parents=True)
        (doc / "copyright").write_text(package.copyright)
    deb = folder / f"{package.name}_{package.version}_amd64.deb"
    subprocess.run(["dpkg-deb", "--root-owner-group", "--build", str(root), str(deb)],
                   check=True, capture_output=True)
    shutil.rmtree(root)
    return deb


def write_flat_repo(folder: Path, debs: list[Path], key: SigningKey, *,
                    inrelease: bool = True) -> None:
    """Packages (+ .gz), a Release listing them, signed: InRelease or Release.gpg."""
    stanzas = []
    for deb in debs:
        control = subprocess.run(["dpkg-deb", "-f", str(deb)], check=True, capture_output=True,
                                 text=True).stdout.rstrip("\n")
        data = deb.read_bytes()
        stanzas.append(f"{control}\nFilename: ./{deb.name}\nSize: {len(data)}\n"
                       f"SHA256: {hashlib.sha256(data).hexdigest()}\n")
    packages = "\n".join(stanzas).encode()
    (folder / "Packages").write_bytes(packages)
    (folder / "Packages.gz").write_bytes(gzip.compress(packages, mtime=0))
    lines = ["Origin: blueprint-tests", "Label: STAND-IN for an NVIDIA flat repository",
             f"Date: {email.utils.formatdate(usegmt=True)}", "SHA256:"]
    for name in ("Packages", "Packages.gz"):
        data = (folder / name).read_bytes()
        lines.append(f" {hashlib.sha256(data).hexdigest()} {len(data)} {name}")
    (folder / "Release").write_text("\n".join(lines) + "\n")
    sign_release(folder, key, inrelease=inrelease)


def sign_release(folder: Path, key: SigningKey, *, inrelease: bool = True) -> None:
    for name in ("InRelease", "Release.gpg"):
        (folder / name).unlink(missing_ok=True)
    if inrelease:
        key.gpg("--local-user", key.fingerprint, "--clearsign", "-o", str(folder / "InRelease"),
                str(folder / "Release"))
    else:
        key.gpg("--local-user", key.fingerprint, "--armor", "--detach-sign", "-o",
                str(folder / "Release.gpg"), str(folder / "Release"))


TOOLKIT_VERSION = "1.17.8-1"
STANDIN_PACKAGES = [
    StandInDeb("nvidia-container-toolkit", TOOLKIT_VERSION,
               f"nvidia-container-toolkit-base (= {TOOLKIT_VERSION}), libseccomp2",
               copyright="Format: https://www.debian.org/doc/packaging-manuals/"
                         "copyright-format/1.0/\n\nFiles: *\nCopyright: stand-in\n"
                         "License: Apache-2.0\n"),
    StandInDeb("nvidia-container-toolkit-base", TOOLKIT_VERSION, "libc6 (>= 2.34)"),
]


@dataclass
class StandInFlatRepo:
    """A STAND-IN for NVIDIA's container toolkit repository, served on loopback."""

    folder: Path
    url: str
    key_url: str
    key: SigningKey
    debs: dict[str, Path]

    def entry(self, fingerprint: str | None = None) -> CatalogueRepository:
        return CatalogueRepository(kind="apt", layer="gpu", url=self.url, key=self.key_url,
                                   key_fingerprint=fingerprint or self.key.fingerprint)


# --- Stand-ins for a Helm chart repository and a container registry ------------------------


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def free_ports(count: int) -> list[int]:
    """`count` distinct loopback ports, each free for both TCP and UDP (NTP is UDP, DNS both),
    held together while they are picked so that no two are the same."""
    import contextlib
    import socket

    ports: list[int] = []
    with contextlib.ExitStack() as held:
        while len(ports) < count:
            tcp = held.enter_context(socket.socket())
            tcp.bind(("127.0.0.1", 0))
            port = int(tcp.getsockname()[1])
            udp = held.enter_context(socket.socket(socket.AF_INET, socket.SOCK_DGRAM))
            try:
                udp.bind(("127.0.0.1", port))
            except OSError:
                continue
            ports.append(port)
    return ports


def make_chart(folder: Path, name: str, version: str, *,
               annotations: dict[str, str] | None = None) -> Path:
    """A chart archive as `helm package` writes one: <name>/Chart.yaml (+ values) in a .tgz."""
    import io
    import tarfile

    chart = {"apiVersion": "v2", "name": name, "version": version, "appVersion": version,
             "description": f"STAND-IN chart {name} made by the tests (not an upstream chart)"}
    if annotations:
        chart["annotations"] = annotations
    members = {f"{name}/Chart.yaml": yaml.safe_dump(chart).encode(),
               f"{name}/values.yaml": b"replicas: 1\n"}
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}-{version}.tgz"
    with tarfile.open(path, "w:gz") as archive:
        for member, data in members.items():
            info = tarfile.TarInfo(member)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return path


def write_helm_index(folder: Path, archives: list[Path], *, digests: dict[str, str] | None = None
                     ) -> None:
    """index.yaml as `helm repo index` writes it: per chart its versions, URLs and digests."""
    import tarfile

    entries: dict[str, list[dict[str, Any]]] = {}
    for path in archives:
        with tarfile.open(path, "r:gz") as archive:
            member = next(m for m in archive.getmembers() if m.name.endswith("/Chart.yaml"))
            handle = archive.extractfile(member)
            assert handle is not None
            chart = yaml.safe_load(handle.read())
        digest = (digests or {}).get(path.name) or hashlib.sha256(path.read_bytes()).hexdigest()
        entries.setdefault(chart["name"], []).append(
            {**chart, "urls": [path.name], "digest": digest,
             "created": "2026-12-04T00:00:00Z"})
    (folder / "index.yaml").write_text(yaml.safe_dump({"apiVersion": "v1", "entries": entries}))


@dataclass
class StandInRegistry:
    """Debian's docker-registry (distribution) on loopback, with its own config and storage."""

    folder: Path
    url: str
    process: subprocess.Popen[bytes]

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def put_blob(self, name: str, data: bytes) -> str:
        import urllib.request

        digest = f"sha256:{hashlib.sha256(data).hexdigest()}"
        start = urllib.request.Request(f"{self.url}/v2/{name}/blobs/uploads/", method="POST")
        with urllib.request.urlopen(start) as answer:
            location = answer.headers["Location"]
        if location.startswith("/"):
            location = self.url + location
        separator = "&" if "?" in location else "?"
        put = urllib.request.Request(f"{location}{separator}digest={digest}", data=data,
                                     method="PUT",
                                     headers={"Content-Type": "application/octet-stream"})
        urllib.request.urlopen(put).close()
        return digest

    def put_manifest(self, name: str, reference: str, body: bytes, media_type: str) -> str:
        import urllib.request

        put = urllib.request.Request(f"{self.url}/v2/{name}/manifests/{reference}", data=body,
                                     method="PUT", headers={"Content-Type": media_type})
        urllib.request.urlopen(put).close()
        return f"sha256:{hashlib.sha256(body).hexdigest()}"

    def push_image(self, name: str, tag: str, content: bytes, *,
                   index: bool = True) -> tuple[str, list[str]]:
        """A one-layer linux/amd64 image (and, with `index`, an OCI index naming it and a
        linux/arm64 image); returns the tag's digest and the amd64 image's blob digests."""
        import gzip
        import io
        import json
        import tarfile

        def layer_of(data: bytes) -> bytes:
            buffer = io.BytesIO()
            with tarfile.open(fileobj=buffer, mode="w") as archive:
                info = tarfile.TarInfo("standin.txt")
                info.size = len(data)
                archive.addfile(info, io.BytesIO(data))
            return gzip.compress(buffer.getvalue(), mtime=0)

        def image(architecture: str, data: bytes) -> tuple[bytes, list[str]]:
            layer = layer_of(data)
            config = json.dumps({"architecture": architecture, "os": "linux",
                                 "config": {"Labels": {"stand-in": "true"}},
                                 "rootfs": {"type": "layers", "diff_ids": [
                                     f"sha256:{hashlib.sha256(gzip.decompress(layer)).hexdigest()}"
                                 ]}}).encode()
            config_digest = self.put_blob(name, config)
            layer_digest = self.put_blob(name, layer)
            manifest = json.dumps({
                "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                           "digest": config_digest, "size": len(config)},
                "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                            "digest": layer_digest, "size": len(layer)}]}).encode()
            return manifest, [config_digest, layer_digest]

        amd64, blobs = image("amd64", content)
        amd64_digest = self.put_manifest(name, f"sha256:{hashlib.sha256(amd64).hexdigest()}",
                                         amd64, "application/vnd.oci.image.manifest.v1+json")
        if not index:
            self.put_manifest(name, tag, amd64, "application/vnd.oci.image.manifest.v1+json")
            return amd64_digest, [amd64_digest, *blobs]
        arm64, _ = image("arm64", content + b" arm64")
        arm64_digest = self.put_manifest(name, f"sha256:{hashlib.sha256(arm64).hexdigest()}",
                                         arm64, "application/vnd.oci.image.manifest.v1+json")
        listing = json.dumps({
            "schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": [
                {"mediaType": "application/vnd.oci.image.manifest.v1+json",
                 "digest": amd64_digest, "size": len(amd64),
                 "platform": {"architecture": "amd64", "os": "linux"}},
                {"mediaType": "application/vnd.oci.image.manifest.v1+json",
                 "digest": arm64_digest, "size": len(arm64),
                 "platform": {"architecture": "arm64", "os": "linux"}}]}).encode()
        digest = self.put_manifest(name, tag, listing, "application/vnd.oci.image.index.v1+json")
        return digest, [amd64_digest, *blobs]


def push_chart(registry: StandInRegistry, name: str, tag: str, archive: Path) -> str:
    """A chart as `helm push` stores it in a registry: Helm's config and one chart layer.
    Returns the chart layer's digest (the archive's sha256)."""
    import json

    config = b"{}"
    config_digest = registry.put_blob(name, config)
    data = archive.read_bytes()
    layer_digest = registry.put_blob(name, data)
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.cncf.helm.config.v1+json",
                   "digest": config_digest, "size": len(config)},
        "layers": [{"mediaType": "application/vnd.cncf.helm.chart.content.v1.tar+gzip",
                    "digest": layer_digest, "size": len(data)}]}).encode()
    registry.put_manifest(name, tag, manifest, "application/vnd.oci.image.manifest.v1+json")
    return layer_digest


def start_registry(folder: Path) -> StandInRegistry:
    """Debian's docker-registry on a free loopback port, storage under `folder`."""
    import time
    import urllib.request

    binary = shutil.which("docker-registry")
    if binary is None:
        pytest.skip("docker-registry is not installed (apt-get install docker-registry)")
    folder.mkdir(parents=True, exist_ok=True)
    port = free_port()
    config = {"version": 0.1, "log": {"level": "warn", "accesslog": {"disabled": True}},
              "storage": {"filesystem": {"rootdirectory": str(folder / "storage")},
                          "maintenance": {"uploadpurging": {"enabled": False}}},
              "http": {"addr": f"127.0.0.1:{port}", "secret": "stand-in"}}
    (folder / "config.yml").write_text(yaml.safe_dump(config))
    log = (folder / "registry.log").open("wb")
    process = subprocess.Popen([binary, "serve", str(folder / "config.yml")],
                               stdout=log, stderr=subprocess.STDOUT)
    log.close()
    url = f"http://127.0.0.1:{port}"
    registry = StandInRegistry(folder, url, process)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(f"{url}/v2/", timeout=1).close()
            return registry
        except OSError:
            if process.poll() is not None:
                break
            time.sleep(0.1)
    registry.stop()
    log_text = (folder / "registry.log").read_text()
    raise RuntimeError(f"the stand-in registry did not start: {log_text}")
