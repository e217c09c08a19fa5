"""The product's own Python packages, pinned to the files PyPI publishes for them.

What is locked is what the controller runs: the distributions of this installation reachable
from `edge-blueprint`'s runtime requirements (no extras, so never the test tools), each at
the version installed here. PyPI's JSON API gives each version's files with their sha256;
the lock takes the wheel this interpreter would install (pip's order of compatible tags), or
the sdist when no wheel fits. Licences come from the distribution's own core metadata:
License-Expression where present, else a licence field or classifier that names exactly one
SPDX licence; anything else is NOASSERTION, never a guess.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

from license_expression import ExpressionError
from packaging.requirements import InvalidRequirement, Requirement
from packaging.tags import Tag, sys_tags
from packaging.utils import (
    InvalidWheelFilename,
    canonicalize_name,
    parse_wheel_filename,
)

from blueprint.bom.fetch import fetch_json
from blueprint.bom.licences import NOASSERTION, spdx_licensing
from blueprint.errors import DeployFailed, EnvironmentMissing

log = logging.getLogger(__name__)

PRODUCT = "edge-blueprint"
PYPI_JSON = "https://pypi.org/pypi"
LAYER = "controller"
# Where a bundle keeps the wheels: one flat folder, as `pip --find-links` wants it.
BUNDLE_FOLDER = "pypi"

# Licence fields (lower case) that name one licence unambiguously, as packages write them.
FIELD_ALIASES = {
    "apache 2.0": "Apache-2.0",
    "apache license 2.0": "Apache-2.0",
    "apache license, version 2.0": "Apache-2.0",
    "apache software license 2.0": "Apache-2.0",
    "apache software license, version 2.0": "Apache-2.0",
    "mit license": "MIT",
    "isc license": "ISC",
    "isc license (iscl)": "ISC",
    "3-clause bsd license": "BSD-3-Clause",
    "bsd 3-clause license": "BSD-3-Clause",
    "new bsd license": "BSD-3-Clause",
    "modified bsd license": "BSD-3-Clause",
    "psfl": "PSF-2.0",
    "python software foundation license": "PSF-2.0",
}
# Trove classifiers that name one licence and one version. "BSD License", "Apache Software
# License" and the GPL ones without "or later" do not say which, so they map to nothing.
CLASSIFIERS = {
    "License :: OSI Approved :: MIT License": "MIT",
    "License :: OSI Approved :: MIT No Attribution License (MIT-0)": "MIT-0",
    "License :: OSI Approved :: ISC License (ISCL)": "ISC",
    "License :: OSI Approved :: Mozilla Public License 2.0 (MPL 2.0)": "MPL-2.0",
    "License :: OSI Approved :: Python Software Foundation License": "PSF-2.0",
    "License :: OSI Approved :: The Unlicense (Unlicense)": "Unlicense",
    "License :: OSI Approved :: Zero-Clause BSD (0BSD)": "0BSD",
    "License :: OSI Approved :: GNU General Public License v2 or later (GPLv2+)":
        "GPL-2.0-or-later",
    "License :: OSI Approved :: GNU General Public License v3 or later (GPLv3+)":
        "GPL-3.0-or-later",
    "License :: OSI Approved :: GNU Lesser General Public License v3 or later (LGPLv3+)":
        "LGPL-3.0-or-later",
    "License :: CC0 1.0 Universal (CC0 1.0) Public Domain Dedication": "CC0-1.0",
}


@dataclass(frozen=True)
class PythonPackage:
    """One distribution the controller runs, as the file PyPI publishes for its version."""

    name: str
    version: str
    filename: str
    url: str
    size: int | None
    sha256: str
    licence: str
    yanked: bool = False

    @property
    def bundle_path(self) -> str:
        return f"{BUNDLE_FOLDER}/{self.filename}"


@dataclass(frozen=True)
class LicenceFields:
    """The licence fields of a distribution's core metadata (or PyPI's copy of them)."""

    expression: str | None
    text: str | None
    classifiers: tuple[str, ...]


def installed_closure(product: str = PRODUCT) -> list[tuple[str, str]]:
    """(name, version) of every installed distribution the product needs at run time.

    Requirements are followed with their markers evaluated for this interpreter and with
    the extras the requirement asks for; the product's own extras (tests) are not followed.
    """
    try:
        root = metadata.distribution(product)
    except metadata.PackageNotFoundError as exc:
        msg = f"{product} is not installed in this Python ({exc}); install it (pip install .)"
        raise EnvironmentMissing(msg) from exc
    found: dict[str, tuple[str, set[str]]] = {}
    todo: list[tuple[metadata.Distribution, frozenset[str]]] = [(root, frozenset())]
    while todo:
        dist, extras = todo.pop()
        for line in dist.requires or []:
            try:
                requirement = Requirement(line)
            except InvalidRequirement:
                log.warning("%s: unreadable requirement %r", dist.metadata["Name"], line)
                continue
            if not _applies(requirement, extras):
                continue
            key = canonicalize_name(requirement.name)
            seen = found.get(key)
            wanted = set(requirement.extras)
            if seen is not None and wanted <= seen[1]:
                continue
            try:
                needed = metadata.distribution(requirement.name)
            except metadata.PackageNotFoundError as exc:
                msg = (f"{dist.metadata['Name']} needs {requirement}, which is not installed; "
                       "the product's environment is incomplete (pip install .)")
                raise EnvironmentMissing(msg) from exc
            found[key] = (needed.version, (seen[1] if seen else set()) | wanted)
            todo.append((needed, frozenset(wanted)))
    return sorted((name, version) for name, (version, _) in found.items())


def _applies(requirement: Requirement, extras: frozenset[str]) -> bool:
    if requirement.marker is None:
        return True
    return any(requirement.marker.evaluate({"extra": extra}) for extra in extras or {""})


def installed_licence_fields(name: str) -> LicenceFields:
    """The licence fields of an installed distribution's core metadata."""
    meta = metadata.metadata(name)
    return LicenceFields(meta["License-Expression"], meta["License"],
                         tuple(meta.get_all("Classifier") or []))


def pypi_licence_fields(info: Mapping[str, Any]) -> LicenceFields:
    """The same fields as PyPI's JSON API copies them into `info`."""
    return LicenceFields(info.get("license_expression"), info.get("license"),
                         tuple(info.get("classifiers") or []))


def spdx_of(fields: LicenceFields) -> str:
    """An SPDX expression from the licence fields, or NOASSERTION: never a guess."""
    if fields.expression and fields.expression.strip():
        return _valid_spdx(fields.expression.strip()) or NOASSERTION
    text = (fields.text or "").strip()
    if text and "\n" not in text and len(text) <= 100:
        found = _valid_spdx(text) or FIELD_ALIASES.get(text.lower().rstrip("."))
        if found:
            return found
    named = {CLASSIFIERS.get(item) for item in fields.classifiers
             if item.startswith("License ::")}
    if len(named) == 1 and None not in named:
        return str(named.pop())
    return NOASSERTION


def _valid_spdx(expression: str) -> str | None:
    """The normal form of `expression` when every licence in it is a known SPDX id."""
    licensing = spdx_licensing()
    try:
        parsed = licensing.parse(expression)
    except ExpressionError:
        return None
    if parsed is None:
        return None
    # PEP 639 allows LicenseRef-* beside SPDX ids; anything else unknown is not an id.
    unknown = [key for key in licensing.unknown_license_keys(parsed)
               if not key.startswith("LicenseRef-")]
    return None if unknown else str(parsed.simplify())


def choose_file(files: Iterable[Mapping[str, Any]],
                tags: Sequence[Tag]) -> Mapping[str, Any] | None:
    """The file pip would install here: the wheel whose best tag ranks first, else the sdist."""
    rank = {tag: index for index, tag in enumerate(tags)}
    best: tuple[int, Mapping[str, Any]] | None = None
    sdist = None
    for entry in files:
        filename = str(entry.get("filename", ""))
        if entry.get("packagetype") == "sdist" or filename.endswith((".tar.gz", ".zip")):
            sdist = sdist or entry
            continue
        if not filename.endswith(".whl"):
            continue
        try:
            _, _, _, file_tags = parse_wheel_filename(filename)
        except InvalidWheelFilename:
            continue
        score = min((rank[tag] for tag in file_tags if tag in rank), default=None)
        if score is not None and (best is None or score < best[0]):
            best = (score, entry)
    return best[1] if best else sdist


def release_answer(name: str, version: str, *, index: str = PYPI_JSON,
                   proxy: str | None = None) -> tuple[str, list[dict[str, Any]], dict[str, Any]]:
    """(answer URL, files, info) of one version from PyPI's JSON API.

    The version's own endpoint first; where it answers 404 (some PyPI mirrors have only the
    project's), the project's answer lists every version's files, and its `info` describes
    only the newest version, so `info` is then empty unless that is the version asked for.
    """
    url = f"{index}/{name}/{version}/json"
    answer = fetch_json(url, proxy=proxy)
    if answer is not None:
        return url, list(answer.get("urls") or []), dict(answer.get("info") or {})
    url = f"{index}/{name}/json"
    answer = fetch_json(url, proxy=proxy)
    if answer is None:
        msg = f"{name} is not on PyPI ({url} answers 404)"
        raise DeployFailed(msg)
    files = list((answer.get("releases") or {}).get(version) or [])
    info = dict(answer.get("info") or {})
    return url, files, info if info.get("version") == version else {}


def package_from_answer(name: str, version: str, answer_url: str,
                        files: list[dict[str, Any]], info: Mapping[str, Any],
                        tags: Sequence[Tag], installed: LicenceFields | None) -> PythonPackage:
    """The locked file of one version; the licence from its installed metadata when given."""
    chosen = choose_file(files, tags)
    if chosen is None:
        msg = (f"{name} {version}: PyPI lists no wheel for this Python and platform and no "
               f"sdist ({answer_url})")
        raise DeployFailed(msg)
    sha = str((chosen.get("digests") or {}).get("sha256", ""))
    if not re.fullmatch(r"[0-9a-f]{64}", sha):
        msg = f"{name} {version}: {chosen.get('filename')} has no sha256 in {answer_url}"
        raise DeployFailed(msg)
    if installed is not None:
        licence = spdx_of(installed)
    elif info:
        licence = spdx_of(pypi_licence_fields(info))
    else:
        licence = NOASSERTION
    size = chosen.get("size")
    return PythonPackage(
        name=str(canonicalize_name(name)), version=version, filename=str(chosen["filename"]),
        # PyPI's own answers carry absolute URLs; some mirrors' are relative to the answer.
        url=urljoin(answer_url, str(chosen["url"])),
        size=int(size) if isinstance(size, int) else None, sha256=sha, licence=licence,
        yanked=bool(chosen.get("yanked")))


def resolve_python_packages(pins: Sequence[tuple[str, str]], *, proxy: str | None = None,
                            index: str = PYPI_JSON, installed: bool = True,
                            tags: Sequence[Tag] | None = None,
                            workers: int = 8) -> list[PythonPackage]:
    """The PyPI file of every (name, version), fetched in parallel.

    With `installed`, licences come from the installed distributions' metadata (the exact
    version); otherwise from PyPI's copy of it, when its answer describes that version.
    """
    wanted_tags = list(tags) if tags is not None else list(sys_tags())

    def one(pin: tuple[str, str]) -> PythonPackage:
        name, version = pin
        url, files, info = release_answer(name, version, index=index, proxy=proxy)
        fields = installed_licence_fields(name) if installed else None
        return package_from_answer(name, version, url, files, info, wanted_tags, fields)

    with ThreadPoolExecutor(max_workers=workers) as pool:
        packages = list(pool.map(one, pins))
    for package in packages:
        if package.yanked:
            log.warning("%s %s: %s is yanked on PyPI", package.name, package.version,
                        package.filename)
    return packages


def environment(pins: Sequence[tuple[str, str]], product: str = PRODUCT) -> dict[str, str]:
    """What the Python packages of a lock were chosen for: the product and the interpreter."""
    best = next(iter(sys_tags()))
    return {"product": f"{product} {metadata.version(product)}",
            "interpreter": f"{best.interpreter}-{best.abi}-{best.platform}",
            "distributions": str(len(pins))}


NOTICE_FILE = re.compile(r"(LICEN[CS]E|COPYING|NOTICE|AUTHORS)", re.IGNORECASE)


def notice_text(name: str, version: str) -> str | None:
    """The licence files an installed distribution ships in its metadata folder, when the
    installed version is the locked one (wheels put them under *.dist-info/)."""
    try:
        dist = metadata.distribution(name)
    except metadata.PackageNotFoundError:
        return None
    if dist.version != version:
        return None
    texts = []
    for path in dist.files or []:
        parts = path.parts
        if parts and parts[0].endswith(".dist-info") and NOTICE_FILE.search(path.name):
            try:
                # RECORD may list a file that is not on disk; a notice need not be UTF-8.
                text = Path(path.locate()).read_text(encoding="utf-8", errors="replace")
            except OSError:
                continue
            if text:
                texts.append(f"==> {'/'.join(parts[1:])} <==\n{text}")
    return "\n".join(texts) or None
