"""The offline bundle: every item of a lock in one archive, with a manifest signed by minisign.

Layout of the archive (an uncompressed tar: the packages are compressed already):
    manifest.json          format, site, lock digest, and every file's path, sha256 and size
    manifest.json.minisig  the operator's minisign signature of manifest.json
    bom.lock.yaml          the lock the bundle was built from
    files/<path>           each item at its upstream URL's path (debian/pool/main/...)
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import subprocess
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from blueprint.bom.fetch import download_all, sha256_of
from blueprint.bom.lock import LOCK_NAME, Lock, LockItem, load_lock
from blueprint.errors import BadInput, DeployFailed
from blueprint.proc import require_tool

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
SIGNATURE = "manifest.json.minisig"
FORMAT = 1


class BundleRefused(BadInput):
    """A bundle whose signature or contents do not check out."""


@dataclass
class BuiltBundle:
    path: Path
    files: int
    size: int


def build_bundle(lock_file: Path, out: Path, secret_key: Path, cache: Path, *,
                 proxy: str | None = None, python_proxy: str | None = None,
                 since: Path | None = None) -> BuiltBundle:
    """Download every item of the lock (only what changed since `since`), verify, sign, pack.

    Python packages come through `python_proxy`, everything else through `proxy`.
    """
    require_tool("minisign", "minisign")
    lock = load_lock(lock_file)
    if lock.unresolved:
        names = ", ".join(entry.name for entry in lock.unresolved)
        msg = f"{lock_file}: {len(lock.unresolved)} item(s) have no checksum ({names}); " \
              "a bundle carries only verified items"
        raise BadInput(msg)
    if not secret_key.is_file():
        msg = f"--key {secret_key}: no such minisign secret key"
        raise BadInput(msg)
    items = lock.items
    since_digest = None
    if since is not None:
        old = load_lock(since)
        known = {(item.path, item.sha256) for item in old.items}
        items = [item for item in items if (item.path, item.sha256) not in known]
        since_digest = hashlib.sha256(since.read_bytes()).hexdigest()

    # Fetch into the cache, each checked against the lock's sha256. Python packages, charts
    # and images come through `python_proxy` (the operator's --proxy, not an apt proxy).
    direct = [item for item in items if item.kind not in ("image", "chart")
              or (item.kind == "chart" and not item.url.startswith("oci://"))]
    for kind_proxy, wanted in ((proxy, [item for item in direct
                                        if item.kind not in ("pypi", "chart")]),
                               (python_proxy, [item for item in direct
                                               if item.kind in ("pypi", "chart")])):
        download_all([(item.url, cache / item.path, item.sha256) for item in wanted],
                     proxy=kind_proxy)
    blobs = _fetch_registry_items(lock, items, cache, python_proxy)
    files = [_entry(cache, item.path, item.sha256, item.kind, item.name, item.version)
             for item in items] + blobs
    unique = {entry["path"]: entry for entry in files}

    with tempfile.TemporaryDirectory(prefix="bp-bundle-") as tmp:
        work = Path(tmp)
        manifest: dict[str, Any] = {
            "format": FORMAT, "site": lock.site,
            "lock_sha256": hashlib.sha256(lock_file.read_bytes()).hexdigest(),
            "since_lock_sha256": since_digest,
            "files": list(unique.values()),
        }
        (work / MANIFEST).write_text(json.dumps(manifest, indent=1), encoding="utf-8")
        sign(work / MANIFEST, secret_key)
        out.parent.mkdir(parents=True, exist_ok=True)
        partial = out.with_name(out.name + ".part")
        with tarfile.open(partial, "w") as archive:
            archive.add(work / MANIFEST, MANIFEST)
            archive.add(work / SIGNATURE, SIGNATURE)
            archive.add(lock_file, LOCK_NAME)
            for entry in manifest["files"]:
                archive.add(cache / entry["path"].removeprefix("files/"), entry["path"])
        partial.replace(out)
    size = sum(entry["size"] for entry in manifest["files"])
    return BuiltBundle(out, len(manifest["files"]), size)


def _entry(cache: Path, path: str, sha256: str, kind: str, name: str,
           version: str) -> dict[str, Any]:
    return {"path": f"files/{path}", "sha256": sha256, "size": (cache / path).stat().st_size,
            "kind": kind, "name": name, "version": version}


def _fetch_registry_items(lock: Lock, items: list[LockItem], cache: Path,
                          proxy: str | None) -> list[dict[str, Any]]:
    """Charts kept in OCI registries, and images: every blob of the site's architecture,
    each checked against its digest. Returns the manifest entries of the extra blobs."""
    from blueprint.bom import oci
    from blueprint.bom.charts import ChartPin, resolve_chart

    extra: list[dict[str, Any]] = []
    for item in items:
        if item.kind == "chart" and item.url.startswith("oci://"):
            pin = ChartPin(item.name, item.name, item.version, item.repository or "",
                           item.repository_url or "")
            archive = resolve_chart(pin, cache, proxy)
            if archive.sha256 != item.sha256:
                msg = (f"chart {item.name} {item.version}: the registry now gives sha256 "
                       f"{archive.sha256}, the lock has {item.sha256}; re-run `blueprint bom`")
                raise DeployFailed(msg)
        if item.kind != "image" or item.reference is None or item.digest is None:
            continue
        image = oci.parse_reference(item.reference)
        blobs = cache / "oci" / "blobs"
        for digest in oci.fetch_image(image, item.digest, blobs, lock.architecture,
                                      proxy=proxy)[1:]:
            path = oci.blob_path(blobs, digest).relative_to(cache).as_posix()
            extra.append(_entry(cache, path, digest.removeprefix("sha256:"), "image-blob",
                                item.name, item.version))
    return extra


def sign(path: Path, secret_key: Path) -> None:
    """minisign's signature beside `path`; an encrypted key asks for its password."""
    cmd = ["minisign", "-S", "-s", str(secret_key), "-m", str(path),
           "-x", str(path.with_name(path.name + ".minisig"))]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        msg = f"minisign could not sign with {secret_key}: {done.stderr.strip() or done.stdout}"
        raise DeployFailed(msg)


def verify_signature(manifest: Path, signature: Path, public_key: Path) -> None:
    require_tool("minisign", "minisign")
    cmd = ["minisign", "-V", "-q", "-p", str(public_key), "-m", str(manifest), "-x",
           str(signature)]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        detail = (done.stderr or done.stdout).strip().splitlines()
        msg = (f"bundle signature does not verify with {public_key}: "
               f"{detail[-1] if detail else 'minisign refused it'}")
        raise BundleRefused(msg)


def extract_bundle(bundle: Path, dest: Path, public_key: Path) -> dict[str, Any]:
    """Unpack `bundle` into `dest` and prove it: signature first, then every file's sha256.

    Anything not listed in the signed manifest, or listed and missing, refuses the bundle.
    """
    if not bundle.is_file():
        msg = f"{bundle}: no such bundle"
        raise BadInput(msg)
    if not public_key.is_file():
        msg = f"--pubkey {public_key}: no such minisign public key"
        raise BadInput(msg)
    dest.mkdir(parents=True, exist_ok=True)
    try:
        with tarfile.open(bundle, "r") as archive:
            archive.extractall(dest, filter="data")
    except (tarfile.TarError, OSError) as exc:
        msg = f"{bundle}: not a readable bundle: {exc}"
        raise BundleRefused(msg) from exc
    for name in (MANIFEST, SIGNATURE, LOCK_NAME):
        if not (dest / name).is_file():
            msg = f"{bundle}: {name} is missing"
            raise BundleRefused(msg)
    verify_signature(dest / MANIFEST, dest / SIGNATURE, public_key)
    manifest: dict[str, Any] = json.loads((dest / MANIFEST).read_text(encoding="utf-8"))

    problems = []
    listed = {entry["path"] for entry in manifest["files"]}
    if hashlib.sha256((dest / LOCK_NAME).read_bytes()).hexdigest() != manifest["lock_sha256"]:
        problems.append(f"{LOCK_NAME}: does not match the signed manifest")
    for entry in manifest["files"]:
        path = dest / entry["path"]
        if not path.is_file():
            problems.append(f"{entry['path']}: missing ({entry['name']} {entry['version']})")
        elif sha256_of(path) != entry["sha256"]:
            problems.append(f"{entry['path']}: sha256 differs from the signed manifest "
                            f"({entry['name']} {entry['version']})")
    for path in (dest / "files").rglob("*") if (dest / "files").is_dir() else []:
        rel = PurePosixPath(path.relative_to(dest)).as_posix()
        if path.is_file() and rel not in listed:
            problems.append(f"{rel}: not listed in the signed manifest")
    if problems:
        msg = f"{bundle}: refused:\n" + "\n".join(f"  {line}" for line in problems)
        raise BundleRefused(msg)
    return manifest


def verify_bundle(bundle: Path, public_key: Path) -> dict[str, Any]:
    """Check a bundle's signature and every checksum in a scratch folder."""
    with tempfile.TemporaryDirectory(prefix="bp-verify-") as tmp:
        return extract_bundle(bundle, Path(tmp), public_key)


def bundle_lock(root: Path) -> Lock:
    return load_lock(root / LOCK_NAME)


def remove_tree(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
