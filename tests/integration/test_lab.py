"""The local lab against itself: identity, systemd, mirror, isolation, idempotence, reboot."""

from __future__ import annotations

import ipaddress
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from conftest import LabHandle, lab_skip_reason, wait_gone

from blueprint.lab import lab_down, lab_status, lab_up, overlay_digest
from blueprint.lab.cli import lab as lab_cli
from blueprint.lab.lab import load_state

pytestmark = pytest.mark.lab

# Runs first: the lab itself, before anything is deployed to it.
LAB_STAGE = 0


def test_every_node_is_its_own_machine(lab: LabHandle) -> None:
    machine_ids, host_keys = set(), set()
    for node in lab.nodes:
        answer = lab.ssh(
            node, "hostname; cat /etc/machine-id; cat /etc/ssh/ssh_host_ed25519_key.pub"
        )
        hostname, machine_id, key = answer.stdout.splitlines()
        assert hostname == node.name
        machine_ids.add(machine_id)
        host_keys.add(" ".join(key.split()[:2]))
    assert len(machine_ids) == len(lab.nodes)
    assert len(host_keys) == len(lab.nodes)

    # known_hosts pins exactly those keys, one line per node.
    pinned = {" ".join(line.split()[1:3]) for line in (lab.site_dir / "known_hosts").open()}
    assert pinned == host_keys


def test_site_file_describes_the_lab(lab: LabHandle) -> None:
    site = yaml.safe_load(lab.site_file.read_text())
    assert site["name"] == lab.name
    subnet = ipaddress.ip_network(lab.state.subnet)
    bridge = subnet.network_address + 1
    assert site["artifacts"] == {"mode": "mirror", "apt_proxy": f"http://{bridge}:3149"}
    assert [n["address"] for n in site["nodes"]] == [
        str(subnet.network_address + host) for host in (11, 12, 13)
    ]
    assert site["nodes"][0]["roles"] == ["control-plane", "worker"]
    assert (lab.site_dir / "lab_ed25519").stat().st_mode & 0o077 == 0


def test_systemd_is_running_in_every_node(lab: LabHandle) -> None:
    for node in lab.nodes:
        state = lab.ssh(node, "systemctl is-system-running", check=False).stdout.strip()
        assert state in ("running", "degraded"), f"{node.name}: {state}"


def test_apt_update_goes_through_the_mirror(lab: LabHandle) -> None:
    result = lab.ssh(lab.nodes[1], "apt-get update", timeout=300)
    assert "deb.debian.org/debian-security" in result.stdout
    assert "Err:" not in result.stdout


def test_nodes_reach_nothing_but_the_bridge(lab: LabHandle) -> None:
    route = subprocess.run(
        ["ip", "-j", "route", "get", "1.1.1.1"], capture_output=True, text=True, check=True
    )
    host_address = json.loads(route.stdout)[0]["prefsrc"]
    probe = (
        "import socket,sys\n"
        "s=socket.socket(); s.settimeout(3)\n"
        "try: s.connect((sys.argv[1], int(sys.argv[2]))); print('open')\n"
        "except OSError as e: print(type(e).__name__, e.errno)\n"
    )
    node = lab.nodes[0]
    routes = lab.ssh(node, "ip -4 route").stdout.splitlines()
    assert routes == [f"{lab.state.subnet} dev eth0 proto kernel scope link src {node.address} "]
    for address, port in ((host_address, 22), ("1.1.1.1", 80), ("203.0.113.80", 80)):
        answer = lab.ssh(node, f'python3 -c "{probe}" {address} {port}').stdout
        assert "open" not in answer, f"{node.name} reached {address}:{port}"
    bridge = lab.state.bridge_ip
    assert lab.ssh(node, f'python3 -c "{probe}" {bridge} 3149').stdout.strip() == "open"


def test_up_again_changes_nothing(lab: LabHandle) -> None:
    before = load_state(lab.name)
    assert before is not None
    digests = {node.name: overlay_digest(lab.name, node.name) for node in lab.nodes}

    again = lab_up(lab.name, nodes=3, subnet=lab.state.subnet, site_dir=lab.site_dir)

    assert again.changes == []
    assert again.mirror_pid == before.mirror_pid
    pids = [(n.supervisor_pid, n.nspawn_pid) for n in again.nodes]
    assert pids == [(n.supervisor_pid, n.nspawn_pid) for n in before.nodes]
    assert {node.name: overlay_digest(lab.name, node.name) for node in lab.nodes} == digests


def test_digest_sees_a_change_and_its_undoing(lab: LabHandle) -> None:
    node = lab.nodes[0]
    first = overlay_digest(lab.name, node.name)
    lab.ssh(node, "echo x > /etc/bp-digest-probe")
    assert overlay_digest(lab.name, node.name) != first
    lab.ssh(node, "rm /etc/bp-digest-probe")
    assert overlay_digest(lab.name, node.name) == first


def test_status_shows_nodes_running(lab: LabHandle) -> None:
    report = lab_status(lab.name)
    assert report.running
    assert [n.name for n in report.nodes if n.running] == [n.name for n in lab.nodes]
    output = CliRunner().invoke(lab_cli, ["status", "--name", lab.name]).output
    assert output.count("running") == len(lab.nodes) + 1


def test_node_that_reboots_comes_back_with_its_host_key(lab: LabHandle) -> None:
    node = lab.nodes[-1]
    before = lab_status(lab.name).nodes[-1].nspawn_pid
    lab.ssh(node, "systemctl reboot", check=False)

    # Strict host key checking against the pinned key: an answer proves the same key.
    deadline = time.monotonic() + 90
    answer = ""
    while time.monotonic() < deadline:
        now = lab_status(lab.name).nodes[-1].nspawn_pid
        if now and now != before:
            result = lab.ssh(node, "systemctl is-system-running", check=False, timeout=20)
            answer = result.stdout.strip()
            if answer in ("running", "degraded"):
                break
        time.sleep(1)
    assert answer in ("running", "degraded"), f"{node.name} did not come back: {answer!r}"
    assert lab.ssh(node, "hostname").stdout.strip() == node.name


def test_down_twice_and_after_a_crash(tmp_path: Path) -> None:
    reason = lab_skip_reason()
    if reason:
        pytest.skip(reason)
    name = "bpd"
    site = tmp_path / "site"
    try:
        state = lab_up(name, nodes=1, subnet="10.78.0.0/24", site_dir=site, mirror_port=3150)
        lab_down(name)
        lab_down(name)
        assert wait_gone(state) == []

        # A node that stopped is started again by the next lab up, and only it.
        state = lab_up(name, nodes=1, subnet="10.78.0.0/24", site_dir=site, mirror_port=3150)
        node = state.nodes[0]
        assert node.nspawn_pid
        os.kill(node.nspawn_pid, signal.SIGTERM)
        deadline = time.monotonic() + 30
        while lab_status(name).nodes[0].running and time.monotonic() < deadline:
            time.sleep(0.2)
        again = lab_up(name, nodes=1, subnet="10.78.0.0/24", site_dir=site, mirror_port=3150)
        assert again.changes == [f"node {node.name}"]

        # A crash: supervisor and nspawn killed outright, mounts and network left behind.
        state = again
        node = state.nodes[0]
        for pid in (node.supervisor_pid, node.nspawn_pid):
            assert pid
            os.kill(pid, signal.SIGKILL)
        time.sleep(0.5)
        assert not lab_status(name).running
        lab_down(name)
        assert wait_gone(state) == []
        assert load_state(name) is None
    finally:
        lab_down(name)
