"""Security checks of each node's SSH daemon, read from its effective config (`sshd -T`)."""

from __future__ import annotations

import logging

import pytest

from blueprint.validate.plugin import Probe, expect

log = logging.getLogger(__name__)


def _sshd_settings(node: Probe) -> dict[str, str]:
    result = node.run("/usr/sbin/sshd -T")
    if result.rc != 0:
        msg = f"sshd -T failed ({result.rc}): {result.stderr.strip()[-300:]}"
        raise RuntimeError(msg)
    settings: dict[str, str] = {}
    for line in result.stdout.splitlines():
        key, _, value = line.partition(" ")
        settings[key.lower()] = value.strip()
    return settings


@pytest.mark.check("security.ssh.password_auth_off")
def test_password_auth_off(node: Probe) -> None:
    value = _sshd_settings(node).get("passwordauthentication")
    expect(
        value == "no",
        seen=f"passwordauthentication {value}",
        expected="passwordauthentication no (key login only)",
    )


@pytest.mark.check("security.ssh.root_login")
def test_root_login(node: Probe) -> None:
    value = _sshd_settings(node).get("permitrootlogin")
    expect(
        value is not None and value != "yes",
        seen=f"permitrootlogin {value}",
        expected="permitrootlogin not yes (prohibit-password, forced-commands-only or no)",
    )
