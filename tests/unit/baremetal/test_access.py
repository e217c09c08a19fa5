"""BMC credentials: the environment first, then the vault; never shown; bad entries refused."""

from __future__ import annotations

import pytest

from blueprint.baremetal.access import bmc_credentials, env_names, open_bmc
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


def test_ipmi_nodes_are_refused_until_the_fallback_exists() -> None:
    assert NODE.bmc is not None
    node = NODE.model_copy(update={"bmc": NODE.bmc.model_copy(update={"protocol": "ipmi"})})
    with pytest.raises(EnvironmentMissing) as caught:
        open_bmc(node, {})
    assert str(caught.value) == "node edge-1: BMC protocol ipmi is not supported yet"
