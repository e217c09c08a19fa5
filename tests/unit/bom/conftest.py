"""Fixtures of the bill of materials tests: a stand-in upstream release and minisign keys."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from bomhelpers import KeyPair, StandInRelease, make_keypair, serve_folder


@pytest.fixture
def standin_release(tmp_path: Path) -> Iterator[StandInRelease]:
    """A stand-in for an upstream release server (no real one is reachable here)."""
    root = tmp_path / "standin-upstream"
    root.mkdir()
    server, thread = serve_folder(root)
    yield StandInRelease(root, f"http://127.0.0.1:{server.server_address[1]}")
    server.shutdown()
    server.server_close()
    thread.join()


@pytest.fixture
def keys(tmp_path: Path) -> KeyPair:
    return make_keypair(tmp_path / "keys", "operator")
