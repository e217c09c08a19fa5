"""The bill of materials verbs: bom, bundle, mirror (sbom and compliance live beside them)."""

from __future__ import annotations

from pathlib import Path

import click

from blueprint.bom.apt import DEFAULT_ARCHIVE, DEFAULT_SECURITY
from blueprint.bom.lock import build_lock, lock_path, write_lock
from blueprint.bom.services import SiteServices
from blueprint.console import CONSOLE
from blueprint.errors import BadInput
from blueprint.loader import LoadedSite, load_site
from blueprint.state import StateDir


def download_proxies(loaded: LoadedSite, proxy: str | None) -> tuple[str | None, str | None]:
    """The proxy for Debian and file downloads, and the one for PyPI: `--proxy` for both;
    without it a mirror site's apt proxy (apt-cacher-ng and the like) for apt only."""
    if proxy is None and loaded.site.artifacts.mode == "mirror":
        return loaded.site.artifacts.apt_proxy, None
    return proxy, proxy


@click.command()
@click.argument("site")
@click.option("--release", default="bookworm", show_default=True,
              help="Debian release the nodes run.")
@click.option("--architecture", default="amd64", show_default=True)
@click.option("--archive", default=DEFAULT_ARCHIVE, show_default=True,
              help="Debian archive URL, as the nodes' apt sources name it.")
@click.option("--security-archive", default=DEFAULT_SECURITY, show_default=True,
              help="Debian security archive URL, as the nodes' apt sources name it.")
@click.option("--proxy", default=None,
              help="HTTP proxy for the downloads (default: the site's apt_proxy in mirror "
                   "mode, none otherwise; PyPI, charts and images only through this option).")
@click.option("--baseline-status", type=click.Path(path_type=Path, dir_okay=False),
              default=None, help="dpkg status of the OS install the nodes start from: its "
                                 "packages are not locked (default: none installed).")
@click.option("--allow-unresolved", is_flag=True,
              help="Write the lock and exit 0 even when some items have no checksum.")
@click.option("--state-dir", type=click.Path(path_type=Path), default=None)
def bom(site: str, release: str, architecture: str, archive: str, security_archive: str,
        proxy: str | None,
        baseline_status: Path | None, allow_unresolved: bool, state_dir: Path | None) -> None:
    """Resolve everything the site runs into bom.lock.yaml beside the site file."""
    loaded = load_site(site)
    if baseline_status is not None and not baseline_status.is_file():
        msg = f"--baseline-status {baseline_status}: no such file"
        raise BadInput(msg)
    state = StateDir.for_site(loaded.site_dir, state_dir)
    proxy, python_proxy = download_proxies(loaded, proxy)
    lock = build_lock(loaded, state.root / "bom-cache", release=release,
                      architecture=architecture, archive=archive,
                      security_archive=security_archive, proxy=proxy,
                      python_proxy=python_proxy,
                      baseline_status=baseline_status,
                      progress=lambda line: CONSOLE.print(f"  {line}", highlight=False))
    path = lock_path(loaded)
    write_lock(lock, path)
    size = sum(item.size or 0 for item in lock.items)
    CONSOLE.print(f"bom: {len(lock.items)} items ({size / 1e6:.1f} MB), "
                  f"{len(lock.unresolved)} unresolved; wrote {path}", highlight=False)
    for entry in lock.unresolved:
        CONSOLE.print(f"  unresolved: {entry.name} (layer {entry.layer}): {entry.reason}",
                      highlight=False, markup=False)
    if lock.unresolved and not allow_unresolved:
        msg = (f"{len(lock.unresolved)} item(s) have no known checksum; the lock is written but "
               "incomplete (--allow-unresolved accepts it)")
        raise UnresolvedItems(msg)


class UnresolvedItems(BadInput):
    """The lock names items whose checksum is not known."""


@click.group()
def bundle() -> None:
    """Offline bundles: every item of a lock in one signed archive."""


@bundle.command("build")
@click.argument("site")
@click.option("--key", "secret_key", type=click.Path(path_type=Path, dir_okay=False),
              required=True, help="The operator's minisign secret key.")
@click.option("--out", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="Archive to write (default: <state>/bundles/<site>-<lock digest>.tar).")
@click.option("--since", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="An older lock: the bundle carries only what changed since it.")
@click.option("--proxy", default=None,
              help="HTTP proxy for the downloads (default: the site's apt_proxy in mirror "
                   "mode, none otherwise; PyPI only through this option).")
@click.option("--state-dir", type=click.Path(path_type=Path), default=None)
def bundle_build(site: str, secret_key: Path, out: Path | None, since: Path | None,
                 proxy: str | None, state_dir: Path | None) -> None:
    """Download and verify every item of the site's lock; write one signed archive."""
    import hashlib

    from blueprint.bom.bundle import build_bundle

    loaded = load_site(site)
    path = lock_path(loaded)
    if not path.is_file():
        msg = f"{path} is missing; run `blueprint bom {site}` first"
        raise BadInput(msg)
    state = StateDir.for_site(loaded.site_dir, state_dir)
    proxy, python_proxy = download_proxies(loaded, proxy)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()[:12]
    out = out or state.root / "bundles" / f"{loaded.site.name}-{digest}.tar"
    built = build_bundle(path, out, secret_key, state.root / "bom-cache" / "files",
                         proxy=proxy, python_proxy=python_proxy, since=since)
    CONSOLE.print(f"bundle: {built.files} files ({built.size / 1e6:.1f} MB), signed; "
                  f"wrote {built.path}", highlight=False)


@bundle.command("verify")
@click.argument("bundle_file", metavar="BUNDLE", type=click.Path(path_type=Path))
@click.option("--pubkey", type=click.Path(path_type=Path, dir_okay=False), required=True,
              help="The operator's minisign public key.")
def bundle_verify(bundle_file: Path, pubkey: Path) -> None:
    """Check a bundle's signature and the checksum of every file in it."""
    from blueprint.bom.bundle import verify_bundle

    manifest = verify_bundle(bundle_file, pubkey)
    kind = "update bundle" if manifest.get("since_lock_sha256") else "bundle"
    CONSOLE.print(f"{kind} ok: site {manifest['site']}, {len(manifest['files'])} files, "
                  "signature and checksums verified", highlight=False)


@click.group()
def mirror() -> None:
    """The site mirror: serve a verified bundle to the nodes (apt, files, charts, images;
    NTP and DNS on request)."""


folder_option = click.option(
    "--folder", type=click.Path(path_type=Path, file_okay=False),
    default=Path("/var/lib/blueprint/mirror"), show_default=True,
    help="Where the mirror keeps the unpacked bundle, its PID and log.")


@mirror.command("serve")
@click.argument("bundle_file", metavar="BUNDLE", type=click.Path(path_type=Path))
@click.option("--pubkey", type=click.Path(path_type=Path, dir_okay=False), required=True)
@click.option("--listen", default="0.0.0.0:3150", show_default=True, help="HOST:PORT")
@click.option("--registry-port", default=5000, show_default=True, type=click.IntRange(1, 65535),
              help="Port of the image registry on the same host (when the bundle has images).")
@click.option("--ntp", is_flag=True,
              help="Also serve this host's clock over NTP (chronyd) on the --listen address.")
@click.option("--ntp-port", default=123, show_default=True, type=click.IntRange(1, 65535))
@click.option("--dns", "dns_site", metavar="SITE", default=None,
              help="Also answer DNS (dnsmasq) on the --listen address: SITE's node names "
                   "and the mirror's own name; nothing else unless --dns-upstream.")
@click.option("--dns-port", default=53, show_default=True, type=click.IntRange(1, 65535))
@click.option("--dns-upstream", multiple=True, metavar="ADDRESS",
              help="A DNS server to forward other names to (repeatable; default: none).")
@click.option("--mirror-name", default=None,
              help="The mirror's own name in DNS (default: this host's short name).")
@folder_option
def mirror_serve(bundle_file: Path, pubkey: Path, listen: str, registry_port: int,
                 ntp: bool, ntp_port: int, dns_site: str | None, dns_port: int,
                 dns_upstream: tuple[str, ...], mirror_name: str | None,
                 folder: Path) -> None:
    """Verify BUNDLE, then serve it in the background (stop with `mirror stop`): apt, files,
    Helm repositories at /helm/<repository>, and its images from a registry; on request NTP
    and DNS for sites that have neither. An update bundle is applied onto the mirror served
    from --folder (its base must be the served lock)."""
    from blueprint.bom.mirror import is_update_bundle, serve

    host, _, port = listen.rpartition(":")
    if not host or not port.isdigit():
        msg = f"--listen {listen}: expected HOST:PORT, e.g. 10.20.0.2:3150"
        raise BadInput(msg)
    if (dns_upstream or mirror_name) and dns_site is None:
        msg = "--dns-upstream and --mirror-name are settings of --dns SITE, which is not given"
        raise BadInput(msg)
    services = site_services(host, ntp_port if ntp else None, dns_site, dns_port,
                             list(dns_upstream), mirror_name)
    folder.mkdir(parents=True, exist_ok=True)
    update = is_update_bundle(bundle_file)
    state = serve(bundle_file, pubkey, folder, host, int(port), registry_port=registry_port,
                  services=services)
    if update:
        CONSOLE.print(f"mirror: applied update bundle {bundle_file} onto {folder}",
                      highlight=False)
    CONSOLE.print(f"mirror: serving {bundle_file} on {state.url} (PID {state.pid}); nodes use "
                  f"it as artifacts.apt_proxy with artifacts.mode offline", highlight=False)
    if state.registry_pid is not None:
        CONSOLE.print(f"mirror: images on {host}:{state.registry_port} (docker-registry, PID "
                      f"{state.registry_pid}, read-only; plain HTTP)", highlight=False)
    if state.ntp_pid is not None:
        CONSOLE.print(f"mirror: NTP on {host}:{state.ntp_port}/udp (chronyd, PID "
                      f"{state.ntp_pid}, this host's clock at stratum 10)", highlight=False)
    if state.dns_pid is not None:
        CONSOLE.print(f"mirror: DNS on {host}:{state.dns_port} (dnsmasq, PID "
                      f"{state.dns_pid})", highlight=False)


def site_services(host: str, ntp_port: int | None, dns_site: str | None, dns_port: int,
                  upstreams: list[str], mirror_name: str | None) -> SiteServices:
    """The NTP and DNS the mirror serves; DNS names come from the site file."""
    import socket

    from blueprint.models.site import DNS_LABEL

    if dns_site is None:
        return SiteServices(ntp_port=ntp_port)
    site = load_site(dns_site).site
    name = mirror_name or socket.gethostname().split(".")[0].lower()
    if not DNS_LABEL.match(name):
        msg = (f"--mirror-name {name}: not a DNS label; use lower-case letters, digits and "
               "'-' (this host's name is not one: give --mirror-name)")
        raise BadInput(msg)
    records = {node.name: str(node.address) for node in site.nodes}
    if name in records:
        msg = (f"--mirror-name {name}: node {name} of {dns_site} has that name; give the "
               "mirror another")
        raise BadInput(msg)
    records[name] = host
    domain = site.provision.domain if site.provision else None
    return SiteServices(ntp_port=ntp_port, dns_port=dns_port, dns_records=records,
                        dns_domain=domain, dns_upstreams=upstreams)


@mirror.command("stop")
@folder_option
def mirror_stop(folder: Path) -> None:
    """Stop the mirror started from --folder (and its NTP and DNS servers), by PID."""
    from blueprint.bom.mirror import stop

    state = stop(folder)
    CONSOLE.print("mirror: stopped" if state else "mirror: none was running")


@click.command()
@click.argument("site")
@click.option("--out", type=click.Path(path_type=Path, file_okay=False), default=None,
              help="Folder for sbom.cdx.json and sbom.spdx.json (default: <state>/sbom).")
@click.option("--state-dir", type=click.Path(path_type=Path), default=None)
def sbom(site: str, out: Path | None, state_dir: Path | None) -> None:
    """CycloneDX 1.6 and SPDX 2.3 SBOMs from the lock and what the nodes really run."""
    from blueprint.bom.lock import check_lock
    from blueprint.bom.sbom import site_components, write_sboms
    from blueprint.inventory import render_ssh_config

    loaded = load_site(site)
    lock = check_lock(loaded, required=True)
    assert lock is not None
    state = StateDir.for_site(loaded.site_dir, state_dir)
    ssh_config = render_ssh_config(loaded.site, state)
    components = site_components(lock, ssh_config, loaded.site.nodes)
    paths = write_sboms(loaded.site.name, lock, components, out or state.root / "sbom")
    counts: dict[str, int] = {}
    for component in components:
        counts[component.lock_status] = counts.get(component.lock_status, 0) + 1
    for component in components:
        if component.lock_status == "differs-from-lock":
            CONSOLE.print(f"  differs from the lock: {component.name} {component.version} on "
                          f"{', '.join(component.nodes)} (lock: {component.lock_version})",
                          highlight=False, markup=False)
    summary = ", ".join(f"{count} {status}" for status, count in sorted(counts.items()))
    CONSOLE.print(f"sbom: {len(components)} components ({summary}); wrote "
                  f"{', '.join(str(path) for path in paths)}", highlight=False)


@click.command()
@click.argument("site")
@click.option("--policy", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="Licence policy (allow/review/deny); default: the blueprint's.")
@click.option("--answers", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="The organisation's answers to the self-certification questions (YAML).")
@click.option("--with-nodes", is_flag=True,
              help="Read what the nodes run (SSH) into the record's SBOMs, not only the lock.")
@click.option("--state-dir", type=click.Path(path_type=Path), default=None)
def compliance(site: str, policy: Path | None, answers: Path | None, with_nodes: bool,
               state_dir: Path | None) -> None:
    """Licence decisions per component and a compliance record; exit 1 on a denied licence."""
    from blueprint.bom.compliance import (
        POLICY_FILE,
        decisions_for,
        load_policy,
        read_answers,
        write_record,
    )
    from blueprint.bom.lock import check_lock
    from blueprint.bom.sbom import merge, site_components, write_sboms
    from blueprint.errors import ValidationFailed
    from blueprint.inventory import render_ssh_config

    loaded = load_site(site)
    lock = check_lock(loaded, required=True)
    assert lock is not None
    rules = load_policy(policy or POLICY_FILE)
    given, unanswered = read_answers(answers)
    state = StateDir.for_site(loaded.site_dir, state_dir)
    decisions = decisions_for(lock, rules)
    record = write_record(state.root / "compliance", loaded.site.name, lock, decisions, given,
                          unanswered, state.root / "bom-cache" / "files")
    if with_nodes:
        components = site_components(lock, render_ssh_config(loaded.site, state),
                                     loaded.site.nodes)
    else:
        components = merge(lock, [])
    write_sboms(loaded.site.name, lock, components, record)

    counts = {"allow": 0, "review": 0, "deny": 0}
    for decision in decisions:
        counts[decision.decision] += 1
        if decision.decision != "allow":
            CONSOLE.print(f"  {decision.decision}: {decision.name} {decision.version}: "
                          f"{decision.licence}", highlight=False, markup=False)
    CONSOLE.print(f"compliance: {counts['allow']} allowed, {counts['review']} to review, "
                  f"{counts['deny']} denied; {len(unanswered)} self-certification question(s) "
                  f"unanswered{': ' + ', '.join(unanswered) if unanswered else ''}",
                  highlight=False)
    CONSOLE.print(f"record: {record}", highlight=False)
    if counts["deny"]:
        denied = [d.name for d in decisions if d.decision == "deny"]
        msg = f"site {loaded.site.name}: denied licence in {', '.join(denied)}"
        raise ValidationFailed(msg)
