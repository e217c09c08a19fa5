"""Good site files load, and what they say reaches the rendered inventory and ssh_config."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from blueprint.errors import BadInput
from blueprint.inventory import render_inventory, secret_variables
from blueprint.loader import load_site
from blueprint.state import StateDir

SITES = Path(__file__).parent / "fixtures" / "sites"


def test_registry_mirror_mapping_is_normalised_to_the_list_form() -> None:
    loaded = load_site(SITES / "registry-mirror-mapping.yaml")
    mirrors = loaded.site.artifacts.registry_mirrors
    assert [(m.registry, m.endpoints, m.skip_verify) for m in mirrors] == [
        ("repo.example.internal:5000", ["http://repo.example.internal:5000"], False)
    ]


def test_full_site_renders_inventory_groups_and_role_variables(tmp_path: Path) -> None:
    loaded = load_site(SITES / "full.yaml")
    state = StateDir.for_site(loaded.site_dir, tmp_path / "state")

    inventory_dir = render_inventory(loaded, state)

    hosts = yaml.safe_load((inventory_dir / "hosts.yml").read_text())["all"]
    assert hosts["hosts"]["edge-1"]["ansible_host"] == "10.20.0.11"
    assert hosts["hosts"]["edge-1"]["ansible_user"] == "deploy"
    assert hosts["hosts"]["edge-2"]["ansible_user"] == "root"
    # Hardening keeps each node's own installer login, not just the site's default user.
    assert hosts["hosts"]["edge-1"]["os_baseline_installer_user"] == "deploy"
    assert hosts["hosts"]["edge-2"]["os_baseline_installer_user"] == "root"
    assert sorted(hosts["children"]["control_plane"]["hosts"]) == ["edge-1"]
    assert sorted(hosts["children"]["worker"]["hosts"]) == ["edge-1", "edge-2"]
    assert sorted(hosts["children"]["gpu"]["hosts"]) == ["edge-2"]
    variables = yaml.safe_load((inventory_dir / "group_vars" / "all.yml").read_text())
    assert variables["os_baseline_apt_proxy"] == "http://10.20.0.1:3142"
    assert variables["os_baseline_time_servers"] == ["10.20.0.1"]
    assert variables["os_baseline_http_proxy"] == "http://proxy.example:3128"
    assert variables["os_baseline_admin_user"] == "edgeops"
    assert variables["os_baseline_admin_authorized_keys"] == [
        (SITES / "good_key.pub").read_text().strip()
    ]
    assert variables["os_baseline_extra_packages"] == ["htop"]
    assert variables["container_runtime_registry_mirrors"] == [
        {"registry": "docker.io", "endpoints": ["https://registry.example:5000"],
         "skip_verify": False}
    ]
    ssh_config = (state.root / "ssh_config").read_text()
    assert "Host edge-2 10.20.0.12" in ssh_config
    assert "StrictHostKeyChecking yes" in ssh_config
    assert "ProxyJump ops@jump.example:2222" in ssh_config
    # The bastion itself is reached directly, with the site's pinned keys.
    bastion_block = ssh_config.split("Host jump.example\n", 1)[1].split("\n\n", 1)[0]
    assert "ProxyJump none" in bastion_block
    assert "StrictHostKeyChecking yes" in bastion_block


CREDENTIALS = {"registry.example:5000": {"username": "puller", "password": "pw-Zq81x"}}


def test_registry_credentials_become_the_runtime_auth_variable() -> None:
    loaded = load_site(SITES / "full.yaml")

    variables = secret_variables(loaded, {"registry_credentials": CREDENTIALS})

    assert variables == {"container_runtime_registry_auth": [
        {"host": "registry.example:5000", "username": "puller", "password": "pw-Zq81x"}
    ]}
    assert secret_variables(loaded, {}) == {"container_runtime_registry_auth": []}


def test_credentials_for_a_host_no_mirror_uses_are_refused() -> None:
    loaded = load_site(SITES / "full.yaml")
    secrets = {"registry_credentials": {"registry.example": CREDENTIALS["registry.example:5000"]}}

    with pytest.raises(BadInput) as caught:
        secret_variables(loaded, secrets)

    assert str(caught.value) == (
        f"{SITES / 'secrets.yaml'}: registry_credentials: host 'registry.example' is used by "
        "no registry mirror endpoint; use one of registry.example:5000, or remove it"
    )


def test_credentials_without_a_password_are_refused() -> None:
    loaded = load_site(SITES / "full.yaml")
    secrets = {"registry_credentials": {"registry.example:5000": {"username": "puller"}}}

    with pytest.raises(BadInput, match="give exactly a non-empty username and password"):
        secret_variables(loaded, secrets)


def test_nothing_secret_reaches_the_rendered_inventory(tmp_path: Path) -> None:
    loaded = load_site(SITES / "full.yaml")
    state = StateDir.for_site(loaded.site_dir, tmp_path / "state")
    secret_variables(loaded, {"registry_credentials": CREDENTIALS})

    render_inventory(loaded, state)

    written = [path for path in state.root.rglob("*") if path.is_file()]
    assert written
    assert [path for path in written if b"pw-Zq81x" in path.read_bytes()] == []
    assert [path for path in written if b"registry_auth" in path.read_bytes()] == []
