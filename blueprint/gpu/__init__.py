"""The GPU layer's detection and plan-time decision, as typed Python.

The rules themselves live in one self-contained file that is also the Ansible module run on
the node (`roles/gpu_driver/library/gpu_facts.py`): the node has no `blueprint` package, and
one file means the controller's plan and the node's preflight can never disagree.
"""

from __future__ import annotations

from blueprint.gpu.detect import (
    Detection,
    DriverGpu,
    Gpu,
    NvidiaFunction,
    detect,
    headers_state,
    nouveau_loaded,
    parse_nvidia_smi,
    parse_sb_state,
)
from blueprint.gpu.plan import DriverChoice, Mok, NodeState, Outcome, decide

__all__ = [
    "Detection",
    "DriverChoice",
    "DriverGpu",
    "Gpu",
    "Mok",
    "NodeState",
    "NvidiaFunction",
    "Outcome",
    "decide",
    "detect",
    "headers_state",
    "nouveau_loaded",
    "parse_nvidia_smi",
    "parse_sb_state",
]
