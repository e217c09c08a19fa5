"""The IPMI fallback against OpenIPMI's simulator (ipmi_sim) and a UDP port that never answers.

The simulator's chassis drives a stand-in machine (a `sleep` process that runs while the power
is on), so power changes are seen as a process that starts and stops, and the boot device as
what the simulator was told.
"""

from __future__ import annotations

import functools
import logging
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from blueprint.baremetal import bootserver
from blueprint.baremetal.bmc import BmcError, BmcUnsupported, Credentials, RedfishBmc
from blueprint.baremetal.console import console_log_path, sol_peer, start_console
from blueprint.baremetal.ipmi import IpmiBmc, split_address
from blueprint.baremetal.provision import Settings, preflight, provision_node
from blueprint.errors import DeployFailed
from blueprint.loader import LoadedSite, load_site
from blueprint.models import Node, Site
from blueprint.state import StateDir

from .conftest import IPMI_BMC_MAC, IPMI_SERIAL, PASSWORD, USERNAME, Emulator, IpmiSim

POWER_WAIT = 20
KEY_DIR = Path(__file__).parents[2] / "unit" / "fixtures" / "sites"


def client(address: str, password: str = PASSWORD, *, timeout: float = 5.0,
           cipher_suite: int | None = None, uefi: bool = True) -> IpmiBmc:
    return IpmiBmc("edge-ipmi-1", address, Credentials(USERNAME, password), timeout=timeout,
                   cipher_suite=cipher_suite, uefi=uefi)


def test_addresses_with_and_without_a_port() -> None:
    assert split_address("10.20.1.5") == ("10.20.1.5", 623)
    assert split_address("bmc-1.edge:6230") == ("bmc-1.edge", 6230)
    assert split_address("[fd00::5]:6230") == ("fd00::5", 6230)
    assert split_address("[fd00::5]") == ("fd00::5", 623)


def test_power_on_off_reset_and_cycle_drive_the_standin_machine(ipmi_sim: IpmiSim) -> None:
    bmc = client(ipmi_sim.address)
    assert bmc.power_state() == "Off"
    assert ipmi_sim.machine_pid() is None

    bmc.power("on")
    bmc.wait_power("On", POWER_WAIT)
    first = ipmi_sim.machine_pid()
    assert first is not None

    bmc.power("reset")
    bmc.wait_power("On", POWER_WAIT)
    second = ipmi_sim.machine_pid()
    assert second is not None and second != first

    # A power cycle: off at once, on again a second later (the simulator's own timer).
    bmc.power("cycle")
    deadline = time.monotonic() + POWER_WAIT
    while ipmi_sim.machine_pid() in (None, second) and time.monotonic() < deadline:
        time.sleep(0.2)
    bmc.wait_power("On", POWER_WAIT)
    assert ipmi_sim.machine_pid() not in (None, second)

    bmc.power("graceful-off")
    bmc.wait_power("Off", POWER_WAIT)
    bmc.power("on")
    bmc.wait_power("On", POWER_WAIT)
    bmc.power("force-off")
    bmc.wait_power("Off", POWER_WAIT)
    assert ipmi_sim.machine_pid() is None
    assert "set shutdown 1" in ipmi_sim.calls and "set reset 1" in ipmi_sim.calls


def test_one_time_boot_from_network_and_disk_is_read_back(
        ipmi_sim: IpmiSim, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="blueprint.baremetal.ipmi")
    bmc = client(ipmi_sim.address)
    bmc.boot_once("Pxe")
    assert bmc.boot_device() == "Force PXE"
    assert (ipmi_sim.folder / "boot").read_text().strip() == "pxe"

    bmc.boot_once("Hdd")
    assert bmc.boot_device() == "Force Boot from default Hard-Drive"
    # The simulator's own name for the disk is "default".
    assert (ipmi_sim.folder / "boot").read_text().strip() == "default"

    client(ipmi_sim.address, uefi=False).boot_once("Pxe")
    # Once (never "persistent") and UEFI unless the site says legacy. The simulator keeps
    # only the device, so these two flags are checked as sent, not as honoured. (Each new
    # client first tries suite 17, which fails at the session, before the command is sent.)
    sent = [record.getMessage().split(" chassis ", 1)[1] for record in caplog.records
            if " chassis bootdev " in record.getMessage() and " -C 3 " in record.getMessage()]
    assert sent == ["bootdev pxe options=efiboot", "bootdev disk options=efiboot",
                    "bootdev pxe"]


def test_boot_targets_ipmi_cannot_give_are_refused(ipmi_sim: IpmiSim) -> None:
    bmc = client(ipmi_sim.address)
    with pytest.raises(BmcUnsupported) as caught:
        bmc.boot_once("UefiHttp", "http://10.20.0.2:8069/ipxe.efi")
    assert str(caught.value) == (f"node edge-ipmi-1: BMC {ipmi_sim.address} (IPMI) does not "
                                 "offer boot target UefiHttp; it offers Hdd, Pxe")
    assert not any(call.startswith("set boot") for call in ipmi_sim.calls)


def test_inventory_is_what_ipmi_knows(ipmi_sim: IpmiSim) -> None:
    inventory = client(ipmi_sim.address).inventory()
    assert (inventory.manufacturer, inventory.model, inventory.serial) == (
        "Contoso", "Edge 1U", IPMI_SERIAL)
    assert inventory.bmc_firmware == "9.08"
    assert inventory.bmc_mac == IPMI_BMC_MAC
    assert inventory.uuid == "efcdab89-6745-23a1-efcd-ab89674523a1"
    assert inventory.power_state == "Off"
    # Not in IPMI's standard commands: absent, never invented.
    assert (inventory.cpu_count, inventory.memory_gib, inventory.boot_mode) == (None,) * 3
    assert inventory.disks == () and inventory.nics == () and inventory.pcie_devices == ()
    caps = inventory.capabilities
    assert (caps.virtual_media, caps.bios, caps.pcie_devices) == (False, False, False)
    assert caps.boot_targets == ("Hdd", "Pxe")


def test_virtual_media_and_bios_are_refused_naming_the_node(ipmi_sim: IpmiSim) -> None:
    bmc = client(ipmi_sim.address)
    with pytest.raises(BmcUnsupported) as caught:
        bmc.boot_from_media_once("http://10.20.0.2:8069/installer.iso")
    assert str(caught.value) == (
        f"node edge-ipmi-1: BMC {ipmi_sim.address} speaks IPMI, which cannot insert virtual "
        "media; virtual media, BIOS settings and PCIe inventory need a Redfish BMC "
        "(bmc.protocol: redfish); boot it from the network (Pxe) instead")
    for refused in (bmc.bios_attributes, lambda: bmc.set_bios_attributes({"IntelVTd": "On"}),
                    bmc.eject_media):
        with pytest.raises(BmcUnsupported, match=r"^node edge-ipmi-1: .* speaks IPMI"):
            refused()
    assert ipmi_sim.calls == []  # refused before anything was sent


def test_cipher_suite_17_falls_back_to_3_which_the_simulator_offers(ipmi_sim: IpmiSim) -> None:
    bmc = client(ipmi_sim.address)
    assert bmc.power_state() == "Off"
    assert bmc._suites == (3,)

    only_17 = client(ipmi_sim.address, cipher_suite=17)
    with pytest.raises(BmcUnsupported) as caught:
        only_17.power_state()
    assert str(caught.value) == (
        f"node edge-ipmi-1: BMC {ipmi_sim.address} (IPMI): read the power state: the BMC "
        "offers none of cipher suites 17; set the node's bmc.cipher_suite to one it offers")


def test_wrong_password_is_refused_and_never_shown(ipmi_sim: IpmiSim,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    bmc = client(ipmi_sim.address, password="wrong-pass-Yk2")
    with pytest.raises(BmcError) as caught:
        bmc.power("on")
    assert str(caught.value) == (
        f"node edge-ipmi-1: BMC {ipmi_sim.address} (IPMI): power on: the BMC refused the "
        "credentials; check the node's bmc.credentials entry in secrets.yaml or the environment")
    assert ipmi_sim.machine_pid() is None
    # The password is in ipmitool's environment only: not in its command line (logged at
    # DEBUG) nor in any message.
    assert "run: " in caplog.text and "ipmitool" in caplog.text
    assert "wrong-pass-Yk2" not in caplog.text + str(caught.value)
    good = client(ipmi_sim.address)
    good.power_state()
    assert PASSWORD not in caplog.text


def test_a_bmc_that_never_answers_times_out_with_one_line(silent_ipmi: str) -> None:
    bmc = client(silent_ipmi, timeout=2.0)
    started = time.monotonic()
    with pytest.raises(BmcError) as caught:
        bmc.power_state()
    assert time.monotonic() - started < 30
    port = silent_ipmi.rsplit(":", 1)[1]
    assert str(caught.value) == (
        f"node edge-ipmi-1: BMC {silent_ipmi} (IPMI): read the power state: no IPMI session "
        f"within 2 s (no answer on UDP port {port}, or IPMI over LAN is off)")


def test_provision_drives_an_ipmi_node_to_network_boot(ipmi_sim: IpmiSim,
                                                       tmp_path: Path) -> None:
    """The provisioning flow on an IPMI BMC: one-time PXE, power on, then the wait for SSH
    (which fails here: the stand-in machine installs nothing)."""
    site = Site.model_validate({
        "name": "metal", "blueprint": "lab",
        "network": {"subnet": "192.0.2.0/24"},
        "provision": {"boot_server": "192.0.2.2", "interface": "lo"},
        "nodes": [{"name": "edge-ipmi-1", "address": "192.0.2.21", "roles": ["worker"],
                   "boot_mac": "52:54:00:6b:02:01", "install_disk": "/dev/vda",
                   "bmc": {"protocol": "ipmi", "address": ipmi_sim.address,
                           "credentials": "ipmi1"}}],
    })
    node: Node = site.nodes[0]
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text("")
    outcome = provision_node(site, node, client(ipmi_sim.address), known_hosts,
                             Settings(power_timeout=POWER_WAIT, ssh_timeout=1, poll=0.5),
                             done_before=False)
    assert outcome.result == "failed"
    assert outcome.detail.startswith("no SSH login within 1 s")
    assert ipmi_sim.machine_pid() is not None
    assert "set boot pxe" in ipmi_sim.calls
    assert ipmi_sim.calls.index("set boot pxe") < ipmi_sim.calls.index("set power 1")


BLUEPRINT = """\
name: metal-test
version: "1"
layers:
  - name: os_baseline
    roles: [os_baseline]
hardware:
  worker: {min_cpus: 1, min_memory_gib: 1, min_disk_gib: 100, min_bmc_version: "9.0"}
validation:
  suite: lab
"""


def write_ipmi_site(folder: Path, address: str) -> Path:
    (folder / "metal.yaml").write_text(BLUEPRINT, encoding="utf-8")
    site = folder / "site.yaml"
    site.write_text(f"""\
name: metal
blueprint: metal.yaml
nodes:
  - name: edge-ipmi-1
    address: 10.90.0.31
    roles: [worker]
    boot_mac: "52:54:00:6b:02:01"
    bmc: {{protocol: ipmi, address: "{address}", credentials: ipmi1, timeout: 5}}
""", encoding="utf-8")
    return site


def run_discover(site: Path, password: str = PASSWORD) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, BLUEPRINT_BMC_IPMI1_USERNAME=USERNAME,
               BLUEPRINT_BMC_IPMI1_PASSWORD=password, COLUMNS="200")
    return subprocess.run([sys.executable, "-m", "blueprint.cli", "discover", str(site), "--all"],
                          capture_output=True, text=True, env=env, check=False, timeout=300)


def test_discover_cli_reads_an_ipmi_node(ipmi_sim: IpmiSim, tmp_path: Path) -> None:
    site = write_ipmi_site(tmp_path, ipmi_sim.address)
    done = run_discover(site)
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    bmc_version = next(line for line in lines if " bmc_version " in line)
    assert "9.08" in bmc_version and " ok " in bmc_version
    # IPMI reports no CPUs, memory, disks or host NICs: unknown, never passed.
    for check in ("cpus", "memory_gib", "disk_gib", "boot_mac"):
        assert "unknown" in next(line for line in lines if f" {check} " in line)
    kept = (tmp_path / ".state" / "bmc" / "edge-ipmi-1.json").read_text()
    assert IPMI_SERIAL in kept and IPMI_BMC_MAC in kept
    assert PASSWORD not in done.stdout + done.stderr


def test_discover_cli_with_a_wrong_password_exits_3(ipmi_sim: IpmiSim, tmp_path: Path) -> None:
    site = write_ipmi_site(tmp_path, ipmi_sim.address)
    done = run_discover(site, password="wrong-pass-Yk2")
    assert done.returncode == 3, done.stdout + done.stderr
    assert "refused the credentials" in done.stdout
    assert "wrong-pass-Yk2" not in done.stdout + done.stderr


PROVISION_BLUEPRINT = """\
name: metal-test
version: "1"
layers:
  - name: os_baseline
    roles: [os_baseline]
hardware:
  worker: {min_cpus: 1, bios: {IntelVTd: Enabled}}
validation:
  suite: lab
"""


def provision_site(folder: Path, address: str, boot: str) -> LoadedSite:
    """A site of one IPMI node, its installer and iPXE files as placeholders (stand-ins)."""
    folder.mkdir(exist_ok=True)
    (folder / "metal.yaml").write_text(PROVISION_BLUEPRINT, encoding="utf-8")
    for name in ("good_key", "good_key.pub"):
        shutil.copy(KEY_DIR / name, folder / name)
    (folder / "good_key").chmod(0o600)
    (folder / "site.yaml").write_text(f"""\
name: metal
blueprint: metal.yaml
ssh: {{user: root, key: good_key}}
network: {{subnet: 192.0.2.0/24}}
provision: {{boot_server: 192.0.2.2, interface: lo, boot: {boot}}}
nodes:
  - name: edge-ipmi-1
    address: 192.0.2.21
    roles: [worker]
    boot_mac: "52:54:00:6b:02:01"
    install_disk: /dev/sda
    bmc: {{protocol: ipmi, address: "{address}", credentials: ipmi1, timeout: 5}}
""", encoding="utf-8")
    boot = folder / ".state" / "boot"
    for path in (boot / "http" / "installer" / "debian-12" / "linux",
                 boot / "http" / "installer" / "debian-12" / "initrd.gz",
                 boot / "tftp" / "undionly.kpxe", boot / "tftp" / "ipxe.efi"):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"placeholder\n")
    return load_site(folder / "site.yaml")


@pytest.fixture
def preflight_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Credentials in the environment, and the boot server reported as running (its real
    start needs root and dnsmasq; test_provision.py covers it)."""
    monkeypatch.setenv("BLUEPRINT_BMC_IPMI1_USERNAME", USERNAME)
    monkeypatch.setenv("BLUEPRINT_BMC_IPMI1_PASSWORD", PASSWORD)
    monkeypatch.setattr(bootserver, "status", lambda loaded, state: {"dnsmasq": True,
                                                                     "http": True})


@pytest.mark.usefixtures("preflight_env")
def test_provision_preflight_takes_an_ipmi_node_for_pxe(ipmi_sim: IpmiSim,
                                                        tmp_path: Path) -> None:
    loaded = provision_site(tmp_path, ipmi_sim.address, "pxe")
    planned = preflight(loaded, {}, StateDir.for_site(loaded.site_dir), None)
    assert [(node.name, type(bmc).__name__, bios) for node, bmc, bios in planned] == [
        ("edge-ipmi-1", "IpmiBmc", {})]


@pytest.mark.usefixtures("preflight_env")
def test_provision_preflight_refuses_http_boot_bios_and_a_wrong_password(
        ipmi_sim: IpmiSim, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    loaded = provision_site(tmp_path, ipmi_sim.address, "http")
    state = StateDir.for_site(loaded.site_dir)
    with pytest.raises(DeployFailed) as caught:
        preflight(loaded, {}, state, None)
    assert str(caught.value) == (f"node edge-ipmi-1: BMC {ipmi_sim.address} offers boot "
                                 "targets Hdd, Pxe, not UefiHttp (provision.boot)")

    with pytest.raises(DeployFailed) as caught:
        preflight(loaded, {}, state, None, apply_bios=True)
    assert str(caught.value) == (
        f"node edge-ipmi-1: BMC {ipmi_sim.address} speaks IPMI, which cannot read BIOS "
        "settings; virtual media, BIOS settings and PCIe inventory need a Redfish BMC "
        "(bmc.protocol: redfish)")
    assert ipmi_sim.calls == []  # nothing was asked of the machine

    # A wrong password is found before any node is touched.
    monkeypatch.setenv("BLUEPRINT_BMC_IPMI1_PASSWORD", "wrong-pass-Yk2")
    pxe = provision_site(tmp_path / "pxe", ipmi_sim.address, "pxe")
    with pytest.raises(DeployFailed) as caught:
        preflight(pxe, {}, StateDir.for_site(pxe.site_dir), None)
    assert str(caught.value) == (
        f"node edge-ipmi-1: BMC {ipmi_sim.address} (IPMI): open a session: the BMC refused "
        "the credentials; check the node's bmc.credentials entry in secrets.yaml or the "
        "environment")


def _console_site(address: str) -> Site:
    return Site.model_validate({
        "name": "metal", "blueprint": "lab",
        "network": {"subnet": "192.0.2.0/24"},
        "provision": {"boot_server": "192.0.2.2", "interface": "lo"},
        "nodes": [{"name": "edge-ipmi-1", "address": "192.0.2.21", "roles": ["worker"],
                   "boot_mac": "52:54:00:6b:02:01", "install_disk": "/dev/vda",
                   "bmc": {"protocol": "ipmi", "address": address, "credentials": "ipmi1"}}],
    })


def test_provision_captures_the_serial_console_over_sol(ipmi_sim_console: IpmiSim,
                                                        tmp_path: Path) -> None:
    """ipmi_sim's SOL carries the stand-in machine's serial port, which talks only while
    the machine runs: the log shows what the node printed after provision powered it on."""
    site = _console_site(ipmi_sim_console.address)
    node = site.nodes[0]
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text("")
    state = StateDir.for_site(tmp_path)
    settings = Settings(power_timeout=POWER_WAIT, ssh_timeout=3, poll=0.5)

    for run_id in ("provision-1", "provision-2"):  # the second finds the SOL payload free
        bmc = client(ipmi_sim_console.address)
        path = console_log_path(state, node.name, run_id)
        outcome = provision_node(site, node, bmc, known_hosts, settings, done_before=False,
                                 console=functools.partial(start_console, node, bmc, {}, path))
        assert outcome.result == "failed"  # the stand-in installs nothing
        assert outcome.console.startswith(f"{path} (") and "ended early" not in outcome.console
        text = path.read_text()
        assert "stand-in machine: boot step 0" in text, text
        assert "stand-in install: late.sh password=********\n" in text
        assert PASSWORD not in text
        assert path.stat().st_mode & 0o777 == 0o600
        assert path.parent == tmp_path / ".state" / "nodes" / "edge-ipmi-1"
        bmc.power("force-off")
        bmc.wait_power("Off", POWER_WAIT)
    # No ipmitool is left running for this BMC.
    port = ipmi_sim_console.address.rsplit(":", 1)[1]
    leftover = subprocess.run(["pgrep", "-f", f"ipmitool.*-p {port} .*sol activate"],
                              capture_output=True, text=True, check=False)
    assert leftover.stdout == ""


def test_no_console_is_captured_where_sol_is_not_offered(ipmi_sim: IpmiSim, gpu_mockup: str,
                                                         emulator_minimum: Emulator) -> None:
    # ipmi_sim without a `sol` line in its lan.conf.
    node = _console_site(ipmi_sim.address).nodes[0]
    capture, why = start_console(node, client(ipmi_sim.address), {}, Path("/nonexistent/x"))
    assert capture is None
    assert why.startswith("no console captured: ")
    # sushy-tools' emulator advertises no SerialConsole in its manager.
    redfish = RedfishBmc("edge-bm-1", emulator_minimum.url, Credentials("u", "p"))
    assert sol_peer(node, redfish, {}) == (
        None, "the BMC advertises no serial console (Redfish SerialConsole)")
    # The static mockup (stand-in) advertises SSH and IPMI; its IPMI side on 127.0.0.1:623
    # does not answer, which is said, and nothing is captured.
    mockup_node = Node.model_validate({
        "name": "edge-gpu-1", "address": "192.0.2.22", "roles": ["worker"],
        "bmc": {"address": gpu_mockup, "credentials": "gpu1", "timeout": 2}})
    mockup = RedfishBmc("edge-gpu-1", gpu_mockup, Credentials("u", "p"))
    os.environ["BLUEPRINT_BMC_GPU1_USERNAME"] = USERNAME
    os.environ["BLUEPRINT_BMC_GPU1_PASSWORD"] = PASSWORD
    try:
        assert mockup.serial_console_types() == ("SSH", "IPMI")
        sol, why = sol_peer(mockup_node, mockup, {})
    finally:
        del os.environ["BLUEPRINT_BMC_GPU1_USERNAME"], os.environ["BLUEPRINT_BMC_GPU1_PASSWORD"]
    assert sol is None
    assert "BMC 127.0.0.1 (IPMI): read the SOL settings: no IPMI session" in why
