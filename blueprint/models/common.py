"""Shared base for every model read from a file: strict, immutable."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class StrictModel(BaseModel):
    """Unknown keys are errors and values are never coerced silently across types."""

    model_config = ConfigDict(extra="forbid", frozen=True)
