"""Rendering a site into what Ansible and SSH read: inventory, role variables, ssh_config."""

from __future__ import annotations

import shlex
import tempfile
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from blueprint.artifacts import repository_variables
from blueprint.errors import BadInput
from blueprint.kube.storage import check_storage
from blueprint.kube.variables import kubernetes_group_variables, kubernetes_host_variables
from blueprint.loader import LoadedSite
from blueprint.models import Node, Site
from blueprint.paths import ROLES_DIR
from blueprint.state import StateDir

# Ansible group names cannot carry '-'; the node role control-plane becomes control_plane.
# The Python Ansible runs modules with on every node (Debian and Ubuntu put it here).
PYTHON = "/usr/bin/python3"
GROUP_OF_ROLE = {"control-plane": "control_plane", "worker": "worker", "gpu": "gpu",
                 "storage": "storage"}


def node_user(site: Site, node: Node) -> str:
    return node.ssh.user if node.ssh and node.ssh.user else site.ssh.user


def node_key(site: Site, node: Node) -> Path | None:
    return node.ssh.key if node.ssh and node.ssh.key else site.ssh.key


def control_path(state: StateDir) -> str:
    """Where SSH keeps a node's shared connection; a socket path must stay under 108 bytes.

    ssh adds 40 characters for %C and 17 for a temporary suffix while it sets the socket up,
    so a deep state folder falls back to the temp folder.
    """
    folder = state.root if len(str(state.root)) <= 40 else Path(tempfile.gettempdir())
    return f"{folder}/bp-cm-%C"


def render_ssh_config(site: Site, state: StateDir) -> Path:
    """One Host block per node (name and address), host key checking always on.

    With a bastion, nodes are reached through it; the bastion itself is reached directly,
    with the site's key and pinned host keys, whether it is one of the nodes or not.
    """
    bastion_host = _bastion_host(site.ssh.bastion)
    blocks = []
    if bastion_host is not None:
        blocks.append("\n".join([f"Host {bastion_host}", "  ProxyJump none",
                                  *_connection_lines(site, state, site.ssh.key)]))
    for node in site.nodes:
        lines = [f"Host {node.name} {node.address}", f"  HostName {node.address}",
                 f"  User {node_user(site, node)}"]
        lines += _connection_lines(site, state, node_key(site, node))
        if site.ssh.bastion and bastion_host not in (node.name, str(node.address)):
            lines.append(f"  ProxyJump {site.ssh.bastion}")
        blocks.append("\n".join(lines))
    path = state.root / "ssh_config"
    path.write_text("# Written by blueprint from the site file; do not edit.\n"
                    + "\n\n".join(blocks) + "\n", encoding="utf-8")
    path.chmod(0o600)
    return path


def _bastion_host(bastion: str | None) -> str | None:
    if not bastion:
        return None
    return bastion.rsplit("@", 1)[-1].rsplit(":", 1)[0]


def _connection_lines(site: Site, state: StateDir, key: Path | None) -> list[str]:
    lines = [
        "  StrictHostKeyChecking yes",
        "  BatchMode yes",
        "  ConnectTimeout 10",
        "  ControlMaster auto",
        f"  ControlPath {control_path(state)}",
        "  ControlPersist 60s",
    ]
    if key is not None:
        lines += [f"  IdentityFile {key}", "  IdentitiesOnly yes"]
    if site.ssh.known_hosts is not None:
        lines.append(f"  UserKnownHostsFile {site.ssh.known_hosts}")
    return lines


def role_defaults(role: str) -> dict[str, Any]:
    """A role's `defaults/main.yml`: what it does when neither blueprint nor site says."""
    path = ROLES_DIR / role / "defaults" / "main.yml"
    data = yaml.safe_load(path.read_text(encoding="utf-8")) if path.is_file() else None
    return dict(data or {})


def role_variables(loaded: LoadedSite) -> dict[str, Any]:
    """Role variables: blueprint layer options, then what the site says, then its overrides."""
    site = loaded.site
    variables: dict[str, Any] = {}
    for layer in loaded.blueprint.layers:
        variables.update(layer.options)

    admin_keys = list(site.ssh.admin_keys)
    if not admin_keys and site.ssh.key is not None:
        default_pub = site.ssh.key.with_name(site.ssh.key.name + ".pub")
        admin_keys = [default_pub] if default_pub.is_file() else []
    mirror = site.artifacts.mode == "mirror"
    variables.update({
        "os_baseline_http_proxy": site.network.http_proxy or "",
        "os_baseline_https_proxy": site.network.https_proxy or "",
        "os_baseline_no_proxy": list(site.network.no_proxy),
        # Offline nodes fetch through the bundle's mirror, which answers as an apt proxy.
        "os_baseline_apt_proxy": (site.artifacts.apt_proxy or "")
        if site.artifacts.mode in ("mirror", "offline") else "",
        "os_baseline_extra_ca_certs": [
            {"name": path.stem, "pem": path.read_text(encoding="utf-8")}
            for path in site.network.extra_ca
        ],
        "os_baseline_admin_user": site.ssh.admin_user,
        "os_baseline_admin_authorized_keys": [
            path.read_text(encoding="utf-8").strip() for path in admin_keys
        ],
        "container_runtime_source": "mirror" if mirror else "distribution",
        "container_runtime_registry_mirrors": [
            mirror_.model_dump() for mirror_ in site.artifacts.registry_mirrors
        ],
    })
    # Only when the site names some: a blueprint's own time servers stay otherwise.
    if site.network.time_servers:
        variables["os_baseline_time_servers"] = list(site.network.time_servers)
    layers = [layer.name for layer in loaded.blueprint.layers]
    variables.update(repository_variables(site, layers))
    variables.update(site.overrides)
    return variables


def mirror_hosts(site: Site) -> list[str]:
    """Every host[:port] that a registry mirror endpoint of the site points at."""
    hosts = {urlsplit(endpoint).netloc for mirror in site.artifacts.registry_mirrors
             for endpoint in mirror.endpoints}
    return sorted(host for host in hosts if host)


def secret_variables(loaded: LoadedSite, secrets: dict[str, Any]) -> dict[str, Any]:
    """Role variables made from the site's vault; passed to Ansible, never written to state.

    `registry_credentials` maps a registry mirror host to {username, password}; a host that
    no mirror endpoint uses is refused, since containerd would never send it anywhere.
    """
    where = f"{loaded.site_dir / 'secrets.yaml'}: registry_credentials"
    credentials = secrets.get("registry_credentials") or {}
    if not isinstance(credentials, dict):
        msg = f"{where}: must map a mirror host to {{username, password}}"
        raise BadInput(msg)
    in_use = mirror_hosts(loaded.site)
    auth = []
    for host, entry in credentials.items():
        if str(host) not in in_use:
            msg = (
                f"{where}: host '{host}' is used by no registry mirror endpoint; use one of "
                f"{', '.join(in_use) or '(none: artifacts.registry_mirrors is empty)'}, "
                "or remove it"
            )
            raise BadInput(msg)
        fields = entry if isinstance(entry, dict) else {}
        if sorted(fields) != ["password", "username"] or not all(
            isinstance(value, str) and value for value in fields.values()
        ):
            msg = f"{where}: host '{host}': give exactly a non-empty username and password"
            raise BadInput(msg)
        auth.append({"host": str(host), "username": fields["username"],
                     "password": fields["password"]})
    return {"container_runtime_registry_auth": auth}


def render_inventory(loaded: LoadedSite, state: StateDir, *, stock: bool = False) -> Path:
    """Write `<state>/inventory/` (hosts.yml and group_vars/all.yml); return its folder.

    `stock` is for benchmarks against Ansible's defaults: its ssh plugin then keeps its own
    shared connections, as stock Ansible does, instead of mitogen's one session per node.
    """
    site = loaded.site
    ssh_config = render_ssh_config(site, state)
    ssh_args = f"-F {shlex.quote(str(ssh_config))}"
    if not stock:
        # One session per node comes from mitogen: no shared connection is made or used,
        # so a run never rides on a connection opened with other settings.
        ssh_args += " -o ControlPath=none"
    variables = role_variables(loaded)
    check_storage(loaded, variables)
    kube_hosts = kubernetes_host_variables(loaded, variables)
    hosts: dict[str, Any] = {}
    groups: dict[str, dict[str, Any]] = {group: {"hosts": {}} for group in GROUP_OF_ROLE.values()}
    for node in site.nodes:
        host: dict[str, Any] = {
            "ansible_host": str(node.address),
            "ansible_user": node_user(site, node),
            "ansible_ssh_common_args": ssh_args,
            "blueprint_node_roles": list(node.roles),
            # Per node: SSH hardening must keep this node's own installer login working.
            "os_baseline_installer_user": node_user(site, node),
        }
        key = node_key(site, node)
        if key is not None:
            host["ansible_ssh_private_key_file"] = str(key)
        host.update(kube_hosts.get(node.name, {}))
        hosts[node.name] = host
        for role in node.roles:
            groups[GROUP_OF_ROLE[role]]["hosts"][node.name] = {}

    inventory_dir = state.root / "inventory"
    (inventory_dir / "group_vars").mkdir(parents=True, exist_ok=True)
    inventory = {"all": {"hosts": hosts, "children": groups}}
    _write_yaml(inventory_dir / "hosts.yml", inventory)
    group_vars = {"blueprint_site": site.name, "blueprint_name": loaded.blueprint.name,
                  "ansible_python_interpreter": PYTHON, **variables,
                  **kubernetes_group_variables(loaded, variables, state.kubeconfig)}
    _write_yaml(inventory_dir / "group_vars" / "all.yml", group_vars)
    return inventory_dir


def _write_yaml(path: Path, data: Any) -> None:
    text = "# Written by blueprint from the site file; do not edit.\n"
    text += yaml.safe_dump(data, sort_keys=False, default_flow_style=False)
    path.write_text(text, encoding="utf-8")
