"""Pipelines: Argo Workflows by default, Kubeflow Pipelines when the blueprint asks."""

from __future__ import annotations

import copy
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from stacks.platform.common import (
    ComponentNamespace,
    Platform,
    canonical_image,
    override_registry,
    protected_ingress,
    registry_repository_tag,
    type_token,
)
from stacks.platform.components.storage import BUCKETS, S3_SECRET, Storage

NAMESPACE = "edge-pipelines"
KUBEFLOW_NAMESPACE = "kubeflow"
WORKFLOW_ACCOUNT = "argo-workflow"
# The image of validate's one-step workflow (options.images), when the blueprint pins one.
CHECK_IMAGE = "pipeline_check"


# Where each kind of object the Kubeflow Pipelines manifest applies keeps its pod spec.
POD_SPECS: dict[str, tuple[str, ...]] = {
    "Pod": ("spec",),
    **{kind: ("spec", "template", "spec")
       for kind in ("Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job")},
    "CronJob": ("spec", "jobTemplate", "spec", "template", "spec"),
}
# Kubeflow Pipelines' controllers name other images in flags and variables, not only in
# `image` (Argo's `--executor-image`, the API server's driver and launcher images).
# TODO: check these spellings against the rendered 2.4.1 manifest on a connected machine.
IMAGE_FLAG_SUFFIX = "-image"
IMAGE_ENV_SUFFIX = "_IMAGE"


def _override(ref: Any, registry: str | None) -> Any:
    if not isinstance(ref, str) or not ref or not registry:
        return ref
    return override_registry(canonical_image(ref), registry)


def _override_container(container: dict[str, Any], registry: str | None) -> None:
    if "image" in container:
        container["image"] = _override(container["image"], registry)
    args = list(container.get("args") or [])
    for index, arg in enumerate(args):
        if not isinstance(arg, str) or not arg.startswith("--"):
            continue
        flag, equals, value = arg.partition("=")
        if not flag.endswith(IMAGE_FLAG_SUFFIX):
            continue
        if equals:
            args[index] = f"{flag}={_override(value, registry)}"
        elif index + 1 < len(args):
            args[index + 1] = _override(args[index + 1], registry)
    if args:
        container["args"] = args
    for variable in container.get("env") or []:
        if str(variable.get("name", "")).endswith(IMAGE_ENV_SUFFIX) and "value" in variable:
            variable["value"] = _override(variable["value"], registry)


def with_site_registry(kind: str, obj: dict[str, Any], platform: Platform) -> dict[str, Any]:
    """A copy of one object of a release manifest whose every image comes from the site's
    registry (path and tag kept) and whose pods name the site's pull secret."""
    path = POD_SPECS.get(kind)
    if path is None:
        return obj
    changed = copy.deepcopy(obj)
    spec: Any = changed
    for key in path:
        spec = spec.get(key) if isinstance(spec, dict) else None
    if not isinstance(spec, dict):
        return obj
    registry = platform.config.registry.override
    for group in ("initContainers", "containers", "ephemeralContainers"):
        for container in spec.get(group) or []:
            _override_container(container, registry)
    if platform.pull_secret:
        secrets = [item for item in spec.get("imagePullSecrets") or []
                   if item.get("name") != platform.pull_secret]
        spec["imagePullSecrets"] = [*secrets, {"name": platform.pull_secret}]
    return changed


def site_registry_transform(platform: Platform) -> pulumi.ResourceTransform:
    """A transform for a release manifest's objects: `with_site_registry` on each."""
    # The pull secret with the site's login can only be written into the manifest's own
    # namespace once the manifest has made it; waiting for the pods to be ready first would
    # wait for ever on images they cannot pull yet. Their pulls are retried and succeed
    # once the secret is there.
    # TODO: verify on a cluster with a registry that needs a login.
    late_secret = bool(platform.config.registry_auth and platform.pull_secret)

    def transform(args: pulumi.ResourceTransformArgs) -> pulumi.ResourceTransformResult:
        kind = args.type_.rsplit(":", 1)[-1]
        props = with_site_registry(kind, dict(args.props), platform)
        if late_secret and kind in POD_SPECS:
            props = copy.deepcopy(props)
            metadata = props.setdefault("metadata", {})
            metadata["annotations"] = {**(metadata.get("annotations") or {}),
                                       "pulumi.com/skipAwait": "true"}
        return pulumi.ResourceTransformResult(props=props, opts=args.opts)

    return transform


def argo_values(platform: Platform, s3_endpoint: str) -> dict[str, Any]:
    def image(role: str) -> dict[str, str]:
        return registry_repository_tag(platform.image("argo-workflows", role))

    controller, server, executor = image("controller"), image("server"), image("executor")
    return {
        "fullnameOverride": "argo-workflows",
        "images": {"pullSecrets": platform.pull_secrets()},
        "controller": {"image": controller, "workflowNamespaces": [NAMESPACE],
                       "workflowDefaults": {"spec": {"serviceAccountName": WORKFLOW_ACCOUNT}}},
        "executor": {"image": executor},
        "server": {"image": server, "authModes": ["server"],
                   "ingress": {"enabled": False}},
        # Workflows run as this account, which may report their results to the controller
        # (the chart's workflow role); without it a step's pod cannot finish.
        # TODO: verify the role's rules against the rendered chart on a connected machine.
        "workflow": {"serviceAccount": {"create": True, "name": WORKFLOW_ACCOUNT},
                     "rbac": {"create": True}},
        "artifactRepository": {"s3": {
            "bucket": BUCKETS["pipelines"], "endpoint": s3_endpoint.removeprefix("http://"),
            "insecure": True,
            "accessKeySecret": {"name": S3_SECRET, "key": "AWS_ACCESS_KEY_ID"},
            "secretKeySecret": {"name": S3_SECRET, "key": "AWS_SECRET_ACCESS_KEY"}}},
        "useStaticCredentials": True,
    }


class Pipelines(pulumi.ComponentResource):
    def __init__(self, name: str, platform: Platform, storage: Storage,
                 opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__(type_token("Pipelines"), name, None, opts)
        space = ComponentNamespace(f"{name}-space", platform, "pipelines",
                                   pulumi.ResourceOptions(parent=self))
        s3 = storage.s3_secret(f"{name}-s3", space.name, BUCKETS["pipelines"], self, [space])
        if platform.config.options.pipelines.engine == "argo-workflows":
            release = platform.release(f"{name}-argo", "argo-workflows", space.name,
                                       argo_values(platform, storage.endpoint), self, [s3])
            protected_ingress(platform, "argo", space.name, platform.host("pipelines"),
                              "argo-workflows-server", 2746, self, [release])
            # What validate's pipelines check needs besides the API (program.py adds it).
            platform.outputs["pipelines_namespace"] = NAMESPACE
            if CHECK_IMAGE in platform.config.options.images:
                platform.outputs["pipelines_check_image"] = platform.own_image(CHECK_IMAGE)
        else:
            self._kubeflow(name, platform, s3)
        platform.outputs["pipelines_url"] = f"https://{platform.host('pipelines')}"
        self.register_outputs({"namespace": space.name})

    def _kubeflow(self, name: str, platform: Platform, s3: pulumi.Resource) -> None:
        # Kubeflow Pipelines ships kustomize manifests, not a chart; this takes the
        # release's rendered platform-agnostic manifest from the catalogue's source. Each
        # of its objects passes through the transform, which applies the registry override
        # and pull secret; the transform runs as the provider renders the manifest, which
        # the mock runtime never does.
        base = platform.config.charts["kubeflow-pipelines"].repository_url
        version = platform.config.charts["kubeflow-pipelines"].version
        kubeflow = k8s.yaml.v2.ConfigFile(
            f"{name}-kubeflow", file=f"{base}/{version}/kfp-platform-agnostic.yaml",
            opts=pulumi.ResourceOptions(parent=self, depends_on=[s3],
                                        transforms=[site_registry_transform(platform)]))

        # The manifest makes its own namespace `kubeflow`; it gets the pipelines' quota,
        # default requests and policy once it exists. Its cache server's admission webhook
        # (pod port 8443) is called by the API server from the node network.
        # TODO: verify the webhook's pod port against the rendered manifest.
        ComponentNamespace(f"{name}-kubeflow-space", platform, "pipelines",
                           pulumi.ResourceOptions(parent=self), made_by=kubeflow,
                           namespace=KUBEFLOW_NAMESPACE, open_ports=(8443,))

        # Its UI, behind the login as every endpoint.
        protected_ingress(platform, "kubeflow-pipelines", KUBEFLOW_NAMESPACE,
                          platform.host("pipelines"), "ml-pipeline-ui", 80, self, [kubeflow])
