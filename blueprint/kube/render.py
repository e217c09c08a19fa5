"""Rendering the kubernetes role's config templates from Python, exactly as the role does.

The role renders `roles/kubernetes/templates/*.j2` with Ansible's template module (Jinja2 with
trim_blocks); this module renders the same files with the same settings, so golden-file tests
pin what a node gets, and `plan` can show it without a node.
"""

from __future__ import annotations

from typing import Any

import jinja2

from blueprint.kube.topology import ClusterSettings, NodePlan
from blueprint.paths import ROLES_DIR

TEMPLATES = ROLES_DIR / "kubernetes" / "templates"
# What the first control plane applies for each pod network of kubeadm, besides the
# release files of the artifact catalogue.
CNI_TEMPLATES = {"calico": "calico-resources.yaml.j2", "cilium": "cilium-values.yaml.j2"}


def _environment() -> jinja2.Environment:
    # Ansible's template module: trim_blocks on, lstrip_blocks off, undefined is an error.
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATES)),
        trim_blocks=True,
        lstrip_blocks=False,
        keep_trailing_newline=True,
        undefined=jinja2.StrictUndefined,
        autoescape=False,
    )


def template_variables(
    settings: ClusterSettings, node_name: str, plan: NodePlan, secrets: dict[str, str]
) -> dict[str, Any]:
    """The variables the role's templates read for one node (role variable names)."""
    return {
        "inventory_hostname": node_name,
        "kubernetes_node": plan.as_variable(),
        "kubernetes_version": settings.version,
        "kubernetes_kubeadm_api": settings.kubeadm_api,
        "kubernetes_cni": settings.cni,
        "kubernetes_cluster_name": settings.cluster_name,
        "kubernetes_pod_cidr": settings.pod_cidr,
        "kubernetes_service_cidr": settings.service_cidr,
        "kubernetes_containerd_socket": settings.containerd_socket,
        "kubernetes_api_vip": settings.api_vip,
        **secrets,
    }


def render(template: str, variables: dict[str, Any]) -> str:
    """Render one template of the role (`k3s-config.yaml.j2`, `kubeadm-config.yaml.j2`, ...)."""
    return _environment().get_template(template).render(**variables)


def node_config(
    settings: ClusterSettings, node_name: str, plan: NodePlan, secrets: dict[str, str]
) -> str:
    """The config file one node gets: k3s's config.yaml or kubeadm's init/join config."""
    template = ("k3s-config.yaml.j2" if settings.distribution == "k3s"
                else "kubeadm-config.yaml.j2")
    return render(template, template_variables(settings, node_name, plan, secrets))


def cni_config(settings: ClusterSettings, node_name: str, plan: NodePlan) -> str:
    """What the first control plane renders for kubeadm's pod network: Calico's Installation
    and APIServer resources, or Cilium's Helm values."""
    return render(CNI_TEMPLATES[settings.cni], template_variables(settings, node_name, plan, {}))
