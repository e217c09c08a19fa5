"""`blueprint discover` against the emulator and the static GPU mockup (stand-in)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from .conftest import BOOT_MAC, PASSWORD, USERNAME, Emulator

BLUEPRINT = """\
name: metal-test
version: "1"
layers:
  - name: os_baseline
    roles: [os_baseline]
hardware:
  worker: {{min_cpus: 1, min_memory_gib: 1, min_disk_gib: 100, boot_mode: uefi,
           min_bmc_version: "{bmc_min}"}}
  gpu: {{min_cpus: 2, min_memory_gib: 1024, min_disk_gib: 1, gpus: 1,
        bios: {{Above4GDecoding: Enabled}}}}
validation:
  suite: lab
"""


def write_site(folder: Path, emulator: Emulator, *, bmc_min: str, gpu_url: str | None = None,
               boot_mac: str = BOOT_MAC) -> Path:
    shutil.copy(emulator.ca or "", folder / "bmc-ca.pem")
    (folder / "metal.yaml").write_text(BLUEPRINT.format(bmc_min=bmc_min), encoding="utf-8")
    nodes = f"""\
  - name: edge-bm-1
    address: 10.90.0.11
    roles: [worker]
    boot_mac: "{boot_mac}"
    bmc: {{address: "{emulator.url}", credentials: bm1, ca: bmc-ca.pem, timeout: 20}}
"""
    if gpu_url:
        nodes += f"""\
  - name: edge-gpu-1
    address: 10.90.0.21
    roles: [gpu]
    boot_mac: "b8:ce:f6:10:20:30"
    bmc: {{address: "{gpu_url}", credentials: gpu1, timeout: 10}}
"""
    site = folder / "site.yaml"
    site.write_text(f"name: metal\nblueprint: metal.yaml\nnodes:\n{nodes}", encoding="utf-8")
    return site


def run(site: Path, *args: str, password: str = PASSWORD) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    for key in ("BM1", "GPU1"):
        env[f"BLUEPRINT_BMC_{key}_USERNAME"] = USERNAME
        env[f"BLUEPRINT_BMC_{key}_PASSWORD"] = password
    env["COLUMNS"] = "200"
    cmd = [sys.executable, "-m", "blueprint.cli", "discover", str(site), *args]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, check=False,
                          timeout=300)


def test_matching_node_exits_0_and_keeps_its_inventory(emulator: Emulator,
                                                        tmp_path: Path) -> None:
    site = write_site(tmp_path, emulator, bmc_min="1.0")
    done = run(site, "--all")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "boot_mac" in done.stdout and "ok" in done.stdout
    # The fake driver reports no CPU count: unknown, never passed.
    assert "cpus" in done.stdout and "unknown" in done.stdout
    assert (tmp_path / ".state" / "bmc" / "edge-bm-1.json").is_file()
    assert PASSWORD not in done.stdout + done.stderr


def test_deviations_exit_1_with_a_table(emulator: Emulator, gpu_mockup: str,
                                        tmp_path: Path) -> None:
    site = write_site(tmp_path, emulator, bmc_min="2.0", gpu_url=gpu_mockup,
                      boot_mac="52:54:00:6b:01:99")
    done = run(site)
    assert done.returncode == 1, done.stdout + done.stderr
    lines = done.stdout.splitlines()

    def row(node: str, check: str) -> str:
        return next(line for line in lines if node in line and f" {check} " in line)
    assert "deviation" in row("edge-bm-1", "bmc_version") and "1.00" in row(
        "edge-bm-1", "bmc_version")
    assert "deviation" in row("edge-bm-1", "boot_mac")
    assert "deviation" in row("edge-gpu-1", "memory_gib")
    assert "Disabled" in row("edge-gpu-1", "bios.Above4GDecoding")
    # The mockup's L40S meets gpus >= 1: a passed check is not listed without --all.
    assert not any(" gpus " in line for line in lines)
    assert done.stderr.strip() == (
        f"error: 4 deviation(s) from {site} and blueprint metal-test's hardware profile")


def test_wrong_credentials_exit_3_with_one_line_per_node(emulator: Emulator,
                                                         tmp_path: Path) -> None:
    site = write_site(tmp_path, emulator, bmc_min="1.0")
    done = run(site, password="wrong-pass-Yk2")
    assert done.returncode == 3, done.stdout + done.stderr
    assert "refused the credentials" in done.stdout
    assert "wrong-pass-Yk2" not in done.stdout + done.stderr
    assert done.stderr.strip() == "error: 1 BMC(s) could not be read; see the table above"


def test_missing_credentials_stop_before_any_bmc_is_contacted(emulator: Emulator,
                                                              tmp_path: Path) -> None:
    site = write_site(tmp_path, emulator, bmc_min="1.0")
    env = {k: v for k, v in os.environ.items() if not k.startswith("BLUEPRINT_BMC_")}
    done = subprocess.run([sys.executable, "-m", "blueprint.cli", "discover", str(site)],
                          capture_output=True, text=True, env=env, check=False)
    assert done.returncode == 4
    assert done.stderr.strip() == (
        "error: node edge-bm-1: BMC credentials 'bm1' are neither in the environment "
        "(BLUEPRINT_BMC_BM1_USERNAME, BLUEPRINT_BMC_BM1_PASSWORD) nor under bmc_credentials "
        "in secrets.yaml"
    )


COMMENTED_SITE = """\
# Site of the discover --write tests: these comments and this layout must survive.
name: metal
blueprint: metal.yaml   # the recipe
nodes:
  - name: edge-bm-1     # rack 3, slot 1
    address: 10.90.0.11
    roles: [worker]
    bmc: {{address: "{url}", credentials: bm1, ca: bmc-ca.pem, timeout: 20}}
"""


def commented_site(folder: Path, emulator: Emulator, boot_mac: str | None = None) -> Path:
    site = write_site(folder, emulator, bmc_min="1.0")
    text = COMMENTED_SITE.format(url=emulator.url)
    if boot_mac:
        text = text.replace("    roles:", f'    boot_mac: "{boot_mac}"   # from the rack sheet\n'
                                         "    roles:")
    site.write_text(text, encoding="utf-8")
    return site


def test_write_fills_the_boot_mac_keeps_comments_and_is_a_no_op_the_second_time(
        emulator: Emulator, tmp_path: Path) -> None:
    site = commented_site(tmp_path, emulator)
    before = site.read_text()

    # Two NICs: which one boots is not for discover to guess.
    done = run(site, "--write")
    assert done.returncode == 1, done.stdout + done.stderr
    assert "ambiguous" in done.stdout and "--boot-nic edge-bm-1=ID" in done.stdout
    assert site.read_text() == before

    done = run(site, "--write", "--boot-nic", f"edge-bm-1={BOOT_MAC}")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "written" in done.stdout
    assert site.read_text() == before.replace(
        "    address: 10.90.0.11\n", f'    address: 10.90.0.11\n    boot_mac: "{BOOT_MAC}"\n')

    done = run(site, "--write")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "unchanged" in done.stdout
    assert site.read_text() == before.replace(
        "    address: 10.90.0.11\n", f'    address: 10.90.0.11\n    boot_mac: "{BOOT_MAC}"\n')


def test_write_keeps_a_conflicting_mac_unless_forced(emulator: Emulator, tmp_path: Path) -> None:
    site = commented_site(tmp_path, emulator, boot_mac="52:54:00:6b:01:99")
    before = site.read_text()
    done = run(site, "--write", "--boot-nic", f"edge-bm-1={BOOT_MAC}")
    assert done.returncode == 1, done.stdout + done.stderr
    assert "conflict" in done.stdout and "--force replaces it" in done.stdout
    assert site.read_text() == before

    done = run(site, "--write", "--force", "--boot-nic", f"edge-bm-1={BOOT_MAC}")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "replaced" in done.stdout
    assert site.read_text() == before.replace("52:54:00:6b:01:99", BOOT_MAC)
    assert f'boot_mac: "{BOOT_MAC}"   # from the rack sheet' in site.read_text()


def test_force_without_write_is_bad_input(emulator: Emulator, tmp_path: Path) -> None:
    done = run(commented_site(tmp_path, emulator), "--force")
    assert done.returncode == 2
    assert done.stderr.strip() == "error: --boot-nic and --force only go with --write"


def test_a_board_swapped_since_provisioning_shows(emulator: Emulator, tmp_path: Path) -> None:
    from blueprint.baremetal.bmc import Capabilities, Inventory, Nic
    from blueprint.baremetal.discover import record_provisioned
    from blueprint.loader import load_site
    from blueprint.state import StateDir

    # What provision recorded for the board it installed, here an older board than the
    # emulator's (serial and boot NIC differ), written by provision's own function.
    site = commented_site(tmp_path, emulator, boot_mac="52:54:00:6b:01:99")
    loaded = load_site(site)
    old_board = Inventory(
        system_id="1", manufacturer=None, model=None, serial="SN-OLD-BOARD", uuid=None,
        power_state=None, bios_version=None, bmc_firmware=None, boot_mode=None,
        secure_boot=None, cpu_count=None, cpu_model=None, memory_gib=None, disks=(),
        nics=(Nic("1", "52:54:00:6b:01:99"),), pcie_devices=(),
        capabilities=Capabilities((), (), False, False, False, False))
    state = StateDir.for_site(loaded.site_dir)
    record_provisioned(state, loaded.site.nodes[0], old_board, "provision-test-run")
    done = run(site)
    assert done.returncode == 1, done.stdout + done.stderr
    board = next(line for line in done.stdout.splitlines() if " board " in line)
    assert "deviation" in board and "boot NIC changed since provisioning" in done.stdout
    assert "boot_mac" in done.stdout
