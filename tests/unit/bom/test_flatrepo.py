"""Third-party flat apt repositories: the pinned key, the Release signature, the index.

NVIDIA's servers are not reachable here. Each test builds a STAND-IN flat repository: real
.deb files made with dpkg-deb (named like NVIDIA's packages, depending on real Debian ones), a
Packages index and a Release signed with a throwaway gpg key, served on 127.0.0.1 and stopped
through its server handle. `test_flatrepo_network.py` resolves one into a lock with Debian's
real indexes.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from bomhelpers import StandInFlatRepo, make_signing_key, sign_release

from blueprint.artifacts import CatalogueRepository, _load_catalogue, load_catalogue
from blueprint.bom.apt import _list_name, url_path
from blueprint.bom.flatrepo import RepositoryRefused, pinned_keyring, verify_flat_repository
from blueprint.errors import BadInput


def test_the_pinned_key_verifies_the_release_and_its_index(
    standin_repo: StandInFlatRepo, tmp_path: Path,
) -> None:
    entry = standin_repo.entry()
    keyring = pinned_keyring("nvidia-container-toolkit", entry, tmp_path / "k.gpg", None)
    repository = verify_flat_repository("nvidia-container-toolkit", entry, keyring, "amd64",
                                        None)
    assert repository.packages == {"nvidia-container-toolkit", "nvidia-container-toolkit-base"}
    assert repository.base.endswith("/standin-nvidia/stable/deb/amd64")
    assert [index.name for index in repository.indices] == ["InRelease", "Packages.gz"]
    assert repository.source_line() == f"deb [signed-by={keyring}] {standin_repo.url} /\n"


def test_release_with_a_detached_signature(standin_repo: StandInFlatRepo,
                                           tmp_path: Path) -> None:
    sign_release(standin_repo.folder, standin_repo.key, inrelease=False)
    entry = standin_repo.entry()
    keyring = pinned_keyring("nvidia-container-toolkit", entry, tmp_path / "k.gpg", None)
    repository = verify_flat_repository("nvidia-container-toolkit", entry, keyring, "amd64",
                                        None)
    assert [index.name for index in repository.indices] == ["Release", "Release.gpg",
                                                            "Packages.gz"]


def test_a_key_other_than_the_pinned_one_is_refused(standin_repo: StandInFlatRepo,
                                                    tmp_path: Path) -> None:
    pinned = "0123456789ABCDEF0123456789ABCDEF01234567"
    with pytest.raises(RepositoryRefused) as caught:
        pinned_keyring("nvidia-container-toolkit", standin_repo.entry(pinned), tmp_path / "k",
                       None)
    message = str(caught.value)
    assert f"the key at {standin_repo.key_url} is {standin_repo.key.fingerprint}" in message
    assert f"the catalogue pins {pinned}" in message
    assert not (tmp_path / "k").exists()


def test_a_release_signed_by_another_key_is_refused(standin_repo: StandInFlatRepo,
                                                    tmp_path: Path) -> None:
    """The key URL still serves the pinned key; someone else signed the Release."""
    entry = standin_repo.entry()
    keyring = pinned_keyring("nvidia-container-toolkit", entry, tmp_path / "k.gpg", None)
    other = make_signing_key("someone else <other@example.invalid>")
    try:
        sign_release(standin_repo.folder, other)
        with pytest.raises(RepositoryRefused, match=(
                r"repository nvidia-container-toolkit: the Release at http://127\.0\.0\.1:\d+/"
                r"standin-nvidia/stable/deb/amd64/ is not signed by the pinned key "
                + entry.key_fingerprint + r" \(.*\); refused")):
            verify_flat_repository("nvidia-container-toolkit", entry, keyring, "amd64", None)
    finally:
        other.close()


def test_a_tampered_packages_index_is_refused(standin_repo: StandInFlatRepo,
                                              tmp_path: Path) -> None:
    """A Packages.gz changed after the Release was signed (a swapped package's checksum)."""
    import gzip

    index = standin_repo.folder / "Packages.gz"
    text = gzip.decompress(index.read_bytes()).replace(b"SHA256: ", b"SHA256: 0", 1)
    index.write_bytes(gzip.compress(text, mtime=0))
    entry = standin_repo.entry()
    keyring = pinned_keyring("nvidia-container-toolkit", entry, tmp_path / "k.gpg", None)
    with pytest.raises(RepositoryRefused, match=(
            r"repository nvidia-container-toolkit: http://127\.0\.0\.1:\d+/standin-nvidia/"
            r"stable/deb/amd64/Packages\.gz has sha256 [0-9a-f]{64} \(\d+ bytes\); the signed "
            r"Release says [0-9a-f]{64} \(\d+ bytes\); refused")):
        verify_flat_repository("nvidia-container-toolkit", entry, keyring, "amd64", None)


def test_an_apt_repository_without_a_pinned_key_is_refused(tmp_path: Path) -> None:
    entry = CatalogueRepository(kind="apt", layer="gpu", url="http://127.0.0.1:9/r/",
                                key="http://127.0.0.1:9/r/key")
    with pytest.raises(BadInput, match=r"no key_fingerprint is pinned"):
        pinned_keyring("nvidia-cuda", entry, tmp_path / "k", None)


def test_catalogue_pins_nvidias_keys_and_checks_the_form(tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    repositories = load_catalogue().repositories
    assert repositories["nvidia-cuda"].key_fingerprint == \
        "EB693B3035CD5710E231E123A4B469963BF863CC"
    assert repositories["nvidia-container-toolkit"].key_fingerprint == \
        "C95B321B61E88C1809C4F759DDCAE044F796ECB0"
    override = tmp_path / "catalogue.yaml"
    override.write_text(yaml.safe_dump({"repositories": {"nvidia-cuda": {
        "kind": "apt", "layer": "gpu", "url": "http://h/r/", "key_fingerprint": "3BF863CC"}}}))
    monkeypatch.setenv("BLUEPRINT_CATALOGUE", str(override))
    _load_catalogue.cache_clear()
    try:
        with pytest.raises(BadInput, match=r"repositories\.nvidia-cuda\.key_fingerprint: .*"
                                           r"not an OpenPGP fingerprint"):
            load_catalogue()
    finally:
        _load_catalogue.cache_clear()


def test_flat_repository_paths_and_apt_list_names() -> None:
    assert url_path("http://127.0.0.1:8000/r/deb/amd64/./nvidia-container-toolkit_1_amd64.deb") \
        == "r/deb/amd64/nvidia-container-toolkit_1_amd64.deb"
    # apt quotes '_' in its list names (x86_64 becomes x86%5f64).
    assert _list_name("https://developer.download.nvidia.com/compute/cuda/repos/debian12/"
                      "x86_64/Packages") == ("developer.download.nvidia.com_compute_cuda_repos_"
                                             "debian12_x86%5f64_Packages")
