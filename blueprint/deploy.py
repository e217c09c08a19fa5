"""Plan and deploy: preflight every requested layer, then run its playbook on the site."""

from __future__ import annotations

import json
import logging
import subprocess
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console

from blueprint.bom.lock import check_lock
from blueprint.bom.mirror import check_offline_mirror
from blueprint.console import attach_run_log, detach_run_log
from blueprint.errors import BadInput, DeployFailed, EnvironmentMissing, ExitCode, exit_code_of
from blueprint.inventory import PYTHON, render_inventory, role_variables
from blueprint.kube.tokens import cluster_secrets
from blueprint.kube.variables import LAYER as KUBERNETES_LAYER
from blueprint.kube.variables import check_kubernetes_images, check_offline_kubeadm
from blueprint.loader import LoadedSite
from blueprint.models import Layer, Node
from blueprint.paths import PLAYBOOKS_DIR, ROLES_DIR
from blueprint.platform.deploy import PlatformReady, deploy_platform, preflight_platform
from blueprint.playbook import (
    PREFLIGHT,
    PlaybookResult,
    TaskChange,
    require_ansible,
    run_layers,
)
from blueprint.proc import require_tool, run_bounded
from blueprint.progress import DeployProgress
from blueprint.state import RunHistory, StateDir, new_run_id

log = logging.getLogger(__name__)


@dataclass
class DeployOutcome:
    """The playbook results of one plan or deploy, in layer order."""

    run_id: str
    results: list[PlaybookResult] = field(default_factory=list)
    run_dir: Path | None = None
    # What the preflight play reported for the operator, e.g. a GPU-less node's skip reason.
    preflight_notes: list[TaskChange] = field(default_factory=list)
    platform: PlatformReady | None = None

    @property
    def changed(self) -> int:
        return sum(result.changed for result in self.results)


def select_layers(loaded: LoadedSite, requested: list[str] | None) -> list[Layer]:
    """The blueprint's layers, or the requested ones in blueprint order."""
    # The platform layer is not Ansible's: it goes through the Pulumi preflight and deploy
    # (blueprint.platform.deploy); this is the list of host layers.
    layers = [layer for layer in loaded.blueprint.layers if layer.name != "platform"]
    if not requested:
        return layers
    known = [layer.name for layer in loaded.blueprint.layers]
    for name in requested:
        if name not in known:
            msg = (f"--layer {name} is not a layer of blueprint {loaded.blueprint.name}; "
                   f"use one of {', '.join(known)}")
            raise BadInput(msg)
    return [layer for layer in layers if layer.name in requested]


def wants_platform(loaded: LoadedSite, requested: list[str] | None) -> bool:
    """The run includes the blueprint's platform layer."""
    has = any(layer.name == "platform" for layer in loaded.blueprint.layers)
    return has and (not requested or "platform" in requested)


def preflight(
    loaded: LoadedSite, layers: list[Layer], state: StateDir, *, check: bool = False,
    stock: bool = False, limit: list[str] | None = None,
) -> Path:
    """Everything that can stop a run, checked before the first change; returns inventory."""
    # Tools on the controller.
    require_tool("ssh", "openssh-client")
    require_ansible()

    # Every requested layer can really run in this version of the product.
    for layer in layers:
        missing = [role for role in layer.roles if not (ROLES_DIR / role).is_dir()]
        if not layer.roles or missing:
            ready = [ly.name for ly in loaded.blueprint.layers
                     if ly.roles and all((ROLES_DIR / role).is_dir() for role in ly.roles)]
            msg = (
                f"layer {layer.name}: role {', '.join(missing) or '(none)'} is not part of "
                f"this version; choose the layers that are with --layer ({', '.join(ready)})"
            )
            raise EnvironmentMissing(msg)
        if not (PLAYBOOKS_DIR / f"{layer.name}.yml").is_file():
            msg = f"layer {layer.name}: playbooks/{layer.name}.yml is missing from this checkout"
            raise EnvironmentMissing(msg)

    # An offline kubeadm site is refused: its images are not in the bill of materials yet.
    kubernetes = any(layer.name == KUBERNETES_LAYER for layer in layers)
    if kubernetes:
        check_offline_kubeadm(loaded, role_variables(loaded))

    # A lock that no longer matches the site stops the run; offline sites need one, and
    # every artifact of it on the site mirror, before any host is touched.
    offline = loaded.site.artifacts.mode == "offline"
    lock = check_lock(loaded, required=offline)
    if offline and lock is not None:
        check_offline_mirror(loaded, lock)

    # The kubernetes layer's images come from where its nodes can pull them.
    if kubernetes:
        check_kubernetes_images(loaded, role_variables(loaded))

    # Every node answers SSH with the host key pinned for it.
    inventory_dir = render_inventory(loaded, state, stock=stock)
    nodes = [node for node in loaded.site.nodes if limit is None or node.name in limit]
    check_nodes_reachable(nodes, state.root / "ssh_config", for_plan=check)
    return inventory_dir


# Ansible runs modules with the node's /usr/bin/python3 (set in the inventory, so no run
# spends a round trip discovering it). A plan runs Ansible's apt module in check mode, which
# also needs python3-apt on the node and will not install it then; a deploy installs it.
NO_PYTHON, NO_PYTHON_APT = 97, 98
DEPLOY_PROBE = f"test -x {PYTHON} || exit {NO_PYTHON}"
PLAN_PROBE = f"{DEPLOY_PROBE}; {PYTHON} -c 'import apt_pkg' 2>/dev/null || exit {NO_PYTHON_APT}"

# What ssh prints when nothing answers at the node's address: the host is down or cut off.
# Anything else (a refused connection or key, a changed host key, a missing key file) means
# the node is there and the controller's side, or its sshd, needs fixing.
NO_ANSWER = ("timed out", "No route to host", "Network is unreachable", "Host is down")


@dataclass(frozen=True)
class Probe:
    """One node's answer to an SSH probe: `reason` is None when it answered."""

    node: str
    reason: str | None
    dead: bool = False  # nothing answered (timeout, refused, no route): down or cut off

    @property
    def ok(self) -> bool:
        return self.reason is None


def probe_node(
    node: Node, ssh_config: Path, command: str = DEPLOY_PROBE, *, connect_timeout: int = 10,
) -> Probe:
    """Open one fresh SSH session to the node and run `command`; say why it failed, if so."""
    # A fresh connection with exactly the settings Ansible gets: never an open one.
    cmd = ["ssh", "-F", str(ssh_config), "-o", "ControlPath=none", "-o",
           f"ConnectTimeout={connect_timeout}", "-o", "ConnectionAttempts=1", node.name, command]
    where = f"node {node.name} ({node.address})"
    try:
        # In a session of its own: past the timeout the ssh of a ProxyJump goes with it.
        done = run_bounded(cmd, timeout=connect_timeout * 3)
    except subprocess.TimeoutExpired:
        return Probe(node.name, f"{where}: SSH did not answer within {connect_timeout * 3} s",
                     dead=True)
    if done.returncode == 0:
        return Probe(node.name, None)
    err = done.stderr
    last = err.strip().splitlines()[-1] if err.strip() else f"exit {done.returncode}"
    if done.returncode == NO_PYTHON:
        return Probe(node.name, f"node {node.name}: {PYTHON} is missing, and Ansible needs it "
                                "on every node; install python3 with the OS")
    if done.returncode == NO_PYTHON_APT:
        return Probe(node.name, f"node {node.name}: python3-apt is missing, and a plan needs it "
                                "to read the package state; install it with the OS or run "
                                "deploy --layer os_baseline")
    if "IDENTIFICATION HAS CHANGED" in err or "Host key verification failed" in err:
        return Probe(node.name, f"{where}: host key does not match the pinned one; if the node "
                                "was reinstalled, check its new key and update known_hosts")
    if "Permission denied" in err or "Too many authentication failures" in err:
        missing = "not accessible" in err or "No such file" in err
        return Probe(node.name, f"{where}: SSH refused the login ({last})"
                                + ("; the key file named in the site's ssh settings is missing"
                                   if missing else "")
                                + "; check the site's ssh user and key, and that the key is in "
                                  "the node's authorized_keys")
    if done.returncode == 255 and "Connection refused" in err:
        # The kernel answered with a reset: the host is up and only sshd is not listening,
        # so its kubelet or k3s agent may still run and register the node again.
        return Probe(node.name, f"{where}: the host refused the SSH connection ({last}); it "
                                "is up but its sshd is not listening: start sshd on it")
    if done.returncode == 255 and any(text in err for text in NO_ANSWER):
        return Probe(node.name, f"{where}: no answer over SSH: {last}", dead=True)
    return Probe(node.name, f"{where}: cannot connect over SSH: {last}")


def probe_nodes(
    nodes: list[Node], ssh_config: Path, command: str = DEPLOY_PROBE, *,
    connect_timeout: int = 10,
) -> list[Probe]:
    """Probe every node in parallel (probe_node), in the order given."""
    with ThreadPoolExecutor(max_workers=min(16, len(nodes) or 1)) as pool:
        return list(pool.map(lambda node: probe_node(node, ssh_config, command,
                                                     connect_timeout=connect_timeout), nodes))


def check_nodes_reachable(nodes: list[Node], ssh_config: Path, *, for_plan: bool = False) -> None:
    """Open one SSH session per node in parallel; any node that fails stops the run."""
    probes = probe_nodes(nodes, ssh_config, PLAN_PROBE if for_plan else DEPLOY_PROBE)
    problems = [probe.reason for probe in probes if probe.reason]
    if problems:
        raise DeployFailed("\n".join(problems))


def deploy(
    loaded: LoadedSite,
    state: StateDir,
    console: Console,
    *,
    requested: list[str] | None = None,
    check: bool = False,
    stock: bool = False,
    secret_vars: dict[str, Any] | None = None,
    site_secrets: dict[str, Any] | None = None,
    limit: list[str] | None = None,
    verb: str | None = None,
) -> DeployOutcome:
    """Run the layers' playbooks in order; `check` makes it a plan (check mode with diff).

    `secret_vars` (role variables from the site's vault) go to Ansible only for this run.
    `limit` runs the host layers on those nodes only (scale); the platform is left out then.
    """
    verb = verb or ("plan" if check else "deploy")
    layers = select_layers(loaded, requested)
    outcome = DeployOutcome(run_id=new_run_id(verb))
    # A plan shows the platform offline (blueprint.platform.preview); a deploy runs it.
    platform = wants_platform(loaded, requested) and not check and limit is None
    if any(layer.name == "kubernetes" for layer in layers):
        # The cluster's join token and keys: made once, kept in the state folder's vault.
        secret_vars = {**(secret_vars or {}), **cluster_secrets(state)}

    with state.lock():
        cluster_in_run = any(layer.name == "kubernetes" for layer in layers)
        ready = (preflight_platform(loaded, state, site_secrets, cluster_in_run=cluster_in_run)
                 if platform else None)
        inventory_dir = (preflight(loaded, layers, state, check=check, stock=stock,
                                   limit=limit) if layers else None)
        run_dir = state.run_dir(outcome.run_id)
        outcome.run_dir = run_dir
        run_log = attach_run_log(run_dir / "blueprint.log")
        history = RunHistory(state)
        names = [str(ly.name) for ly in layers] + (["platform"] if ready else [])
        history.start(outcome.run_id, loaded.site.name, verb, names, run_dir)
        try:
            if inventory_dir is not None:
                _run_layers(loaded, layers, state, console, outcome, history, check, stock,
                            inventory_dir, secret_vars, limit)
            if ready is not None:
                outcome.platform = deploy_platform(ready, state, console)
                _mark_deployed(state, "platform", outcome.run_id)
        except BaseException as exc:
            history.finish(outcome.run_id, "failed", int(exit_code_of(exc)))
            raise
        else:
            history.finish(outcome.run_id, "ok", ExitCode.OK)
        finally:
            history.close()
            detach_run_log(run_log)
    return outcome


def _run_layers(
    loaded: LoadedSite,
    layers: list[Layer],
    state: StateDir,
    console: Console,
    outcome: DeployOutcome,
    history: RunHistory,
    check: bool,
    stock: bool,
    inventory_dir: Path,
    secret_vars: dict[str, Any] | None,
    limit: list[str] | None = None,
) -> None:
    nodes = [node.name for node in loaded.site.nodes if limit is None or node.name in limit]
    assert outcome.run_dir is not None
    layer_roles: dict[str, list[str]] = {layer.name: list(layer.roles) for layer in layers}
    log.info("%s layers %s on %d nodes", "Planning" if check else "Deploying",
             ", ".join(layer_roles), len(nodes))
    with DeployProgress(console, nodes) as progress:
        results = run_layers(
            layer_roles, inventory_dir, outcome.run_dir, state.facts_dir, check=check,
            on_event=progress.on_event, on_layer=progress.start_layer, stock=stock,
            secret_vars=secret_vars, limit=",".join(limit) if limit is not None else None,
        )
    for result in results:
        if result.playbook == PREFLIGHT:
            outcome.preflight_notes = result.notes
        else:
            outcome.results.append(result)
            history.record_layer(outcome.run_id, result.playbook, result.stats)
    if not check:
        # Nodes that completed a layer are recorded even when it failed on another node
        # (Ansible carries on with the others), so that scale adds only what is missing.
        # A run stopped outside any task ("controller") tells nothing about the nodes.
        for result in results:
            stopped = any(failure.node == "controller" for failure in result.failures)
            if result.playbook != PREFLIGHT and result.status != "unstarted" and not stopped:
                mark_nodes(state, result.playbook, [
                    node for node, counts in result.stats.items()
                    if not counts["failed"] and not counts["unreachable"]])
    for result in results:
        if not result.ok:
            raise DeployFailed(_failure_message(result.playbook, result,
                                                "plan" if check else "deploy"))
        if not check and result.playbook != PREFLIGHT:
            _mark_deployed(state, result.playbook, outcome.run_id)


def _failure_message(layer: str, result: PlaybookResult, verb: str) -> str:
    first = result.failures[0] if result.failures else None
    where = f" on {first.node}: task '{first.task}': {first.diff}" if first else ""
    log_hint = f"; log: {result.stdout_file}" if result.stdout_file else ""
    if layer == PREFLIGHT:
        return f"preflight stopped the run before any change{where}{log_hint}"
    return f"layer {layer} failed{where}{log_hint}; fix it and re-run {verb} --layer {layer}"


def deployed_layers(state: StateDir) -> dict[str, str]:
    """Layer name to the id of the run that last deployed it."""
    path = state.root / "deployed.json"
    if not path.is_file():
        return {}
    data = json.loads(path.read_text(encoding="utf-8"))
    return {str(key): str(value) for key, value in data.items()}


def _mark_deployed(state: StateDir, layer: str, run_id: str) -> None:
    layers = deployed_layers(state)
    layers[layer] = run_id
    (state.root / "deployed.json").write_text(json.dumps(layers, indent=2), encoding="utf-8")


NODES_FILE = "deployed-nodes.json"


def deployed_nodes(state: StateDir) -> dict[str, list[str]]:
    """Host layer name to the nodes a deploy (or scale) has completed it on."""
    path = state.root / NODES_FILE
    if not path.is_file():
        return {}
    data = json.loads(path.read_text(encoding="utf-8"))
    return {str(layer): [str(node) for node in nodes] for layer, nodes in data.items()}


def mark_nodes(state: StateDir, layer: str, nodes: list[str] | None) -> None:
    """Record that `layer` is on `nodes` too; None forgets it on every node (reset)."""
    layers = deployed_nodes(state)
    if nodes is None:
        layers.pop(layer, None)
    else:
        layers[layer] = sorted(set(layers.get(layer, [])) | set(nodes))
    (state.root / NODES_FILE).write_text(json.dumps(layers, indent=2), encoding="utf-8")


def new_nodes(loaded: LoadedSite, state: StateDir) -> list[str]:
    """The site's nodes that some host layer of the blueprint has not completed on yet."""
    done = deployed_nodes(state)
    layers = [layer.name for layer in select_layers(loaded, None)]
    return [node.name for node in loaded.site.nodes
            if any(node.name not in done.get(layer, []) for layer in layers)]


def scale_limit(loaded: LoadedSite, state: StateDir) -> tuple[list[str], list[str]]:
    """(new nodes, nodes a scale runs on): the new ones plus the control planes.

    The control planes converge with no change; they are in the run because a joining
    kubeadm node reads the first control plane's CA hash, as a full deploy does.
    """
    fresh = new_nodes(loaded, state)
    if not fresh:
        return [], []
    has_cluster = any(layer.name == "kubernetes" for layer in loaded.blueprint.layers)
    names = {node.name for node in loaded.site.nodes}
    if has_cluster and not names & set(deployed_nodes(state).get("kubernetes", [])):
        msg = (f"site {loaded.site.name} has no deployed cluster in {state.root}; run deploy "
               "first (scale adds nodes to a deployed site)")
        raise BadInput(msg)
    servers = ([node.name for node in loaded.site.nodes if "control-plane" in node.roles]
               if has_cluster else [])
    joining = [name for name in fresh if name in servers]
    if joining:
        # A new control plane changes the cluster's topology (and the first one in the
        # site file is the one that makes the cluster): that is deploy's work, not scale's.
        msg = (f"node {', '.join(joining)} has role control-plane; scale adds workers, GPU "
               "and storage nodes. Add control planes with deploy (check the plan first)")
        raise BadInput(msg)
    return fresh, [node.name for node in loaded.site.nodes
                   if node.name in fresh or node.name in servers]


def resume_layers(loaded: LoadedSite, state: StateDir) -> list[str] | None:
    """The layers a resumed deploy runs: the last deploy's failed layer and those after it.

    None when the last deploy finished ok (nothing to resume), even when an earlier full
    deploy failed and only `--layer` runs followed it. A run that was cut off (still
    'running' in the history) resumes like a failed one; the deploy it starts takes the
    site's lock, so it cannot run beside a live one.
    """
    history = RunHistory(state)
    try:
        last = next((run for run in history.runs(200) if run["verb"] == "deploy"), None)
        if last is None:
            msg = f"site {loaded.site.name} has no deploy in its history; run deploy"
            raise BadInput(msg)
        if last["status"] == "ok":
            return None
        finished: dict[str, bool] = {}
        for row in history.node_results(str(last["id"])):
            ok = not row["failed"] and not row["unreachable"]
            finished[row["layer"]] = finished.get(row["layer"], True) and ok
    finally:
        history.close()
    layers = [str(name) for name in json.loads(last["layers"])]
    known = {layer.name for layer in loaded.blueprint.layers}
    gone = [name for name in layers if name not in known]
    if gone:
        msg = (f"the last deploy ran layer {', '.join(gone)}, which blueprint "
               f"{loaded.blueprint.name} no longer has; run deploy")
        raise BadInput(msg)
    first = next((i for i, name in enumerate(layers) if not finished.get(name)), 0)
    return layers[first:]
