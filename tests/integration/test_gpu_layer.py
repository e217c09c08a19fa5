"""The GPU layer on real lab nodes (systemd-nspawn containers, no GPU, no Debian kernel headers).

Uses the session fixture `lab` (tests/integration/conftest.py) and the product's own playbook
runner. Nodes 1 and 2 stay GPU-less. Node 3 gets stand-ins, each named as such:

- a stand-in `lspci` (first in PATH) that prints a recorded capture of a host with a Tesla T4;
- a stand-in `nvidia-smi` answering for that GPU as a loaded 570 driver would;
- stand-in `nvidia-container-toolkit` and `linux-headers-<lab kernel>` packages built here
  with dpkg-deb and served from a signed flat apt repository by `python -m http.server` on
  the lab's bridge address (started and stopped by this module, by PID).

The real driver install (DKMS build, module load, reboot) cannot run here and is not faked:
see docs/gpu.md for what runs only on a real GPU host (scripts/record-gpu-host).
"""

from __future__ import annotations

import dataclasses
import email.utils
import gzip
import hashlib
import json
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from blueprint.inventory import render_inventory
from blueprint.lab import overlay_digest
from blueprint.lab.lab import ssh_command
from blueprint.loader import load_site
from blueprint.paths import ROLES_DIR
from blueprint.playbook import PlaybookResult, run_layers
from blueprint.state import StateDir
from blueprint.validate import run_validation
from blueprint.validation import build_target

pytestmark = pytest.mark.lab

BRANCH = "570"
DRIVER_VERSION = "570.133.20"
TOOLKIT_VERSION = "1.17.8-1+standin"
T4_CAPTURE = (
    Path(__file__).parents[1]
    / "unit"
    / "gpu"
    / "fixtures"
    / "lspci"
    / "tesla-t4-before-driver.lspci"
)

STAND_IN_LSPCI = f"""#!/bin/sh
# Stand-in lspci (test double of blueprint's GPU layer tests): prints a recorded capture of a
# host with one Tesla T4, whatever the arguments.
cat <<'CAPTURE'
0000:00:00.0 Host bridge [0600]: Intel Corporation Sky Lake-E DMI3 Registers [8086:2020] (rev 04)
{T4_CAPTURE.read_text().splitlines()[0].replace("07:00.0", "0000:07:00.0", 1)}
CAPTURE
"""

# Stand-in nvidia-smi: answers --query-gpu=FIELDS --format=csv[,noheader] for the one T4 of
# the stand-in lspci, as a loaded 570 driver would.
STAND_IN_NVIDIA_SMI = f"""#!/usr/bin/python3
# Stand-in nvidia-smi (test double of blueprint's GPU layer tests).
import sys
GPU = {{
    "index": "0", "uuid": "GPU-00000000-0000-0000-0000-standin00000",
    "pci.bus_id": "00000000:07:00.0", "name": "Tesla T4",
    "driver_version": "{DRIVER_VERSION}", "persistence_mode": "Enabled",
    "mig.mode.current": "[N/A]", "count": "1",
}}
args = dict(a.split("=", 1) for a in sys.argv[1:] if "=" in a)
fields = args.get("--query-gpu", "").split(",")
if not fields or fields == [""]:
    print("stand-in nvidia-smi: only --query-gpu=... --format=csv", file=sys.stderr)
    sys.exit(2)
if "noheader" not in args.get("--format", ""):
    print(", ".join(fields))
print(", ".join(GPU.get(f, "[N/A]") for f in fields))
"""

STAND_IN_NVIDIA_CTK = """#!/bin/sh
# Stand-in nvidia-ctk (test double of blueprint's GPU layer tests, shipped in the stand-in
# nvidia-container-toolkit package): `cdi generate` prints a CDI spec of the GPUs that
# nvidia-smi reports, in the shape of the real tool's output.
set -eu
if [ "${1:-}" != cdi ] || [ "${2:-}" != generate ]; then
  echo "stand-in nvidia-ctk: only 'cdi generate' is implemented" >&2
  exit 2
fi
echo "---"
echo "cdiVersion: 0.5.0"
echo "kind: nvidia.com/gpu"
echo "devices:"
nvidia-smi --query-gpu=index,uuid --format=csv,noheader | while IFS=, read -r index uuid; do
  for name in "$index" $uuid; do
    echo "- name: \\"$name\\""
    echo "  containerEdits:"
    echo "    deviceNodes:"
    echo "    - path: /dev/nvidia$index"
  done
done
echo "containerEdits:"
echo "  deviceNodes:"
echo "  - path: /dev/nvidiactl"
"""

STAND_IN_RUNTIME = """#!/bin/sh
# Stand-in nvidia-container-runtime (test double): hands everything to runc.
exec runc "$@"
"""


@dataclass
class GpuLab:
    """The session lab with the lower layers deployed and an inventory for the GPU layer."""

    lab: Any
    inventory_dir: Path
    facts_dir: Path
    work: Path

    @property
    def gpu_less(self) -> list[str]:
        return [node.name for node in self.lab.nodes[:2]]

    @property
    def stand_in(self) -> str:
        return str(self.lab.nodes[2].name)

    def run(
        self,
        playbook: str,
        host_vars: dict[str, dict[str, Any]] | None = None,
        *,
        limit: str | None = None,
        check: bool = False,
        gpu_group: list[str] | None = None,
    ) -> PlaybookResult:
        """Run a playbook with extra per-node variables, through the product's runner.

        `gpu_group` puts those nodes in the gpu node role's group of this run's inventory.
        """
        inventory = self.work / f"inventory-{time.monotonic_ns()}"
        shutil.copytree(self.inventory_dir, inventory)
        if gpu_group:
            hosts = yaml.safe_load((inventory / "hosts.yml").read_text())
            hosts["all"]["children"]["gpu"]["hosts"] = {node: {} for node in gpu_group}
            (inventory / "hosts.yml").write_text(yaml.safe_dump(hosts))
        (inventory / "host_vars").mkdir(exist_ok=True)
        for node, variables in (host_vars or {}).items():
            (inventory / "host_vars" / f"{node}.yml").write_text(yaml.safe_dump(variables))
        artifacts = self.work / f"artifacts-{time.monotonic_ns()}"
        # No roles named: the layer's playbook alone, without the product's preflight play.
        [result] = run_layers(
            {playbook: []}, inventory, artifacts, self.facts_dir, limit=limit, check=check
        )
        return result

    def digest(self, node: str) -> str:
        return overlay_digest(self.lab.name, node)


def changed(result: PlaybookResult, node: str) -> int:
    return result.stats.get(node, {}).get("changed", -1)


def log(result: PlaybookResult) -> str:
    return result.stdout_file.read_text() if result.stdout_file else ""


@pytest.fixture(scope="module")
def gpu_lab(lab: Any, tmp_path_factory: pytest.TempPathFactory) -> GpuLab:
    work = tmp_path_factory.mktemp("gpu-layer")
    loaded = load_site(lab.site_file)
    state = StateDir.for_site(lab.site_dir, work / "state")
    inventory_dir = render_inventory(loaded, state)
    ctx = GpuLab(lab, inventory_dir, state.facts_dir, work)

    # The GPU layer runs after these; a failure here is theirs, said as such.
    for layer in ("os_baseline", "container_runtime"):
        result = ctx.run(layer)
        if not result.ok:
            pytest.fail(
                f"lower layer {layer} did not deploy on the lab (not the GPU layer): "
                f"see {result.stdout_file}"
            )
    return ctx


# --- (a) GPU-less nodes -------------------------------------------------------------------------


def test_gpu_less_nodes_skip_with_the_reason_and_change_nothing(gpu_lab: GpuLab) -> None:
    nodes = gpu_lab.gpu_less
    before = {node: gpu_lab.digest(node) for node in nodes}

    first = gpu_lab.run("gpu", limit=",".join(nodes))
    second = gpu_lab.run("gpu", limit=",".join(nodes))

    assert first.ok and second.ok, log(first) + log(second)
    for node in nodes:
        assert changed(first, node) == 0
        assert changed(second, node) == 0
        assert gpu_lab.digest(node) == before[node], f"{node} changed on disk"
    assert "gpu layer: skip: no NVIDIA GPU (vendor 10de, class 0300 or 0302)" in log(first)
    assert "gpu toolkit skipped: no NVIDIA GPU" in log(first)


def test_gpu_node_role_without_a_gpu_stops_before_any_change(gpu_lab: GpuLab) -> None:
    node = gpu_lab.gpu_less[0]
    before = gpu_lab.digest(node)

    result = gpu_lab.run("gpu", limit=node, gpu_group=[node])

    assert not result.ok
    assert (
        f"GPU layer stopped before any change on {node}: no NVIDIA GPU (vendor 10de, class "
        "0300 or 0302) on a node of the gpu node role" in log(result)
    )
    assert changed(result, node) == 0
    assert gpu_lab.digest(node) == before


# --- (b) a stand-in GPU on the lab kernel -------------------------------------------------------


@pytest.fixture(scope="module")
def stand_in_gpu(gpu_lab: GpuLab) -> Iterator[str]:
    """Node 3 with the stand-in lspci first in PATH (/usr/local/sbin).

    Removed at the end with the stand-in nvidia-smi, so that later tests of the session see
    the GPU-less node the lab made.
    """
    node = gpu_lab.stand_in
    _put(gpu_lab, node, "/usr/local/sbin/lspci", STAND_IN_LSPCI)
    try:
        assert "10de:1eb8" in gpu_lab.lab.ssh(node, "lspci -nn -D").stdout
        yield node
    finally:
        gpu_lab.lab.ssh(node, "rm -f /usr/local/sbin/lspci /usr/local/bin/nvidia-smi")


def _put(gpu_lab: GpuLab, node: str, path: str, text: str, mode: str = "755") -> None:
    """Write a file on a node over SSH (no quoting of the content involved)."""
    target = gpu_lab.lab.node(node)
    command = ssh_command(gpu_lab.lab.state, target, f"cat > {path} && chmod {mode} {path}")
    subprocess.run(command, input=text, text=True, check=True, capture_output=True, timeout=60)


def test_stand_in_lspci_gpu_stops_before_any_change_on_the_lab_kernel(
    gpu_lab: GpuLab, stand_in_gpu: str
) -> None:
    node = stand_in_gpu
    kernel = gpu_lab.lab.ssh(node, "uname -r").stdout.strip()
    before = gpu_lab.digest(node)

    result = gpu_lab.run(
        "gpu", {node: {"gpu_driver_source": "cuda-repo", "gpu_driver_branch": BRANCH}}, limit=node
    )

    assert not result.ok
    text = log(result)
    assert f"GPU layer stopped before any change on {node}: no linux-headers-{kernel}" in text
    assert "What to do: boot a Debian kernel whose headers the mirror offers" in text
    assert changed(result, node) == 0
    assert gpu_lab.digest(node) == before


# --- (c) the toolkit path against stand-in packages ---------------------------------------------


@dataclass
class StandInRepo:
    url: str
    key_url: str
    pid: int


def _deb(
    folder: Path, name: str, version: str, description: str, files: dict[str, tuple[str, int]]
) -> Path:
    """A .deb built with dpkg-deb: `files` maps an absolute path to (content, mode)."""
    root = folder / f"{name}-root"
    (root / "DEBIAN").mkdir(parents=True)
    for path, (content, mode) in files.items():
        target = root / path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(content)
        target.chmod(mode)
    (root / "DEBIAN" / "control").write_text(
        f"Package: {name}\nVersion: {version}\nArchitecture: all\n"
        "Maintainer: edge-blueprint tests <tests@example.invalid>\n"
        f"Description: {description}\n"
    )
    deb = folder / f"{name}_{version}_all.deb"
    subprocess.run(
        ["dpkg-deb", "--root-owner-group", "--build", str(root), str(deb)],
        check=True,
        capture_output=True,
    )
    shutil.rmtree(root)
    return deb


def _flat_repo(folder: Path, debs: list[Path], gnupg: Path) -> None:
    """Packages, Release, InRelease (signed with a throwaway key) and the key as `gpgkey`."""
    stanzas = []
    for deb in debs:
        control = subprocess.run(
            ["dpkg-deb", "-f", str(deb)], check=True, capture_output=True, text=True
        ).stdout.rstrip("\n")
        data = deb.read_bytes()
        stanzas.append(
            f"{control}\nFilename: ./{deb.name}\nSize: {len(data)}\n"
            f"SHA256: {hashlib.sha256(data).hexdigest()}\n"
        )
    packages = "\n".join(stanzas).encode()
    (folder / "Packages").write_bytes(packages)
    (folder / "Packages.gz").write_bytes(gzip.compress(packages))
    lines = [
        "Origin: blueprint-tests",
        "Label: stand-in packages of the GPU layer tests",
        f"Date: {email.utils.formatdate(usegmt=True)}",
        "SHA256:",
    ]
    for name in ("Packages", "Packages.gz"):
        data = (folder / name).read_bytes()
        lines.append(f" {hashlib.sha256(data).hexdigest()} {len(data)} {name}")
    (folder / "Release").write_text("\n".join(lines) + "\n")

    gpg = ["gpg", "--homedir", str(gnupg), "--batch", "--yes"]
    subprocess.run(
        [
            *gpg,
            "--passphrase",
            "",
            "--quick-gen-key",
            "blueprint stand-in repo <stand-in@example.invalid>",
            "ed25519",
            "sign",
            "never",
        ],
        check=True,
        capture_output=True,
    )
    subprocess.run(
        [*gpg, "--clearsign", "-o", str(folder / "InRelease"), str(folder / "Release")],
        check=True,
        capture_output=True,
    )
    key = subprocess.run([*gpg, "--armor", "--export"], check=True, capture_output=True).stdout
    (folder / "gpgkey").write_bytes(key)


def _free_port(address: str) -> int:
    with socket.socket() as probe:
        probe.bind((address, 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="module")
def stand_in_repo(gpu_lab: GpuLab, stand_in_gpu: str) -> Iterator[StandInRepo]:
    """The signed flat repository of stand-in packages, served on the lab's bridge address."""
    if shutil.which("gpg") is None or shutil.which("dpkg-deb") is None:
        pytest.skip("the stand-in repository needs gpg and dpkg-deb on this machine")
    kernel = gpu_lab.lab.ssh(stand_in_gpu, "uname -r").stdout.strip()
    folder = gpu_lab.work / "repo"
    folder.mkdir()
    gnupg = gpu_lab.work / "gnupg"
    gnupg.mkdir(mode=0o700)
    debs = [
        _deb(
            folder,
            "nvidia-container-toolkit",
            TOOLKIT_VERSION,
            "Stand-in for NVIDIA's container toolkit (test double, not the real package)",
            {
                "/usr/bin/nvidia-ctk": (STAND_IN_NVIDIA_CTK, 0o755),
                "/usr/bin/nvidia-container-runtime": (STAND_IN_RUNTIME, 0o755),
            },
        ),
        _deb(
            folder,
            f"linux-headers-{kernel}",
            "0.0-standin",
            "Stand-in for the lab kernel's headers (test double, empty)",
            {},
        ),
    ]
    _flat_repo(folder, debs, gnupg)

    bridge = gpu_lab.lab.state.bridge_ip
    port = _free_port(bridge)
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "http.server",
            "--bind",
            bridge,
            str(port),
            "--directory",
            str(folder),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection((bridge, port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        # The lab's apt-cacher-ng proxies port 80 only: apt on the stand-in node reaches this
        # test repository directly, the way a site reaches its own mirror.
        _put(
            gpu_lab,
            stand_in_gpu,
            "/etc/apt/apt.conf.d/99-stand-in-repo-direct",
            f'Acquire::http::Proxy::{bridge} "DIRECT";\n',
            mode="644",
        )
        yield StandInRepo(f"http://{bridge}:{port}/", f"http://{bridge}:{port}/gpgkey", server.pid)
    finally:
        server.terminate()
        server.wait(timeout=10)
        subprocess.run(
            ["gpgconf", "--homedir", str(gnupg), "--kill", "gpg-agent"], capture_output=True
        )


def _toolkit_vars(repo: StandInRepo) -> dict[str, Any]:
    return {
        "gpu_driver_source": "preinstalled",
        "gpu_driver_branch": BRANCH,
        "gpu_toolkit_repo_url": repo.url,
        "gpu_toolkit_repo_suite": "/",
        "gpu_toolkit_repo_key_url": repo.key_url,
    }


def test_stand_in_headers_satisfy_the_node_preflight(
    gpu_lab: GpuLab, stand_in_gpu: str, stand_in_repo: StandInRepo
) -> None:
    """With the stand-in headers in an apt source, the node's own rules decide to install."""
    node = stand_in_gpu
    source = (
        f"Types: deb\nURIs: {stand_in_repo.url}\nSuites: /\n"
        "Signed-By: /etc/apt/keyrings/stand-in-repo.asc\n"
    )
    gpu_lab.lab.ssh(
        node,
        f'mkdir -p /etc/apt/keyrings && python3 -c "import urllib.request;'
        f"print(urllib.request.urlopen('{stand_in_repo.key_url}').read()"
        ".decode(), end='')\" > /etc/apt/keyrings/stand-in-repo.asc",
    )
    _put(gpu_lab, node, "/etc/apt/sources.list.d/stand-in-repo.sources", source, mode="644")
    _put(
        gpu_lab,
        node,
        "/tmp/gpu_facts.py",
        (ROLES_DIR / "gpu_driver" / "library" / "gpu_facts.py").read_text(),
        mode="644",
    )
    try:
        gpu_lab.lab.ssh(node, "apt-get update -qq", timeout=300)
        params = {"source": "cuda-repo", "branch": BRANCH, "flavour": "auto"}
        out = gpu_lab.lab.ssh(
            node,
            "python3 -c \"import json, runpy; m = runpy.run_path('/tmp/gpu_facts.py'); "
            f"print(json.dumps(m['gather']({params!r})))\"",
        ).stdout
    finally:
        gpu_lab.lab.ssh(
            node,
            "rm -f /etc/apt/sources.list.d/stand-in-repo.sources "
            "/etc/apt/keyrings/stand-in-repo.asc /tmp/gpu_facts.py && "
            "apt-get update -qq",
            timeout=300,
        )
    facts = json.loads(out)
    assert facts["headers"] == "installable"
    assert facts["count"] == 1 and facts["pci_ids"] == ["10de:1eb8"]
    assert facts["plan"]["action"] == "install", facts["plan"]
    assert facts["plan"]["flavour"] == "open"


@pytest.fixture(scope="module")
def stand_in_toolkit(
    gpu_lab: GpuLab, stand_in_gpu: str, stand_in_repo: StandInRepo
) -> dict[str, dict[str, Any]]:
    """The GPU layer run on node 3: stand-in nvidia-smi verified, stand-in toolkit installed."""
    node = stand_in_gpu
    _put(gpu_lab, node, "/usr/local/bin/nvidia-smi", STAND_IN_NVIDIA_SMI)
    host_vars = {node: _toolkit_vars(stand_in_repo)}
    first = gpu_lab.run("gpu", host_vars, limit=node)
    assert first.ok, log(first)
    assert changed(first, node) > 0
    return host_vars


def test_stand_in_toolkit_writes_the_runtime_fragment_that_survives_a_runtime_rerun(
    gpu_lab: GpuLab, stand_in_gpu: str, stand_in_toolkit: dict[str, dict[str, Any]]
) -> None:
    node = stand_in_gpu
    fragment = gpu_lab.lab.ssh(node, "cat /etc/containerd/blueprint.d/50-nvidia-runtime.toml")
    assert "runtimes.nvidia]" in fragment.stdout
    dump = gpu_lab.lab.ssh(node, "containerd config dump").stdout
    assert "runtimes.nvidia]" in dump and "/usr/bin/nvidia-container-runtime" in dump
    cdi = yaml.safe_load(gpu_lab.lab.ssh(node, "cat /etc/cdi/nvidia.yaml").stdout)
    assert {"0", "all"} - {d["name"] for d in cdi["devices"]} == {"all"}
    record = json.loads(gpu_lab.lab.ssh(node, "cat /etc/blueprint/gpu-layer.json").stdout)
    assert record["branch"] == BRANCH and record["addresses"] == ["0000:07:00.0"]

    # A second run of the GPU layer changes nothing.
    second = gpu_lab.run("gpu", stand_in_toolkit, limit=node)
    assert second.ok, log(second)
    assert changed(second, node) == 0, log(second)

    # A later run of the runtime layer keeps the handler: no change, CRI still loaded.
    runtime = gpu_lab.run("container_runtime", limit=node)
    assert runtime.ok, log(runtime)
    assert changed(runtime, node) == 0, log(runtime)
    gpu_lab.lab.ssh(node, "systemctl restart containerd")
    dump = gpu_lab.lab.ssh(node, "containerd config dump").stdout
    assert "runtimes.nvidia]" in dump
    plugins = gpu_lab.lab.ssh(node, "ctr plugins ls").stdout
    assert any(
        line.split()[:2] == ["io.containerd.grpc.v1", "cri"] and line.split()[-1] == "ok"
        for line in plugins.splitlines()
    )


GPU_CHECKS = [
    "gpu.driver.loaded",
    "gpu.device.count",
    "gpu.driver.version",
    "gpu.container_toolkit.runtime",
    "gpu.cdi.devices",
    "gpu.persistence_mode",
]


def test_gpu_checks_skip_gpu_less_nodes_and_judge_the_stand_in_node(
    gpu_lab: GpuLab, stand_in_gpu: str, stand_in_toolkit: dict[str, dict[str, Any]]
) -> None:
    suite = gpu_lab.work / "gpu-suite.yaml"
    suite.write_text(
        yaml.safe_dump(
            {"name": "gpu-lab", "checks": [{"id": c, "mandatory": True} for c in GPU_CHECKS]}
        )
    )
    loaded = load_site(gpu_lab.lab.site_file)
    site_target = build_target(loaded, StateDir.for_site(loaded.site_dir, gpu_lab.work / "vs"))
    target = dataclasses.replace(site_target, blueprint_layers=["gpu"], suite_file=suite)

    report = run_validation(target, gpu_lab.work / "validation")

    status = {(r.node, r.check_id): r for r in report.results}
    for node in gpu_lab.gpu_less:
        for check in GPU_CHECKS:
            result = status[(node, check)]
            assert result.status.value == "skipped", (node, check, result.message)
            assert "no NVIDIA GPU on this node" in result.message
    for check in GPU_CHECKS[1:]:
        result = status[(stand_in_gpu, check)]
        assert result.status.value == "passed", (check, result.message)
    # No kernel module can load in a container: the one check a stand-in cannot satisfy.
    loaded = status[(stand_in_gpu, "gpu.driver.loaded")]
    assert loaded.status.value == "failed" and "no /sys/module/nvidia" in loaded.message
