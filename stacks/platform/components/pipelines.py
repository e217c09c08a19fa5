"""Pipelines: Argo Workflows by default, Kubeflow Pipelines when the blueprint asks."""

from __future__ import annotations

from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from stacks.platform.common import (
    ComponentNamespace,
    Platform,
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
            # Kubeflow Pipelines ships kustomize manifests, not a chart; this takes the
            # release's rendered platform-agnostic manifest from the catalogue's source.
            # TODO: its images cannot take the registry override until the bundle renders
            # the manifest with the site's registry; verify on a connected cluster.
            base = platform.config.charts["kubeflow-pipelines"].repository_url
            version = platform.config.charts["kubeflow-pipelines"].version
            kubeflow = k8s.yaml.v2.ConfigFile(
                f"{name}-kubeflow", file=f"{base}/{version}/kfp-platform-agnostic.yaml",
                opts=pulumi.ResourceOptions(parent=self, depends_on=[s3]))
            # Its UI, behind the login as every endpoint; the manifest installs into its own
            # namespace `kubeflow`, which gets no quota or policy of ours.
            protected_ingress(platform, "kubeflow-pipelines", KUBEFLOW_NAMESPACE,
                              platform.host("pipelines"), "ml-pipeline-ui", 80, self,
                              [kubeflow])
        platform.outputs["pipelines_url"] = f"https://{platform.host('pipelines')}"
        self.register_outputs({"namespace": space.name})
