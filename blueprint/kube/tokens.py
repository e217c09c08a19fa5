"""Cluster secrets made by the product: generated once, kept in the state folder's vault.

The vault is `<state>/vault.yaml`, mode 0600, ansible-vault encrypted with the site's vault
password when one is set (BLUEPRINT_VAULT_PASSWORD or _FILE). Its values reach Ansible only as
the run's private extra variables and are masked in every output.
"""

from __future__ import annotations

import logging
import os
import secrets
from pathlib import Path
from typing import Any

import yaml
from ansible.parsing.vault import VaultLib, VaultSecret, is_encrypted

from blueprint.errors import BadInput, EnvironmentMissing
from blueprint.secrets import REDACTOR, vault_password
from blueprint.state import StateDir

log = logging.getLogger(__name__)

VAULT_FILE = "vault.yaml"


def _new_secrets() -> dict[str, str]:
    return {
        # k3s accepts any string; 32 random bytes as hex.
        "kubernetes_token": secrets.token_hex(32),
        # kubeadm's bootstrap token: [a-z0-9]{6}.[a-z0-9]{16}.
        "kubernetes_kubeadm_token": f"{secrets.token_hex(3)}.{secrets.token_hex(8)}",
        # kubeadm's certificate key: an AES-256 key as 64 hex digits.
        "kubernetes_certificate_key": secrets.token_hex(32),
    }


def vault_path(state: StateDir) -> Path:
    return state.root / VAULT_FILE


def read_state_vault(state: StateDir) -> dict[str, Any]:
    """The state folder's vault ({} when there is none yet)."""
    path = vault_path(state)
    if not path.exists():
        return {}
    raw = path.read_bytes()
    if is_encrypted(raw):
        password = vault_password()
        if password is None:
            msg = f"{path} is encrypted; set BLUEPRINT_VAULT_PASSWORD or _FILE"
            raise EnvironmentMissing(msg)
        try:
            raw = VaultLib([("default", VaultSecret(password))]).decrypt(raw)
        except Exception as exc:  # ansible raises AnsibleError subclasses of many kinds
            msg = f"{path}: cannot decrypt with the given vault password"
            raise BadInput(msg) from exc
    data = yaml.safe_load(raw) or {}
    if not isinstance(data, dict):
        msg = f"{path}: must be a mapping of names to secrets"
        raise BadInput(msg)
    REDACTOR.add(data)
    return data


def write_state_vault(state: StateDir, data: dict[str, Any]) -> None:
    """Replace the vault's content; encrypted when a vault password is set, mode 0600."""
    REDACTOR.add(data)
    raw = yaml.safe_dump(data, sort_keys=True).encode()
    password = vault_password()
    if password is not None:
        raw = VaultLib([("default", VaultSecret(password))]).encrypt(raw)
    else:
        log.warning("no vault password set: %s is kept in clear, mode 0600", vault_path(state))
    path = vault_path(state)
    temporary = path.with_suffix(".tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(raw)
    temporary.replace(path)


def cluster_secrets(state: StateDir, *, create: bool = True) -> dict[str, str]:
    """The cluster's join token and keys, generated on first use and kept for every run."""
    data = read_state_vault(state)
    missing = {name: value for name, value in _new_secrets().items() if name not in data}
    if missing and create:
        data.update(missing)
        write_state_vault(state, data)
        log.info("generated cluster secrets %s in %s", ", ".join(sorted(missing)),
                 vault_path(state))
    return {name: str(data[name]) for name in _new_secrets() if name in data}
