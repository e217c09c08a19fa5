"""The support bundle's controller part: what it takes, what it leaves, what it masks."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from blueprint.secrets import MASK, REDACTOR
from blueprint.state import SCHEMA
from blueprint.validate.bundle import controller_files, redact

SECRET = "unit-bundle-secret-4711"


def test_redact_masks_vault_values_and_credential_lines() -> None:
    REDACTOR.add([SECRET])
    text = f'endpoint = "http://mirror"\n  password = "plain-but-unknown"\ntoken: {SECRET}\n'

    masked = redact(text)

    assert SECRET not in masked and "plain-but-unknown" not in masked
    assert 'endpoint = "http://mirror"' in masked
    assert "password = <redacted>" in masked and "token: <redacted>" in masked
    assert MASK not in redact("no secret here")


def test_controller_files_take_site_history_and_last_runs_only(tmp_path: Path) -> None:
    REDACTOR.add([SECRET])
    site = tmp_path / "site.yaml"
    site.write_text(f"name: x\n# {SECRET}\n")
    (tmp_path / "secrets.yaml").write_text("$ANSIBLE_VAULT;1.1;AES256\n00\n")
    (tmp_path / "lab_ed25519").write_text("-----BEGIN OPENSSH PRIVATE KEY-----\n")
    state = tmp_path / ".state"
    (state / "inventory" / "group_vars").mkdir(parents=True)
    (state / "inventory" / "group_vars" / "all.yml").write_text("a: 1\n")
    for run in ("20260101T000000Z-validate-aaaaaa", "20260102T000000Z-validate-bbbbbb"):
        (state / "runs" / run / "validation" / "nodes").mkdir(parents=True)
        (state / "runs" / run / "validation" / "summary.json").write_text(json.dumps(run))
        (state / "runs" / run / "validation" / "nodes" / "results-n1.json").write_text("{}")
        (state / "runs" / run / "validation" / "nodes" / "pytest-n1.log").write_text("log")
    db = sqlite3.connect(state / "history.sqlite")
    db.executescript(SCHEMA)
    db.execute("INSERT INTO runs VALUES ('r1', 'x', 'validate', '[]', 't', 't', 'passed', 0, '')")
    db.commit()
    db.close()

    files = controller_files(site, state)

    assert sorted(files) == [
        "controller/history.json",
        "controller/inventory/group_vars/all.yml",
        "controller/last-validation/nodes/results-n1.json",
        "controller/last-validation/summary.json",
        "controller/site.yaml",
    ]
    assert "bbbbbb" in files["controller/last-validation/summary.json"]
    assert json.loads(files["controller/history.json"])[0]["id"] == "r1"
    assert SECRET not in files["controller/site.yaml"] and MASK in files["controller/site.yaml"]
