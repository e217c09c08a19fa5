"""Capture of a node's serial console during provision, where its BMC offers one.

The product captures Serial-over-LAN (IPMI SOL, `ipmitool sol activate`): on IPMI BMCs that
have it switched on, and on Redfish BMCs whose manager advertises `SerialConsole` with the
IPMI connect type (SOL on the same host, UDP 623). Consoles offered over SSH only are
vendor-specific (each BMC has its own command to reach the host's console) and are not
captured; the provision summary says why for every node without a console log.

The capture is one ipmitool process per node, started by this module and stopped by its
PID. Its output goes through the redactor, line by line, into the node's folder of the
state folder, mode 0600.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlsplit

from blueprint.baremetal.access import bmc_credentials
from blueprint.baremetal.bmc import BmcClient, RedfishBmc
from blueprint.baremetal.ipmi import IpmiBmc
from blueprint.models import Node
from blueprint.proc import pid_alive, stop_pids
from blueprint.secrets import REDACTOR
from blueprint.state import StateDir

log = logging.getLogger(__name__)

STOP_TIMEOUT = 10.0


def console_log_path(state: StateDir, node: str, run_id: str) -> Path:
    """`.state/nodes/<node>/console-<run id>.log`: one file per node and provision run."""
    return state.root / "nodes" / node / f"console-{run_id}.log"


def sol_peer(node: Node, bmc: BmcClient, secrets: dict[str, Any]) -> tuple[IpmiBmc | None, str]:
    """The IPMI client whose SOL carries the node's serial console, or (None, why not)."""
    if isinstance(bmc, IpmiBmc):
        sol = bmc
    elif isinstance(bmc, RedfishBmc):
        kinds = bmc.serial_console_types()
        if kinds is None:
            return None, "the BMC advertises no serial console (Redfish SerialConsole)"
        if "IPMI" not in kinds:
            return None, (f"the BMC offers its serial console over {', '.join(kinds)} only; "
                          "the product captures IPMI Serial-over-LAN")
        ipmitool = shutil.which("ipmitool")
        host = urlsplit(bmc.address).hostname
        if ipmitool is None or host is None or node.bmc is None:
            return None, ("the BMC offers IPMI Serial-over-LAN, but ipmitool is not installed "
                          "here (apt-get install ipmitool)")
        address = f"[{host}]" if ":" in host else host
        sol = IpmiBmc(node.name, address, bmc_credentials(node, secrets),
                      timeout=node.bmc.timeout, ipmitool=ipmitool)
    else:
        return None, "the BMC client offers no serial console"
    available, why = sol.sol_available()
    return (sol, "") if available else (None, why)


@dataclass
class ConsoleCapture:
    """One running `ipmitool sol activate`, its output copied (redacted) into `path`."""

    node: str
    path: Path
    process: subprocess.Popen[bytes]
    sol: IpmiBmc
    copier: threading.Thread

    @classmethod
    def start(cls, sol: IpmiBmc, path: Path) -> ConsoleCapture:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        out = os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600), "w",
                        encoding="utf-8", errors="replace")
        cmd, env = sol.sol_command()
        log.debug("run: %s", " ".join(cmd))
        # stdin stays an open pipe that nothing writes to: ipmitool ends the session on EOF,
        # and nothing from the product may ever reach the node's console.
        process = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                   stderr=subprocess.STDOUT, env=env, start_new_session=True)
        assert process.stdout is not None
        copier = threading.Thread(target=_copy, args=(process.stdout, out), daemon=True,
                                  name=f"console-{sol.node}")
        copier.start()
        log.info("node %s: capturing the serial console (SOL) into %s", sol.node, path)
        return cls(sol.node, path, process, sol, copier)

    def stop(self) -> str:
        """Stop ipmitool by its PID, free the BMC's SOL session; what the summary shows."""
        ended_early = self.process.poll() is not None
        if pid_alive(self.process.pid, "sol"):
            stop_pids([(self.process.pid, "sol")], timeout=STOP_TIMEOUT)
        self.process.wait(timeout=STOP_TIMEOUT)
        if self.process.stdin is not None:
            self.process.stdin.close()
        self.copier.join(timeout=STOP_TIMEOUT)
        self.sol.sol_deactivate()
        size = self.path.stat().st_size if self.path.exists() else 0
        if ended_early:
            return (f"{self.path} ({size} bytes; SOL ended early with exit "
                    f"{self.process.returncode}, see the log)")
        return f"{self.path} ({size} bytes)"


def _copy(source: IO[bytes], out: IO[str]) -> None:
    """Console output into the log, each line through the redactor, until ipmitool ends."""
    with out:
        for raw in iter(source.readline, b""):
            out.write(REDACTOR.redact(raw.decode("utf-8", errors="replace")))
            out.flush()


def start_console(node: Node, bmc: BmcClient, secrets: dict[str, Any],
                  path: Path) -> tuple[ConsoleCapture | None, str]:
    """Start capturing the node's console if its BMC offers SOL; else (None, why not)."""
    sol, why = sol_peer(node, bmc, secrets)
    if sol is None:
        return None, f"no console captured: {why}"
    try:
        return ConsoleCapture.start(sol, path), ""
    except OSError as exc:
        return None, f"no console captured: cannot run ipmitool: {exc.strerror}"
