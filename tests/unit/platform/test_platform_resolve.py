"""From a site and its blueprint to the platform stack's config."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from blueprint.artifacts import load_catalogue
from blueprint.errors import BadInput
from blueprint.loader import load_site
from blueprint.paths import BUILTIN_BLUEPRINTS_DIR, PROJECT_ROOT
from blueprint.platform.resolve import platform_config


def _site(tmp_path: Path, edit: tuple[str, str] | None = None) -> Path:
    site_dir = tmp_path / "site"
    shutil.copytree(PROJECT_ROOT / "inventory" / "example-site", site_dir)
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f",
                    str(site_dir / "deploy_ed25519")], check=True)
    (site_dir / "known_hosts").write_text("")
    if edit is not None:
        text = (site_dir / "site.yaml").read_text()
        assert edit[0] in text
        (site_dir / "site.yaml").write_text(text.replace(edit[0], edit[1], 1))
    return site_dir


def test_example_site_resolves_versions_sources_and_site_facts(tmp_path: Path) -> None:
    config = platform_config(load_site(_site(tmp_path)))

    assert config.kubernetes_version == "1.31"  # k3s v1.31.4+k3s1 in the blueprint
    assert config.host_gpu_driver is True  # the gpu layer installs driver and toolkit
    catalogue = load_catalogue().repositories
    assert config.charts["jupyterhub"].repository_url == catalogue["jupyterhub"].url
    assert config.charts["jupyterhub"].version == "4.2.0"
    assert config.settings.flower.role == "hub"
    assert [node.name for node in config.nodes] == ["edge-cp-1", "edge-gpu-1", "edge-store-1"]


def test_a_mirror_site_takes_chart_repositories_from_its_own_mirror(tmp_path: Path) -> None:
    mirror = ("      endpoints: [https://registry.example.net:5000]\n",
              "      endpoints: [https://registry.example.net:5000]\n"
              "  repositories:\n"
              "    jupyterhub: {url: http://10.20.0.2/charts/jupyterhub}\n")
    config = platform_config(load_site(_site(tmp_path, mirror)))

    assert config.charts["jupyterhub"].repository_url == "http://10.20.0.2/charts/jupyterhub"
    assert config.charts["gpu-operator"].repository_url == (
        load_catalogue().repositories["nvidia-helm"].url)


def test_a_site_without_its_platform_section_is_refused_before_anything(tmp_path: Path) -> None:
    site_dir = _site(tmp_path)
    text = (site_dir / "site.yaml").read_text()
    start, end = text.index("platform:"), text.index("overrides:")
    (site_dir / "site.yaml").write_text(text[:start] + text[end:])

    with pytest.raises(BadInput, match=r"site.yaml: platform: the blueprint's platform layer "
                                       r"needs the site's platform section"):
        platform_config(load_site(site_dir))


def test_a_member_site_must_name_the_hub(tmp_path: Path) -> None:
    edit = ("    role: hub ", "    role: member ")
    with pytest.raises(BadInput, match=r"site.yaml:\d+: platform.flower: .*a member site needs "
                                       r"superlink_address"):
        load_site(_site(tmp_path, edit))


def test_the_operators_own_driver_needs_its_images_pinned(tmp_path: Path) -> None:
    site_dir = _site(tmp_path, ("blueprint: ai-edge ", "blueprint: operator-driver.yaml "))
    text = (BUILTIN_BLUEPRINTS_DIR / "ai-edge.yaml").read_text()
    for old, new in (("driver: auto ", "driver: operator "),
                     ("            driver: nvcr.io/nvidia/driver:570.124.06\n", "")):
        assert old in text
        text = text.replace(old, new, 1)
    (site_dir / "operator-driver.yaml").write_text(text)

    with pytest.raises(BadInput, match=r"the GPU operator installs the driver here \(gpu.driver "
                                       r"'operator'.*charts.gpu-operator.images has no driver; "
                                       r"pin them"):
        platform_config(load_site(site_dir))


OFFLINE = ("  mode: mirror ", "  mode: offline ")


def test_an_offline_site_takes_the_charts_from_the_bundles_mirror(tmp_path: Path) -> None:
    loaded = load_site(_site(tmp_path, OFFLINE))
    proxy = str(loaded.site.artifacts.apt_proxy).rstrip("/")

    config = platform_config(loaded)

    # `blueprint mirror serve` serves each catalogue repository's locked charts there.
    # (Kubeflow Pipelines' manifests are resolved too, unused with the argo engine.)
    assert {chart.repository_url for chart in config.charts.values()
            if chart.chart != "kubeflow-pipelines"} == {
        f"{proxy}/helm/{entry.repository}" for entry in config.options.charts.values()}


def test_an_offline_site_takes_every_chart_from_its_own_copy(tmp_path: Path) -> None:
    names = sorted({entry.repository for entry in
                    platform_config(load_site(_site(tmp_path / "a"))).options.charts.values()})
    served = "".join(f"    {name}: {{url: http://10.20.0.2:3150/charts/{name}}}\n"
                     for name in names)
    mirror = ("      endpoints: [https://registry.example.net:5000]\n",
              "      endpoints: [https://registry.example.net:5000]\n"
              f"  repositories:\n{served}")
    site_dir = _site(tmp_path / "b", OFFLINE)
    text = (site_dir / "site.yaml").read_text()
    (site_dir / "site.yaml").write_text(text.replace(*mirror, 1))

    config = platform_config(load_site(site_dir))

    assert {chart.repository_url.rsplit("/", 1)[0] for chart in config.charts.values()
            if chart.chart != "kubeflow-pipelines"} == {"http://10.20.0.2:3150/charts"}


def _ceph_blueprint(site_dir: Path) -> None:
    """ai-edge with a Rook-Ceph class in the platform, as a file beside the site."""
    text = (BUILTIN_BLUEPRINTS_DIR / "ai-edge.yaml").read_text()
    old = "          - {name: local-path, kind: local-path, default: true}\n"
    assert old in text
    text = text.replace(old, old + "          - {name: ceph-block, kind: rook-ceph}\n", 1)
    charts = ("      charts:\n"
              "        rook-ceph: {chart: rook-ceph, repository: rook-release,\n"
              "                    images: {operator: docker.io/rook/ceph:v1.17.2}}\n"
              "        rook-ceph-cluster: {chart: rook-ceph-cluster, repository: rook-release,\n"
              "                            images: {ceph: quay.io/ceph/ceph:v19.2.2}}\n")
    text = text.replace("      charts:\n", charts, 1)
    text = text.replace("    versions:\n      gpu-operator:",
                        "    versions:\n      rook-ceph: v1.17.2\n"
                        "      rook-ceph-cluster: v1.17.2\n      gpu-operator:", 1)
    (site_dir / "ceph.yaml").write_text(text)


def test_a_storage_class_needs_nodes_the_storage_layer_prepared(tmp_path: Path) -> None:
    site_dir = _site(tmp_path, ("blueprint: ai-edge ", "blueprint: ceph.yaml "))
    _ceph_blueprint(site_dir)

    with pytest.raises(BadInput, match=r"storage class ceph-block is of kind rook-ceph, which "
                                       r"the storage layer does not prepare nodes for "
                                       r"\(storage_classes: local-path\)"):
        platform_config(load_site(site_dir))

    # The site adds rook-ceph to what its nodes are prepared for: the class resolves.
    text = (site_dir / "site.yaml").read_text()
    (site_dir / "site.yaml").write_text(text.replace(
        "overrides:                          # role variables, checked against "
        "meta/argument_specs.yml\n",
        "overrides:\n  storage_classes: [local-path, rook-ceph]\n"
        "  storage_ceph_devices: {edge-store-1: [/dev/sdb]}\n", 1))
    config = platform_config(load_site(site_dir))
    assert [item.kind for item in config.options.storage.classes] == ["local-path", "rook-ceph"]


def test_a_storage_layer_without_storage_classes_prepares_the_roles_default(
        tmp_path: Path) -> None:
    site_dir = _site(tmp_path, ("blueprint: ai-edge ", "blueprint: bare.yaml "))
    text = (BUILTIN_BLUEPRINTS_DIR / "ai-edge.yaml").read_text()
    old = ("    options:\n"
           "      storage_classes: [local-path]    # a site may add nfs, longhorn, rook-ceph\n")
    assert old in text
    (site_dir / "bare.yaml").write_text(text.replace(old, "    options: {}\n", 1))

    # roles/storage/defaults/main.yml prepares local-path: the platform's class resolves.
    config = platform_config(load_site(site_dir))
    assert [item.kind for item in config.options.storage.classes] == ["local-path"]


def test_an_offline_site_refuses_the_operators_own_driver(tmp_path: Path) -> None:
    site_dir = _site(tmp_path, OFFLINE)
    text = (site_dir / "site.yaml").read_text()
    old = "blueprint: ai-edge "
    assert old in text
    (site_dir / "site.yaml").write_text(text.replace(old, "blueprint: operator.yaml ", 1))
    blueprint = (BUILTIN_BLUEPRINTS_DIR / "ai-edge.yaml").read_text()
    old = "        driver: auto "
    assert old in blueprint
    (site_dir / "operator.yaml").write_text(blueprint.replace(old, "        driver: operator ", 1))

    # The driver image's tag gets the node's OS appended, which no lock pins.
    with pytest.raises(BadInput, match=r"mode 'offline': the GPU operator installs the driver "
                                       r"here \(gpu.driver 'operator'\).*570.124.06-ubuntu22.04"):
        platform_config(load_site(site_dir))
