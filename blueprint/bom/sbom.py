"""SBOMs of a site (CycloneDX 1.6 JSON, SPDX 2.3 JSON) from its lock and what its nodes run.

Every node is asked once over SSH for its dpkg status and its /usr/share/doc/*/copyright
files. A package installed at a version other than the lock's is flagged; one the lock does
not name (the OS install itself) is listed as such; a locked one no node has, too.
"""

from __future__ import annotations

import datetime as dt
import io
import logging
import re
import subprocess
import tarfile
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from blueprint.bom.licences import NOASSERTION, licence_of_copyright
from blueprint.bom.lock import Lock, LockItem
from blueprint.errors import DeployFailed
from blueprint.models import Node

log = logging.getLogger(__name__)

TOOL = "edge-blueprint"
PROPERTY = "blueprint"
DPKG_QUERY = ("dpkg-query -W -f '${Package}\\t${Version}\\t${Architecture}\\t"
              "${db:Status-Abbrev}\\n'")
# Every copyright file of the node in one tar stream, so one SSH round trip per node.
COPYRIGHTS = "cd /usr/share/doc && tar -cf - --dereference --wildcards '*/copyright' 2>/dev/null"


@dataclass
class Component:
    """One component of the site (a Debian package, a file, a controller's Python package):
    what the lock says and where it is installed."""

    name: str
    version: str
    architecture: str
    licence: str = NOASSERTION
    sha256: str | None = None
    url: str | None = None
    layer: str | None = None
    nodes: list[str] = field(default_factory=list)
    lock_status: str = "locked"  # locked | differs-from-lock | not-in-lock | not-installed
    lock_version: str | None = None
    kind: str = "deb"  # the lock's kind: deb, file, pypi, chart, image
    repository: str | None = None  # a third-party apt repository of the catalogue

    def purl(self, release: str) -> str:
        from packageurl import PackageURL

        if self.kind == "pypi":
            return str(PackageURL(type="pypi", name=self.name, version=self.version))
        if self.kind == "image":
            # purl's oci type: the name is the repository's last segment, the version the
            # manifest digest; where it is kept and its tag are qualifiers.
            return str(PackageURL(type="oci", name=self.name.rsplit("/", 1)[-1].lower(),
                                  version=f"sha256:{self.sha256}",
                                  qualifiers={"repository_url": self.name, "tag": self.version}))
        if self.kind == "chart":
            # purl has no Helm type: a generic package located by its archive and checksum.
            return str(PackageURL(type="generic", name=self.name, version=self.version,
                                  qualifiers={"download_url": self.url or "",
                                              "checksum": f"sha256:{self.sha256}"}))
        if self.repository is not None:
            # Not Debian's package: the catalogue repository is its namespace.
            return str(PackageURL(type="deb", namespace=self.repository, name=self.name,
                                  version=self.version,
                                  qualifiers={"arch": self.architecture} if self.architecture
                                  else {}))
        return str(PackageURL(type="deb", namespace="debian", name=self.name,
                              version=self.version,
                              qualifiers={"arch": self.architecture,
                                          "distro": f"debian-{release}"}))


@dataclass
class NodePackages:
    node: str
    packages: dict[str, tuple[str, str]]  # name -> (version, architecture)
    copyrights: dict[str, str]  # name -> text


def read_node(ssh_config: Path, node: Node) -> NodePackages:
    """A node's installed packages and copyright files, over SSH with the site's settings."""
    base = ["ssh", "-F", str(ssh_config), node.name]
    listing = subprocess.run([*base, DPKG_QUERY], capture_output=True, text=True, timeout=120,
                             check=False)
    if listing.returncode != 0:
        msg = f"node {node.name}: dpkg-query failed: {listing.stderr.strip()[-200:]}"
        raise DeployFailed(msg)
    packages = {}
    for line in listing.stdout.splitlines():
        name, version, arch, status = [*line.split("\t"), "", "", ""][:4]
        if status.startswith("ii"):
            packages[name] = (version, arch)
    stream = subprocess.run([*base, COPYRIGHTS], capture_output=True, timeout=300, check=False)
    copyrights: dict[str, str] = {}
    try:
        with tarfile.open(fileobj=io.BytesIO(stream.stdout), mode="r:") as archive:
            for member in archive:
                parts = member.name.removeprefix("./").split("/")
                if len(parts) == 2 and member.isfile():
                    handle = archive.extractfile(member)
                    if handle is not None:
                        copyrights[parts[0]] = handle.read().decode("utf-8", "replace")
    except tarfile.TarError as exc:
        log.warning("node %s: copyright files unreadable: %s", node.name, exc)
    return NodePackages(node.name, packages, copyrights)


def merge(lock: Lock, nodes: list[NodePackages]) -> list[Component]:
    """One component per package and version across the lock and the nodes."""
    locked: dict[str, LockItem] = {item.name: item for item in lock.items if item.kind == "deb"}
    found: dict[tuple[str, str], Component] = {}
    licences: dict[str, str] = {}
    for node in nodes:
        for name, (version, arch) in sorted(node.packages.items()):
            component = found.get((name, version))
            if component is None:
                item = locked.get(name)
                component = Component(name, version, arch)
                if item is None:
                    component.lock_status = "not-in-lock"
                elif item.version != version:
                    component.lock_status = "differs-from-lock"
                    component.lock_version = item.version
                    component.layer = item.layer
                else:
                    component.sha256, component.url, component.layer = (item.sha256, item.url,
                                                                        item.layer)
                    component.licence = item.licence
                component.repository = item.repository if item is not None else None
                found[(name, version)] = component
            component.nodes.append(node.node)
            if component.licence == NOASSERTION and name in node.copyrights:
                if name not in licences:
                    licences[name] = licence_of_copyright(node.copyrights[name])
                component.licence = licences[name]
    # Files of the catalogue (binaries, archives), the platform's charts and images and the
    # controller's Python packages, as the lock pins them: no node's dpkg reports them.
    for item in lock.items:
        if item.kind in ("file", "pypi", "chart", "image"):
            # Keyed apart from Debian's: PyPI's tzdata is not Debian's tzdata.
            found[(f"{item.kind}:{item.name}", item.version)] = Component(
                item.name, item.version, "", item.licence, item.sha256, item.url, item.layer,
                kind=item.kind)
    installed = {name for name, _ in found}
    for name, item in sorted(locked.items()):
        if name not in installed:
            found[(name, item.version)] = Component(
                name, item.version, "", item.licence, item.sha256, item.url, item.layer,
                lock_status="not-installed", repository=item.repository)
    return sorted(found.values(), key=lambda c: (c.name, c.version))


def cyclonedx_json(site: str, lock: Lock, components: list[Component]) -> str:
    """CycloneDX 1.6 JSON, as cyclonedx-python-lib writes it.

    Its schema validator is left to the tests: importing it (jsonschema's format checkers)
    costs seconds on every run.
    """
    from cyclonedx.model import HashAlgorithm, HashType, Property
    from cyclonedx.model.bom import Bom
    from cyclonedx.model.component import Component as CdxComponent
    from cyclonedx.model.component import ComponentType
    from cyclonedx.model.license import LicenseExpression
    from cyclonedx.output.json import JsonV1Dot6
    from packageurl import PackageURL

    bom = Bom()
    root = CdxComponent(name=site, type=ComponentType.PLATFORM, bom_ref=f"site:{site}")
    bom.metadata.component = root
    for component in components:
        props = [Property(name=f"{PROPERTY}:lock", value=component.lock_status)]
        if component.lock_version:
            props.append(Property(name=f"{PROPERTY}:lock-version", value=component.lock_version))
        if component.layer:
            props.append(Property(name=f"{PROPERTY}:layer", value=component.layer))
        props += [Property(name=f"{PROPERTY}:node", value=node) for node in component.nodes]
        cdx = CdxComponent(
            name=component.name, version=component.version,
            type=ComponentType.CONTAINER if component.kind == "image" else ComponentType.LIBRARY,
            bom_ref=component.purl(lock.release),
            purl=PackageURL.from_string(component.purl(lock.release)),
            properties=props,
            hashes=[HashType(alg=HashAlgorithm.SHA_256, content=component.sha256)]
            if component.sha256 else [],
            licenses=[LicenseExpression(component.licence)]
            if component.licence != NOASSERTION else [],
        )
        bom.components.add(cdx)
    bom.register_dependency(root, list(bom.components))
    return str(JsonV1Dot6(bom).output_as_string(indent=1))


def spdx_document(site: str, lock: Lock, components: list[Component]):  # type: ignore[no-untyped-def]
    """An SPDX 2.3 document; raises when spdx-tools' validator finds a problem."""
    from license_expression import get_spdx_licensing
    from spdx_tools.spdx.model.actor import Actor, ActorType
    from spdx_tools.spdx.model.checksum import Checksum, ChecksumAlgorithm
    from spdx_tools.spdx.model.document import CreationInfo, Document
    from spdx_tools.spdx.model.extracted_licensing_info import ExtractedLicensingInfo
    from spdx_tools.spdx.model.package import (
        ExternalPackageRef,
        ExternalPackageRefCategory,
        Package,
    )
    from spdx_tools.spdx.model.relationship import Relationship, RelationshipType
    from spdx_tools.spdx.model.spdx_no_assertion import SpdxNoAssertion
    from spdx_tools.spdx.validation.document_validator import validate_full_spdx_document
    from spdx_tools.spdx.validation.uri_validators import validate_download_location

    licensing = get_spdx_licensing()
    info = CreationInfo(
        spdx_version="SPDX-2.3", spdx_id="SPDXRef-DOCUMENT", name=f"site {site}",
        document_namespace=f"https://spdx.org/spdxdocs/{TOOL}-{site}-{uuid.uuid4()}",
        creators=[Actor(ActorType.TOOL, TOOL)], created=dt.datetime.now(dt.UTC).replace(
            tzinfo=None, microsecond=0))
    # The site itself is the package the document describes; it contains every component.
    root = Package(spdx_id="SPDXRef-site", name=f"site {site}", download_location=SpdxNoAssertion(),
                   files_analyzed=False, license_concluded=SpdxNoAssertion(),
                   license_declared=SpdxNoAssertion(), copyright_text=SpdxNoAssertion())
    packages = [root]
    relationships = [Relationship("SPDXRef-DOCUMENT", RelationshipType.DESCRIBES, "SPDXRef-site")]
    refs: set[str] = set()
    for index, component in enumerate(components):
        spdx_id = f"SPDXRef-{index}-" + re.sub(r"[^A-Za-z0-9.-]", "-", component.name)
        licence = (licensing.parse(component.licence) if component.licence != NOASSERTION
                   else SpdxNoAssertion())
        refs.update(re.findall(r"LicenseRef-[A-Za-z0-9.-]+", component.licence))
        comment = f"lock: {component.lock_status}"
        if component.lock_version:
            comment += f" (lock has {component.lock_version})"
        if component.nodes:
            comment += f"; installed on {', '.join(component.nodes)}"
        # spdx-tools refuses some real URLs (an address with a port, such as an in-house
        # registry's); those stay in the comment.
        location = component.url
        if location and validate_download_location(location):
            comment += f"; from {location}"
            location = None
        packages.append(Package(
            spdx_id=spdx_id, name=component.name, version=component.version,
            download_location=location or SpdxNoAssertion(), files_analyzed=False,
            checksums=[Checksum(ChecksumAlgorithm.SHA256, component.sha256)]
            if component.sha256 else [],
            license_concluded=SpdxNoAssertion(), license_declared=licence,
            copyright_text=SpdxNoAssertion(), comment=comment,
            external_references=[ExternalPackageRef(ExternalPackageRefCategory.PACKAGE_MANAGER,
                                                    "purl", component.purl(lock.release))]))
        relationships.append(Relationship("SPDXRef-site", RelationshipType.CONTAINS, spdx_id))
    extracted = [ExtractedLicensingInfo(
        license_id=ref, extracted_text="See the package's Debian copyright file "
        "(/usr/share/doc/<package>/copyright): a licence Debian names without an SPDX id.",
        license_name=ref.removeprefix("LicenseRef-Debian-")) for ref in sorted(refs)]
    document = Document(creation_info=info, packages=packages, relationships=relationships,
                        extracted_licensing_info=extracted)
    problems = validate_full_spdx_document(document)
    if problems:
        msg = f"the SPDX SBOM does not validate: {problems[0].validation_message}"
        raise DeployFailed(msg)
    return document


def site_components(lock: Lock, ssh_config: Path, nodes: list[Node]) -> list[Component]:
    """Read every node in parallel, then merge with the lock."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=min(8, len(nodes))) as pool:
        read = list(pool.map(lambda node: read_node(ssh_config, node), nodes))
    return merge(lock, read)


def write_sboms(site: str, lock: Lock, components: list[Component], folder: Path) -> list[Path]:
    """Write sbom.cdx.json and sbom.spdx.json into `folder`, both validated first."""
    from spdx_tools.spdx.writer.write_anything import write_file

    folder.mkdir(parents=True, exist_ok=True)
    cdx = folder / "sbom.cdx.json"
    cdx.write_text(cyclonedx_json(site, lock, components), encoding="utf-8")
    spdx = folder / "sbom.spdx.json"
    write_file(spdx_document(site, lock, components), str(spdx), validate=False)
    return [cdx, spdx]
