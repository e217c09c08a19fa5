"""The site vault: refused in clear, decrypted with the password, masked everywhere after."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from blueprint import secrets
from blueprint.errors import BadInput, EnvironmentMissing
from blueprint.secrets import MASK, PASSWORD_ENV, Redactor, child_environment, load_site_secrets


def encrypt(path: Path, password: str, tmp_path: Path) -> None:
    password_file = tmp_path / "pass"
    password_file.write_text(password)
    vault = Path(sys.executable).parent / "ansible-vault"
    subprocess.run([str(vault), "encrypt", "--vault-password-file", str(password_file),
                    str(path)], check=True, capture_output=True)


@pytest.fixture(autouse=True)
def fresh_password(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(secrets, "_password_from_env", [])
    monkeypatch.setattr(secrets, "REDACTOR", Redactor())


def test_secrets_in_clear_are_refused(tmp_path: Path) -> None:
    (tmp_path / "secrets.yaml").write_text("bmc-1: {password: hunter22}\n")
    with pytest.raises(BadInput, match="must be vault-encrypted"):
        load_site_secrets(tmp_path)


def test_encrypted_secrets_need_the_password(tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "secrets.yaml").write_text("token: abcdef123\n")
    encrypt(tmp_path / "secrets.yaml", "s3cret-pass", tmp_path)
    monkeypatch.delenv(PASSWORD_ENV, raising=False)
    with pytest.raises(EnvironmentMissing, match=PASSWORD_ENV):
        load_site_secrets(tmp_path)


def test_wrong_password_is_bad_input(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "secrets.yaml").write_text("token: abcdef123\n")
    encrypt(tmp_path / "secrets.yaml", "s3cret-pass", tmp_path)
    monkeypatch.setenv(PASSWORD_ENV, "not-it")
    with pytest.raises(BadInput, match="cannot decrypt"):
        load_site_secrets(tmp_path)


def test_decrypted_values_and_the_password_are_masked_and_leave_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "secrets.yaml").write_text("registry: {password: abcdef123}\n")
    encrypt(tmp_path / "secrets.yaml", "s3cret-pass", tmp_path)
    monkeypatch.setenv(PASSWORD_ENV, "s3cret-pass")

    assert load_site_secrets(tmp_path) == {"registry": {"password": "abcdef123"}}

    assert PASSWORD_ENV not in __import__("os").environ
    assert secrets.REDACTOR.redact("pw=abcdef123 vault=s3cret-pass") == f"pw={MASK} vault={MASK}"


def test_redact_tree_masks_every_file_that_holds_a_secret(tmp_path: Path) -> None:
    redactor = Redactor()
    redactor.add({"token": "abcdef123"})
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "events.json").write_text('{"stdout": "abcdef123"}')
    (tmp_path / "clean.txt").write_text("nothing here")

    redactor.redact_tree(tmp_path)

    assert (tmp_path / "a" / "events.json").read_text() == f'{{"stdout": "{MASK}"}}'
    assert (tmp_path / "clean.txt").read_text() == "nothing here"


def test_a_child_inherits_none_of_the_products_credentials(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("BLUEPRINT_BMC_RACK1_PASSWORD", "bmc-canary")
    monkeypatch.setenv("BLUEPRINT_VALIDATE_BMC_PASSWORD", "node-canary")
    monkeypatch.setenv("BLUEPRINT_VAULT_PASSWORD", "vault-canary")
    monkeypatch.setenv("BLUEPRINT_AI_ENDPOINTS", "/tmp/endpoints.yaml")

    environment = child_environment(IPMI_PASSWORD="mine")

    assert not {"BLUEPRINT_BMC_RACK1_PASSWORD", "BLUEPRINT_VALIDATE_BMC_PASSWORD",
                "BLUEPRINT_VAULT_PASSWORD"} & set(environment)
    assert environment["IPMI_PASSWORD"] == "mine"
    assert environment["BLUEPRINT_AI_ENDPOINTS"] == "/tmp/endpoints.yaml"
    assert environment["PATH"] == os.environ["PATH"]
