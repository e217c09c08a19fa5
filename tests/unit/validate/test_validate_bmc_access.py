"""How a node's BMC reaches its validation run: the context without the password, the
password only in the check run's environment, and credential problems as the context's."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from blueprint.loader import load_site
from blueprint.secrets import PASSWORD_ENV, PASSWORD_FILE_ENV
from blueprint.validate.model import BMC_PASSWORD_ENV, NodeTarget
from blueprint.validation import bmc_access

SECRET = "unit-bmc-canary-5Rt"


def _site(folder: Path) -> Path:
    (folder / "bp.yaml").write_text(yaml.safe_dump({
        "name": "bp", "version": "1",
        "layers": [{"name": "os_baseline", "roles": ["os_baseline"]}],
        "validation": {"suite": "lab"}}))
    nodes = [
        {"name": "n1", "address": "10.1.0.11", "roles": ["worker"], "boot_mac": "52:54:00:00:00:01",
         "bmc": {"address": "https://10.1.1.11", "credentials": "n1-bmc", "system": "1"}},
        {"name": "n2", "address": "10.1.0.12", "roles": ["worker"],
         "bmc": {"address": "10.1.1.12", "protocol": "ipmi", "credentials": "n2-bmc"}},
        {"name": "n3", "address": "10.1.0.13", "roles": ["worker"]},
    ]
    site = folder / "site.yaml"
    site.write_text(yaml.safe_dump({"name": "s", "blueprint": "bp.yaml", "nodes": nodes}))
    return site


@pytest.fixture(autouse=True)
def _no_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("BLUEPRINT_BMC_N1_BMC_USERNAME", "BLUEPRINT_BMC_N1_BMC_PASSWORD",
                 PASSWORD_ENV, PASSWORD_FILE_ENV, BMC_PASSWORD_ENV):
        monkeypatch.delenv(name, raising=False)


def test_credentials_from_the_environment_split_into_context_and_password(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BLUEPRINT_BMC_N1_BMC_USERNAME", "ops")
    monkeypatch.setenv("BLUEPRINT_BMC_N1_BMC_PASSWORD", SECRET)

    access = bmc_access(load_site(_site(tmp_path)), {})

    context, password = access["n1"]
    assert password == SECRET
    assert context == {"address": "https://10.1.1.11", "protocol": "redfish", "system": "1",
                       "verify_tls": True, "ca": None, "timeout": 30.0, "cipher_suite": None,
                       "boot_mode": "uefi", "credentials": "n1-bmc", "username": "ops",
                       "boot_mac": "52:54:00:00:00:01", "problem": None}
    # The IPMI node's credentials are looked up the same way: here in neither place.
    assert access["n2"][1] is None
    assert access["n2"][0]["problem"].startswith("node n2: BMC credentials 'n2-bmc' are neither")
    assert "n3" not in access


def test_missing_credentials_become_the_context_problem(tmp_path: Path) -> None:
    context, password = bmc_access(load_site(_site(tmp_path)), {})["n1"]

    assert password is None
    assert context["problem"] == (
        "node n1: BMC credentials 'n1-bmc' are neither in the environment "
        "(BLUEPRINT_BMC_N1_BMC_USERNAME, BLUEPRINT_BMC_N1_BMC_PASSWORD) nor under "
        "bmc_credentials in secrets.yaml")


def test_credentials_from_the_vault_the_command_opened(tmp_path: Path) -> None:
    vault = {"bmc_credentials": {"n1-bmc": {"username": "ops", "password": SECRET}}}

    context, password = bmc_access(load_site(_site(tmp_path)), vault)["n1"]

    assert (context["username"], context["problem"], password) == ("ops", None, SECRET)


def test_the_password_is_only_in_the_check_run_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with_bmc = NodeTarget("n1", "10.1.0.11", "root", bmc={"address": "x"}, bmc_password=SECRET)
    without = NodeTarget("n3", "10.1.0.13", "root")
    # A value left in the controller's environment never reaches a node that has no BMC,
    # and no check run inherits the operator's exported BMC credentials.
    monkeypatch.setenv(BMC_PASSWORD_ENV, "left-over")
    monkeypatch.setenv("BLUEPRINT_BMC_N1_BMC_PASSWORD", SECRET)

    assert SECRET not in repr(with_bmc)
    assert with_bmc.check_environment()[BMC_PASSWORD_ENV] == SECRET
    assert BMC_PASSWORD_ENV not in without.check_environment()
    assert "BLUEPRINT_BMC_N1_BMC_PASSWORD" not in with_bmc.check_environment()
