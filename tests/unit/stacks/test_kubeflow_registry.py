"""Kubeflow Pipelines' manifest objects take the site's registry, pull secret, quota and
policy like every chart.

Stand-in: the release manifest cannot be fetched here and the mock runtime never renders a
ConfigFile, so the transform is checked on objects shaped the way that manifest writes them
(image fields, Argo's `--executor-image` flag, the API server's `*_IMAGE` variables), and
the program run is checked for handing the transform to the ConfigFile.
"""

from __future__ import annotations

import copy
from typing import Any

import pulumi
import pulumi_kubernetes as k8s
import pytest
from platform_helpers import Checked, make_config

from blueprint.platform.preview import run_program
from stacks.platform.common import Platform, canonical_image
from stacks.platform.components import pipelines

OVERRIDE = "registry.site.lan:5000"


def _deployment(name: str, containers: list[dict[str, Any]],
                init: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {"containers": containers}
    if init:
        spec["initContainers"] = init
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": name, "namespace": "kubeflow"},
            "spec": {"template": {"spec": spec}}}


# (kind, object): every spelling of an image the manifest is known to use.
OBJECTS: list[tuple[str, dict[str, Any]]] = [
    ("Deployment", _deployment("ml-pipeline", [{
        "name": "ml-pipeline-api-server", "image": "ghcr.io/kubeflow/kfp-api-server:2.4.1",
        "env": [{"name": "V2_DRIVER_IMAGE", "value": "ghcr.io/kubeflow/kfp-driver:2.4.1"},
                {"name": "V2_LAUNCHER_IMAGE",
                 "value": "ghcr.io/kubeflow/kfp-launcher:2.4.1"},
                {"name": "OBJECTSTORECONFIG_HOST", "value": "minio-service"}]}])),
    ("Deployment", _deployment("workflow-controller", [{
        "name": "workflow-controller",
        "image": "gcr.io/ml-pipeline/workflow-controller:v3.4.17-license-compliance",
        "args": ["--configmap", "workflow-controller-configmap", "--executor-image",
                 "gcr.io/ml-pipeline/argoexec:v3.4.17-license-compliance"]}])),
    ("Deployment", _deployment("mysql", [{"name": "mysql", "image": "mysql:8.0.26"}],
                               init=[{"name": "wait", "image": "busybox"}])),
    ("StatefulSet", {"kind": "StatefulSet", "spec": {"template": {"spec": {"containers": [
        {"name": "store", "image": "gcr.io/tfx-oss-public/ml_metadata_store_server:1.14.0",
         "args": ["--proxy-image=gcr.io/ml-pipeline/metadata-envoy:2.4.1"]}]}}}}),
    ("CronJob", {"kind": "CronJob", "spec": {"jobTemplate": {"spec": {"template": {"spec": {
        "containers": [{"name": "clean", "image": "kubeflow/cleaner@sha256:" + "a" * 64}]}}}}}}),
    ("Pod", {"kind": "Pod", "spec": {"containers": [
        {"name": "p", "image": "localhost:5000/team/app:1"}]}}),
]


# References without a registry host, as the runtime completes them.
SHORT_NAMES = {"mysql:8.0.26": "library/mysql:8.0.26", "busybox": "library/busybox:latest",
               "kubeflow/cleaner@sha256:" + "a" * 64: "kubeflow/cleaner@sha256:" + "a" * 64}


@pytest.mark.parametrize(("ref", "full"), [
    ("mysql:8.0.26", "docker.io/library/mysql:8.0.26"),
    ("busybox", "docker.io/library/busybox:latest"),
    ("minio/minio:RELEASE.2019", "docker.io/minio/minio:RELEASE.2019"),
    ("gcr.io/ml-pipeline/frontend:2.4.1", "gcr.io/ml-pipeline/frontend:2.4.1"),
    ("localhost/app", "localhost/app:latest"),
    ("registry.lan:5000/a/b@sha256:" + "0" * 64, "registry.lan:5000/a/b@sha256:" + "0" * 64),
])
def test_short_references_are_spelled_out_as_the_runtime_reads_them(ref: str,
                                                                   full: str) -> None:
    assert canonical_image(ref) == full


def _images(obj: Any) -> list[str]:
    """Every image an object names, in a field, a flag or a variable."""
    found: list[str] = []
    if isinstance(obj, dict):
        for key, value in obj.items():
            if key == "image" and isinstance(value, str):
                found.append(value)
            elif key == "env":
                found.extend(item["value"] for item in value
                             if item["name"].endswith("_IMAGE"))
            elif key == "args":
                for index, arg in enumerate(value):
                    if arg.startswith("--") and arg.partition("=")[0].endswith("-image"):
                        found.append(arg.partition("=")[2] or value[index + 1])
            else:
                found.extend(_images(value))
    elif isinstance(obj, list):
        for item in obj:
            found.extend(_images(item))
    return found


def _platform(registry: dict[str, Any], registry_auth: str | None = None) -> Platform:
    def edit(layer: dict[str, Any]) -> None:
        layer["options"]["pipelines"] = {"engine": "kubeflow-pipelines"}
        layer["options"]["registry"] = registry

    return Platform(config=make_config(edit, registry_auth=registry_auth))


def _transformed(platform: Platform, kind: str, obj: dict[str, Any]) -> dict[str, Any]:
    transform = pipelines.site_registry_transform(platform)
    result = transform(pulumi.ResourceTransformArgs(
        custom=True, type_=f"kubernetes:apps/v1:{kind}", name=kind.lower(),
        props=copy.deepcopy(obj), opts=pulumi.ResourceOptions()))
    assert isinstance(result, pulumi.ResourceTransformResult)
    return dict(result.props)


@pytest.mark.parametrize(("kind", "obj"), OBJECTS, ids=[kind for kind, _ in OBJECTS])
def test_every_image_of_the_manifest_comes_from_the_site_registry(
        kind: str, obj: dict[str, Any]) -> None:
    platform = _platform({"override": OVERRIDE, "pull_secret": "site-registry"})
    changed = _transformed(platform, kind, obj)
    before, after = _images(obj), _images(changed)
    assert before and len(after) == len(before)
    for old, new in zip(before, after, strict=True):
        assert new.startswith(OVERRIDE + "/"), new
        # Path and tag (or digest) kept; Docker's implied defaults spelled out.
        checked_path = SHORT_NAMES.get(old) or old.split("/", 1)[1]
        assert new == f"{OVERRIDE}/{checked_path}", (old, new)
    pod = pipelines.POD_SPECS[kind]
    spec: Any = changed
    for key in pod:
        spec = spec[key]
    assert spec["imagePullSecrets"] == [{"name": "site-registry"}]


def test_without_an_override_the_manifest_is_left_as_released() -> None:
    platform = _platform({})
    for kind, obj in OBJECTS:
        assert _transformed(platform, kind, obj) == obj


def test_with_a_registry_login_the_pods_are_not_awaited_before_their_pull_secret() -> None:
    auth = '{"auths": {"registry.site.lan:5000": {"auth": "c3RhbmQ6aW4="}}}'
    with_login = _platform({"override": OVERRIDE}, registry_auth=auth)
    changed = _transformed(with_login, *OBJECTS[0])
    assert changed["metadata"]["annotations"] == {"pulumi.com/skipAwait": "true"}
    assert changed["spec"]["template"]["spec"]["imagePullSecrets"] == [
        {"name": "platform-registry"}]
    without = _transformed(_platform({"override": OVERRIDE, "pull_secret": "site-registry"}),
                           *OBJECTS[0])
    assert "annotations" not in without["metadata"]


def test_objects_without_pods_are_left_alone() -> None:
    platform = _platform({"override": OVERRIDE, "pull_secret": "site-registry"})
    config_map = {"kind": "ConfigMap", "data": {"image": "gcr.io/a/b:1"}}
    assert _transformed(platform, "ConfigMap", config_map) == config_map


def test_the_config_file_gets_the_transform_and_kubeflow_its_quota_and_policy(
        checked: Checked, monkeypatch: pytest.MonkeyPatch) -> None:
    handed: list[Any] = []

    class Recording(k8s.yaml.v2.ConfigFile):
        def __init__(self, name: str, *args: Any, **kwargs: Any) -> None:
            handed.extend(kwargs["opts"].transforms or [])
            super().__init__(name, *args, **kwargs)

    monkeypatch.setattr(k8s.yaml.v2, "ConfigFile", Recording)
    platform = _platform({"override": OVERRIDE, "pull_secret": "site-registry"})
    run = run_program(platform.config)
    checked.that(len(handed) == 1)
    deployment = _transformed(platform, *OBJECTS[0])
    image = deployment["spec"]["template"]["spec"]["containers"][0]["image"]
    checked.that(image == f"{OVERRIDE}/kubeflow/kfp-api-server:2.4.1")

    manifest = run.by_name("pipelines-kubeflow")
    kinds = ("core/v1:ResourceQuota", "core/v1:LimitRange", "networking.k8s.io/v1:NetworkPolicy")
    for kind in kinds:
        objects = [item for item in run.by_type(f"kubernetes:{kind}")
                   if item.inputs["metadata"]["namespace"] == "kubeflow"]
        checked.that(bool(objects), kind)
        for item in objects:
            checked.that(manifest.urn in item.dependencies, item.name)
    # The manifest makes the namespace; the stack makes no second one.
    names = [item.inputs["metadata"]["name"] for item in
             run.by_type("kubernetes:core/v1:Namespace")]
    checked.that("kubeflow" not in names)
    webhook = run.by_name("pipelines-kubeflow-space-open-ports").inputs["spec"]
    checked.that(webhook["ingress"][0]["ports"] == [{"port": 8443, "protocol": "TCP"}])
