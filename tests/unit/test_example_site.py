"""The example site template stays loadable: it is what operators copy."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from blueprint.loader import load_site
from blueprint.paths import PROJECT_ROOT


def test_example_site_loads_once_its_key_and_known_hosts_exist(tmp_path: Path) -> None:
    site_dir = tmp_path / "example-site"
    shutil.copytree(PROJECT_ROOT / "inventory" / "example-site", site_dir)
    key = site_dir / "deploy_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    (site_dir / "known_hosts").write_text("")

    loaded = load_site(site_dir)

    assert loaded.blueprint.name == "ai-edge"
    assert [node.name for node in loaded.site.nodes] == ["edge-cp-1", "edge-gpu-1",
                                                         "edge-store-1"]
    assert loaded.site.waivers[0].node == "edge-store-1"
