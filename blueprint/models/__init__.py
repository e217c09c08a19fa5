"""Pydantic models of the two files an operator writes: the blueprint and the site."""

from __future__ import annotations

from blueprint.models.blueprint import Blueprint, HardwareProfile, Layer
from blueprint.models.site import NODE_ROLES, Artifacts, Node, Site, Waiver

__all__ = [
    "NODE_ROLES",
    "Artifacts",
    "Blueprint",
    "HardwareProfile",
    "Layer",
    "Node",
    "Site",
    "Waiver",
]
