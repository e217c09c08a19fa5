"""Generated and site secrets of the platform layer never reach output."""

from __future__ import annotations

import stat
from pathlib import Path

from blueprint.secrets import REDACTOR, generated_secret

CANARY = "canary-Pw-7f3k9q"


def test_the_pulumi_passphrase_is_made_once_kept_0600_and_masked(tmp_path: Path) -> None:
    first = generated_secret(tmp_path, "pulumi_passphrase")
    again = generated_secret(tmp_path, "pulumi_passphrase")

    assert first == again and len(first) >= 32
    vault = tmp_path / "vault.yaml"
    assert stat.S_IMODE(vault.stat().st_mode) == 0o600
    assert first not in REDACTOR.redact(f"passphrase is {first}")
