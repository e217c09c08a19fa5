"""Config rendering of the kubernetes role: golden files, and kubeadm's against its API."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import yaml

from blueprint.errors import BadInput
from blueprint.kube.render import node_config, render
from blueprint.kube.topology import cluster_settings, plan_nodes
from blueprint.models import Site

FIXTURES = Path(__file__).parent / "fixtures"
GOLDEN = FIXTURES / "golden"
CASES = yaml.safe_load((FIXTURES / "render-cases.yaml").read_text())
API = yaml.safe_load((FIXTURES / "kubeadm-api-fields.yaml").read_text())["versions"]
# Set to rewrite the golden files after a deliberate template change; review the diff.
UPDATE = os.environ.get("BLUEPRINT_UPDATE_GOLDEN") == "1"


def _site(nodes: list[dict[str, Any]]) -> Site:
    return Site.model_validate({"name": "edge", "blueprint": "ai-edge", "nodes": nodes})


def _rendered(case: str) -> dict[str, str]:
    spec = CASES["cases"][case]
    settings = cluster_settings(spec["variables"], spec["versions"])
    plans = plan_nodes(_site(spec["nodes"]), settings)
    return {name: node_config(settings, name, plan, CASES["secrets"])
            for name, plan in plans.items()}


def _node_cases() -> list[tuple[str, str]]:
    return [(case, node["name"]) for case, spec in CASES["cases"].items()
            for node in spec["nodes"]]


@pytest.mark.parametrize(("case", "node"), _node_cases())
def test_rendered_config_matches_its_golden_file(case: str, node: str) -> None:
    text = _rendered(case)[node]
    golden = GOLDEN / case / f"{node}.yaml"
    if UPDATE:
        golden.parent.mkdir(parents=True, exist_ok=True)
        golden.write_text(text)
    assert text == golden.read_text()


# --- the kubeadm configuration API ---------------------------------------------------------


def _check_value(value: Any, kind: str, objects: dict[str, Any], where: str) -> list[str]:
    if kind.startswith("[]"):
        if not isinstance(value, list):
            return [f"{where}: expected a list, got {value!r}"]
        return [problem for index, item in enumerate(value)
                for problem in _check_value(item, kind[2:], objects, f"{where}[{index}]")]
    scalars = {"string": str, "int": int, "bool": bool, "duration": str}
    if kind in scalars:
        ok = isinstance(value, scalars[kind]) and not (kind == "int" and isinstance(value, bool))
        return [] if ok else [f"{where}: expected {kind}, got {value!r}"]
    if kind in ("map", "map-bool"):
        inner = str if kind == "map" else bool
        ok = isinstance(value, dict) and all(isinstance(v, inner) for v in value.values())
        return [] if ok else [f"{where}: expected {kind}, got {value!r}"]
    return _check_object(value, kind, objects, where)


def _check_object(value: Any, name: str, objects: dict[str, Any], where: str) -> list[str]:
    spec = objects[name]
    if not isinstance(value, dict):
        return [f"{where}: expected object {name}, got {value!r}"]
    problems = [f"{where}: required field '{field}' of {name} is missing"
                for field in spec.get("required", []) if field not in value]
    for key, item in value.items():
        if key not in spec["fields"]:
            problems.append(f"{where}.{key}: not a field of {name}")
            continue
        problems += _check_value(item, spec["fields"][key], objects, f"{where}.{key}")
    return problems


def kubeadm_api_problems(text: str) -> list[str]:
    """Every field of every document that the kubeadm API of its apiVersion does not have."""
    problems: list[str] = []
    for doc in yaml.safe_load_all(text):
        version = API.get(doc.get("apiVersion"))
        if version is None:
            problems.append(f"apiVersion {doc.get('apiVersion')!r} is not a kubeadm API")
            continue
        kind = doc.get("kind")
        if kind not in version["kinds"]:
            problems.append(f"kind {kind!r} is not in {doc['apiVersion']}")
            continue
        problems += _check_object(doc, kind, version["objects"], kind)
    return problems


KUBEADM_CASES = [(case, node) for case, node in _node_cases() if case.startswith("kubeadm")]


@pytest.mark.parametrize(("case", "node"), KUBEADM_CASES)
def test_kubeadm_config_has_only_fields_of_the_api_it_targets(case: str, node: str) -> None:
    assert kubeadm_api_problems(_rendered(case)[node]) == []


def test_field_check_catches_a_misplaced_and_a_misspelt_field() -> None:
    text = _rendered("kubeadm-single")["cp-1"]
    misplaced = text.replace("clusterName:", "controlPlane: {}\nclusterName:")
    misspelt = text.replace("podSubnet", "podSubnets")
    assert kubeadm_api_problems(misplaced) == [
        "ClusterConfiguration.controlPlane: not a field of ClusterConfiguration"]
    assert kubeadm_api_problems(misspelt) == [
        "ClusterConfiguration.networking.podSubnets: not a field of Networking"]


def test_kubernetes_131_gets_v1beta4_and_structured_kubelet_args() -> None:
    docs = list(yaml.safe_load_all(_rendered("kubeadm-single")["gpu-1"]))
    assert [doc["apiVersion"] for doc in docs] == ["kubeadm.k8s.io/v1beta4"]
    assert docs[0]["nodeRegistration"]["kubeletExtraArgs"] == [
        {"name": "node-ip", "value": "10.20.0.21"}]


def test_kubernetes_130_gets_v1beta3_with_a_kubelet_args_map() -> None:
    docs = list(yaml.safe_load_all(_rendered("kubeadm-ha-vip-v1beta3")["cp-1"]))
    assert {doc["apiVersion"] for doc in docs} == {"kubeadm.k8s.io/v1beta3"}
    assert docs[0]["nodeRegistration"]["kubeletExtraArgs"] == {"node-ip": "10.20.0.11"}


def test_kubeadm_ha_joins_control_planes_through_the_endpoint_with_the_certificate_key() -> None:
    rendered = _rendered("kubeadm-ha-lb")
    init = list(yaml.safe_load_all(rendered["cp-1"]))
    join = yaml.safe_load(rendered["cp-2"])
    worker = yaml.safe_load(rendered["w-1"])
    assert init[1]["controlPlaneEndpoint"] == "lb.edge.example:8443"
    assert init[0]["certificateKey"] == CASES["secrets"]["kubernetes_certificate_key"]
    assert init[0]["skipPhases"] == ["addon/kube-proxy"]  # cilium replaces kube-proxy
    assert join["discovery"]["bootstrapToken"]["apiServerEndpoint"] == "lb.edge.example:8443"
    assert join["controlPlane"]["certificateKey"] == CASES["secrets"]["kubernetes_certificate_key"]
    assert "controlPlane" not in worker


def test_k3s_ha_first_server_inits_etcd_others_join_through_the_vip() -> None:
    rendered = {name: yaml.safe_load(text) for name, text in _rendered("k3s-ha").items()}
    assert rendered["cp-1"]["cluster-init"] is True and "server" not in rendered["cp-1"]
    for node in ("cp-2", "cp-3", "gpu-1"):
        assert rendered[node]["server"] == "https://10.20.0.10:6443"
        assert "cluster-init" not in rendered[node]
    assert "10.20.0.10" in rendered["cp-1"]["tls-san"]
    for config in rendered.values():
        endpoint = config["container-runtime-endpoint"]
        assert endpoint == "unix:///run/containerd/containerd.sock"


def test_k3s_single_server_has_neither_cluster_init_nor_server() -> None:
    server = yaml.safe_load(_rendered("k3s-single")["cp-1"])
    assert "cluster-init" not in server and "server" not in server
    assert server["flannel-backend"] == "vxlan"


@pytest.mark.parametrize(
    ("variables", "versions", "nodes", "message"),
    [
        ({"kubernetes_distribution": "kubeadm"}, {"kubernetes": "v1.31.4"},
         ["control-plane", "control-plane", "control-plane"],
         "kubeadm with several control planes needs a stable API endpoint"),
        ({"kubernetes_distribution": "k3s"}, {"k3s": "v1.31.4+k3s1"},
         ["control-plane", "control-plane"], "etcd keeps quorum only with an odd number"),
        ({"kubernetes_distribution": "k3s"}, {"k3s": "v1.31.4+k3s1"}, ["worker"],
         "no node with role control-plane"),
    ],
)
def test_topologies_that_cannot_work_are_refused(
    variables: dict[str, str], versions: dict[str, str], nodes: list[str], message: str
) -> None:
    site = _site([{"name": f"n-{i}", "address": f"10.20.0.{i + 1}", "roles": [role]}
                  for i, role in enumerate(nodes)])
    with pytest.raises(BadInput, match=message):
        plan_nodes(site, cluster_settings(variables, versions))


@pytest.mark.parametrize(
    ("variables", "versions", "message"),
    [
        ({"kubernetes_distribution": "k3s"}, {"k3s": "v1.31.4"}, "not a k3s release version"),
        ({"kubernetes_distribution": "kubeadm"}, {"kubernetes": "v1.31.4+k3s1"},
         "not a kubeadm release version"),
        ({"kubernetes_distribution": "kubeadm", "kubernetes_cni": "flannel"},
         {"kubernetes": "v1.31.4"}, r"'flannel' does not go with kubeadm .*; use calico or "
                                    "cilium"),
        ({"kubernetes_distribution": "k3s", "kubernetes_cni": "calico"},
         {"k3s": "v1.31.4+k3s1"}, r"'calico' does not go with k3s \(k3s runs its own "
                                  r"flannel here\); use flannel"),
        ({"kubernetes_distribution": "k3s", "kubernetes_cni": "cilium"},
         {"k3s": "v1.31.4+k3s1"}, "'cilium' does not go with k3s"),
        ({"kubernetes_distribution": "kubeadm", "kubernetes_cni": "weave"},
         {"kubernetes": "v1.31.4"}, "'weave' is not known; use flannel with k3s, calico or "
                                    "cilium with kubeadm"),
        ({"kubernetes_distribution": "rke2"}, {}, "use one of k3s, kubeadm"),
        ({"kubernetes_distribution": "kubeadm"}, {"kubernetes": "v1.20.1"}, "before v1.22"),
    ],
)
def test_settings_that_cannot_work_are_refused(
    variables: dict[str, str], versions: dict[str, str], message: str
) -> None:
    with pytest.raises(BadInput, match=message):
        cluster_settings(variables, versions)


def test_kube_vip_manifest_holds_the_vip() -> None:
    text = render("kube-vip.yaml.j2", {
        "kubernetes_api_vip": "10.20.0.10", "kubernetes_kube_vip_image": "ghcr.io/kube-vip/x:1",
        "kubernetes_kube_vip_interface": "eth0",
        "kubernetes_kube_vip_kubeconfig": "/etc/kubernetes/admin.conf"})
    pod = yaml.safe_load(text)
    env = {item["name"]: item["value"] for item in pod["spec"]["containers"][0]["env"]}
    assert (env["address"], env["vip_interface"], env["cp_enable"]) == ("10.20.0.10", "eth0",
                                                                       "true")
    assert pod["spec"]["hostNetwork"] is True
