"""Where the lab keeps its image cache, per-lab state and mirror cache on the host."""

from __future__ import annotations

from pathlib import Path

IMAGE_ROOT = Path("/var/cache/blueprint/images")
LAB_ROOT = Path("/var/lib/blueprint/lab")
MIRROR_CACHE_ROOT = Path("/var/cache/blueprint/apt-cacher-ng")


def lab_dir(name: str) -> Path:
    """The folder that holds one lab's state file, nodes and mirror config."""
    return LAB_ROOT / name


def node_dir(name: str, node: str) -> Path:
    """The folder of one node: overlay upper/work, its mounted root and its log."""
    return lab_dir(name) / "nodes" / node
