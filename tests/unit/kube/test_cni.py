"""kubeadm's pod network (CNI): rendered resources, catalogue entries, images, preflight."""

from __future__ import annotations

import logging
import os
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from blueprint.artifacts import load_catalogue, resolve_binaries
from blueprint.errors import BadInput
from blueprint.kube.cni import check_image_mirrors, image_registries
from blueprint.kube.render import cni_config, node_config, render
from blueprint.kube.topology import ClusterSettings, NodePlan, cluster_settings, plan_nodes
from blueprint.kube.variables import (
    check_kubernetes_images,
    check_offline_kubeadm,
    kubernetes_group_variables,
)
from blueprint.loader import load_site
from blueprint.models import Site
from blueprint.paths import ROLES_DIR

FIXTURES = Path(__file__).parent / "fixtures"
GOLDEN = FIXTURES / "golden"
CASES = yaml.safe_load((FIXTURES / "render-cases.yaml").read_text())
KUBEADM_CASES = [name for name, spec in CASES["cases"].items()
                 if spec["variables"]["kubernetes_distribution"] == "kubeadm"]
UPDATE = os.environ.get("BLUEPRINT_UPDATE_GOLDEN") == "1"
ROLE = ROLES_DIR / "kubernetes"
VERSIONS = {"kubernetes": "v1.31.4", "calico": "v3.29.1", "cilium": "v1.16.5",
            "cilium_cli": "v0.16.22"}
# Kinds whose schema lives in the CNI's own CRDs (in tigera-operator.yaml, which cannot be
# fetched here): not in Kubernetes' OpenAPI, so kubernetes-validate cannot check them.
CUSTOM_KINDS = {("operator.tigera.io/v1", "Installation"), ("operator.tigera.io/v1", "APIServer")}


def _site(nodes: list[dict[str, Any]], artifacts: dict[str, Any] | None = None) -> Site:
    return Site.model_validate({"name": "edge", "blueprint": "ai-edge", "nodes": nodes,
                                "artifacts": artifacts or {}})


def _first_control_plane(case: str) -> tuple[ClusterSettings, str, NodePlan]:
    spec = CASES["cases"][case]
    settings = cluster_settings(spec["variables"], spec["versions"])
    plans = plan_nodes(_site(spec["nodes"]), settings)
    name, plan = next((name, plan) for name, plan in plans.items() if plan.init)
    return settings, name, plan


# --- what the first control plane renders ---------------------------------------------------


@pytest.mark.parametrize("case", KUBEADM_CASES)
def test_rendered_cni_resources_match_their_golden_file(case: str) -> None:
    settings, name, plan = _first_control_plane(case)
    text = cni_config(settings, name, plan)
    golden = GOLDEN / case / f"cni-{settings.cni}.yaml"
    if UPDATE:
        golden.write_text(text)
    assert text == golden.read_text()


@pytest.mark.parametrize("case", KUBEADM_CASES)
def test_the_pod_network_uses_kubeadms_pod_subnet(case: str) -> None:
    settings, name, plan = _first_control_plane(case)
    kubeadm = list(yaml.safe_load_all(node_config(settings, name, plan, CASES["secrets"])))
    [cluster] = [doc for doc in kubeadm if doc["kind"] == "ClusterConfiguration"]
    pod_subnet = cluster["networking"]["podSubnet"]
    assert pod_subnet == CASES["cases"][case]["variables"]["kubernetes_pod_cidr"]

    docs = list(yaml.safe_load_all(cni_config(settings, name, plan)))
    if settings.cni == "calico":
        [installation] = [doc for doc in docs if doc["kind"] == "Installation"]
        [pool] = installation["spec"]["calicoNetwork"]["ipPools"]
        assert pool["cidr"] == pod_subnet
    else:
        [values] = docs
        # Cilium takes each node's podCIDR, which kube-controller-manager cuts from podSubnet.
        assert values["ipam"] == {"mode": "kubernetes"}
        assert (values["k8sServiceHost"], values["k8sServicePort"]) == (plan.endpoint, plan.port)
        # kubeadm skipped kube-proxy for cilium; Cilium must replace it.
        assert values["kubeProxyReplacement"] is True
        assert "addon/kube-proxy" in str(kubeadm[0].get("skipPhases"))


def test_image_names_stay_upstream_under_a_registry_override() -> None:
    # The site's registry mirrors are containerd's (hosts.toml per registry): Calico's
    # Installation names no registry, so the operator's upstream names are pulled through
    # them; neither does Cilium's values file.
    settings, name, plan = _first_control_plane("kubeadm-single")
    [installation, _] = yaml.safe_load_all(cni_config(settings, name, plan))
    assert "registry" not in installation["spec"]
    assert "imagePath" not in installation["spec"]
    settings, name, plan = _first_control_plane("kubeadm-ha-lb")
    values = yaml.safe_load(cni_config(settings, name, plan))
    assert "image" not in values and "registry" not in str(values)


# --- Kubernetes' OpenAPI schema -------------------------------------------------------------


def _role_documents(case: str) -> list[dict[str, Any]]:
    """Every manifest the role renders for a kubeadm cluster's first control plane."""
    settings, name, plan = _first_control_plane(case)
    docs = list(yaml.safe_load_all(cni_config(settings, name, plan))) \
        if settings.cni == "calico" else []
    if settings.api_vip:
        defaults = yaml.safe_load((ROLE / "defaults" / "main.yml").read_text())
        docs.append(yaml.safe_load(render("kube-vip.yaml.j2", {
            "kubernetes_api_vip": settings.api_vip,
            "kubernetes_kube_vip_image": defaults["kubernetes_kube_vip_image"],
            "kubernetes_kube_vip_interface": defaults["kubernetes_kube_vip_interface"],
            "kubernetes_kube_vip_kubeconfig": "/etc/kubernetes/super-admin.conf"})))
    return docs


@pytest.mark.parametrize("case", KUBEADM_CASES)
def test_rendered_manifests_validate_against_the_kubernetes_schema(case: str) -> None:
    settings, _, _ = _first_control_plane(case)
    version = "{}.{}".format(*settings.minor)
    skipped = []
    for doc in _role_documents(case):
        key = (doc["apiVersion"], doc["kind"])
        if key in CUSTOM_KINDS:
            # Calico's own CRDs define these; their schema is not in Kubernetes' OpenAPI.
            skipped.append(key)
            continue
        kubernetes_validate.validate(doc, version, strict=True)
    # Nothing else slipped past the schema: only the known custom kinds were skipped.
    assert set(skipped) <= CUSTOM_KINDS


def test_a_misplaced_field_fails_the_schema_check() -> None:
    [*_, pod] = _role_documents("kubeadm-ha-vip-v1beta3")
    pod["spec"]["container"] = pod["spec"].pop("containers")
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(pod, "1.30", strict=True)


# --- the artifact catalogue -----------------------------------------------------------------


def test_catalogue_cni_entries_parse_with_their_registries() -> None:
    entries = load_catalogue().binaries
    assert {name: entries[name].cni for name in ("calico-operator", "cilium-cli",
                                                 "cilium-chart")} == {
        "calico-operator": "calico", "cilium-cli": "cilium", "cilium-chart": "cilium"}
    assert entries["calico-operator"].image_registries == ["quay.io", "docker.io"]
    assert entries["cilium-chart"].image_registries == ["quay.io"]


@pytest.mark.parametrize(
    ("cni", "expected"),
    [
        ("calico", {"calico-operator": (
            "https://raw.githubusercontent.com/projectcalico/calico/v3.29.1/manifests/"
            "tigera-operator.yaml", "")}),
        ("cilium", {
            "cilium-chart": ("https://helm.cilium.io/cilium-1.16.5.tgz", ""),
            "cilium-cli": (
                "https://github.com/cilium/cilium-cli/releases/download/v0.16.22/"
                "cilium-linux-amd64.tar.gz",
                "sha256:https://github.com/cilium/cilium-cli/releases/download/v0.16.22/"
                "cilium-linux-amd64.tar.gz.sha256sum")}),
    ],
)
def test_only_the_chosen_pod_network_is_resolved_upstream(
    cni: str, expected: dict[str, tuple[str, str]]
) -> None:
    site = _site([{"name": "cp-1", "address": "10.20.0.11", "roles": ["control-plane"]}])
    binaries = resolve_binaries(site, "kubernetes", "kubeadm", VERSIONS, cni=cni)
    # Upstream publishes no checksums file for calico's manifest or cilium's chart: the
    # checksum is empty until someone pins one, and the role's preflight refuses it.
    assert {b.name: (b.url, b.checksum) for b in binaries if b.cni} == expected
    assert [b.name for b in binaries if not b.cni] == ["kubeadm", "kubectl", "kubelet"]


def test_a_site_mirror_serves_the_chart_under_its_version() -> None:
    site = _site([{"name": "cp-1", "address": "10.20.0.11", "roles": ["control-plane"]}],
                 {"mode": "mirror", "apt_proxy": "http://10.20.0.1:3142",
                  "repositories": {"cilium-chart": {"url": "http://10.20.0.1/cilium/"}}})
    binaries = resolve_binaries(site, "kubernetes", "kubeadm", VERSIONS, cni="cilium")
    [chart] = [b for b in binaries if b.name == "cilium-chart"]
    assert (chart.url, chart.source) == ("http://10.20.0.1/cilium/v1.16.5/cilium-1.16.5.tgz",
                                         "site mirror")


def test_the_role_takes_every_cni_url_from_the_catalogue() -> None:
    tasks = yaml.safe_load((ROLE / "tasks" / "cni.yml").read_text())
    fetches = [task for task in tasks if "ansible.builtin.get_url" in task]
    assert [task["ansible.builtin.get_url"]["url"] for task in fetches] == ["{{ item.url }}"]
    assert [task["loop"] for task in fetches] == ["{{ kubernetes_cni_artifacts }}"]
    assert fetches[0]["ansible.builtin.get_url"]["checksum"] == "{{ item.checksum }}"
    for name in ("cni.yml", "kubeadm.yml"):
        assert "://" not in (ROLE / "tasks" / name).read_text(), f"{name} names a URL"


# --- images: containerd's mirrors -----------------------------------------------------------


SITE_FILE = Path("/sites/edge/site.yaml")


def _cni_binaries(cni: str, artifacts: dict[str, Any]) -> tuple[Site, list[Any]]:
    site = _site([{"name": "cp-1", "address": "10.20.0.11", "roles": ["control-plane"]}],
                 artifacts)
    locked = {(name, version): "ab" * 32 for name, version in (
        ("kubeadm", "v1.31.4"), ("kubectl", "v1.31.4"), ("kubelet", "v1.31.4"),
        ("calico-operator", "v3.29.1"), ("cilium-cli", "v0.16.22"),
        ("cilium-chart", "v1.16.5"))}
    return site, resolve_binaries(site, "kubernetes", "kubeadm", VERSIONS, locked, cni=cni)


def test_an_offline_site_without_mirrors_for_the_cni_registries_is_refused() -> None:
    site, binaries = _cni_binaries("calico", {
        "mode": "offline", "apt_proxy": "http://10.20.0.1:3150",
        "registry_mirrors": {"quay.io": "http://10.20.0.1:5000"}})
    assert image_registries(binaries) == ["docker.io", "quay.io"]
    with pytest.raises(BadInput, match=r"^/sites/edge/site\.yaml: artifacts\.registry_mirrors: "
                                       r"no mirror for docker\.io, .*pod network calico pulls "
                                       r"images from there.*add a mirror for docker\.io$"):
        check_image_mirrors(site, binaries, SITE_FILE)


def test_an_offline_site_with_its_registry_mirrors_passes() -> None:
    site, binaries = _cni_binaries("cilium", {
        "mode": "offline", "apt_proxy": "http://10.20.0.1:3150",
        "registry_mirrors": {"quay.io": "http://10.20.0.1:5000"}})
    check_image_mirrors(site, binaries, SITE_FILE)


def test_a_mirror_site_without_a_registry_mirror_is_warned(
    caplog: pytest.LogCaptureFixture,
) -> None:
    site, binaries = _cni_binaries("cilium", {"mode": "mirror",
                                              "apt_proxy": "http://10.20.0.1:3142"})
    with caplog.at_level(logging.WARNING):
        check_image_mirrors(site, binaries, SITE_FILE)
    assert "no registry mirror for quay.io" in caplog.text


def test_only_deploys_and_plans_preflight_checks_the_image_mirrors(
    tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    # Rendering the inventory (reset, remove-node, certs renew, upgrade) says nothing of the
    # mirrors; the preflight of deploy and plan does.
    overrides = {"kubernetes_distribution": "kubeadm", "kubernetes_version": "v1.31.4",
                 "kubernetes_cni": "cilium"}
    path = tmp_path / "site.yaml"
    path.write_text(yaml.safe_dump({
        "name": "edge", "blueprint": "ai-edge", "overrides": overrides,
        "artifacts": {"mode": "mirror", "apt_proxy": "http://10.20.0.1:3142"},
        "nodes": [{"name": "cp-1", "address": "10.20.0.11", "roles": ["control-plane"]}]}))
    loaded = load_site(path)
    with caplog.at_level(logging.WARNING):
        kubernetes_group_variables(loaded, overrides)
        assert "registry mirror" not in caplog.text
        check_kubernetes_images(loaded, overrides)
    assert "no registry mirror for quay.io" in caplog.text


@pytest.mark.parametrize(("distribution", "mode", "refused"), [
    ("kubeadm", "offline", True),
    ("kubeadm", "mirror", False),
    ("k3s", "offline", False),
])
def test_an_offline_kubeadm_site_is_refused_naming_the_images_missing_from_the_bom(
    tmp_path: Path, distribution: str, mode: str, refused: bool,
) -> None:
    overrides = {"kubernetes_distribution": distribution}
    if distribution == "kubeadm":
        overrides["kubernetes_version"] = "v1.31.4"
    path = tmp_path / "site.yaml"
    path.write_text(yaml.safe_dump({
        "name": "edge", "blueprint": "ai-edge", "overrides": overrides,
        "artifacts": {"mode": mode, "apt_proxy": "http://10.20.0.1:3142"},
        "nodes": [{"name": "cp-1", "address": "10.20.0.11", "roles": ["control-plane"]}]}))
    loaded = load_site(path)
    if not refused:
        check_offline_kubeadm(loaded, overrides)
        return
    with pytest.raises(BadInput) as stopped:
        check_offline_kubeadm(loaded, overrides)
    assert str(stopped.value) == (
        f"{loaded.site_file}: artifacts.mode: offline is not supported with kubernetes "
        "distribution kubeadm yet: the images kubeadm and its pod network calico start are "
        "not in the bill of materials yet, so no offline node could pull them; use "
        "artifacts.mode mirror or online, or distribution k3s")


# --- preflight: the kernel features the pod network needs ----------------------------------


def _kernel_script() -> str:
    tasks = yaml.safe_load((ROLE / "tasks" / "preflight.yml").read_text())
    [task] = [task for task in tasks if task["name"].startswith("Read swap")]
    return str(task["ansible.builtin.shell"])


@pytest.mark.parametrize(
    ("cni", "release", "expected"),
    [
        ("cilium", "4.19.0-27-amd64", "cilium: kernel 4.19.0-27-amd64 is older than 5.4"),
        ("calico", "6.1.0-28-amd64", "calico: no kernel module xt_set (ipset match)"),
    ],
)
def test_the_kernel_preflight_names_what_the_pod_network_lacks(
    tmp_path: Path, cni: str, release: str, expected: str
) -> None:
    # A STAND-IN `uname` for a kernel release with no module lists and no config here, and
    # a `zcat` that finds no kernel config: what a kernel without the features looks like.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "uname").write_text(f"#!/bin/sh\necho {release}\n")
    (bin_dir / "zcat").write_text("#!/bin/sh\nexit 1\n")
    for tool in bin_dir.iterdir():
        tool.chmod(0o755)
    script = _kernel_script().replace("/sys/module/", str(tmp_path / "no-sysfs") + "/")
    done = subprocess.run(["bash", "-c", script], capture_output=True, text=True, check=False,
                          env={**os.environ, "CNI": cni,
                               "PATH": f"{bin_dir}:{os.environ['PATH']}"})
    assert expected in done.stdout.splitlines(), done.stdout


# --- what the product hands the role --------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "binaries", "cni_files"),
    [
        ({}, ["k3s"], []),
        ({"kubernetes_distribution": "kubeadm", "kubernetes_version": "v1.31.4"},
         ["kubeadm", "kubectl", "kubelet"], ["calico-operator"]),
        ({"kubernetes_distribution": "kubeadm", "kubernetes_version": "v1.31.4",
          "kubernetes_cni": "cilium", "kubernetes_pod_cidr": "10.244.0.0/16"},
         ["kubeadm", "kubectl", "kubelet"], ["cilium-chart", "cilium-cli"]),
    ],
)
def test_the_role_gets_the_pod_networks_files_apart_from_the_binaries(
    tmp_path: Path, overrides: dict[str, str], binaries: list[str], cni_files: list[str]
) -> None:
    path = tmp_path / "site.yaml"
    path.write_text(yaml.safe_dump({
        "name": "edge", "blueprint": "ai-edge", "overrides": overrides,
        "nodes": [{"name": "cp-1", "address": "10.20.0.11", "roles": ["control-plane"]}]}))
    variables = kubernetes_group_variables(load_site(path), overrides)
    assert [item["name"] for item in variables["kubernetes_artifacts"]] == binaries
    assert [item["name"] for item in variables["kubernetes_cni_artifacts"]] == cni_files
    # One pod CIDR for kubeadm's podSubnet and the pod network's resources.
    assert variables["kubernetes_pod_cidr"] == overrides.get("kubernetes_pod_cidr",
                                                             "10.42.0.0/16")
