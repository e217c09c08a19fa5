"""The artifact catalogue decides every repository URL a role gets, per artifacts.mode."""

from __future__ import annotations

from pathlib import Path

from blueprint.artifacts import load_catalogue, resolve_repositories
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
