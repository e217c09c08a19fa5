"""Opening a node's BMC with credentials from the environment or the site's vault."""

from __future__ import annotations

import os
import re
from typing import Any

from blueprint.baremetal.bmc import BmcClient, Credentials, RedfishBmc
from blueprint.baremetal.ipmi import IpmiBmc
from blueprint.errors import BadInput, EnvironmentMissing
from blueprint.models import Node
from blueprint.models.site import Bmc
from blueprint.proc import require_tool
from blueprint.secrets import REDACTOR

VAULT_KEY = "bmc_credentials"


def env_names(key: str) -> tuple[str, str]:
    """BLUEPRINT_BMC_<KEY>_USERNAME and _PASSWORD, KEY upper-cased with '_' for the rest."""
    stem = "BLUEPRINT_BMC_" + re.sub(r"[^A-Za-z0-9]", "_", key).upper()
    return f"{stem}_USERNAME", f"{stem}_PASSWORD"


def bmc_credentials(node: Node, secrets: dict[str, Any]) -> Credentials:
    """The node's BMC credentials: the environment first, then bmc_credentials in the vault."""
    if node.bmc is None:
        msg = f"node {node.name}: has no bmc section"
        raise BadInput(msg)
    key = node.bmc.credentials
    user_env, password_env = env_names(key)
    if os.environ.get(user_env) and os.environ.get(password_env):
        credentials = Credentials(os.environ[user_env], os.environ[password_env])
    else:
        entries = secrets.get(VAULT_KEY) or {}
        entry = entries.get(key) if isinstance(entries, dict) else None
        if entry is None:
            msg = (
                f"node {node.name}: BMC credentials '{key}' are neither in the environment "
                f"({user_env}, {password_env}) nor under {VAULT_KEY} in secrets.yaml"
            )
            raise EnvironmentMissing(msg)
        if not (isinstance(entry, dict) and sorted(entry) == ["password", "username"]
                and all(isinstance(v, str) and v for v in entry.values())):
            msg = (
                f"secrets.yaml: {VAULT_KEY}.{key}: give exactly a non-empty username and "
                "password"
            )
            raise BadInput(msg)
        credentials = Credentials(entry["username"], entry["password"])
    REDACTOR.add([credentials.password])
    return credentials


def open_bmc(node: Node, secrets: dict[str, Any]) -> BmcClient:
    """A client for the node's BMC, with its credentials from the environment or the vault."""
    if node.bmc is None:
        msg = f"node {node.name}: has no bmc section"
        raise BadInput(msg)
    if node.bmc.protocol == "ipmi":
        # A missing tool is named before the credentials are looked for.
        require_tool("ipmitool", "ipmitool")
    return connect_bmc(node.name, node.bmc, bmc_credentials(node, secrets))


def connect_bmc(name: str, bmc: Bmc, credentials: Credentials) -> BmcClient:
    """A client for one BMC: Redfish (TLS verified against its CA if given) or, for
    `protocol: ipmi`, IPMI over LAN through ipmitool."""
    if bmc.protocol == "ipmi":
        ipmitool = require_tool("ipmitool", "ipmitool")
        return IpmiBmc(name, bmc.address, credentials, timeout=bmc.timeout,
                       cipher_suite=bmc.cipher_suite, uefi=bmc.boot_mode == "uefi",
                       ipmitool=ipmitool)
    verify: bool | str = bmc.verify_tls
    if verify and bmc.ca is not None:
        verify = str(bmc.ca)
    return RedfishBmc(name, bmc.address, credentials, verify=verify, timeout=bmc.timeout,
                      system_id=bmc.system)
