"""`blueprint mirror serve`: verify a bundle, then serve it; the offline preflight's check."""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from blueprint.bom.bundle import extract_bundle, remove_tree
from blueprint.bom.lock import Lock, LockItem
from blueprint.errors import BadInput, DeployFailed, EnvironmentMissing
from blueprint.loader import LoadedSite

log = logging.getLogger(__name__)

STATE_FILE = "mirror.json"


@dataclass
class MirrorState:
    pid: int
    host: str
    port: int
    root: str
    bundle: str

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


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    cmdline = Path(f"/proc/{pid}/cmdline")
    return cmdline.is_file() and b"blueprint.bom.serve" in cmdline.read_bytes()


def serve(bundle: Path, public_key: Path, folder: Path, host: str, port: int) -> MirrorState:
    """Verify and unpack `bundle` into `folder`, then start its HTTP server; state by PID."""
    running = load_mirror_state(folder)
    if running is not None and _alive(running.pid):
        msg = (f"a mirror already runs from {folder} (PID {running.pid}, {running.url}); "
               "stop it first with `blueprint mirror stop`")
        raise BadInput(msg)
    root = folder / "root"
    remove_tree(root)
    manifest = extract_bundle(bundle, root, public_key)
    if manifest.get("since_lock_sha256"):
        msg = f"{bundle}: an update bundle carries only changes; serve a full bundle"
        raise BadInput(msg)

    out = (folder / "server.log").open("ab")
    cmd = [sys.executable, "-m", "blueprint.bom.serve", str(root), host, str(port)]
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                            start_new_session=True)
    out.close()
    state = MirrorState(proc.pid, host, port, str(root), str(bundle))
    _state_path(folder).write_text(json.dumps(state.__dict__), encoding="utf-8")
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            _state_path(folder).unlink()
            msg = f"the mirror exited with {proc.returncode} at start; see {folder}/server.log"
            raise DeployFailed(msg)
        try:
            with socket.create_connection((host, port), timeout=1):
                return state
        except OSError:
            time.sleep(0.2)
    stop(folder)
    msg = f"the mirror did not listen on {host}:{port} within 15 s"
    raise DeployFailed(msg)


def stop(folder: Path) -> MirrorState | None:
    """Stop the mirror started from `folder`, by its PID; safe when none runs."""
    state = load_mirror_state(folder)
    if state is None:
        return None
    if _alive(state.pid):
        os.kill(state.pid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        while _alive(state.pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        if _alive(state.pid):
            os.kill(state.pid, signal.SIGKILL)
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
    with ThreadPoolExecutor(max_workers=8) as pool:
        for item, found in zip(present, pool.map(lambda it: _present(base, it), present),
                               strict=True):
            if found is not None:
                problems.append(f"{item.kind} {item.name} {item.version} (sha256 "
                                f"{item.sha256}): not served: {found}")
    if problems:
        lines = [f"offline preflight: {len(problems)} item(s) of the lock are not on the "
                 f"site mirror {base}; no node was touched:"]
        lines += [f"  {line}" for line in problems]
        raise EnvironmentMissing("\n".join(lines))
