"""kubeadm's pod network (CNI): its release files and where its images come from."""

from __future__ import annotations

import logging
from pathlib import Path

from blueprint.artifacts import ResolvedBinary, load_catalogue
from blueprint.errors import BadInput
from blueprint.models import Site

log = logging.getLogger(__name__)


def image_registries(binaries: list[ResolvedBinary]) -> list[str]:
    """The registries the pod network's images come from, as the catalogue lists them."""
    entries = load_catalogue().binaries
    return sorted({registry for binary in binaries if binary.cni
                   for registry in entries[binary.name].image_registries})


def check_image_mirrors(site: Site, binaries: list[ResolvedBinary], site_file: Path) -> None:
    """Refuse an offline site whose containerd has no mirror for a registry the pod network
    pulls from; warn about a site in mirror mode, whose nodes then go upstream.

    The images keep their upstream names everywhere: containerd's per-registry mirrors
    (artifacts.registry_mirrors, written by the runtime layer) serve them, which also covers
    the images Calico's operator chooses at run time and keeps their digests valid.
    """
    if site.artifacts.mode == "online":
        return
    mirrored = {mirror.registry for mirror in site.artifacts.registry_mirrors}
    missing = [registry for registry in image_registries(binaries) if registry not in mirrored]
    if not missing:
        return
    cni = next(binary.cni for binary in binaries if binary.cni)
    if site.artifacts.mode == "offline":
        msg = (f"{site_file}: artifacts.registry_mirrors: no mirror for {', '.join(missing)}, "
               f"and the pod network {cni} pulls images from there while an offline site's "
               "nodes reach no registry; add a mirror for " + ", ".join(missing))
        raise BadInput(msg)
    log.warning("site %s: no registry mirror for %s: the nodes pull %s's images from there "
                "directly", site.name, ", ".join(missing), cni)
