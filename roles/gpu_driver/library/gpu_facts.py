#!/usr/bin/python
"""NVIDIA GPU facts of a node and the driver decision for it, as one self-contained file.

This file is both the Ansible module that runs ON THE NODE and the single source of the
parsing and decision rules: `blueprint/gpu/detect.py` and `blueprint/gpu/plan.py` load it
from the role's path and wrap it in typed objects. It imports nothing from `blueprint` (the
node has no such package) and nothing from Ansible outside `main()`, so the same functions
run under pytest on the controller and inside the module on the node.
"""

from __future__ import annotations

import csv
import io
import os
import re
import shutil
import subprocess
from typing import Any

DOCUMENTATION = r"""
---
module: gpu_facts
short_description: NVIDIA GPU inventory of a node and the driver decision for it.
description:
  - Runs C(lspci -nn -D) on the node and keeps the NVIDIA functions of class 0300 (VGA
    compatible controller) or 0302 (3D controller); audio, USB, serial bus and NVSwitch
    bridge functions are not GPUs.
  - Names each GPU's generation from the chip code name in the PCI ID database name, and
    says whether NVIDIA's open kernel modules are required, supported or unsupported for
    the requested driver branch.
  - Reads the Secure Boot state (mokutil), whether nouveau is loaded, the running kernel,
    and whether its headers and the driver packages have an apt candidate.
  - Decides what the GPU layer does on this node - skip, install, verify or stop - before
    anything is changed. The module itself never changes the node.
options:
  source:
    description: Driver source - distribution, cuda-repo, preinstalled or none.
    type: str
    default: distribution
  branch:
    description: Driver branch, e.g. "570".
    type: str
    required: true
  flavour:
    description: Pinned kernel module flavour - open, proprietary, or auto.
    type: str
    default: auto
  require_gpu:
    description: Stop when no GPU is found (a node of the gpu node role).
    type: bool
    default: false
  mok_key:
    description: Path on the node of the operator's MOK private key ("" for none).
    type: str
    default: ""
  mok_cert:
    description: Path on the node of the operator's MOK certificate (DER or PEM).
    type: str
    default: ""
  apt_packages:
    description: Packages whose apt candidate is reported (the headers are always added).
    type: list
    elements: str
    default: []
  query_driver:
    description: Also run nvidia-smi and report the GPUs the loaded driver sees.
    type: bool
    default: false
  mig:
    description: MIG is wanted on this node; a GPU model without MIG stops the layer.
    type: bool
    default: false
"""

RETURN = r"""
gpu:
  description: Detection, the parsed driver view and the decision (see docs/gpu.md).
  returned: always
  type: dict
"""

NVIDIA_VENDOR = "10de"
# Display controller classes that are GPUs. 0380 ("Display controller") is left out on
# purpose: no NVIDIA GPU that the driver supports enumerates with it.
GPU_CLASSES = ("0300", "0302")

# One function line of `lspci -nn [-D] [-v|-k]`: address, class name [class], description
# [vendor:device], then "(rev xx)" / "(prog-if ...)". Indented lines (Subsystem, Kernel
# driver in use, Capabilities) never match.
_LSPCI_LINE = re.compile(
    r"^(?P<address>(?:[0-9a-f]{4,8}:)?[0-9a-f]{2}:[0-9a-f]{2}\.[0-7])\s+"
    r"(?P<class_name>[^\[]+?)\s*\[(?P<class>[0-9a-f]{4})\]:\s*"
    r"(?P<description>.*?)\s*\[(?P<vendor>[0-9a-f]{4}):(?P<device>[0-9a-f]{4})\]"
    r"(?P<rest>.*)$",
    re.IGNORECASE,
)
_VENDOR_PREFIX = re.compile(r"^nvidia corporation\s*", re.IGNORECASE)

# Chip code name prefix in the PCI ID database name -> generation.
CODENAME_GENERATIONS = {
    "GF": "fermi",
    "GK": "kepler",
    "GM": "maxwell",
    "GP": "pascal",
    "GV": "volta",
    "TU": "turing",
    "GA": "ampere",
    "AD": "ada",
    "GH": "hopper",
    "GB": "blackwell",
}
_CODENAME = re.compile(r"^(GF|GK|GM|GP|GV|TU|GA|AD|GH|GB)(\d{2,3}[A-Z]?)", re.IGNORECASE)

# Device ID blocks of the generations new enough that an older pci.ids on the node names
# them only "Device 2b85": the name then has no code name and the ID decides.
_DEVICE_ID_BLOCKS = (
    (0x2300, 0x234F, "hopper"),
    (0x2680, 0x28FF, "ada"),
    (0x2900, 0x2FFF, "blackwell"),
    (0x3180, 0x31FF, "blackwell"),
)

OPEN_REQUIRED = "required"
OPEN_SUPPORTED = "supported"
OPEN_UNSUPPORTED = "unsupported"
_PRE_TURING = ("fermi", "kepler", "maxwell", "pascal", "volta")

# Open kernel modules: none before Turing (they need the GSP that Turing introduced);
# Blackwell and Grace Hopper work only with them.
_OPEN_BY_GENERATION = {
    "fermi": OPEN_UNSUPPORTED,
    "kepler": OPEN_UNSUPPORTED,
    "maxwell": OPEN_UNSUPPORTED,
    "pascal": OPEN_UNSUPPORTED,
    "volta": OPEN_UNSUPPORTED,
    "turing": OPEN_SUPPORTED,
    "ampere": OPEN_SUPPORTED,
    "ada": OPEN_SUPPORTED,
    "hopper": OPEN_SUPPORTED,
    "blackwell": OPEN_REQUIRED,
}
# First branch that ships the open flavour at all, and first where it is the default.
OPEN_FIRST_BRANCH = 515
OPEN_DEFAULT_BRANCH = 560

# (first, last) driver branch that drives each generation; None: no limit known.
_BRANCHES_BY_GENERATION: dict[str, tuple[int | None, int | None]] = {
    "fermi": (None, 390),
    "kepler": (None, 470),
    "maxwell": (None, 580),
    "pascal": (None, 580),
    "volta": (None, 580),
    "turing": (410, None),
    "ampere": (455, None),
    "ada": (520, None),
    "hopper": (525, None),
    "blackwell": (570, None),
}
# Chips whose first branch differs from their generation's.
_FIRST_BRANCH_BY_CHIP = {"GA100": 450, "GB110": 580}

# Chips with Multi-Instance GPU: the A100/A30 (GA100), H100/H200/GH200 (GH100) and B200/B300
# (GB100, GB110); among other chips only the RTX PRO 6000 Blackwell boards have it.
_MIG_CHIPS = ("GA100", "GH100", "GB100", "GB110")
_MIG_NAMES = ("RTX PRO 6000 BLACKWELL",)

SB_ENABLED = "enabled"
SB_DISABLED = "disabled"
SB_UNSUPPORTED = "unsupported"  # legacy BIOS boot: no Secure Boot at all
SB_UNKNOWN = "unknown"

SOURCES = ("distribution", "cuda-repo", "preinstalled", "none")
FLAVOURS = ("open", "proprietary")

# --- parsing ----------------------------------------------------------------------------------


def parse_lspci(text: str) -> list[dict[str, str]]:
    """Every PCI function line of `lspci -nn` output, in order, as plain dicts."""
    functions = []
    for line in text.splitlines():
        match = _LSPCI_LINE.match(line.strip("\r")) if line[:1] not in " \t" else None
        if match is None:
            continue
        address = match["address"].lower()
        if address.count(":") == 1:
            address = "0000:" + address
        functions.append(
            {
                "address": address,
                "class": match["class"].lower(),
                "class_name": match["class_name"].strip(),
                "vendor": match["vendor"].lower(),
                "device": match["device"].lower(),
                "description": match["description"].strip(),
            }
        )
    return functions


def gpu_name(description: str) -> str:
    """The PCI ID database name without the vendor, e.g. 'GP100GL [Tesla P100 PCIe 16GB]'."""
    return _VENDOR_PREFIX.sub("", description).strip()


def chip(name: str) -> str | None:
    """The chip code name at the start of a GPU name ('GV100GL' -> 'GV100'), or None."""
    match = _CODENAME.match(name)
    return (match[1] + match[2]).upper() if match else None


def generation(name: str, device: str) -> str | None:
    """GPU generation from the code name, else from the device ID block, else None."""
    code = chip(name)
    if code is not None:
        return CODENAME_GENERATIONS[code[:2]]
    number = int(device, 16)
    for first, last, gen in _DEVICE_ID_BLOCKS:
        if first <= number <= last:
            return gen
    return None


def open_kernel_modules(gen: str | None, name: str, branch: int) -> str | None:
    """required / supported / unsupported for one GPU on `branch`; None if unknown."""
    if gen is None:
        return None
    answer = _OPEN_BY_GENERATION[gen]
    # Grace Hopper (GH200) runs only with the open modules, unlike a PCIe or SXM H100.
    if gen == "hopper" and "GH200" in name.upper():
        answer = OPEN_REQUIRED
    if answer != OPEN_UNSUPPORTED and branch < OPEN_FIRST_BRANCH:
        # Before 515 there were no open modules: such a branch cannot drive a GPU that
        # needs them, and gives only the proprietary flavour to the others.
        return OPEN_REQUIRED if answer == OPEN_REQUIRED else OPEN_UNSUPPORTED
    return answer


def branch_range(gen: str | None, name: str) -> tuple[int | None, int | None]:
    """(first, last) driver branch that drives this GPU; (None, None) when unknown."""
    if gen is None:
        return (None, None)
    first, last = _BRANCHES_BY_GENERATION[gen]
    code = chip(name)
    if code is not None and code in _FIRST_BRANCH_BY_CHIP:
        first = _FIRST_BRANCH_BY_CHIP[code]
    if gen == "hopper" and "GH200" in name.upper():
        first = max(first or 0, 535)
    return (first, last)


def mig_capable(name: str) -> bool:
    """Whether the GPU offers Multi-Instance GPU, from its chip and board name."""
    code = chip(name)
    return (code is not None and code in _MIG_CHIPS) or any(n in name.upper() for n in _MIG_NAMES)


def combine_open(answers: list[str | None]) -> str | None:
    """The most restrictive answer of several GPUs of one node.

    unsupported wins over required (the node cannot use the open modules at all), required
    over supported; `flavour_conflict` tells when both unsupported and required appear.
    """
    known = [a for a in answers if a is not None]
    if not known or len(known) != len(answers):
        return None
    for answer in (OPEN_UNSUPPORTED, OPEN_REQUIRED):
        if answer in known:
            return answer
    return OPEN_SUPPORTED


def flavour_conflict(answers: list[str | None]) -> bool:
    return OPEN_UNSUPPORTED in answers and OPEN_REQUIRED in answers


def default_flavour(open_answer: str | None, branch: int) -> str | None:
    """The flavour picked when nothing is pinned: NVIDIA's default from branch 560 on."""
    if open_answer is None:
        return None
    if open_answer == OPEN_REQUIRED:
        return "open"
    if open_answer == OPEN_UNSUPPORTED:
        return "proprietary"
    return "open" if branch >= OPEN_DEFAULT_BRANCH else "proprietary"


def detect_gpus(lspci_text: str, branch: int) -> dict[str, Any]:
    """The NVIDIA GPUs of `lspci -nn` output and what they need on `branch`."""
    gpus: list[dict[str, Any]] = []
    other_nvidia: list[dict[str, str]] = []
    answers: list[str | None] = []
    for function in parse_lspci(lspci_text):
        if function["vendor"] != NVIDIA_VENDOR:
            continue
        if function["class"] not in GPU_CLASSES:
            other_nvidia.append(
                {
                    "address": function["address"],
                    "pci_id": f"{function['vendor']}:{function['device']}",
                    "class": function["class"],
                    "class_name": function["class_name"],
                }
            )
            continue
        name = gpu_name(function["description"])
        gen = generation(name, function["device"])
        first, last = branch_range(gen, name)
        answers.append(open_kernel_modules(gen, name, branch))
        gpus.append(
            {
                "address": function["address"],
                "pci_id": f"{function['vendor']}:{function['device']}",
                "class": function["class"],
                "name": name,
                "chip": chip(name),
                "generation": gen,
                "open_kernel_modules": answers[-1],
                "first_branch": first,
                "last_branch": last,
                "mig_capable": mig_capable(name),
            }
        )
    combined = combine_open(answers) if gpus else None
    generations = sorted({str(g["generation"]) for g in gpus if g["generation"]})
    return {
        "count": len(gpus),
        "gpus": gpus,
        "pci_ids": sorted({str(g["pci_id"]) for g in gpus}),
        "generations": generations,
        "generation": generations[0] if len(generations) == 1 else None,
        "open_kernel_modules": combined,
        "flavour_conflict": flavour_conflict(answers),
        "default_flavour": None if flavour_conflict(answers) else default_flavour(combined, branch),
        "other_nvidia_functions": other_nvidia,
    }


def parse_sb_state(text: str) -> str:
    """Secure Boot state from `mokutil --sb-state` output (stdout and stderr together)."""
    lowered = text.lower()
    if "secureboot enabled" in lowered:
        return SB_ENABLED
    if "secureboot disabled" in lowered:
        return SB_DISABLED
    if "doesn't support secure boot" in lowered or "efi variables are not supported" in lowered:
        return SB_UNSUPPORTED
    return SB_UNKNOWN


def parse_proc_modules(text: str) -> set[str]:
    """Names of the loaded modules in /proc/modules text."""
    return {line.split()[0] for line in text.splitlines() if line.strip()}


def parse_apt_policy(text: str) -> dict[str, dict[str, str | None]]:
    """{package: {installed, candidate}} from `apt-cache policy P...` ("(none)" -> None).

    apt prints nothing at all for a package no source knows: such a package is absent.
    """
    packages: dict[str, dict[str, str | None]] = {}
    current = None
    for line in text.splitlines():
        if line and not line[0].isspace() and line.rstrip().endswith(":"):
            current = line.rstrip()[:-1]
            packages[current] = {"installed": None, "candidate": None}
            continue
        stripped = line.strip()
        if current is None:
            continue
        for key in ("installed", "candidate"):
            if stripped.lower().startswith(key + ":"):
                value = stripped.split(":", 1)[1].strip()
                packages[current][key] = None if value in ("", "(none)") else value
    return packages


def headers_state(policy: dict[str, dict[str, str | None]], kernel: str) -> str:
    """installed / installable / missing for linux-headers-<kernel>."""
    entry = policy.get(f"linux-headers-{kernel}")
    if entry is None:
        return "missing"
    if entry["installed"]:
        return "installed"
    return "installable" if entry["candidate"] else "missing"


def parse_nvidia_smi_csv(text: str) -> list[dict[str, str]]:
    """Rows of `nvidia-smi --query-gpu=... --format=csv` (header line kept or not).

    Keys are the query field names; a PCI bus ID is normalised to 0000:bb:dd.f so it
    compares with lspci's addresses.
    """
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines:
        return []
    reader = csv.reader(io.StringIO("\n".join(lines)), skipinitialspace=True)
    rows = [[cell.strip() for cell in row] for row in reader]
    header = [h.split(" [")[0] for h in rows[0]]
    if "index" not in header and "pci.bus_id" not in header and "name" not in header:
        return []
    parsed = []
    for row in rows[1:]:
        entry = dict(zip(header, row, strict=False))
        if "pci.bus_id" in entry:
            entry["pci.bus_id"] = normalise_bus_id(entry["pci.bus_id"])
        parsed.append(entry)
    return parsed


def normalise_bus_id(bus_id: str) -> str:
    """'00000000:3B:00.0' -> '0000:3b:00.0'."""
    bus_id = bus_id.lower()
    domain, _, rest = bus_id.rpartition(":")
    domain, _, bus = domain.rpartition(":") if domain.count(":") else ("", "", domain)
    domain = (domain or "0")[-4:].rjust(4, "0")
    return f"{domain}:{bus}:{rest}"


def driver_branch(version: str) -> int | None:
    """570 from '570.133.20'; None when the text is not a driver version."""
    match = re.match(r"^\s*(\d{3})\.", version or "")
    return int(match[1]) if match else None


# --- the decision -----------------------------------------------------------------------------


def _outcome(
    action: str, reason: str, remedy: str = "", flavour: str | None = None
) -> dict[str, Any]:
    return {"action": action, "flavour": flavour, "reason": reason, "remedy": remedy}


def _stop(reason: str, remedy: str) -> dict[str, Any]:
    return _outcome("stop", reason, remedy)


def decide(
    detection: dict[str, Any],
    *,
    source: str,
    branch: int,
    flavour: str = "auto",
    require_gpu: bool = False,
    secure_boot: str = SB_UNKNOWN,
    mok: dict[str, Any] | None = None,
    headers: str = "missing",
    kernel: str = "",
    distribution_branch: int | None = None,
    distribution_open_package: bool = True,
    mig: bool = False,
) -> dict[str, Any]:
    """What the GPU layer does on a node, decided before any change.

    Returns {action: skip|install|verify|stop, flavour, reason, remedy}. The checks run in
    this order: source, GPU present, generation known, branch in range, flavour usable,
    then for an install the package offer, the kernel headers and Secure Boot.
    """
    if source not in SOURCES:
        return _stop(f"driver source '{source}' is not known", f"use one of {', '.join(SOURCES)}")
    if source == "none":
        return _outcome("skip", "the blueprint's GPU driver source is 'none'")

    gpus: list[dict[str, Any]] = list(detection.get("gpus") or [])
    if not gpus:
        return _no_gpu(detection, require_gpu)

    problem = _hardware_problem(gpus, detection, branch, flavour)
    if problem is not None:
        return problem
    chosen = (
        flavour
        if flavour in FLAVOURS
        else default_flavour(detection.get("open_kernel_modules"), branch)
    )
    problem = _flavour_problem(gpus, detection.get("open_kernel_modules"), chosen, branch)
    if problem is not None:
        return problem
    without_mig = [g for g in gpus if not g.get("mig_capable")]
    if mig and without_mig:
        return _stop(
            "MIG is requested but " + ", ".join(_label(g) for g in without_mig) + " has no "
            "Multi-Instance GPU (A100, A30, H100, H200, GH200, B200, B300, RTX PRO 6000 Blackwell)",
            "set gpu_driver_mig: false for this node, or use time-slicing instead",
        )

    if source == "preinstalled":
        reason = f"driver preinstalled: verify branch {branch} ({chosen} modules expected)"
        return _outcome("verify", reason, flavour=chosen)

    problem = _install_problem(
        source=source,
        branch=branch,
        chosen=chosen,
        secure_boot=secure_boot,
        mok=mok or {},
        headers=headers,
        kernel=kernel,
        distribution_branch=distribution_branch,
        distribution_open_package=distribution_open_package,
    )
    if problem is not None:
        return problem
    reason = f"install driver branch {branch} from {source} with the {chosen} kernel modules"
    return _outcome("install", reason, flavour=chosen)


def _no_gpu(detection: dict[str, Any], require_gpu: bool) -> dict[str, Any]:
    others = detection.get("other_nvidia_functions") or []
    seen = f" ({len(others)} NVIDIA functions that are not GPUs)" if others else ""
    what = f"no NVIDIA GPU (vendor 10de, class 0300 or 0302){seen}"
    if require_gpu:
        return _stop(
            f"{what} on a node of the gpu node role",
            "check that the card is seated and enabled in the firmware, "
            "or take the gpu role off this node",
        )
    return _outcome("skip", f"{what} on this node")


def _label(gpu: dict[str, Any]) -> str:
    return f"{gpu['pci_id']} {gpu['name']} ({gpu['generation'] or 'unknown generation'})"


def _hardware_problem(
    gpus: list[dict[str, Any]], detection: dict[str, Any], branch: int, flavour: str
) -> dict[str, Any] | None:
    # An unknown generation is accepted only when the operator pinned the flavour.
    unknown = [g for g in gpus if g.get("generation") is None]
    if unknown and flavour not in FLAVOURS:
        listed = ", ".join(f"{g['pci_id']} '{g['name']}'" for g in unknown)
        return _stop(
            f"cannot tell the generation of {listed}: the node's PCI ID database names no chip",
            "update the PCI ID database on the node (update-pciids) or pin gpu_driver_flavour",
        )
    for gpu in gpus:
        first, last = gpu.get("first_branch"), gpu.get("last_branch")
        if first is not None and branch < first:
            return _stop(
                f"driver branch {branch} is too old for {_label(gpu)}: "
                f"it needs branch {first} or newer",
                f"pin gpu_driver_branch to {first} or newer in the blueprint",
            )
        if last is not None and branch > last:
            return _stop(
                f"driver branch {branch} no longer drives {_label(gpu)}: its last branch is {last}",
                f"pin gpu_driver_branch to {last} or older for this node",
            )
    if detection.get("flavour_conflict"):
        listed = ", ".join(_label(g) for g in gpus)
        return _stop(
            f"the GPUs of this node need different kernel module flavours ({listed})",
            "do not mix a Blackwell or Grace Hopper GPU with a pre-Turing GPU in one node",
        )
    return None


def _flavour_problem(
    gpus: list[dict[str, Any]], open_answer: str | None, chosen: str | None, branch: int
) -> dict[str, Any] | None:
    listed = ", ".join(_label(g) for g in gpus)
    if chosen == "open" and open_answer == OPEN_UNSUPPORTED:
        why = (
            f"branch {branch} predates the open modules (first in {OPEN_FIRST_BRANCH})"
            if branch < OPEN_FIRST_BRANCH and any(g["generation"] not in _PRE_TURING for g in gpus)
            else "the open modules drive Turing and newer GPUs only"
        )
        return _stop(
            f"the open kernel modules are pinned but {listed} cannot use them: {why}",
            "pin gpu_driver_flavour: proprietary, or leave it to auto",
        )
    if chosen == "proprietary" and open_answer == OPEN_REQUIRED:
        return _stop(
            f"the proprietary kernel modules are pinned but {listed} works only with the open ones",
            "pin gpu_driver_flavour: open, or leave it to auto",
        )
    return None


def _install_problem(
    *,
    source: str,
    branch: int,
    chosen: str | None,
    secure_boot: str,
    mok: dict[str, Any],
    headers: str,
    kernel: str,
    distribution_branch: int | None,
    distribution_open_package: bool,
) -> dict[str, Any] | None:
    # An install builds a kernel module with DKMS: it needs a package offer for the branch,
    # the running kernel's headers and, with Secure Boot on, a key the firmware trusts.
    if source == "distribution":
        if distribution_branch is None:
            return _stop(
                "the node's apt sources offer no nvidia-driver package",
                "enable Debian's non-free component on the node, or use the cuda-repo source",
            )
        if distribution_branch != branch:
            return _stop(
                f"the distribution offers driver branch {distribution_branch}, "
                f"the blueprint pins {branch}",
                f'pin gpu_driver_branch: "{distribution_branch}", or use the cuda-repo source',
            )
        if chosen == "open" and not distribution_open_package:
            return _stop(
                "the distribution has no open kernel module package (nvidia-open-kernel-dkms)",
                "pin gpu_driver_flavour: proprietary where the GPU allows it, "
                "or use the cuda-repo source",
            )
    if headers == "missing":
        return _stop(
            f"no linux-headers-{kernel} in the node's apt sources: the running kernel is not a "
            "distribution kernel, so DKMS cannot build the NVIDIA module for it",
            "boot a Debian kernel whose headers the mirror offers, or install the driver "
            "yourself and use the preinstalled source",
        )
    if secure_boot == SB_UNKNOWN:
        return _stop(
            "the Secure Boot state is unknown (no mokutil and no readable EFI variable)",
            "install mokutil on the node (os_baseline_extra_packages) and run again",
        )
    if secure_boot != SB_ENABLED:
        return None
    if not mok.get("provided"):
        return _stop(
            "Secure Boot is on and no MOK is given: an unsigned NVIDIA module would not load",
            "create a MOK, enroll it (mokutil --import CERT, confirm at the next boot), then set "
            "gpu_driver_mok_key and gpu_driver_mok_cert to its paths on the node",
        )
    if not (mok.get("key_exists") and mok.get("cert_exists")):
        return _stop(
            f"the MOK files are missing on the node ({mok.get('key')}, {mok.get('cert')})",
            "copy the MOK key (mode 0600) and certificate to those paths",
        )
    if mok.get("enrolled") is False:
        return _stop(
            f"the MOK certificate {mok.get('cert')} is not enrolled: "
            "modules signed with it would not load",
            f"run mokutil --import {mok.get('cert')}, reboot, confirm the enrollment, run again",
        )
    return None


# --- the node ---------------------------------------------------------------------------------


def _run(argv: list[str]) -> tuple[int, str]:
    """Run a read-only command; (rc, stdout + stderr). rc 127 when it is not installed."""
    if shutil.which(argv[0]) is None:
        return (127, "")
    proc = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=120)
    return (proc.returncode, proc.stdout + proc.stderr)


def _read(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            return handle.read()
    except OSError:
        return None


def _secure_boot() -> str:
    rc, out = _run(["mokutil", "--sb-state"])
    if rc != 127:
        state = parse_sb_state(out)
        if state != SB_UNKNOWN:
            return state
    if not os.path.isdir("/sys/firmware/efi"):
        return SB_UNSUPPORTED
    # The SecureBoot EFI variable: 4 attribute bytes, then 1 when on.
    var = "/sys/firmware/efi/efivars/SecureBoot-8be4df61-93ca-11d2-aa0d-00e098032b8c"
    try:
        with open(var, "rb") as handle:
            data = handle.read()
        return SB_ENABLED if data[-1:] == b"\x01" else SB_DISABLED
    except OSError:
        return SB_UNKNOWN


def _nouveau_loaded() -> bool:
    text = _read("/proc/modules")
    if text is not None and "nouveau" in parse_proc_modules(text):
        return True
    return os.path.isdir("/sys/module/nouveau")


def _mok(key: str, cert: str) -> dict[str, Any]:
    info: dict[str, Any] = {"provided": bool(key and cert), "key": key, "cert": cert}
    info["key_exists"] = bool(key) and os.path.isfile(key)
    info["cert_exists"] = bool(cert) and os.path.isfile(cert)
    info["enrolled"] = None
    if info["cert_exists"]:
        _, out = _run(["mokutil", "--test-key", cert])
        if "is already enrolled" in out:
            info["enrolled"] = True
        elif "is not enrolled" in out:
            info["enrolled"] = False
    return info


def gather(params: dict[str, Any]) -> dict[str, Any]:
    """Everything the decision needs, read from the node without changing it."""
    branch = int(str(params["branch"]))
    kernel = os.uname().release
    rc, lspci_out = _run(["lspci", "-nn", "-D"])
    lspci_found = rc != 127
    detection = detect_gpus(lspci_out if rc == 0 else "", branch)

    packages = [f"linux-headers-{kernel}", *(params.get("apt_packages") or [])]
    _, policy_out = _run(["apt-cache", "policy", *packages])
    policy = parse_apt_policy(policy_out)
    driver_candidate = (policy.get("nvidia-driver") or {}).get("candidate")
    open_candidate = (policy.get("nvidia-open-kernel-dkms") or {}).get("candidate")

    facts: dict[str, Any] = {
        **detection,
        "lspci_found": lspci_found,
        "kernel": kernel,
        "headers": headers_state(policy, kernel),
        "apt_candidates": {name: entry["candidate"] for name, entry in policy.items()},
        "secure_boot": _secure_boot(),
        "nouveau_loaded": _nouveau_loaded(),
        "nvidia_loaded": os.path.isdir("/sys/module/nvidia"),
        "mok": _mok(str(params.get("mok_key") or ""), str(params.get("mok_cert") or "")),
    }
    if not lspci_found and _sysfs_has_nvidia_gpu():
        facts["plan"] = {
            "action": "stop",
            "flavour": None,
            "reason": "the node has an NVIDIA display function (sysfs) but no lspci to name it",
            "remedy": "install pciutils on the node (os_baseline_extra_packages) and re-run",
        }
    else:
        facts["plan"] = decide(
            detection,
            source=str(params.get("source") or "distribution"),
            branch=branch,
            flavour=str(params.get("flavour") or "auto"),
            require_gpu=bool(params.get("require_gpu")),
            secure_boot=str(facts["secure_boot"]),
            mok=facts["mok"],
            headers=str(facts["headers"]),
            kernel=kernel,
            distribution_branch=driver_branch(driver_candidate or ""),
            distribution_open_package=open_candidate is not None,
            mig=bool(params.get("mig")),
        )
    if not lspci_found and facts["plan"]["action"] == "skip":
        facts["plan"]["reason"] += " (lspci is not installed; sysfs lists no NVIDIA GPU)"
    if params.get("query_driver"):
        facts["driver"] = query_driver()
    return facts


def _sysfs_has_nvidia_gpu() -> bool:
    root = "/sys/bus/pci/devices"
    try:
        entries = os.listdir(root)
    except OSError:
        return False
    for entry in entries:
        vendor = (_read(f"{root}/{entry}/vendor") or "").strip().lower()
        klass = (_read(f"{root}/{entry}/class") or "").strip().lower()
        if vendor == "0x" + NVIDIA_VENDOR and klass[2:6] in GPU_CLASSES:
            return True
    return False


QUERY_FIELDS = "index,pci.bus_id,name,driver_version,persistence_mode,mig.mode.current"


def query_driver() -> dict[str, Any]:
    """What the loaded driver sees, from nvidia-smi's CSV query."""
    rc, out = _run(["nvidia-smi", f"--query-gpu={QUERY_FIELDS}", "--format=csv"])
    rows = parse_nvidia_smi_csv(out) if rc == 0 else []
    versions = sorted({row.get("driver_version", "") for row in rows})
    return {
        "rc": rc,
        "found": rc != 127,
        "error": "" if rc == 0 else out.strip()[-500:],
        "gpus": rows,
        "count": len(rows),
        "versions": versions,
        "branch": driver_branch(versions[0]) if len(versions) == 1 else None,
    }


def main() -> None:
    from ansible.module_utils.basic import AnsibleModule

    module = AnsibleModule(
        argument_spec={
            "source": {"type": "str", "default": "distribution", "choices": list(SOURCES)},
            "branch": {"type": "str", "required": True},
            "flavour": {"type": "str", "default": "auto", "choices": ["auto", *FLAVOURS]},
            "require_gpu": {"type": "bool", "default": False},
            "mok_key": {"type": "str", "default": ""},
            "mok_cert": {"type": "str", "default": ""},
            "apt_packages": {"type": "list", "elements": "str", "default": []},
            "query_driver": {"type": "bool", "default": False},
            "mig": {"type": "bool", "default": False},
        },
        supports_check_mode=True,
    )
    if driver_branch(module.params["branch"] + ".") is None:
        branch = module.params["branch"]
        module.fail_json(msg=f"branch '{branch}' is not a driver branch such as 570")
    module.exit_json(changed=False, gpu=gather(module.params))


if __name__ == "__main__":
    main()
