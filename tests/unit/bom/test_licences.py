"""Licences of real Debian copyright files, and Debian short names as SPDX ids."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from blueprint.bom.licences import debian_to_spdx, licence_of_copyright

HERE = Path(__file__).parent
EXPECTED = yaml.safe_load((HERE / "licences.yaml").read_text())


@pytest.mark.parametrize("package", sorted(EXPECTED))
def test_licence_of_real_copyright_file(package: str) -> None:
    text = (HERE / "fixtures" / "copyright" / package).read_text()
    assert licence_of_copyright(text) == EXPECTED[package]


@pytest.mark.parametrize(("synopsis", "expected"), [
    ("GPL-2+", "GPL-2.0-or-later"),
    ("GPL-2", "GPL-2.0-only"),
    ("LGPL-2.1+", "LGPL-2.1-or-later"),
    ("Expat", "MIT"),
    ("BSD-3-clause", "BSD-3-Clause"),
    ("GPL-2+ or Artistic", "Artistic-1.0-Perl OR GPL-2.0-or-later"),
    ("GPL-3+, LGPL-2+", "GPL-3.0-or-later AND LGPL-2.0-or-later"),
    ("public-domain", "LicenseRef-Debian-public-domain"),
    ("GPL-2+ with OpenSSL exception", "LicenseRef-Debian-GPL-2-plus-with-OpenSSL-exception"),
])
def test_debian_short_names(synopsis: str, expected: str) -> None:
    assert debian_to_spdx(synopsis) == expected
