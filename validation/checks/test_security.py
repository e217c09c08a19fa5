"""Security checks of each node's SSH daemon, read from its effective config (`sshd -T`)."""

from __future__ import annotations

import ipaddress
import logging
from typing import Any

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


def is_loopback(address: str) -> bool:
    """A listening address only the node itself can reach (ss prints v6 ones in brackets)."""
    host = address.strip("[]").split("%", 1)[0]
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def listeners(ss_output: str) -> list[tuple[str, str, str]]:
    """(port/proto, local address, process) of each socket in `ss -Hlntup` output."""
    found = []
    for line in ss_output.splitlines():
        fields = line.split()
        if len(fields) < 5:
            continue
        proto, local = fields[0], fields[4]
        address, _, port = local.rpartition(":")
        process = fields[6] if len(fields) > 6 else ""
        name = process.split('"')[1] if process.count('"') >= 2 else "unknown process"
        found.append((f"{port}/{proto}", address, name))
    return found


@pytest.mark.check("security.ports.allowed")
def test_listening_ports_allowed(node: Probe, expected: dict[str, Any]) -> None:
    allowed = set(expected.get("policy", {}).get("listening_ports", ["22/tcp"]))
    result = node.run("ss -Hlntup")
    expect(result.rc == 0, seen=f"ss failed ({result.rc})", expected="ss (iproute2) answering")
    extra = sorted(
        {f"{port} on {address} ({name})" for port, address, name in listeners(result.stdout)
         if not is_loopback(address) and port not in allowed}
    )
    expect(
        not extra,
        seen=f"listening beyond the allow list: {', '.join(extra)}",
        expected=f"only {', '.join(sorted(allowed))} on non-loopback addresses",
    )


LYNIS_REPORT = "/var/tmp/blueprint-lynis-report.dat"
LYNIS_LOG = "/var/tmp/blueprint-lynis.log"
_AUDITED: list[str] = []


def _lynis(node: Probe, expected: dict[str, Any]) -> tuple[dict[str, Any], dict[str, list[str]]]:
    """Run one lynis audit per node and check run; the policy and the report's values."""
    policy = expected.get("policy", {}).get("lynis")
    if not policy:
        pytest.skip("the suite sets no lynis policy")
    if node.run("command -v lynis").rc != 0:
        expect(False, seen="lynis is not installed",
               expected="lynis on the node (the os_baseline role installs it)")
    # One audit per validation run of this node: both lynis checks read its report.
    if not _AUDITED:
        groups = " ".join(policy.get("groups", []))
        selection = f'--tests-from-group "{groups}" ' if groups else ""
        audit = node.run(
            f"rm -f {LYNIS_REPORT}; lynis audit system --quick --no-colors --no-log "
            f"--skip-plugins {selection}--report-file {LYNIS_REPORT} > {LYNIS_LOG} 2>&1; "
            "echo exit $?"
        )
        _AUDITED.append(audit.stdout.strip())
    report = node.run(f"cat {LYNIS_REPORT}")
    expect(
        report.rc == 0 and "hardening_index=" in report.stdout,
        seen=f"no lynis report (lynis {_AUDITED[0]}; log {LYNIS_LOG} on the node)",
        expected="lynis audit system writing its report",
    )
    values: dict[str, list[str]] = {}
    for line in report.stdout.splitlines():
        key, sep, value = line.partition("=")
        if sep and not line.startswith("#"):
            values.setdefault(key.strip(), []).append(value.strip())
    return policy, values


@pytest.mark.check("security.lynis.hardening_index")
def test_lynis_hardening_index(node: Probe, expected: dict[str, Any]) -> None:
    policy, values = _lynis(node, expected)
    index = int(values["hardening_index"][-1])
    wanted = int(policy["min_hardening_index"])
    expect(
        index >= wanted,
        seen=f"lynis hardening index {index}",
        expected=f"at least {wanted}",
    )


@pytest.mark.check("security.lynis.tests")
def test_lynis_named_tests(node: Probe, expected: dict[str, Any]) -> None:
    policy, values = _lynis(node, expected)
    # warning[]=TEST-ID|text|detail|... and suggestion[]=...: each names a test that found
    # something; "TEST-ID:Detail" in the policy (lynis' own notation, as in skip-test) names
    # one finding of a test, e.g. SSH-7408:PasswordAuthentication.
    findings: list[tuple[str, str, str]] = []
    for key in ("warning[]", "suggestion[]"):
        for entry in values.get(key, []):
            parts = [*entry.split("|"), "", ""]
            findings.append((parts[0], parts[1], parts[2]))
    ran = set(" ".join(values.get("tests_executed", [])).replace("|", " ").split())
    must_pass = list(policy.get("must_pass", []))
    failed, not_run = [], []
    for name in must_pass:
        test_id, _, detail = name.partition(":")
        if ran and test_id not in ran:
            not_run.append(name)
            continue
        hits = [f"{text}: {info}" if info not in ("", "-") else text
                for found, text, info in findings
                if found == test_id and (not detail or info.startswith(detail))]
        if hits:
            failed.append(f"{name} ({hits[0]})")
    expect(
        not failed and not not_run,
        seen="; ".join(
            ([f"failed: {', '.join(failed)}"] if failed else [])
            + ([f"not run: {', '.join(not_run)}"] if not_run else [])
        ),
        expected=f"lynis tests {', '.join(must_pass)} without warning or suggestion",
    )
