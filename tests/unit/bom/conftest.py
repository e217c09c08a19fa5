"""Fixtures of the bill of materials tests: a stand-in upstream release, minisign keys, a
stand-in flat apt repository."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from bomhelpers import (
    STANDIN_PACKAGES,
    KeyPair,
    StandInFlatRepo,
    StandInRelease,
    build_deb,
    make_keypair,
    make_signing_key,
    serve_folder,
    write_flat_repo,
)


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


@pytest.fixture
def standin_repo(standin_release: StandInRelease) -> Iterator[StandInFlatRepo]:
    folder = standin_release.root / "standin-nvidia" / "stable" / "deb" / "amd64"
    folder.mkdir(parents=True)
    key = make_signing_key("STAND-IN NVIDIA repository key <stand-in@example.invalid>")
    debs = {package.name: build_deb(folder, package) for package in STANDIN_PACKAGES}
    write_flat_repo(folder, list(debs.values()), key)
    # Beside the architectures' folders, as NVIDIA keeps libnvidia-container/gpgkey.
    standin_release.publish("standin-nvidia/gpgkey", key.public)
    yield StandInFlatRepo(folder, f"{standin_release.url}/standin-nvidia/stable/deb/$(ARCH)/",
                          f"{standin_release.url}/standin-nvidia/gpgkey", key, debs)
    key.close()
