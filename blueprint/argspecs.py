"""Checking a site's `overrides:` against the argument specs of the blueprint's roles."""

from __future__ import annotations

import copy
from functools import cache
from typing import Any

import yaml
from ansible.module_utils.common.arg_spec import ArgumentSpecValidator

from blueprint.models import Blueprint
from blueprint.paths import ROLES_DIR


@cache
def role_options(role: str) -> dict[str, Any]:
    """The `main` entry point options of a role's meta/argument_specs.yml ({} if none)."""
    spec_file = ROLES_DIR / role / "meta" / "argument_specs.yml"
    if not spec_file.is_file():
        return {}
    data = yaml.safe_load(spec_file.read_text(encoding="utf-8")) or {}
    options = data.get("argument_specs", {}).get("main", {}).get("options", {})
    return dict(options)


def check_overrides(overrides: dict[str, Any], blueprint: Blueprint) -> list[tuple[str, str]]:
    """(variable, problem) for each override no role of the blueprint accepts as given."""
    roles = [role for layer in blueprint.layers for role in layer.roles]
    owners = {name: role for role in roles for name in role_options(role)}
    problems: list[tuple[str, str]] = []
    for name, value in overrides.items():
        role = owners.get(name)
        if role is None:
            msg = (
                f"'{name}' is not a variable of any role of blueprint {blueprint.name} "
                f"({', '.join(roles)}); see each role's meta/argument_specs.yml"
            )
            problems.append((name, msg))
            continue
        error = _check_value(role, name, value)
        if error:
            problems.append((name, error))
    return problems


def _check_value(role: str, name: str, value: Any) -> str | None:
    spec = copy.deepcopy(role_options(role)[name])
    spec.pop("required", None)
    spec.pop("description", None)
    validator = ArgumentSpecValidator({name: spec})
    result = validator.validate({name: value})
    if not result.error_messages:
        return None
    expected = str(spec.get("type", "str"))
    if "elements" in spec:
        expected += f" of {spec['elements']}"
    choices = spec.get("choices")
    if choices:
        expected += f" (one of {', '.join(map(str, choices))})"
    return f"expected {expected}, got {value!r} (role {role}, meta/argument_specs.yml)"
