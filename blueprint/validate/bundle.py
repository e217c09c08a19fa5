"""`blueprint support-bundle`: one archive of what a person needs to debug a site.

From every node (over the site's SSH config, in parallel): the journal of the current boot,
unit states, config files and effective configs (sshd, containerd, apt, sysctl), packages,
network and disk state. From the controller: the site file, the rendered inventory, the run
history, the last deploy's log and the last validation's outputs. Every text goes through
the site's redactor (each value of its vault) and a line filter for credential-looking
settings before it is written; keys, the vault file and host keys are never collected.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import logging
import shutil
import sqlite3
import subprocess
import tarfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from blueprint.secrets import REDACTOR
from blueprint.validate.plugin import redact as redact_credentials

log = logging.getLogger(__name__)

# What is collected from each node: file name in the archive, shell command.
NODE_ITEMS: tuple[tuple[str, str], ...] = (
    ("journal.txt", "journalctl -b --no-pager -o short-iso -n 20000"),
    ("units-failed.txt", "systemctl list-units --failed --no-pager --plain"),
    ("units-running.txt", "systemctl list-units --type=service --no-pager --plain"),
    ("containerd-status.txt", "systemctl status containerd --no-pager -l"),
    ("containerd-config.toml", "cat /etc/containerd/config.toml"),
    ("containerd-config-dump.toml", "containerd config dump"),
    ("containerd-fragments.txt", "head -n 200 /etc/containerd/blueprint.d/*.toml"),
    ("containerd-registry-hosts.txt", "head -n 100 /etc/containerd/certs.d/*/hosts.toml"),
    ("sshd-effective.txt", "/usr/sbin/sshd -T"),
    ("sshd-config-d.txt", "head -n 100 /etc/ssh/sshd_config.d/*.conf"),
    ("apt-config.txt", "head -n 50 /etc/apt/apt.conf.d/*blueprint* /etc/apt/sources.list"),
    ("sysctl-d.txt", "head -n 100 /etc/sysctl.d/*.conf"),
    ("sysctl-net.txt", "sysctl net.ipv4.ip_forward net.bridge 2>&1"),
    ("packages.txt", "dpkg-query -W -f='${db:Status-Abbrev} ${Package} ${Version}\\n'"),
    ("packages-held.txt", "apt-mark showhold"),
    ("blueprint-records.txt", "head -n 200 /etc/blueprint/*"),
    ("network.txt", "ip -br address; ip route; ss -Hlntup"),
    ("disk-memory.txt", "df -h; free -m; nproc --all"),
    ("os-release.txt", "cat /etc/os-release; uname -a; systemd-detect-virt || true"),
    ("lynis-report.dat", "cat /var/tmp/blueprint-lynis-report.dat"),
)
NODE_TIMEOUT = 60


@dataclass(frozen=True)
class BundleNode:
    """A node to collect from: its name in the site's SSH config."""

    name: str


def redact(text: str) -> str:
    """Every secret the site knows, then any line that looks like a credential."""
    return redact_credentials(REDACTOR.redact(text))


def _collect_item(ssh_config: Path, node: str, command: str) -> str:
    argv = ["ssh", "-F", str(ssh_config), "-o", "BatchMode=yes", node, command]
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=NODE_TIMEOUT,
                              errors="replace")
    except subprocess.TimeoutExpired:
        return f"$ {command}\n(no answer within {NODE_TIMEOUT} s)\n"
    return f"$ {command}\n(exit {done.returncode})\n{done.stdout}{done.stderr}"


def _collect_node(ssh_config: Path, node: str) -> dict[str, str]:
    files = {name: redact(_collect_item(ssh_config, node, command))
             for name, command in NODE_ITEMS}
    subprocess.run(["ssh", "-F", str(ssh_config), "-O", "exit", node], capture_output=True,
                   timeout=10, check=False)
    return files


def _history(db: Path) -> str:
    if not db.is_file():
        return "[]\n"
    connection = sqlite3.connect(db)
    try:
        cursor = connection.execute(
            "SELECT id, site, verb, layers, started, finished, status, exit_code FROM runs "
            "ORDER BY started DESC LIMIT 200")
        names = [column[0] for column in cursor.description]
        rows = [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
    finally:
        connection.close()
    return json.dumps(rows, indent=2) + "\n"


def _last_run(state_root: Path, verb: str) -> Path | None:
    runs = sorted((state_root / "runs").glob(f"*-{verb}-*"))
    return runs[-1] if runs else None


def controller_files(site_file: Path, state_root: Path) -> dict[str, str]:
    """What the controller knows about the site, by archive path."""
    files = {"controller/site.yaml": site_file.read_text(encoding="utf-8"),
             "controller/history.json": _history(state_root / "history.sqlite")}
    inventory = state_root / "inventory"
    for path in sorted(inventory.rglob("*")) if inventory.is_dir() else []:
        if path.is_file():
            files[f"controller/inventory/{path.relative_to(inventory)}"] = path.read_text(
                encoding="utf-8", errors="replace")
    deploy = _last_run(state_root, "deploy")
    if deploy is not None and (deploy / "blueprint.log").is_file():
        files[f"controller/last-deploy/{deploy.name}.log"] = (deploy / "blueprint.log").read_text(
            encoding="utf-8", errors="replace")
    validation = _last_run(state_root, "validate")
    if validation is not None:
        outputs = validation / "validation"
        wanted = [*outputs.glob("*.json"), *outputs.glob("*.xml"), *outputs.glob("*.html"),
                  *outputs.glob("nodes/results-*.json")]
        for path in sorted(wanted):
            name = f"controller/last-validation/{path.relative_to(outputs)}"
            files[name] = path.read_text(encoding="utf-8", errors="replace")
    return {name: redact(text) for name, text in files.items()}


def make_bundle(
    site_name: str, site_file: Path, state_root: Path, ssh_config: Path, nodes: list[str],
    output: Path,
) -> Path:
    """Collect from the controller and every node into `output` (a .tar.gz); return it."""
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    top = f"support-{site_name}-{stamp}"
    files = controller_files(site_file, state_root)

    log.info("Collecting support data from %d nodes", len(nodes))
    with ThreadPoolExecutor(max_workers=max(1, min(len(nodes), 8))) as pool:
        collected = dict(zip(nodes, pool.map(lambda n: _collect_node(ssh_config, n), nodes),
                             strict=True))
    for node, node_files in collected.items():
        for name, text in node_files.items():
            files[f"nodes/{node}/{name}"] = text

    output.parent.mkdir(parents=True, exist_ok=True)
    partial = output.with_name(output.name + ".partial")
    with tarfile.open(partial, "w:gz") as archive:
        for name, text in sorted(files.items()):
            data = text.encode("utf-8", errors="replace")
            info = tarfile.TarInfo(f"{top}/{name}")
            info.size = len(data)
            info.mode = 0o600
            info.mtime = int(dt.datetime.now(dt.UTC).timestamp())
            archive.addfile(info, io.BytesIO(data))
    partial.chmod(0o600)
    shutil.move(partial, output)
    return output
