"""Container images and OCI-hosted charts: a client of the registry v2 API (OCI distribution).

What the bill of materials needs from a registry, and nothing more: the digest a tag points to
(`HEAD /v2/<name>/manifests/<tag>`), a manifest by digest, and blobs by digest, each checked
against its digest. Anonymous pulls only: a registry that answers 401 with a Bearer challenge
gets the anonymous token flow (the realm's token for `repository:<name>:pull`), as Docker
Hub, ghcr.io, quay.io, nvcr.io and registry.k8s.io expect.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import shutil
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from email.message import Message
from pathlib import Path
from typing import Any

from blueprint.errors import BadInput, DeployFailed

log = logging.getLogger(__name__)

# What a pull accepts: multi-platform indexes first, then single-platform manifests.
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
MANIFEST_ACCEPT = ", ".join([OCI_INDEX, DOCKER_LIST, OCI_MANIFEST, DOCKER_MANIFEST])
INDEX_TYPES = (OCI_INDEX, DOCKER_LIST)
HELM_CHART_LAYER = "application/vnd.cncf.helm.chart.content.v1.tar+gzip"

REFERENCE = re.compile(
    r"^(?P<registry>[a-z0-9.-]+(?::\d+)?)/(?P<path>[a-z0-9._/-]+)"
    r"(?::(?P<tag>[A-Za-z0-9._-]+))?(?:@(?P<digest>sha256:[0-9a-f]{64}))?$")


@dataclass(frozen=True)
class ImageRef:
    """registry/path:tag[@sha256:...], as the blueprint pins an image."""

    registry: str
    path: str
    tag: str
    digest: str | None = None

    @property
    def name(self) -> str:
        return f"{self.registry}/{self.path}"

    def __str__(self) -> str:
        return f"{self.name}:{self.tag}" + (f"@{self.digest}" if self.digest else "")


def parse_reference(ref: str) -> ImageRef:
    found = REFERENCE.match(ref)
    segments = found["path"].split("/") if found else []
    if found is None or not (found["tag"] or found["digest"]) or any(
            part in ("", ".", "..") for part in segments):
        msg = f"image '{ref}' is not registry/path:tag[@sha256:<64 hex>]"
        raise BadInput(msg)
    return ImageRef(found["registry"], found["path"], found["tag"] or "", found["digest"])


def registry_endpoint(registry: str) -> str:
    """Where a registry's v2 API answers: the catalogue's `registries:` entry, else https."""
    from blueprint.artifacts import load_catalogue

    entry = load_catalogue().registries.get(registry)
    if entry is not None:
        return entry.url.rstrip("/")
    return f"https://{registry}"


@dataclass
class Answer:
    status: int
    headers: Message
    body: bytes


def _challenge(header: str) -> dict[str, str]:
    """The parameters of a `WWW-Authenticate: Bearer realm=...,service=...` challenge."""
    if not header.lower().startswith("bearer "):
        return {}
    return {key.lower(): value for key, value in re.findall(r'(\w+)="([^"]*)"', header)}


def _http_opener(proxies: dict[str, str]) -> urllib.request.OpenerDirector:
    """An opener for http(s) only: a registry's answers never make it read file: or ftp:."""
    opener = urllib.request.OpenerDirector()
    for handler in (urllib.request.ProxyHandler(proxies), urllib.request.UnknownHandler(),
                    urllib.request.HTTPHandler(), urllib.request.HTTPSHandler(),
                    urllib.request.HTTPDefaultErrorHandler(),
                    urllib.request.HTTPRedirectHandler(), urllib.request.HTTPErrorProcessor()):
        opener.add_handler(handler)
    return opener


@dataclass
class RegistryClient:
    """One registry's API, through an optional HTTP proxy, with its anonymous tokens."""

    registry: str
    proxy: str | None = None
    endpoint: str = ""
    tokens: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.endpoint = self.endpoint or registry_endpoint(self.registry)
        proxies = {"http": self.proxy, "https": self.proxy} if self.proxy else {}
        self._opener = _http_opener(proxies)

    def _open(self, method: str, url: str, scope: str, accept: str) -> Any:
        request = urllib.request.Request(url, method=method, headers={"Accept": accept})
        token = self.tokens.get(scope)
        if token:
            # Not sent on: blob redirects go to storage that refuses a second credential.
            request.add_unredirected_header("Authorization", f"Bearer {token}")
        return self._opener.open(request, timeout=120)

    def request(self, method: str, api_path: str, name: str, accept: str = "*/*") -> Any:
        """An open answer to `method endpoint/v2/<api_path>`; 401 once gets a token."""
        url = f"{self.endpoint}/v2/{api_path}"
        scope = f"repository:{name}:pull"
        for attempt in (1, 2):
            try:
                return self._open(method, url, scope, accept)
            except urllib.error.HTTPError as exc:
                if exc.code == 401 and attempt == 1:
                    self.tokens[scope] = self._token(exc.headers.get("WWW-Authenticate", ""),
                                                     scope, url)
                    continue
                if exc.code == 404:
                    msg = f"{self.registry}: {url}: 404 not found"
                    raise DeployFailed(msg) from exc
                msg = f"{self.registry}: {method} {url}: {exc.code} {exc.reason}"
                raise DeployFailed(msg) from exc
            except OSError as exc:
                msg = f"{self.registry}: cannot reach {url}: {exc}"
                raise DeployFailed(msg) from exc
        raise AssertionError("unreachable")

    def _token(self, header: str, scope: str, url: str) -> str:
        params = _challenge(header)
        if "realm" not in params:
            msg = (f"{self.registry}: {url} asks for a login ({header or 'no challenge'}); "
                   "only anonymous pulls are supported")
            raise DeployFailed(msg)
        realm = urllib.parse.urlsplit(params["realm"])
        endpoint_scheme = urllib.parse.urlsplit(self.endpoint).scheme
        allowed = ("https",) if endpoint_scheme == "https" else ("http", "https")
        if realm.scheme not in allowed or not realm.netloc:
            msg = (f"{self.registry}: {url} names the token realm {params['realm']!r}; "
                   f"only an {' or '.join(allowed)} URL is accepted from this "
                   f"{endpoint_scheme} registry")
            raise DeployFailed(msg)
        query = {"scope": scope, **({"service": params["service"]} if "service" in params
                                    else {})}
        token_url = f"{params['realm']}?{urllib.parse.urlencode(query)}"
        try:
            with self._opener.open(token_url, timeout=60) as response:
                answer = json.loads(response.read())
        except (OSError, ValueError) as exc:
            msg = f"{self.registry}: anonymous token from {params['realm']}: {exc}"
            raise DeployFailed(msg) from exc
        token = answer.get("token") or answer.get("access_token")
        if not isinstance(token, str) or not token:
            msg = f"{self.registry}: {params['realm']} gave no token"
            raise DeployFailed(msg)
        return token

    def manifest_digest(self, image: ImageRef) -> tuple[str, int | None]:
        """The digest (and size) of the manifest `image`'s tag names, from HEAD."""
        with self.request("HEAD", f"{image.path}/manifests/{image.tag}", image.path,
                          MANIFEST_ACCEPT) as response:
            digest = response.headers.get("Docker-Content-Digest", "")
            length = response.headers.get("Content-Length")
        if not re.fullmatch(r"sha256:[0-9a-f]{64}", digest):
            # A registry may leave the header out of HEAD; the manifest's own bytes decide.
            body = self.manifest(image.path, image.tag)
            return f"sha256:{hashlib.sha256(body).hexdigest()}", len(body)
        return digest, int(length) if length else None

    def manifest(self, path: str, reference: str) -> bytes:
        """A manifest's bytes; by digest they must hash to it."""
        with self.request("GET", f"{path}/manifests/{reference}", path,
                          MANIFEST_ACCEPT) as response:
            body = bytes(response.read())
        if reference.startswith("sha256:"):
            _check(body, reference, f"{self.registry}/{path} manifest")
        return body

    def blob_to(self, path: str, digest: str, dest: Path) -> None:
        """A blob into `dest`, checked against its digest; kept when already there."""
        if dest.is_file() and _file_digest(dest) == digest:
            return
        dest.parent.mkdir(parents=True, exist_ok=True)
        partial = dest.with_name(dest.name + ".part")
        hasher = hashlib.sha256()
        with self.request("GET", f"{path}/blobs/{digest}", path) as response, \
                partial.open("wb") as out:
            for block in iter(lambda: response.read(1 << 20), b""):
                hasher.update(block)
                out.write(block)
        seen = f"sha256:{hasher.hexdigest()}"
        if seen != digest:
            partial.unlink()
            msg = f"{self.registry}/{path}: blob {digest} arrived as {seen}; not kept"
            raise DeployFailed(msg)
        partial.replace(dest)


def _check(body: bytes, digest: str, what: str) -> None:
    seen = f"sha256:{hashlib.sha256(body).hexdigest()}"
    if seen != digest:
        msg = f"{what}: expected {digest}, the registry sent {seen}"
        raise DeployFailed(msg)


def _file_digest(path: Path) -> str:
    from blueprint.bom.fetch import sha256_of

    return f"sha256:{sha256_of(path)}"


DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")


def blob_path(blobs: Path, digest: str) -> Path:
    """Where a blob lies in an OCI layout's blobs folder (blobs/sha256/<hex>).

    Digests come from manifests, that is from upstream: anything but sha256 and 64 hex
    digits (another algorithm, or a path) is refused before it names a file.
    """
    if not DIGEST.match(digest):
        msg = f"'{digest[:80]}' is not a sha256 digest (sha256:<64 hex>); refused"
        raise DeployFailed(msg)
    return blobs / "sha256" / digest.removeprefix("sha256:")


def children(manifest: dict[str, Any], architecture: str) -> list[str]:
    """The digests an index names for linux/<architecture>; an image manifest's blobs."""
    if is_index(manifest):
        return [entry["digest"] for entry in manifest.get("manifests", [])
                if (entry.get("platform") or {}).get("os") == "linux"
                and (entry.get("platform") or {}).get("architecture") == architecture]
    return [entry["digest"] for entry in [manifest.get("config"), *manifest.get("layers", [])]
            if entry]


def fetch_image(image: ImageRef, digest: str, blobs: Path, architecture: str, *,
                proxy: str | None = None) -> list[str]:
    """Every blob of `image` at `digest` for linux/<architecture> into `blobs` (OCI layout),
    each checked against its digest; returns their digests, the top manifest first.

    Of a multi-platform index only the site's architecture is fetched: the index itself is
    kept byte for byte (its digest is the lock's), so it names platforms the bundle lacks.
    """
    client = RegistryClient(image.registry, proxy)
    fetched: list[str] = []
    pending: list[tuple[str, bool]] = [(digest, True)]  # (digest, is a manifest)
    while pending:
        current, is_manifest = pending.pop(0)
        if current in fetched:
            continue
        fetched.append(current)
        target = blob_path(blobs, current)
        if not is_manifest:
            client.blob_to(image.path, current, target)
            continue
        if target.is_file() and _file_digest(target) == current:
            body = target.read_bytes()
        else:
            body = client.manifest(image.path, current)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(body)
        manifest = json.loads(body)
        index = is_index(manifest)
        found = children(manifest, architecture)
        if index and not found:
            msg = f"{image}: the index {current} has no linux/{architecture} image"
            raise DeployFailed(msg)
        pending += [(child, index) for child in found]
    return fetched


def is_index(manifest: dict[str, Any]) -> bool:
    return manifest.get("mediaType") in INDEX_TYPES or "manifests" in manifest


def registry_storage(storage: Path, blobs: Path, images: list[tuple[ImageRef, str]],
                     architecture: str) -> list[str]:
    """Lay the bundle's images out as the storage folder of distribution's registry
    (Debian's docker-registry, filesystem driver), each at its path and tag.

    Blob data are hard links to the bundle's verified files; only what the bundle has is
    linked, so an image or platform it lacks is a 404. Returns the images laid out.
    """
    v2 = storage / "docker" / "registry" / "v2"
    done = []
    for image, digest in images:
        repository = v2 / "repositories" / image.path
        pending: list[tuple[str, bool]] = [(digest, True)]
        seen: set[str] = set()
        while pending:
            current, is_manifest = pending.pop(0)
            if current in seen:
                continue
            seen.add(current)
            source = blob_path(blobs, current)
            if not source.is_file():
                continue
            algorithm, _, hexdigest = current.partition(":")  # checked by blob_path
            data = v2 / "blobs" / algorithm / hexdigest[:2] / hexdigest / "data"
            if not data.is_file():
                data.parent.mkdir(parents=True, exist_ok=True)
                try:
                    data.hardlink_to(source)
                except OSError:
                    shutil.copyfile(source, data)
            links = (["_manifests", "revisions"] if is_manifest else ["_layers"])
            _link(repository.joinpath(*links, algorithm, hexdigest, "link"), current)
            if is_manifest:
                manifest = json.loads(source.read_bytes())
                pending += [(child, is_index(manifest))
                            for child in children(manifest, architecture)]
        if image.tag:
            tag = repository / "_manifests" / "tags" / image.tag
            _link(tag / "current" / "link", digest)
            _link(blob_path(tag / "index", digest) / "link", digest)
        done.append(str(image))
    return done


def _link(path: Path, digest: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(digest, encoding="utf-8")
