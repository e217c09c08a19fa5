"""Helpers of the bill of materials tests: a stand-in upstream release, minisign keys, sites."""

from __future__ import annotations

import functools
import hashlib
import shutil
import subprocess
import threading
from dataclasses import dataclass
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml


@dataclass
class StandInRelease:
    """A stand-in for an upstream release server (no real one is reachable here)."""

    root: Path
    url: str

    def publish(self, path: str, data: bytes) -> str:
        """Put a file at `path`; return its sha256."""
        target = self.root / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        return hashlib.sha256(data).hexdigest()


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@dataclass
class KeyPair:
    secret: Path
    public: Path


def make_keypair(folder: Path, name: str) -> KeyPair:
    if shutil.which("minisign") is None:
        pytest.skip("minisign is not installed (apt-get install minisign)")
    folder.mkdir(parents=True, exist_ok=True)
    pair = KeyPair(folder / f"{name}.key", folder / f"{name}.pub")
    subprocess.run(["minisign", "-G", "-W", "-p", str(pair.public), "-s", str(pair.secret)],
                   check=True, capture_output=True)
    return pair


def serve_folder(root: Path) -> tuple[ThreadingHTTPServer, threading.Thread]:
    handler = functools.partial(_Quiet, directory=str(root))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    return server, thread


def write_site(folder: Path, **extra: Any) -> Path:
    """A lab-blueprint site with a control-plane/worker node and a worker/gpu node."""
    site = {"name": "bomtest", "blueprint": "lab", "nodes": [
        {"name": "n1", "address": "10.9.0.11", "roles": ["control-plane", "worker"]},
        {"name": "n2", "address": "10.9.0.12", "roles": ["worker", "gpu"]},
    ], **extra}
    path = folder / "site.yaml"
    path.write_text(yaml.safe_dump(site))
    return path
