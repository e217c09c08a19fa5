"""The storage layer's site fields (NFS exports, Rook-Ceph devices), checked before any host.

They are role variables a site sets under `overrides:`; the argument spec checks their
types, this module what a type cannot say: absolute paths, client networks, device paths,
nodes that exist. Errors name the site file's line and the field.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Any

from blueprint.errors import BadInput
from blueprint.loader import LoadedSite
from blueprint.yamlfile import FieldPath, load_yaml

LAYER = "storage"
CLASSES = ("local-path", "nfs", "longhorn", "rook-ceph")
EXPORT_KEYS = {"path", "clients", "access"}
DEVICE = re.compile(r"^/dev/[A-Za-z0-9._/:+-]+$")
HOST = re.compile(r"^[A-Za-z0-9*]([A-Za-z0-9.*-]{0,252})$")


def _client_ok(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    try:
        ipaddress.ip_network(value, strict=False)
        return True
    except ValueError:
        return bool(HOST.match(value))


def storage_problems(loaded: LoadedSite, variables: dict[str, Any]) -> list[tuple[FieldPath, str]]:
    """(field path under the site file, message) for each storage setting that cannot work."""
    problems: list[tuple[FieldPath, str]] = []
    classes = variables.get("storage_classes") or ["local-path"]
    if not isinstance(classes, list):
        return [(("overrides", "storage_classes"),
                 f"expected a list of storage classes, got {classes!r}")]
    for index, name in enumerate(classes):
        if name not in CLASSES:
            problems.append((("overrides", "storage_classes", index),
                             f"'{name}' is not a storage class; use one of {', '.join(CLASSES)}"))

    exports = variables.get("storage_nfs_exports") or []
    where: FieldPath = ("overrides", "storage_nfs_exports")
    if not isinstance(exports, list):
        problems.append((where, f"expected a list of {{path, clients, access}}, got {exports!r}"))
        exports = []
    if "nfs" in classes:
        if not any("storage" in node.roles for node in loaded.site.nodes):
            problems.append((("nodes",), "storage class nfs needs a node with role storage "
                                         "(it serves the exports)"))
        if not exports:
            problems.append((where, "storage class nfs needs at least one export "
                                    "{path, clients, access}"))
    for index, export in enumerate(exports):
        at = (*where, index)
        if not isinstance(export, dict) or set(export) - EXPORT_KEYS or "path" not in export:
            problems.append((at, f"expected {{path, clients, access}}, got {export!r}"))
            continue
        path = str(export["path"])
        if not path.startswith("/") or ".." in path.split("/"):
            problems.append(((*at, "path"), f"'{path}' is not an absolute path without '..'"))
        clients = export.get("clients")
        if not isinstance(clients, list) or not clients:
            problems.append(((*at, "clients"),
                             f"got {clients!r}; give a list of client networks or hosts"))
        else:
            for number, client in enumerate(clients):
                if not _client_ok(client):
                    problems.append(((*at, "clients", number),
                                     f"'{client}' is neither a network (CIDR) nor a host name"))
        if export.get("access", "RW") not in ("RW", "RO"):
            problems.append(((*at, "access"), f"'{export['access']}': use RW or RO"))

    devices = variables.get("storage_ceph_devices") or {}
    names = [node.name for node in loaded.site.nodes]
    where = ("overrides", "storage_ceph_devices")
    if not isinstance(devices, dict):
        problems.append((where, f"expected {{node: [/dev/...]}}, got {devices!r}"))
        devices = {}
    for node, paths in devices.items():
        if node not in names:
            problems.append(((*where, node), f"'{node}' is not a node of this site; use one of "
                                            f"{', '.join(names)}"))
            continue
        if not isinstance(paths, list):
            problems.append(((*where, node), f"expected a list of /dev paths, got {paths!r}"))
            continue
        for index, path in enumerate(paths):
            if not isinstance(path, str) or not DEVICE.match(path):
                problems.append(((*where, node, index),
                                 f"'{path}' is not a device path under /dev"))
        twice = sorted({str(path) for path in paths if paths.count(path) > 1})
        if twice:
            problems.append(((*where, node), f"{', '.join(twice)} listed twice"))
    return problems


def check_storage(loaded: LoadedSite, variables: dict[str, Any]) -> None:
    """Raise BadInput with `file:line: field: message` lines when the storage settings are bad."""
    if not any(layer.name == LAYER for layer in loaded.blueprint.layers):
        return
    problems = storage_problems(loaded, variables)
    if not problems:
        return
    site_yaml = load_yaml(loaded.site_file)
    lines = []
    for path, message in problems:
        field = ".".join(str(part) for part in path)
        lines.append(f"{loaded.site_file}:{site_yaml.line_of(path)}: {field}: {message}")
    raise BadInput("\n".join(lines))
