"""KServe in raw deployment mode: plain Deployments and Services, no Knative, no Istio."""

from __future__ import annotations

from typing import Any

import pulumi

from stacks.platform.common import ComponentNamespace, Platform, split_image, type_token


def kserve_values(platform: Platform) -> dict[str, Any]:
    def image(role: str) -> tuple[str, str]:
        registry, path, tag = split_image(platform.image("kserve", role))
        return f"{registry}/{path}", tag

    controller, tag = image("controller")
    agent, agent_tag = image("agent")
    router, router_tag = image("router")
    initializer, initializer_tag = image("storage_initializer")
    return {"kserve": {
        "controller": {"deploymentMode": "RawDeployment", "image": controller, "tag": tag,
                       "gateway": {"ingressGateway": {
                           "className": platform.config.options.access.ingress_class}},
                       "imagePullSecrets": platform.pull_secrets()},
        "agent": {"image": agent, "tag": agent_tag},
        "router": {"image": router, "tag": router_tag},
        "storage": {"image": initializer, "tag": initializer_tag},
        "servingruntime": {"modelNamespace": "edge-serving"},
    }}


class Serving(pulumi.ComponentResource):
    def __init__(self, name: str, platform: Platform,
                 opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__(type_token("Serving"), name, None, opts)
        space = ComponentNamespace(f"{name}-space", platform, "serving",
                                   pulumi.ResourceOptions(parent=self))
        crds = platform.release(f"{name}-kserve-crd", "kserve-crd", space.name, {}, self,
                                [space])
        # KServe's webhooks take certificates from cert-manager.
        platform.release(f"{name}-kserve", "kserve", space.name, kserve_values(platform),
                         self, [crds, *platform.issuer_ready])
        self.register_outputs({"namespace": space.name})
