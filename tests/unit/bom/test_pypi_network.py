"""Two real packages resolved from the real PyPI, their wheels fetched and checked.

Needs https://pypi.org: marked `network`, and skipped when PyPI does not answer.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from blueprint.bom.fetch import download, fetch_json
from blueprint.bom.licences import NOASSERTION
from blueprint.bom.pypi import PYPI_JSON, resolve_python_packages

pytestmark = pytest.mark.network

# Two old, settled releases whose files and licences will not change.
PINS = [("six", "1.16.0"), ("idna", "3.7")]


@pytest.fixture(scope="module")
def pypi_reachable() -> None:
    try:
        fetch_json(f"{PYPI_JSON}/six/json", timeout=20)
    except Exception as exc:  # any failure to reach PyPI skips; it proves nothing about the code
        pytest.skip(f"cannot reach PyPI: {exc}")


def test_real_pypi_files_verify_and_install_without_an_index(
    pypi_reachable: None, tmp_path: Path,
) -> None:
    packages = resolve_python_packages(PINS, installed=False)
    six, idna = packages
    assert six.filename == "six-1.16.0-py2.py3-none-any.whl"
    assert idna.filename == "idna-3.7-py3-none-any.whl"
    # Where PyPI answers per version (the public one), `info` is that version's: six 1.16.0
    # says "MIT". Where it answers only per project (this machine's), it is unknown.
    assert six.licence in ("MIT", NOASSERTION)
    assert idna.licence in ("BSD-3-Clause", NOASSERTION)

    wheels = tmp_path / "pypi"
    for package in packages:
        download(package.url, wheels / package.filename, package.sha256)
    done = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--isolated", "--no-index", "--find-links",
         str(wheels), "--target", str(tmp_path / "target"), "--quiet", "six==1.16.0",
         "idna==3.7"], capture_output=True, text=True, check=False, timeout=120)
    assert done.returncode == 0, done.stderr
