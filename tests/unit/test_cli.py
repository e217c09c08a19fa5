"""The command line: version, schema, and one line per expected error with its exit code."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

BAD = Path(__file__).parent / "models" / "bad_sites"


def blueprint(*args: str) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "blueprint.cli", *args]
    return subprocess.run(cmd, capture_output=True, text=True, check=False)


def test_version() -> None:
    done = blueprint("--version")
    assert done.returncode == 0
    assert "0.1.0" in done.stdout


def test_schema_is_json_schema_of_the_site() -> None:
    done = blueprint("schema", "site")
    schema = json.loads(done.stdout)
    assert schema["additionalProperties"] is False
    assert {"name", "blueprint", "nodes"} <= set(schema["required"])


def test_bad_site_prints_one_line_and_exits_2() -> None:
    site = BAD / "unknown-role.yaml"
    done = blueprint("plan", str(site))
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        f"error: {site}:12: node edge-2: roles[0]: 'gpus' is not known; "
        "use one of control-plane, worker, gpu, storage"
    ]
    assert "Traceback" not in done.stderr


def test_every_verb_has_help() -> None:
    for verb in ("plan", "deploy", "scale", "reset", "runs", "schema"):
        done = blueprint(verb, "--help")
        assert done.returncode == 0, verb
        assert "Usage:" in done.stdout


def test_credentials_for_an_unused_mirror_host_stop_plan_with_one_line(tmp_path: Path) -> None:
    sites = Path(__file__).parent / "fixtures" / "sites"
    for name in ("full.yaml", "good_key", "good_key.pub"):
        shutil.copy(sites / name, tmp_path / name)
    vault = tmp_path / "secrets.yaml"
    vault.write_text("registry_credentials:\n  other.example: {username: u1, password: pw-Zq81x}\n")
    (tmp_path / "pass").write_text("s3cret-pass")
    ansible_vault = Path(sys.executable).parent / "ansible-vault"
    subprocess.run([str(ansible_vault), "encrypt", "--vault-password-file",
                    str(tmp_path / "pass"), str(vault)], check=True, capture_output=True)

    done = subprocess.run(
        [sys.executable, "-m", "blueprint.cli", "plan", str(tmp_path / "full.yaml")],
        capture_output=True, text=True, check=False,
        env={**os.environ, "BLUEPRINT_VAULT_PASSWORD": "s3cret-pass"},
    )

    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        f"error: {vault}: registry_credentials: host 'other.example' is used by no registry "
        "mirror endpoint; use one of registry.example:5000, or remove it"
    ]
    assert not (tmp_path / ".state").exists()
