"""YAML loading that remembers the line of every key, so errors can name file:line."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from blueprint.errors import BadInput

FieldPath = tuple[str | int, ...]


@dataclass
class LoadedYaml:
    """A parsed YAML document and the 1-based line of each path in it."""

    path: Path
    data: Any
    lines: dict[FieldPath, int] = field(default_factory=dict)

    def line_of(self, path: FieldPath) -> int:
        """Line of `path`, or of its nearest ancestor that has one."""
        while path:
            if path in self.lines:
                return self.lines[path]
            path = path[:-1]
        return self.lines.get((), 1)


def load_yaml(path: Path) -> LoadedYaml:
    """Parse `path` with line tracking; duplicate keys and syntax errors are BadInput."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        msg = f"{path}: cannot read: {exc.strerror}"
        raise BadInput(msg) from exc

    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        line = exc.problem_mark.line + 1 if exc.problem_mark else 1
        msg = f"{path}:{line}: not valid YAML: {exc.problem}"
        raise BadInput(msg) from exc

    loaded = LoadedYaml(path=path, data=data)
    if node is not None:
        _record_lines(loaded, node, ())
    return loaded


def _record_lines(loaded: LoadedYaml, node: yaml.Node, path: FieldPath) -> None:
    loaded.lines.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key_node, value_node in node.value:
            key = str(key_node.value)
            if key in seen:
                line = key_node.start_mark.line + 1
                msg = f"{loaded.path}:{line}: key '{key}' appears twice"
                raise BadInput(msg)
            seen.add(key)
            loaded.lines[(*path, key)] = key_node.start_mark.line + 1
            _record_lines(loaded, value_node, (*path, key))
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            loaded.lines[(*path, index)] = item.start_mark.line + 1
            _record_lines(loaded, item, (*path, index))
