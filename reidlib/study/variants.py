"""Rows of an ablation table as data: what each changes from the profile's defaults."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Optional

import pandas as pd

__all__ = ["Variant", "design_table"]


@dataclass(frozen=True)
class Variant:
    """One row of an ablation table: what changes from the profile's defaults.

    ``model``: ``baseline`` | ``span`` | ``musp``. ``config``: run-configuration overrides (dotted
    keys, e.g. ``{"model.kwargs": {"num_attentions": 3}}``). ``span``: for SPAN's part model,
    overrides of SPAN step 1 (e.g. ``{"span.use_area": False}``). ``distance``: the distance used
    at test time (default: the model's own). ``seeds``: how many of the study's training seeds
    the row is trained with (``None``: all of them, the headline rows; ``1``: the first only, a
    secondary row, labelled so). A comparison of two rows uses the seeds both have.
    """

    model: str
    config: Mapping[str, Any] = field(default_factory=dict)
    span: Mapping[str, Any] = field(default_factory=dict)
    distance: Optional[str] = None
    note: str = ""
    seeds: Optional[int] = None

    def __post_init__(self):
        if self.seeds is not None and (not isinstance(self.seeds, int) or self.seeds < 1):
            raise ValueError(f"Variant.seeds must be None (all training seeds) or a count >= 1, got {self.seeds!r}")

    def describe(self) -> dict:
        changes = {**{k: v for k, v in self.config.items()},
                   **{f"SPAN step 1: {k}": v for k, v in self.span.items()}}
        return {"model": self.model,
                "changes": ", ".join(f"{k}={v}" for k, v in changes.items()) or "(profile defaults)",
                "test distance": self.distance or "the model's own",
                "seeds": "all" if self.seeds is None else str(self.seeds), "note": self.note}


def design_table(variants: Mapping[Any, Variant]) -> pd.DataFrame:
    """The design of an experiment: one row per variant, saying what it changes."""
    return pd.DataFrame([{"row": str(k), **v.describe()} for k, v in variants.items()])
