"""Resolve Debian packages with their dependencies on the controller, for a node's release.

A private apt configuration (its own sources, lists, cache and dpkg status) points at the
release the nodes run, through the site's apt proxy when it has one, so the host's own apt
state is never read or changed. `apt-get install --print-uris` gives the closure apt would
download on a node whose dpkg status is the baseline (empty: a node with nothing installed);
checksums come from the Packages index that apt verified against the release's signature.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

from debian.deb822 import Release

from blueprint.bom.flatrepo import FlatRepository
from blueprint.errors import BadInput, DeployFailed
from blueprint.proc import require_tool, run

log = logging.getLogger(__name__)

DEBIAN_KEYRING = Path("/usr/share/keyrings/debian-archive-keyring.gpg")
DEFAULT_ARCHIVE = "http://deb.debian.org/debian"
DEFAULT_SECURITY = "http://deb.debian.org/debian-security"
DEFAULT_COMPONENTS = ("main",)
# 'URL' file size [hash]: apt leaves the hash out for some indices (the security suite's).
URI_LINE = re.compile(r"^'(?P<url>[^']+)' (?P<file>\S+) (?P<size>\d+)(?: (?P<hash>\S*))?$")


@dataclass(frozen=True)
class DebianPackage:
    """One .deb file of the closure: what a node downloads to install a package."""

    name: str
    version: str
    architecture: str
    source: str
    source_version: str
    url: str
    size: int
    sha256: str


@dataclass(frozen=True)
class IndexFile:
    """A release index a node's apt fetches (InRelease, Packages.xz), with its checksum."""

    path: str
    url: str
    size: int
    sha256: str


class AptRoot:
    """A private apt configuration for one release, architecture and archive, and the
    third-party flat repositories (already verified) some node roles add to it."""

    def __init__(self, root: Path, *, release: str, architecture: str = "amd64",
                 archive: str = DEFAULT_ARCHIVE, security: str = DEFAULT_SECURITY,
                 components: tuple[str, ...] = DEFAULT_COMPONENTS,
                 proxy: str | None = None, baseline_status: Path | None = None,
                 repositories: Sequence[FlatRepository] = ()) -> None:
        self.root = root
        self.release = release
        self.architecture = architecture
        self.archive = archive.rstrip("/")
        self.security = security.rstrip("/")
        self.components = components
        self.proxy = proxy
        self.baseline_status = baseline_status
        self.repositories = {repository.name: repository for repository in repositories}
        self._cached_index: dict[tuple[str, str, str], dict[str, str]] | None = None

    def suites(self) -> list[tuple[str, str]]:
        """(archive, suite) pairs: the release, its updates and its security suite, as
        debian-installer sets a node's sources up."""
        return [(self.archive, self.release), (self.archive, f"{self.release}-updates"),
                (self.security, f"{self.release}-security")]

    @property
    def config(self) -> Path:
        return self.root / "apt.conf"

    def prepare(self) -> None:
        """Write the configuration and fetch the release's indices (apt checks signatures)."""
        require_tool("apt-get", "apt")
        if not DEBIAN_KEYRING.is_file():
            msg = f"{DEBIAN_KEYRING} is missing; install it with: apt-get install " \
                  "debian-archive-keyring"
            raise DeployFailed(msg)
        for sub in ("etc/apt/apt.conf.d", "etc/apt/preferences.d", "etc/apt/sources.list.d",
                    "state/lists/partial", "cache/archives/partial"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        status = self.root / "status"
        if self.baseline_status is not None:
            shutil.copyfile(self.baseline_status, status)
        else:
            status.write_text("", encoding="utf-8")
        (self.root / "etc/apt/sources.list").write_text(
            self._sources(list(self.repositories)), encoding="utf-8")
        lines = [
            f'Dir::Etc "{self.root}/etc/apt";',
            f'Dir::State "{self.root}/state";',
            f'Dir::State::status "{status}";',
            f'Dir::Cache "{self.root}/cache";',
            f'APT::Architecture "{self.architecture}";',
            f'APT::Architectures {{ "{self.architecture}"; }};',
            # As the nodes' apt (and Ansible's apt module) do by default.
            'APT::Install-Recommends "true";',
            'Acquire::GzipIndexes "false";',
            'Acquire::Languages "none";',
            'Acquire::PDiffs "false";',
        ]
        if self.proxy:
            lines.append(f'Acquire::http::Proxy "{self.proxy}";')
        self.config.write_text("\n".join(lines) + "\n", encoding="utf-8")
        log.info("Fetching the %s indices from %s", self.release, self.archive)
        self._apt(["apt-get", "update", "-qq"])

    def _sources(self, repositories: Sequence[str]) -> str:
        """Debian's suites, then the named third-party repositories."""
        lines = [f"deb [signed-by={DEBIAN_KEYRING}] {base} {suite} {' '.join(self.components)}\n"
                 for base, suite in self.suites()]
        lines += [self.repositories[name].source_line() for name in sorted(repositories)]
        return "".join(lines)

    def _sources_file(self, repositories: Sequence[str]) -> Path:
        """A sources list with only these third-party repositories beside Debian's, as a
        node that has only their roles' sources sees it (their lists are fetched already)."""
        if not repositories:
            name = "sources-debian.list"
        else:
            name = f"sources-{'+'.join(sorted(repositories))}.list"
        path = self.root / "etc/apt" / name
        path.write_text(self._sources(repositories), encoding="utf-8")
        return path

    def _apt(self, cmd: list[str]) -> str:
        env = {**os.environ, "APT_CONFIG": str(self.config), "LC_ALL": "C"}
        done = run(cmd, env=env, check=False, timeout=900)
        if done.returncode != 0:
            errors = [line[3:] for line in done.stderr.splitlines() if line.startswith("E: ")]
            detail = "; ".join(errors) or done.stderr.strip() or f"exit {done.returncode}"
            raise DeployFailed(f"apt for {self.release}/{self.architecture}: {detail}")
        return done.stdout

    def _lists(self, suffix: str) -> list[Path]:
        return sorted((self.root / "state/lists").glob(f"*{suffix}"))

    def available(self) -> set[str]:
        """Package names the release offers (Debian's suites, not third-party repositories)."""
        prefixes = tuple(_list_name(f"{base}/dists/{suite}/") for base, suite in self.suites())
        names: set[str] = set()
        for path in self._lists("_Packages"):
            if path.name.startswith(prefixes):
                names.update(name for name, _, _ in read_packages_index(path))
        return names

    def _index(self) -> dict[tuple[str, str, str], dict[str, str]]:
        if self._cached_index is None:
            self._cached_index = {}
            for path in self._lists("_Packages"):
                self._cached_index.update(read_packages_index(path))
        return self._cached_index

    def resolve(self, packages: list[str], where: str,
                repositories: Sequence[str] = ()) -> list[DebianPackage]:
        """The .deb files a node with the baseline status downloads to install `packages`,
        with Debian's suites and the named third-party repositories as its sources."""
        if not packages:
            return []
        offered = self.available().union(*(self.repositories[name].packages
                                           for name in repositories))
        missing = sorted(set(packages) - offered)
        if missing:
            also = "".join(f", nor in repository {name}" for name in sorted(repositories))
            msg = (f"{where}: package {', '.join(missing)} is not in Debian {self.release} "
                   f"({', '.join(self.components)}, {self.architecture}){also}")
            raise BadInput(msg)
        sources = self._sources_file(repositories)
        # One package cache per set of sources, so no set ever reads another's.
        cache = self.root / "cache" / sources.stem
        out = self._apt(["apt-get", "install", "--print-uris", "-qq",
                         "-o", f"Dir::Etc::SourceList={sources}",
                         "-o", f"Dir::Cache::pkgcache={cache}-pkgcache.bin",
                         "-o", f"Dir::Cache::srcpkgcache={cache}-srcpkgcache.bin",
                         "--", *packages])
        index = self._index()
        resolved = []
        for line in out.splitlines():
            if not line.strip():
                continue
            match = URI_LINE.match(line.strip())
            if not match:
                msg = f"{where}: apt printed a line this version cannot read: {line!r}"
                raise DeployFailed(msg)
            name, version, arch = _split_deb_name(match["file"])
            entry = index.get((name, version, arch))
            if entry is None or "SHA256" not in entry:
                msg = f"{where}: {name} {version} has no SHA256 in the {self.release} index"
                raise DeployFailed(msg)
            source, _, source_version = entry.get("Source", name).partition(" ")
            resolved.append(DebianPackage(
                name=name, version=version, architecture=arch, source=source,
                source_version=source_version.strip("()") or version, url=match["url"],
                size=int(match["size"]), sha256=entry["SHA256"]))
        return resolved

    def index_files(self) -> list[IndexFile]:
        """Each suite's InRelease and Packages.xz per component, as a node's apt fetches them."""
        files = []
        for base, suite in self.suites():
            url = f"{base}/dists/{suite}"
            inrelease = self.root / "state/lists" / _list_name(f"{url}/InRelease")
            if not inrelease.is_file():
                msg = f"no InRelease for {suite} was fetched from {base}"
                raise DeployFailed(msg)
            data = inrelease.read_bytes()
            files.append(IndexFile(f"dists/{suite}/InRelease", f"{url}/InRelease", len(data),
                                   hashlib.sha256(data).hexdigest()))
            release = Release(data.decode("utf-8"))
            listed = {entry["name"]: entry for entry in release.get("SHA256", [])}
            for component in self.components:
                # Nodes fetch the English package descriptions too, and fail without them;
                # apt takes the first compression the release lists (bookworm: xz only).
                for stem in (f"binary-{self.architecture}/Packages", "i18n/Translation-en"):
                    name = next((f"{component}/{stem}{ext}" for ext in INDEX_COMPRESSIONS
                                 if f"{component}/{stem}{ext}" in listed), None)
                    if name is None:
                        continue
                    entry = listed[name]
                    files.append(IndexFile(f"dists/{suite}/{name}", f"{url}/{name}",
                                           int(entry["size"]), entry["sha256"]))
        for repository in self.repositories.values():
            files += [IndexFile(url_path(index.url), index.url, index.size, index.sha256)
                      for index in repository.indices]
        return files


# apt's preference among the compressed forms of an index (Acquire::CompressionTypes).
INDEX_COMPRESSIONS = (".xz", ".bz2", ".gz")


# Characters apt's URItoFileName quotes as %xx before it turns '/' into '_'.
APT_QUOTED = set('\\|{}[]<>"^~_=!@#$%&*')


def _list_name(url: str) -> str:
    """The file apt keeps a fetched index in (its URItoFileName: no scheme, some characters
    quoted, '/' as '_')."""
    rest = url.split("://", 1)[-1]
    quoted = "".join(f"%{ord(char):02x}" if char in APT_QUOTED else char for char in rest)
    return quoted.replace("/", "_")


INDEX_FIELDS = ("Package", "Version", "Architecture", "Source", "SHA256", "Size", "Filename")


def read_packages_index(path: Path) -> dict[tuple[str, str, str], dict[str, str]]:
    """The fields the lock needs from a Packages index, per (name, version, architecture).

    A plain field scan: deb822's general parser takes minutes over a whole release's index.
    """
    found: dict[tuple[str, str, str], dict[str, str]] = {}
    text = path.read_text(encoding="utf-8", errors="replace")
    for paragraph in text.split("\n\n"):
        fields: dict[str, str] = {}
        for line in paragraph.splitlines():
            if line[:1] in (" ", "\t"):
                continue
            key, _, value = line.partition(":")
            if key in INDEX_FIELDS:
                fields[key] = value.strip()
        if "Package" in fields and "Version" in fields:
            found[(fields["Package"], fields["Version"], fields.get("Architecture", ""))] = fields
    return found


def _split_deb_name(filename: str) -> tuple[str, str, str]:
    """name_version_arch.deb as apt names it (the epoch's ':' is %3a)."""
    stem = unquote(filename).removesuffix(".deb")
    name, version, arch = stem.split("_")
    return name, version, arch


def url_path(url: str) -> str:
    """The path of a URL without its leading '/', as it is laid out in a bundle.

    Flat repositories name their files `./name.deb`; the '.' segments go, as a server
    resolves them, so a bundle and its manifest hold one spelling of each path.
    """
    parts = unquote(urlsplit(url).path).split("/")
    return "/".join(part for part in parts if part not in ("", "."))
