"""The site mirror's HTTP server: a verified bundle's files, answering as an apt proxy, and
its charts as Helm repositories (`/helm/<catalogue repository>/index.yaml`).

Nodes keep their Debian sources (deb.debian.org) and set the mirror as their apt proxy, so
apt asks for absolute URLs; the path of the URL names the file in the bundle. The release's
InRelease is Debian's own, still signed by Debian: nodes trust nothing new. Index files
fetched by hash (dists/.../by-hash/SHA256/<sum>) are looked up by their checksum. Anything
else is 404: the mirror never goes upstream.

Run as `python -m blueprint.bom.serve ROOT HOST PORT`; `blueprint mirror serve` starts it.
"""

from __future__ import annotations

import json
import os
import sys
from http import HTTPStatus
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

MANIFEST_PATH = "/.blueprint/manifest.json"
INFO_PREFIX = "/.blueprint/"
# Where `blueprint mirror serve` writes each Helm repository's index (see mirror.py).
HELM_INDEXES = "helm-indexes"


class MirrorHandler(SimpleHTTPRequestHandler):
    root: Path
    by_hash: dict[str, str]

    def translate_path(self, path: str) -> str:
        request = unquote(urlsplit(path).path)
        if request == MANIFEST_PATH:
            return str(self.root / "manifest.json")
        parts = [part for part in request.split("/") if part not in ("", ".", "..")]
        if request == f"{INFO_PREFIX}registry.json":
            return str(self.root / "registry.json")
        # A Helm repository per catalogue repository: its index, and its charts from files/.
        if len(parts) == 3 and parts[0] == "helm" and parts[2] == "index.yaml":
            return str(self.root / HELM_INDEXES / parts[1] / "index.yaml")
        if len(parts) >= 3 and parts[-3:-1] == ["by-hash", "SHA256"]:
            found = self.by_hash.get(parts[-1])
            if found:
                return str(self.root / found)
        return str(self.root.joinpath("files", *parts))

    def list_directory(self, path: str | os.PathLike[str]) -> None:
        self.send_error(HTTPStatus.NOT_FOUND, "no listing")
        return None

    def log_message(self, format: str, *args: object) -> None:
        sys.stderr.write(f"{self.address_string()} {format % args}\n")


def main(argv: list[str]) -> None:
    root, host, port = Path(argv[0]).resolve(), argv[1], int(argv[2])
    manifest = json.loads((root / "manifest.json").read_text(encoding="utf-8"))
    MirrorHandler.root = root
    MirrorHandler.by_hash = {entry["sha256"]: entry["path"] for entry in manifest["files"]}
    server = ThreadingHTTPServer((host, port), MirrorHandler)
    server.daemon_threads = True
    server.serve_forever()


if __name__ == "__main__":
    main(sys.argv[1:])
