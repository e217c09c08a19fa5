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
