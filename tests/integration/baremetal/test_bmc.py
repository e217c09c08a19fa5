"""The Redfish BMC client against sushy-tools' emulator, a silent socket and a static mockup."""

from __future__ import annotations

import pytest

from blueprint.baremetal.bmc import BmcError, BmcUnsupported, Credentials, RedfishBmc

from .conftest import BOOT_MAC, PASSWORD, SECOND_MAC, SYSTEM_UUID, USERNAME, Emulator

# The fake driver applies a power change 1 to 11 s after it is asked, like slow real BMCs.
POWER_WAIT = 60


def client(emulator: Emulator, password: str = PASSWORD, timeout: float = 20) -> RedfishBmc:
    verify = str(emulator.ca) if emulator.ca else True
    return RedfishBmc("edge-bm-1", emulator.url, Credentials(USERNAME, password),
                      verify=verify, timeout=timeout)


def test_discovers_the_one_system_behind_the_bmc(emulator: Emulator) -> None:
    bmc = client(emulator)
    assert bmc.system().identity == SYSTEM_UUID


def test_a_named_system_that_is_not_there_is_one_line(emulator: Emulator) -> None:
    bmc = RedfishBmc("edge-bm-1", emulator.url, Credentials(USERNAME, PASSWORD),
                     verify=str(emulator.ca), system_id="nope")
    with pytest.raises(BmcError) as caught:
        bmc.system()
    assert str(caught.value) == (
        f"node edge-bm-1: BMC {emulator.url}: system 'nope' is not there; it has {SYSTEM_UUID}"
    )


def test_inventory_from_the_emulator(emulator: Emulator) -> None:
    inventory = client(emulator).inventory()
    assert inventory.system_id == SYSTEM_UUID
    assert inventory.uuid == SYSTEM_UUID
    assert inventory.manufacturer == "Sushy Emulator"
    assert inventory.bmc_firmware == "1.00"
    assert inventory.boot_mode == "UEFI"
    assert inventory.macs == (BOOT_MAC, SECOND_MAC)
    assert [(d.id, d.capacity_bytes, d.protocol) for d in inventory.disks] == [
        ("disk-0", 960_197_124_096, "NVMe")]
    # The fake driver models no processors, memory, BIOS or PCIe devices: they are absent,
    # not invented.
    assert inventory.cpu_count is None
    assert inventory.memory_gib is None
    assert inventory.pcie_devices == ()
    caps = inventory.capabilities
    assert caps.virtual_media is True
    assert caps.bios is False
    assert set(caps.boot_targets) >= {"Pxe", "UefiHttp", "Cd", "Hdd"}
    assert set(caps.reset_types) >= {"On", "ForceOff", "GracefulShutdown", "ForceRestart"}


def test_power_transitions(emulator: Emulator) -> None:
    bmc = client(emulator)
    if bmc.power_state() != "Off":
        bmc.power("force-off")
        bmc.wait_power("Off", POWER_WAIT)

    bmc.power("on")
    bmc.wait_power("On", POWER_WAIT)
    assert bmc.power_state() == "On"

    bmc.power("graceful-off")
    bmc.wait_power("Off", POWER_WAIT)

    bmc.power("on")
    bmc.wait_power("On", POWER_WAIT)
    bmc.power("reset")
    bmc.wait_power("On", POWER_WAIT)

    bmc.power("force-off")
    bmc.wait_power("Off", POWER_WAIT)
    assert bmc.power_state() == "Off"


def test_boot_override_to_network_once(emulator: Emulator) -> None:
    bmc = client(emulator)
    bmc.boot_once("Pxe")
    # The emulator keeps the target and reports every override as Continuous (it
    # ignores BootSourceOverrideEnabled); the target is what it proves.
    target, _ = bmc.boot_override()
    assert target == "Pxe"
    bmc.boot_once("Hdd")
    assert bmc.boot_override()[0] == "Hdd"


def test_virtual_media_insert_boot_once_and_eject(emulator: Emulator, media_server: str) -> None:
    bmc = client(emulator)
    image = f"{media_server}/installer.iso"
    bmc.boot_from_media_once(image)
    assert bmc.media() == (image, True)
    assert bmc.boot_override()[0] == "Cd"

    bmc.eject_media()
    assert bmc.media() == (None, False)
    bmc.boot_once("Hdd")


def test_bios_not_advertised_by_the_emulator_is_one_line(emulator: Emulator) -> None:
    with pytest.raises(BmcUnsupported) as caught:
        client(emulator).bios_attributes()
    assert str(caught.value) == (
        f"node edge-bm-1: BMC {emulator.url} offers no BIOS attributes"
    )


def test_wrong_credentials_are_one_line_without_the_password(emulator: Emulator) -> None:
    with pytest.raises(BmcError) as caught:
        client(emulator, password="wrong-password-1").inventory()
    message = str(caught.value)
    assert message == (
        f"node edge-bm-1: BMC {emulator.url}: list systems: the BMC refused the credentials "
        "(HTTP 401); check the node's bmc.credentials entry in secrets.yaml or the environment"
    )
    assert "wrong-password-1" not in message
    assert "\n" not in message


def test_untrusted_certificate_without_the_site_ca(emulator: Emulator) -> None:
    bmc = RedfishBmc("edge-bm-1", emulator.url, Credentials(USERNAME, PASSWORD), verify=True,
                     timeout=10)
    with pytest.raises(BmcError) as caught:
        bmc.system()
    assert str(caught.value) == (
        f"node edge-bm-1: BMC {emulator.url}: connect: its TLS certificate is not trusted; "
        "give the CA that signed it as the node's bmc.ca (verification stays on)"
    )


def test_bmc_that_never_answers_times_out_with_one_line(silent_bmc: str) -> None:
    bmc = RedfishBmc("edge-bm-9", silent_bmc, Credentials(USERNAME, PASSWORD), timeout=1.5)
    with pytest.raises(BmcError) as caught:
        bmc.system()
    assert str(caught.value) == (
        f"node edge-bm-9: BMC {silent_bmc}: connect: no answer within 1.5 s"
    )


def test_bmc_without_virtual_media(emulator_minimum: Emulator, media_server: str) -> None:
    bmc = RedfishBmc("edge-bm-2", emulator_minimum.url, Credentials(USERNAME, PASSWORD),
                     timeout=10)
    assert bmc.capabilities().virtual_media is False
    with pytest.raises(BmcUnsupported) as caught:
        bmc.insert_media(f"{media_server}/installer.iso")
    assert str(caught.value) == (
        f"node edge-bm-2: BMC {emulator_minimum.url} offers no virtual media; boot it from the "
        "network (boot target Pxe or UefiHttp) instead"
    )
    # Network boot still works on it, decided by the targets it advertises.
    bmc.boot_once("Pxe")
    assert bmc.boot_override()[0] == "Pxe"


def test_gpu_inventory_from_static_mockup(gpu_mockup: str) -> None:
    bmc = RedfishBmc("edge-gpu-1", gpu_mockup, Credentials(USERNAME, PASSWORD), timeout=10)
    inventory = bmc.inventory()
    assert (inventory.manufacturer, inventory.model, inventory.serial) == (
        "Mockup Systems", "MX-4GPU", "MOCK-0001")
    assert (inventory.bios_version, inventory.bmc_firmware) == ("2.1.7", "3.10.0")
    assert (inventory.cpu_count, inventory.cpu_model, inventory.memory_gib) == (
        2, "Mockup Xeon 6338", 512.0)
    assert inventory.macs == ("b8:ce:f6:10:20:30",)
    assert [(d.id, d.model, d.vendor_id, d.device_id) for d in inventory.gpus] == [
        ("gpu0", "L40S", "0x10de", "0x26b9")]
    assert len(inventory.pcie_devices) == 2
    assert inventory.capabilities.virtual_media is False
    assert inventory.capabilities.boot_targets == ("Hdd", "Pxe", "UefiHttp")


def test_bios_attributes_read_and_set_on_static_mockup(gpu_mockup: str) -> None:
    bmc = RedfishBmc("edge-gpu-1", gpu_mockup, Credentials(USERNAME, PASSWORD), timeout=10)
    assert bmc.bios_attributes()["Above4GDecoding"] == "Disabled"
    bmc.set_bios_attributes({"Above4GDecoding": "Enabled", "SriovGlobalEnable": "Enabled"})
    assert bmc.pending_bios_attributes() == {"Above4GDecoding": "Enabled",
                                             "SriovGlobalEnable": "Enabled"}
    with pytest.raises(BmcUnsupported) as caught:
        bmc.set_bios_attributes({"NoSuchKnob": "On"})
    assert str(caught.value) == (
        f"node edge-gpu-1: BMC {gpu_mockup}: BIOS attribute(s) NoSuchKnob are not offered by "
        "this firmware"
    )


def test_power_action_not_advertised_is_refused(gpu_mockup: str) -> None:
    bmc = RedfishBmc("edge-gpu-1", gpu_mockup, Credentials(USERNAME, PASSWORD), timeout=10)
    with pytest.raises(BmcUnsupported) as caught:
        bmc.power("graceful-off")
    assert str(caught.value) == (
        f"node edge-gpu-1: BMC {gpu_mockup} does not offer power action GracefulShutdown; "
        "it offers ForceOff, ForceRestart, On"
    )


def test_password_never_in_debug_logs(emulator: Emulator, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("DEBUG")
    bmc = client(emulator)
    bmc.inventory()
    bmc.close()
    with pytest.raises(BmcError):
        client(emulator, password="wrong-password-2").inventory()
    assert caplog.text  # sushy did log its requests
    assert PASSWORD not in caplog.text
    assert "wrong-password-2" not in caplog.text
    assert PASSWORD not in repr(Credentials(USERNAME, PASSWORD))


def test_apply_bios_plans_only_differing_attributes_on_static_mockup(gpu_mockup: str) -> None:
    from blueprint.baremetal.provision import bios_changes

    bmc = RedfishBmc("edge-gpu-1", gpu_mockup, Credentials(USERNAME, PASSWORD), timeout=10)
    wanted = {"Above4GDecoding": "Enabled", "IntelVTd": "enabled"}
    assert bios_changes(bmc, wanted) == {"Above4GDecoding": "Enabled"}
    with pytest.raises(BmcUnsupported) as caught:
        bios_changes(bmc, {"Above4GDecoding": "Enabled", "ResizableBar": "Enabled"})
    assert str(caught.value) == (
        f"node edge-gpu-1: BMC {gpu_mockup}: BIOS attribute(s) ResizableBar of the hardware "
        "profile are not offered by this firmware"
    )


def test_apply_bios_on_a_bmc_without_bios_is_refused(emulator: Emulator) -> None:
    from blueprint.baremetal.provision import bios_changes

    assert bios_changes(client(emulator), {}) == {}
    with pytest.raises(BmcUnsupported) as caught:
        bios_changes(client(emulator), {"Above4GDecoding": "Enabled"})
    assert str(caught.value) == f"node edge-bm-1: BMC {emulator.url} offers no BIOS attributes"
