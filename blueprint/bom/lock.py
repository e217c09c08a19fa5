"""The lock file (bom.lock.yaml): every artifact a site runs, pinned, and what it came from."""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import re
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import Any, Literal

import yaml
from pydantic import BaseModel, Field, ValidationError

from blueprint.artifacts import load_catalogue
from blueprint.bom import pypi
from blueprint.bom.apt import DEFAULT_SECURITY, AptRoot, DebianPackage, url_path
from blueprint.bom.charts import ChartPin, ChartRefused, ChartUnresolved, resolve_chart
from blueprint.bom.fetch import download_all, fetch_text
from blueprint.bom.flatrepo import FlatRepository, pinned_keyring, verify_flat_repository
from blueprint.bom.licences import (
    NOASSERTION,
    copyright_from_deb,
    licence_of_copyright,
    normalise,
)
from blueprint.bom.packages import layer_requests, node_roles_of
from blueprint.errors import BadInput, DeployFailed
from blueprint.kube.variables import LAYER, site_binaries
from blueprint.loader import LoadedSite

log = logging.getLogger(__name__)

LOCK_NAME = "bom.lock.yaml"
LOCK_VERSION = 1
SHA256 = re.compile(r"^[0-9a-f]{64}$")


class LockItem(BaseModel):
    """One pinned artifact: what it is, where upstream has it, its checksum and licence."""

    name: str
    version: str
    kind: Literal["deb", "apt-index", "file", "pypi", "chart", "image"]
    url: str
    path: str = Field(description="where the item lies in a bundle and on the site mirror")
    size: int | None = None
    sha256: str = Field(pattern=SHA256.pattern)
    licence: str
    layer: str = Field(description="a blueprint layer, or `controller` for the product's own "
                                    "Python packages")
    node_roles: list[str] = Field(default_factory=list)
    source: str | None = Field(default=None, description="Debian source package")
    repository: str | None = Field(default=None, description="the catalogue's third-party apt "
                                                             "or Helm repository; none: Debian's")
    repository_url: str | None = Field(default=None, description="chart: the catalogue "
                                                                 "repository's URL")
    reference: str | None = Field(default=None, description="image: as the blueprint pins it")
    digest: str | None = Field(default=None, description="image: its manifest's digest, "
                                                         "sha256:<hex>")


class Unresolved(BaseModel):
    """An artifact the site needs that the lock cannot pin, and why."""

    name: str
    layer: str
    reason: str


class Lock(BaseModel):
    lock_version: int = LOCK_VERSION
    site: str
    generated: str
    release: str
    architecture: str
    archive: str
    security_archive: str = DEFAULT_SECURITY
    baseline_status_sha256: str | None = None
    inputs: dict[str, Any] = Field(description="what the lock was resolved from; see drift")
    items: list[LockItem] = Field(default_factory=list)
    unresolved: list[Unresolved] = Field(default_factory=list)

    def item_key(self, item: LockItem) -> tuple[str, str, str]:
        return (item.kind, item.name, item.version)


def lock_path(loaded: LoadedSite) -> Path:
    return loaded.site_dir / LOCK_NAME


def site_inputs(loaded: LoadedSite) -> dict[str, Any]:
    """What of the site and its blueprint decides the lock; compared for drift."""
    requests = {
        role: {request.layer: request.as_dict() for request in layer_requests(loaded, role)}
        for role in node_roles_of(loaded)
    }
    files = {binary.name: f"{binary.version} {binary.upstream_url}"
             for binary in site_binaries(loaded, loaded.site.overrides)}
    charts, images = platform_pins(loaded)
    return {"blueprint": f"{loaded.blueprint.name} {loaded.blueprint.version}",
            "apt": requests, "files": files,
            "platform": {"charts": {pin.key: f"{pin.chart} {pin.version} {pin.repository_url}"
                                    for pin in charts},
                         "images": images}}


def platform_pins(loaded: LoadedSite) -> tuple[list[ChartPin], list[str]]:
    """The charts and images the blueprint's platform layer pins: every chart of its options
    with its version and catalogue repository, and every image (the charts', the product's
    own objects', the notebook catalog's), once each."""
    from blueprint.platform.config import PlatformOptions
    from blueprint.platform.resolve import platform_layer

    layer = platform_layer(loaded)
    if layer is None:
        return [], []
    options = PlatformOptions.model_validate(layer.options)
    catalogue = load_catalogue().repositories
    charts = [ChartPin(key, chart.chart, layer.versions[key], chart.repository,
                       catalogue[chart.repository].url)
              for key, chart in sorted(options.charts.items())]
    images = {ref for chart in options.charts.values() for ref in chart.images.values()}
    images |= set(options.images.values())
    images |= {item.image for item in options.notebooks.catalog}
    return charts, sorted(images)


def drift(lock: Lock, current: dict[str, Any]) -> list[str]:
    """What changed between the inputs a lock was made from and the site now, in words."""
    found: list[str] = []
    before = lock.inputs
    if before.get("blueprint") != current["blueprint"]:
        found.append(f"blueprint is {current['blueprint']}, the lock has {before.get('blueprint')}")
    old_apt: dict[str, Any] = before.get("apt", {})
    new_apt: dict[str, Any] = current["apt"]
    for role in sorted(set(old_apt) | set(new_apt)):
        if role not in old_apt:
            found.append(f"node role {role}: not in the lock (a node with it was added)")
            continue
        if role not in new_apt:
            found.append(f"node role {role}: in the lock, no node has it now")
            continue
        for layer in sorted(set(old_apt[role]) | set(new_apt[role])):
            old = old_apt[role].get(layer, {})
            new = new_apt[role].get(layer, {})
            for key in ("packages", "optional", "third_party", "on_node"):
                added = sorted(set(new.get(key, [])) - set(old.get(key, [])))
                gone = sorted(set(old.get(key, [])) - set(new.get(key, [])))
                what = "packages" if key == "packages" else f"{key.replace('_', '-')} packages"
                if added:
                    found.append(f"layer {layer}, node role {role}: {what} added: "
                                 f"{', '.join(added)}")
                if gone:
                    found.append(f"layer {layer}, node role {role}: {what} removed: "
                                 f"{', '.join(gone)}")
    old_platform: dict[str, Any] = before.get("platform") or {}
    new_platform: dict[str, Any] = current.get("platform") or {}
    old_charts = old_platform.get("charts") or {}
    new_charts = new_platform.get("charts") or {}
    for key in sorted(set(old_charts) | set(new_charts)):
        if old_charts.get(key) != new_charts.get(key):
            found.append(f"chart {key}: the lock has {old_charts.get(key) or '(none)'}, the "
                         f"blueprint pins {new_charts.get(key) or '(none)'}")
    old_images = set(old_platform.get("images") or [])
    new_images = set(new_platform.get("images") or [])
    if new_images - old_images:
        found.append(f"images added: {', '.join(sorted(new_images - old_images))}")
    if old_images - new_images:
        found.append(f"images removed: {', '.join(sorted(old_images - new_images))}")
    old_files: dict[str, str] = before.get("files", {})
    for name in sorted(set(old_files) | set(current["files"])):
        if old_files.get(name) != current["files"].get(name):
            found.append(f"file {name}: the lock has {old_files.get(name) or '(none)'}, the "
                         f"site needs {current['files'].get(name) or '(none)'}")
    return found


def load_lock(path: Path) -> Lock:
    """Read a lock file; a broken one is bad input naming the file and field."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        msg = f"{path}: cannot read: {exc.strerror}"
        raise BadInput(msg) from exc
    except yaml.YAMLError as exc:
        msg = f"{path}: not valid YAML: {exc}"
        raise BadInput(msg) from exc
    try:
        lock = Lock.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        msg = f"{path}: {where}: {first['msg']}"
        raise BadInput(msg) from exc
    if lock.lock_version != LOCK_VERSION:
        msg = f"{path}: lock_version {lock.lock_version}; this version reads {LOCK_VERSION}"
        raise BadInput(msg)
    return lock


def write_lock(lock: Lock, path: Path) -> None:
    text = ("# Written by `blueprint bom`; do not edit. Re-run it when the site changes.\n"
            + yaml.safe_dump(lock.model_dump(mode="json", exclude_none=True), sort_keys=False,
                             width=100))
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


def check_lock(loaded: LoadedSite, *, required: bool = False) -> Lock | None:
    """The site's lock when it matches the site; drift is bad input naming each change."""
    path = lock_path(loaded)
    if not path.is_file():
        if required:
            msg = (f"{loaded.site_file}: artifacts.mode offline needs a lock; run "
                   f"`blueprint bom {loaded.site_dir}` on a connected machine ({path} is missing)")
            raise BadInput(msg)
        return None
    lock = load_lock(path)
    changes = drift(lock, site_inputs(loaded))
    if changes:
        lines = [f"{path}: the lock no longer matches the site; re-run `blueprint bom`:"]
        lines += [f"  {change}" for change in changes]
        raise BadInput("\n".join(lines))
    return lock


def build_lock(
    loaded: LoadedSite,
    cache_dir: Path,
    *,
    release: str,
    architecture: str,
    archive: str,
    proxy: str | None,
    python_proxy: str | None = None,
    security_archive: str = DEFAULT_SECURITY,
    baseline_status: Path | None = None,
    progress: Callable[[str], None] = lambda _: None,
) -> Lock:
    """Resolve every artifact of the site: Debian packages per node role, release binaries,
    the product's own Python packages.

    `proxy` serves apt and the release binaries (the site's apt proxy in mirror mode);
    `python_proxy` serves PyPI, which an apt proxy such as apt-cacher-ng does not.
    """
    inputs = site_inputs(loaded)

    # Third-party repositories the roles name, each verified with the key the catalogue pins.
    repositories = third_party_repositories(loaded, cache_dir / "keyrings", architecture,
                                            proxy, progress)
    apt_root = AptRoot(cache_dir / f"apt-{release}-{architecture}", release=release,
                       architecture=architecture, archive=archive,
                       security=security_archive, proxy=proxy,
                       baseline_status=baseline_status, repositories=repositories)
    apt_root.prepare()
    available = apt_root.available()
    items: dict[tuple[str, str, str], LockItem] = {}
    unresolved: list[Unresolved] = []
    debs: dict[tuple[str, str, str], DebianPackage] = {}

    # Debian packages per node role, layer by layer: a dependency belongs to the first layer
    # whose install pulls it in, as it does on a node. A third-party repository is a source
    # from the layer that adds it on, for the node roles it is added on.
    first_layer = ""
    repository_users: dict[str, tuple[str, set[str]]] = {}
    for role in node_roles_of(loaded):
        wanted: list[str] = []
        sources: set[str] = set()
        for request in layer_requests(loaded, role):
            first_layer = first_layer or request.layer
            progress(f"resolving layer {request.layer} for node role {role}")
            wanted += request.packages + [name for name in request.optional if name in available]
            wanted += [name for name, _ in request.third_party]
            sources |= {repository for _, repository in request.third_party}
            for repository in sources:
                repository_users.setdefault(repository, (request.layer, set()))[1].add(role)
            where = f"layer {request.layer}, node role {role}"
            for package in apt_root.resolve(sorted(set(wanted)), where, sorted(sources)):
                key = ("deb", package.name, package.version)
                if key in items:
                    if role not in items[key].node_roles:
                        items[key].node_roles.append(role)
                    continue
                debs[key] = package
                items[key] = LockItem(
                    name=package.name, version=package.version, kind="deb", url=package.url,
                    path=url_path(package.url), size=package.size, sha256=package.sha256,
                    licence=NOASSERTION, layer=request.layer, node_roles=[role],
                    source=package.source, repository=_repository_of(package.url, repositories))
            unresolved += [Unresolved(name=what, layer=request.layer,
                                      reason="chosen on the node at deploy time")
                           for what in request.on_node]

    # The release indices the nodes' apt reads, so a mirror can serve them unchanged; a
    # third-party repository's for the layer and node roles that add it.
    if debs:
        for index in apt_root.index_files():
            third_party = _repository_of(index.url, repositories)
            layer, roles = first_layer, set(node_roles_of(loaded))
            if third_party is not None:
                layer, roles = repository_users[third_party]
            items[("apt-index", index.path, release)] = LockItem(
                name=index.path, version=release, kind="apt-index", url=index.url,
                path=url_path(index.url), size=index.size, sha256=index.sha256,
                licence=NOASSERTION, layer=layer, node_roles=sorted(roles),
                repository=third_party)

    # Licences from the packages' own copyright files.
    progress(f"reading the copyright files of {len(debs)} packages")
    # The same folder `bundle build` fetches into, so a bundle reuses these downloads.
    _add_deb_licences(items, debs, cache_dir / "files", proxy)

    # Release binaries of the catalogue, with the checksum the catalogue pins or, failing
    # that, the one upstream publishes beside them.
    for binary in site_binaries(loaded, loaded.site.overrides):
        progress(f"reading the published checksum of {binary.name} {binary.version}")
        pinned = binary.checksum.removeprefix("sha256:")
        sha = pinned if SHA256.fullmatch(pinned) else published_sha256(
            binary.upstream_url, binary.upstream_checksums, proxy) \
            if binary.upstream_checksums else None
        if sha is None:
            reason = (f"no sha256 for {binary.upstream_url} in {binary.upstream_checksums}"
                      if binary.upstream_checksums else
                      f"upstream publishes no checksums file for {binary.upstream_url}; pin "
                      "its sha256 in the artifact catalogue ($BLUEPRINT_CATALOGUE) once the "
                      "file is checked")
            unresolved.append(Unresolved(name=binary.name, layer=LAYER, reason=reason))
            continue
        items[("file", binary.name, binary.version)] = LockItem(
            name=binary.name, version=binary.version, kind="file", url=binary.upstream_url,
            path=url_path(binary.upstream_url), sha256=sha, licence=normalise(binary.licence),
            layer=LAYER)

    # The platform layer's charts and images, each with the digest its repository or
    # registry gives (an archive that does not match it is refused).
    charts, images = platform_pins(loaded)
    chart_items, image_items, platform_unresolved = platform_items(
        loaded, charts, images, cache_dir / "files", proxy=python_proxy, progress=progress)
    for item in [*chart_items, *image_items]:
        items[(item.kind, item.name, item.version)] = item
    unresolved += platform_unresolved
    if _kubeflow_manifests(loaded):
        unresolved.append(Unresolved(
            name="kubeflow-pipelines manifests", layer="platform",
            reason="the pipelines engine kubeflow-pipelines applies release manifests, which "
                   "the lock does not pin yet; argo-workflows is a locked chart"))

    # The product's own Python packages, as this installation runs them: what an air-gapped
    # controller installs from the bundle.
    pins = pypi.installed_closure()
    progress(f"reading PyPI's files of the product's {len(pins)} Python packages")
    for wheel in pypi.resolve_python_packages(pins, proxy=python_proxy):
        items[("pypi", wheel.name, wheel.version)] = LockItem(
            name=wheel.name, version=wheel.version, kind="pypi", url=wheel.url,
            path=wheel.bundle_path, size=wheel.size, sha256=wheel.sha256,
            licence=wheel.licence, layer=pypi.LAYER)
    inputs["python"] = pypi.environment(pins)

    baseline_sha = (hashlib.sha256(baseline_status.read_bytes()).hexdigest()
                    if baseline_status else None)
    return Lock(
        site=loaded.site.name, generated=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        release=release, architecture=architecture, archive=archive,
        security_archive=security_archive, baseline_status_sha256=baseline_sha, inputs=inputs,
        items=sorted(items.values(), key=lambda item: (item.kind, item.name, item.version)),
        unresolved=unresolved)


def third_party_repositories(loaded: LoadedSite, keyrings: Path, architecture: str,
                             proxy: str | None,
                             progress: Callable[[str], None]) -> list[FlatRepository]:
    """The catalogue's apt repositories the site's roles install from, each verified."""
    names = sorted({repository for role in node_roles_of(loaded)
                    for request in layer_requests(loaded, role)
                    for _, repository in request.third_party})
    catalogue = load_catalogue()
    verified = []
    for name in names:
        entry = catalogue.repositories.get(name)
        if entry is None or entry.kind != "apt":
            known = ", ".join(sorted(key for key, value in catalogue.repositories.items()
                                     if value.kind == "apt"))
            msg = f"repository {name} is not an apt repository of the catalogue ({known})"
            raise BadInput(msg)
        progress(f"checking repository {name} ({entry.url}) with key {entry.key_fingerprint}")
        keyring = pinned_keyring(name, entry, keyrings / f"{name}.gpg", proxy)
        verified.append(verify_flat_repository(name, entry, keyring, architecture, proxy))
    return verified


def _repository_of(url: str, repositories: list[FlatRepository]) -> str | None:
    return next((repository.name for repository in repositories
                 if url.startswith(f"{repository.base}/")), None)


def published_sha256(url: str, checksum_url: str, proxy: str | None) -> str | None:
    """The sha256 upstream publishes for `url`: a `<sum>  <name>` list or a bare .sha256."""
    try:
        text = fetch_text(checksum_url, proxy=proxy)
    except Exception as exc:  # any failure to fetch leaves the item unresolved, never guessed
        log.warning("checksum list %s: %s", checksum_url, exc)
        return None
    filename = PurePosixPath(url_path(url)).name
    lines = [line.split() for line in text.splitlines() if line.strip()]
    if len(lines) == 1 and len(lines[0]) == 1 and SHA256.match(lines[0][0].lower()):
        return lines[0][0].lower()
    for fields in lines:
        if len(fields) >= 2 and fields[-1].lstrip("*").split("/")[-1] == filename \
                and SHA256.match(fields[0].lower()):
            return fields[0].lower()
    return None


def _add_deb_licences(items: dict[tuple[str, str, str], LockItem],
                      debs: dict[tuple[str, str, str], DebianPackage], folder: Path,
                      proxy: str | None) -> None:
    jobs = [(deb.url, folder / url_path(deb.url), deb.sha256) for deb in debs.values()]
    download_all(jobs, proxy=proxy)
    by_name = {deb.name: key for key, deb in debs.items()}
    texts: dict[tuple[str, str, str], str | None] = {}
    for key, deb in debs.items():
        path = folder / url_path(deb.url)
        text, target = copyright_from_deb(path, deb.name)
        if text is None and target in by_name:
            # A doc folder linked to another package of the same source: read that one's.
            other = debs[by_name[target]]
            text, _ = copyright_from_deb(folder / url_path(other.url), other.name)
        texts[key] = text
    # A package without its own file takes its source's licence from a sibling that has one.
    by_source: dict[str, str] = {}
    for key, text in texts.items():
        if text is not None:
            by_source.setdefault(debs[key].source, licence_of_copyright(text))
    for key, text in texts.items():
        licence = licence_of_copyright(text) if text else by_source.get(debs[key].source,
                                                                         NOASSERTION)
        items[key].licence = licence


def _kubeflow_manifests(loaded: LoadedSite) -> bool:
    from blueprint.platform.config import PlatformOptions
    from blueprint.platform.resolve import platform_layer

    layer = platform_layer(loaded)
    return layer is not None and (PlatformOptions.model_validate(layer.options)
                                  .pipelines.engine == "kubeflow-pipelines")


def platform_items(
    loaded: LoadedSite, charts: list[ChartPin], images: list[str], files: Path, *,
    proxy: str | None,
    progress: Callable[[str], None] = lambda _: None,
) -> tuple[list[LockItem], list[LockItem], list[Unresolved]]:
    """Lock items of the pinned charts (archive URL and sha256 from the repository, checked
    against the downloaded archive) and images (manifest digest from the registry; an image
    pinned by digest is taken as is)."""
    from blueprint.bom import oci

    chart_items: list[LockItem] = []
    unresolved: list[Unresolved] = []
    for pin in charts:
        progress(f"locking chart {pin.chart} {pin.version} from {pin.repository_url}")
        try:
            archive = resolve_chart(pin, files, proxy)
        except ChartRefused:
            raise
        except (ChartUnresolved, DeployFailed) as exc:
            # Unreachable or without a digest: listed, never guessed.
            unresolved.append(Unresolved(name=f"chart {pin.chart}", layer="platform",
                                         reason=str(exc)))
            continue
        chart_items.append(LockItem(
            name=pin.chart, version=pin.version, kind="chart", url=archive.url, path=pin.path,
            size=archive.size, sha256=archive.sha256, licence=archive.licence, layer="platform",
            repository=pin.repository, repository_url=pin.repository_url))

    # The mirror's registry holds each image at its path without the registry's name (as a
    # registry mirror or `registry.override` asks for it): two registries' same path clash.
    refs = [oci.parse_reference(ref) for ref in images]
    by_path: dict[str, set[str]] = {}
    for ref in refs:
        by_path.setdefault(ref.path, set()).add(ref.registry)
    clashes = [f"{path} ({', '.join(sorted(hosts))})" for path, hosts in by_path.items()
               if len(hosts) > 1]
    if clashes:
        msg = (f"{loaded.blueprint_file}: images of one path from several registries cannot "
               f"share the site mirror's registry: {'; '.join(clashes)}")
        raise BadInput(msg)

    image_items: list[LockItem] = []
    clients: dict[str, oci.RegistryClient] = {}
    for ref in refs:
        if ref.digest is not None:
            digest, size = ref.digest, None
        else:
            progress(f"resolving image {ref}")
            client = clients.setdefault(ref.registry, oci.RegistryClient(ref.registry, proxy))
            try:
                digest, size = client.manifest_digest(ref)
            except DeployFailed as exc:
                unresolved.append(Unresolved(name=f"image {ref}", layer="platform",
                                             reason=str(exc)))
                continue
        hexdigest = digest.removeprefix("sha256:")
        endpoint = oci.registry_endpoint(ref.registry)
        image_items.append(LockItem(
            name=ref.name, version=ref.tag or digest, kind="image",
            url=f"{endpoint}/v2/{ref.path}/manifests/{digest}",
            path=f"oci/blobs/sha256/{hexdigest}", size=size, sha256=hexdigest,
            licence=NOASSERTION, layer="platform", reference=str(ref), digest=digest))
    return chart_items, image_items, unresolved
