"""`blueprint provision` end to end, short of a real install, in one network namespace.

In namespace bmt-p*: sushy-tools' emulator plays two nodes' BMCs, the product's boot server
runs on one end of a veth pair, and a real OpenSSH sshd (Debian's binary, unpacked, not
installed) plays each installed node: started in its own UTS namespace with the node's host
name and the host key its boot artifacts hold. edge-1's sshd starts only once provision
waits for SSH, like a node finishing its install; edge-2's runs from the start, so provision
must leave that node alone. Stand-ins: the installer kernel/initrd and iPXE binaries are
placeholder files (nothing boots them); the "install" is the test starting sshd.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from .conftest import PASSWORD, USERNAME, Emulator, start_emulator, stop_emulator

pytestmark = [
    pytest.mark.lab,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root (network namespaces, sshd)"),
    pytest.mark.skipif(shutil.which("dnsmasq") is None, reason="needs dnsmasq-base"),
]

KEY_DIR = Path(__file__).parents[2] / "unit" / "fixtures" / "sites"
UUIDS = {"edge-1": "5e1a7c1e-0000-4000-8000-000000000001",
         "edge-2": "5e1a7c1e-0000-4000-8000-000000000002"}
ADDRESSES = {"edge-1": "10.94.0.11", "edge-2": "10.94.0.12"}
EMULATOR_PORT = 8000


@pytest.fixture(scope="session")
def sshd_binary(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Debian's sshd, downloaded with apt and unpacked: no service is installed or started."""
    folder = tmp_path_factory.mktemp("openssh-server")
    done = subprocess.run(["apt-get", "download", "openssh-server"], cwd=folder,
                          capture_output=True, text=True, check=False)
    debs = list(folder.glob("openssh-server_*.deb"))
    if done.returncode != 0 or not debs:
        pytest.skip(f"cannot download openssh-server: {done.stderr.strip()[-200:]}")
    subprocess.run(["dpkg-deb", "-x", str(debs[0]), str(folder / "root")], check=True)
    return folder / "root" / "usr" / "sbin" / "sshd"


@dataclass
class Namespace:
    name: str
    link: str

    def prefix(self) -> tuple[str, ...]:
        return ("ip", "netns", "exec", self.name)

    def run(self, *cmd: str, env: dict[str, str] | None = None,
            timeout: float = 300) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*self.prefix(), *cmd], capture_output=True, text=True,
                              check=False, env=env, timeout=timeout)


@pytest.fixture
def namespace() -> Iterator[Namespace]:
    tag = secrets.token_hex(3)
    ns = Namespace(f"bmt-p{tag}", f"bmtd{tag}")
    try:
        for cmd in (["netns", "add", ns.name],
                    ["-n", ns.name, "link", "set", "lo", "up"],
                    # A veth pair stands for the provisioning network (no dummy links here).
                    ["-n", ns.name, "link", "add", ns.link, "type", "veth", "peer", "name",
                     ns.link + "p"],
                    ["-n", ns.name, "link", "set", ns.link + "p", "up"],
                    ["-n", ns.name, "link", "set", ns.link, "up"],
                    ["-n", ns.name, "address", "add", "10.94.0.2/24", "dev", ns.link],
                    ["-n", ns.name, "address", "add", "10.94.0.11/24", "dev", ns.link],
                    ["-n", ns.name, "address", "add", "10.94.0.12/24", "dev", ns.link]):
            subprocess.run(["ip", *cmd], check=True, capture_output=True)
        yield ns
    finally:
        subprocess.run(["ip", "netns", "del", ns.name], check=False, capture_output=True)


class Sshd:
    """A real sshd for one node, in its own mount and UTS namespace; stopped by its PID."""

    def __init__(self, binary: Path, ns: Namespace, node: str, host_key: Path,
                 authorized: Path, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        passwd = folder / "passwd"
        passwd.write_text(Path("/etc/passwd").read_text()
                          + "sshd:x:9999:65534::/run/sshd:/usr/sbin/nologin\n")
        config = folder / "sshd_config"
        config.write_text(
            f"ListenAddress {ADDRESSES[node]}:22\nHostKey {host_key}\n"
            f"AuthorizedKeysFile {authorized}\nPermitRootLogin prohibit-password\n"
            "PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\n"
            "PidFile none\nStrictModes no\n")
        script = (f"mount --bind {passwd} /etc/passwd && mount -t tmpfs tmpfs /run && "
                  f"mkdir -m 0755 /run/sshd && hostname {node} && "
                  f"exec {binary} -D -e -f {config}")
        self.log = folder / "sshd.log"
        with open(self.log, "wb") as out:
            self.process = subprocess.Popen(
                [*ns.prefix(), "unshare", "--mount", "--uts", "--propagation", "private",
                 "sh", "-c", script], stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 20
        while "Server listening" not in self.log.read_text(errors="replace"):
            assert self.process.poll() is None, self.log.read_text()
            assert time.monotonic() < deadline, self.log.read_text()
            time.sleep(0.2)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)


def write_site(folder: Path, interface: str, emulator_url: str) -> Path:
    for name in ("good_key", "good_key.pub"):
        shutil.copy(KEY_DIR / name, folder / name)
    (folder / "good_key").chmod(0o600)
    nodes = "".join(f"""\
  - name: {node}
    address: {ADDRESSES[node]}
    roles: [worker]
    boot_mac: "52:54:00:6b:03:0{index}"
    install_disk: /dev/vda
    bmc: {{address: "{emulator_url}", credentials: emu, system: {UUIDS[node]}, timeout: 20}}
""" for index, node in enumerate(ADDRESSES, start=1))
    (folder / "site.yaml").write_text(f"""\
name: prov
blueprint: lab
ssh: {{user: root, key: good_key}}
network: {{subnet: 10.94.0.0/24}}
nodes:
{nodes}provision: {{boot_server: 10.94.0.2, interface: {interface}, gateway: 10.94.0.1}}
""", encoding="utf-8")
    return folder / "site.yaml"


def place_stand_in_boot_files(state: Path) -> None:
    """Placeholders for the installer and iPXE, which a real site downloads (see docs)."""
    boot = state / "boot"
    for path in (boot / "http" / "installer" / "debian-12" / "linux",
                 boot / "http" / "installer" / "debian-12" / "initrd.gz",
                 boot / "tftp" / "undionly.kpxe", boot / "tftp" / "ipxe.efi"):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("stand-in: not a real boot file\n")


def bmc_view(ns: Namespace, node: str) -> tuple[str, str]:
    """(power state, boot override target) of a node, read from the emulator."""
    code = (
        "import json, sys, requests\n"
        "r = requests.get(sys.argv[1], auth=(sys.argv[2], sys.argv[3]), timeout=10).json()\n"
        "print(json.dumps([r['PowerState'], r['Boot']['BootSourceOverrideTarget']]))\n"
    )
    url = f"http://127.0.0.1:{EMULATOR_PORT}/redfish/v1/Systems/{UUIDS[node]}"
    done = ns.run(sys.executable, "-c", code, url, USERNAME, PASSWORD)
    assert done.returncode == 0, done.stderr
    power, target = json.loads(done.stdout)
    return power, target


def test_provision_installs_a_node_and_leaves_running_ones_alone(
        namespace: Namespace, sshd_binary: Path, tmp_path: Path) -> None:
    emulator: Emulator = start_emulator(
        tmp_path / "emulator", prefix=namespace.prefix(), port=EMULATOR_PORT,
        systems=[{"uuid": UUIDS[node], "name": node, "power_state": "Off",
                  "nics": [{"mac": f"52:54:00:6b:03:0{i}", "ip": ADDRESSES[node]}]}
                 for i, node in enumerate(ADDRESSES, start=1)])
    site = write_site(tmp_path, namespace.link, emulator.url)
    state = tmp_path / ".state"
    env = {**os.environ, "BLUEPRINT_BMC_EMU_USERNAME": USERNAME,
           "BLUEPRINT_BMC_EMU_PASSWORD": PASSWORD, "COLUMNS": "200"}
    blueprint = (sys.executable, "-m", "blueprint.cli")
    sshds: list[Sshd] = []
    try:
        # The boot server, with stand-ins for the files a real site downloads.
        done = namespace.run(*blueprint, "boot-server", "render", str(site))
        assert done.returncode == 0, done.stderr
        place_stand_in_boot_files(state)
        done = namespace.run(*blueprint, "boot-server", "start", str(site))
        assert done.returncode == 0, done.stderr
        authorized = KEY_DIR / "good_key.pub"
        keys = state / "boot" / "host-keys"

        # edge-2 already runs an OS: provision must not power-cycle it.
        sshds.append(Sshd(sshd_binary, namespace, "edge-2",
                          keys / "edge-2" / "ssh_host_ed25519_key", authorized,
                          tmp_path / "sshd-2"))

        # edge-1 "finishes its install" once provision waits for it on SSH.
        err = tmp_path / "provision.err"
        with open(err, "wb") as err_out:
            running = subprocess.Popen(
                [*namespace.prefix(), *blueprint, "-v", "provision", str(site),
                 "--ssh-timeout", "120", "--power-timeout", "60"],
                stdout=subprocess.PIPE, stderr=err_out, env=env, text=True)
        deadline = time.monotonic() + 120
        while "node edge-1: waiting for SSH" not in err.read_text(errors="replace"):
            assert running.poll() is None, err.read_text()
            assert time.monotonic() < deadline, err.read_text()
            time.sleep(0.5)
        assert bmc_view(namespace, "edge-1") == ("On", "Pxe")
        sshds.append(Sshd(sshd_binary, namespace, "edge-1",
                          keys / "edge-1" / "ssh_host_ed25519_key", authorized,
                          tmp_path / "sshd-1"))
        stdout, _ = running.communicate(timeout=240)
        assert running.returncode == 0, stdout + err.read_text()
        rows = {line.split("│")[1].strip(): line for line in stdout.splitlines()
                if line.startswith("│") and "edge-" in line}
        assert "provisioned" in rows["edge-1"] and "answers SSH as edge-1" in rows["edge-1"]
        assert "skipped" in rows["edge-2"] and "already answers SSH" in rows["edge-2"]
        assert bmc_view(namespace, "edge-2") == ("Off", "Hdd")  # never touched
        assert PASSWORD not in stdout + err.read_text()
        # The emulator advertises no serial console: said, not captured.
        assert "no console captured" in stdout and not (state / "nodes").exists()
        # The installed board, kept for discover's board-swap check.
        board = json.loads((state / "bmc" / "edge-1.provisioned.json").read_text())
        assert board["boot_mac"] == "52:54:00:6b:03:01"
        assert board["macs"] == ["52:54:00:6b:03:01"] and board["uuid"] == UUIDS["edge-1"]
        assert not (state / "bmc" / "edge-2.provisioned.json").exists()

        db = sqlite3.connect(state / "history.sqlite")
        assert [row[0] for row in db.execute("SELECT node FROM provisioned")] == ["edge-1"]
        db.close()

        # A rerun skips the provisioned node and still leaves edge-2 alone.
        again = namespace.run(*blueprint, "provision", str(site), "--ssh-timeout", "30",
                              env=env)
        assert again.returncode == 0, again.stdout + again.stderr
        assert "provisioned by an earlier run" in again.stdout
        assert bmc_view(namespace, "edge-2") == ("Off", "Hdd")
    finally:
        for sshd in sshds:
            sshd.stop()
        namespace.run(*blueprint, "boot-server", "stop", str(site))
        stop_emulator(emulator)


def test_wrong_host_key_fails_the_node(namespace: Namespace, sshd_binary: Path,
                                       tmp_path: Path) -> None:
    emulator = start_emulator(
        tmp_path / "emulator", prefix=namespace.prefix(), port=EMULATOR_PORT,
        systems=[{"uuid": UUIDS[node], "name": node, "power_state": "Off", "nics": []}
                 for node in ADDRESSES])
    site = write_site(tmp_path, namespace.link, emulator.url)
    state = tmp_path / ".state"
    env = {**os.environ, "BLUEPRINT_BMC_EMU_USERNAME": USERNAME,
           "BLUEPRINT_BMC_EMU_PASSWORD": PASSWORD, "COLUMNS": "200"}
    blueprint = (sys.executable, "-m", "blueprint.cli")
    sshd = None
    try:
        assert namespace.run(*blueprint, "boot-server", "render", str(site)).returncode == 0
        place_stand_in_boot_files(state)
        assert namespace.run(*blueprint, "boot-server", "start", str(site)).returncode == 0
        # edge-1 comes up with a host key its install was not given: a different machine
        # on its address, or a tampered install. edge-1's sshd starts after the power-on.
        other_key = tmp_path / "other_host_key"
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other_key)],
                       check=True)
        err = tmp_path / "provision.err"
        with open(err, "wb") as err_out:
            running = subprocess.Popen(
                [*namespace.prefix(), *blueprint, "-v", "provision", str(site), "--nodes",
                 "edge-1", "--ssh-timeout", "60", "--power-timeout", "60"],
                stdout=subprocess.PIPE, stderr=err_out, env=env, text=True)
        deadline = time.monotonic() + 120
        while "node edge-1: waiting for SSH" not in err.read_text(errors="replace"):
            assert running.poll() is None, err.read_text()
            assert time.monotonic() < deadline, err.read_text()
            time.sleep(0.5)
        sshd = Sshd(sshd_binary, namespace, "edge-1", other_key, KEY_DIR / "good_key.pub",
                    tmp_path / "sshd-1")
        stdout, _ = running.communicate(timeout=240)
        assert running.returncode == 3, stdout + err.read_text()
        assert "SSH host key is not the one its install was given" in stdout
        assert err.read_text().strip().splitlines()[-1] == (
            "error: 1 node(s) failed to provision; see the table above")
    finally:
        if sshd is not None:
            sshd.stop()
        namespace.run(*blueprint, "boot-server", "stop", str(site))
        stop_emulator(emulator)
