"""Licence decisions for real Debian copyright files, the record, and exit 1 on a denial."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from bomhelpers import write_site

from blueprint.bom.compliance import decide, load_policy, questions, read_answers
from blueprint.bom.licences import licence_of_copyright
from blueprint.bom.lock import Lock, LockItem, lock_path, site_inputs, write_lock
from blueprint.errors import BadInput
from blueprint.loader import load_site

HERE = Path(__file__).parent
DECISIONS = {
    "curl": "review",          # GPL with Autoconf/Libtool exceptions: LicenseRefs
    "jq": "review",            # CC-BY-3.0 documentation
    "libc6": "review",         # not machine-readable
    "libgpg-error0": "review",  # g10 permissive: a LicenseRef
    "libssl3": "allow",        # Apache-2.0 AND (Artistic OR GPL-1+)
    "libzstd1": "allow",       # MIT AND Zlib AND (BSD-3-Clause OR GPL-2.0-only)
    "python3-yaml": "review",  # not machine-readable
    "tzdata": "review",        # public domain: a LicenseRef
    "zlib1g": "allow",
}
# A stand-in copyright file: no AGPL package is installed on this machine to copy from.
STANDIN_AGPL = """Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: standin-agpl-tool

Files: *
Copyright: 2024 Stand-in Authors
License: AGPL-3+
"""


@pytest.mark.parametrize("package", sorted(DECISIONS))
def test_decision_for_real_copyright_file(package: str) -> None:
    text = (HERE / "fixtures" / "copyright" / package).read_text()
    assert decide(licence_of_copyright(text), load_policy()) == DECISIONS[package]


@pytest.mark.parametrize(("expression", "expected"), [
    ("MIT OR AGPL-3.0-only", "allow"),
    ("MIT AND AGPL-3.0-only", "deny"),
    ("MIT AND LicenseRef-Debian-x", "review"),
    ("NOASSERTION", "review"),
])
def test_or_takes_the_best_and_the_worst(expression: str, expected: str) -> None:
    assert decide(expression, load_policy()) == expected


def test_policy_listing_an_id_twice_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(yaml.safe_dump({"allow": ["MIT"], "deny": ["MIT"]}))
    with pytest.raises(BadInput, match="MIT is listed under more than one decision"):
        load_policy(path)


def test_answers_are_checked_and_unanswered_reported(tmp_path: Path) -> None:
    path = tmp_path / "answers.yaml"
    path.write_text(yaml.safe_dump({"policy": {"answer": "yes", "evidence": "wiki/oss"}}))
    answers, missing = read_answers(path)
    assert answers["policy"]["answer"] == "yes"
    assert "policy" not in missing
    assert len(missing) == len(questions()) - 1
    path.write_text(yaml.safe_dump({"polcy": "yes"}))
    with pytest.raises(BadInput, match="polcy: not a question id"):
        read_answers(path)


def site_with_lock(folder: Path, licences: dict[str, str]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    site_file = write_site(folder)
    loaded = load_site(site_file)
    items = [LockItem(name=name, version="1.0", kind="file", url=f"https://downloads.example.org/{name}-1.0.tar.gz",
                      path=name, sha256="a" * 64, licence=licence, layer="os_baseline")
             for name, licence in licences.items()]
    write_lock(Lock(site="bomtest", generated="2026-12-03T00:00:00+00:00", release="bookworm",
                    architecture="amd64", archive="http://deb.debian.org/debian",
                    inputs=site_inputs(loaded), items=items), lock_path(loaded))
    return site_file


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "blueprint.cli", *args], capture_output=True,
                          text=True, check=False, timeout=300)


def test_compliance_record_and_exit_codes(tmp_path: Path) -> None:
    site_file = site_with_lock(tmp_path / "ok", {
        "zlib": licence_of_copyright((HERE / "fixtures/copyright/zlib1g").read_text()),
        "tz": licence_of_copyright((HERE / "fixtures/copyright/tzdata").read_text())})
    answers = tmp_path / "answers.yaml"
    answers.write_text(yaml.safe_dump({"policy": "yes", "roles": "no"}))
    done = run_cli("compliance", str(site_file), "--answers", str(answers))
    assert done.returncode == 0, done.stderr
    assert "1 allowed, 1 to review, 0 denied" in done.stdout
    assert f"{len(questions()) - 2} self-certification question(s) unanswered" in done.stdout
    [record] = (tmp_path / "ok" / ".state" / "compliance").iterdir()
    decisions = json.loads((record / "decisions.json").read_text())["components"]
    assert {d["name"]: d["decision"] for d in decisions} == {"zlib": "allow", "tz": "review"}
    self_cert = yaml.safe_load((record / "self-certification.yaml").read_text())
    assert self_cert["answered"] == 2
    assert {"sbom.cdx.json", "sbom.spdx.json", "notices"} <= {p.name for p in record.iterdir()}

    denied = site_with_lock(tmp_path / "denied", {
        "standin-agpl-tool": licence_of_copyright(STANDIN_AGPL)})
    done = run_cli("compliance", str(denied))
    assert done.returncode == 1
    assert "deny: standin-agpl-tool 1.0: AGPL-3.0-or-later" in done.stdout
    assert "denied licence in standin-agpl-tool" in done.stderr
