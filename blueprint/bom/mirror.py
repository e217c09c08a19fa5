"""`blueprint mirror serve`: verify a bundle, then serve it; the offline preflight's check."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import socket
import sys
import tarfile
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import yaml

from blueprint.bom.bundle import MANIFEST, BundleRefused, extract_bundle, remove_tree
from blueprint.bom.charts import index_lists, mirror_indexes
from blueprint.bom.lock import LOCK_NAME, Lock, LockItem, load_lock
from blueprint.bom.oci import MANIFEST_ACCEPT, parse_reference, registry_storage
from blueprint.bom.serve import HELM_INDEXES
from blueprint.bom.services import (
    RunningServices,
    SiteServices,
    check_port,
    check_services,
    render_configs,
    start_services,
    stop_services,
)
from blueprint.errors import BadInput, DeployFailed, EnvironmentMissing
from blueprint.loader import LoadedSite
from blueprint.proc import pid_alive, require_tool, start_detached, stop_pids

log = logging.getLogger(__name__)

STATE_FILE = "mirror.json"
# What the HTTP server tells the preflight about the registry beside it (its port).
REGISTRY_INFO = "registry.json"
REGISTRY_PORT = 5000
REGISTRY_CONFIG = "registry.yml"


@dataclass
class MirrorState:
    pid: int
    host: str
    port: int
    root: str
    bundle: str
    registry_pid: int | None = None
    registry_port: int | None = None
    ntp_pid: int | None = None
    ntp_port: int | None = None
    dns_pid: int | None = None
    dns_port: int | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"


def _state_path(folder: Path) -> Path:
    return folder / STATE_FILE


def load_mirror_state(folder: Path) -> MirrorState | None:
    path = _state_path(folder)
    if not path.is_file():
        return None
    return MirrorState(**json.loads(path.read_text(encoding="utf-8")))


def _server_marker(state: MirrorState) -> str:
    """What the HTTP server's command line holds: its module and the root it serves."""
    return f"blueprint.bom.serve {state.root}"


def _server_alive(state: MirrorState) -> bool:
    return pid_alive(state.pid, _server_marker(state))


def _bundle_has_images(bundle: Path) -> bool:
    """Whether the bundle's lock lists images; only decides which checks run up front (the
    lock is verified when the bundle is unpacked)."""
    try:
        with tarfile.open(bundle, "r") as archive:
            member = archive.extractfile(LOCK_NAME)
            data = yaml.safe_load(member.read()) if member is not None else None
    except (tarfile.TarError, OSError, KeyError, yaml.YAMLError):
        return False  # extract_bundle names what is wrong with it
    items = data.get("items") if isinstance(data, dict) else None
    return any(isinstance(item, dict) and item.get("kind") == "image"
               for item in items or [])


def _check_registry(host: str, registry_port: int) -> None:
    """Refuse a mirror whose images cannot be served: no docker-registry, or its port held."""
    require_tool("docker-registry", "docker-registry")
    check_port(host, registry_port, "--registry-port", (socket.SOCK_STREAM,))


def serve(bundle: Path, public_key: Path, folder: Path, host: str, port: int, *,
          registry_port: int = REGISTRY_PORT,
          services: SiteServices | None = None) -> MirrorState:
    """Verify and unpack `bundle` into `folder`, then start its HTTP server (apt, files, Helm
    repositories), when the bundle holds images a registry, and the NTP and DNS servers
    `services` asks for; state by PID.

    An update bundle is applied onto the mirror served from `folder` (see `apply_update`).
    """
    services = services or SiteServices()
    if is_update_bundle(bundle):
        if services.wanted:
            msg = (f"{bundle}: an update bundle keeps the running mirror's address, NTP and "
                   "DNS; to change them, stop the mirror and serve the full bundle")
            raise BadInput(msg)
        return apply_update(bundle, public_key, folder, host, port,
                            registry_port=registry_port)
    running = load_mirror_state(folder)
    if running is not None and _server_alive(running):
        msg = (f"a mirror already runs from {folder} (PID {running.pid}, {running.url}); "
               "stop it first with `blueprint mirror stop`")
        raise BadInput(msg)

    # A mirror whose HTTP server died may have left its registry, chronyd or dnsmasq
    # running on the ports this one needs: stop what its state lists.
    if running is not None:
        log.warning("the mirror in %s is not running; stopping what its state lists", folder)
        stop(folder)

    # Everything that could refuse, before the bundle is unpacked.
    check_services(host, services)
    if _bundle_has_images(bundle):
        _check_registry(host, registry_port)
    root = folder / "root"
    remove_tree(root)
    extract_bundle(bundle, root, public_key)
    render_configs(folder, host, services)
    return _start_mirror(folder, str(bundle), host, port, registry_port,
                         RunningServices(ntp_port=services.ntp_port,
                                         dns_port=services.dns_port))


def is_update_bundle(bundle: Path) -> bool:
    """Whether the bundle says it is an update; only routes it: both paths verify it."""
    try:
        with tarfile.open(bundle, "r") as archive:
            member = archive.extractfile(MANIFEST)
            manifest = json.loads(member.read()) if member is not None else {}
    except (tarfile.TarError, OSError, KeyError, ValueError):
        return False  # extract_bundle names what is wrong with it
    return bool(manifest.get("since_lock_sha256"))


def apply_update(bundle: Path, public_key: Path, folder: Path, host: str, port: int, *,
                 registry_port: int = REGISTRY_PORT) -> MirrorState:
    """Apply a verified update bundle onto the mirror served from `folder`, then serve the
    result (a running mirror is restarted at its own address).

    The update's signature and checksums are checked first, then that it was built against
    the lock the mirror serves, then that every item of its lock is in the update or
    already on the mirror. Only then are files added: a refused update changes nothing.
    """
    root = folder / "root"
    if not (root / LOCK_NAME).is_file():
        msg = (f"{bundle}: an update bundle carries only changes; no mirror has been served "
               f"from {folder}: serve the full bundle first, then the update")
        raise BadInput(msg)

    # The update itself: signature, checksums, nothing unlisted.
    scratch = folder / "update"
    remove_tree(scratch)
    try:
        update = extract_bundle(bundle, scratch, public_key)
        served = json.loads((root / MANIFEST).read_text(encoding="utf-8"))

        # Its base must be what the mirror serves.
        base = hashlib.sha256((root / LOCK_NAME).read_bytes()).hexdigest()
        if update["since_lock_sha256"] != base:
            msg = (f"{bundle}: refused: built against the lock with sha256 "
                   f"{update['since_lock_sha256']}, the mirror in {folder} serves {base}")
            raise BundleRefused(msg)

        # Base and update together must hold every item of the new lock.
        files = {entry["path"]: entry for entry in served["files"]}
        files.update({entry["path"]: entry for entry in update["files"]})
        new_lock = load_lock(scratch / LOCK_NAME)
        missing = [f"{item.kind} {item.name} {item.version}: files/{item.path}"
                   for item in new_lock.items
                   if (files.get(f"files/{item.path}") or {}).get("sha256") != item.sha256]
        if missing:
            msg = (f"{bundle}: refused: {len(missing)} item(s) of its lock are neither in it "
                   "nor on the mirror:\n" + "\n".join(f"  {line}" for line in missing))
            raise BundleRefused(msg)

        # Apply: the new files, the new lock, a served listing of both bundles' files.
        running = load_mirror_state(folder)
        services = RunningServices()
        if running is not None and _server_alive(running):
            host, port = running.host, running.port
            registry_port = running.registry_port or registry_port
            services = RunningServices(ntp_port=running.ntp_port, dns_port=running.dns_port)
        if any(item.kind == "image" for item in new_lock.items):
            # The running mirror's own registry holds its port until stop below.
            ours = (running is not None and running.registry_port == registry_port
                    and pid_alive(running.registry_pid, str(folder / REGISTRY_CONFIG)))
            if ours:
                require_tool("docker-registry", "docker-registry")
            else:
                _check_registry(host, registry_port)
        stop(folder)
        for entry in update["files"]:
            target = root / entry["path"]
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(scratch / entry["path"], target)
        applied = [*served.get("applied_updates", []),
                   {"bundle": str(bundle), "lock_sha256": update["lock_sha256"],
                    "since_lock_sha256": update["since_lock_sha256"]}]
        listing = {**served, "lock_sha256": update["lock_sha256"],
                   "files": sorted(files.values(), key=lambda entry: entry["path"]),
                   "applied_updates": applied}
        os.replace(scratch / LOCK_NAME, root / LOCK_NAME)
        (root / MANIFEST).write_text(json.dumps(listing, indent=1), encoding="utf-8")
    finally:
        remove_tree(scratch)
    log.info("applied update bundle %s onto the mirror in %s", bundle, folder)
    return _start_mirror(folder, str(bundle), host, port, registry_port, services)


def _start_mirror(folder: Path, bundle: str, host: str, port: int,
                  registry_port: int, services: RunningServices) -> MirrorState:
    """Start the HTTP server, for images the registry, over the unpacked root, then the NTP
    and DNS servers `services` names from the configs rendered in `folder`."""
    root = folder / "root"
    lock = load_lock(root / LOCK_NAME)

    # Helm repositories: one index per catalogue repository, from the charts' own Chart.yaml.
    remove_tree(root / HELM_INDEXES)
    charts = [(item.repository or "", item.path, item.sha256, item.version)
              for item in lock.items if item.kind == "chart"]
    for repository, text in mirror_indexes(root, charts, lock.generated).items():
        index = root / HELM_INDEXES / repository / "index.yaml"
        index.parent.mkdir(parents=True, exist_ok=True)
        index.write_bytes(text)

    # Images: the bundle's blobs laid out as a registry's storage, served read-only.
    images = [(parse_reference(item.reference), item.digest) for item in lock.items
              if item.kind == "image" and item.reference and item.digest]
    registry = None
    (root / REGISTRY_INFO).unlink(missing_ok=True)
    if images:
        storage = folder / "registry"
        remove_tree(storage)
        registry_storage(storage, root / "files" / "oci" / "blobs", images, lock.architecture)
        (root / REGISTRY_INFO).write_text(json.dumps({"port": registry_port}), encoding="utf-8")
        registry = start_detached(
            ["docker-registry", "serve", str(_registry_config(folder, storage, host,
                                                               registry_port))],
            folder / "registry.log", cwd=Path.cwd())

    proc = start_detached([sys.executable, "-m", "blueprint.bom.serve", str(root), host,
                           str(port)], folder / "server.log", cwd=Path.cwd())
    state = MirrorState(proc.pid, host, port, str(root), bundle,
                        registry.pid if registry else None,
                        registry_port if registry else None)
    _state_path(folder).write_text(json.dumps(state.__dict__), encoding="utf-8")
    waiting = [(proc, port, "server")] + ([(registry, registry_port, "registry")]
                                          if registry else [])
    deadline = time.monotonic() + 15
    while waiting and time.monotonic() < deadline:
        started, listen, what = waiting[0]
        if started.poll() is not None:
            stop(folder)
            msg = (f"the mirror's {what} exited with {started.returncode} at start; "
                   f"see {folder}/{what}.log")
            raise DeployFailed(msg)
        try:
            with socket.create_connection((_connect_host(host), listen), timeout=1):
                waiting.pop(0)
        except OSError:
            time.sleep(0.2)
    if not waiting:
        return _start_services(folder, state, services)
    stop(folder)
    msg = f"the mirror did not listen on {host}:{waiting[0][1]} within 15 s"
    raise DeployFailed(msg)


def _start_services(folder: Path, state: MirrorState, services: RunningServices) -> MirrorState:
    if services.ntp_port is None and services.dns_port is None:
        return state
    try:
        started = start_services(folder, state.host, services.ntp_port, services.dns_port)
    except DeployFailed:
        stop(folder)
        raise
    state.ntp_pid, state.ntp_port = started.ntp_pid, started.ntp_port
    state.dns_pid, state.dns_port = started.dns_pid, started.dns_port
    _state_path(folder).write_text(json.dumps(state.__dict__), encoding="utf-8")
    return state


def _connect_host(host: str) -> str:
    return "127.0.0.1" if host in ("0.0.0.0", "") else host


def _registry_config(folder: Path, storage: Path, host: str, port: int) -> Path:
    """docker-registry's config: the bundle's storage, read-only, on the mirror's host."""
    import secrets

    config = {
        "version": 0.1,
        "log": {"level": "info", "accesslog": {"disabled": False}},
        "storage": {"filesystem": {"rootdirectory": str(storage)},
                    "maintenance": {"readonly": {"enabled": True},
                                    "uploadpurging": {"enabled": False}}},
        "http": {"addr": f"{host}:{port}", "secret": secrets.token_hex(16)},
    }
    path = folder / REGISTRY_CONFIG
    # It holds the registry's http.secret: private from the first byte.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        os.fchmod(out.fileno(), 0o600)  # an existing file keeps its mode through O_CREAT
        out.write(yaml.safe_dump(config))
    return path


def stop(folder: Path) -> MirrorState | None:
    """Stop the mirror started from `folder`, by its PID; safe when none runs."""
    state = load_mirror_state(folder)
    if state is None:
        return None
    pids = [(state.pid, _server_marker(state))]
    if state.registry_pid is not None:
        pids.append((state.registry_pid, str(folder / REGISTRY_CONFIG)))
    stop_pids(pids, timeout=10)
    stop_services(RunningServices(state.ntp_pid, state.ntp_port, state.dns_pid,
                                  state.dns_port), folder)
    _state_path(folder).unlink()
    return state


def _present(base: str, item: LockItem) -> str | None:
    url = f"{base}/{item.path}"
    request = urllib.request.Request(url, method="HEAD")
    try:
        with urllib.request.build_opener(urllib.request.ProxyHandler({})).open(
                request, timeout=10) as response:
            length = response.headers.get("Content-Length")
            if item.size is not None and length is not None and int(length) != item.size:
                return f"{url}: size {length}, the lock has {item.size}"
            return None
    except urllib.error.HTTPError as exc:
        return f"{url}: {exc.code} {exc.reason}"
    except OSError as exc:
        return f"{url}: {exc}"


def _fetch(url: str) -> bytes | str:
    """The body at `url`, or why there is none (a line for the preflight's list)."""
    try:
        with urllib.request.build_opener(urllib.request.ProxyHandler({})).open(
                url, timeout=10) as response:
            return bytes(response.read())
    except urllib.error.HTTPError as exc:
        return f"{url}: {exc.code} {exc.reason}"
    except OSError as exc:
        return f"{url}: {exc}"


def _registry_url(base: str) -> str | None:
    """The mirror's registry: the HTTP server's host, at the port it names."""
    from urllib.parse import urlsplit

    info = _fetch(f"{base}/.blueprint/{REGISTRY_INFO}")
    if isinstance(info, str):
        return None
    port = int(json.loads(info)["port"])
    return f"http://{urlsplit(base).hostname}:{port}"


def _image_present(registry: str | None, item: LockItem) -> str | None:
    """The mirror's registry has the image's manifest by its digest (and by its tag)."""
    if registry is None:
        return "the site mirror runs no registry (the bundle it serves has no images)"
    path = item.name.split("/", 1)[1]
    for reference in (item.digest, item.version):
        url = f"{registry}/v2/{path}/manifests/{reference}"
        request = urllib.request.Request(url, method="HEAD", headers={"Accept": MANIFEST_ACCEPT})
        try:
            with urllib.request.build_opener(urllib.request.ProxyHandler({})).open(
                    request, timeout=10) as response:
                seen = response.headers.get("Docker-Content-Digest")
        except urllib.error.HTTPError as exc:
            return f"{url}: {exc.code} {exc.reason}"
        except OSError as exc:
            return f"{url}: {exc}"
        if seen != item.digest:
            return f"{url}: digest {seen}, the lock has {item.digest}"
    return None


def _unmirrored_registries(loaded: LoadedSite, lock: Lock) -> list[str]:
    """Registries of locked images the nodes would still pull from upstream: neither a
    registry mirror (artifacts.registry_mirrors) nor the platform's registry override."""
    from blueprint.platform.config import PlatformOptions
    from blueprint.platform.resolve import platform_layer

    layer = platform_layer(loaded)
    override = loaded.site.platform.registry if loaded.site.platform else None
    if override is None and layer is not None:
        override = PlatformOptions.model_validate(layer.options).registry
    if override is not None and override.override:
        return []
    mirrored = {mirror.registry for mirror in loaded.site.artifacts.registry_mirrors}
    images: dict[str, list[str]] = {}
    for item in lock.items:
        if item.kind == "image":
            images.setdefault(item.name.split("/", 1)[0], []).append(item.name)
    return [f"registry {registry} ({len(names)} image(s), e.g. {names[0]}): no entry in "
            "artifacts.registry_mirrors names the site mirror's registry for it, and "
            "platform.registry.override is unset; the nodes would pull it upstream"
            for registry, names in sorted(images.items()) if registry not in mirrored]


def check_offline_mirror(loaded: LoadedSite, lock: Lock) -> None:
    """Every item of the lock is on the site's mirror, checksum as locked; else one list."""
    base = (loaded.site.artifacts.apt_proxy or "").rstrip("/")
    if lock.unresolved:
        names = ", ".join(entry.name for entry in lock.unresolved)
        msg = f"{loaded.site_file}: offline: the lock has items without a checksum: {names}"
        raise BadInput(msg)
    manifest_url = f"{base}/.blueprint/manifest.json"
    try:
        with urllib.request.build_opener(urllib.request.ProxyHandler({})).open(
                manifest_url, timeout=10) as response:
            manifest = json.loads(response.read())
    except (OSError, ValueError) as exc:
        msg = (f"{loaded.site_file}: offline: the site mirror {base} does not answer "
               f"({exc}); start it with `blueprint mirror serve BUNDLE`")
        raise EnvironmentMissing(msg) from exc
    served = {entry["path"]: entry["sha256"] for entry in manifest.get("files", [])}
    problems: list[str] = []
    present: list[LockItem] = []
    for item in lock.items:
        if served.get(f"files/{item.path}") != item.sha256:
            have = served.get(f"files/{item.path}")
            why = "not in the bundle" if have is None else f"bundle has sha256 {have}"
            problems.append(f"{item.kind} {item.name} {item.version} (sha256 {item.sha256}): "
                            f"{why}; looked for files/{item.path}")
        else:
            present.append(item)
    registry = _registry_url(base) if any(it.kind == "image" for it in present) else None
    problems += _unmirrored_registries(loaded, lock)
    indexes: dict[str, bytes | str] = {}
    for repository in sorted({it.repository or "" for it in present if it.kind == "chart"}):
        indexes[repository] = _fetch(f"{base}/helm/{repository}/index.yaml")

    def check(item: LockItem) -> str | None:
        if item.kind == "image":
            return _image_present(registry, item)
        if item.kind == "chart":
            index = indexes[item.repository or ""]
            if isinstance(index, str):
                return index
            if not index_lists(index, item.name, item.version, item.sha256):
                return (f"{base}/helm/{item.repository}/index.yaml does not list it with its "
                        "sha256")
        return _present(base, item)

    with ThreadPoolExecutor(max_workers=8) as pool:
        for item, found in zip(present, pool.map(check, present), strict=True):
            if found is not None:
                problems.append(f"{item.kind} {item.name} {item.version} (sha256 "
                                f"{item.sha256}): not served: {found}")
    if problems:
        lines = [f"offline preflight: {len(problems)} item(s) of the lock are not on the "
                 f"site mirror {base}; no node was touched:"]
        lines += [f"  {line}" for line in problems]
        raise EnvironmentMissing("\n".join(lines))
