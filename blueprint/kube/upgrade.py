"""`blueprint upgrade SITE`: the running Kubernetes to the pinned one, one minor at a time.

The running version is read from the nodes (`k3s --version`, `kubelet --version`), the
target is the blueprint's pin or the site's `kubernetes_version`. Kubernetes supports
upgrades of one minor version at a time, so the plan is one step per minor; a patch
upgrade within a minor is one step. Each step runs `playbooks/kubernetes_upgrade.yml`:
control planes one at a time, then the other nodes in batches.
"""

from __future__ import annotations

import json
import logging
import re
import subprocess
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from blueprint.artifacts import load_catalogue, resolve_binaries
from blueprint.errors import BadInput, DeployFailed
from blueprint.inventory import render_inventory
from blueprint.kube.cluster import cluster_nodes, deployed_cluster, first_failure
from blueprint.kube.tokens import cluster_secrets
from blueprint.kube.variables import LAYER, locked_binaries
from blueprint.loader import LoadedSite
from blueprint.playbook import PREFLIGHT, PlaybookResult, require_ansible, run_layers
from blueprint.state import StateDir, new_run_id, recorded_run

log = logging.getLogger(__name__)

UPGRADE_PLAYBOOK = "kubernetes_upgrade"
VERSION_FILE = "kubernetes-version.json"
RELEASE = re.compile(r"v(\d+)\.(\d+)\.(\d+)(?:\+k3s(\d+))?")


@dataclass(frozen=True, order=True)
class Release:
    """A Kubernetes (or k3s) release version, ordered as releases are."""

    major: int
    minor: int
    patch: int
    build: int  # the k3s build number (+k3sN); -1 for plain Kubernetes
    text: str = field(compare=False)

    @property
    def series(self) -> str:
        return f"{self.major}.{self.minor}"


def parse_release(text: str) -> Release:
    """The release a version string names; bad input when it names none."""
    match = RELEASE.fullmatch(text.strip())
    if match is None:
        msg = f"version '{text}' is not a release version like v1.31.4 or v1.31.4+k3s1"
        raise BadInput(msg)
    major, minor, patch, build = match.groups()
    return Release(int(major), int(minor), int(patch), int(build) if build else -1,
                   text.strip())


def upgrade_plan(running: str, target: str, known: list[str]) -> list[str]:
    """The versions to upgrade through, in order: one per minor, ending with `target`.

    `known` are releases the artifact catalogue can install (pinned versions); a minor
    between the running one and the target needs one of them. [] when nothing is to do.
    """
    now, goal = parse_release(running), parse_release(target)
    if (now.build < 0) != (goal.build < 0):
        msg = f"running {running} and target {target} are not the same distribution"
        raise BadInput(msg)
    if goal.major != now.major:
        msg = (f"running {running}, target {target}: a change of major version is not a "
               "Kubernetes upgrade this product knows")
        raise BadInput(msg)
    if goal < now:
        msg = (f"target {target} is older than the running {running}: a downgrade is not "
               "supported (restore from a backup instead)")
        raise BadInput(msg)
    if goal == now:
        return []
    steps = []
    releases = [parse_release(text) for text in known if RELEASE.fullmatch(text)]
    for minor in range(now.minor + 1, goal.minor):
        series = [r for r in releases if (r.major, r.minor) == (now.major, minor)
                  and (r.build < 0) == (now.build < 0)]
        if not series:
            msg = (f"upgrading {running} to {target} goes through {now.major}.{minor}, and "
                   f"the artifact catalogue pins no {now.major}.{minor} release; pin one "
                   "(binaries: sha256:) or upgrade one minor at a time with kubernetes_version")
            raise BadInput(msg)
        steps.append(max(series).text)
    return [*steps, goal.text]


def known_releases(distribution: str) -> list[str]:
    """The versions the catalogue pins a checksum for, for the distribution's binaries."""
    versions: set[str] = set()
    for entry in load_catalogue().binaries.values():
        if entry.layer == LAYER and entry.distribution == distribution and not entry.cni:
            versions |= set(entry.sha256)
    return sorted(versions)


VERSION_COMMAND = {"k3s": "/usr/local/bin/k3s --version",
                   "kubeadm": "/usr/local/bin/kubelet --version"}


def running_versions(
    loaded: LoadedSite, state: StateDir, distribution: str, nodes: list[str],
) -> dict[str, str]:
    """Each node's running release, read on the node; a silent node stops the run."""
    render_inventory(loaded, state)  # also writes the SSH config
    ssh_config = state.root / "ssh_config"

    def read(name: str) -> str:
        cmd = ["ssh", "-F", str(ssh_config), "-o", "ControlPath=none", "-o",
               "ConnectTimeout=10", name, VERSION_COMMAND[distribution]]
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
        except subprocess.TimeoutExpired:
            done = subprocess.CompletedProcess(cmd, 255, "", "no answer within 30 s")
        found = RELEASE.search(done.stdout)
        if done.returncode != 0 or found is None:
            why = (done.stderr.strip().splitlines() or [f"exit {done.returncode}"])[-1]
            msg = (f"node {name}: cannot read the running version ({why}); upgrade needs every "
                   "node of the cluster (remove a dead one with remove-node first)")
            raise DeployFailed(msg)
        return found.group(0)

    with ThreadPoolExecutor(max_workers=min(16, len(nodes))) as pool:
        return dict(zip(nodes, pool.map(read, nodes), strict=True))


@dataclass
class UpgradePlan:
    distribution: str
    running: dict[str, str]  # node -> version
    target: str
    steps: list[str]
    recorded: str | None = None  # the version the last upgrade recorded, if any


def plan_upgrade(loaded: LoadedSite, state: StateDir) -> UpgradePlan:
    """Read the nodes' versions and plan the steps to the site's target version."""
    cluster = deployed_cluster(loaded, state)
    settings = cluster.settings
    running = running_versions(loaded, state, settings.distribution, cluster.nodes)
    newest = max(running.values(), key=parse_release)
    if parse_release(newest) > parse_release(settings.version):
        ahead = sorted(name for name, version in running.items() if version == newest)
        msg = (f"node {', '.join(ahead)} runs {newest}, newer than the target "
               f"{settings.version}: a downgrade is not supported")
        raise BadInput(msg)
    # The oldest node is where the steps start; a node already on a step skips it.
    oldest = min(running.values(), key=parse_release)
    steps = upgrade_plan(oldest, settings.version, known_releases(settings.distribution))
    return UpgradePlan(settings.distribution, running, settings.version, steps,
                       recorded_version(state))


@dataclass
class UpgradeOutcome:
    run_id: str
    results: list[PlaybookResult]


def run_upgrade(
    loaded: LoadedSite, state: StateDir, plan: UpgradePlan, *, batch: int, pause: int,
    drain_timeout: int,
) -> UpgradeOutcome:
    """Run the plan's steps in order; record the version each finished step reached."""
    require_ansible()
    nodes, servers = cluster_nodes(loaded, state)
    layer = next(ly for ly in loaded.blueprint.layers if ly.name == LAYER)
    key = "k3s" if plan.distribution == "k3s" else "kubernetes"
    run_id = new_run_id("upgrade")
    results: list[PlaybookResult] = []
    with state.lock():
        inventory_dir = render_inventory(loaded, state)
        run_dir = state.run_dir(run_id)
        with recorded_run(state, run_id, loaded.site.name, "upgrade", [LAYER]) as history:
            for index, version in enumerate(plan.steps, 1):
                log.info("Upgrading to %s (step %d of %d)", version, index, len(plan.steps))
                binaries = resolve_binaries(loaded.site, LAYER, plan.distribution,
                                            {**layer.versions, key: version},
                                            locked_binaries(loaded))
                extra: dict[str, Any] = {
                    **cluster_secrets(state, create=False),
                    "kubernetes_version": version,
                    "kubernetes_artifacts": [binary.as_variable() for binary in binaries],
                    "kubernetes_upgrade_via": servers[0],
                    "kubernetes_upgrade_batch": batch,
                    "kubernetes_upgrade_pause": pause,
                    "kubernetes_drain_timeout": drain_timeout,
                }
                # The role's preflight first (every binary reachable, its checksum known),
                # so a missing release stops the step before any node is drained.
                step = run_layers({UPGRADE_PLAYBOOK: ["kubernetes"]}, inventory_dir,
                                  run_dir / f"step-{index}", state.facts_dir,
                                  secret_vars=extra, limit=",".join(nodes))
                for result in step:
                    history.record_layer(run_id, f"{result.playbook}:{version}", result.stats)
                    results.append(result)
                    if not result.ok:
                        raise DeployFailed(_failure(result, version))
                record_version(state, version, run_id)
    return UpgradeOutcome(run_id, [r for r in results if r.playbook != PREFLIGHT])


def _failure(result: PlaybookResult, version: str) -> str:
    where = first_failure(result)
    if result.playbook == PREFLIGHT:
        return (f"upgrade to {version}: preflight stopped it before any change{where}; "
                f"log: {result.stdout_file}")
    return (f"upgrade to {version} failed{where}; log: {result.stdout_file}; nodes upgraded "
            "before it keep the new version: fix it and run upgrade again")


def record_version(state: StateDir, version: str, run_id: str) -> None:
    """Keep the version the cluster reached; `upgrade` prints it beside the running ones."""
    path = state.root / VERSION_FILE
    path.write_text(json.dumps({"version": version, "run": run_id}, indent=2),
                    encoding="utf-8")


def recorded_version(state: StateDir) -> str | None:
    """The version the last finished upgrade step reached (None before any upgrade)."""
    path = state.root / VERSION_FILE
    if not path.is_file():
        return None
    return str(json.loads(path.read_text(encoding="utf-8")).get("version") or "") or None
