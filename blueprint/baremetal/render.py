"""Boot artifacts of a site, rendered from its file: dnsmasq config, and per node an iPXE
script, a Debian preseed, its late script and an Ubuntu autoinstall user-data.

Everything goes to `<state>/boot/`: `dnsmasq.conf`, `tftp/` (iPXE binaries) and `http/`
(what the boot server's HTTP server serves: `nodes/<name>/...` and `installer/<os>/`).
"""

from __future__ import annotations

import ipaddress
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jinja2
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from blueprint.errors import BadInput
from blueprint.loader import LoadedSite
from blueprint.models import Node, Site
from blueprint.models.site import Provision
from blueprint.state import StateDir

log = logging.getLogger(__name__)

TEMPLATES = Path(__file__).parent / "templates"
DEFAULT_MIRRORS = {"debian-12": "http://deb.debian.org/debian",
                   "ubuntu-24.04": "http://archive.ubuntu.com/ubuntu"}
# Where Debian's ipxe package puts the binaries dnsmasq hands to firmware PXE.
IPXE_DIR = Path("/usr/lib/ipxe")
IPXE_FILES = ("undionly.kpxe", "ipxe.efi")


@dataclass(frozen=True)
class BootPaths:
    """The boot folder of a site's state."""

    root: Path

    @classmethod
    def of(cls, state: StateDir) -> BootPaths:
        return cls(state.root / "boot")

    @property
    def dnsmasq_conf(self) -> Path:
        return self.root / "dnsmasq.conf"

    @property
    def http(self) -> Path:
        return self.root / "http"

    @property
    def tftp(self) -> Path:
        return self.root / "tftp"

    @property
    def keys(self) -> Path:
        return self.root / "host-keys"

    def node_dir(self, node: str) -> Path:
        return self.http / "nodes" / node

    def host_key(self, node: str) -> Path:
        return self.keys / node / "ssh_host_ed25519_key"


def provisioned_nodes(site: Site, names: list[str] | None = None) -> list[Node]:
    """The nodes to render or provision; every one must say its boot MAC and install disk."""
    if site.provision is None:
        msg = "the site file has no provision section (boot server, interface, OS)"
        raise BadInput(msg)
    nodes = site.nodes
    if names:
        known = {node.name for node in nodes}
        unknown = [name for name in names if name not in known]
        if unknown:
            msg = (f"node(s) {', '.join(unknown)} are not in the site; it has "
                   f"{', '.join(sorted(known))}")
            raise BadInput(msg)
        nodes = [node for node in nodes if node.name in names]
    problems = []
    for node in nodes:
        for field, hint in (("boot_mac", "blueprint discover lists the node's MACs"),
                            ("install_disk", "e.g. /dev/disk/by-path/pci-0000:00:1f.2-ata-1")):
            if getattr(node, field) is None:
                problems.append(f"node {node.name}: {field} is not set; provisioning needs it "
                                f"({hint})")
    if problems:
        raise BadInput("\n".join(problems))
    return nodes


def host_key(paths: BootPaths, node: str) -> tuple[str, str]:
    """The node's SSH host key (private, public): made once, kept in the state folder."""
    path = paths.host_key(node)
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        key = ed25519.Ed25519PrivateKey.generate()
        private = key.private_bytes(serialization.Encoding.PEM,
                                    serialization.PrivateFormat.OpenSSH,
                                    serialization.NoEncryption())
        public = key.public_key().public_bytes(serialization.Encoding.OpenSSH,
                                               serialization.PublicFormat.OpenSSH)
        path.write_bytes(private)
        path.chmod(0o600)
        path.with_suffix(".pub").write_bytes(public + f" root@{node}\n".encode())
    return (path.read_text(encoding="utf-8"),
            path.with_suffix(".pub").read_text(encoding="utf-8").strip())


def _mirror(provision: Provision) -> dict[str, str]:
    url = provision.mirror or DEFAULT_MIRRORS[provision.os]
    parts = urlsplit(url)
    return {"url": url, "scheme": parts.scheme, "host": parts.netloc, "path": parts.path or "/"}


def _authorized_keys(site: Site) -> list[str]:
    keys = list(site.ssh.admin_keys)
    if site.ssh.key is not None:
        pub = site.ssh.key.with_name(site.ssh.key.name + ".pub")
        if pub.is_file():
            keys.insert(0, pub)
    if not keys:
        msg = ("provisioning needs the operator's public key: give ssh.key (with its .pub "
               "beside it) or ssh.admin_keys")
        raise BadInput(msg)
    lines = [path.read_text(encoding="utf-8").strip() for path in keys]
    return list(dict.fromkeys(line for line in lines if line))


def context(loaded: LoadedSite) -> dict[str, Any]:
    """What every template of the site sees."""
    site = loaded.site
    provision = site.provision
    assert provision is not None  # checked by provisioned_nodes
    subnet = site.network.subnet
    assert subnet is not None  # the site model requires it with a provision section
    http = f"http://{provision.boot_server}:{provision.http_port}"
    apt_proxy = site.artifacts.apt_proxy if site.artifacts.mode == "mirror" else None
    apt_proxy = apt_proxy or site.network.http_proxy
    env_proxy = [f"{name}={value}" for name, value in (
        ("http_proxy", site.network.http_proxy), ("https_proxy", site.network.https_proxy),
        ("no_proxy", ",".join(site.network.no_proxy) or None)) if value]
    return {
        "site": site,
        "http": http,
        "os": provision.os,
        "boot_server": str(provision.boot_server),
        "interface": provision.interface,
        "network": str(subnet.network_address),
        "netmask": str(subnet.netmask),
        "prefix": subnet.prefixlen,
        "gateway": str(provision.gateway) if provision.gateway else "",
        "dns": [str(server) for server in provision.dns],
        "domain": provision.domain,
        "timezone": provision.timezone,
        "mirror": _mirror(provision),
        # The autoinstall user-data is a second, Ubuntu target even on a Debian site.
        "ubuntu_mirror": (provision.mirror if provision.os.startswith("ubuntu") else None)
        or DEFAULT_MIRRORS["ubuntu-24.04"],
        "proxy": apt_proxy or "",
        "apt_proxy": apt_proxy,
        "env_proxy": env_proxy,
        "user": site.ssh.user,
        "authorized_keys": _authorized_keys(site),
        "cas": [{"name": path.stem, "pem": path.read_text(encoding="utf-8")}
                for path in site.network.extra_ca],
    }


def _environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,  # shell, preseed and config files, not HTML
    )


def render_node(env: jinja2.Environment, ctx: dict[str, Any], node: Node,
                paths: BootPaths) -> dict[str, str]:
    """The texts of one node's artifacts, by file name."""
    private, public = host_key(paths, node.name)
    node_ctx = {**ctx, "node": node, "host_key_private": private, "host_key_public": public}
    texts = {
        "boot.ipxe": env.get_template("boot.ipxe.j2").render(node_ctx),
        "preseed.cfg": env.get_template("preseed.cfg.j2").render(node_ctx),
        "late.sh": env.get_template("late.sh.j2").render(node_ctx),
        "user-data": env.get_template("user-data.j2").render(node_ctx),
        "meta-data": f"instance-id: {ctx['site'].name}-{node.name}\n",
    }
    return texts


def render_dnsmasq(env: jinja2.Environment, ctx: dict[str, Any], nodes: list[Node],
                   paths: BootPaths) -> str:
    return env.get_template("dnsmasq.conf.j2").render({
        **ctx, "nodes": nodes, "tftp_root": str(paths.tftp),
        "pid_file": str(paths.root / "dnsmasq.pid"),
        "lease_file": str(paths.root / "dnsmasq.leases"),
        "log_file": str(paths.root / "dnsmasq.log"),
    })


def render_boot_artifacts(loaded: LoadedSite, state: StateDir,
                          names: list[str] | None = None) -> BootPaths:
    """Write the site's boot artifacts into `<state>/boot/`; return where they are."""
    nodes = provisioned_nodes(loaded.site, names)
    # dnsmasq always gets every node of the site with a boot MAC, not only those asked for,
    # so a partial render never takes a lease away from another node.
    lease_nodes = [n for n in loaded.site.nodes if n.boot_mac and n.install_disk]
    paths = BootPaths.of(state)
    for folder in (paths.root, paths.http, paths.tftp, paths.keys):
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    env = _environment()
    ctx = context(loaded)

    for node in nodes:
        folder = paths.node_dir(node.name)
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        for name, text in render_node(env, ctx, node, paths).items():
            target = folder / name
            target.write_text(text, encoding="utf-8")
            # late.sh holds the node's host key: the boot server hands it to that node only.
            target.chmod(0o600)
    paths.dnsmasq_conf.write_text(render_dnsmasq(env, ctx, lease_nodes, paths),
                                  encoding="utf-8")

    installer = paths.http / "installer" / ctx["os"]
    installer.mkdir(parents=True, exist_ok=True)
    for binary in IPXE_FILES:
        source = IPXE_DIR / binary
        if source.is_file():
            shutil.copyfile(source, paths.tftp / binary)
            shutil.copyfile(source, paths.http / binary)
    log.info("Rendered boot artifacts of %d node(s) in %s", len(nodes), paths.root)
    return paths


def missing_boot_files(paths: BootPaths, os_name: str) -> list[str]:
    """Files the boot server needs that rendering cannot make (the installer, iPXE)."""
    wanted = [paths.tftp / binary for binary in IPXE_FILES]
    wanted += [paths.http / "installer" / os_name / name for name in ("linux", "initrd.gz")]
    return [str(path) for path in wanted if not path.is_file()]


def node_of_address(site: Site, address: str) -> str | None:
    """The node that owns an IP address, for the boot server's per-node access rule."""
    try:
        wanted = ipaddress.ip_address(address)
    except ValueError:
        return None
    return next((node.name for node in site.nodes if node.address == wanted), None)
