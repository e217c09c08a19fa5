"""`blueprint validate` for a site: build the validation target and record the run."""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from blueprint.baremetal.access import bmc_credentials
from blueprint.baremetal.discover import node_profile
from blueprint.console import attach_run_log, detach_run_log
from blueprint.deploy import deployed_layers, deployed_nodes
from blueprint.errors import BadInput, BlueprintError, exit_code_of
from blueprint.inventory import node_user, render_ssh_config, role_defaults, role_variables
from blueprint.loader import LoadedSite
from blueprint.models import Node
from blueprint.paths import VALIDATION_DIR
from blueprint.secrets import REDACTOR, load_site_secrets
from blueprint.state import RunHistory, StateDir, new_run_id
from blueprint.validate import (
    ClusterTarget,
    NodeTarget,
    ValidationReport,
    ValidationTarget,
    Waiver,
    load_suite,
    run_validation,
)
from blueprint.validate.model import AI_ENDPOINTS_ENV
from blueprint.validate.runner import ListedCheck, list_checks
from blueprint.yamlfile import load_yaml

log = logging.getLogger(__name__)

# A blueprint layer's `versions:` key and the Debian package it pins. A pin is a version
# prefix ("1.6" matches 1.6.20~ds1-1): the upstream version the blueprint was tested with.
PINNED_PACKAGES = {"containerd": "containerd"}

# Where the CRI plugin of the runtime layer listens (containerd's default grpc address).
CRI_SOCKET = "/run/containerd/containerd.sock"

# The local-path folder's owner and mode, as roles/storage/tasks/main.yml sets them (not a
# role variable; a unit test reads the task so that the two cannot drift apart).
LOCAL_PATH_OWNER = "root:root"
LOCAL_PATH_MODE = "755"

SUMMARY = Path("validation") / "summary.json"



def check_layers(loaded: LoadedSite, state: StateDir) -> list[str]:
    """Check layers to run: those of the blueprint layers this site has deployed.

    A site with no deploy record (state folder lost, or deployed by another tool) is
    validated against everything its blueprint promises.
    """
    deployed = deployed_layers(state)
    layers = ["hardware"]
    for layer in loaded.blueprint.layers:
        if not deployed or layer.name in deployed:
            layers.extend(layer.validates)
    return layers


def hardware_profile(loaded: LoadedSite, node: Node) -> dict[str, Any] | None:
    """The blueprint's hardware profile for the node's roles, merged: the largest minimum.

    A firmware setting (boot mode, Secure Boot) required by any of the roles is required.
    """
    profiles = [(role, loaded.blueprint.hardware[role]) for role in node.roles
                if role in loaded.blueprint.hardware]
    if not profiles:
        return None
    merged: dict[str, Any] = {"roles": [role for role, _ in profiles]}
    for key in ("min_cpus", "min_memory_gib", "min_disk_gib", "gpus", "min_nics"):
        merged[key] = max(getattr(profile, key) for _, profile in profiles)
    for key in ("boot_mode", "secure_boot"):
        wanted = sorted({getattr(profile, key) for _, profile in profiles} - {"any"})
        merged[key] = wanted[0] if wanted else "any"
    # BIOS attributes and firmware minimums, merged as `discover` merges them.
    firmware = node_profile(loaded.blueprint, list(node.roles))
    merged["bios"] = dict(firmware.bios)
    merged["min_bios_version"] = firmware.min_bios_version
    merged["min_bmc_version"] = firmware.min_bmc_version
    return merged


def bmc_access(
    loaded: LoadedSite, secrets: dict[str, Any]
) -> dict[str, tuple[dict[str, Any], str | None]]:
    """Per node with a bmc section: how the hardware.bmc checks reach it, and its password.

    The first part goes to the node's context file; the password goes only to the
    environment of the node's check run. Credentials that cannot be had (in neither the
    environment nor the vault) become the context's `problem`: the other checks still run.
    """
    access: dict[str, tuple[dict[str, Any], str | None]] = {}
    for node in loaded.site.nodes:
        if node.bmc is None:
            continue
        bmc = node.bmc
        context: dict[str, Any] = {
            "address": bmc.address,
            "protocol": bmc.protocol,
            "system": bmc.system,
            "verify_tls": bmc.verify_tls,
            "ca": str(bmc.ca.resolve()) if bmc.ca is not None else None,
            "timeout": bmc.timeout,
            "cipher_suite": bmc.cipher_suite,
            "boot_mode": bmc.boot_mode,
            "credentials": bmc.credentials,
            "username": None,
            "boot_mac": node.boot_mac,
            "problem": None,
        }
        password = None
        try:
            credentials = bmc_credentials(node, secrets)
        except BlueprintError as exc:
            context["problem"] = str(exc)
        else:
            context["username"] = credentials.username
            password = credentials.password
        access[node.name] = (context, password)
    return access


def expectations(loaded: LoadedSite, layers: list[str]) -> dict[str, Any]:
    """What the deployed layers promise on every node: packages, pinned versions, CRI socket,
    the storage classes' preparation.

    Taken from the same role variables a deploy uses (role defaults, the blueprint's layer
    options, the site's overrides), so the checks expect what the roles were asked to do.
    """
    variables = {**role_defaults("os_baseline"), **role_defaults("container_runtime"),
                 **role_defaults("storage")}
    variables.update(role_variables(loaded))

    required: list[str] = []
    pins: dict[str, str] = {}
    if "os" in layers:
        entries = [*variables.get("os_baseline_packages", []),
                   *variables.get("os_baseline_extra_packages", [])]
        for entry in map(str, entries):
            name, _, version = entry.partition("=")
            required.append(name)
            if version:
                pins[name] = version.rstrip("*")
    if "runtime" in layers:
        required.append(str(variables.get("container_runtime_package", "containerd")))
    for layer in loaded.blueprint.layers:
        if set(layer.validates) & set(layers):
            for key, version in layer.versions.items():
                if key in PINNED_PACKAGES:
                    pins[PINNED_PACKAGES[key]] = version

    return {
        "packages": {"required": sorted(set(required)), "pins": pins},
        "runtime": {"cri_socket": CRI_SOCKET},
        "storage": storage_expectations(loaded, variables),
    }


def storage_expectations(loaded: LoadedSite, variables: dict[str, Any]) -> dict[str, Any]:
    """What the storage role was asked to prepare, as roles/storage/vars/main.yml derives it.

    Per-node parts are keyed by node name (`nfs_server`, `ceph_devices`): each check picks its
    own node's from `expected["node"]`. The site's values were checked when it was loaded
    (blueprint/kube/storage.py); unknown classes never reach this point.
    """
    classes = [str(name) for name in variables.get("storage_classes") or ["local-path"]]
    packages = variables.get("storage_packages") or {}

    # The role serves NFS from the first node of the inventory's storage group: the first
    # node with node role storage, in site order.
    storage_nodes = [node.name for node in loaded.site.nodes if "storage" in node.roles]
    nfs = "nfs" in classes and bool(storage_nodes)
    exports = (variables.get("storage_nfs_exports") or []) if nfs else []
    server_packages = (variables.get("storage_nfs_server_packages") or []) if nfs else []
    devices = (variables.get("storage_ceph_devices") or {}) if "rook-ceph" in classes else {}

    local_path = None
    if "local-path" in classes:
        local_path = {"dir": str(variables.get("storage_local_path_dir")),
                      "owner": LOCAL_PATH_OWNER, "mode": LOCAL_PATH_MODE}
    return {
        "classes": classes,
        "local_path": local_path,
        "packages": {name: [str(p) for p in packages[name]]
                     for name in classes if packages.get(name)},
        "nfs_server": storage_nodes[0] if nfs else None,
        "nfs_server_packages": [str(p) for p in server_packages],
        "nfs_exports": [str(export["path"]) for export in exports],
        "ceph_devices": {str(node): [str(path) for path in paths]
                         for node, paths in devices.items()},
    }


def ai_endpoints_file(given: Path | None, state: StateDir | None) -> Path | None:
    """The AI endpoints file: the given one, else `BLUEPRINT_AI_ENDPOINTS`, else the one the
    platform layer wrote in the state folder (None without a state folder)."""
    if given is not None:
        return given
    if os.environ.get(AI_ENDPOINTS_ENV):
        return Path(os.environ[AI_ENDPOINTS_ENV])
    return state.ai_endpoints if state is not None else None


def cluster_target(
    loaded: LoadedSite,
    state: StateDir,
    *,
    kubeconfig: Path | None = None,
    kube_context: str | None = None,
    ai_endpoints: Path | None = None,
) -> ClusterTarget:
    """The site's cluster for the cluster-scoped checks: its kubeconfig, nodes and endpoints.

    The nodes the cluster should have are the site's, less those the kubernetes layer is
    known not to be on (a node `remove-node` took out stays in the site file until the
    operator edits it).
    """
    site = loaded.site
    in_cluster = list(site.nodes)
    on_layer = deployed_nodes(state).get("kubernetes")
    if on_layer is not None:
        in_cluster = [node for node in in_cluster if node.name in on_layer]
    return ClusterTarget(
        kubeconfig=kubeconfig or state.kubeconfig,
        kube_context=kube_context,
        kube_nodes=[node.name for node in in_cluster],
        gpu_nodes=[node.name for node in in_cluster if "gpu" in node.roles],
        ai_endpoints=ai_endpoints_file(ai_endpoints, state),
    )


def build_target(
    loaded: LoadedSite,
    state: StateDir,
    *,
    kubeconfig: Path | None = None,
    kube_context: str | None = None,
    ai_endpoints: Path | None = None,
    secrets: dict[str, Any] | None = None,
) -> ValidationTarget:
    """What `validate` checks on this site; `secrets` is the site's opened vault (opened
    here when not given)."""
    site = loaded.site
    layers = check_layers(loaded, state)
    if secrets is None:
        secrets = load_site_secrets(loaded.site_dir)
    bmcs = bmc_access(loaded, secrets)
    return ValidationTarget(
        site_name=site.name,
        blueprint_layers=layers,
        suite_file=VALIDATION_DIR / "suites" / f"{loaded.blueprint.validation.suite}.yaml",
        nodes=[
            NodeTarget(name=node.name, address=str(node.address),
                       ssh_user=node_user(site, node), node_roles=list(node.roles),
                       hardware=hardware_profile(loaded, node),
                       bmc=bmcs[node.name][0] if node.name in bmcs else None,
                       bmc_password=bmcs[node.name][1] if node.name in bmcs else None)
            for node in site.nodes
        ],
        ssh_config=render_ssh_config(site, state),
        waivers=[
            Waiver(check=w.check, node=w.node, reason=w.reason, expires=w.expires)
            for w in site.waivers
        ],
        context=expectations(loaded, layers),
        cluster=cluster_target(loaded, state, kubeconfig=kubeconfig, kube_context=kube_context,
                               ai_endpoints=ai_endpoints),
    )


def previous_summary(state: StateDir, site_name: str) -> dict[str, Any] | None:
    """summary.json of the site's last finished validation run, or None."""
    history = RunHistory(state)
    try:
        runs = history.runs(limit=1000)
    finally:
        history.close()
    for run in runs:
        if run["verb"] != "validate" or run["status"] not in ("passed", "failed"):
            continue
        path = state.root / "runs" / run["id"] / SUMMARY
        if not path.is_file():
            continue
        data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
        if data.get("site") == site_name:
            data.setdefault("run_id", run["id"])
            return data
    return None


def listing(
    loaded: LoadedSite,
    state: StateDir,
    *,
    layers: list[str] | None = None,
    checks: list[str] | None = None,
    include_optional: bool = False,
) -> list[ListedCheck]:
    """The suite's checks for this site and whether a run would run them; no node is touched."""
    site = loaded.site
    layers_here = check_layers(loaded, state)
    target = ValidationTarget(
        site_name=site.name,
        blueprint_layers=layers_here,
        suite_file=VALIDATION_DIR / "suites" / f"{loaded.blueprint.validation.suite}.yaml",
        nodes=[],
        ssh_config=state.root / "ssh_config",
    )
    return list_checks(target, layers=layers, checks=checks, include_optional=include_optional)


def validate_site(
    loaded: LoadedSite,
    state: StateDir,
    *,
    layers: list[str] | None = None,
    checks: list[str] | None = None,
    include_optional: bool = False,
    kubeconfig: Path | None = None,
    kube_context: str | None = None,
    ai_endpoints: Path | None = None,
    secrets: dict[str, Any] | None = None,
) -> ValidationReport:
    """Run the blueprint's suite on the site; the run and its verdict go to the history."""
    return _recorded_run(
        state,
        loaded.site.name,
        lambda: build_target(loaded, state, kubeconfig=kubeconfig, kube_context=kube_context,
                             ai_endpoints=ai_endpoints, secrets=secrets),
        layers=layers,
        checks=checks,
        include_optional=include_optional,
    )


# The check layers `validate --kubeconfig` runs against a cluster another tool installed.
CLUSTER_LAYERS = ["kubernetes", "ai"]


def kubeconfig_context(kubeconfig: Path, context: str | None = None) -> str:
    """The context the checks use: the given one, which must exist, or the current one."""
    data = load_yaml(kubeconfig).data
    if not isinstance(data, dict) or data.get("kind", "Config") != "Config":
        msg = f"{kubeconfig}: not a kubeconfig (expected a YAML mapping of kind Config)"
        raise BadInput(msg)
    names = [str(entry.get("name")) for entry in data.get("contexts") or []
             if isinstance(entry, dict)]
    chosen = context or data.get("current-context")
    if not chosen:
        msg = f"{kubeconfig}: current-context is not set; pass --context (one of: "
        raise BadInput(msg + (", ".join(names) or "none") + ")")
    if str(chosen) not in names:
        msg = f"{kubeconfig}: context '{chosen}' is not in the file; use one of: "
        raise BadInput(msg + (", ".join(names) or "none"))
    return str(chosen)


def cluster_run_name(context: str) -> str:
    """The run history's name for a cluster validated by its kubeconfig alone: a folder name
    (contexts such as arn:aws:eks:...:cluster/prod hold ':' and '/')."""
    return "cluster-" + re.sub(r"[^A-Za-z0-9_.-]+", "-", context).strip("-.")


def cluster_suite(suite: str) -> Path:
    """A suite by name (validation/suites/<name>.yaml) or by path."""
    path = Path(suite)
    if path.suffix in (".yaml", ".yml"):
        return path
    known = sorted(p.stem for p in (VALIDATION_DIR / "suites").glob("*.yaml"))
    if suite not in known:
        msg = f"suite '{suite}' is not known; use one of {', '.join(known)} or a suite file"
        raise BadInput(msg)
    return VALIDATION_DIR / "suites" / f"{suite}.yaml"


def validate_cluster(
    kubeconfig: Path,
    state: StateDir,
    *,
    suite: str = "ai-edge",
    context: str | None = None,
    ai_endpoints: Path | None = None,
    layers: list[str] | None = None,
    checks: list[str] | None = None,
    include_optional: bool = False,
) -> ValidationReport:
    """Run the suite's cluster-scoped checks against any cluster (`validate --kubeconfig`).

    There is no site: no node is reached over SSH, the nodes are those the API lists, and the
    GPU nodes those labelled as having GPUs. The run is kept in `state`'s history.
    """
    context = kubeconfig_context(kubeconfig, context)
    suite_file = cluster_suite(suite)
    ai_endpoints = ai_endpoints_file(ai_endpoints, None)
    name = cluster_run_name(context)
    target = ValidationTarget(
        site_name=name,
        blueprint_layers=CLUSTER_LAYERS,
        suite_file=suite_file,
        nodes=[],
        ssh_config=state.root / "ssh_config",
        cluster=ClusterTarget(kubeconfig=kubeconfig.resolve(), kube_context=context,
                              ai_endpoints=ai_endpoints.resolve() if ai_endpoints else None),
    )
    # Without --layer or --check: the layers a cluster has, not every node layer of the suite.
    if not layers and not checks:
        layers = [layer for layer in CLUSTER_LAYERS
                  if any(c.layer == layer for c in load_suite(suite_file).checks)]
    return _recorded_run(state, name, lambda: target, layers=layers, checks=checks,
                         include_optional=include_optional)


def _recorded_run(
    state: StateDir,
    name: str,
    make_target: Callable[[], ValidationTarget],
    *,
    layers: list[str] | None,
    checks: list[str] | None,
    include_optional: bool,
) -> ValidationReport:
    run_id = new_run_id("validate")
    with state.lock():
        previous = previous_summary(state, name)
        run_dir = state.run_dir(run_id)
        run_log = attach_run_log(run_dir / "blueprint.log")
        history = RunHistory(state)
        history.start(run_id, name, "validate", layers or [], run_dir)
        try:
            target = make_target()
            report = run_validation(target, run_dir / "validation", layers=layers,
                                    checks=checks, include_optional=include_optional,
                                    previous=previous, run_id=run_id)
        except BaseException as exc:
            history.finish(run_id, "error", int(exit_code_of(exc)))
            raise
        else:
            history.finish(run_id, str(report.verdict), int(report.exit_code))
        finally:
            history.close()
            detach_run_log(run_log)
            # Check output quotes node files (containerd's config, sshd's settings): any
            # secret the site handed to a role is masked in every output of the run.
            REDACTOR.redact_tree(run_dir)
    return report
