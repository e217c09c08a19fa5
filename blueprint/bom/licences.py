"""Licences of Debian packages from their DEP-5 copyright files, as SPDX expressions."""

from __future__ import annotations

import logging
import re
import subprocess
import tarfile
import warnings
from functools import cache
from pathlib import Path, PurePosixPath
from typing import Any

from debian.copyright import Copyright, NotMachineReadableError
from license_expression import ExpressionError, Licensing, get_spdx_licensing

log = logging.getLogger(__name__)
# python-debian reports every copyright file it tidies up (Format URL); not news for a user.
logging.getLogger("debian.copyright").setLevel(logging.ERROR)

NOASSERTION = "NOASSERTION"

# Debian's short names (DEP-5 "Short names" and what packages commonly write) to SPDX ids.
# A name missing here becomes LicenseRef-Debian-<name>: kept, visible, never guessed.
DEBIAN_TO_SPDX = {
    "apache-2.0": "Apache-2.0",
    "artistic": "Artistic-1.0-Perl",
    "artistic-1.0": "Artistic-1.0",
    "artistic-2.0": "Artistic-2.0",
    "bsd-2-clause": "BSD-2-Clause",
    "bsd-3-clause": "BSD-3-Clause",
    "bsd-4-clause": "BSD-4-Clause",
    "bsl-1.0": "BSL-1.0",
    "cc0": "CC0-1.0",
    "cc0-1.0": "CC0-1.0",
    "curl": "curl",
    "expat": "MIT",
    "mit": "MIT",
    "fsfap": "FSFAP",
    "fsful": "FSFUL",
    "fsfullr": "FSFULLR",
    "isc": "ISC",
    "mpl-1.1": "MPL-1.1",
    "mpl-2.0": "MPL-2.0",
    "openssl": "OpenSSL",
    "psf-2": "PSF-2.0",
    "python-2.0": "Python-2.0",
    "x11": "X11",
    "zlib": "Zlib",
    "zlib/libpng": "Zlib",
    "unicode-dfs-2016": "Unicode-DFS-2016",
    "wtfpl": "WTFPL",
    "0bsd": "0BSD",
    "sleepycat": "Sleepycat",
    "gpl": "GPL-1.0-or-later",
    "lgpl": "LGPL-2.0-or-later",
}
# Families whose version suffix maps regularly: GPL-2 -> GPL-2.0-only, GPL-2+ -> -or-later.
VERSIONED = {"gpl": "GPL", "lgpl": "LGPL", "agpl": "AGPL", "gfdl": "GFDL"}
VERSIONED_NAME = re.compile(r"^(?P<family>a?gpl|lgpl|gfdl)-?(?P<ver>\d(?:\.\d)?)(?P<plus>\+)?$")
CONNECTIVE = re.compile(r"\s+(or|and)\s+|\s*,\s*(?:and\s+)?", re.IGNORECASE)


@cache
def spdx_licensing() -> Licensing:
    return get_spdx_licensing()


def spdx_id(debian_name: str) -> str:
    """One Debian licence short name as an SPDX id or a LicenseRef."""
    name = debian_name.strip().rstrip(".")
    key = name.lower()
    if key in DEBIAN_TO_SPDX:
        return DEBIAN_TO_SPDX[key]
    match = VERSIONED_NAME.match(key)
    if match:
        version = match["ver"] if "." in match["ver"] else f"{match['ver']}.0"
        if match["family"] == "lgpl" and match["ver"] in ("2", "2.0"):
            version = "2.0"
        suffix = "-or-later" if match["plus"] else "-only"
        return f"{VERSIONED[match['family']]}-{version}{suffix}"
    known = spdx_licensing().known_symbols
    for symbol in known:
        if symbol.lower() == key:
            return str(symbol)
    slug = re.sub(r"[^A-Za-z0-9.-]+", "-", name.replace("+", "-plus")).strip("-")
    return f"LicenseRef-Debian-{slug or 'unnamed'}"


def debian_to_spdx(synopsis: str) -> str:
    """A DEP-5 License synopsis ('GPL-2+ or Artistic') as an SPDX expression."""
    # Exceptions ("GPL-2+ with OpenSSL exception") stay visible as one LicenseRef.
    text = re.sub(r"\s+with\s+(\S+)\s+exception", r"-with-\1-exception", synopsis.strip(),
                  flags=re.IGNORECASE)
    # One capture group: parts alternate licence, connective ('or', 'and'; None for a comma).
    parts = [part if part is not None else "and" for part in CONNECTIVE.split(text)]
    out: list[str] = []
    for index, part in enumerate(parts):
        if not part.strip():
            continue
        word = part.strip()
        if index % 2 == 0:
            out.append(spdx_id(word))
        else:
            out.append("OR" if word.lower() == "or" else "AND")
    # A separator-only split (commas) lists licences that all apply.
    cleaned: list[str] = []
    for token in out:
        if token in ("OR", "AND") and (not cleaned or cleaned[-1] in ("OR", "AND")):
            continue
        cleaned.append(token)
    while cleaned and cleaned[-1] in ("OR", "AND"):
        cleaned.pop()
    return normalise(" ".join(cleaned)) if cleaned else NOASSERTION


def normalise(expression: str) -> str:
    """Parse and print an SPDX expression in its normal form (duplicates removed)."""
    if expression == NOASSERTION:
        return expression
    try:
        parsed = spdx_licensing().parse(expression, simple=False)
    except ExpressionError as exc:
        log.debug("not an SPDX expression %r: %s", expression, exc)
        return NOASSERTION
    return str(parsed.simplify()) if parsed is not None else NOASSERTION


def licence_of_copyright(text: str) -> str:
    """The licence expression of a whole package: every Files paragraph's licence, ANDed."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            copyright_ = Copyright(text.splitlines(keepends=True), strict=False)
    except (NotMachineReadableError, ValueError):
        return NOASSERTION
    expressions: list[str] = []
    for paragraph in copyright_.all_files_paragraphs():
        licence: Any = paragraph.license
        if licence is None or not licence.synopsis:
            continue
        expression = debian_to_spdx(str(licence.synopsis))
        if expression != NOASSERTION and expression not in expressions:
            expressions.append(expression)
    if not expressions:
        return NOASSERTION
    if len(expressions) == 1:
        return expressions[0]
    return normalise(" AND ".join(f"({expr})" for expr in expressions))


def copyright_from_deb(deb: Path, package: str) -> tuple[str | None, str | None]:
    """The package's /usr/share/doc/<package>/copyright from its .deb, or where its doc
    folder links to when it is a symlink to another package's (same source)."""
    wanted = f"usr/share/doc/{package}/copyright"
    folder = f"usr/share/doc/{package}"
    link: str | None = None
    with subprocess.Popen(["dpkg-deb", "--fsys-tarfile", str(deb)], stdout=subprocess.PIPE,
                          stderr=subprocess.DEVNULL) as proc:
        assert proc.stdout is not None
        try:
            with tarfile.open(fileobj=proc.stdout, mode="r|") as data:
                for member in data:
                    name = member.name.removeprefix("./")
                    if name == wanted and member.isfile():
                        handle = data.extractfile(member)
                        text = handle.read().decode("utf-8", "replace") if handle else None
                        proc.stdout.read()
                        return text, None
                    if name == folder and member.issym():
                        link = PurePosixPath(member.linkname).name
        except (tarfile.TarError, OSError) as exc:
            log.warning("cannot read %s: %s", deb, exc)
    return None, link
