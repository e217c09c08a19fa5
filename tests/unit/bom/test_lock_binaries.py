"""Release binaries (k3s, kubeadm) in the bill of materials and on an offline site.

The catalogue's binaries are the kubernetes layer's; no GitHub or dl.k8s.io release is
reachable here, so the lock's published-checksum path is tested on a stand-in release served
from a temporary folder, through the same `published_sha256` the lock uses.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from bomhelpers import StandInRelease, serve_folder, write_site

from blueprint.bom.lock import published_sha256, site_inputs
from blueprint.errors import BadInput
from blueprint.kube.variables import site_binaries
from blueprint.loader import load_site

K3S = "v1.31.4+k3s1"
UPSTREAM = "https://github.com/k3s-io/k3s/releases/download/v1.31.4%2Bk3s1/k3s"


def test_lock_inputs_name_the_pinned_k3s_release(tmp_path: Path) -> None:
    loaded = load_site(write_site(tmp_path, blueprint="ai-edge"))
    assert site_inputs(loaded)["files"] == {"k3s": f"{K3S} {UPSTREAM}"}


def test_lab_blueprint_has_no_binaries(tmp_path: Path) -> None:
    loaded = load_site(write_site(tmp_path))
    assert site_inputs(loaded)["files"] == {}


def test_kubeadm_distribution_locks_its_three_binaries_and_its_pod_network(
    tmp_path: Path,
) -> None:
    loaded = load_site(write_site(
        tmp_path, blueprint="ai-edge",
        overrides={"kubernetes_distribution": "kubeadm", "kubernetes_version": "v1.31.4"}))
    files = site_inputs(loaded)["files"]
    # calico is kubeadm's default pod network.
    assert sorted(files) == ["calico-operator", "kubeadm", "kubectl", "kubelet"]
    assert files["kubelet"] == (
        "v1.31.4 https://dl.k8s.io/release/v1.31.4/bin/linux/amd64/kubelet")
    assert files["calico-operator"] == (
        "v3.29.1 https://raw.githubusercontent.com/projectcalico/calico/v3.29.1/manifests/"
        "tigera-operator.yaml")


def test_cilium_site_locks_the_cli_and_the_chart_not_calico(tmp_path: Path) -> None:
    loaded = load_site(write_site(
        tmp_path, blueprint="ai-edge",
        overrides={"kubernetes_distribution": "kubeadm", "kubernetes_version": "v1.31.4",
                   "kubernetes_cni": "cilium"}))
    files = site_inputs(loaded)["files"]
    assert sorted(files) == ["cilium-chart", "cilium-cli", "kubeadm", "kubectl", "kubelet"]
    assert files["cilium-chart"] == "v1.16.5 https://helm.cilium.io/cilium-1.16.5.tgz"


def test_offline_site_fetches_binaries_from_its_mirror_with_the_locked_sum(
    tmp_path: Path,
) -> None:
    loaded = load_site(write_site(tmp_path, blueprint="ai-edge", artifacts={
        "mode": "offline", "apt_proxy": "http://10.9.0.1:3142"}))
    digest = "ab" * 32
    [k3s] = site_binaries(loaded, {}, {("k3s", K3S): digest})
    assert k3s.source == "offline bundle"
    # The mirror serves a bundle's file at its upstream URL's path.
    assert k3s.url == "http://10.9.0.1:3142/k3s-io/k3s/releases/download/v1.31.4%2Bk3s1/k3s"
    assert k3s.checksum == f"sha256:{digest}"
    assert k3s.upstream_url == UPSTREAM


def test_offline_site_refuses_a_binary_its_lock_lacks(tmp_path: Path) -> None:
    loaded = load_site(write_site(tmp_path, blueprint="ai-edge", artifacts={
        "mode": "offline", "apt_proxy": "http://10.9.0.1:3142"}))
    with pytest.raises(BadInput, match=r"binary k3s v1\.31\.4\+k3s1 is not in the site's "
                                       r"bom\.lock\.yaml"):
        site_binaries(loaded, {}, {})


def test_published_checksum_is_read_from_upstreams_list(tmp_path: Path) -> None:
    release = StandInRelease(tmp_path / "release", "")
    digest = release.publish("v1/k3s", b"stand-in k3s binary\n")
    release.publish("v1/sha256sum-amd64.txt",
                    f"{'0' * 64}  k3s-arm64\n{digest}  k3s\n".encode())
    server, thread = serve_folder(release.root)
    try:
        base = f"http://127.0.0.1:{server.server_address[1]}/v1"
        assert published_sha256(f"{base}/k3s", f"{base}/sha256sum-amd64.txt", None) == digest
        assert published_sha256(f"{base}/k3s", f"{base}/missing.txt", None) is None
    finally:
        server.shutdown()
        thread.join()
        server.server_close()
