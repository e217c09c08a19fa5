"""Edge AI blueprint installer: one site file to bare metal, cluster, AI platform and a verdict."""

from __future__ import annotations

__version__ = "0.1.0"
