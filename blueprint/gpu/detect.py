"""NVIDIA GPU detection from what a node prints: lspci, mokutil, /proc/modules, apt, nvidia-smi."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, cast

from blueprint.gpu._rules import rules

OpenKernelModules = Literal["required", "supported", "unsupported"]
Flavour = Literal["open", "proprietary"]
SecureBoot = Literal["enabled", "disabled", "unsupported", "unknown"]
Headers = Literal["installed", "installable", "missing"]


@dataclass(frozen=True)
class Gpu:
    """One NVIDIA GPU function (class 0300 or 0302) as lspci names it."""

    address: str
    pci_id: str
    pci_class: str
    name: str
    chip: str | None
    generation: str | None
    open_kernel_modules: OpenKernelModules | None
    first_branch: int | None
    last_branch: int | None
    mig_capable: bool = False


@dataclass(frozen=True)
class NvidiaFunction:
    """An NVIDIA function that is not a GPU: HD audio, USB, UCSI, an NVSwitch bridge."""

    address: str
    pci_id: str
    pci_class: str
    class_name: str


@dataclass(frozen=True)
class Detection:
    """The GPUs of one node and what they need from a driver branch."""

    branch: int
    gpus: tuple[Gpu, ...]
    other_nvidia: tuple[NvidiaFunction, ...]
    open_kernel_modules: OpenKernelModules | None
    default_flavour: Flavour | None
    flavour_conflict: bool

    @property
    def count(self) -> int:
        return len(self.gpus)

    @property
    def pci_ids(self) -> list[str]:
        return sorted({gpu.pci_id for gpu in self.gpus})

    @property
    def generations(self) -> list[str]:
        return sorted({gpu.generation for gpu in self.gpus if gpu.generation})

    @property
    def generation(self) -> str | None:
        """The node's one generation; None with no GPU or several generations."""
        found = self.generations
        return found[0] if len(found) == 1 else None

    def as_facts(self) -> dict[str, Any]:
        """The same dict the module returns on the node (what `decide` reads)."""
        facts: dict[str, Any] = rules().detect_gpus("", self.branch)
        facts.update(
            count=self.count,
            gpus=[_gpu_dict(gpu) for gpu in self.gpus],
            pci_ids=self.pci_ids,
            generations=self.generations,
            generation=self.generation,
            open_kernel_modules=self.open_kernel_modules,
            default_flavour=self.default_flavour,
            flavour_conflict=self.flavour_conflict,
            other_nvidia_functions=[
                {
                    "address": f.address,
                    "pci_id": f.pci_id,
                    "class": f.pci_class,
                    "class_name": f.class_name,
                }
                for f in self.other_nvidia
            ],
        )
        return facts


@dataclass(frozen=True)
class DriverGpu:
    """One GPU as the loaded driver reports it (nvidia-smi --query-gpu ... --format=csv)."""

    index: str
    bus_id: str
    name: str
    driver_version: str
    persistence_mode: str
    mig_mode: str


def detect(lspci_text: str, branch: int) -> Detection:
    """The NVIDIA GPUs in `lspci -nn [-D]` output and what they need on `branch`.

    A node with several generations takes the most restrictive answer: unsupported over
    required over supported, and `flavour_conflict` when no single flavour drives them all.
    """
    facts: dict[str, Any] = rules().detect_gpus(lspci_text, branch)
    gpus = tuple(
        Gpu(
            address=g["address"],
            pci_id=g["pci_id"],
            pci_class=g["class"],
            name=g["name"],
            chip=g["chip"],
            generation=g["generation"],
            open_kernel_modules=g["open_kernel_modules"],
            first_branch=g["first_branch"],
            last_branch=g["last_branch"],
            mig_capable=bool(g["mig_capable"]),
        )
        for g in facts["gpus"]
    )
    others = tuple(
        NvidiaFunction(f["address"], f["pci_id"], f["class"], f["class_name"])
        for f in facts["other_nvidia_functions"]
    )
    return Detection(
        branch=branch,
        gpus=gpus,
        other_nvidia=others,
        open_kernel_modules=facts["open_kernel_modules"],
        default_flavour=facts["default_flavour"],
        flavour_conflict=bool(facts["flavour_conflict"]),
    )


def parse_sb_state(text: str) -> SecureBoot:
    """Secure Boot state from `mokutil --sb-state` output."""
    return cast(SecureBoot, rules().parse_sb_state(text))


def nouveau_loaded(proc_modules: str) -> bool:
    """Whether /proc/modules text lists nouveau."""
    return "nouveau" in cast(set[str], rules().parse_proc_modules(proc_modules))


def headers_state(apt_policy: str, kernel: str) -> Headers:
    """installed / installable / missing for linux-headers-<kernel>, from apt-cache policy."""
    policy = rules().parse_apt_policy(apt_policy)
    return cast(Headers, rules().headers_state(policy, kernel))


def distribution_branch(apt_policy: str, package: str = "nvidia-driver") -> int | None:
    """The driver branch of a package's apt candidate (570 from 570.133.20-1)."""
    entry = rules().parse_apt_policy(apt_policy).get(package) or {}
    return cast(int | None, rules().driver_branch(entry.get("candidate") or ""))


def parse_nvidia_smi(text: str) -> list[DriverGpu]:
    """GPUs in `nvidia-smi --query-gpu=index,pci.bus_id,name,driver_version,...` CSV."""
    rows: list[dict[str, str]] = rules().parse_nvidia_smi_csv(text)
    return [
        DriverGpu(
            index=row.get("index", ""),
            bus_id=row.get("pci.bus_id", ""),
            name=row.get("name", ""),
            driver_version=row.get("driver_version", ""),
            persistence_mode=row.get("persistence_mode", ""),
            mig_mode=row.get("mig.mode.current", ""),
        )
        for row in rows
    ]


def _gpu_dict(gpu: Gpu) -> dict[str, Any]:
    return {
        "address": gpu.address,
        "pci_id": gpu.pci_id,
        "class": gpu.pci_class,
        "name": gpu.name,
        "chip": gpu.chip,
        "generation": gpu.generation,
        "open_kernel_modules": gpu.open_kernel_modules,
        "first_branch": gpu.first_branch,
        "last_branch": gpu.last_branch,
        "mig_capable": gpu.mig_capable,
    }
