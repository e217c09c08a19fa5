"""BMC credentials: the environment first, then the vault; never shown; bad entries refused."""

from __future__ import annotations

import pytest

from blueprint.baremetal.access import bmc_credentials, env_names, open_bmc
from blueprint.baremetal.ipmi import IpmiBmc
from blueprint.errors import BadInput, EnvironmentMissing
from blueprint.models import Node
from blueprint.secrets import REDACTOR

NODE = Node.model_validate({"name": "edge-1", "address": "10.0.0.1", "roles": ["worker"],
                            "bmc": {"address": "https://10.0.1.1", "credentials": "bmc-edge.1"}})


def test_env_names_are_upper_case_with_underscores() -> None:
    assert env_names("bmc-edge.1") == ("BLUEPRINT_BMC_BMC_EDGE_1_USERNAME",
                                       "BLUEPRINT_BMC_BMC_EDGE_1_PASSWORD")


def test_vault_entry_is_used_and_its_password_redacted(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in env_names("bmc-edge.1"):
        monkeypatch.delenv(name, raising=False)
    secrets = {"bmc_credentials": {"bmc-edge.1": {"username": "ops", "password": "vault-Qx7"}}}
    credentials = bmc_credentials(NODE, secrets)
    assert (credentials.username, credentials.password) == ("ops", "vault-Qx7")
    assert "vault-Qx7" not in repr(credentials)
    assert REDACTOR.redact("password vault-Qx7 here") == "password ******** here"


def test_environment_wins_over_the_vault(monkeypatch: pytest.MonkeyPatch) -> None:
    user, password = env_names("bmc-edge.1")
    monkeypatch.setenv(user, "env-user")
    monkeypatch.setenv(password, "env-pass-Zz1")
    secrets = {"bmc_credentials": {"bmc-edge.1": {"username": "ops", "password": "vault-Qx7"}}}
    assert bmc_credentials(NODE, secrets).username == "env-user"


def test_missing_credentials_exit_4(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in env_names("bmc-edge.1"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(EnvironmentMissing):
        bmc_credentials(NODE, {})


def test_malformed_vault_entry_is_bad_input(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in env_names("bmc-edge.1"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(BadInput) as caught:
        bmc_credentials(NODE, {"bmc_credentials": {"bmc-edge.1": {"user": "x"}}})
    assert str(caught.value) == (
        "secrets.yaml: bmc_credentials.bmc-edge.1: give exactly a non-empty username and "
        "password")


def ipmi_node(**bmc: object) -> Node:
    return Node.model_validate({"name": "edge-1", "address": "10.0.0.1", "roles": ["worker"],
                                "bmc": {"protocol": "ipmi", "address": "10.0.1.1:6230",
                                        "credentials": "bmc-edge.1", **bmc}})


def test_ipmi_nodes_get_the_ipmi_client_with_their_site_options(
        monkeypatch: pytest.MonkeyPatch) -> None:
    user, password = env_names("bmc-edge.1")
    monkeypatch.setenv(user, "ops")
    monkeypatch.setenv(password, "env-pass-Zz1")
    monkeypatch.setattr("shutil.which", lambda name: f"/usr/bin/{name}")
    bmc = open_bmc(ipmi_node(cipher_suite=3, boot_mode="bios", timeout=7), {})
    assert isinstance(bmc, IpmiBmc)
    assert (bmc.node, bmc.address) == ("edge-1", "10.0.1.1:6230")
    assert (bmc._host, bmc._port, bmc._suites, bmc._uefi, bmc._timeout) == (
        "10.0.1.1", 6230, (3,), False, 7)
    assert open_bmc(ipmi_node(), {})._suites == (17, 3)  # type: ignore[attr-defined]


def test_ipmi_without_ipmitool_exits_4_naming_the_package(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("shutil.which", lambda name: None)
    with pytest.raises(EnvironmentMissing) as caught:
        open_bmc(ipmi_node(), {})
    assert str(caught.value) == (
        "'ipmitool' is not installed; install it with: apt-get install ipmitool")
