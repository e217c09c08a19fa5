"""The GPU validation checks against a fake node that answers with recorded outputs."""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType

import pytest

from blueprint.validate.plugin import CheckFailed, Probe

ROOT = Path(__file__).resolve().parents[3]
FIXTURES = Path(__file__).parent / "fixtures"


def _checks() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "gpu_checks", ROOT / "validation/checks/test_gpu.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


CHECKS = _checks()
ALL = [
    CHECKS.test_driver_loaded,
    CHECKS.test_device_count,
    CHECKS.test_driver_version,
    CHECKS.test_runtime_handler,
    CHECKS.test_cdi_spec_lists_every_gpu,
    CHECKS.test_persistence_mode,
]


@dataclass
class Result:
    rc: int
    stdout: str = ""
    stderr: str = ""


@dataclass
class FakeHost:
    """Answers a command by its first words; anything unknown exits 127."""

    answers: dict[str, Result] = field(default_factory=dict)

    def run(self, command: str) -> Result:
        for prefix, result in self.answers.items():
            if command.startswith(prefix):
                return result
        return Result(127, "", "not found")


P100_LSPCI = (FIXTURES / "lspci" / "shared-datacenter-pascal.lspci").read_text()
SMI = (FIXTURES / "nvidia-smi" / "two-p100.csv").read_text()
RECORD = {
    "source": "cuda-repo",
    "branch": "570",
    "flavour": "proprietary",
    "count": 2,
    "pci_ids": ["10de:15f8"],
    "addresses": ["0000:3b:00.0", "0000:d8:00.0"],
}
CONFIG = """version = 2
[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
  runtime_type = "io.containerd.runc.v2"
[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.nvidia]
  runtime_type = "io.containerd.runc.v2"
[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.nvidia.options]
  BinaryName = "/usr/bin/nvidia-container-runtime"
"""
CDI = """cdiVersion: 0.5.0
kind: nvidia.com/gpu
devices:
- name: "0"
- name: "1"
- name: all
"""


def gpu_node(changes: dict[str, Result] | None = None) -> Probe:
    answers = {
        "cat /etc/blueprint/gpu-layer.json": Result(0, json.dumps(RECORD)),
        "lspci -nn -D": Result(0, P100_LSPCI),
        "nvidia-smi": Result(0, SMI),
        "test -d /sys/module/nvidia": Result(0),
        "cat /proc/driver/nvidia/version": Result(0, "NVRM version: ... 570.133.20 ..."),
        "containerd config dump": Result(0, CONFIG),
        "cat /etc/cdi/nvidia.yaml": Result(0, CDI),
    }
    answers.update(changes or {})
    return Probe(FakeHost(answers))


@pytest.mark.parametrize("check", ALL, ids=lambda c: c.__name__)
def test_every_check_passes_on_a_good_gpu_node(check: Callable[[Probe], None]) -> None:
    check(gpu_node())


@pytest.mark.parametrize("check", ALL, ids=lambda c: c.__name__)
def test_every_check_skips_a_node_without_an_nvidia_gpu(check: Callable[[Probe], None]) -> None:
    lspci = (FIXTURES / "lspci" / "synthetic-audio-only.lspci").read_text()
    node = Probe(FakeHost({"lspci -nn -D": Result(0, lspci)}))
    with pytest.raises(pytest.skip.Exception, match="no NVIDIA GPU on this node"):
        check(node)


def test_a_lab_node_without_lspci_or_gpu_is_skipped() -> None:
    node = Probe(FakeHost({"grep -l 0x10de": Result(0, "")}))
    with pytest.raises(pytest.skip.Exception):
        CHECKS.test_device_count(node)


@pytest.mark.parametrize("check", ALL, ids=lambda c: c.__name__)
def test_a_gpu_node_the_layer_never_ran_on_fails(check: Callable[[Probe], None]) -> None:
    node = Probe(FakeHost({"lspci -nn -D": Result(0, P100_LSPCI)}))
    with pytest.raises(CheckFailed, match=r"no /etc/blueprint/gpu-layer\.json"):
        check(node)


def test_a_missing_gpu_fails_the_count() -> None:
    one = "\n".join(SMI.splitlines()[:2])
    with pytest.raises(CheckFailed, match="nvidia-smi lists 1 GPUs"):
        CHECKS.test_device_count(gpu_node({"nvidia-smi": Result(0, one)}))


def test_another_branch_fails_the_version() -> None:
    record = json.dumps({**RECORD, "branch": "580"})
    node = gpu_node({"cat /etc/blueprint/gpu-layer.json": Result(0, record)})
    with pytest.raises(CheckFailed, match="expected: driver branch 580"):
        CHECKS.test_driver_version(node)


def test_no_driver_fails_with_nvidia_smi_s_message() -> None:
    message = (FIXTURES / "nvidia-smi" / "no-driver.txt").read_text()
    with pytest.raises(CheckFailed, match="couldn't communicate with the NVIDIA driver"):
        CHECKS.test_driver_version(gpu_node({"nvidia-smi": Result(9, message)}))


def test_a_lost_runtime_handler_fails() -> None:
    config = CONFIG.split('[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.nvidia]')[0]
    node = gpu_node({"containerd config dump": Result(0, config)})
    with pytest.raises(CheckFailed, match="seen: runtimes runc"):
        CHECKS.test_runtime_handler(node)


def test_a_cdi_spec_missing_a_gpu_fails() -> None:
    node = gpu_node({"cat /etc/cdi/nvidia.yaml": Result(0, CDI.replace('- name: "1"\n', ""))})
    with pytest.raises(CheckFailed, match="GPUs 1 missing"):
        CHECKS.test_cdi_spec_lists_every_gpu(node)


def test_persistence_off_fails() -> None:
    smi = (FIXTURES / "nvidia-smi" / "a100-persistence-off.csv").read_text()
    record = json.dumps({**RECORD, "count": 1, "addresses": ["0000:07:00.0"]})
    node = gpu_node(
        {"nvidia-smi": Result(0, smi), "cat /etc/blueprint/gpu-layer.json": Result(0, record)}
    )
    with pytest.raises(CheckFailed, match="persistence mode off on GPU 0"):
        CHECKS.test_persistence_mode(node)
