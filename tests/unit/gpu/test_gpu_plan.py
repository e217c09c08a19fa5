"""The GPU layer's decision table: source x flavour x branch x Secure Boot x MOK x headers."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from blueprint.gpu import DriverChoice, Mok, NodeState, decide, detect

LSPCI = Path(__file__).parent / "fixtures" / "lspci"

T4 = "tesla-t4-before-driver"  # Turing: both flavours
P100 = "shared-datacenter-pascal"  # Pascal: proprietary only, last branch 580
RTX5090 = "rtx5090-audio-unnamed"  # Blackwell: open only, first branch 570
H200 = "hgx-h200-8gpu"  # Hopper: first branch 525
NONE = "shared-no-nvidia"
AUDIO_ONLY = "synthetic-audio-only"
MIXED = "synthetic-mixed-blackwell-pascal"

DEBIAN = NodeState(
    secure_boot="disabled", headers="installable", kernel="6.1.0-28-amd64", distribution_branch=570
)
DEBIAN_535 = NodeState(
    secure_boot="disabled", headers="installable", kernel="6.1.0-28-amd64", distribution_branch=535
)
LAB = NodeState(secure_boot="unsupported", headers="missing", kernel="6.18.44-fc-v1252")
GOOD_MOK = Mok("/etc/mok/mok.key", "/etc/mok/mok.der", True, True, True)


@dataclass(frozen=True)
class Row:
    case: str
    choice: DriverChoice
    node: NodeState
    action: str
    flavour: str | None = None
    says: str = ""


TABLE = {
    # Nothing to do
    "source none skips": Row(T4, DriverChoice("none", 570), DEBIAN, "skip", says="'none'"),
    "no gpu skips": Row(NONE, DriverChoice("cuda-repo", 570), DEBIAN, "skip", says="no NVIDIA GPU"),
    "audio only skips": Row(
        AUDIO_ONLY, DriverChoice("cuda-repo", 570), DEBIAN, "skip", says="not GPUs"
    ),
    "gpu node without gpu stops": Row(
        NONE,
        DriverChoice("cuda-repo", 570, require_gpu=True),
        DEBIAN,
        "stop",
        says="gpu node role",
    ),
    # Flavour from detection
    "turing 570 auto installs open": Row(
        T4, DriverChoice("cuda-repo", 570), DEBIAN, "install", "open"
    ),
    "turing 535 auto installs proprietary": Row(
        T4, DriverChoice("distribution", 535), DEBIAN_535, "install", "proprietary"
    ),
    "turing pinned proprietary installs": Row(
        T4, DriverChoice("cuda-repo", 570, flavour="proprietary"), DEBIAN, "install", "proprietary"
    ),
    "pascal auto installs proprietary": Row(
        P100, DriverChoice("cuda-repo", 570), DEBIAN, "install", "proprietary"
    ),
    "pascal pinned open stops": Row(
        P100,
        DriverChoice("cuda-repo", 570, flavour="open"),
        DEBIAN,
        "stop",
        says="Turing and newer",
    ),
    "blackwell pinned proprietary stops": Row(
        RTX5090,
        DriverChoice("cuda-repo", 570, flavour="proprietary"),
        DEBIAN,
        "stop",
        says="works only with the open ones",
    ),
    "turing pinned open on 470 stops": Row(
        T4, DriverChoice("cuda-repo", 470, flavour="open"), DEBIAN, "stop", says="predates"
    ),
    "mixed blackwell and pascal stops": Row(
        MIXED, DriverChoice("cuda-repo", 575), DEBIAN, "stop", says="different kernel module"
    ),
    # Branch against the generation
    "blackwell on 565 is too old": Row(
        RTX5090, DriverChoice("cuda-repo", 565), DEBIAN, "stop", says="needs branch 570 or newer"
    ),
    "blackwell on 570 installs": Row(
        RTX5090, DriverChoice("cuda-repo", 570), DEBIAN, "install", "open"
    ),
    "hopper on 520 is too old": Row(
        H200, DriverChoice("cuda-repo", 520), DEBIAN, "stop", says="525"
    ),
    "pascal on 590 is past its last branch": Row(
        P100, DriverChoice("cuda-repo", 590), DEBIAN, "stop", says="last branch is 580"
    ),
    # Source
    "preinstalled verifies": Row(T4, DriverChoice("preinstalled", 570), LAB, "verify", "open"),
    "preinstalled still checks the branch": Row(
        RTX5090, DriverChoice("preinstalled", 550), LAB, "stop", says="too old"
    ),
    "distribution branch differs stops": Row(
        T4,
        DriverChoice("distribution", 570),
        NodeState(secure_boot="disabled", headers="installable", distribution_branch=535),
        "stop",
        says="offers driver branch 535",
    ),
    "distribution without non-free stops": Row(
        T4,
        DriverChoice("distribution", 535),
        NodeState(headers="installable"),
        "stop",
        says="no nvidia-driver",
    ),
    "distribution open without its package stops": Row(
        T4,
        DriverChoice("distribution", 570, flavour="open"),
        NodeState(headers="installable", distribution_branch=570, distribution_open_package=False),
        "stop",
        says="nvidia-open-kernel-dkms",
    ),
    # Headers
    "lab kernel without headers stops": Row(
        T4, DriverChoice("cuda-repo", 570), LAB, "stop", says="no linux-headers-6.18.44-fc-v1252"
    ),
    "installed headers install": Row(
        T4, DriverChoice("cuda-repo", 570), NodeState(headers="installed"), "install", "open"
    ),
    # Secure Boot and the MOK
    "secure boot without mok stops": Row(
        T4,
        DriverChoice("cuda-repo", 570),
        NodeState(secure_boot="enabled"),
        "stop",
        says="no MOK is given",
    ),
    "secure boot with missing mok files stops": Row(
        T4,
        DriverChoice("cuda-repo", 570),
        NodeState(secure_boot="enabled", mok=Mok("/k", "/c")),
        "stop",
        says="missing on the node",
    ),
    "secure boot with unenrolled mok stops": Row(
        T4,
        DriverChoice("cuda-repo", 570),
        NodeState(secure_boot="enabled", mok=Mok("/k", "/c", True, True, False)),
        "stop",
        says="not enrolled",
    ),
    "secure boot with enrolled mok installs": Row(
        T4,
        DriverChoice("cuda-repo", 570),
        NodeState(secure_boot="enabled", mok=GOOD_MOK),
        "install",
        "open",
    ),
    "unknown secure boot stops": Row(
        T4,
        DriverChoice("cuda-repo", 570),
        NodeState(secure_boot="unknown"),
        "stop",
        says="mokutil",
    ),
    # MIG against the GPU model
    "mig on a t4 stops": Row(
        T4, DriverChoice("cuda-repo", 570, mig=True), DEBIAN, "stop", says="no Multi-Instance GPU"
    ),
    "mig on an h200 installs": Row(
        H200, DriverChoice("cuda-repo", 570, mig=True), DEBIAN, "install", "open"
    ),
    "mig on a consumer blackwell stops": Row(
        RTX5090, DriverChoice("cuda-repo", 570, mig=True), DEBIAN, "stop", says="RTX 5090"
    ),
    "bios boot needs no mok": Row(
        T4, DriverChoice("cuda-repo", 570), NodeState(secure_boot="unsupported"), "install", "open"
    ),
}


@pytest.mark.parametrize("row", list(TABLE.values()), ids=list(TABLE))
def test_decision(row: Row) -> None:
    text = (LSPCI / f"{row.case}.lspci").read_text(encoding="utf-8")

    outcome = decide(detect(text, row.choice.branch), row.choice, row.node)

    assert outcome.action == row.action, outcome.message()
    if row.flavour is not None:
        assert outcome.flavour == row.flavour
    assert row.says in outcome.reason
    if outcome.stops:
        assert outcome.remedy, "a stop always says what to do"


def test_the_lab_stop_names_the_kernel_and_what_to_do() -> None:
    text = (LSPCI / f"{T4}.lspci").read_text(encoding="utf-8")
    outcome = decide(detect(text, 570), DriverChoice("cuda-repo", 570), LAB)
    assert outcome.message() == (
        "no linux-headers-6.18.44-fc-v1252 in the node's apt sources: the running kernel is not "
        "a distribution kernel, so DKMS cannot build the NVIDIA module for it; boot a Debian "
        "kernel whose headers the mirror offers, or install the driver yourself and use the "
        "preinstalled source"
    )


def test_checks_run_before_headers_and_secure_boot() -> None:
    # A flavour the GPU cannot use is reported even where headers and Secure Boot also fail:
    # the operator fixes the blueprint first.
    text = (LSPCI / f"{P100}.lspci").read_text(encoding="utf-8")
    node = NodeState(secure_boot="enabled", headers="missing")
    outcome = decide(detect(text, 570), DriverChoice("cuda-repo", 570, flavour="open"), node)
    assert "open kernel modules are pinned" in outcome.reason
