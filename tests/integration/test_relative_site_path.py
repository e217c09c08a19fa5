"""A site named by a relative path works from any folder, as scripts/lab-demo names it.

Ansible and SSH run from other folders than the operator's, so every path the product hands
them must be absolute; no open shared connection may hide a wrong one.
"""

from __future__ import annotations

import subprocess
import sys
from typing import TYPE_CHECKING

import pytest

from blueprint.errors import ExitCode

if TYPE_CHECKING:
    from tests.integration.conftest import LabHandle

pytestmark = pytest.mark.lab

# After the end-to-end story has deployed the lab.
LAB_STAGE = 25


def test_plan_with_a_relative_site_path_reaches_every_node(lab: LabHandle) -> None:
    relative = lab.site_dir.name
    done = subprocess.run(
        [sys.executable, "-m", "blueprint.cli", "plan", relative, "--layer", "os_baseline"],
        cwd=lab.site_dir.parent, capture_output=True, text=True, timeout=600, check=False,
    )

    assert done.returncode == ExitCode.OK, done.stderr
    assert f"change(s) on {len(lab.nodes)} node(s)" in done.stdout
    ssh_config = (lab.site_dir / ".state" / "ssh_config").read_text()
    identity_files = [line.split()[1] for line in ssh_config.splitlines()
                      if line.strip().startswith("IdentityFile")]
    assert identity_files and all(path.startswith("/") for path in identity_files)
