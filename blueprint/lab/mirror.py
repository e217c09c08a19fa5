"""The lab's apt mirror: an apt-cacher-ng process per lab, bound to the bridge address."""

from __future__ import annotations

import logging
import pwd
import shutil
import socket
import subprocess
import time
from pathlib import Path

from blueprint.errors import DeployFailed
from blueprint.lab.image import DEFAULT_MIRROR, host_mirror, host_uris
from blueprint.lab.paths import MIRROR_CACHE_ROOT, lab_dir
from blueprint.proc import run, start_detached

log = logging.getLogger(__name__)

ACNG_USER = "apt-cacher-ng"
SUPPORT_DIR = Path("/usr/lib/apt-cacher-ng")
DEFAULT_SECURITY = "http://deb.debian.org/debian-security"


def host_security_mirror(apt_dir: Path = Path("/etc/apt")) -> str:
    """The debian-security URI the host's apt uses, or deb.debian.org's."""
    found = [uri for uri in host_uris(apt_dir) if uri.endswith("/debian-security")]
    return found[0] if found else DEFAULT_SECURITY


def mirror_config(bind: str, port: int, cache: Path, logs: Path, conf: Path) -> str:
    """acng.conf for one lab: its own cache, bound to the bridge, fixed upstream mirrors.

    Debian's default remapping picks mirrors from a list this host may not reach (it then
    answers 503), so the archive and security backends are the ones the host's apt uses.
    Nodes use deb.debian.org URLs; requests for security.debian.org and
    deb.debian.org/debian-security are both mapped to the security backend.
    """
    return "\n".join(
        [
            "# Written by `blueprint lab up`; apt-cacher-ng runs in the foreground under it.",
            f"CacheDir: {cache}",
            f"LogDir: {logs}",
            f"SupportDir: {SUPPORT_DIR}",
            f"SocketPath: {conf / 'acng.socket'}",
            f"Port: {port}",
            f"BindAddress: {bind}",
            "ForeGround: 1",
            "Remap-debrep: file:deb_mirror*.gz /debian ; file:backends_debian",
            "Remap-secdeb: security.debian.org security.debian.org/debian-security "
            "deb.debian.org/debian-security /debian-security "
            "cdn-fastly.deb.debian.org/debian-security ; file:backends_debian_security",
            "ReportPage: acng-report.html",
            "ExThreshold: 4",
            "FollowIndexFileRemoval: 1",
            "",
        ]
    )


def start_mirror(lab: str, bind: str, port: int) -> int:
    """Start apt-cacher-ng for `lab` detached from this process; return its PID once it listens.

    The cache lives under /var/cache/blueprint/apt-cacher-ng/<lab>/ so it stays warm when a
    lab of the same name comes up again.
    """
    conf = lab_dir(lab) / "mirror"
    cache = MIRROR_CACHE_ROOT / lab
    logs = conf / "log"
    for folder in (conf, cache, logs):
        folder.mkdir(parents=True, exist_ok=True)
    (conf / "acng.conf").write_text(mirror_config(bind, port, cache, logs, conf))
    (conf / "backends_debian").write_text(f"{host_mirror().rstrip('/') or DEFAULT_MIRROR}/\n")
    (conf / "backends_debian_security").write_text(f"{host_security_mirror().rstrip('/')}/\n")

    # Run as Debian's apt-cacher-ng user when the package created it, never as root otherwise.
    user: str | None = None
    try:
        entry = pwd.getpwnam(ACNG_USER)
        user = ACNG_USER
        for folder in (conf, cache, logs):
            shutil.chown(folder, entry.pw_uid, entry.pw_gid)
        # A cache left by a mirror that ran as root must become the mirror user's.
        run(["chown", "-R", f"{entry.pw_uid}:{entry.pw_gid}", str(cache)], check=False)
    except KeyError:
        log.warning("User %s is missing; running the mirror as root", ACNG_USER)

    log.info("Starting the mirror on %s:%d", bind, port)
    cmd = ["apt-cacher-ng", "-c", str(conf), "ForeGround=1"]
    proc = start_detached(cmd, conf / "apt-cacher-ng.out", user=user)
    wait_listening(bind, port, proc, timeout=15)
    return proc.pid


def wait_listening(host: str, port: int, proc: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            msg = f"the lab mirror (apt-cacher-ng) exited with {proc.returncode} at start"
            raise DeployFailed(msg)
        try:
            with socket.create_connection((host, port), timeout=1):
                return
        except OSError:
            time.sleep(0.2)
    msg = f"the lab mirror did not listen on {host}:{port} within {timeout:.0f} s"
    raise DeployFailed(msg)
