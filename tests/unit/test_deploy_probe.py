"""The SSH probe deploy, reset, certs renew and remove-node share: why a node failed it."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest

from blueprint import deploy
from blueprint.deploy import NO_PYTHON, probe_node
from blueprint.models import Node

NODE = Node(name="worker-1", address="10.0.0.2", roles=["worker"])
HOST_KEY_CHANGED = """\
@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@
@    WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED!     @
@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@
Host key for 10.0.0.2 has changed and you have requested strict checking.
Host key verification failed.
"""
NO_KEY = """\
Warning: Identity file /site/keys/id_ed25519 not accessible: No such file or directory.
root@10.0.0.2: Permission denied (publickey).
"""


def _ssh_answers(monkeypatch: pytest.MonkeyPatch, returncode: int, stderr: str) -> list[Any]:
    calls: list[Any] = []

    def run(cmd: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
        calls.append((cmd, kwargs))
        return subprocess.CompletedProcess(cmd, returncode, "", stderr)

    monkeypatch.setattr(deploy, "run_bounded", run)
    return calls


@pytest.mark.parametrize("stderr", [
    "ssh: connect to host 10.0.0.2 port 22: Connection timed out\n",
    "Connection to 10.0.0.2 port 22 timed out\n",  # ConnectTimeout ran out
    "ssh: connect to host 10.0.0.2 port 22: No route to host\n",
    "ssh: connect to host 10.0.0.2 port 22: Network is unreachable\n",
])
def test_silence_at_the_address_is_a_dead_node(
    monkeypatch: pytest.MonkeyPatch, stderr: str
) -> None:
    _ssh_answers(monkeypatch, 255, stderr)
    probe = probe_node(NODE, Path("ssh_config"), "true", connect_timeout=5)
    assert probe.dead and not probe.ok
    assert probe.reason == f"node worker-1 (10.0.0.2): no answer over SSH: {stderr.strip()}"


def test_no_answer_within_the_timeout_is_a_dead_node(monkeypatch: pytest.MonkeyPatch) -> None:
    def run(cmd: list[str], **kwargs: Any) -> None:
        raise subprocess.TimeoutExpired(cmd, kwargs["timeout"])

    monkeypatch.setattr(deploy, "run_bounded", run)
    probe = probe_node(NODE, Path("ssh_config"), connect_timeout=5)
    assert probe.dead
    assert probe.reason == "node worker-1 (10.0.0.2): SSH did not answer within 15 s"


@pytest.mark.parametrize(("returncode", "stderr", "cause", "fix"), [
    (255, "root@10.0.0.2: Permission denied (publickey).\n",
     "SSH refused the login (root@10.0.0.2: Permission denied (publickey).)",
     "check the site's ssh user and key"),
    (255, NO_KEY, "the key file named in the site's ssh settings is missing",
     "check the site's ssh user and key"),
    (255, HOST_KEY_CHANGED, "host key does not match the pinned one",
     "check its new key and update known_hosts"),
    (255, "ssh: connect to host 10.0.0.2 port 22: Connection refused\n",
     "the host refused the SSH connection (ssh: connect to host 10.0.0.2 port 22: Connection "
     "refused); it is up but its sshd is not listening", "start sshd on it"),
    (255, "kex_exchange_identification: read: Connection reset by peer\n",
     "cannot connect over SSH: kex_exchange_identification", ""),
    (NO_PYTHON, "", "/usr/bin/python3 is missing", "install python3 with the OS"),
])
def test_a_node_that_answers_wrongly_is_not_dead_and_the_reason_names_the_fix(
    monkeypatch: pytest.MonkeyPatch, returncode: int, stderr: str, cause: str, fix: str
) -> None:
    _ssh_answers(monkeypatch, returncode, stderr)
    probe = probe_node(NODE, Path("ssh_config"))
    assert not probe.dead and not probe.ok
    assert probe.reason is not None
    assert cause in probe.reason and fix in probe.reason


def test_the_probe_is_a_fresh_connection_with_the_timeout_given(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls = _ssh_answers(monkeypatch, 0, "")
    assert probe_node(NODE, Path("/state/ssh_config"), "true", connect_timeout=5).ok
    [(cmd, kwargs)] = calls
    assert cmd == ["ssh", "-F", "/state/ssh_config", "-o", "ControlPath=none", "-o",
                   "ConnectTimeout=5", "-o", "ConnectionAttempts=1", "worker-1", "true"]
    assert kwargs["timeout"] == 15
