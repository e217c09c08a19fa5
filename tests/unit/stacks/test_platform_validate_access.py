"""What the platform stack creates and exports for `blueprint validate`'s AI checks.

Stand-in: Pulumi's mock runtime (no engine, no cluster, charts never rendered). Generated
tokens and what the cluster writes into Secrets get the preview's stand-in values.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import kubernetes_validate
from platform_helpers import NODES, Checked, make_config, values

from blueprint.platform.config import PlatformConfig
from blueprint.platform.endpoints import ClusterApi, endpoints_document
from blueprint.platform.preview import STAND_IN_CERTIFICATE, STAND_IN_SECRET, ProgramRun
from validation.ai.config import AiEndpoints

Runs = Callable[[PlatformConfig], ProgramRun]
INGRESS = "kubernetes:networking.k8s.io/v1:Ingress"
# The scopes docs/ai-checks.md asks of the validation's JupyterHub token, each narrowed to
# the validation user.
SCOPES = [f"{scope}!user=blueprint-validate"
          for scope in ("admin:users", "admin:servers", "read:users", "access:servers")]
ADDRESSED = [{**node, "address": f"10.20.0.{index + 11}"} for index, node in enumerate(NODES)]


def _without_monitoring(layer: dict[str, Any]) -> None:
    layer["options"]["components"]["monitoring"] = False


def test_jupyterhub_has_the_validation_service_its_role_and_named_servers(
        default_run: ProgramRun, checked: Checked) -> None:
    hub = values(default_run, "notebooks-jupyterhub")["hub"]
    checked.that(hub["allowNamedServers"] is True)
    service = hub["services"]["blueprint-validate"]
    checked.that(service["name"] == "blueprint-validate")
    checked.that(service["apiToken"] == STAND_IN_SECRET, "the token is the generated one")
    role = hub["loadRoles"]["blueprint-validate"]
    checked.that(role["scopes"] == SCOPES, str(role["scopes"]))
    checked.that(role["services"] == ["blueprint-validate"])
    token = default_run.by_name("notebooks-validate-token")
    checked.that(token.type == "random:index/randomPassword:RandomPassword")
    checked.that(token.inputs["length"] >= 32 and token.inputs["special"] is False)


def test_profiles_are_chosen_by_slug_and_the_slugs_are_exported(
        default_run: ProgramRun, checked: Checked) -> None:
    catalog = [item.name for item in make_config().options.notebooks.catalog]
    profiles = values(default_run, "notebooks-jupyterhub")["singleuser"]["profileList"]
    # KubeSpawner picks the profile whose slug equals user_options["profile"].
    checked.that([profile["slug"] for profile in profiles] == catalog)
    checked.that(default_run.outputs["ai_catalog_profiles"] == catalog)


def test_only_the_hub_api_and_the_validation_users_servers_skip_oauth2_proxy(
        default_run: ProgramRun, checked: Checked) -> None:
    ingresses = {item.name: item.inputs for item in default_run.by_type(INGRESS)}
    api = ingresses["jupyterhub-api"]
    checked.that("annotations" not in api["metadata"] or not any(
        "auth-url" in key for key in api["metadata"]["annotations"]))
    rule = api["spec"]["rules"][0]
    checked.that(rule["host"] == "hub.edge1.example.net")
    checked.that([path["path"] for path in rule["http"]["paths"]]
                 == ["/hub/api/", "/user/blueprint-validate/"])
    # The hub's main ingress owns the certificate; the API paths reuse its Secret.
    checked.that(api["spec"]["tls"] == ingresses["jupyterhub"]["spec"]["tls"])
    checked.that("auth-url" in str(ingresses["jupyterhub"]["metadata"]["annotations"]))


def test_the_validation_account_may_only_use_the_service_proxies(
        program_runs: Runs, checked: Checked) -> None:
    run = program_runs(make_config(nodes=ADDRESSED))
    account = run.by_name("validation-account").inputs
    checked.that(account["metadata"] == {"name": "blueprint-validate",
                                         "namespace": "edge-access"})
    secret = run.by_name("validation-token").inputs
    checked.that(secret["type"] == "kubernetes.io/service-account-token")
    annotations = secret["metadata"]["annotations"]
    checked.that(annotations["kubernetes.io/service-account.name"] == "blueprint-validate")
    checked.that(annotations["pulumi.com/waitFor"] == "jsonpath={.data.token}")

    roles = {item.inputs["metadata"]["namespace"]: item.inputs["rules"]
             for item in run.by_type("kubernetes:rbac.authorization.k8s.io/v1:Role")}
    checked.that(sorted(roles) == ["edge-mlflow", "edge-monitoring", "edge-pipelines"])
    checked.that(roles["edge-mlflow"] == [{
        "apiGroups": [""], "resources": ["services/proxy"],
        "resourceNames": ["mlflow-server", "http:mlflow-server:80"],
        "verbs": ["get", "create", "update", "patch", "delete"]}])
    checked.that(roles["edge-monitoring"][0]["resourceNames"]
                 == ["prometheus-operated", "http:prometheus-operated:9090"])
    checked.that(roles["edge-pipelines"][0]["resourceNames"]
                 == ["argo-workflows-server", "http:argo-workflows-server:2746"])
    for binding in run.by_type("kubernetes:rbac.authorization.k8s.io/v1:RoleBinding"):
        checked.that(binding.inputs["subjects"] == [{
            "kind": "ServiceAccount", "name": "blueprint-validate",
            "namespace": "edge-access"}])

    # The API server (on the control-plane node) may reach the proxied pods' ports only.
    policy = run.by_name("validation-mlflow-api-server").inputs["spec"]["ingress"][0]
    checked.that(policy["from"] == [{"ipBlock": {"cidr": "10.20.0.11/32"}}])
    checked.that(policy["ports"] == [{"port": 5000, "protocol": "TCP"}])


def test_the_new_objects_match_the_kubernetes_schema(program_runs: Runs,
                                                     checked: Checked) -> None:
    run = program_runs(make_config(nodes=ADDRESSED))
    for name in ("validation-account", "validation-token", "validation-mlflow-proxy",
                 "validation-mlflow-proxy-binding", "validation-mlflow-api-server",
                 "jupyterhub-api"):
        body = {key: value for key, value in run.by_name(name).inputs.items()
                if key != "__defaults"}
        kubernetes_validate.validate(body, make_config().kubernetes_version, strict=True)
        checked.that(True, name)


def test_the_site_ca_is_read_from_a_certificate_made_for_it(default_run: ProgramRun,
                                                           checked: Checked) -> None:
    certificate = default_run.by_name("access-site-ca-public").inputs
    checked.that(certificate["spec"]["issuerRef"] == {"name": "site-ca",
                                                      "kind": "ClusterIssuer"})
    checked.that(certificate["spec"]["secretName"] == "site-ca-public")
    checked.that(certificate["metadata"]["annotations"]["pulumi.com/waitFor"]
                 == "condition=Ready")
    checked.that(default_run.outputs["site_ca_certificate"] == STAND_IN_CERTIFICATE)


def test_what_the_checks_need_is_exported_and_credentials_as_secrets(
        default_run: ProgramRun, checked: Checked) -> None:
    out = default_run.outputs
    checked.that(out["jupyterhub_url"] == "https://hub.edge1.example.net")
    checked.that(out["jupyterhub_validate_user"] == "blueprint-validate")
    checked.that(out["flower_control_address"] == "flower.edge1.example.net:9093")
    checked.that(out["flower_supernodes"] == 1, "one GPU node runs a SuperNode")
    checked.that(out["prometheus_exporter_job"] == "nvidia-dcgm-exporter")
    # The job label is set where the monitor is made, not assumed from a Service's name.
    monitor = values(default_run, "gpu-operator")["dcgmExporter"]["serviceMonitor"]
    checked.that(monitor["enabled"] is True)
    checked.that(monitor["relabelings"] == [{"action": "replace", "targetLabel": "job",
                                             "replacement": "nvidia-dcgm-exporter"}])
    checked.that(out["mlflow_api_path"]
                 == "/api/v1/namespaces/edge-mlflow/services/http:mlflow-server:80/proxy")
    checked.that(out["prometheus_api_path"] == "/api/v1/namespaces/edge-monitoring/services/"
                 "http:prometheus-operated:9090/proxy")
    for name in ("jupyterhub_validate_token", "validate_token"):
        checked.that(out[name] == STAND_IN_SECRET, name)
        checked.that(name in default_run.secret_outputs, f"{name} is a secret output")
    for name in ("jupyterhub_url", "ai_catalog_profiles", "site_ca_certificate"):
        checked.that(name not in default_run.secret_outputs, name)


def test_argo_runs_workflows_as_an_account_that_may_report_their_results(
        default_run: ProgramRun, checked: Checked) -> None:
    argo = values(default_run, "pipelines-argo")
    checked.that(argo["server"]["authModes"] == ["server"])
    checked.that(argo["workflow"]["serviceAccount"] == {"create": True,
                                                        "name": "argo-workflow"})
    checked.that(argo["controller"]["workflowDefaults"]["spec"]["serviceAccountName"]
                 == "argo-workflow")
    checked.that(default_run.outputs["pipelines_check_image"]
                 == "docker.io/library/busybox:1.37.0")


def test_the_flower_control_api_admits_only_the_networks_the_site_names(
        default_run: ProgramRun, program_runs: Runs, checked: Checked) -> None:
    policies = default_run.by_type("kubernetes:networking.k8s.io/v1:NetworkPolicy")
    checked.that("flower-control-policy" not in {item.name for item in policies})
    service = default_run.by_name("flower-superlink-service").inputs["spec"]
    checked.that(service["externalTrafficPolicy"] == "Local", "callers keep their address")

    site = {"domain": "edge1.example.net", "load_balancer_addresses": ["10.20.0.200/29"],
            "flower": {"role": "hub", "control_from": ["10.20.0.5/32"]}}
    run = program_runs(make_config(site=site))
    spec = run.by_name("flower-control-policy").inputs["spec"]
    checked.that(spec["ingress"] == [{"from": [{"ipBlock": {"cidr": "10.20.0.5/32"}}],
                                      "ports": [{"port": 9093, "protocol": "TCP"}]}])


def test_a_switched_off_component_exports_nothing_for_the_checks(
        program_runs: Runs, checked: Checked) -> None:
    run = program_runs(make_config(_without_monitoring))
    for name in ("prometheus_api_path", "prometheus_exporter_job"):
        checked.that(name not in run.output_names, name)
    namespaces = {item.inputs["metadata"]["namespace"]
                  for item in run.by_type("kubernetes:rbac.authorization.k8s.io/v1:Role")}
    checked.that(namespaces == {"edge-mlflow", "edge-pipelines"})


def test_the_mocked_outputs_make_an_endpoints_file_the_checks_accept(
        default_run: ProgramRun, program_runs: Runs, checked: Checked) -> None:
    cluster = ClusterApi("https://10.20.0.11:6443", None)
    site_ca, cluster_ca = Path("/state/site-ca.pem"), Path("/state/cluster-ca.pem")
    loaded = AiEndpoints.model_validate(
        endpoints_document(default_run.outputs, cluster, site_ca, cluster_ca))
    checked.that(loaded.jupyterhub is not None and loaded.mlflow is not None
                 and loaded.prometheus is not None and loaded.flower is not None)
    assert loaded.jupyterhub and loaded.mlflow and loaded.prometheus and loaded.flower
    checked.that(loaded.jupyterhub.token.reveal() == STAND_IN_SECRET)
    checked.that(loaded.jupyterhub.verify_tls == site_ca)
    checked.that(str(loaded.mlflow.url).startswith("https://10.20.0.11:6443/api/v1/"))
    checked.that(loaded.prometheus.exporter_job == "nvidia-dcgm-exporter")
    checked.that(loaded.flower.root_certificates == site_ca)
    assert loaded.pipelines is not None
    checked.that(str(loaded.pipelines.url).endswith(
        "/namespaces/edge-pipelines/services/http:argo-workflows-server:2746/proxy"))
    checked.that(loaded.pipelines.namespace == "edge-pipelines")
    checked.that(loaded.pipelines.image == "docker.io/library/busybox:1.37.0")
    checked.that(loaded.serving is None, "no model is served by the stack yet")

    off = program_runs(make_config(_without_monitoring))
    partial = AiEndpoints.model_validate(
        endpoints_document(off.outputs, cluster, site_ca, cluster_ca))
    checked.that(partial.prometheus is None and partial.jupyterhub is not None)
