"""The hardware.bmc validation checks against sushy-tools' emulator and the GPU mockup.

The site files here go through the product's own path: load_site, build_target (credentials
from the environment or the vault), the runner's context, then the check functions, called
directly or in the plugin's pytest run the way the runner starts it. The password is the
canary of conftest.py: it must never show in a message, a context file or a result.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import yaml
from ansible.parsing.vault import VaultLib, VaultSecret

from blueprint.loader import load_site
from blueprint.secrets import PASSWORD_FILE_ENV
from blueprint.state import StateDir
from blueprint.validate.model import (
    BMC_PASSWORD_ENV,
    NodeTarget,
    Status,
    ValidationTarget,
    load_suite,
)
from blueprint.validate.plugin import CheckFailed
from blueprint.validate.runner import CHECKS_DIR, node_context, pytest_command, run_validation
from blueprint.validation import build_target
from validation.checks import test_hardware_bmc as checks

from .conftest import BOOT_MAC, PASSWORD, SYSTEM_UUID, USERNAME, Emulator, IpmiSim

if TYPE_CHECKING:
    from tests.integration.conftest import LabHandle

# The lab test only reads the nodes: it may run before any deploy changes them.
LAB_STAGE = 5

CANARY = "bmc-canary"  # the start of conftest's PASSWORD
CHECKS = {
    "hardware.bmc.reachable": checks.test_bmc_reachable,
    "hardware.bmc.cpu_count": checks.test_bmc_cpu_count,
    "hardware.bmc.memory_size": checks.test_bmc_memory_size,
    "hardware.bmc.disk_size": checks.test_bmc_disk_size,
    "hardware.bmc.nic_count": checks.test_bmc_nic_count,
    "hardware.bmc.gpu_count": checks.test_bmc_gpu_count,
    "hardware.bmc.boot_mode": checks.test_bmc_boot_mode,
    "hardware.bmc.secure_boot": checks.test_bmc_secure_boot,
    "hardware.bmc.bios_attributes": checks.test_bmc_bios_attributes,
    "hardware.bmc.firmware_versions": checks.test_bmc_firmware_versions,
}
# What the emulator's one system has: UEFI, Secure Boot off, 2 NICs, one 894 GiB drive,
# BMC firmware 1.00; no CPUs, memory, PCIe devices or BIOS (its fake driver models none).
EMULATOR_FITS = {"min_cpus": 1, "min_memory_gib": 1, "min_disk_gib": 100, "min_nics": 2,
                 "boot_mode": "uefi", "secure_boot": "off", "min_bmc_version": "1.0"}
# The mockup GPU server: 2 x 56 threads, 512 GiB, one NVIDIA GPU, BIOS 2.1.7, BMC 3.10.0.
MOCKUP_FITS = {"min_cpus": 64, "min_memory_gib": 256, "gpus": 1, "min_nics": 1,
               "bios": {"IntelVTd": "enabled"}, "min_bios_version": "2.1",
               "min_bmc_version": "3.9"}


def write_site(folder: Path, emulator: Emulator, hardware: dict[str, Any], *,
               gpu_url: str | None = None, boot_mac: str = BOOT_MAC,
               bare_node: bool = False) -> Path:
    """A site with edge-bm-1 behind the emulator (and edge-gpu-1 behind the mockup)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "bmc-ca.pem").write_bytes((emulator.ca or Path()).read_bytes())
    blueprint = {"name": "metal-checks", "version": "1",
                 "layers": [{"name": "os_baseline", "roles": ["os_baseline"]}],
                 "hardware": hardware, "validation": {"suite": "lab"}}
    (folder / "metal.yaml").write_text(yaml.safe_dump(blueprint), encoding="utf-8")
    nodes: list[dict[str, Any]] = [{
        "name": "edge-bm-1", "address": "10.90.0.11", "roles": ["worker"], "boot_mac": boot_mac,
        "bmc": {"address": emulator.url, "credentials": "bm1", "ca": "bmc-ca.pem",
                "timeout": 20}}]
    if gpu_url:
        nodes.append({"name": "edge-gpu-1", "address": "10.90.0.21", "roles": ["gpu"],
                      "boot_mac": "b8:ce:f6:10:20:30",
                      "bmc": {"address": gpu_url, "credentials": "gpu1", "timeout": 10}})
    if bare_node:
        nodes.append({"name": "edge-plain-1", "address": "10.90.0.31", "roles": ["worker"]})
    site = folder / "site.yaml"
    site.write_text(yaml.safe_dump({"name": "metal", "blueprint": "metal.yaml",
                                    "nodes": nodes}), encoding="utf-8")
    return site


@pytest.fixture
def credentials(monkeypatch: pytest.MonkeyPatch) -> Callable[[str], None]:
    """Put the BMC credentials of both test BMCs in the environment, with this password."""
    def give(password: str) -> None:
        for key in ("BM1", "GPU1"):
            monkeypatch.setenv(f"BLUEPRINT_BMC_{key}_USERNAME", USERNAME)
            monkeypatch.setenv(f"BLUEPRINT_BMC_{key}_PASSWORD", password)
    return give


def target_of(site: Path, state: Path) -> ValidationTarget:
    loaded = load_site(site)
    return build_target(loaded, StateDir.for_site(loaded.site_dir, state))


def context_of(target: ValidationTarget, node: NodeTarget, suite: Path) -> dict[str, Any]:
    """The node's context as the runner writes it, read back from JSON."""
    text = json.dumps(node_context(target, load_suite(suite), node))
    loaded: dict[str, Any] = json.loads(text)
    return loaded


def suite_file(folder: Path) -> Path:
    path = folder / "bmc-suite.yaml"
    path.write_text(yaml.safe_dump({"name": "bmc", "checks": [
        {"id": check, "mandatory": True, "timeout": 120} for check in CHECKS]}))
    return path


def outcome(check: Callable[..., None], reader: Any, expected: dict[str, Any]) -> tuple[str, str]:
    """Run one check function as the plugin would judge it: status and message."""
    offered = {"bmc_reader": reader, "expected": expected}
    arguments = {name: offered[name] for name in inspect.signature(check).parameters}
    try:
        check(**arguments)
    except CheckFailed as exc:
        return "failed", str(exc)
    except pytest.skip.Exception as exc:
        return "skipped", str(exc.msg)
    except Exception as exc:  # the plugin reports any other exception as error
        return "error", f"{type(exc).__name__}: {exc}"
    return "passed", ""


def run_checks(target: ValidationTarget, node_name: str, suite: Path,
               monkeypatch: pytest.MonkeyPatch) -> dict[str, tuple[str, str]]:
    """Every BMC check on one node, its password in the environment as the runner hands it."""
    node = next(n for n in target.nodes if n.name == node_name)
    expected = context_of(target, node, suite)
    monkeypatch.delenv(BMC_PASSWORD_ENV, raising=False)
    if node.bmc_password is not None:
        monkeypatch.setenv(BMC_PASSWORD_ENV, node.bmc_password)
    reader = checks.BmcReader(node.name, node.bmc, node.hardware) if node.bmc else None
    return {check_id: outcome(check, reader, expected) for check_id, check in CHECKS.items()}


def statuses(results: dict[str, tuple[str, str]]) -> dict[str, str]:
    return {check_id: status for check_id, (status, _) in results.items()}


def test_emulated_node_that_fits_its_profile_passes(
    emulator: Emulator, credentials: Callable[[str], None], tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    credentials(PASSWORD)
    target = target_of(write_site(tmp_path, emulator, {"worker": EMULATOR_FITS}), tmp_path / "s")

    results = run_checks(target, "edge-bm-1", suite_file(tmp_path), monkeypatch)

    assert statuses(results) == {
        "hardware.bmc.reachable": "passed",
        "hardware.bmc.cpu_count": "skipped",
        "hardware.bmc.memory_size": "skipped",
        "hardware.bmc.disk_size": "passed",
        "hardware.bmc.nic_count": "passed",
        "hardware.bmc.gpu_count": "skipped",
        "hardware.bmc.boot_mode": "passed",
        "hardware.bmc.secure_boot": "passed",
        "hardware.bmc.bios_attributes": "skipped",
        "hardware.bmc.firmware_versions": "passed",
    }, results
    # Not reported is skipped with what is missing, never passed.
    assert results["hardware.bmc.cpu_count"][1] == "the BMC does not report the logical CPU count"
    assert results["hardware.bmc.memory_size"][1] == "the BMC does not report the system's memory"
    assert results["hardware.bmc.gpu_count"][1] == "the profile of worker asks for no GPU"


def test_emulated_node_short_of_its_profile_fails_for_each_reason(
    emulator: Emulator, credentials: Callable[[str], None], tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    credentials(PASSWORD)
    asks_more = {"min_disk_gib": 2000, "min_nics": 3, "boot_mode": "bios", "secure_boot": "on",
                 "min_bmc_version": "2.0", "gpus": 1}
    target = target_of(write_site(tmp_path, emulator, {"worker": asks_more}), tmp_path / "s")

    results = run_checks(target, "edge-bm-1", suite_file(tmp_path), monkeypatch)

    failed = {k: message for k, (status, message) in results.items() if status == "failed"}
    assert failed == {
        "hardware.bmc.disk_size": "seen: largest drive NVMe 960 GB of 894 GiB; expected: at "
                                  "least 2000 GiB (profile of worker)",
        "hardware.bmc.nic_count": f"seen: 2 NICs not disabled ({BOOT_MAC}, 52:54:00:6b:01:02); "
                                  "expected: at least 3 "
                                  "(profile of worker)",
        "hardware.bmc.boot_mode": "seen: boot mode UEFI; expected: boot mode Legacy (profile "
                                  "of worker)",
        "hardware.bmc.secure_boot": "seen: Secure Boot off (SecureBootEnable); expected: "
                                    "Secure Boot on (profile of worker)",
        "hardware.bmc.firmware_versions": "seen: BMC firmware 1.00; expected: BMC firmware "
                                          "at least 2.0 (profile of worker)",
    }
    assert results["hardware.bmc.reachable"][0] == "passed"
    assert results["hardware.bmc.gpu_count"] == ("skipped", "the BMC does not report PCIe devices")


def test_gpu_server_mockup_against_its_profile(
    emulator: Emulator, gpu_mockup: str, credentials: Callable[[str], None], tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    credentials(PASSWORD)
    suite = suite_file(tmp_path)
    fits = target_of(write_site(tmp_path / "fits", emulator, {"gpu": MOCKUP_FITS},
                                gpu_url=gpu_mockup), tmp_path / "s1")
    short = target_of(write_site(tmp_path / "short", emulator, {"gpu": {
        "min_cpus": 128, "min_memory_gib": 1024, "gpus": 2, "min_disk_gib": 1,
        "bios": {"Above4GDecoding": "Enabled", "IntelVTd": "Enabled"},
        "min_bios_version": "2.10"}}, gpu_url=gpu_mockup), tmp_path / "s2")

    good = run_checks(fits, "edge-gpu-1", suite, monkeypatch)
    bad = run_checks(short, "edge-gpu-1", suite, monkeypatch)

    assert {k for k, (status, _) in good.items() if status == "passed"} == {
        "hardware.bmc.reachable", "hardware.bmc.cpu_count", "hardware.bmc.memory_size",
        "hardware.bmc.nic_count", "hardware.bmc.gpu_count", "hardware.bmc.bios_attributes",
        "hardware.bmc.firmware_versions"}, good
    # The mockup lists no drive: its disk is not reported, not passed.
    assert good["hardware.bmc.disk_size"] == (
        "skipped", "the BMC does not report any drive with its capacity")
    assert {k: m for k, (status, m) in bad.items() if status == "failed"} == {
        "hardware.bmc.cpu_count": "seen: 112 logical CPUs (2 x Mockup Xeon 6338); expected: "
                                  "at least 128 CPUs (profile of gpu)",
        "hardware.bmc.memory_size": "seen: 512 GiB of memory; expected: at least 1024 GiB "
                                    "(profile of gpu)",
        "hardware.bmc.gpu_count": "seen: 1 GPUs among the PCIe devices (gpu0 L40S); "
                                  "expected: at least 2 (profile of gpu)",
        "hardware.bmc.bios_attributes": "seen: Above4GDecoding = Disabled; expected: "
                                        "Above4GDecoding = Enabled (profile of gpu)",
        "hardware.bmc.firmware_versions": "seen: BIOS 2.1.7; expected: BIOS at least 2.10 "
                                          "(profile of gpu)",
    }, bad


def test_wrong_password_fails_reachable_without_showing_it(
    emulator: Emulator, credentials: Callable[[str], None], tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    credentials(f"{PASSWORD}-wrong")
    target = target_of(write_site(tmp_path, emulator, {"worker": EMULATOR_FITS}), tmp_path / "s")

    results = run_checks(target, "edge-bm-1", suite_file(tmp_path), monkeypatch)

    status, message = results["hardware.bmc.reachable"]
    assert status == "failed"
    assert message == (
        f"seen: node edge-bm-1: BMC {emulator.url}: list systems: the BMC refused the credentials "
        "(HTTP 401); check the node's bmc.credentials entry in secrets.yaml or the "
        f"environment; expected: BMC {emulator.url} answers with the site's credentials for "
        f"user {USERNAME}")
    # The others could not decide: error, with the same reason.
    assert {s for k, (s, _) in results.items() if k != "hardware.bmc.reachable"} <= {
        "error", "skipped"}
    assert results["hardware.bmc.disk_size"][1].startswith(
        "BmcUnusable: the BMC could not be read: node edge-bm-1: ")
    assert not [m for _, m in results.values() if CANARY in m]


def test_a_boot_mac_the_bmc_does_not_have_fails_reachable(
    emulator: Emulator, credentials: Callable[[str], None], tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    credentials(PASSWORD)
    site = write_site(tmp_path, emulator, {"worker": EMULATOR_FITS}, boot_mac="52:54:00:99:99:99")

    results = run_checks(target_of(site, tmp_path / "s"), "edge-bm-1", suite_file(tmp_path),
                         monkeypatch)

    assert results["hardware.bmc.reachable"] == ("failed", (
        f"seen: system {SYSTEM_UUID} with NICs {BOOT_MAC}, 52:54:00:6b:01:02; expected: the "
        "node's boot MAC 52:54:00:99:99:99 among them (is this node's BMC?)"))


def test_a_system_id_the_bmc_does_not_have_fails_reachable(
    emulator: Emulator, credentials: Callable[[str], None], tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    credentials(PASSWORD)
    site = write_site(tmp_path, emulator, {"worker": EMULATOR_FITS})
    data = yaml.safe_load(site.read_text())
    data["nodes"][0]["bmc"]["system"] = "not-this-one"
    site.write_text(yaml.safe_dump(data))

    results = run_checks(target_of(site, tmp_path / "s"), "edge-bm-1", suite_file(tmp_path),
                         monkeypatch)

    assert results["hardware.bmc.reachable"][0] == "failed"
    assert results["hardware.bmc.reachable"][1].startswith(
        f"seen: node edge-bm-1: BMC {emulator.url}: system 'not-this-one' is not there; it "
        f"has {SYSTEM_UUID}; expected: ")


def test_a_bmc_that_never_answers_is_read_once(
    silent_bmc: str, emulator: Emulator, credentials: Callable[[str], None], tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    credentials(PASSWORD)
    site = write_site(tmp_path, emulator, {"worker": EMULATOR_FITS})
    data = yaml.safe_load(site.read_text())
    data["nodes"][0]["bmc"].update({"address": silent_bmc, "timeout": 1})
    site.write_text(yaml.safe_dump(data))

    started = time.monotonic()
    results = run_checks(target_of(site, tmp_path / "s"), "edge-bm-1", suite_file(tmp_path),
                         monkeypatch)

    assert results["hardware.bmc.reachable"][0] == "failed"
    assert f"BMC {silent_bmc}: connect: no answer within 1 s" in (
        results["hardware.bmc.reachable"][1])
    assert results["hardware.bmc.boot_mode"][0] == "error"
    # One read for all ten checks: the answer that never came is waited for once.
    assert time.monotonic() - started < 10


def test_node_without_bmc_skips_and_missing_credentials_are_an_error(
    emulator: Emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    for key in ("BM1", "GPU1"):
        monkeypatch.delenv(f"BLUEPRINT_BMC_{key}_USERNAME", raising=False)
        monkeypatch.delenv(f"BLUEPRINT_BMC_{key}_PASSWORD", raising=False)
    site = write_site(tmp_path, emulator, {"worker": EMULATOR_FITS}, bare_node=True)
    target = target_of(site, tmp_path / "s")
    suite = suite_file(tmp_path)

    plain = run_checks(target, "edge-plain-1", suite, monkeypatch)
    missing = run_checks(target, "edge-bm-1", suite, monkeypatch)

    assert set(plain.values()) == {("skipped", "no BMC in the site file")}
    assert missing["hardware.bmc.reachable"] == ("error", (
        "BmcUnusable: node edge-bm-1: BMC credentials 'bm1' are neither in the environment "
        "(BLUEPRINT_BMC_BM1_USERNAME, BLUEPRINT_BMC_BM1_PASSWORD) nor under bmc_credentials "
        "in secrets.yaml"))


@pytest.fixture
def vault_site(emulator: Emulator, tmp_path: Path,
               monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """The emulator's site with its credentials only in an encrypted secrets.yaml."""
    for key in ("BM1", "GPU1"):
        monkeypatch.delenv(f"BLUEPRINT_BMC_{key}_USERNAME", raising=False)
        monkeypatch.delenv(f"BLUEPRINT_BMC_{key}_PASSWORD", raising=False)
    folder = tmp_path / "site"
    site = write_site(folder, emulator, {"worker": EMULATOR_FITS}, bare_node=True)
    encrypt_vault(folder, monkeypatch, {"bm1": {"username": USERNAME, "password": PASSWORD}})
    yield site


def files_with(root: Path, needle: str) -> list[str]:
    return [str(path) for path in root.rglob("*")
            if path.is_file() and needle.encode() in path.read_bytes()]


def plugin_run(target: ValidationTarget, node: NodeTarget, work: Path, suite: Path, *,
               timeout: float) -> dict[str, dict[str, Any]]:
    """The node's pytest run as the runner starts it (its files, command line and
    environment), with testinfra's local backend for the node's shell instead of SSH: the
    BMC checks do not use it. Returns the plugin's record per check."""
    work.mkdir()
    select = work / "selection.json"
    select.write_text(json.dumps({check: {"timeout": timeout} for check in CHECKS}))
    results_file = work / f"results-{node.name}.json"
    (work / f"context-{node.name}.json").write_text(
        json.dumps(node_context(target, load_suite(suite), node), indent=2))
    command = [
        "--hosts=local://" if arg.startswith("--hosts=") else arg
        for arg in pytest_command(target, node, select, results_file, work, CHECKS_DIR)
        if not arg.startswith("--ssh-config=")
    ]
    run = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=CHECKS_DIR,
                         env=node.check_environment(), check=False)
    (work / f"pytest-{node.name}.log").write_text(run.stdout + run.stderr)
    assert results_file.is_file(), run.stdout[-3000:]
    return {r["id"]: r for r in json.loads(results_file.read_text())["results"]}


def test_checks_in_the_plugin_run_get_the_vault_password_only_from_the_environment(
    vault_site: Path, tmp_path: Path,
) -> None:
    target = target_of(vault_site, tmp_path / "state")
    node = next(n for n in target.nodes if n.name == "edge-bm-1")
    assert node.bmc is not None and node.bmc["username"] == USERNAME
    assert node.bmc_password == PASSWORD
    assert CANARY not in repr(target)

    work = tmp_path / "run"
    recorded = plugin_run(target, node, work, suite_file(tmp_path), timeout=120)

    assert {k: r["outcome"] for k, r in recorded.items()} == {
        "hardware.bmc.reachable": "passed",
        "hardware.bmc.cpu_count": "skipped",
        "hardware.bmc.memory_size": "skipped",
        "hardware.bmc.disk_size": "passed",
        "hardware.bmc.nic_count": "passed",
        "hardware.bmc.gpu_count": "skipped",
        "hardware.bmc.boot_mode": "passed",
        "hardware.bmc.secure_boot": "passed",
        "hardware.bmc.bios_attributes": "skipped",
        "hardware.bmc.firmware_versions": "passed",
    }, recorded
    context = json.loads((work / "context-edge-bm-1.json").read_text())
    assert context["bmc"] == node.bmc and "password" not in context["bmc"]
    assert files_with(tmp_path, CANARY) == []


def test_a_whole_validation_run_writes_no_password(
    vault_site: Path, tmp_path: Path,
) -> None:
    # The runner itself, for nodes that do not answer SSH (port 1 on loopback refuses at
    # once): context files are written and every check is error; nothing may hold the password.
    target = target_of(vault_site, tmp_path / "state")
    refusing = tmp_path / "ssh_config"
    refusing.write_text("Host *\n  HostName 127.0.0.1\n  Port 1\n  StrictHostKeyChecking yes\n"
                        f"  UserKnownHostsFile {tmp_path / 'known_hosts'}\n")
    target = dataclasses.replace(target, suite_file=suite_file(tmp_path), ssh_config=refusing,
                                 blueprint_layers=["hardware"])

    report = run_validation(target, tmp_path / "out")

    assert {r.status for r in report.results} == {Status.ERROR}
    contexts = sorted(p.name for p in (tmp_path / "out" / "nodes").glob("context-*.json"))
    assert contexts == ["context-edge-bm-1.json", "context-edge-plain-1.json"]
    assert files_with(tmp_path, CANARY) == []


def encrypt_vault(folder: Path, monkeypatch: pytest.MonkeyPatch, entries: dict[str, Any]) -> None:
    """secrets.yaml beside the site, encrypted; its password in a file named by the env."""
    password = folder / "vault-password"
    password.write_text("vault-pass-for-bmc-checks\n")
    plain = yaml.safe_dump({"bmc_credentials": entries})
    secret = VaultSecret(b"vault-pass-for-bmc-checks")
    (folder / "secrets.yaml").write_bytes(VaultLib([("default", secret)]).encrypt(plain))
    monkeypatch.setenv(PASSWORD_FILE_ENV, str(password))


@pytest.mark.lab
def test_lab_validation_run_reads_the_bmc_from_the_controller(
    lab: LabHandle, emulator: Emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The whole path of `blueprint validate`: a lab site whose first node has a BMC (the
    # emulator, named by its system id, credentials in the vault); the runner proves SSH,
    # writes each node's context and runs its pytest, where the node-side check reads the
    # node over SSH and the BMC checks read Redfish from the controller.
    for key in ("BM1", "GPU1"):
        monkeypatch.delenv(f"BLUEPRINT_BMC_{key}_USERNAME", raising=False)
        monkeypatch.delenv(f"BLUEPRINT_BMC_{key}_PASSWORD", raising=False)
    folder = tmp_path / "site"
    folder.mkdir()
    (folder / "bmc-ca.pem").write_bytes((emulator.ca or Path()).read_bytes())
    profile = {**EMULATOR_FITS, "min_nics": 1}
    blueprint = {"name": "bmc-lab", "version": "1",
                 "layers": [{"name": "os_baseline", "roles": ["os_baseline"]}],
                 "hardware": {"control-plane": profile, "worker": profile},
                 "validation": {"suite": "lab"}}
    (folder / "bmc-lab.yaml").write_text(yaml.safe_dump(blueprint))
    data = lab.site_data("bmc-lab", "bmc-lab.yaml")
    first = data["nodes"][0]["name"]
    data["nodes"][0]["bmc"] = {"address": emulator.url, "credentials": "bm1",
                               "ca": "bmc-ca.pem", "system": SYSTEM_UUID, "timeout": 20}
    (folder / "site.yaml").write_text(yaml.safe_dump(data))
    encrypt_vault(folder, monkeypatch, {"bm1": {"username": USERNAME, "password": PASSWORD}})
    suite = tmp_path / "bmc-lab-suite.yaml"
    suite.write_text(yaml.safe_dump({"name": "bmc-lab", "checks": [
        {"id": "hardware.cpu.count", "mandatory": True},
        *({"id": check, "mandatory": True, "timeout": 120} for check in CHECKS)]}))
    target = dataclasses.replace(target_of(folder / "site.yaml", tmp_path / "state"),
                                 suite_file=suite, blueprint_layers=["hardware"])

    report = run_validation(target, tmp_path / "run")

    by_node: dict[str, dict[str, Status]] = {}
    for result in report.results:
        by_node.setdefault(result.node, {})[result.check_id] = result.status
    assert by_node[first] == {
        "hardware.cpu.count": Status.PASSED,
        "hardware.bmc.reachable": Status.PASSED,
        "hardware.bmc.cpu_count": Status.SKIPPED,
        "hardware.bmc.memory_size": Status.SKIPPED,
        "hardware.bmc.disk_size": Status.PASSED,
        "hardware.bmc.nic_count": Status.PASSED,
        "hardware.bmc.gpu_count": Status.SKIPPED,
        "hardware.bmc.boot_mode": Status.PASSED,
        "hardware.bmc.secure_boot": Status.PASSED,
        "hardware.bmc.bios_attributes": Status.SKIPPED,
        "hardware.bmc.firmware_versions": Status.PASSED,
    }, [(r.check_id, r.message) for r in report.results if r.node == first]
    for node in data["nodes"][1:]:
        assert by_node[node["name"]]["hardware.cpu.count"] is Status.PASSED
        assert {status for check, status in by_node[node["name"]].items()
                if check.startswith("hardware.bmc.")} == {Status.SKIPPED}
    skipped = [r.message for r in report.results
               if r.node != first and r.check_id == "hardware.bmc.reachable"]
    assert set(skipped) == {"no BMC in the site file"}
    assert files_with(tmp_path, CANARY) == []


def test_a_read_cut_by_the_check_timeout_is_not_repeated_by_the_next_checks(
    silent_bmc: str, vault_site: Path, tmp_path: Path,
) -> None:
    data = yaml.safe_load(vault_site.read_text())
    data["nodes"][0]["bmc"].update({"address": silent_bmc, "timeout": 30})
    vault_site.write_text(yaml.safe_dump(data))
    target = target_of(vault_site, tmp_path / "state")
    node = next(n for n in target.nodes if n.name == "edge-bm-1")

    started = time.monotonic()
    recorded = plugin_run(target, node, tmp_path / "run", suite_file(tmp_path), timeout=2)

    assert recorded["hardware.bmc.reachable"]["outcome"] == "error"
    assert "timed out after 2 s" in recorded["hardware.bmc.reachable"]["message"]
    disk = recorded["hardware.bmc.disk_size"]
    assert (disk["outcome"], disk["message"]) == ("error", (
        "BmcUnusable: the BMC could not be read: reading the BMC stopped: timed out after 2 s"))
    assert time.monotonic() - started < 25


def test_an_ipmi_bmc_is_read_and_what_ipmi_cannot_tell_is_skipped(
    ipmi_sim: IpmiSim, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The same checks through the same client factory as provision uses: OpenIPMI's
    # simulator answers for the node; IPMI's standard commands give identity and firmware,
    # not CPUs, memory, drives, NICs, PCIe devices or the boot mode.
    monkeypatch.setenv("BLUEPRINT_BMC_IPMI1_USERNAME", USERNAME)
    monkeypatch.setenv("BLUEPRINT_BMC_IPMI1_PASSWORD", PASSWORD)
    (tmp_path / "metal.yaml").write_text(yaml.safe_dump({
        "name": "metal-ipmi", "version": "1",
        "layers": [{"name": "os_baseline", "roles": ["os_baseline"]}],
        "hardware": {"worker": {"min_cpus": 8, "boot_mode": "uefi", "min_bmc_version": "9.0"}},
        "validation": {"suite": "lab"}}))
    site = tmp_path / "site.yaml"
    site.write_text(yaml.safe_dump({"name": "metal", "blueprint": "metal.yaml", "nodes": [
        {"name": "edge-ipmi-1", "address": "10.90.0.41", "roles": ["worker"],
         "bmc": {"protocol": "ipmi", "address": ipmi_sim.address, "credentials": "ipmi1",
                 "cipher_suite": 3, "timeout": 5}}]}))
    target = target_of(site, tmp_path / "s")

    results = run_checks(target, "edge-ipmi-1", suite_file(tmp_path), monkeypatch)

    assert statuses(results) == {
        "hardware.bmc.reachable": "passed",
        "hardware.bmc.cpu_count": "skipped",
        "hardware.bmc.memory_size": "skipped",
        "hardware.bmc.disk_size": "skipped",
        "hardware.bmc.nic_count": "skipped",
        "hardware.bmc.gpu_count": "skipped",
        "hardware.bmc.boot_mode": "skipped",
        "hardware.bmc.secure_boot": "skipped",
        "hardware.bmc.bios_attributes": "skipped",
        "hardware.bmc.firmware_versions": "passed",
    }, results
    assert results["hardware.bmc.boot_mode"][1] == (
        "the BMC does not report the boot mode (Boot.BootSourceOverrideMode)")
    assert all(PASSWORD not in message for _, message in results.values())
