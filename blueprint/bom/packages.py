"""The Debian packages each layer's roles install, from the roles' own meta/packages.yml."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import Field

from blueprint.errors import BadInput
from blueprint.inventory import role_variables
from blueprint.loader import LoadedSite
from blueprint.models.common import StrictModel
from blueprint.paths import ROLES_DIR

PACKAGES_FILE = Path("meta") / "packages.yml"


class AptEntry(StrictModel):
    """One source of package names in a role: a role variable or a literal package."""

    variable: str | None = None
    keys: list[str] = Field(default_factory=list, description="path into a mapping variable")
    for_each: str | None = Field(
        default=None, description="a list variable: the mapping's lists for each of its items")
    when_contains: tuple[str, str] | None = Field(
        default=None, description="[list variable, item]: only when the list holds the item")
    when_equals: tuple[str, str] | None = Field(
        default=None, description="[variable, value]: only when the variable has the value")
    node_roles: list[str] = Field(default_factory=list, description="empty: the role's nodes")
    package: str | None = None
    optional: bool = False
    repository: str | None = Field(default=None, description="artifact catalogue repository")


class RolePackages(StrictModel):
    """A role's meta/packages.yml."""

    node_roles: list[str] = Field(default_factory=list, description="empty: every node")
    apt: list[AptEntry] = Field(default_factory=list)
    on_node: list[str] = Field(default_factory=list, description="decided on the node")


@dataclass
class LayerRequest:
    """What one layer installs on nodes of one node role."""

    layer: str
    packages: list[str] = field(default_factory=list)
    optional: list[str] = field(default_factory=list)
    # (package, catalogue repository) pairs from third-party repositories.
    third_party: list[tuple[str, str]] = field(default_factory=list)
    # Packages the node decides (e.g. its kernel's headers), with the role that does.
    on_node: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"packages": sorted(self.packages), "optional": sorted(self.optional),
                "third_party": sorted(f"{pkg} ({repo})" for pkg, repo in self.third_party),
                "on_node": sorted(self.on_node)}


def load_role_packages(role: str, roles_dir: Path = ROLES_DIR) -> RolePackages:
    """A role's declared packages; a role without the file installs none."""
    path = roles_dir / role / PACKAGES_FILE
    if not path.is_file():
        return RolePackages()
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    try:
        return RolePackages.model_validate(data)
    except ValueError as exc:
        msg = f"{path}: not a valid package declaration: {exc}"
        raise BadInput(msg) from exc


def role_defaults(role: str, roles_dir: Path = ROLES_DIR) -> dict[str, Any]:
    """The role's defaults and vars as Ansible would see them before the site's values."""
    values: dict[str, Any] = {}
    for part in ("defaults", "vars"):
        path = roles_dir / role / part / "main.yml"
        if path.is_file():
            values.update(yaml.safe_load(path.read_text(encoding="utf-8")) or {})
    return values


def _entry_names(role: str, entry: AptEntry, variables: dict[str, Any]) -> list[str]:
    if entry.package is not None:
        return [entry.package]
    assert entry.variable is not None
    value: Any = variables.get(entry.variable)
    for key in entry.keys:
        real = key.format(**{k: v for k, v in variables.items() if isinstance(v, str)})
        if not isinstance(value, dict) or real not in value:
            msg = f"roles/{role}/{PACKAGES_FILE}: {entry.variable} has no key '{real}'"
            raise BadInput(msg)
        value = value[real]
    if entry.for_each is not None:
        # local-path and the like install nothing: a missing key is an empty list.
        selected = variables.get(entry.for_each) or []
        value = [name for item in selected for name in (value or {}).get(item) or []]
    names = [value] if isinstance(value, str) else list(value or [])
    for name in names:
        if not isinstance(name, str) or "{{" in name or not name.strip():
            msg = (f"roles/{role}: {entry.variable} must list plain package names for the bill "
                   f"of materials; got {name!r}")
            raise BadInput(msg)
    return [name for name in names if isinstance(name, str)]


def layer_requests(loaded: LoadedSite, node_role: str) -> list[LayerRequest]:
    """Per layer (blueprint order), the packages its roles install on a node of `node_role`."""
    site_values = role_variables(loaded)
    requests = []
    for layer in loaded.blueprint.layers:
        request = LayerRequest(layer.name)
        for role in layer.roles:
            declared = load_role_packages(role)
            if declared.node_roles and node_role not in declared.node_roles:
                continue
            variables = {**role_defaults(role), **site_values}
            for entry in declared.apt:
                if entry.node_roles and node_role not in entry.node_roles:
                    continue
                if entry.when_contains is not None:
                    listed, item = entry.when_contains
                    if item not in (variables.get(listed) or []):
                        continue
                if entry.when_equals is not None:
                    variable, value = entry.when_equals
                    if str(variables.get(variable)) != value:
                        continue
                names = _entry_names(role, entry, variables)
                if entry.repository is not None:
                    request.third_party += [(name, entry.repository) for name in names]
                elif entry.optional:
                    request.optional += names
                else:
                    request.packages += names
            request.on_node += [f"{role}: {what}" for what in declared.on_node]
        if request.packages or request.optional or request.third_party or request.on_node:
            requests.append(request)
    return requests


def node_roles_of(loaded: LoadedSite) -> list[str]:
    """Every node role some node of the site has, in a stable order."""
    return sorted({role for node in loaded.site.nodes for role in node.roles})
