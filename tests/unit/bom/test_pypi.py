"""The product's Python packages in the lock, from PyPI answers recorded on 2026-12-04.

The recorded answers (fixtures/pypi/, provenance in its PROVENANCE.md) are served from a
temporary folder on loopback, so the lock's own fetch code reads them, including the
fallback a PyPI without per-version answers needs. `test_pypi_network.py` asks the real PyPI.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import io
import json
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest
from bomhelpers import KeyPair, StandInRelease, write_site
from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator
from packaging.tags import Tag
from spdx_tools.spdx.parser.parse_anything import parse_file
from spdx_tools.spdx.validation.document_validator import validate_full_spdx_document

from blueprint.bom.bundle import build_bundle, extract_bundle
from blueprint.bom.compliance import decisions_for, load_policy
from blueprint.bom.licences import NOASSERTION
from blueprint.bom.lock import Lock, LockItem, load_lock, lock_path, site_inputs, write_lock
from blueprint.bom.pypi import (
    LicenceFields,
    choose_file,
    installed_closure,
    release_answer,
    resolve_python_packages,
    spdx_of,
)
from blueprint.bom.sbom import merge, write_sboms
from blueprint.loader import load_site

FIXTURES = Path(__file__).parent / "fixtures" / "pypi"
CPYTHON311_LINUX = [Tag("cp311", "cp311", "manylinux_2_17_x86_64"),
                    Tag("cp311", "abi3", "manylinux_2_17_x86_64"),
                    Tag("py3", "none", "any")]
CLICK_WHEEL_SHA = "8bb5376d2006950386f8c6427613334a2acadc5f559cb80e638d00b4df957e37"


def recorded(name: str) -> dict[str, object]:
    path = FIXTURES / f"{name}.json"
    if path.is_file():
        return dict(json.loads(path.read_text()))
    return dict(json.loads(gzip.decompress((FIXTURES / f"{name}.json.gz").read_bytes())))


@pytest.fixture
def standin_pypi(standin_release: StandInRelease) -> str:
    """The recorded answers at PyPI's paths: only the project endpoint, as recorded here."""
    for name in ("click", "isoduration", "ply", "pyyaml"):
        standin_release.publish(f"pypi/{name}/json", json.dumps(recorded(name)).encode())
    return f"{standin_release.url}/pypi"


@pytest.mark.parametrize(("fields", "expected"), [
    (LicenceFields("Apache-2.0 OR BSD-3-Clause", None, ()), "Apache-2.0 OR BSD-3-Clause"),
    (LicenceFields("MIT AND LicenseRef-Vendor", None, ()), "LicenseRef-Vendor AND MIT"),
    # Not an SPDX id: no guess, even with a classifier beside it.
    (LicenceFields("Apache Software License", None,
                   ("License :: OSI Approved :: MIT License",)), NOASSERTION),
    (LicenceFields(None, "GPL-3.0-or-later", ()), "GPL-3.0-or-later"),
    (LicenceFields(None, "Apache Software License, Version 2.0",
                   ("License :: OSI Approved :: Apache Software License",)), "Apache-2.0"),
    (LicenceFields(None, "Copying this work\n\nis under the Apache License 2.0 ...",
                   ("License :: OSI Approved :: Apache Software License",)), NOASSERTION),
    (LicenceFields(None, "BSD", ("License :: OSI Approved :: BSD License",)), NOASSERTION),
    (LicenceFields(None, "Dual License", ("License :: OSI Approved :: Apache Software License",
                                          "License :: OSI Approved :: BSD License")),
     NOASSERTION),
    (LicenceFields(None, "", ("License :: OSI Approved :: MIT License",)), "MIT"),
    (LicenceFields(None, None, ()), NOASSERTION),
])
def test_licence_fields_to_spdx(fields: LicenceFields, expected: str) -> None:
    assert spdx_of(fields) == expected


def test_wheel_for_this_interpreter_else_the_sdist() -> None:
    files = recorded("pyyaml")["releases"]["6.0.4"]  # type: ignore[index]
    chosen = choose_file(files, CPYTHON311_LINUX)
    assert chosen is not None
    assert chosen["filename"] == ("pyyaml-6.0.4-cp311-cp311-manylinux2014_x86_64."
                                  "manylinux_2_17_x86_64.manylinux_2_28_x86_64.whl")
    # No wheel for this interpreter: the sdist, which pip would build.
    other = choose_file(files, [Tag("cp399", "cp399", "plan9_amd64")])
    assert other is not None and other["filename"] == "pyyaml-6.0.4.tar.gz"


def test_recorded_answers_give_file_checksum_and_licence(standin_pypi: str) -> None:
    packages = resolve_python_packages(
        [("click", "8.5.1"), ("isoduration", "20.11.0"), ("ply", "3.11"), ("pyyaml", "6.0.4"),
         ("click", "8.1.8")],
        index=standin_pypi, installed=False, tags=CPYTHON311_LINUX)
    click, isoduration, ply, pyyaml, old_click = packages
    assert click.filename == "click-8.5.1-py3-none-any.whl"
    assert click.sha256 == CLICK_WHEEL_SHA
    assert click.size == 126163
    # The recorded answer's URL is relative to it (see PROVENANCE.md).
    assert click.url == (f"{standin_pypi.removesuffix('/pypi')}/packages/packages/31/7d/"
                         "164b7ffc8624fe9efb4221bf9af485d5c1e41b9ae118045d2b6dc5457d8b/"
                         "click-8.5.1-py3-none-any.whl")
    assert click.bundle_path == "pypi/click-8.5.1-py3-none-any.whl"
    assert (click.licence, isoduration.licence, ply.licence) == ("BSD-3-Clause", "ISC",
                                                                  NOASSERTION)
    assert pyyaml.licence == "MIT"
    assert isoduration.url.startswith("https://files.pythonhosted.org/packages/")
    # The project answer's info describes 8.5.1 only: an older version's licence is unknown.
    assert old_click.filename == "click-8.1.8-py3-none-any.whl"
    assert old_click.licence == NOASSERTION


def test_a_version_pypi_does_not_have_is_an_error(standin_pypi: str) -> None:
    _, files, info = release_answer("click", "0.0.1", index=standin_pypi)
    assert (files, info) == ([], {})
    with pytest.raises(Exception, match=r"click 0\.0\.1: PyPI lists no wheel .* and no sdist"):
        resolve_python_packages([("click", "0.0.1")], index=standin_pypi, installed=False)
    with pytest.raises(Exception, match=r"nothere is not on PyPI"):
        resolve_python_packages([("nothere", "1.0")], index=standin_pypi, installed=False)


def test_the_closure_is_the_runtime_requirements_never_the_test_extras() -> None:
    names = dict(installed_closure())
    # Direct and indirect runtime requirements of edge-blueprint ...
    assert {"pydantic", "pydantic-core", "pyyaml", "ansible-core", "license-expression"} \
        <= set(names)
    # ... and none of its `test` extra (unless something at run time needs it).
    assert not {"ruff", "mypy", "molecule", "ansible-lint", "sushy-tools"} & set(names)
    assert "edge-blueprint" not in names


def pypi_item(name: str, version: str, licence: str) -> LockItem:
    filename = f"{name}-{version}-py3-none-any.whl"
    return LockItem(name=name, version=version, kind="pypi", layer="controller",
                    url=f"https://files.pythonhosted.org/packages/aa/bb/{filename}",
                    path=f"pypi/{filename}", size=10, sha256="c" * 64, licence=licence)


def test_lock_sbom_and_compliance_carry_python_packages(tmp_path: Path) -> None:
    loaded = load_site(write_site(tmp_path))
    tzdata_deb = LockItem(name="tzdata", version="2025b-0+deb12u2", kind="deb",
                          layer="os_baseline", url="http://deb.debian.org/debian/t.deb",
                          path="debian/t.deb", sha256="d" * 64, licence="NOASSERTION")
    lock = Lock(site="bomtest", generated="2026-12-04T00:00:00+00:00", release="bookworm",
                architecture="amd64", archive="http://deb.debian.org/debian",
                inputs=site_inputs(loaded),
                items=[pypi_item("click", "8.5.1", "BSD-3-Clause"),
                       pypi_item("tzdata", "2026.6", "Apache-2.0"),
                       pypi_item("ply", "3.11", NOASSERTION), tzdata_deb])
    write_lock(lock, lock_path(loaded))
    assert load_lock(lock_path(loaded)) == lock

    components = merge(lock, [])
    purls = sorted(component.purl("bookworm") for component in components)
    assert purls == ["pkg:deb/debian/tzdata@2025b-0%2Bdeb12u2?distro=debian-bookworm",
                     "pkg:pypi/click@8.5.1", "pkg:pypi/ply@3.11", "pkg:pypi/tzdata@2026.6"]
    # PyPI's tzdata does not hide Debian's from the not-installed check.
    by_kind = {(c.kind, c.name): c for c in components}
    assert by_kind[("deb", "tzdata")].lock_status == "not-installed"
    assert by_kind[("pypi", "click")].layer == "controller"

    cdx, spdx = write_sboms("bomtest", lock, components, tmp_path / "sbom")
    assert JsonStrictValidator(SchemaVersion.V1_6).validate_str(cdx.read_text()) is None
    assert validate_full_spdx_document(parse_file(str(spdx))) == []

    decisions = {d.name: d for d in decisions_for(lock, load_policy()) if d.kind == "pypi"}
    assert decisions["click"].decision == "allow"
    assert decisions["ply"].decision == "review"


def standin_wheel(name: str, version: str) -> bytes:
    """A minimal pure-Python wheel (a stand-in: no PyPI file is fetched by unit tests)."""
    dist_info = f"{name}-{version}.dist-info"
    files = {
        f"{name}/__init__.py": b"STANDIN = True\n",
        f"{dist_info}/METADATA": (f"Metadata-Version: 2.4\nName: {name}\nVersion: {version}\n"
                                  "License-Expression: MIT\n").encode(),
        f"{dist_info}/WHEEL": (b"Wheel-Version: 1.0\nGenerator: blueprint-tests\n"
                               b"Root-Is-Purelib: true\nTag: py3-none-any\n"),
    }
    record = []
    for path, data in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append(f"{path},sha256={digest},{len(data)}")
    record.append(f"{dist_info}/RECORD,,")
    files[f"{dist_info}/RECORD"] = ("\n".join(record) + "\n").encode()
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        for path, data in files.items():
            archive.writestr(path, data)
    return out.getvalue()


def test_bundle_carries_wheels_pip_installs_without_an_index(
    tmp_path: Path, standin_release: StandInRelease, keys: KeyPair,
) -> None:
    """The documented air-gapped install: pip --no-index --find-links the bundle's pypi/."""
    (tmp_path / "site").mkdir()
    loaded = load_site(write_site(tmp_path / "site"))
    filename = "standin_pkg-1.0-py3-none-any.whl"
    data = standin_wheel("standin_pkg", "1.0")
    sha = standin_release.publish(f"packages/ab/cd/{filename}", data)
    lock = Lock(site="bomtest", generated="2026-12-04T00:00:00+00:00", release="bookworm",
                architecture="amd64", archive="http://deb.debian.org/debian",
                inputs=site_inputs(loaded), items=[LockItem(
                    name="standin-pkg", version="1.0", kind="pypi", layer="controller",
                    url=f"{standin_release.url}/packages/ab/cd/{filename}",
                    path=f"pypi/{filename}", size=len(data), sha256=sha, licence="MIT")])
    write_lock(lock, lock_path(loaded))
    built = build_bundle(lock_path(loaded), tmp_path / "b.tar", keys.secret, tmp_path / "cache")
    with tarfile.open(built.path) as archive:
        assert f"files/pypi/{filename}" in archive.getnames()

    unpacked = tmp_path / "unpacked"
    extract_bundle(built.path, unpacked, keys.public)
    target = tmp_path / "site-packages"
    done = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--isolated", "--no-index", "--find-links",
         str(unpacked / "files" / "pypi"), "--target", str(target), "--quiet",
         "standin-pkg==1.0"], capture_output=True, text=True, check=False, timeout=120)
    assert done.returncode == 0, done.stderr
    assert (target / "standin_pkg" / "__init__.py").is_file()
