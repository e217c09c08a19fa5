"""The GPU layer's plan-time decision: skip, install, verify, or stop before any change."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, cast

from blueprint.gpu._rules import rules
from blueprint.gpu.detect import Detection, Flavour, Headers, SecureBoot

Source = Literal["distribution", "cuda-repo", "preinstalled", "none"]
Action = Literal["skip", "install", "verify", "stop"]


@dataclass(frozen=True)
class DriverChoice:
    """What the blueprint (and the site's overrides) ask of the GPU layer."""

    source: Source
    branch: int
    flavour: Flavour | Literal["auto"] = "auto"
    require_gpu: bool = False
    mig: bool = False


@dataclass(frozen=True)
class Mok:
    """The operator's Machine Owner Key as the node sees it."""

    key: str = ""
    cert: str = ""
    key_exists: bool = False
    cert_exists: bool = False
    enrolled: bool | None = None

    @property
    def provided(self) -> bool:
        return bool(self.key and self.cert)


@dataclass(frozen=True)
class NodeState:
    """What the node offers an install: Secure Boot, MOK, headers, the distribution's driver."""

    secure_boot: SecureBoot = "disabled"
    mok: Mok = field(default_factory=Mok)
    headers: Headers = "installable"
    kernel: str = ""
    distribution_branch: int | None = None
    distribution_open_package: bool = True


@dataclass(frozen=True)
class Outcome:
    """The decision for one node, with the reason shown in plan and the run summary."""

    action: Action
    flavour: Flavour | None
    reason: str
    remedy: str

    @property
    def stops(self) -> bool:
        return self.action == "stop"

    def message(self) -> str:
        """One line: the reason, then what to do when it stops."""
        return f"{self.reason}; {self.remedy}" if self.remedy else self.reason


def decide(detection: Detection, choice: DriverChoice, node: NodeState) -> Outcome:
    """The outcome for one node; the same rules the node's preflight applies."""
    mok: dict[str, Any] = {
        "provided": node.mok.provided,
        "key": node.mok.key,
        "cert": node.mok.cert,
        "key_exists": node.mok.key_exists,
        "cert_exists": node.mok.cert_exists,
        "enrolled": node.mok.enrolled,
    }
    result: dict[str, Any] = rules().decide(
        detection.as_facts(),
        source=choice.source,
        branch=choice.branch,
        flavour=choice.flavour,
        require_gpu=choice.require_gpu,
        secure_boot=node.secure_boot,
        mok=mok,
        headers=node.headers,
        kernel=node.kernel,
        distribution_branch=node.distribution_branch,
        distribution_open_package=node.distribution_open_package,
        mig=choice.mig,
    )
    return Outcome(
        action=cast(Action, result["action"]),
        flavour=cast(Flavour | None, result["flavour"]),
        reason=str(result["reason"]),
        remedy=str(result["remedy"]),
    )
