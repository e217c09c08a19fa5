"""The artifact catalogue: where each layer's repositories come from, per `artifacts.mode`."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Literal

import yaml
from pydantic import Field

from blueprint.models.common import StrictModel
from blueprint.models.site import Site

CATALOGUE_FILE = Path(__file__).resolve().parent / "catalogue.yaml"


class RoleVariables(StrictModel):
    """The role variables a repository's URL and key are handed to."""

    url: str
    key: str


class CatalogueRepository(StrictModel):
    """One repository a layer installs from: apt packages, Helm charts or manifests."""

    kind: Literal["apt", "helm", "manifest"]
    layer: str
    url: str
    key: str = ""
    variables: RoleVariables | None = None


class CatalogueFile(StrictModel):
    """One file a layer downloads (a binary, an archive), checked against upstream's sums."""

    layer: str
    version: str
    url: str
    checksum_url: str = Field(description="upstream's published SHA256 list or .sha256 file")
    licence: str = Field(description="SPDX expression")


class Catalogue(StrictModel):
    repositories: dict[str, CatalogueRepository] = Field(default_factory=dict)
    files: dict[str, CatalogueFile] = Field(default_factory=dict)


@cache
def load_catalogue() -> Catalogue:
    data = yaml.safe_load(CATALOGUE_FILE.read_text(encoding="utf-8"))
    return Catalogue.model_validate(data)


@dataclass(frozen=True)
class ResolvedRepository:
    """Where a site really fetches one repository from, and why."""

    name: str
    layer: str
    url: str
    key: str
    source: Literal["upstream", "site mirror"]


def resolve_repositories(site: Site, layers: Collection[str]) -> list[ResolvedRepository]:
    """The repositories of the given layers as this site will fetch them."""
    resolved = []
    for name, entry in sorted(load_catalogue().repositories.items()):
        if entry.layer not in layers:
            continue
        mirror = site.artifacts.repositories.get(name)
        if site.artifacts.mode == "mirror" and mirror is not None:
            resolved.append(ResolvedRepository(name, entry.layer, mirror.url,
                                               mirror.key or entry.key, "site mirror"))
        else:
            resolved.append(ResolvedRepository(name, entry.layer, entry.url, entry.key,
                                               "upstream"))
    return resolved


def repository_variables(site: Site, layers: Collection[str]) -> dict[str, str]:
    """Role variables (URL and key of each repository) for the given layers."""
    catalogue = load_catalogue()
    variables: dict[str, str] = {}
    for repository in resolve_repositories(site, layers):
        names = catalogue.repositories[repository.name].variables
        if names is None:  # charts and manifests go to the platform stack, not to a role
            continue
        variables[names.url] = repository.url
        variables[names.key] = repository.key
    return variables
