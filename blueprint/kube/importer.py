"""Site files from other installers' inventories: kubespray and k3s-ansible (INI or YAML).

Ansible's own inventory parser reads the file, so every format Ansible reads is read the same
way here. Every group and variable is accounted for: a group is mapped to a node role, known
to need none, translated from a legacy name (with a notice, when asked to), or refused by
name. Variables not imported are listed in a notice, never dropped in silence. A cluster token
goes to the state folder's vault, never to the site file.
"""

from __future__ import annotations

import ipaddress
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from ansible.inventory.manager import InventoryManager
from ansible.parsing.dataloader import DataLoader

from blueprint.errors import BadInput
from blueprint.models.site import DNS_LABEL

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Dialect:
    """One installer's inventory vocabulary."""

    name: str
    distribution: str
    roles: dict[str, str]  # group -> node role
    structural: tuple[str, ...]  # groups that carry no node role of their own
    legacy: dict[str, str]  # old group name -> current one


KUBESPRAY = Dialect(
    name="kubespray",
    distribution="kubeadm",
    roles={"kube_control_plane": "control-plane", "kube_node": "worker"},
    structural=("all", "ungrouped", "k8s_cluster", "etcd"),
    legacy={"kube-master": "kube_control_plane", "kube_master": "kube_control_plane",
            "kube-node": "kube_node", "k8s-cluster": "k8s_cluster"},
)
K3S_ANSIBLE = Dialect(
    name="k3s-ansible",
    distribution="k3s",
    roles={"server": "control-plane", "agent": "worker"},
    structural=("all", "ungrouped", "k3s_cluster"),
    legacy={"master": "server", "node": "agent"},
)
DIALECTS = {dialect.name: dialect for dialect in (KUBESPRAY, K3S_ANSIBLE)}

# Connection variables every dialect shares; host addresses are read separately.
ADDRESS_VARS = ("ansible_host", "ip", "access_ip")
IGNORED_VARS = {"inventory_file", "inventory_dir", "ansible_port"}


@dataclass
class ImportedSite:
    """What an import makes: the site file's content, notices for the operator, secrets."""

    site: dict[str, Any]
    notices: list[str] = field(default_factory=list)
    secrets: dict[str, str] = field(default_factory=dict)


def _parse(path: Path) -> InventoryManager:
    if not path.is_file():
        msg = f"{path}: no such inventory file"
        raise BadInput(msg)
    inventory = InventoryManager(loader=DataLoader(), sources=[str(path)])
    if not inventory.hosts:
        msg = f"{path}: not an Ansible inventory with hosts (INI or YAML)"
        raise BadInput(msg)
    return inventory


def _group_vars(inventory: InventoryManager) -> dict[str, Any]:
    """Variables of every group, parents first (as Ansible layers them)."""
    merged: dict[str, Any] = {}
    for group in sorted(inventory.groups.values(), key=lambda g: g.depth):
        merged.update(group.get_vars())
    return merged


def _address(host_name: str, host_vars: dict[str, Any], where: str) -> str:
    for key in ADDRESS_VARS:
        if host_vars.get(key):
            return str(host_vars[key])
    try:
        return str(ipaddress.ip_address(host_name))
    except ValueError:
        msg = f"{where}: host {host_name} has no ansible_host or ip, and its name is no address"
        raise BadInput(msg) from None


def import_inventory(
    kind: str, path: Path, *, site_name: str, blueprint: str = "ai-edge",
    translate_legacy: bool = False,
) -> ImportedSite:
    """Read a kubespray or k3s-ansible inventory into a site; BadInput names what cannot be."""
    dialect = DIALECTS[kind]
    inventory = _parse(path)
    result = ImportedSite(site={})

    # Groups: each one mapped, structural, translated from a legacy name, or refused.
    legacy_seen = {name: dialect.legacy[name] for name in inventory.groups
                   if name in dialect.legacy}
    if legacy_seen and not translate_legacy:
        pairs = ", ".join(f"{old} (now {new})" for old, new in sorted(legacy_seen.items()))
        msg = (f"{path}: legacy {dialect.name} group name(s) {pairs}; newer releases ignore "
               "them and leave their hosts out of the cluster. Rename them, or import with "
               "--translate-legacy")
        raise BadInput(msg)
    if legacy_seen:
        pairs = ", ".join(f"{old} -> {new}" for old, new in sorted(legacy_seen.items()))
        result.notices.append(f"legacy group names translated: {pairs}")
    known = {*dialect.roles, *dialect.structural}
    unknown = sorted(name for name in inventory.groups
                     if name not in known and name not in dialect.legacy)
    if unknown:
        msg = (f"{path}: group(s) {', '.join(unknown)} are not {dialect.name} groups this "
               f"import knows; use {', '.join(sorted(known - {'all', 'ungrouped'}))}")
        raise BadInput(msg)

    roles_of: dict[str, list[str]] = {}
    for name, group in inventory.groups.items():
        current = dialect.legacy.get(name, name)
        role = dialect.roles.get(current)
        if role is None:
            continue
        for host in group.get_hosts():
            roles = roles_of.setdefault(host.name, [])
            if role not in roles:
                roles.append(role)
    if kind == "kubespray" and "etcd" in inventory.groups:
        outside = sorted(host.name for host in inventory.groups["etcd"].get_hosts()
                         if "control-plane" not in roles_of.get(host.name, []))
        if outside:
            msg = (f"{path}: etcd host(s) {', '.join(outside)} are not control planes; this "
                   "product runs stacked etcd on the control planes only")
            raise BadInput(msg)
    left_out = sorted(host.name for host in inventory.get_hosts() if host.name not in roles_of)
    if left_out:
        msg = (f"{path}: host(s) {', '.join(left_out)} are in no group that gives a node role "
               f"({', '.join(sorted(dialect.roles))}); put them in one or remove them")
        raise BadInput(msg)

    # Nodes, in inventory order; names that are no DNS label (an address) become cp-N/worker-N.
    nodes = []
    counters = {"control-plane": 0, "worker": 0}
    host_extra: set[str] = set()
    for host in inventory.get_hosts():
        roles = roles_of[host.name]
        host_vars = dict(host.vars)
        address = _address(host.name, host_vars, str(path))
        name = host.name
        if not DNS_LABEL.match(name):
            kind_ = "control-plane" if "control-plane" in roles else "worker"
            counters[kind_] += 1
            name = f"{'cp' if kind_ == 'control-plane' else 'worker'}-{counters[kind_]}"
        nodes.append({"name": name, "address": address, "roles": roles})
        host_extra |= set(host_vars) - set(ADDRESS_VARS) - IGNORED_VARS

    # Variables: connection, distribution and version, the token; the rest listed.
    variables = _group_vars(inventory)
    overrides: dict[str, Any] = {"kubernetes_distribution": dialect.distribution}
    site: dict[str, Any] = {"name": site_name, "blueprint": blueprint}
    used: set[str] = set(IGNORED_VARS)
    if variables.get("ansible_user"):
        site["ssh"] = {"user": str(variables["ansible_user"])}
        used.add("ansible_user")
    port = variables.get("ansible_port")
    if port not in (None, 22, "22"):
        msg = (f"{path}: ansible_port {port}: the site file has no SSH port; use port 22 or "
               "reach the nodes through ssh.bastion")
        raise BadInput(msg)
    _dialect_variables(dialect, variables, nodes, overrides, result, used)
    site["nodes"] = nodes
    site["overrides"] = overrides
    result.site = site

    not_imported = sorted((set(variables) - used) | host_extra)
    if not_imported:
        result.notices.append(
            f"variables not imported (no equivalent in the site file): {', '.join(not_imported)}")
    return result


def _dialect_variables(
    dialect: Dialect, variables: dict[str, Any], nodes: list[dict[str, Any]],
    overrides: dict[str, Any], result: ImportedSite, used: set[str],
) -> None:
    if dialect is K3S_ANSIBLE:
        if variables.get("k3s_version"):
            overrides["kubernetes_version"] = str(variables["k3s_version"])
            used.add("k3s_version")
        if variables.get("token"):
            result.secrets["kubernetes_token"] = str(variables["token"])
            result.notices.append("the cluster token went to the state folder's vault, "
                                  "not to the site file")
            used.add("token")
        endpoint = str(variables.get("api_endpoint") or "")
        if endpoint:
            used.add("api_endpoint")
            first = next(node for node in nodes if "control-plane" in node["roles"])
            if "{{" in endpoint or endpoint == first["address"]:
                result.notices.append("api_endpoint is the first server, the default here")
            else:
                overrides["kubernetes_api_lb"] = endpoint
                result.notices.append(f"api_endpoint {endpoint} became kubernetes_api_lb")
        return

    version = str(variables.get("kube_version") or "")
    if version:
        overrides["kubernetes_version"] = version if version.startswith("v") else f"v{version}"
        used.add("kube_version")
    plugin = variables.get("kube_network_plugin")
    if plugin:
        if plugin not in ("calico", "cilium"):
            msg = f"kube_network_plugin {plugin}: use calico or cilium (the kubeadm CNIs here)"
            raise BadInput(msg)
        overrides["kubernetes_cni"] = str(plugin)
        used.add("kube_network_plugin")
    balancer = variables.get("loadbalancer_apiserver")
    if isinstance(balancer, dict) and balancer.get("address"):
        overrides["kubernetes_api_lb"] = f"{balancer['address']}:{balancer.get('port', 6443)}"
        used.add("loadbalancer_apiserver")
    if variables.get("kube_vip_enabled") and variables.get("kube_vip_address"):
        overrides["kubernetes_api_vip"] = str(variables["kube_vip_address"])
        used |= {"kube_vip_enabled", "kube_vip_address"}


def site_yaml(imported: ImportedSite, source: Path, kind: str) -> str:
    """The site file's text, saying where it came from."""
    header = (f"# Imported from the {kind} inventory {source} by `blueprint import`.\n"
              "# Review it (nodes, roles, ssh) before the first deploy.\n")
    return header + yaml.safe_dump(imported.site, sort_keys=False)


def default_site_name(path: Path) -> str:
    name = re.sub(r"[^a-z0-9-]+", "-", path.stem.lower()).strip("-")[:63].strip("-")
    return name or "imported"
