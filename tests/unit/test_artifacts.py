"""The artifact catalogue decides every repository URL a role gets, per artifacts.mode."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from blueprint.artifacts import _load_catalogue, load_catalogue, resolve_repositories
from blueprint.errors import BadInput
from blueprint.inventory import role_variables
from blueprint.loader import load_site

SITES = Path(__file__).parent / "fixtures" / "sites"


def test_mirror_site_uses_its_mirror_where_it_names_one_and_upstream_elsewhere() -> None:
    loaded = load_site(SITES / "full.yaml")

    resolved = {r.name: r for r in resolve_repositories(loaded.site, ["gpu"])}

    toolkit = resolved["nvidia-container-toolkit"]
    assert (toolkit.url, toolkit.source) == ("http://10.20.0.1/nvidia-container-toolkit/",
                                             "site mirror")
    assert toolkit.key == load_catalogue().repositories["nvidia-container-toolkit"].key
    cuda = resolved["nvidia-cuda"]
    assert (cuda.url, cuda.source) == (load_catalogue().repositories["nvidia-cuda"].url,
                                       "upstream")


def test_layers_outside_the_request_get_no_repository() -> None:
    loaded = load_site(SITES / "full.yaml")
    assert resolve_repositories(loaded.site, ["os_baseline", "container_runtime"]) == []


def test_role_variables_carry_the_catalogue_urls_not_role_constants() -> None:
    loaded = load_site(SITES / "full.yaml")

    variables = role_variables(loaded)

    assert variables["gpu_toolkit_repo_url"] == "http://10.20.0.1/nvidia-container-toolkit/"
    catalogue = load_catalogue().repositories
    assert variables["gpu_driver_cuda_repo_url"] == catalogue["nvidia-cuda"].url
    assert variables["gpu_driver_cuda_repo_key_url"] == catalogue["nvidia-cuda"].key


def test_an_override_pins_a_binarys_sha256_with_that_field_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The preflight's advice for a file without upstream checksums: pin its sha256 in
    # $BLUEPRINT_CATALOGUE. The override names only that field; the rest stays built in.
    built_in = load_catalogue().binaries["calico-operator"]
    override = tmp_path / "catalogue.yaml"
    override.write_text(yaml.safe_dump({"binaries": {
        "calico-operator": {"sha256": {"v3.29.1": "ab" * 32}},
        "k3s": {"sha256": {"v1.31.4+k3s1": "cd" * 32}, "licence": "Apache-2.0 AND MIT"}}}))
    monkeypatch.setenv("BLUEPRINT_CATALOGUE", str(override))
    _load_catalogue.cache_clear()
    try:
        binaries = load_catalogue().binaries
    finally:
        monkeypatch.delenv("BLUEPRINT_CATALOGUE")
        _load_catalogue.cache_clear()
    calico = binaries["calico-operator"]
    assert calico.sha256 == {"v3.29.1": "ab" * 32}
    assert calico.model_dump(exclude={"sha256"}) == built_in.model_dump(exclude={"sha256"})
    assert binaries["k3s"].licence == "Apache-2.0 AND MIT"
    assert binaries["k3s"].sha256["v1.31.4+k3s1"] == "cd" * 32
    assert binaries["k3s"].url == load_catalogue().binaries["k3s"].url


def test_an_override_binary_entry_that_is_new_must_be_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    override = tmp_path / "catalogue.yaml"
    override.write_text(yaml.safe_dump({"binaries": {"mytool": {"sha256": {}}}}))
    monkeypatch.setenv("BLUEPRINT_CATALOGUE", str(override))
    _load_catalogue.cache_clear()
    try:
        with pytest.raises(BadInput, match=rf"^{override}: binaries\.mytool\."):
            load_catalogue()
    finally:
        monkeypatch.delenv("BLUEPRINT_CATALOGUE")
        _load_catalogue.cache_clear()
