"""Data of a validation run: the target, the suite, waivers and per-check results."""

from __future__ import annotations

import datetime as dt
import enum
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from blueprint.errors import BadInput, ExitCode
from blueprint.secrets import child_environment

log = logging.getLogger(__name__)

# Layers a check may belong to, in the order the report shows them.
KNOWN_LAYERS = (
    "hardware",
    "os",
    "security",
    "runtime",
    "gpu",
    "kubernetes",
    "storage",
    "ai",
)

# A check layer that is deployed as part of another blueprint layer.
LAYER_DEPLOYED_BY = {"security": "os"}

# Checks that speak to the cluster's API or the AI platform's endpoints, not to a node: they
# run once per site, on the controller, and their results carry this pseudo-node's name.
CLUSTER = "cluster"
CLUSTER_SCOPED = ("kubernetes.cluster.", "ai.")
# The AI checks read their endpoints file (docs/ai-checks.md) from this variable.
AI_ENDPOINTS_ENV = "BLUEPRINT_AI_ENDPOINTS"
# Where a node's check run finds its BMC password (see NodeTarget.bmc_password).
BMC_PASSWORD_ENV = "BLUEPRINT_VALIDATE_BMC_PASSWORD"

CHECK_ID = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z0-9_]+)+$")
DEFAULT_TIMEOUT = 60.0


def layer_of(check_id: str) -> str:
    """The layer of a check: the first part of its id."""
    return check_id.split(".", 1)[0]


def is_cluster_scoped(check_id: str) -> bool:
    """Whether the check runs once per site against the cluster, not on each node."""
    return check_id.startswith(CLUSTER_SCOPED)


class Status(enum.StrEnum):
    """Outcome of one check on one node."""

    PASSED = "passed"
    FAILED = "failed"
    ERROR = "error"
    SKIPPED = "skipped"
    NOT_APPLICABLE = "not_applicable"
    WAIVED = "waived"


class Verdict(enum.StrEnum):
    """Outcome of a whole validation run."""

    PASSED = "passed"
    FAILED = "failed"


@dataclass(frozen=True)
class NodeTarget:
    """One node to validate, as the site names it."""

    name: str
    address: str
    ssh_user: str
    node_roles: list[str] = field(default_factory=list)
    # The blueprint's hardware profile for this node's roles, merged (the largest minimum of
    # each); None when the blueprint has no profile for any of them.
    hardware: dict[str, Any] | None = None
    # The node's BMC as the hardware.bmc checks reach it (address, system, user name, TLS,
    # boot MAC, or the `problem` that stops them); None without a bmc section in the site.
    bmc: dict[str, Any] | None = None
    # The BMC's password: only in the environment of this node's check run, never written.
    bmc_password: str | None = field(default=None, repr=False)

    def check_environment(self) -> dict[str, str]:
        """The environment of this node's pytest run: the controller's without the product's
        credentials, plus this node's BMC password when it has one."""
        if self.bmc_password is None:
            return child_environment()
        return child_environment(**{BMC_PASSWORD_ENV: self.bmc_password})


@dataclass(frozen=True)
class Waiver:
    """A site's explicit acceptance of one failing check (on one node, or on all when None)."""

    check: str
    node: str | None
    reason: str
    expires: dt.date

    def matches(self, check_id: str, node: str) -> bool:
        return self.check == check_id and self.node in (None, node)

    def expired(self, today: dt.date) -> bool:
        return today > self.expires


@dataclass(frozen=True)
class ClusterTarget:
    """Where the cluster-scoped checks look: the cluster's API and the AI platform's endpoints.

    `kube_nodes` and `gpu_nodes` are the node names the site expects in the cluster and with
    GPUs; None when the cluster is not the site's (`validate --kubeconfig` alone), where the
    checks take the nodes the API lists and the nodes labelled as having GPUs.
    """

    kubeconfig: Path | None
    kube_context: str | None = None
    kube_nodes: list[str] | None = None
    gpu_nodes: list[str] | None = None
    ai_endpoints: Path | None = None

    def context(self) -> dict[str, Any]:
        return {
            "kubeconfig": str(self.kubeconfig) if self.kubeconfig else None,
            "kube_context": self.kube_context,
            "kube_nodes": self.kube_nodes,
            "gpu_nodes": self.gpu_nodes,
            "ai_endpoints": str(self.ai_endpoints) if self.ai_endpoints else None,
        }


@dataclass(frozen=True)
class ValidationTarget:
    """What to validate: built by the orchestration code from the site and its blueprint.

    `ssh_config` is an OpenSSH client config with one Host block per node name (HostName,
    User, IdentityFile, UserKnownHostsFile, StrictHostKeyChecking yes, ControlMaster/Path/
    Persist). Nothing from the site's vault belongs here.
    """

    site_name: str
    blueprint_layers: list[str]
    suite_file: Path
    nodes: list[NodeTarget]
    ssh_config: Path
    waivers: list[Waiver] = field(default_factory=list)
    # What the deployed layers promise, handed to every check as `expected` (see
    # docs/validation.md): required packages, pinned versions, the CRI socket.
    context: dict[str, Any] = field(default_factory=dict)
    # The cluster-scoped checks' target; without it they report not applicable.
    cluster: ClusterTarget = field(default_factory=lambda: ClusterTarget(kubeconfig=None))


class SuiteCheck(BaseModel):
    """One entry of a suite file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str
    mandatory: bool
    show_stopper: bool = False
    timeout: float = Field(default=DEFAULT_TIMEOUT, gt=0, le=3600)

    @field_validator("id")
    @classmethod
    def _known_id(cls, value: str) -> str:
        if not CHECK_ID.match(value):
            msg = f"check id '{value}' is not of the form <layer>.<name>[.<name>...]"
            raise ValueError(msg)
        if layer_of(value) not in KNOWN_LAYERS:
            msg = f"layer '{layer_of(value)}' is not known; use one of {', '.join(KNOWN_LAYERS)}"
            raise ValueError(msg)
        return value

    @property
    def layer(self) -> str:
        return layer_of(self.id)

    @property
    def counts_for_verdict(self) -> bool:
        return self.mandatory or self.show_stopper

    @property
    def cluster_scoped(self) -> bool:
        return is_cluster_scoped(self.id)


PORT = re.compile(r"^\d{1,5}/(tcp|udp)$")
LYNIS_TEST = re.compile(r"^[A-Z]+-\d{4}(:[A-Za-z0-9_.-]+)?$")


class LynisPolicy(BaseModel):
    """What a `lynis audit system` on a node must show."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    min_hardening_index: int = Field(ge=0, le=100)
    must_pass: list[str] = Field(default_factory=list)
    # Test groups to run (lynis --tests-from-group); empty runs the whole audit.
    groups: list[str] = Field(default_factory=list)

    @field_validator("must_pass")
    @classmethod
    def _test_ids(cls, value: list[str]) -> list[str]:
        bad = [test for test in value if not LYNIS_TEST.match(test)]
        if bad:
            msg = f"{', '.join(bad)}: not a lynis test such as SSH-7408 or SSH-7408:PermitRootLogin"
            raise ValueError(msg)
        return value


class ClusterPolicy(BaseModel):
    """How the Kubernetes-API checks (`kubernetes.cluster.*`) probe a site's cluster."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # Seconds one API request may take before the check gives up on it.
    request_timeout: float = Field(default=15.0, gt=0, le=300)
    # pvc_round_trip: the StorageClass of its claim (None: the cluster's default class),
    # the claim's size, and the image of its two pods. The image must be pullable by every
    # node: from its registry, or from the site's registry mirror.
    pvc_storage_class: str | None = None
    pvc_size: str = "64Mi"
    probe_image: str = "busybox:1.36"
    # Seconds each probe pod may take from creation to its end (image pull included), and
    # the claim to be Bound once its first pod ran.
    pod_timeout: float = Field(default=180.0, gt=0, le=3600)
    bind_timeout: float = Field(default=60.0, gt=0, le=3600)
    # Seconds the throwaway namespace may take to disappear after its deletion.
    cleanup_timeout: float = Field(default=60.0, ge=0, le=3600)
    # conformance (optional): the e2e tests sonobuoy or hydrophone run, and their time limit.
    conformance_focus: str = r"\[sig-node\] Pods should be submitted and removed"
    conformance_timeout: float = Field(default=1800.0, gt=0, le=86400)


class SuitePolicy(BaseModel):
    """Site-independent expectations of a suite's checks."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # Ports that may listen on a non-loopback address, as <port>/<tcp|udp>.
    listening_ports: list[str] = Field(default_factory=lambda: ["22/tcp"])
    lynis: LynisPolicy | None = None
    # kubernetes.certs.expiry fails when a cluster certificate lapses within this many days.
    certificate_min_days: int = Field(default=30, ge=1)
    # How the Kubernetes-API checks probe the cluster (one run per site, from the controller).
    cluster: ClusterPolicy = Field(default_factory=ClusterPolicy)

    @field_validator("listening_ports")
    @classmethod
    def _ports(cls, value: list[str]) -> list[str]:
        bad = [port for port in value if not PORT.match(port) or int(port.split("/")[0]) > 65535]
        if bad:
            msg = f"{', '.join(bad)}: use <port>/tcp or <port>/udp with a port up to 65535"
            raise ValueError(msg)
        return value


class Suite(BaseModel):
    """A blueprint's validation suite: which checks run, and which of them must pass."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    description: str = ""
    policy: SuitePolicy = Field(default_factory=SuitePolicy)
    checks: list[SuiteCheck]

    @field_validator("checks")
    @classmethod
    def _unique(cls, value: list[SuiteCheck]) -> list[SuiteCheck]:
        seen: set[str] = set()
        for check in value:
            if check.id in seen:
                msg = f"check '{check.id}' is listed twice"
                raise ValueError(msg)
            seen.add(check.id)
        return value


def load_suite(path: Path) -> Suite:
    """Read and check a suite file; a bad file raises BadInput naming the file and field."""
    try:
        data: Any = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        msg = f"{path}: cannot read the suite file: {exc.strerror}"
        raise BadInput(msg) from exc
    except yaml.YAMLError as exc:
        msg = f"{path}: not valid YAML: {exc}"
        raise BadInput(msg) from exc

    try:
        return Suite.model_validate(data)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            where = ".".join(str(part) for part in error["loc"]) or "(top)"
            where = _name_entry(data, error["loc"], where)
            problems.append(f"{path}: {where}: {error['msg']}")
        raise BadInput("\n".join(problems)) from exc


def _name_entry(data: Any, loc: tuple[int | str, ...], where: str) -> str:
    # "checks.3.mandatory" reads better as "checks[3] (os.swap_off).mandatory".
    if len(loc) >= 2 and loc[0] == "checks" and isinstance(loc[1], int):
        try:
            check_id = data["checks"][loc[1]]["id"]
        except (KeyError, IndexError, TypeError):
            return where
        rest = ".".join(str(part) for part in loc[2:])
        return f"checks[{loc[1]}] ({check_id})" + (f".{rest}" if rest else "")
    return where


@dataclass(frozen=True)
class CommandRecord:
    """A command a check ran on a node, with what it printed."""

    command: str
    rc: int | None
    stdout: str
    stderr: str

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> CommandRecord:
        return cls(
            command=str(data.get("command", "")),
            rc=data.get("rc"),
            stdout=str(data.get("stdout", "")),
            stderr=str(data.get("stderr", "")),
        )


@dataclass
class CheckResult:
    """The result of one check on one node, after waivers are applied."""

    check_id: str
    node: str
    status: Status
    mandatory: bool
    show_stopper: bool = False
    duration: float = 0.0
    message: str = ""
    commands: list[CommandRecord] = field(default_factory=list)
    # Before a waiver turned it into `waived` (or an expired one left it as it was).
    raw_status: Status | None = None
    waiver: Waiver | None = None
    waiver_expired: bool = False

    @property
    def layer(self) -> str:
        return layer_of(self.check_id)

    @property
    def counts_for_verdict(self) -> bool:
        return self.mandatory or self.show_stopper


@dataclass(frozen=True)
class ReportPaths:
    """Where the run's outputs were written."""

    junit: list[Path]
    json: Path
    html: Path


@dataclass
class ValidationReport:
    """The outcome of `run_validation`."""

    site_name: str
    suite_name: str
    started: dt.datetime
    finished: dt.datetime
    verdict: Verdict
    results: list[CheckResult]
    waivers: list[Waiver]
    paths: ReportPaths
    run_id: str = ""
    include_optional: bool = False
    # What changed since the previous run (docs/validation.md), when there was one.
    changes: dict[str, Any] | None = None

    @property
    def exit_code(self) -> ExitCode:
        if self.verdict is Verdict.PASSED:
            return ExitCode.OK
        return ExitCode.VALIDATION_FAILED

    def failed_checks(self) -> set[tuple[str, str]]:
        """(check id, node) of every result that failed (waived ones excluded)."""
        return {(r.check_id, r.node) for r in self.results if r.status is Status.FAILED}

    def errored_checks(self) -> set[tuple[str, str]]:
        """(check id, node) of every result that could not be decided."""
        return {(r.check_id, r.node) for r in self.results if r.status is Status.ERROR}

    def by_status(self, status: Status) -> set[tuple[str, str]]:
        return {(r.check_id, r.node) for r in self.results if r.status is status}
