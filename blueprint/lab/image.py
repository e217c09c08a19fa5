"""The cached Debian root that every lab node boots from (debootstrap, built once)."""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import re
import shutil
import time
from pathlib import Path

from blueprint.lab.paths import IMAGE_ROOT
from blueprint.proc import run

log = logging.getLogger(__name__)

SUITE = "bookworm"
VARIANT = "minbase"
# What a freshly installed node has before the product touches it: the same set the
# product's own unattended install puts on real hosts. python3-apt is part of it because
# Ansible's apt module needs it to answer a plan (check mode) without installing anything.
PACKAGES = (
    "systemd",
    "systemd-sysv",
    "dbus",
    "openssh-server",
    "python3",
    "python3-apt",
    "iproute2",
    "iputils-ping",
    "ca-certificates",
    "apt-utils",
)
DEFAULT_MIRROR = "http://deb.debian.org/debian"

# Files that identify one machine: every node gets its own before first boot.
_IDENTITY_GLOBS = ("etc/ssh/ssh_host_*",)


def host_uris(apt_dir: Path = Path("/etc/apt")) -> list[str]:
    """The archive URIs of the host's apt sources (deb822 and one-line), comments skipped."""
    uris: list[str] = []
    for path in sorted((apt_dir / "sources.list.d").glob("*.sources")):
        for line in path.read_text().splitlines():
            if line.startswith("URIs:"):
                uris += line.split()[1:]
    one_line = [apt_dir / "sources.list", *sorted((apt_dir / "sources.list.d").glob("*.list"))]
    for path in one_line:
        if not path.is_file():
            continue
        for line in path.read_text().splitlines():
            match = re.match(r"^deb\s+(?:\[[^]]*\]\s+)?(\S+)", line)
            if match:
                uris.append(match.group(1))
    return [uri.rstrip("/") for uri in uris]


def host_mirror(apt_dir: Path = Path("/etc/apt")) -> str:
    """The Debian archive URI the host's apt uses, or deb.debian.org."""
    found = [uri for uri in host_uris(apt_dir) if uri.endswith("/debian")]
    return found[0] if found else DEFAULT_MIRROR


def image_key(suite: str = SUITE, packages: tuple[str, ...] = PACKAGES) -> str:
    """A folder name that changes whenever the suite, variant or package list changes."""
    spec = "\n".join([suite, VARIANT, *sorted(packages)])
    return f"{suite}-{VARIANT}-{hashlib.sha256(spec.encode()).hexdigest()[:12]}"


def ensure_image(mirror: str | None = None, root: Path = IMAGE_ROOT) -> Path:
    """Return the cached root, building it first when missing.

    The root is built in a temporary folder and renamed into place, under a lock, so two
    concurrent `lab up`s build it once and nobody ever sees a half-built root.
    """
    key = image_key()
    final = root / key
    if final.is_dir():
        return final
    root.mkdir(parents=True, exist_ok=True)
    with open(root / f"{key}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if final.is_dir():
            return final
        _build(final, mirror or host_mirror())
    return final


def _build(final: Path, mirror: str) -> None:
    tmp = final.with_name(f".{final.name}.tmp-{os.getpid()}")
    if tmp.exists():
        shutil.rmtree(tmp)
    log.info("Building the node image %s from %s (once; about a minute)", final.name, mirror)
    started = time.monotonic()
    run(
        [
            "debootstrap",
            f"--variant={VARIANT}",
            f"--include={','.join(PACKAGES)}",
            SUITE,
            str(tmp),
            mirror,
        ],
        timeout=1800,
    )

    # Strip what makes a machine unique, and what only the build needed.
    for pattern in _IDENTITY_GLOBS:
        for path in tmp.glob(pattern):
            path.unlink()
    (tmp / "etc/machine-id").write_text("")
    dbus_id = tmp / "var/lib/dbus/machine-id"
    if dbus_id.is_file() and not dbus_id.is_symlink():
        dbus_id.unlink()
    for deb in (tmp / "var/cache/apt/archives").glob("*.deb"):
        deb.unlink()

    os.rename(tmp, final)
    log.info("Built the node image in %.0f s", time.monotonic() - started)
