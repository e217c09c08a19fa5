"""The artifact catalogue: where each layer's repositories come from, per `artifacts.mode`."""

from __future__ import annotations

import os
import re
from collections.abc import Collection
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote, urlsplit

import yaml
from pydantic import Field, ValidationError, field_validator

from blueprint.errors import BadInput
from blueprint.models.common import StrictModel
from blueprint.models.site import Site

CATALOGUE_FILE = Path(__file__).resolve().parent / "catalogue.yaml"
# A site-wide catalogue file whose entries replace the built-in ones of the same name: an
# operator's own pins (a patched binary, a checksum verified in house). Tests use it for
# their stand-in releases.
CATALOGUE_OVERRIDE_ENV = "BLUEPRINT_CATALOGUE"


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
    key_fingerprint: str = Field(
        default="", description="OpenPGP fingerprint of the one key trusted to sign the "
                                "repository (apt); the bill of materials refuses any other")
    variables: RoleVariables | None = None

    @field_validator("key_fingerprint")
    @classmethod
    def _fingerprint(cls, value: str) -> str:
        compact = value.replace(" ", "").upper()
        if compact and not re.fullmatch(r"[0-9A-F]{40}|[0-9A-F]{64}", compact):
            msg = f"'{value}' is not an OpenPGP fingerprint (40 or 64 hex digits)"
            raise ValueError(msg)
        return compact


class CatalogueBinary(StrictModel):
    """One release file a layer installs (a binary, an archive, a manifest), with where its
    checksum comes from."""

    layer: str
    distribution: str
    cni: str = Field(default="", description="installed only with this pod network (CNI)")
    version_key: str
    file: str
    url: str
    checksums: str = Field(
        default="", description="upstream's checksums file; empty when upstream publishes "
                                "none, so every version needs a pinned sha256")
    sha256: dict[str, str] = Field(default_factory=dict)
    licence: str = Field(description="SPDX expression, for the bill of materials")
    image_registries: list[str] = Field(
        default_factory=list, description="the registries the images it starts come from")

    @field_validator("sha256")
    @classmethod
    def _hex_digests(cls, value: dict[str, str]) -> dict[str, str]:
        for version, digest in value.items():
            if not re.fullmatch(r"[0-9a-f]{64}", digest):
                msg = f"sha256 of version {version}: '{digest}' is not 64 lower-case hex digits"
                raise ValueError(msg)
        return value


class CatalogueRegistry(StrictModel):
    """Where a container registry's v2 API answers, when not at https://<its name>."""

    url: str = Field(pattern=r"^https?://")


class Catalogue(StrictModel):
    repositories: dict[str, CatalogueRepository] = Field(default_factory=dict)
    binaries: dict[str, CatalogueBinary] = Field(default_factory=dict)
    registries: dict[str, CatalogueRegistry] = Field(default_factory=dict)

    @property
    def names(self) -> list[str]:
        """Every entry a site may name a mirror for."""
        return sorted([*self.repositories, *self.binaries])


def load_catalogue() -> Catalogue:
    """The built-in catalogue, with the entries of $BLUEPRINT_CATALOGUE in place of its own."""
    return _load_catalogue(os.environ.get(CATALOGUE_OVERRIDE_ENV) or None)


@cache
def _load_catalogue(override: str | None) -> Catalogue:
    data: dict[str, Any] = yaml.safe_load(CATALOGUE_FILE.read_text(encoding="utf-8"))
    if override is not None:
        try:
            extra = yaml.safe_load(Path(override).read_text(encoding="utf-8")) or {}
        except OSError as exc:
            msg = f"{CATALOGUE_OVERRIDE_ENV}={override}: cannot read: {exc.strerror}"
            raise BadInput(msg) from exc
        for section in ("repositories", "registries"):
            data.setdefault(section, {}).update(extra.get(section) or {})
        binaries = data.setdefault("binaries", {})
        for name, fields in (extra.get("binaries") or {}).items():
            binaries[name] = _merged_binary(binaries.get(name), fields)
    try:
        return Catalogue.model_validate(data)
    except ValidationError as exc:
        where = override or str(CATALOGUE_FILE)
        first = exc.errors()[0]
        field = ".".join(str(part) for part in first["loc"])
        msg = f"{where}: {field}: {first['msg']}"
        raise BadInput(msg) from exc


def _merged_binary(built_in: Any, override: Any) -> Any:
    """A binary entry of $BLUEPRINT_CATALOGUE over the built-in one, field by field: an
    operator pins a version's sha256 with that field alone, and its `sha256` adds to the
    built-in pins. A new entry, or one that is not a mapping, is taken as it stands."""
    if not isinstance(built_in, dict) or not isinstance(override, dict):
        return override
    merged = {**built_in, **override}
    pins, more = built_in.get("sha256"), override.get("sha256")
    if isinstance(pins, dict) and isinstance(more, dict):
        merged["sha256"] = {**pins, **more}
    return merged


@dataclass(frozen=True)
class ResolvedRepository:
    """Where a site really fetches one repository from, and why."""

    name: str
    layer: str
    url: str
    key: str
    source: Literal["upstream", "site mirror", "offline bundle"]


def resolve_repositories(site: Site, layers: Collection[str]) -> list[ResolvedRepository]:
    """The repositories of the given layers as this site will fetch them.

    An offline site's Helm charts come from the Helm repository `blueprint mirror serve`
    makes of each catalogue repository's locked charts, `<apt_proxy>/helm/<name>`.
    """
    resolved = []
    for name, entry in sorted(load_catalogue().repositories.items()):
        if entry.layer not in layers:
            continue
        mirror = site.artifacts.repositories.get(name)
        if site.artifacts.mode == "offline" and entry.kind == "helm" and site.artifacts.apt_proxy:
            url = f"{site.artifacts.apt_proxy.rstrip('/')}/helm/{name}"
            resolved.append(ResolvedRepository(name, entry.layer, url, "", "offline bundle"))
        elif site.artifacts.mode == "mirror" and mirror is not None:
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


@dataclass(frozen=True)
class ResolvedBinary:
    """A release binary as one site fetches it: URL and the checksum get_url checks."""

    name: str
    version: str
    url: str
    checksum: str
    source: Literal["upstream", "site mirror", "offline bundle"]
    upstream_url: str
    upstream_checksums: str
    licence: str
    cni: str = ""

    def as_variable(self) -> dict[str, str]:
        return {"name": self.name, "version": self.version, "url": self.url,
                "checksum": self.checksum}


def resolve_binaries(
    site: Site, layer: str, distribution: str, versions: dict[str, str],
    locked: dict[tuple[str, str], str] | None = None, cni: str = "",
) -> list[ResolvedBinary]:
    """The binaries of one layer's distribution (and of its CNI) as this site fetches them.

    The checksum is `sha256:<hex>` when the catalogue pins one for the version, otherwise
    `sha256:<url of the checksums file>`, which Ansible's get_url reads before it downloads;
    it is empty when neither exists (upstream publishes no checksums file for the item and
    nobody pinned one): the role's preflight refuses such an item by name.
    An offline site fetches each binary from the site mirror serving its bundle
    (`artifacts.apt_proxy`, at the upstream URL's path) with the sha256 of its bill of
    materials (`locked`: (name, version) -> sha256); one the lock lacks is bad input.
    A version the blueprint does not pin is bad input.
    """
    resolved = []
    for name, entry in sorted(load_catalogue().binaries.items()):
        if entry.layer != layer or entry.distribution != distribution:
            continue
        if entry.cni and entry.cni != cni:
            continue
        version = versions.get(entry.version_key)
        if not version:
            msg = (f"layer {layer}: binary {name} needs a pinned version "
                   f"(versions.{entry.version_key} in the blueprint)")
            raise BadInput(msg)
        fields = {"version": version, "version_url": quote(version, safe=""),
                  "version_number": version.removeprefix("v")}
        upstream = url = entry.url.format(**fields)
        upstream_checksums = checksums = entry.checksums.format(**fields)
        file = entry.file.format(**fields)
        mirror = site.artifacts.repositories.get(name)
        source: Literal["upstream", "site mirror", "offline bundle"] = "upstream"
        pinned = entry.sha256.get(version)
        if site.artifacts.mode == "mirror" and mirror is not None:
            base = f"{mirror.url.rstrip('/')}/{fields['version_url']}"
            url = f"{base}/{file}"
            if checksums:
                checksums = f"{base}/{checksums.rsplit('/', 1)[-1]}"
            source = "site mirror"
        elif site.artifacts.mode == "offline" and locked is not None:
            pinned = locked.get((name, version))
            if pinned is None:
                msg = (f"binary {name} {version} is not in the site's bom.lock.yaml; "
                       "run `blueprint bom SITE` and build a new bundle")
                raise BadInput(msg)
            url = f"{(site.artifacts.apt_proxy or '').rstrip('/')}{urlsplit(upstream).path}"
            source = "offline bundle"
        checksum = (f"sha256:{pinned}" if pinned
                    else f"sha256:{checksums}" if checksums else "")
        resolved.append(ResolvedBinary(name, version, url, checksum, source, upstream,
                                       upstream_checksums, entry.licence, entry.cni))
    return resolved
