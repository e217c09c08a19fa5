"""Every Kubernetes object the product writes itself, in every variation of the site,
validated against the OpenAPI schema of the blueprint's Kubernetes version.

kubernetes-validate ships the upstream schemas; strict mode refuses unknown fields. Helm
releases (the charts' own objects) are never rendered here, and custom resources
(cert-manager, MetalLB, CloudNativePG, Rook's bucket claims) have no schema in Kubernetes'
OpenAPI: both are listed as such, and any other type the program registers is validated.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import kubernetes_validate
import pytest
from platform_helpers import Checked, make_config, storage_kinds

from blueprint.platform.config import PlatformConfig
from blueprint.platform.preview import ProgramRun

Runs = Callable[[PlatformConfig], ProgramRun]

# Types whose objects no Kubernetes schema describes: charts and custom resources.
NOT_IN_KUBERNETES_SCHEMA = {
    "kubernetes:helm.sh/v3:Release",
    "kubernetes:yaml/v2:ConfigFile",
    "kubernetes:cert-manager.io/v1:Certificate",
    "kubernetes:cert-manager.io/v1:ClusterIssuer",
    "kubernetes:metallb.io/v1beta1:IPAddressPool",
    "kubernetes:metallb.io/v1beta1:L2Advertisement",
    "kubernetes:postgresql.cnpg.io/v1:Cluster",
    "kubernetes:objectbucket.io/v1alpha1:ObjectBucketClaim",
}


def _external_sso_worker_supernodes_mig(layer: dict[str, Any]) -> None:
    options = layer["options"]
    options["access"] = {"sso": "external", "sso_groups": ["ml-team"]}
    options["flower"] = {"supernode_roles": ["gpu", "worker"]}
    options["gpu"] = {"sharing": "mig", "mig_strategy": "mixed"}
    options["registry"] = {"override": "registry.site.lan:5000"}
    options["serving"] = {"published_models": ["iris"]}
    options["pipelines"] = {"engine": "kubeflow-pipelines"}


HUB = {"domain": "edge1.example.net", "load_balancer_addresses": ["10.20.0.200-10.20.0.220"],
       "flower": {"role": "hub", "control_from": ["10.20.0.0/24", "fd00::/64"]},
       "sso": {"issuer_url": "https://login.example.net", "client_id": "edge1"}}
MEMBER = {"domain": "edge2.example.net", "load_balancer_addresses": ["10.30.0.200/29"],
          "flower": {"role": "member", "superlink_address": "flower.edge1.example.net:9092"}}
NODES = [{"name": "cp-1", "roles": ["control-plane"], "address": "10.20.0.11"},
         {"name": "gpu-1", "roles": ["worker", "gpu"], "address": "10.20.0.21"},
         {"name": "work-1", "roles": ["worker"], "address": "10.20.0.31"},
         {"name": "store-1", "roles": ["worker", "storage"], "address": "10.20.0.41"}]
AUTH = '{"auths": {"registry.site.lan:5000": {"auth": "c3RhbmQ6aW4="}}}'

VARIATIONS: dict[str, Callable[[], PlatformConfig]] = {
    "ai-edge": make_config,
    "storage kinds and ceph-rgw": lambda: make_config(storage_kinds, nodes=NODES),
    "external sso, worker supernodes, mig, registry login": lambda: make_config(
        _external_sso_worker_supernodes_mig, site=HUB, nodes=NODES, registry_auth=AUTH),
    "member site": lambda: make_config(site=MEMBER),
}


@pytest.mark.parametrize("variation", sorted(VARIATIONS))
def test_own_objects_match_the_kubernetes_schema_of_the_blueprint(
        program_runs: Runs, checked: Checked, variation: str) -> None:
    config = VARIATIONS[variation]()
    run = program_runs(config)
    for item in run.resources:
        if not item.custom or item.type.startswith("random:"):
            continue
        if item.type in NOT_IN_KUBERNETES_SCHEMA:
            continue
        body = {key: value for key, value in item.inputs.items() if key != "__defaults"}
        try:
            kubernetes_validate.validate(body, config.kubernetes_version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{variation}: {item.name} ({item.type}): {exc.message} at "
                        f"{'.'.join(str(part) for part in exc.path)}")
        checked.that(True)


def test_every_kind_the_product_writes_is_validated(program_runs: Runs,
                                                    checked: Checked) -> None:
    """The sweep above reaches these kinds; one missing would mean a variation lost it."""
    seen = {item.type.split(":", 1)[1] for name in VARIATIONS
            for item in program_runs(VARIATIONS[name]()).resources
            if item.custom and item.type.startswith("kubernetes:")
            and item.type not in NOT_IN_KUBERNETES_SCHEMA}
    expected = {"core/v1:Namespace", "core/v1:ResourceQuota", "core/v1:LimitRange",
                "networking.k8s.io/v1:NetworkPolicy", "networking.k8s.io/v1:Ingress",
                "apps/v1:Deployment", "apps/v1:DaemonSet", "core/v1:Service",
                "core/v1:ConfigMap", "core/v1:PersistentVolumeClaim",
                "storage.k8s.io/v1:StorageClass", "core/v1:Secret", "core/v1:ServiceAccount",
                "rbac.authorization.k8s.io/v1:Role",
                "rbac.authorization.k8s.io/v1:RoleBinding"}
    checked.that(seen == expected, f"new: {sorted(seen - expected)}, "
                                   f"gone: {sorted(expected - seen)}")


def test_schema_check_catches_a_wrong_object(checked: Checked) -> None:
    bad = {"apiVersion": "v1", "kind": "ResourceQuota", "metadata": {"name": "q"},
           "spec": {"hardd": {"pods": "1"}}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(bad, make_config().kubernetes_version, strict=True)
    checked.that(True)
