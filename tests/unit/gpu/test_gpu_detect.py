"""GPU detection against a table of lspci captures, each with its provenance and expected value.

Every `fixtures/lspci/<case>.lspci` has a `<case>.yaml` saying where the capture comes from
(a public report's URL, the shared field cases, or "synthetic") and what a correct product
detects in it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from blueprint.gpu import (
    DriverChoice,
    NodeState,
    decide,
    detect,
    headers_state,
    nouveau_loaded,
    parse_nvidia_smi,
    parse_sb_state,
)
from blueprint.gpu.detect import distribution_branch

FIXTURES = Path(__file__).parent / "fixtures"
LSPCI = FIXTURES / "lspci"
CASES = sorted(path.stem for path in LSPCI.glob("*.yaml"))
BRANCH = 570


def case(name: str) -> tuple[str, dict[str, Any]]:
    text = (LSPCI / f"{name}.lspci").read_text(encoding="utf-8")
    meta: dict[str, Any] = yaml.safe_load((LSPCI / f"{name}.yaml").read_text(encoding="utf-8"))
    return text, meta


def test_every_capture_has_its_provenance_and_expected_value() -> None:
    captures = sorted(path.stem for path in LSPCI.glob("*.lspci"))
    assert captures == CASES
    for name in CASES:
        _, meta = case(name)
        assert meta["provenance"], name
        assert isinstance(meta["real"], bool), name
        assert {"nvidia_gpus", "pci_ids", "generation"} <= set(meta["expected"]), name


def test_at_least_ten_real_captures_with_a_known_source() -> None:
    # A known source: a public report's URL, the shared field cases, or a machine recorded
    # with scripts/record-gpu-host.
    known = [
        name
        for name in CASES
        if case(name)[1]["real"]
        and (
            case(name)[1]["url"]
            or case(name)[1]["provenance"].startswith("shared/cases/gpu")
            or case(name)[1].get("recorded_by") == "scripts/record-gpu-host"
        )
    ]
    assert len(known) >= 10, known


def test_the_shared_field_cases_are_in_the_table() -> None:
    shared = {name for name in CASES if name.startswith("shared-")}
    assert shared == {
        "shared-consumer-card-extra-functions",
        "shared-datacenter-pascal",
        "shared-no-nvidia",
        "shared-workstation-vga-class",
    }


@pytest.mark.parametrize("name", CASES)
def test_detection(name: str) -> None:
    text, meta = case(name)
    expected = meta["expected"]

    found = detect(text, BRANCH)

    assert found.count == expected["nvidia_gpus"]
    assert found.pci_ids == sorted(expected["pci_ids"])
    assert found.generation == expected["generation"]
    assert found.open_kernel_modules == expected["open_kernel_modules"]
    assert found.default_flavour == expected["default_flavour"]
    if "generations" in expected:
        assert found.generations == expected["generations"]
    if "addresses" in expected:
        assert [gpu.address for gpu in found.gpus] == expected["addresses"]
    if "other_nvidia_functions" in expected:
        assert len(found.other_nvidia) == expected["other_nvidia_functions"]
    assert found.flavour_conflict == expected.get("flavour_conflict", False)


@pytest.mark.parametrize(
    "name", [n for n in CASES if "plan_error_when_site_pins" in case(n)[1]["expected"]]
)
def test_pinning_a_flavour_the_gpus_cannot_use_stops_at_plan_time(name: str) -> None:
    text, meta = case(name)
    pinned = meta["expected"]["plan_error_when_site_pins"]
    choice = DriverChoice(source="cuda-repo", branch=BRANCH, flavour=pinned)

    outcome = decide(detect(text, BRANCH), choice, NodeState())

    assert outcome.action == "stop"
    assert f"the {pinned} kernel modules are pinned" in outcome.reason


@pytest.mark.parametrize(
    "name", [n for n in CASES if "plan_error_when_branch" in case(n)[1]["expected"]]
)
def test_a_branch_that_cannot_drive_the_gpus_stops_at_plan_time(name: str) -> None:
    text, meta = case(name)
    branch = meta["expected"]["plan_error_when_branch"]
    outcome = decide(detect(text, branch), DriverChoice("cuda-repo", branch), NodeState())
    assert outcome.action == "stop"


def test_an_unknown_gpu_stops_unless_the_flavour_is_pinned() -> None:
    text, _ = case("synthetic-unknown-device")
    found = detect(text, BRANCH)

    auto = decide(found, DriverChoice("cuda-repo", BRANCH), NodeState())
    pinned = decide(found, DriverChoice("cuda-repo", BRANCH, flavour="open"), NodeState())

    assert auto.action == "stop"
    assert "cannot tell the generation of 10de:1f99" in auto.reason
    assert "update-pciids" in auto.remedy
    assert pinned.action == "install"
    assert pinned.flavour == "open"


def test_nvswitch_bridges_and_card_functions_are_listed_but_never_counted() -> None:
    text, _ = case("hgx-h100-nvswitch")
    found = detect(text, BRANCH)
    assert {f.pci_class for f in found.other_nvidia} == {"0680"}
    assert all(gpu.pci_class == "0302" for gpu in found.gpus)


def test_addresses_without_a_domain_get_domain_0000() -> None:
    text, _ = case("shared-datacenter-pascal")
    assert [gpu.address for gpu in detect(text, BRANCH).gpus] == ["0000:3b:00.0", "0000:d8:00.0"]


@pytest.mark.parametrize(
    ("branch", "expected"),
    [
        (470, ("unsupported", "proprietary")),  # no open modules before 515
        (535, ("supported", "proprietary")),  # open exists, proprietary is still the default
        (560, ("supported", "open")),  # open is NVIDIA's default from 560
    ],
)
def test_the_flavour_answer_depends_on_the_branch(branch: int, expected: tuple[str, str]) -> None:
    text, _ = case("tesla-t4-before-driver")
    found = detect(text, branch)
    assert (found.open_kernel_modules, found.default_flavour) == expected


# --- mokutil, /proc/modules, apt-cache policy, nvidia-smi --------------------------------------


@pytest.mark.parametrize(
    ("fixture", "state"),
    [
        ("enabled.txt", "enabled"),
        ("disabled.txt", "disabled"),
        ("setup-mode.txt", "disabled"),
        ("bios-boot.txt", "unsupported"),
        ("no-secure-boot.txt", "unsupported"),
    ],
)
def test_secure_boot_state(fixture: str, state: str) -> None:
    text = (FIXTURES / "mokutil" / fixture).read_text(encoding="utf-8")
    assert parse_sb_state(text) == state


def test_secure_boot_state_is_unknown_for_anything_else() -> None:
    assert parse_sb_state("") == "unknown"
    assert parse_sb_state("mokutil: command not found") == "unknown"


def test_nouveau_loaded() -> None:
    assert nouveau_loaded((FIXTURES / "proc" / "nouveau-loaded.txt").read_text())
    assert not nouveau_loaded((FIXTURES / "proc" / "nvidia-loaded.txt").read_text())
    assert not nouveau_loaded("")


def test_headers_of_a_custom_kernel_are_missing() -> None:
    text = (FIXTURES / "apt" / "ci-host-custom-kernel.txt").read_text(encoding="utf-8")
    assert headers_state(text, "6.18.44-fc-v1252") == "missing"
    assert distribution_branch(text) is None


def test_headers_of_a_debian_kernel_are_installable() -> None:
    text = (FIXTURES / "apt" / "debian-kernel-nonfree.txt").read_text(encoding="utf-8")
    assert headers_state(text, "6.1.0-28-amd64") == "installable"
    assert distribution_branch(text) == 535
    assert distribution_branch(text, "nvidia-open-kernel-dkms") is None


def test_installed_headers() -> None:
    text = "linux-headers-6.1.0-28-amd64:\n  Installed: 6.1.119-1\n  Candidate: 6.1.119-1\n"
    assert headers_state(text, "6.1.0-28-amd64") == "installed"


def test_nvidia_smi_csv() -> None:
    rows = parse_nvidia_smi((FIXTURES / "nvidia-smi" / "two-p100.csv").read_text())
    assert [row.bus_id for row in rows] == ["0000:3b:00.0", "0000:d8:00.0"]
    assert {row.driver_version for row in rows} == {"570.133.20"}
    assert {row.persistence_mode for row in rows} == {"Enabled"}


def test_nvidia_smi_without_a_driver_lists_nothing() -> None:
    assert parse_nvidia_smi((FIXTURES / "nvidia-smi" / "no-driver.txt").read_text()) == []


def test_nvidia_smi_bus_ids_match_lspci_addresses() -> None:
    text, _ = case("shared-datacenter-pascal")
    lspci = {gpu.address for gpu in detect(text, BRANCH).gpus}
    smi = {
        row.bus_id
        for row in parse_nvidia_smi((FIXTURES / "nvidia-smi" / "two-p100.csv").read_text())
    }
    assert smi == lspci


@pytest.mark.parametrize(
    ("name", "capable"),
    [
        ("hgx-h200-8gpu", True),
        ("hgx-h100-nvswitch", True),
        ("synthetic-grace-hopper", True),
        ("tesla-t4-before-driver", False),
        ("rtx5090-audio-unnamed", False),
        ("shared-workstation-vga-class", False),
    ],
)
def test_mig_capability_follows_the_gpu_model(name: str, capable: bool) -> None:
    text, _ = case(name)
    assert {gpu.mig_capable for gpu in detect(text, BRANCH).gpus} == {capable}
