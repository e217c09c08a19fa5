"""The platform stack program under Pulumi's mocks: what each component registers.

Stand-in: Pulumi's mock runtime replaces the engine and the Kubernetes provider (neither
exists here). Charts are never rendered; the tests see each release's inputs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from platform_helpers import Checked, make_config, releases, storage_kinds, values

from blueprint.platform.config import PlatformConfig
from blueprint.platform.preview import STAND_IN_SECRET, ProgramRun

OVERRIDE = "registry.site.lan:5000"
Runs = Callable[[PlatformConfig], ProgramRun]


def test_every_component_is_registered_as_a_component_resource(
        default_run: ProgramRun, checked: Checked) -> None:
    types = {item.type for item in default_run.resources if not item.custom}
    for name in ("Storage", "Access", "GpuOperator", "Notebooks", "Mlflow", "Pipelines",
                 "Serving", "Flower", "Monitoring", "ComponentNamespace"):
        checked.that(f"edge:platform:{name}" in types, name)


def test_releases_carry_the_pinned_chart_and_version(default_run: ProgramRun,
                                                     checked: Checked) -> None:
    config = make_config()
    seen = {}
    for release in releases(default_run):
        chart = release.inputs["chart"].rsplit("/", 1)[-1]
        seen[chart] = release.inputs["version"]
    for key, chart in config.charts.items():
        if key == "kubeflow-pipelines":
            continue
        checked.that(seen.get(chart.chart) == chart.version, f"{key}: {seen.get(chart.chart)}")


def test_gpu_operator_leaves_driver_to_the_host_and_exports_dcgm(
        default_run: ProgramRun, checked: Checked) -> None:
    gpu = values(default_run, "gpu-operator")
    checked.that(gpu["driver"]["enabled"] is False)
    checked.that(gpu["toolkit"]["enabled"] is False)
    checked.that(gpu["dcgmExporter"]["enabled"] is True)
    checked.that(gpu["devicePlugin"]["config"]["name"] == "gpu-sharing")
    sharing = default_run.by_name("gpu-sharing").inputs["data"]["any"]
    checked.that("replicas: 4" in sharing)


def test_gpu_operator_asks_for_a_service_monitor_only_with_monitoring(
        default_run: ProgramRun, program_runs: Runs, checked: Checked) -> None:
    monitor = values(default_run, "gpu-operator")["dcgmExporter"]["serviceMonitor"]
    checked.that(monitor["enabled"] is True)

    def no_monitoring(layer: dict[str, Any]) -> None:
        layer["options"]["components"]["monitoring"] = False

    gpu = values(program_runs(make_config(no_monitoring)), "gpu-operator")
    checked.that(gpu["dcgmExporter"]["enabled"] is True)
    checked.that(gpu["dcgmExporter"]["serviceMonitor"]["enabled"] is False)


def test_gpu_operator_runs_its_own_driver_without_a_host_gpu_layer_and_mig_when_asked(
        program_runs: Runs, checked: Checked) -> None:
    def mig(layer: dict[str, Any]) -> None:
        layer["options"]["gpu"] = {"sharing": "mig", "mig_strategy": "mixed"}

    config = make_config(mig).model_copy(update={"host_gpu_driver": False})
    gpu = values(program_runs(config), "gpu-operator")
    checked.that(gpu["driver"]["enabled"] is True)
    # Its driver and toolkit images are the blueprint's pins, not the chart's defaults.
    checked.that(gpu["driver"]["image"] == "driver" and gpu["driver"]["version"] == "570.124.06")
    checked.that(gpu["toolkit"]["repository"] == "nvcr.io/nvidia/k8s")
    checked.that(gpu["migManager"]["enabled"] is True)
    checked.that(gpu["mig"]["strategy"] == "mixed")


def test_notebook_profiles_ask_for_gpus_only_on_gpu_images(default_run: ProgramRun,
                                                           checked: Checked) -> None:
    hub = values(default_run, "notebooks-jupyterhub")
    catalog = {item.name: item for item in make_config().options.notebooks.catalog}
    profiles = hub["singleuser"]["profileList"]
    checked.that(len(profiles) == len(catalog))
    for profile in profiles:
        override = profile["kubespawner_override"]
        gpu = catalog[profile["slug"]].gpu
        limits = override.get("extra_resource_limits", {})
        checked.that(("nvidia.com/gpu" in limits) == gpu, profile["slug"])
        checked.that(override["image"] == catalog[profile["slug"]].image)
    checked.that(hub["singleuser"]["storage"]["dynamic"]["storageClass"] == "local-path")
    checked.that(hub["hub"]["config"]["KubeSpawner"]["args"] == ["--LabApp.collaborative=True"])


def test_storage_classes_match_the_options_with_one_default(program_runs: Runs,
                                                            checked: Checked) -> None:
    def classes(layer: dict[str, Any]) -> None:
        layer["options"]["storage"]["classes"] = [
            {"name": "local-path", "kind": "local-path"},
            {"name": "ceph-block", "kind": "rook-ceph", "default": True}]
        layer["options"]["charts"]["rook-ceph"] = {
            "chart": "rook-ceph", "repository": "rook-release",
            "images": {"operator": "docker.io/rook/ceph:v1.17.2"}}
        layer["options"]["charts"]["rook-ceph-cluster"] = {
            "chart": "rook-ceph-cluster", "repository": "rook-release",
            "images": {"ceph": "quay.io/ceph/ceph:v19.2.2"}}
        layer["versions"].update({"rook-ceph": "v1.17.2", "rook-ceph-cluster": "v1.17.2"})

    run = program_runs(make_config(classes))
    found = {item.inputs["metadata"]["name"]: item.inputs for item in
             run.by_type("kubernetes:storage.k8s.io/v1:StorageClass")}
    checked.that(sorted(found) == ["ceph-block", "local-path"])
    defaults = [name for name, body in found.items()
                if body["metadata"]["annotations"]["storageclass.kubernetes.io/is-default-class"]
                == "true"]
    checked.that(defaults == ["ceph-block"])
    hub = values(run, "notebooks-jupyterhub")
    checked.that(hub["singleuser"]["storage"]["dynamic"]["storageClass"] == "ceph-block")


@pytest.mark.parametrize(("storage_nodes", "mons", "size"), [(1, 1, 1), (2, 1, 2), (4, 3, 3)])
def test_ceph_is_sized_by_the_storage_node_count(program_runs: Runs, checked: Checked,
                                                 storage_nodes: int, mons: int,
                                                 size: int) -> None:
    def ceph(layer: dict[str, Any]) -> None:
        layer["options"]["storage"] = {
            "classes": [{"name": "ceph-block", "kind": "rook-ceph", "default": True}],
            "object_store": "ceph-rgw"}
        layer["options"]["charts"]["rook-ceph"] = {
            "chart": "rook-ceph", "repository": "rook-release",
            "images": {"operator": "docker.io/rook/ceph:v1.17.2"}}
        layer["options"]["charts"]["rook-ceph-cluster"] = {
            "chart": "rook-ceph-cluster", "repository": "rook-release",
            "images": {"ceph": "quay.io/ceph/ceph:v19.2.2"}}
        layer["versions"].update({"rook-ceph": "v1.17.2", "rook-ceph-cluster": "v1.17.2"})

    nodes = [{"name": f"s{index}", "roles": ["worker", "storage"]}
             for index in range(storage_nodes)]
    run = program_runs(make_config(ceph, nodes=nodes))
    cluster = values(run, "storage-ceph-cluster")
    checked.that(cluster["cephClusterSpec"]["mon"]["count"] == mons)
    pools = [cluster["cephBlockPools"][0]["spec"]["replicated"],
             cluster["cephObjectStores"][0]["spec"]["dataPool"]["replicated"],
             cluster["cephObjectStores"][0]["spec"]["metadataPool"]["replicated"]]
    for pool in pools:
        checked.that(pool["size"] == size)
        # Rook refuses a one-copy pool unless it is told so.
        checked.that(pool["requireSafeReplicaSize"] is (size > 1))

    # RGW: each consumer claims its bucket; Rook writes the keys into the claim's Secret.
    claims = {item.inputs["metadata"]["namespace"]: item for item in
              run.by_type("kubernetes:objectbucket.io/v1alpha1:ObjectBucketClaim")}
    checked.that(sorted(claims) == ["edge-mlflow", "edge-pipelines"])
    mlflow = claims["edge-mlflow"]
    checked.that(mlflow.inputs["metadata"]["name"] == "object-store-s3")
    checked.that(mlflow.inputs["spec"] == {"bucketName": "mlflow",
                                           "storageClassName": "object-store-bucket"})
    checked.that(run.by_name("storage-bucket-class").urn in mlflow.dependencies)
    bucket_class = run.by_name("storage-bucket-class").inputs
    checked.that(bucket_class["provisioner"] == "edge-storage.ceph.rook.io/bucket")
    checked.that("object_store_secret_key" not in run.output_names)


@pytest.mark.parametrize(("nodes", "replication", "volumes"), [(1, "000", 1), (3, "001", 3)])
def test_seaweedfs_is_sized_by_the_node_count(program_runs: Runs, checked: Checked,
                                              nodes: int, replication: str,
                                              volumes: int) -> None:
    site_nodes = [{"name": f"n{index}", "roles": ["worker", "storage"]}
                  for index in range(nodes)]
    store = values(program_runs(make_config(nodes=site_nodes)), "storage-object-store")
    checked.that(store["master"]["defaultReplication"] == replication)
    checked.that(store["volume"]["replicas"] == volumes)
    checked.that(store["filer"]["s3"]["enableAuth"] is True)
    checked.that(store["filer"]["s3"]["createBuckets"] == [{"name": "mlflow"},
                                                           {"name": "pipelines"}])


def test_mlflow_keeps_runs_in_postgresql_and_artifacts_in_s3(default_run: ProgramRun,
                                                             checked: Checked) -> None:
    mlflow = values(default_run, "mlflow-server")
    backend = mlflow["backendStore"]
    checked.that(backend["postgres"]["enabled"] is True)
    checked.that(backend["postgres"]["host"] == "mlflow-db-rw")
    checked.that("sqlite" not in repr(mlflow) and "memory" not in repr(mlflow).lower())
    checked.that(mlflow["artifactRoot"]["s3"]["enabled"] is True)
    database = default_run.by_name("mlflow-database")
    checked.that(database.inputs["kind"] == "Cluster")
    checked.that(database.inputs["spec"]["storage"]["storageClass"] == "local-path")


def _walk_images(tree: Any, path: str = "") -> list[tuple[str, str]]:
    """(path, image reference) of every image field, however the chart spells it."""
    found: list[tuple[str, str]] = []
    if isinstance(tree, dict):
        name_key = next((key for key in ("repository", "name", "image", "imageName")
                         if isinstance(tree.get(key), str)), None)
        tag_key = next((key for key in ("tag", "version", "imageTag") if key in tree), None)
        if name_key and tag_key:
            name = tree[name_key]
            if "registry" in tree:
                name = f"{str(tree['registry']).rstrip('/')}/{name}"
            if isinstance(tree.get("image"), str) and "repository" in tree:
                name = f"{tree['repository']}/{tree['image']}"  # repository + image + version
            found.append((path, f"{name}:{tree[tag_key]}"))
        for key, item in tree.items():
            if name_key and tag_key and key in (name_key, tag_key, "registry", "repository",
                                                "image"):
                continue
            if key in ("image", "imageName") and isinstance(item, str) and ":" in item:
                found.append((f"{path}.{key}", item))
            else:
                found.extend(_walk_images(item, f"{path}.{key}"))
    elif isinstance(tree, list):
        for index, item in enumerate(tree):
            found.extend(_walk_images(item, f"{path}[{index}]"))
    return found


# Images an operator chart runs through a custom resource, checked on that resource.
OPERAND_IMAGES = {"postgres"}


@pytest.mark.parametrize("storage", ["ai-edge", "nfs, longhorn, rook-ceph"])
def test_registry_override_reaches_every_image_field_of_every_release_and_object(
        program_runs: Runs, checked: Checked, storage: str) -> None:
    def override(layer: dict[str, Any]) -> None:
        if storage != "ai-edge":
            storage_kinds(layer)
        layer["options"]["registry"] = {"override": OVERRIDE, "pull_secret": "site-registry"}

    config = make_config(override)
    run = program_runs(config)
    for release in releases(run):
        images = _walk_images(release.inputs.get("values", {}))
        for path, ref in images:
            checked.that(ref.startswith(OVERRIDE + "/"), f"{release.name}{path}: {ref}")
        # Every image pinned for the chart's version is set in its values, overridden.
        pinned = {OVERRIDE + "/" + ref.split("/", 1)[1] for role, ref in
                  config.charts[_chart_key(config, release.inputs)].images.items()
                  if role not in OPERAND_IMAGES}
        checked.that(pinned <= {ref for _, ref in images},
                     f"{release.name}: {sorted(pinned - {ref for _, ref in images})}")
    for kind in ("apps/v1:Deployment", "apps/v1:DaemonSet"):
        for item in run.by_type(f"kubernetes:{kind}"):
            for container in item.inputs["spec"]["template"]["spec"]["containers"]:
                checked.that(container["image"].startswith(OVERRIDE + "/"), item.name)
            secrets = item.inputs["spec"]["template"]["spec"]["imagePullSecrets"]
            checked.that(secrets == [{"name": "site-registry"}], item.name)
    database = run.by_name("mlflow-database").inputs["spec"]
    checked.that(database["imageName"].startswith(OVERRIDE + "/"))
    if storage != "ai-edge":
        # Longhorn pins no images here: its chart takes the registry as a whole.
        longhorn = values(run, "storage-longhorn")["privateRegistry"]
        checked.that(longhorn == {"registryUrl": OVERRIDE, "registrySecret": "site-registry"})
    hub = values(run, "notebooks-jupyterhub")
    checked.that(hub["imagePullSecrets"] == [{"name": "site-registry"}])
    checked.that(hub["singleuser"]["image"]["pullSecrets"] == ["site-registry"])


def _chart_key(config: PlatformConfig, inputs: dict[str, Any]) -> str:
    chart = inputs["chart"].rsplit("/", 1)[-1]
    return next(key for key, item in config.charts.items() if item.chart == chart)


def _kubeflow_and_a_published_model(layer: dict[str, Any]) -> None:
    layer["options"]["pipelines"] = {"engine": "kubeflow-pipelines"}
    layer["options"]["serving"] = {"published_models": ["iris"]}


@pytest.mark.parametrize(("variation", "protected"), [("ai-edge", 4),
                                                      ("kubeflow, a published model", 5)])
def test_every_endpoint_needs_a_login(program_runs: Runs, checked: Checked, variation: str,
                                      protected: int) -> None:
    edit = _kubeflow_and_a_published_model if variation != "ai-edge" else None
    default_run = program_runs(make_config(edit))
    everything = default_run.by_type("kubernetes:networking.k8s.io/v1:Ingress")
    # Only JupyterHub's API paths skip oauth2-proxy: the hub checks its own tokens there.
    own_login = [item for item in everything
                 if item.inputs["metadata"].get("labels", {}).get("edge.platform/login")
                 == "application"]
    checked.that([item.name for item in own_login] == ["jupyterhub-api"])
    ingresses = [item for item in everything if item not in own_login]
    checked.that(len(ingresses) == protected, str([item.name for item in ingresses]))
    for item in ingresses:
        annotations = item.inputs["metadata"]["annotations"]
        checked.that("oauth2-proxy" in annotations["nginx.ingress.kubernetes.io/auth-url"],
                     item.name)
        checked.that(annotations["cert-manager.io/cluster-issuer"] == "site-ca", item.name)
    # Charts' own ingresses: only the login services themselves are published by a chart.
    for release in releases(default_run):
        ingress = release.inputs.get("values", {}).get("ingress", {})
        if ingress.get("enabled"):
            checked.that(release.name in ("access-dex", "access-oauth2-proxy"), release.name)
    # KServe would make an Ingress per InferenceService without the login: it makes none,
    # and each published model gets one of the platform's protected ingresses instead.
    gateway = values(default_run, "serving-kserve")["kserve"]["controller"]["gateway"]
    checked.that(gateway["disableIngressCreation"] is True)
    checked.that(gateway["ingressGateway"]["className"] == "nginx")
    hub = values(default_run, "notebooks-jupyterhub")["hub"]["config"]
    checked.that(hub["JupyterHub"]["authenticator_class"] == "generic-oauth")
    grafana = values(default_run, "monitoring-prometheus")["grafana"]["grafana.ini"]
    checked.that(grafana["auth.generic_oauth"]["enabled"] is True)
    checked.that(grafana["auth"]["disable_login_form"] is True)


def test_a_published_model_is_served_behind_the_login_at_kserves_host(
        program_runs: Runs, checked: Checked) -> None:
    run = program_runs(make_config(_kubeflow_and_a_published_model))
    model = run.by_name("model-iris")
    spec = model.inputs["spec"]
    host = "iris-edge-serving.edge1.example.net"
    checked.that(model.inputs["metadata"]["namespace"] == "edge-serving")
    checked.that(spec["rules"][0]["host"] == host)
    checked.that(spec["tls"][0]["hosts"] == [host])
    backend = spec["rules"][0]["http"]["paths"][0]["backend"]["service"]
    checked.that(backend == {"name": "iris-predictor", "port": {"number": 80}})
    checked.that(run.by_name("serving-kserve").urn in model.dependencies)
    # KServe's domain template gives the InferenceService the same host.
    gateway = values(run, "serving-kserve")["kserve"]["controller"]["gateway"]
    checked.that(gateway["domain"] == "edge1.example.net")
    checked.that(gateway["urlScheme"] == "https")


def test_monitoring_selects_other_releases_monitors_and_has_gpu_dashboards(
        default_run: ProgramRun, checked: Checked) -> None:
    spec = values(default_run, "monitoring-prometheus")["prometheus"]["prometheusSpec"]
    checked.that(spec["serviceMonitorSelectorNilUsesHelmValues"] is False)
    dashboard = default_run.by_name("monitoring-gpu-dashboard").inputs
    checked.that(dashboard["metadata"]["labels"] == {"grafana_dashboard": "1"})
    checked.that("DCGM_FI_DEV_GPU_UTIL" in dashboard["data"]["gpus.json"])


def test_pipelines_argo_by_default_and_kubeflow_as_option(program_runs: Runs,
                                                          default_run: ProgramRun,
                                                          checked: Checked) -> None:
    checked.that(any(r.inputs["chart"] == "argo-workflows" for r in releases(default_run)))

    def kubeflow(layer: dict[str, Any]) -> None:
        layer["options"]["pipelines"] = {"engine": "kubeflow-pipelines"}

    run = program_runs(make_config(kubeflow))
    checked.that(not any(r.inputs["chart"] == "argo-workflows" for r in releases(run)))
    checked.that(len(run.by_type("kubernetes:yaml/v2:ConfigFile")) == 1)
    ui = run.by_name("kubeflow-pipelines").inputs
    checked.that(ui["spec"]["rules"][0]["host"] == "pipelines.edge1.example.net")
    checked.that("oauth2-proxy" in ui["metadata"]["annotations"][
        "nginx.ingress.kubernetes.io/auth-url"])


def test_serving_is_kserve_raw_mode_after_its_crds_and_cert_manager(
        default_run: ProgramRun, checked: Checked) -> None:
    kserve = default_run.by_name("serving-kserve")
    checked.that(kserve.inputs["values"]["kserve"]["controller"]["deploymentMode"]
                 == "RawDeployment")
    checked.that(default_run.by_name("serving-kserve-crd").urn in kserve.dependencies)
    checked.that(default_run.by_name("access-site-ca").urn in kserve.dependencies)
    checked.that(not any("knative" in r.inputs["chart"] for r in releases(default_run)))


def test_custom_resources_wait_for_their_crds_and_apps_for_storage(
        default_run: ProgramRun, checked: Checked) -> None:
    pairs = [("access-address-pool", "access-metallb"),
             ("access-selfsigned", "access-cert-manager"),
             ("mlflow-database", "mlflow-postgres-operator"),
             ("mlflow-database", "storage-class-local-path"),
             ("notebooks-jupyterhub", "storage-class-local-path"),
             ("flower-superlink-cert", "access-site-ca"),
             ("jupyterhub", "access-site-ca"),
             # The operator makes the DCGM exporter's ServiceMonitor: its CRD comes first.
             ("gpu-operator", "monitoring-prometheus")]
    for dependent, dependency in pairs:
        checked.that(default_run.by_name(dependency).urn in
                     default_run.by_name(dependent).dependencies, f"{dependent}->{dependency}")


def test_each_component_has_its_namespace_quota_and_policy(default_run: ProgramRun,
                                                           checked: Checked) -> None:
    names = {item.inputs["metadata"]["name"] for item in
             default_run.by_type("kubernetes:core/v1:Namespace")}
    expected = {f"edge-{name}" for name in ("storage", "access", "gpu", "notebooks", "mlflow",
                                             "pipelines", "serving", "flower", "monitoring")}
    checked.that(names == expected, str(names))
    for kind in ("core/v1:ResourceQuota", "core/v1:LimitRange"):
        spaces = {item.inputs["metadata"]["namespace"]
                  for item in default_run.by_type(f"kubernetes:{kind}")}
        checked.that(spaces == expected, kind)
    quotas = {item.inputs["metadata"]["namespace"]: item.inputs["spec"]["hard"]
              for item in default_run.by_type("kubernetes:core/v1:ResourceQuota")}
    checked.that(quotas["edge-notebooks"]["requests.nvidia.com/gpu"] == "4")
    checked.that(quotas["edge-mlflow"]["requests.nvidia.com/gpu"] == "0")
    # The operator's device plugin validator takes a GPU on each GPU node it checks.
    checked.that(quotas["edge-gpu"]["requests.nvidia.com/gpu"] != "0")
    for release in releases(default_run):
        checked.that(release.inputs["namespace"] in expected, release.name)


def test_flower_hub_runs_superlink_with_tls_and_supernodes_on_gpu_nodes(
        default_run: ProgramRun, checked: Checked) -> None:
    link = default_run.by_name("flower-superlink").inputs["spec"]["template"]["spec"]
    args = link["containers"][0]["args"]
    checked.that("--ssl-certfile=/certs/tls.crt" in args)
    checked.that(not any("insecure" in arg for arg in args))
    nodes = default_run.by_name("flower-supernode-gpu").inputs["spec"]["template"]["spec"]
    terms = nodes["affinity"]["nodeAffinity"][
        "requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
    checked.that(terms[0]["matchExpressions"][0]["values"] == ["gpu-1"])
    checked.that(nodes["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "1")
    checked.that("--root-certificates=/certs/ca.crt" in nodes["containers"][0]["args"])


def test_flower_member_points_its_supernodes_at_the_hub(program_runs: Runs,
                                                        checked: Checked) -> None:
    site = {"domain": "edge2.example.net", "load_balancer_addresses": ["10.30.0.200/29"],
            "flower": {"role": "member", "superlink_address": "flower.edge1.example.net:9092"}}
    run = program_runs(make_config(site=site))
    checked.that(not [item for item in run.resources if item.name == "flower-superlink"])
    spec = run.by_name("flower-supernode-gpu").inputs["spec"]["template"]["spec"]
    checked.that("--superlink=flower.edge1.example.net:9092" in spec["containers"][0]["args"])


def test_generated_secrets_are_exported_never_set_in_the_site(default_run: ProgramRun,
                                                              checked: Checked) -> None:
    passwords = default_run.by_type("random:index/randomPassword:RandomPassword")
    checked.that(len(passwords) >= 6)
    oauth = values(default_run, "access-oauth2-proxy")["config"]
    checked.that(oauth["clientSecret"] == STAND_IN_SECRET)


def test_network_policies_let_in_only_the_namespace_shared_services_and_clients(
        default_run: ProgramRun, checked: Checked) -> None:
    policies = {(item.inputs["metadata"]["namespace"], item.inputs["metadata"]["name"]):
                item.inputs["spec"] for item in
                default_run.by_type("kubernetes:networking.k8s.io/v1:NetworkPolicy")}

    def sources(namespace: str) -> set[str]:
        rule = policies[(namespace, "same-namespace-and-shared")]["ingress"][0]["from"]
        return {peer["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"]
                for peer in rule if "namespaceSelector" in peer}

    checked.that(sources("edge-notebooks") == {"edge-access", "edge-monitoring"})
    checked.that("edge-notebooks" in sources("edge-mlflow"))
    checked.that("edge-mlflow" in sources("edge-storage"))
    checked.that("edge-notebooks" not in sources("edge-access"))
    entry = policies[("edge-access", "webhooks-and-entry-points")]["ingress"][0]["ports"]
    checked.that({443, 9443} <= {port["port"] for port in entry})
    checked.that(("edge-notebooks", "webhooks-and-entry-points") not in policies)


def test_endpoints_and_generated_secrets_are_stack_outputs(default_run: ProgramRun,
                                                           program_runs: Runs,
                                                           checked: Checked) -> None:
    for name in ("jupyterhub_url", "mlflow_url", "grafana_url", "oidc_issuer_url",
                 "object_store_secret_key", "sso_admin_password", "grafana_admin_password",
                 "flower_superlink_address"):
        checked.that(name in default_run.output_names, name)
    site = {"domain": "edge2.example.net", "load_balancer_addresses": ["10.30.0.200/29"],
            "flower": {"role": "member", "superlink_address": "flower.edge1.example.net:9092"}}
    member = program_runs(make_config(site=site))
    checked.that("flower_superlink_address" not in member.output_names)


@pytest.mark.parametrize(("tree", "ref"), [
    ({"image": {"repository": "quay.io/a/b", "tag": "1"}}, "quay.io/a/b:1"),
    ({"image": {"registry": "quay.io", "repository": "a/b", "tag": "1"}}, "quay.io/a/b:1"),
    ({"image": {"registry": "r.io", "image": "a/b", "tag": "1", "digest": ""}}, "r.io/a/b:1"),
    ({"image": {"name": "quay.io/a/b", "tag": "1"}}, "quay.io/a/b:1"),
    ({"op": {"repository": "nvcr.io/nvidia", "image": "op", "version": "v1"}},
     "nvcr.io/nvidia/op:v1"),
    ({"global": {"registry": "d.io/", "imageName": "c/s", "imageTag": "3"}}, "d.io/c/s:3"),
    ({"profiles": [{"override": {"image": "quay.io/j/n:2"}}]}, "quay.io/j/n:2"),
])
def test_the_image_walker_finds_every_spelling_the_charts_use(tree: dict[str, Any],
                                                              ref: str) -> None:
    assert [found for _, found in _walk_images(tree)] == [ref]


def test_external_sso_replaces_dex_and_every_login_names_the_sites_provider(
        program_runs: Runs, checked: Checked) -> None:
    def external(layer: dict[str, Any]) -> None:
        layer["options"]["access"] = {"sso": "external", "sso_groups": ["ml-team"]}

    site = {"domain": "edge1.example.net", "load_balancer_addresses": ["10.20.0.200/29"],
            "sso": {"issuer_url": "https://login.example.net", "client_id": "edge1"}}
    run = program_runs(make_config(external, site=site))
    checked.that(not [item for item in releases(run) if item.name == "access-dex"])
    proxy = values(run, "access-oauth2-proxy")
    checked.that(proxy["config"]["clientID"] == "edge1")
    checked.that(proxy["extraArgs"]["oidc-issuer-url"] == "https://login.example.net")
    checked.that(proxy["extraArgs"]["allowed-group"] == "ml-team")
    hub = values(run, "notebooks-jupyterhub")["hub"]["config"]["GenericOAuthenticator"]
    checked.that(hub["token_url"] == "https://login.example.net/token")
    grafana = values(run, "monitoring-prometheus")["grafana"]["grafana.ini"]
    checked.that(grafana["auth.generic_oauth"]["auth_url"] == "https://login.example.net/auth")
    checked.that("sso_admin_password" not in run.output_names)


def test_flower_supernodes_on_workers_ask_for_no_gpu_and_control_api_admits_the_site(
        program_runs: Runs, checked: Checked) -> None:
    def workers(layer: dict[str, Any]) -> None:
        layer["options"]["flower"] = {"supernode_roles": ["gpu", "worker"]}

    site = {"domain": "edge1.example.net", "load_balancer_addresses": ["10.20.0.200/29"],
            "flower": {"role": "hub", "control_from": ["10.20.0.0/24"]}}
    nodes = [{"name": "cp-1", "roles": ["control-plane"]},
             {"name": "gpu-1", "roles": ["worker", "gpu"]},
             {"name": "work-1", "roles": ["worker"]}]
    run = program_runs(make_config(workers, site=site, nodes=nodes))
    spec = run.by_name("flower-supernode-cpu").inputs["spec"]["template"]["spec"]
    terms = spec["affinity"]["nodeAffinity"][
        "requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
    checked.that(terms[0]["matchExpressions"][0]["values"] == ["work-1"])
    checked.that("nvidia.com/gpu" not in spec["containers"][0]["resources"]["limits"])
    checked.that(run.outputs["flower_supernodes"] == 2)
    control = run.by_name("flower-control-policy").inputs["spec"]["ingress"][0]
    checked.that(control["from"] == [{"ipBlock": {"cidr": "10.20.0.0/24"}}])
    checked.that(control["ports"] == [{"port": 9093, "protocol": "TCP"}])


def test_nfs_provisioner_gets_the_server_of_its_class(program_runs: Runs,
                                                      checked: Checked) -> None:
    nfs = values(program_runs(make_config(storage_kinds)), "storage-nfs")
    checked.that(nfs["nfs"] == {"server": "10.20.0.5", "path": "/srv/nfs"})
    checked.that(nfs["storageClass"]["create"] is False)


def test_the_fleet_api_is_published_on_the_blueprints_superlink_port(
        program_runs: Runs, checked: Checked) -> None:
    def port(layer: dict[str, Any]) -> None:
        layer["options"]["flower"] = {"superlink_port": 443}

    run = program_runs(make_config(port))
    ports = {item["name"]: item for item in
             run.by_name("flower-superlink-service").inputs["spec"]["ports"]}
    checked.that(ports["fleet"]["port"] == 443 and ports["fleet"]["targetPort"] == 9092)
    checked.that(ports["control"]["port"] == 9093)
    checked.that(run.outputs["flower_superlink_address"] == "flower.edge1.example.net:443")
    args = run.by_name("flower-supernode-gpu").inputs["spec"]["template"]["spec"][
        "containers"][0]["args"]
    checked.that("--superlink=superlink.edge-flower.svc.cluster.local:443" in args)


def test_the_oidc_clients_trust_the_site_ca_that_signed_the_bundled_dex(
        default_run: ProgramRun, program_runs: Runs, checked: Checked) -> None:
    # oauth2-proxy, JupyterHub and Grafana call login.<domain> from inside the cluster.
    trust = {item.inputs["metadata"]["namespace"]: item for item in
             default_run.by_type("kubernetes:cert-manager.io/v1:Certificate")
             if item.inputs["metadata"]["name"] == "site-ca-trust"}
    checked.that(sorted(trust) == ["edge-access", "edge-monitoring", "edge-notebooks"])
    for namespace, release in (("edge-access", "access-oauth2-proxy"),
                               ("edge-notebooks", "notebooks-jupyterhub"),
                               ("edge-monitoring", "monitoring-prometheus")):
        checked.that(trust[namespace].inputs["spec"]["issuerRef"]["name"] == "site-ca")
        checked.that(trust[namespace].urn in default_run.by_name(release).dependencies,
                     release)
    proxy = values(default_run, "access-oauth2-proxy")
    checked.that(proxy["extraArgs"]["provider-ca-file"] == "/etc/site-ca/ca.crt")
    checked.that(proxy["extraVolumes"][0]["secret"]["secretName"] == "site-ca-trust")
    hub = values(default_run, "notebooks-jupyterhub")["hub"]
    checked.that(hub["config"]["GenericOAuthenticator"]["http_request_kwargs"]
                 == {"ca_certs": "/etc/site-ca/ca.crt"})
    checked.that(hub["extraVolumeMounts"][0]["mountPath"] == "/etc/site-ca")
    grafana = values(default_run, "monitoring-prometheus")["grafana"]
    checked.that(grafana["grafana.ini"]["auth.generic_oauth"]["tls_client_ca"]
                 == "/etc/site-ca/ca.crt")
    checked.that(grafana["extraSecretMounts"][0]["secretName"] == "site-ca-trust")

    # A site's own provider is not signed by the generated site CA: nothing is pinned.
    def external(layer: dict[str, Any]) -> None:
        layer["options"]["access"] = {"sso": "external"}

    site = {"domain": "edge1.example.net", "load_balancer_addresses": ["10.20.0.200/29"],
            "sso": {"issuer_url": "https://login.example.net", "client_id": "edge1"}}
    run = program_runs(make_config(external, site=site))
    checked.that("provider-ca-file" not in values(run, "access-oauth2-proxy")["extraArgs"])
    checked.that(not [item for item in run.resources if item.name.endswith("site-ca-trust")])
