"""A lock across Debian's real indexes and a STAND-IN for NVIDIA's container toolkit repository.

The stand-in (real .deb files depending on real Debian packages, signed with a throwaway key,
served on 127.0.0.1) takes the catalogue entry's place through $BLUEPRINT_CATALOGUE; Debian's
indexes and packages come from deb.debian.org, and the product's Python packages from PyPI.
Marked `network`, skipped when Debian's archive does not answer.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from bomhelpers import STANDIN_PACKAGES, TOOLKIT_VERSION, StandInFlatRepo, StandInRelease

from blueprint.artifacts import _load_catalogue
from blueprint.bom.apt import DEFAULT_ARCHIVE, url_path
from blueprint.bom.fetch import fetch_bytes
from blueprint.bom.lock import build_lock
from blueprint.loader import load_site

pytestmark = pytest.mark.network

REPOSITORY = "nvidia-container-toolkit"


@pytest.fixture(autouse=True)
def debian_reachable() -> None:
    try:
        fetch_bytes(f"{DEFAULT_ARCHIVE}/dists/bookworm-updates/InRelease", timeout=20)
    except Exception as exc:  # any failure to reach Debian skips; it proves nothing here
        pytest.skip(f"cannot reach Debian's archive: {exc}")


@pytest.fixture
def standin_catalogue(standin_repo: StandInFlatRepo, tmp_path: Path,
                      monkeypatch: pytest.MonkeyPatch) -> Iterator[StandInFlatRepo]:
    override = tmp_path / "standin-catalogue.yaml"
    entry = standin_repo.entry().model_dump(exclude_none=True)
    entry["variables"] = {"url": "gpu_toolkit_repo_url", "key": "gpu_toolkit_repo_key_url"}
    override.write_text(yaml.safe_dump({"repositories": {REPOSITORY: entry}}))
    monkeypatch.setenv("BLUEPRINT_CATALOGUE", str(override))
    _load_catalogue.cache_clear()
    yield standin_repo
    _load_catalogue.cache_clear()


def gpu_toolkit_site(folder: Path) -> Path:
    """A site whose blueprint has only the toolkit role: its one package is third party."""
    folder.mkdir()
    (folder / "toolkit-only.yaml").write_text(yaml.safe_dump({
        "name": "toolkit-only", "version": "0.1.0", "description": "stand-in test blueprint",
        "layers": [{"name": "gpu", "roles": ["gpu_toolkit"], "validates": ["gpu"]}],
        "hardware": {"gpu": {"min_cpus": 1, "min_memory_gib": 1, "min_disk_gib": 5}},
        "validation": {"suite": "lab"}}))
    site = folder / "site.yaml"
    site.write_text(yaml.safe_dump({"name": "standin-gpu", "blueprint": "toolkit-only.yaml",
                                    "nodes": [{"name": "g1", "address": "10.9.0.21",
                                               "roles": ["gpu"]}]}))
    return site


def test_lock_resolves_the_standin_repository_with_debians_dependencies(
    standin_catalogue: StandInFlatRepo, standin_release: StandInRelease, tmp_path: Path,
) -> None:
    loaded = load_site(gpu_toolkit_site(tmp_path / "site"))
    lock = build_lock(loaded, tmp_path / "cache", release="bookworm", architecture="amd64",
                      archive=DEFAULT_ARCHIVE, proxy=None)
    debs = {item.name: item for item in lock.items if item.kind == "deb"}

    # The stand-in packages, with the checksums of the files dpkg-deb made.
    for package in STANDIN_PACKAGES:
        item = debs[package.name]
        data = standin_catalogue.debs[package.name].read_bytes()
        assert (item.version, item.sha256, item.size) == (
            TOOLKIT_VERSION, hashlib.sha256(data).hexdigest(), len(data))
        assert item.repository == REPOSITORY
        assert item.url.startswith(f"{standin_release.url}/standin-nvidia/stable/deb/amd64/")
        assert item.path == url_path(item.url)
        assert (item.layer, item.node_roles) == ("gpu", ["gpu"])
    # Licence from the package's own copyright file, else not asserted.
    assert debs["nvidia-container-toolkit"].licence == "Apache-2.0"
    assert debs["nvidia-container-toolkit-base"].licence == "NOASSERTION"

    # Their real Debian dependencies, from Debian's archive.
    for name in ("libseccomp2", "libc6"):
        assert debs[name].repository is None
        assert debs[name].url.startswith(f"{DEFAULT_ARCHIVE}/pool/main/")

    # The stand-in's signed indexes, for a mirror to serve unchanged.
    indexes = {item.name: item for item in lock.items
               if item.kind == "apt-index" and item.repository == REPOSITORY}
    assert sorted(indexes) == ["standin-nvidia/stable/deb/amd64/InRelease",
                               "standin-nvidia/stable/deb/amd64/Packages.gz"]
    inrelease = (standin_catalogue.folder / "InRelease").read_bytes()
    assert indexes["standin-nvidia/stable/deb/amd64/InRelease"].sha256 == \
        hashlib.sha256(inrelease).hexdigest()
    assert lock.unresolved == []
