"""Loading a site file and its blueprint, with errors that name file, line and field."""

from __future__ import annotations

import logging
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pydantic
from pydantic import BaseModel
from pydantic_core import ErrorDetails

from blueprint import argspecs
from blueprint.errors import BadInput
from blueprint.models import Blueprint, Site
from blueprint.paths import BUILTIN_BLUEPRINTS_DIR
from blueprint.yamlfile import FieldPath, LoadedYaml, load_yaml

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LoadedSite:
    """A checked site, its blueprint, and where they came from."""

    site: Site
    blueprint: Blueprint
    site_file: Path
    blueprint_file: Path

    @property
    def site_dir(self) -> Path:
        return self.site_file.parent


def resolve_site_file(ref: str | Path) -> Path:
    """Accept a site file, a site folder, or a site name under ./inventory."""
    path = Path(ref)
    if path.is_dir():
        path = path / "site.yaml"
    elif not path.exists() and "/" not in str(ref):
        path = Path("inventory") / str(ref) / "site.yaml"
    if not path.is_file():
        msg = f"site '{ref}': no site file at {path}; give a site.yaml, its folder or a site name"
        raise BadInput(msg)
    return path


def load_site(ref: str | Path) -> LoadedSite:
    """Load and check a site and its blueprint; raise BadInput before anything runs."""
    site_file = resolve_site_file(ref)
    loaded = load_yaml(site_file)
    if not isinstance(loaded.data, dict):
        msg = f"{site_file}:1: the site file must be a mapping with name, blueprint and nodes"
        raise BadInput(msg)

    # Files the site names are resolved against its folder as an absolute path: Ansible and
    # SSH run from other folders, where a relative path would point at nothing.
    site = _validate(Site, loaded, context={"site_dir": site_file.parent.resolve()})
    problems = [_line(loaded, path, message) for path, message in site.problems()]
    if problems:
        raise BadInput("\n".join(problems))

    blueprint, blueprint_file = load_blueprint(site.blueprint, site_file.parent.resolve(),
                                               loaded)
    override_problems = argspecs.check_overrides(site.overrides, blueprint)
    if override_problems:
        lines = [_line(loaded, ("overrides", key), msg) for key, msg in override_problems]
        raise BadInput("\n".join(lines))

    log.debug("loaded site %s (%d nodes) with blueprint %s", site.name, len(site.nodes),
              blueprint.name)
    return LoadedSite(site, blueprint, site_file.resolve(), blueprint_file)


def load_blueprint(
    ref: str, site_dir: Path, site_yaml: LoadedYaml | None = None
) -> tuple[Blueprint, Path]:
    """Load a built-in blueprint by name, or a blueprint file relative to the site."""
    builtin = BUILTIN_BLUEPRINTS_DIR / f"{ref}.yaml"
    path = builtin if builtin.is_file() else site_dir / ref
    if not path.is_file():
        names = ", ".join(sorted(p.stem for p in BUILTIN_BLUEPRINTS_DIR.glob("*.yaml")))
        msg = f"blueprint '{ref}' is neither built in ({names}) nor a file"
        if site_yaml is not None:
            msg = _line(site_yaml, ("blueprint",), msg)
        raise BadInput(msg)
    loaded = load_yaml(path)
    blueprint = _validate(Blueprint, loaded)
    _validate_platform_layer(blueprint, loaded)
    return blueprint, path


def _validate_platform_layer(blueprint: Blueprint, loaded: LoadedYaml) -> None:
    """The platform layer's options and versions follow their own model (no role specs)."""
    from blueprint.platform.config import PlatformLayer

    for index, layer in enumerate(blueprint.layers):
        if layer.name == "platform":
            _validate(PlatformLayer, loaded, prefix=("layers", index))


M = typing.TypeVar("M", bound=BaseModel)


def _validate(model: type[M], loaded: LoadedYaml, context: dict[str, Any] | None = None,
              prefix: FieldPath = ()) -> M:
    """Validate the whole file, or the part of it at `prefix`, as `model`."""
    data = loaded.data
    for item in prefix:
        data = data[item]
    try:
        return model.model_validate(data, context=context)
    except pydantic.ValidationError as exc:
        errors = exc.errors()
        for err in errors:
            err["loc"] = (*prefix, *err["loc"])
        errors.sort(key=lambda err: loaded.line_of(err["loc"]))
        lines = [_line(loaded, err["loc"], _describe(model, err, len(prefix)),
                       _where_loc(err)) for err in errors]
        raise BadInput("\n".join(lines)) from None


def _where_loc(err: ErrorDetails) -> FieldPath:
    """Errors about a key itself (unknown, missing) are told at the mapping that holds it."""
    loc = tuple(err["loc"])
    return loc[:-1] if err["type"] in ("extra_forbidden", "missing") else loc


def _line(loaded: LoadedYaml, loc: FieldPath, message: str,
          where_loc: FieldPath | None = None) -> str:
    """`file:line: where: message`, where is `node NAME` for node fields."""
    where = _where(loaded.data, loc if where_loc is None else where_loc)
    prefix = f"{loaded.path}:{loaded.line_of(loc)}"
    return f"{prefix}: {where}: {message}" if where else f"{prefix}: {message}"


def _where(data: Any, loc: FieldPath) -> str:
    parts: list[str] = []
    rest = list(loc)
    if len(rest) >= 2 and rest[0] == "nodes" and isinstance(rest[1], int):
        node = data["nodes"][rest[1]] if isinstance(data, dict) else None
        name = node.get("name") if isinstance(node, dict) else None
        parts.append(f"node {name}" if isinstance(name, str) else f"node #{rest[1] + 1}")
        rest = rest[2:]
    field = ""
    for item in rest:
        field += f"[{item}]" if isinstance(item, int) else (f".{item}" if field else str(item))
    if field:
        parts.append(field)
    return ": ".join(parts)


def _describe(model: type[BaseModel], err: ErrorDetails, skip: int = 0) -> str:
    """Turn one pydantic error into what the operator did and what was expected."""
    kind = err["type"]
    value = err.get("input")
    ctx = err.get("ctx") or {}
    if kind == "extra_forbidden":
        allowed = _allowed_keys(model, err["loc"][skip:-1])
        return f"unknown key '{err['loc'][-1]}'; expected one of {', '.join(allowed)}"
    if kind == "missing":
        return f"required field '{err['loc'][-1]}' is missing"
    if kind == "literal_error":
        expected = str(ctx.get("expected", "")).replace("'", "").replace(" or ", ", ")
        return f"'{value}' is not known; use one of {expected}"
    if kind == "too_short" and err["loc"][-1] == "roles":
        return "has no role; give at least one of control-plane, worker, gpu, storage"
    if kind == "too_short":
        return f"needs at least {ctx.get('min_length', 1)} item(s)"
    if kind in ("ip_any_address", "ip_v4_address", "ip_v6_address"):
        return f"'{value}' is not an IP address"
    if kind in ("ip_any_network", "ip_v4_network", "ip_v6_network"):
        return f"'{value}' is not a subnet in CIDR form (such as 10.77.0.0/24)"
    if kind == "value_error":
        return str(ctx.get("error", err["msg"]))
    if kind in ("date_from_datetime_parsing", "date_parsing", "date_type"):
        return f"'{value}' is not a date; write YYYY-MM-DD"
    if kind.endswith("_type") or kind.endswith("_parsing"):
        expected = kind.removesuffix("_type").removesuffix("_parsing").replace("_", " ")
        return f"expected {expected}, got {type(value).__name__} {value!r}"
    return f"{err['msg']} (got {value!r})"


def _allowed_keys(model: type[BaseModel], loc: FieldPath) -> list[str]:
    """Field names of the model found by walking `loc` from `model`."""
    current: Any = model
    for item in loc:
        if isinstance(item, int) or not _is_model(current):
            continue
        field = current.model_fields.get(item)
        if field is None:
            return []
        current = _inner_model(field.annotation)
    return sorted(current.model_fields) if _is_model(current) else []


def _is_model(value: Any) -> bool:
    return isinstance(value, type) and issubclass(value, BaseModel)


def _inner_model(annotation: Any) -> Any:
    """The model inside list[M], dict[str, M] or M | None."""
    if _is_model(annotation):
        return annotation
    for arg in typing.get_args(annotation):
        found = _inner_model(arg)
        if found is not None:
            return found
    return None
