"""Importing kubespray and k3s-ansible inventories: every group and variable accounted for."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from ansible.parsing.vault import VaultLib, VaultSecret

from blueprint.errors import BadInput
from blueprint.kube.importer import import_inventory
from blueprint.loader import load_site

INVENTORIES = Path(__file__).parent / "fixtures" / "inventory"


def _expected(name: str) -> dict:
    return yaml.safe_load((INVENTORIES / f"{name}.expected.yaml").read_text())


def test_kubespray_legacy_groups_are_refused_naming_old_and_new_names() -> None:
    expected = _expected("kubespray-legacy-groups")
    assert expected["result"] == "error"

    with pytest.raises(BadInput) as refused:
        import_inventory("kubespray", INVENTORIES / "kubespray-legacy-groups.ini",
                         site_name="edge")

    message = str(refused.value)
    for name in expected["must_name"] + expected["must_suggest"]:
        assert name in message


def test_kubespray_legacy_groups_translated_keep_every_host_with_a_notice() -> None:
    expected = _expected("kubespray-legacy-groups")

    imported = import_inventory("kubespray", INVENTORIES / "kubespray-legacy-groups.ini",
                                site_name="edge", translate_legacy=True)

    names = [node["name"] for node in imported.site["nodes"]]
    assert names == expected["hosts_in_result_if_translated"]
    assert [node["roles"] for node in imported.site["nodes"]] == [
        ["control-plane"], ["worker"], ["worker"]]
    [notice] = [n for n in imported.notices if n.startswith("legacy group names translated")]
    for old, new in zip(expected["must_name"], expected["must_suggest"], strict=True):
        assert f"{old} -> {new}" in notice


def test_k3s_ansible_inventory_becomes_the_expected_site_token_in_the_vault_only() -> None:
    expected = _expected("k3s-ansible-style")

    imported = import_inventory("k3s-ansible", INVENTORIES / "k3s-ansible-style.yml",
                                site_name="edge")

    site = imported.site
    assert [{"address": n["address"], "roles": n["roles"]} for n in site["nodes"]] == \
        expected["nodes"]
    assert site["ssh"]["user"] == expected["ssh_user"]
    pins = expected["overrides"]["kubernetes"]
    assert site["overrides"]["kubernetes_distribution"] == pins["distribution"]
    assert site["overrides"]["kubernetes_version"] == pins["version"]
    assert expected["token_in_site_file"] is False
    token = "replace-me-with-a-long-random-string"
    assert token not in yaml.safe_dump(site)
    assert imported.secrets == {"kubernetes_token": token}
    assert any("token went to the state folder's vault" in n for n in imported.notices)


def test_kubespray_yaml_inventory_with_ha_balancer_and_cni() -> None:
    imported = import_inventory("kubespray", INVENTORIES / "kubespray-current.yaml",
                                site_name="edge")

    site = imported.site
    assert [(n["name"], n["address"], n["roles"]) for n in site["nodes"]] == [
        ("cp-a", "192.0.2.11", ["control-plane"]), ("cp-b", "192.0.2.12", ["control-plane"]),
        ("cp-c", "192.0.2.13", ["control-plane"]), ("gpu-a", "192.0.2.21", ["worker"])]
    assert site["overrides"] == {
        "kubernetes_distribution": "kubeadm", "kubernetes_version": "v1.31.4",
        "kubernetes_cni": "cilium", "kubernetes_api_lb": "192.0.2.10:8443"}
    # Never dropped in silence: what has no equivalent is named.
    assert imported.notices == [
        "variables not imported (no equivalent in the site file): dashboard_enabled"]


def test_k3s_ansible_legacy_names_refused_then_translated() -> None:
    path = INVENTORIES / "k3s-ansible-legacy.ini"
    with pytest.raises(BadInput, match=r"master \(now server\), node \(now agent\)"):
        import_inventory("k3s-ansible", path, site_name="edge")

    imported = import_inventory("k3s-ansible", path, site_name="edge", translate_legacy=True)

    assert [(n["name"], n["roles"]) for n in imported.site["nodes"]] == [
        ("cp-1", ["control-plane"]), ("worker-1", ["worker"])]
    assert any("extra_server_args" in n for n in imported.notices)


def test_unknown_group_is_refused_by_name_with_the_known_ones() -> None:
    with pytest.raises(BadInput, match=r"group\(s\) kube_nodes are not kubespray groups"):
        import_inventory("kubespray", INVENTORIES / "unknown-group.ini", site_name="edge")


def test_cli_import_writes_a_loadable_site_and_an_encrypted_vault(tmp_path: Path) -> None:
    output = tmp_path / "edge"
    env = {**os.environ, "BLUEPRINT_VAULT_PASSWORD": "import test password"}
    done = subprocess.run(
        [sys.executable, "-m", "blueprint.cli", "import", "k3s-ansible",
         str(INVENTORIES / "k3s-ansible-style.yml"), "--output", str(output)],
        capture_output=True, text=True, env=env, timeout=60, check=False)

    assert done.returncode == 0, done.stderr
    assert "replace-me" not in done.stdout + done.stderr
    loaded = load_site(output / "site.yaml")
    assert len(loaded.site.nodes) == 3
    vault = output / ".state" / "vault.yaml"
    assert vault.read_bytes().startswith(b"$ANSIBLE_VAULT")
    assert oct(vault.stat().st_mode & 0o777) == "0o600"
    plain = VaultLib([("default", VaultSecret(b"import test password"))]).decrypt(
        vault.read_bytes())
    assert yaml.safe_load(plain)["kubernetes_token"] == "replace-me-with-a-long-random-string"


def test_cli_import_refused_exits_2_and_writes_nothing(tmp_path: Path) -> None:
    output = tmp_path / "edge"
    done = subprocess.run(
        [sys.executable, "-m", "blueprint.cli", "import", "kubespray",
         str(INVENTORIES / "kubespray-legacy-groups.ini"), "--output", str(output)],
        capture_output=True, text=True, timeout=60, check=False)

    assert done.returncode == 2
    assert "kube-master (now kube_control_plane)" in done.stderr
    assert not output.exists()
