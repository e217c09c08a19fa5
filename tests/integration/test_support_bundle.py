"""`blueprint support-bundle` on the deployed lab: everything collected, no secret in it.

The canary is a registry password from the site's vault that the runtime layer writes into
containerd's config on every node: the bundle must carry that config, masked, and the canary
nowhere, in no file and not in the compressed bytes.
"""

from __future__ import annotations

import gzip
import io
import os
import secrets
import subprocess
import sys
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import yaml
from rich.console import Console

from blueprint.deploy import deploy
from blueprint.errors import ExitCode
from blueprint.inventory import secret_variables
from blueprint.loader import load_site
from blueprint.secrets import PASSWORD_ENV, load_site_secrets
from blueprint.state import StateDir

if TYPE_CHECKING:
    from tests.integration.conftest import LabHandle

pytestmark = pytest.mark.lab
# After the fault table (21), before the molecule tests (30).
LAB_STAGE = 22

VAULT_PASSWORD = f"vault-{secrets.token_hex(8)}"
CANARY = f"canary-{secrets.token_hex(12)}"


def _deploy_runtime(site_file: Path) -> None:
    loaded = load_site(site_file)
    secret_vars = secret_variables(loaded, load_site_secrets(loaded.site_dir))
    deploy(loaded, StateDir.for_site(loaded.site_dir), Console(file=io.StringIO()),
           requested=["container_runtime"], secret_vars=secret_vars)


@pytest.fixture(scope="module")
def site_with_canary(lab: LabHandle) -> Iterator[Path]:
    """The lab site with a registry mirror whose password (the canary) is in the vault."""
    original = lab.site_file.read_text()
    mirror_host = f"{lab.state.bridge_ip}:5000"
    data = yaml.safe_load(original)
    data["artifacts"]["registry_mirrors"] = [
        {"registry": "docker.io", "endpoints": [f"http://{mirror_host}"]}]
    secrets_file = lab.site_dir / "secrets.yaml"
    password_file = lab.site_dir / ".vault-pass-bundle"
    password_file.write_text(VAULT_PASSWORD)
    secrets_file.write_text(yaml.safe_dump(
        {"registry_credentials": {mirror_host: {"username": "puller", "password": CANARY}}}))
    ansible_vault = Path(sys.executable).parent / "ansible-vault"
    subprocess.run([str(ansible_vault), "encrypt", "--vault-password-file", str(password_file),
                    str(secrets_file)], check=True, capture_output=True)
    password_file.unlink()
    lab.site_file.write_text(yaml.safe_dump(data, sort_keys=False))
    os.environ[PASSWORD_ENV] = VAULT_PASSWORD
    try:
        _deploy_runtime(lab.site_file)
        yield lab.site_file
    finally:
        os.environ.pop(PASSWORD_ENV, None)
        secrets_file.unlink()
        lab.site_file.write_text(original)
        _deploy_runtime(lab.site_file)


def test_bundle_collects_every_node_and_masks_the_canary(
    lab: LabHandle, site_with_canary: Path, tmp_path: Path
) -> None:
    node = lab.nodes[0]
    assert CANARY in lab.ssh(node, "cat /etc/containerd/config.toml").stdout
    archive = tmp_path / "bundle.tar.gz"

    done = subprocess.run(
        [sys.executable, "-m", "blueprint.cli", "support-bundle", str(site_with_canary),
         "-o", str(archive)],
        capture_output=True, text=True, timeout=600, check=False,
        env={**os.environ, PASSWORD_ENV: VAULT_PASSWORD})

    assert done.returncode == ExitCode.OK, done.stderr
    assert done.stdout.strip() == f"support bundle: {archive}"
    with tarfile.open(archive) as bundle:
        members = {m.name.split("/", 1)[1]: bundle.extractfile(m).read().decode()  # type: ignore[union-attr]
                   for m in bundle.getmembers() if m.isfile()}
    for lab_node in lab.nodes:
        assert f"nodes/{lab_node.name}/journal.txt" in members
        config = members[f"nodes/{lab_node.name}/containerd-config.toml"]
        assert "(exit 0)" in config and "password = <redacted>" in config.replace(
            "password = ********", "password = <redacted>")
    assert "controller/site.yaml" in members and "controller/history.json" in members
    assert not [name for name in members if "secrets" in name or name.endswith("_ed25519")]
    for secret in (CANARY, VAULT_PASSWORD):
        assert [name for name, text in members.items() if secret in text] == []
        assert secret.encode() not in gzip.decompress(archive.read_bytes())
        assert secret not in done.stdout + done.stderr
