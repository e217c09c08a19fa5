"""Kubernetes binaries from the artifact catalogue, and the state folder's vault of secrets."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from blueprint.artifacts import CATALOGUE_OVERRIDE_ENV, resolve_binaries
from blueprint.errors import BadInput
from blueprint.kube.tokens import cluster_secrets, vault_path
from blueprint.models import Site
from blueprint.secrets import PASSWORD_FILE_ENV
from blueprint.state import StateDir


def _site(artifacts: dict | None = None) -> Site:
    return Site.model_validate({
        "name": "edge", "blueprint": "ai-edge", "artifacts": artifacts or {},
        "nodes": [{"name": "cp-1", "address": "10.20.0.11", "roles": ["control-plane"]}]})


def test_online_k3s_url_is_upstream_with_its_checksums_file() -> None:
    [k3s] = resolve_binaries(_site(), "kubernetes", "k3s", {"k3s": "v1.31.4+k3s1"})
    base = "https://github.com/k3s-io/k3s/releases/download/v1.31.4%2Bk3s1"
    assert (k3s.url, k3s.checksum, k3s.source) == (
        f"{base}/k3s", f"sha256:{base}/sha256sum-amd64.txt", "upstream")


def test_kubeadm_distribution_gets_kubeadm_kubelet_kubectl() -> None:
    binaries = resolve_binaries(_site(), "kubernetes", "kubeadm", {"kubernetes": "v1.31.4"})
    assert [b.name for b in binaries] == ["kubeadm", "kubectl", "kubelet"]
    assert binaries[0].checksum == (
        "sha256:https://dl.k8s.io/release/v1.31.4/bin/linux/amd64/kubeadm.sha256")


def test_site_mirror_serves_binary_and_checksums_under_the_version() -> None:
    site = _site({"mode": "mirror", "apt_proxy": "http://10.20.0.1:3142",
                  "repositories": {"k3s": {"url": "http://10.20.0.1/k3s/"}}})
    [k3s] = resolve_binaries(site, "kubernetes", "k3s", {"k3s": "v1.31.4+k3s1"})
    assert k3s.url == "http://10.20.0.1/k3s/v1.31.4%2Bk3s1/k3s"
    assert k3s.checksum == "sha256:http://10.20.0.1/k3s/v1.31.4%2Bk3s1/sha256sum-amd64.txt"
    assert k3s.source == "site mirror"


def test_a_pinned_sha256_in_an_override_catalogue_wins(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    digest = "ab" * 32
    override = tmp_path / "catalogue.yaml"
    override.write_text(yaml.safe_dump({"binaries": {"k3s": {
        "layer": "kubernetes", "distribution": "k3s", "version_key": "k3s", "file": "k3s",
        "url": "http://mirror.example/{version_url}/k3s",
        "checksums": "http://mirror.example/{version_url}/sha256sum-amd64.txt",
        "licence": "Apache-2.0", "sha256": {"v1.31.4+k3s1": digest}}}}))
    monkeypatch.setenv(CATALOGUE_OVERRIDE_ENV, str(override))

    [k3s] = resolve_binaries(_site(), "kubernetes", "k3s", {"k3s": "v1.31.4+k3s1"})

    assert (k3s.url, k3s.checksum) == ("http://mirror.example/v1.31.4%2Bk3s1/k3s",
                                       f"sha256:{digest}")


def test_a_malformed_pin_is_refused_naming_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    override = tmp_path / "bad-catalogue.yaml"
    override.write_text(yaml.safe_dump({"binaries": {"k3s": {
        "layer": "kubernetes", "distribution": "k3s", "version_key": "k3s", "file": "k3s",
        "url": "u", "checksums": "c", "licence": "Apache-2.0", "sha256": {"v1": "not-hex"}}}}))
    monkeypatch.setenv(CATALOGUE_OVERRIDE_ENV, str(override))
    with pytest.raises(BadInput, match=rf"{override}: binaries.k3s.sha256: .*not 64"):
        resolve_binaries(_site(), "kubernetes", "k3s", {"k3s": "v1"})


def test_a_version_the_blueprint_does_not_pin_is_bad_input() -> None:
    with pytest.raises(BadInput, match="needs a pinned version"):
        resolve_binaries(_site(), "kubernetes", "kubeadm", {"k3s": "v1.31.4+k3s1"})


def test_cluster_secrets_are_made_once_encrypted_and_0600(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    password = tmp_path / "vault-password"
    password.write_text("unit test vault password\n")
    monkeypatch.setenv(PASSWORD_FILE_ENV, str(password))
    monkeypatch.setattr("blueprint.secrets._password_from_env", [])
    state = StateDir.for_site(tmp_path)

    first = cluster_secrets(state)
    second = cluster_secrets(state)

    assert first == second
    assert re.fullmatch(r"[a-z0-9]{6}\.[a-z0-9]{16}", first["kubernetes_kubeadm_token"])
    assert re.fullmatch(r"[0-9a-f]{64}", first["kubernetes_certificate_key"])
    raw = vault_path(state).read_bytes()
    assert raw.startswith(b"$ANSIBLE_VAULT")
    assert not [value for value in first.values() if value.encode() in raw]
    assert oct(vault_path(state).stat().st_mode & 0o777) == "0o600"
