#!/usr/bin/env python3
"""Converge, re-converge and validation times of the lab blueprint by node count.

Run as root from the checkout:  .venv/bin/python benchmarks/converge.py [--nodes 1 3 6]

For each node count it brings up a fresh lab, times `lab up`, the first deploy, a no-op
re-deploy and a validation with the product's Ansible settings (mitogen strategy,
pipelining, fact cache), then a fresh lab again for the same with stock Ansible settings
(linear strategy, no pipelining, no fact cache). It also times installing the same packages
with plain apt-get on one fresh node, and reports the controller's peak memory (the largest
resident set of any blueprint process and its children). Every lab it starts it takes down.
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BLUEPRINT = [sys.executable, "-m", "blueprint.cli"]
LAB = "bench"
SUBNET = "10.90.0.0/24"


@dataclass
class Timed:
    seconds: float
    peak_mib: float
    rc: int


def timed(cmd: list[str], *, check: bool = True) -> Timed:
    """Run `cmd`, return its wall time and the peak RSS of it and its children."""
    started = time.monotonic()
    process = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True)
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    seconds = time.monotonic() - started
    stderr = process.stderr.read() if process.stderr else ""
    if check and process.returncode != 0:
        sys.exit(f"failed ({process.returncode}): {shlex.join(cmd)}\n{stderr}")
    return Timed(seconds, usage.ru_maxrss / 1024, process.returncode)


def lab_up(nodes: int, site_dir: Path) -> Timed:
    return timed([*BLUEPRINT, "lab", "up", "--name", LAB, "--nodes", str(nodes),
                  "--subnet", SUBNET, "--site-dir", str(site_dir)])


def lab_down() -> None:
    timed([*BLUEPRINT, "lab", "down", "--name", LAB], check=False)


def converge_figures(nodes: int, stock: bool) -> dict[str, Timed]:
    """Fresh lab, then first deploy, no-op deploy and validate with one Ansible setting."""
    figures: dict[str, Timed] = {}
    with tempfile.TemporaryDirectory(prefix="bench-site-") as tmp:
        site_dir = Path(tmp)
        try:
            figures["lab up"] = lab_up(nodes, site_dir)
            extra = ["--stock-ansible"] if stock else []
            deploy = [*BLUEPRINT, "deploy", str(site_dir), *extra]
            figures["first converge"] = timed(deploy)
            figures["no-op converge"] = timed(deploy)
            if not stock:
                figures["validate"] = timed([*BLUEPRINT, "validate", str(site_dir)],
                                            check=False)
        finally:
            lab_down()
    return figures


def raw_apt_figure() -> Timed:
    """apt-get install of the same packages the two roles install, on one fresh node."""
    sys.path.insert(0, str(ROOT))
    import yaml

    os_defaults = yaml.safe_load((ROOT / "roles/os_baseline/defaults/main.yml").read_text())
    packages = [*os_defaults["os_baseline_packages"], "containerd"]
    with tempfile.TemporaryDirectory(prefix="bench-site-") as tmp:
        site_dir = Path(tmp)
        try:
            lab_up(1, site_dir)
            ssh = ["ssh", "-i", str(site_dir / "lab_ed25519"), "-o",
                   f"UserKnownHostsFile={site_dir / 'known_hosts'}", "-o",
                   "StrictHostKeyChecking=yes", f"root@{SUBNET.split('.0/')[0]}.11"]
            command = ("apt-get update -qq && DEBIAN_FRONTEND=noninteractive "
                       f"apt-get install -y -qq {' '.join(packages)} >/dev/null")
            return timed([*ssh, command])
        finally:
            lab_down()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, nargs="+", default=[1, 3, 6])
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("run as root: the lab needs namespaces, bridges and mounts")

    print(f"{'nodes':>5} {'settings':<8} {'lab up':>8} {'first':>8} {'no-op':>8} "
          f"{'validate':>9} {'peak MiB':>9}")
    noop: dict[tuple[int, bool], float] = {}
    for nodes in args.nodes:
        for stock in (False, True):
            figures = converge_figures(nodes, stock)
            peak = max(t.peak_mib for t in figures.values())
            noop[(nodes, stock)] = figures["no-op converge"].seconds
            validate = figures.get("validate")
            print(f"{nodes:>5} {'stock' if stock else 'product':<8} "
                  f"{figures['lab up'].seconds:>7.1f}s {figures['first converge'].seconds:>7.1f}s "
                  f"{figures['no-op converge'].seconds:>7.1f}s "
                  f"{(f'{validate.seconds:.1f}s' if validate else '-'):>9} {peak:>9.0f}",
                  flush=True)
    for nodes in args.nodes:
        ratio = noop[(nodes, True)] / noop[(nodes, False)]
        print(f"no-op re-converge on {nodes} node(s): product is {ratio:.1f}x faster than stock")
    raw = raw_apt_figure()
    print(f"raw apt-get update + install of the same packages on 1 node: {raw.seconds:.1f}s")


if __name__ == "__main__":
    main()
