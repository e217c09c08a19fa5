"""SBOMs from a lock and a node's packages, validated with the libraries' own validators.

The node's dpkg status here is a stand-in typed for the test; the lab test reads real nodes.
"""

from __future__ import annotations

import json
from pathlib import Path

from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator
from spdx_tools.spdx.parser.parse_anything import parse_file
from spdx_tools.spdx.validation.document_validator import validate_full_spdx_document

from blueprint.bom.lock import Lock, LockItem
from blueprint.bom.sbom import NodePackages, merge, write_sboms

HERE = Path(__file__).parent


def item(name: str, version: str, licence: str) -> LockItem:
    return LockItem(name=name, version=version, kind="deb", layer="os_baseline",
                    url=f"http://deb.debian.org/debian/pool/main/{name[0]}/{name}/{name}.deb",
                    path=f"debian/pool/main/{name[0]}/{name}/{name}.deb", sha256="b" * 64,
                    licence=licence, node_roles=["worker"])


def test_sboms_flag_versions_that_differ_and_validate(tmp_path: Path) -> None:
    lock = Lock(site="bomtest", generated="2026-12-03T00:00:00+00:00", release="bookworm",
                architecture="amd64", archive="http://deb.debian.org/debian", inputs={},
                items=[item("zlib1g", "1:1.2.13.dfsg-1", "Zlib"),
                       item("curl", "7.88.1-10+deb12u14", "curl AND ISC"),
                       item("chrony", "4.3-2+deb12u1", "GPL-2.0-only")])
    standin_node = NodePackages(
        "n1", {"zlib1g": ("1:1.2.13.dfsg-1", "amd64"), "curl": ("7.88.1-10+deb12u5", "amd64"),
               "tzdata": ("2025b-0+deb12u2", "all")},
        {"tzdata": (HERE / "fixtures/copyright/tzdata").read_text()})
    components = {c.name: c for c in merge(lock, [standin_node])}
    assert components["zlib1g"].lock_status == "locked"
    assert components["curl"].lock_status == "differs-from-lock"
    assert components["curl"].lock_version == "7.88.1-10+deb12u14"
    assert components["tzdata"].lock_status == "not-in-lock"
    assert components["tzdata"].licence == "LicenseRef-Debian-public-domain"
    assert components["chrony"].lock_status == "not-installed"

    cdx, spdx = write_sboms("bomtest", lock, list(components.values()), tmp_path)
    text = cdx.read_text()
    assert JsonStrictValidator(SchemaVersion.V1_6).validate_str(text) is None
    data = json.loads(text)
    assert data["specVersion"] == "1.6"
    assert len(data["components"]) == 4
    document = parse_file(str(spdx))
    assert validate_full_spdx_document(document) == []
    assert document.creation_info.spdx_version == "SPDX-2.3"
    assert {p.name for p in document.packages} == {"site bomtest", "zlib1g", "curl", "tzdata",
                                                   "chrony"}
