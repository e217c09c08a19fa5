"""Third-party flat apt repositories of the catalogue (NVIDIA's), checked before apt uses them.

A flat repository (`deb [signed-by=KEY] URL /`) keeps InRelease, or Release with
Release.gpg, and its Packages index at its root. Before the lock's private apt reads one:
the signing key is fetched from the catalogue's URL and only the key whose fingerprint the
catalogue pins is kept; the Release is verified with that key alone (gpgv); the Packages
index is checked against the Release's SHA256. apt then verifies the same files again, as
a node's apt does. Any mismatch stops the lock with the repository, the URL and what differed.
"""

from __future__ import annotations

import bz2
import gzip
import hashlib
import logging
import lzma
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from debian.deb822 import Release

from blueprint.artifacts import CatalogueRepository
from blueprint.bom.fetch import fetch_bytes
from blueprint.errors import BadInput, DeployFailed
from blueprint.proc import require_tool

log = logging.getLogger(__name__)

# apt's preference among an index's compressed forms, then the plain file.
PACKAGES_NAMES = ("Packages.xz", "Packages.bz2", "Packages.gz", "Packages")
DECOMPRESS = {".xz": lzma.decompress, ".bz2": bz2.decompress, ".gz": gzip.decompress}


class RepositoryRefused(DeployFailed):
    """A third-party repository whose key, signature or index does not check out."""


@dataclass(frozen=True)
class IndexEntry:
    """One index file of a flat repository, as the lock pins it."""

    name: str
    url: str
    size: int
    sha256: str


@dataclass(frozen=True)
class FlatRepository:
    """A catalogue repository, verified: its URL for apt, its pinned keyring, its indices."""

    name: str
    url: str  # as apt's sources name it ($(ARCH) kept)
    base: str  # the URL with $(ARCH) replaced, without the trailing '/'
    keyring: Path
    indices: tuple[IndexEntry, ...]
    packages: frozenset[str]

    def source_line(self) -> str:
        return f"deb [signed-by={self.keyring}] {self.url} /\n"


def pinned_keyring(name: str, entry: CatalogueRepository, dest: Path,
                   proxy: str | None) -> Path:
    """Fetch the repository's key and keep only the key whose fingerprint the catalogue pins."""
    require_tool("gpg", "gpg")
    if not entry.key_fingerprint:
        msg = (f"catalogue repository {name}: no key_fingerprint is pinned; the lock trusts "
               f"only a pinned key (add the fingerprint of {entry.key or 'its key'})")
        raise BadInput(msg)
    data = fetch_bytes(entry.key, proxy=proxy)
    with tempfile.TemporaryDirectory(prefix="bp-gnupg-") as home:
        gpg = ["gpg", "--homedir", home, "--batch", "--quiet", "--no-autostart"]
        imported = subprocess.run([*gpg, "--import"], input=data, capture_output=True,
                                  check=False)
        listed = subprocess.run([*gpg, "--with-colons", "--list-keys"], capture_output=True,
                                text=True, check=False)
        found = _primary_fingerprints(listed.stdout)
        if entry.key_fingerprint not in found:
            seen = ", ".join(found) or f"no OpenPGP key ({imported.stderr.decode().strip()})"
            msg = (f"catalogue repository {name}: the key at {entry.key} is {seen}; the "
                   f"catalogue pins {entry.key_fingerprint}. Nothing from this repository is "
                   "trusted; check the key out of band and correct key or key_fingerprint")
            raise RepositoryRefused(msg)
        export = subprocess.run([*gpg, "--export", entry.key_fingerprint],
                                capture_output=True, check=False)
        if export.returncode != 0 or not export.stdout:
            last = (export.stderr.decode(errors="replace").strip().splitlines() or ["no key"])[-1]
            msg = (f"catalogue repository {name}: gpg could not export key "
                   f"{entry.key_fingerprint}: {last}")
            raise RepositoryRefused(msg)
        exported = export.stdout
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_bytes(exported)
    return dest


def _primary_fingerprints(colons: str) -> list[str]:
    """Fingerprints of the primary keys in `gpg --with-colons` output (not subkeys')."""
    found, after_pub = [], False
    for line in colons.splitlines():
        fields = line.split(":")
        if fields[0] in ("pub", "sub"):
            after_pub = fields[0] == "pub"
        elif fields[0] == "fpr" and after_pub and len(fields) > 9:
            found.append(fields[9].upper())
            after_pub = False
    return found


def verify_flat_repository(name: str, entry: CatalogueRepository, keyring: Path,
                           architecture: str, proxy: str | None) -> FlatRepository:
    """Check the Release signature with the pinned key and the Packages index against it."""
    require_tool("gpgv", "gpgv")
    base = entry.url.replace("$(ARCH)", architecture).rstrip("/")
    indices: list[IndexEntry] = []

    # The signed Release: InRelease, or Release with its detached Release.gpg.
    try:
        inrelease = fetch_bytes(f"{base}/InRelease", proxy=proxy)
    except DeployFailed:
        inrelease = None
    with tempfile.TemporaryDirectory(prefix="bp-release-") as tmp:
        work = Path(tmp)
        if inrelease is not None:
            (work / "InRelease").write_bytes(inrelease)
            cmd = ["gpgv", "--keyring", str(keyring), "--output", str(work / "Release"),
                   str(work / "InRelease")]
            files = {"InRelease": inrelease}
        else:
            release_data = fetch_bytes(f"{base}/Release", proxy=proxy)
            signature = fetch_bytes(f"{base}/Release.gpg", proxy=proxy)
            (work / "Release").write_bytes(release_data)
            (work / "Release.gpg").write_bytes(signature)
            cmd = ["gpgv", "--keyring", str(keyring), str(work / "Release.gpg"),
                   str(work / "Release")]
            files = {"Release": release_data, "Release.gpg": signature}
        done = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            detail = "; ".join(line.removeprefix("gpgv:").strip() for line in
                               done.stderr.strip().splitlines()[-2:])
            msg = (f"repository {name}: the Release at {base}/ is not signed by the pinned key "
                   f"{entry.key_fingerprint} ({detail}); refused")
            raise RepositoryRefused(msg)
        release = Release((work / "Release").read_text(encoding="utf-8"))
    for file_name, data in files.items():
        indices.append(IndexEntry(file_name, f"{base}/{file_name}", len(data),
                                  hashlib.sha256(data).hexdigest()))

    # The Packages index the Release lists, in the form apt prefers, checked against it.
    listed = {item["name"]: item for item in release.get("SHA256", [])}
    index_name = next((candidate for candidate in PACKAGES_NAMES if candidate in listed), None)
    if index_name is None:
        msg = f"repository {name}: the signed Release at {base}/ lists no Packages index"
        raise RepositoryRefused(msg)
    data = fetch_bytes(f"{base}/{index_name}", proxy=proxy)
    want = listed[index_name]
    seen = hashlib.sha256(data).hexdigest()
    if seen != want["sha256"] or len(data) != int(want["size"]):
        msg = (f"repository {name}: {base}/{index_name} has sha256 {seen} ({len(data)} bytes); "
               f"the signed Release says {want['sha256']} ({want['size']} bytes); refused")
        raise RepositoryRefused(msg)
    indices.append(IndexEntry(index_name, f"{base}/{index_name}", len(data), seen))
    suffix = Path(index_name).suffix
    text = DECOMPRESS[suffix](data) if suffix in DECOMPRESS else data
    packages = frozenset(line.split(":", 1)[1].strip()
                         for line in text.decode("utf-8", "replace").splitlines()
                         if line.startswith("Package:"))
    log.info("Repository %s: %d packages, signed by %s", name, len(packages),
             entry.key_fingerprint)
    return FlatRepository(name, entry.url, base, keyring, tuple(indices), packages)
