"""The local lab: Debian nodes booted with systemd-nspawn on a bridge, with an apt mirror."""

from __future__ import annotations

from blueprint.lab.lab import LabState, NodeState, lab_down, lab_status, lab_up, overlay_digest

__all__ = ["LabState", "NodeState", "lab_down", "lab_status", "lab_up", "overlay_digest"]
