"""KServe in raw deployment mode: plain Deployments and Services, no Knative, no Istio."""

from __future__ import annotations

from typing import Any

import pulumi

from stacks.platform.common import (
    ComponentNamespace,
    Platform,
    protected_ingress,
    split_image,
    type_token,
)

NAMESPACE = "edge-serving"
# KServe names a raw-mode predictor's Service `<name>-predictor`, port 80.
# TODO: verify the Service name and port against KServe v0.15 on a cluster.
PREDICTOR_PORT = 80


def model_host(platform: Platform, model: str) -> str:
    """Where a published model answers: KServe's default domain template, so the
    InferenceService's URL and the platform's ingress name the same host."""
    return platform.host(f"{model}-{NAMESPACE}")


def kserve_values(platform: Platform) -> dict[str, Any]:
    def image(role: str) -> tuple[str, str]:
        registry, path, tag = split_image(platform.image("kserve", role))
        return f"{registry}/{path}", tag

    controller, tag = image("controller")
    agent, agent_tag = image("agent")
    router, router_tag = image("router")
    initializer, initializer_tag = image("storage_initializer")
    # KServe's own per-model Ingress carries no annotations of ours, so it would publish
    # every model without the login: it is switched off, and the platform writes each
    # published model's ingress behind oauth2-proxy instead (Serving.publish).
    gateway = {"ingressGateway": {"className": platform.config.options.access.ingress_class},
               "domain": platform.domain, "urlScheme": "https",
               "disableIngressCreation": True}
    return {"kserve": {
        "controller": {"deploymentMode": "RawDeployment", "image": controller, "tag": tag,
                       "gateway": gateway,
                       "imagePullSecrets": platform.pull_secrets()},
        "agent": {"image": agent, "tag": agent_tag},
        "router": {"image": router, "tag": router_tag},
        "storage": {"image": initializer, "tag": initializer_tag},
        "servingruntime": {"modelNamespace": NAMESPACE},
    }}


class Serving(pulumi.ComponentResource):
    def __init__(self, name: str, platform: Platform,
                 opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__(type_token("Serving"), name, None, opts)
        self.platform = platform
        space = ComponentNamespace(f"{name}-space", platform, "serving",
                                   pulumi.ResourceOptions(parent=self))
        crds = platform.release(f"{name}-kserve-crd", "kserve-crd", space.name, {}, self,
                                [space])
        # KServe's webhooks take certificates from cert-manager.
        self.kserve = platform.release(f"{name}-kserve", "kserve", space.name,
                                       kserve_values(platform), self,
                                       [crds, *platform.issuer_ready])
        for model in platform.config.options.serving.published_models:
            self.publish(model)
        self.register_outputs({"namespace": space.name})

    def publish(self, model: str) -> None:
        """A model's endpoint, behind the login like every other endpoint."""
        protected_ingress(self.platform, f"model-{model}", NAMESPACE,
                          model_host(self.platform, model), f"{model}-predictor",
                          PREDICTOR_PORT, self, [self.kserve])
