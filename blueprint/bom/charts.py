"""Helm charts in the bill of materials: pinned chart archives and the site mirror's index.

A chart is located through its repository's `index.yaml` (the archive's URL and its sha256,
the index's `digest`), or, for an `oci://` repository, through the registry's manifest of
the chart version (the chart layer's digest). The archive is downloaded and checked against
that digest before it is locked. The site mirror serves each catalogue repository's charts as
a Helm repository of its own, with an index made from the charts' own Chart.yaml.
"""

from __future__ import annotations

import io
import json
import logging
import tarfile
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from blueprint.bom.fetch import download, fetch_bytes, sha256_of
from blueprint.bom.licences import NOASSERTION
from blueprint.bom.oci import HELM_CHART_LAYER, MANIFEST_ACCEPT, RegistryClient
from blueprint.errors import DeployFailed

log = logging.getLogger(__name__)

LICENCE_ANNOTATION = "artifacthub.io/license"


@dataclass(frozen=True)
class ChartPin:
    """A chart the blueprint pins: which, at what version, from which catalogue repository."""

    key: str
    chart: str
    version: str
    repository: str
    repository_url: str

    @property
    def path(self) -> str:
        """Its place in a bundle and on the mirror: a Helm repository per catalogue name."""
        return f"helm/{self.repository}/{self.chart}-{self.version}.tgz"


@dataclass
class ChartArchive:
    pin: ChartPin
    url: str
    sha256: str
    size: int
    licence: str


class ChartUnresolved(Exception):
    """A chart whose archive or digest the repository does not give."""


class ChartRefused(DeployFailed):
    """A chart archive that does not match the digest its repository gives."""


_indexes: dict[tuple[str, str | None], dict[str, Any]] = {}


def repository_index(url: str, proxy: str | None) -> dict[str, Any]:
    """A Helm repository's index.yaml (once per run; some are megabytes)."""
    key = (url, proxy)
    if key not in _indexes:
        text = fetch_bytes(f"{url.rstrip('/')}/index.yaml", proxy=proxy, timeout=120)
        loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
        data = yaml.load(text, Loader=loader)  # SafeLoader or its C twin
        if not isinstance(data, dict) or not isinstance(data.get("entries"), dict):
            msg = f"{url}/index.yaml is not a Helm repository index (no entries)"
            raise DeployFailed(msg)
        _indexes[key] = data
    return _indexes[key]


def resolve_chart(pin: ChartPin, files: Path, proxy: str | None) -> ChartArchive:
    """The pinned chart's archive, downloaded into `files/<path>` and checked; its licence."""
    if pin.repository_url.startswith("oci://"):
        url, digest = _oci_chart(pin, files, proxy)
    else:
        url, digest = _index_chart(pin, proxy)
        try:
            download(url, files / pin.path, digest, proxy=proxy)
        except DeployFailed as exc:
            if "does not match" not in str(exc):
                raise
            msg = (f"chart {pin.chart} {pin.version}: the archive {url} does not have the "
                   f"sha256 {digest} that {pin.repository_url}/index.yaml gives; refused "
                   f"({exc})")
            raise ChartRefused(msg) from exc
    archive = files / pin.path
    return ChartArchive(pin, url, digest, archive.stat().st_size,
                        chart_licence(chart_metadata(archive)))


def _index_chart(pin: ChartPin, proxy: str | None) -> tuple[str, str]:
    index = repository_index(pin.repository_url, proxy)
    versions = index["entries"].get(pin.chart) or []
    entry = next((item for item in versions if str(item.get("version")) == pin.version), None)
    if entry is None:
        known = ", ".join(str(item.get("version")) for item in versions[:8]) or "none"
        msg = (f"{pin.repository_url}/index.yaml has no {pin.chart} {pin.version} "
               f"(newest listed: {known})")
        raise ChartUnresolved(msg)
    digest = str(entry.get("digest") or "").removeprefix("sha256:").lower()
    urls = entry.get("urls") or []
    if not urls:
        msg = f"{pin.repository_url}/index.yaml: {pin.chart} {pin.version} lists no URL"
        raise ChartUnresolved(msg)
    if len(digest) != 64:
        msg = (f"{pin.repository_url}/index.yaml: {pin.chart} {pin.version} has no sha256 "
               "digest; none is invented")
        raise ChartUnresolved(msg)
    # Relative URLs are relative to the repository (Helm resolves them the same way).
    return urllib.parse.urljoin(pin.repository_url.rstrip("/") + "/", str(urls[0])), digest


def _oci_chart(pin: ChartPin, files: Path, proxy: str | None) -> tuple[str, str]:
    location = pin.repository_url.removeprefix("oci://").rstrip("/")
    registry, _, base = location.partition("/")
    path = f"{base}/{pin.chart}" if base else pin.chart
    client = RegistryClient(registry, proxy)
    # OCI tags cannot hold '+'; Helm writes '_' in its place.
    tag = pin.version.replace("+", "_")
    manifest = json.loads(client.manifest(path, tag))
    layer = next((item for item in manifest.get("layers", [])
                  if item.get("mediaType") == HELM_CHART_LAYER), None)
    if layer is None:
        msg = f"{pin.repository_url}/{pin.chart}:{tag} is not a Helm chart ({MANIFEST_ACCEPT})"
        raise ChartUnresolved(msg)
    digest = str(layer["digest"])
    client.blob_to(path, digest, files / pin.path)
    return f"oci://{location}/{pin.chart}:{tag}", digest.removeprefix("sha256:")


def chart_metadata(archive: Path) -> dict[str, Any]:
    """The Chart.yaml of a chart archive (its top folder's)."""
    try:
        with tarfile.open(archive, "r:gz") as tar:
            member = next((item for item in tar.getmembers()
                           if item.isfile() and item.name.count("/") == 1
                           and item.name.endswith("/Chart.yaml")), None)
            handle = tar.extractfile(member) if member is not None else None
            data = yaml.safe_load(handle.read()) if handle is not None else None
    except (tarfile.TarError, OSError, yaml.YAMLError) as exc:
        msg = f"{archive}: not a readable chart archive: {exc}"
        raise DeployFailed(msg) from exc
    if not isinstance(data, dict) or "name" not in data or "version" not in data:
        msg = f"{archive}: has no Chart.yaml with name and version"
        raise DeployFailed(msg)
    return data


def chart_licence(metadata: dict[str, Any]) -> str:
    """The SPDX licence a chart declares (Artifact Hub's annotation), else NOASSERTION.

    Chart.yaml has no licence field; most charts state none, and a LICENSE file inside the
    archive is not read as a licence decision.
    """
    from blueprint.bom.pypi import _valid_spdx

    declared = (metadata.get("annotations") or {}).get(LICENCE_ANNOTATION)
    if not isinstance(declared, str):
        return NOASSERTION
    return _valid_spdx(declared.strip()) or NOASSERTION


def mirror_indexes(root: Path, charts: list[tuple[str, str, str, str]], created: str
                   ) -> dict[str, bytes]:
    """index.yaml per catalogue repository for the mirror, from the bundle's chart archives.

    `charts` holds (repository, path, sha256, version) of each locked chart; entries carry
    the chart's own Chart.yaml fields, the archive's digest and a URL relative to the index,
    so the index is right at whatever address the mirror listens.
    """
    entries: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for repository, path, digest, _version in charts:
        archive = root / "files" / path
        if not archive.is_file() or sha256_of(archive) != digest:
            continue
        metadata = chart_metadata(archive)
        entry = {**metadata, "urls": [Path(path).name], "digest": digest, "created": created}
        entries.setdefault(repository, {}).setdefault(str(metadata["name"]), []).append(entry)
    out = {}
    for repository, charts_of in entries.items():
        index = {"apiVersion": "v1", "entries": charts_of, "generated": created}
        out[repository] = yaml.safe_dump(index, sort_keys=False).encode()
    return out


def index_lists(index_text: bytes, chart: str, version: str, digest: str) -> bool:
    """Whether an index.yaml lists the chart at the version with the digest."""
    data = yaml.safe_load(io.BytesIO(index_text))
    entries = (data or {}).get("entries", {}).get(chart) or []
    return any(str(entry.get("version")) == version and entry.get("digest") == digest
               for entry in entries)
