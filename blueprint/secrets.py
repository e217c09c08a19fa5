"""The site's secrets (an ansible-vault file) and the redaction that keeps them out of output."""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path
from typing import Any

import yaml
from ansible.parsing.vault import VaultLib, VaultSecret, is_encrypted

from blueprint.errors import BadInput, EnvironmentMissing

log = logging.getLogger(__name__)

MASK = "********"
PASSWORD_ENV = "BLUEPRINT_VAULT_PASSWORD"
PASSWORD_FILE_ENV = "BLUEPRINT_VAULT_PASSWORD_FILE"
# Credentials an operator may export for the product alone (BMC logins, the password a
# validation run hands one node's checks): never inherited by a child process.
_PRIVATE_ENV_PREFIXES = ("BLUEPRINT_BMC_", "BLUEPRINT_VALIDATE_BMC_", PASSWORD_ENV)


class Redactor(logging.Filter):
    """Replaces every known secret value in log records and text with a mask."""

    def __init__(self) -> None:
        super().__init__()
        self._values: set[str] = set()
        self._pattern: re.Pattern[str] | None = None

    def add(self, values: Any) -> None:
        """Remember every string leaf of `values` (at least 4 characters) as a secret."""
        for value in _leaves(values):
            if len(value) >= 4:
                self._values.add(value)
        ordered = sorted(self._values, key=len, reverse=True)
        self._pattern = re.compile("|".join(map(re.escape, ordered))) if ordered else None

    def redact(self, text: str) -> str:
        return self._pattern.sub(MASK, text) if self._pattern else text

    def redact_tree(self, root: Path) -> None:
        """Mask secrets in every file under `root` (run artifacts, logs, reports)."""
        if self._pattern is None or not root.exists():
            return
        needles = [value.encode() for value in self._values]
        for path in (p for p in root.rglob("*") if p.is_file() and not p.is_symlink()):
            data = path.read_bytes()
            if any(needle in data for needle in needles):
                text = data.decode("utf-8", errors="surrogateescape")
                path.write_bytes(self.redact(text).encode("utf-8", errors="surrogateescape"))

    def filter(self, record: logging.LogRecord) -> bool:
        if self._pattern is not None:
            record.msg = self.redact(record.getMessage())
            record.args = None
        return True


REDACTOR = Redactor()


def child_environment(**extra: str) -> dict[str, str]:
    """The environment for a child process: this one's without the product's credentials,
    plus `extra` (the one secret that child needs, if any)."""
    environment = {name: value for name, value in os.environ.items()
                   if not name.startswith(_PRIVATE_ENV_PREFIXES)}
    environment.update(extra)
    return environment


def _leaves(value: Any) -> list[str]:
    if isinstance(value, dict):
        return [leaf for item in value.values() for leaf in _leaves(item)]
    if isinstance(value, list):
        return [leaf for item in value for leaf in _leaves(item)]
    return [str(value)] if value is not None and not isinstance(value, bool) else []


_password_from_env: list[bytes] = []


def _vault_password() -> bytes | None:
    """The vault password, taken out of the environment so no child process inherits it."""
    if os.environ.get(PASSWORD_ENV):
        password = os.environ.pop(PASSWORD_ENV)
        REDACTOR.add([password])
        _password_from_env[:] = [password.encode()]
    if _password_from_env:
        return _password_from_env[0]
    password_file = os.environ.get(PASSWORD_FILE_ENV)
    if password_file:
        try:
            return Path(password_file).read_bytes().strip()
        except OSError as exc:
            msg = f"{PASSWORD_FILE_ENV}={password_file}: cannot read: {exc.strerror}"
            raise EnvironmentMissing(msg) from exc
    return None


def vault_password() -> bytes | None:
    """The site's vault password (environment or file), or None when none is set."""
    return _vault_password()


def load_site_secrets(site_dir: Path) -> dict[str, Any]:
    """Decrypt `secrets.yaml` beside the site file; {} when the site has none."""
    path = site_dir / "secrets.yaml"
    if not path.exists():
        return {}
    raw = path.read_bytes()
    if not is_encrypted(raw):
        msg = (
            f"{path}: secrets must be vault-encrypted, never kept in clear; "
            f"run: ansible-vault encrypt {path}"
        )
        raise BadInput(msg)
    password = _vault_password()
    if password is None:
        msg = f"{path} is encrypted; set {PASSWORD_ENV} or {PASSWORD_FILE_ENV}"
        raise EnvironmentMissing(msg)
    try:
        plain = VaultLib([("default", VaultSecret(password))]).decrypt(raw)
    except Exception as exc:  # ansible raises AnsibleError subclasses of many kinds
        msg = f"{path}: cannot decrypt with the given vault password"
        raise BadInput(msg) from exc
    data = yaml.safe_load(plain) or {}
    if not isinstance(data, dict):
        msg = f"{path}: the decrypted secrets must be a mapping of names to values"
        raise BadInput(msg)
    REDACTOR.add(data)
    log.debug("loaded %d secrets from %s", len(data), path)
    return data


STATE_VAULT = "vault.yaml"


def generated_secret(state_root: Path, name: str) -> str:
    """A secret the product generates once (e.g. the Pulumi passphrase), kept in the state
    folder's vault file with mode 0600 and masked in every output from then on."""
    import secrets as token_source

    path = state_root / STATE_VAULT
    data: dict[str, Any] = {}
    if path.is_file():
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    if name not in data:
        data[name] = token_source.token_urlsafe(32)
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            yaml.safe_dump(data, handle)
    path.chmod(0o600)
    value = str(data[name])
    REDACTOR.add([value])
    return value
