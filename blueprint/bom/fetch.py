"""Downloads with checksum verification, directly or through the site's HTTP proxy."""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from blueprint.errors import DeployFailed

log = logging.getLogger(__name__)


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _opener(proxy: str | None) -> urllib.request.OpenerDirector:
    proxies = {"http": proxy, "https": proxy} if proxy else {}
    return urllib.request.build_opener(urllib.request.ProxyHandler(proxies))


def download(url: str, dest: Path, sha256: str, *, proxy: str | None = None) -> Path:
    """Fetch `url` to `dest` unless a file with that checksum is there; verify it."""
    if dest.is_file() and sha256_of(dest) == sha256:
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    partial = dest.with_name(dest.name + ".part")
    log.debug("fetch %s", url)
    try:
        with _opener(proxy).open(url, timeout=120) as response, partial.open("wb") as out:
            shutil.copyfileobj(response, out)
    except OSError as exc:
        partial.unlink(missing_ok=True)
        msg = f"cannot fetch {url}: {exc}"
        raise DeployFailed(msg) from exc
    seen = sha256_of(partial)
    if seen != sha256:
        partial.unlink()
        msg = f"{url}: sha256 {seen} does not match the expected {sha256}"
        raise DeployFailed(msg)
    partial.replace(dest)
    return dest


def download_all(jobs: list[tuple[str, Path, str]], *, proxy: str | None = None,
                 workers: int = 4) -> None:
    """Download (url, dest, sha256) jobs in parallel; the first failure stops the lot."""
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for future in [pool.submit(download, url, dest, sha, proxy=proxy)
                       for url, dest, sha in jobs]:
            future.result()


def fetch_bytes(url: str, *, proxy: str | None = None, timeout: float = 60) -> bytes:
    """A small file (a signing key, a release index) into memory."""
    try:
        with _opener(proxy).open(url, timeout=timeout) as response:
            return bytes(response.read())
    except OSError as exc:
        msg = f"cannot fetch {url}: {exc}"
        raise DeployFailed(msg) from exc


def fetch_text(url: str, *, proxy: str | None = None, timeout: float = 60) -> str:
    """A small text file (a published checksum list)."""
    return fetch_bytes(url, proxy=proxy, timeout=timeout).decode("utf-8")


def fetch_json(url: str, *, proxy: str | None = None, timeout: float = 60) -> Any | None:
    """A JSON answer (PyPI's API); None when the server says 404, an error otherwise."""
    try:
        with _opener(proxy).open(url, timeout=timeout) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            return None
        msg = f"cannot fetch {url}: {exc}"
        raise DeployFailed(msg) from exc
    except (OSError, ValueError) as exc:
        msg = f"cannot fetch {url}: {exc}"
        raise DeployFailed(msg) from exc
