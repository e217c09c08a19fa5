"""GPU layer checks: driver, GPUs at the pinned branch, runtime handler, CDI, persistence.

What a node should have comes from the record the gpu_driver role writes on nodes it
installed or verified (/etc/blueprint/gpu-layer.json: branch, GPU count, PCI addresses). A
node without an NVIDIA GPU (lspci: vendor 10de, class 0300 or 0302) has every check skipped
with that reason, never passed; a node with a GPU but no record fails: the layer did not run
there.
"""

from __future__ import annotations

import json
import logging
import tomllib
from typing import Any

import pytest
import yaml

from blueprint.gpu import detect, parse_nvidia_smi
from blueprint.gpu.detect import DriverGpu
from blueprint.validate.plugin import Probe, expect

log = logging.getLogger(__name__)

RECORD = "/etc/blueprint/gpu-layer.json"
CDI_SPEC = "/etc/cdi/nvidia.yaml"
RUNTIME = "nvidia"
RUNTIME_BINARY = "/usr/bin/nvidia-container-runtime"
QUERY = "index,pci.bus_id,uuid,name,driver_version,persistence_mode"
CRI_PLUGINS = ("io.containerd.grpc.v1.cri", "io.containerd.cri.v1.runtime")


def _expected(node: Probe) -> dict[str, Any]:
    """The layer's record on a GPU node; skips the check on a node without an NVIDIA GPU."""
    record = node.run(f"cat {RECORD}")
    if record.rc == 0:
        data: dict[str, Any] = json.loads(record.stdout)
        data["count"] = int(data["count"])
        return data
    lspci = node.run("lspci -nn -D")
    if lspci.rc != 0:
        # No pciutils: sysfs still tells whether any NVIDIA display function exists.
        sysfs = node.run(
            "grep -l 0x10de /sys/bus/pci/devices/*/vendor 2>/dev/null | sed 's/vendor$/class/' "
            "| xargs -r cat | grep -E '^0x030[02]' || true"
        )
        found = bool(sysfs.stdout.strip())
    else:
        found = detect(lspci.stdout, 0).count > 0
    if not found:
        pytest.skip("no NVIDIA GPU on this node (vendor 10de, class 0300 or 0302)")
    expect(
        False,
        seen=f"an NVIDIA GPU but no {RECORD}",
        expected="the gpu layer deployed on this node (it writes that record)",
    )
    return {}


def _driver_gpus(node: Probe) -> list[DriverGpu]:
    smi = node.run(f"nvidia-smi --query-gpu={QUERY} --format=csv")
    expect(
        smi.rc == 0,
        seen=f"nvidia-smi failed ({smi.rc}): {smi.stdout.strip() or smi.stderr.strip()}"[:300],
        expected="nvidia-smi answering (the driver loaded)",
    )
    return parse_nvidia_smi(smi.stdout)


@pytest.mark.check("gpu.driver.loaded")
def test_driver_loaded(node: Probe) -> None:
    _expected(node)
    module = node.run("test -d /sys/module/nvidia")
    version = node.run("cat /proc/driver/nvidia/version")
    expect(
        module.rc == 0 and version.rc == 0,
        seen="no /sys/module/nvidia" if module.rc else "no /proc/driver/nvidia/version",
        expected="the nvidia kernel module loaded",
    )


@pytest.mark.check("gpu.device.count")
def test_device_count(node: Probe) -> None:
    wanted = _expected(node)
    gpus = _driver_gpus(node)
    seen = sorted(gpu.bus_id for gpu in gpus)
    expected = sorted(wanted.get("addresses", []))
    expect(
        len(gpus) == wanted["count"] and (not expected or seen == expected),
        seen=f"nvidia-smi lists {len(gpus)} GPUs ({', '.join(seen) or 'none'})",
        expected=f"{wanted['count']} GPUs as lspci found them ({', '.join(expected)})",
    )


@pytest.mark.check("gpu.driver.version")
def test_driver_version(node: Probe) -> None:
    wanted = _expected(node)
    versions = sorted({gpu.driver_version for gpu in _driver_gpus(node)})
    branch = str(wanted["branch"])
    expect(
        bool(versions) and all(v.split(".")[0] == branch for v in versions),
        seen=f"driver {', '.join(versions) or 'none'}",
        expected=f"driver branch {branch} (the blueprint's pin)",
    )


def _runtimes(config: dict[str, Any]) -> dict[str, Any]:
    plugins = config.get("plugins", {})
    for name in CRI_PLUGINS:
        runtimes = plugins.get(name, {}).get("containerd", {}).get("runtimes", {})
        if runtimes:
            return dict(runtimes)
    return {}


@pytest.mark.check("gpu.container_toolkit.runtime")
def test_runtime_handler(node: Probe) -> None:
    _expected(node)
    dump = node.run("containerd config dump")
    expect(
        dump.rc == 0,
        seen=f"containerd config dump failed ({dump.rc})",
        expected="containerd installed and its config readable",
    )
    try:
        runtimes = _runtimes(tomllib.loads(dump.stdout))
    except tomllib.TOMLDecodeError as exc:
        expect(False, seen=f"config dump is not TOML ({exc})", expected="a TOML config")
        return
    binary = runtimes.get(RUNTIME, {}).get("options", {}).get("BinaryName")
    expect(
        binary == RUNTIME_BINARY,
        seen=f"runtimes {', '.join(sorted(runtimes)) or 'none'}"
        + (f"; {RUNTIME} BinaryName = {binary}" if RUNTIME in runtimes else ""),
        expected=f"runtime '{RUNTIME}' running {RUNTIME_BINARY} in the CRI plugin",
    )


@pytest.mark.check("gpu.cdi.devices")
def test_cdi_spec_lists_every_gpu(node: Probe) -> None:
    _expected(node)
    gpus = _driver_gpus(node)
    spec = node.run(f"cat {CDI_SPEC}")
    expect(spec.rc == 0, seen=f"no {CDI_SPEC}", expected="a CDI spec written by nvidia-ctk")
    try:
        data = yaml.safe_load(spec.stdout) or {}
    except yaml.YAMLError as exc:
        expect(False, seen=f"{CDI_SPEC} is not YAML ({exc})", expected="a CDI spec")
        return
    names = {str(device.get("name")) for device in data.get("devices", [])}
    missing = [gpu.index for gpu in gpus if gpu.index not in names]
    expect(
        bool(gpus) and not missing,
        seen=f"CDI devices {', '.join(sorted(names)) or 'none'}"
        + (f"; GPUs {', '.join(missing)} missing" if missing else ""),
        expected=f"a CDI device for each of the {len(gpus)} GPUs nvidia-smi lists",
    )


@pytest.mark.check("gpu.persistence_mode")
def test_persistence_mode(node: Probe) -> None:
    _expected(node)
    gpus = _driver_gpus(node)
    off = [
        f"{gpu.index} ({gpu.persistence_mode})" for gpu in gpus if gpu.persistence_mode != "Enabled"
    ]
    expect(
        bool(gpus) and not off,
        seen=f"persistence mode off on GPU {', '.join(off)}" if off else "no GPU listed",
        expected="persistence mode Enabled on every GPU (nvidia-persistenced running)",
    )
