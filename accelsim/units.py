"""Units for people: energies and cycle counts scaled to the unit that reads best."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

ENERGY_UNITS = (("pJ", 1.0), ("nJ", 1e3), ("µJ", 1e6), ("mJ", 1e9), ("J", 1e12))
CYCLE_UNITS = (("cycles", 1.0), ("k cycles", 1e3), ("M cycles", 1e6), ("G cycles", 1e9))


def scale_unit(values: Sequence[float] | np.ndarray | pd.Series,
               units: Sequence[tuple[str, float]]) -> tuple[str, float]:
    """The largest unit of ``units`` ((name, size) ascending) that keeps max |value| >= 1."""
    array = np.asarray(values, dtype=float)
    largest = float(np.nanmax(np.abs(array))) if array.size and not np.isnan(array).all() \
        else 0.0
    chosen = units[0]
    for unit in units:
        if largest >= unit[1]:
            chosen = unit
    return chosen


def energy_text(pj: float) -> str:
    """An energy in pJ as text in the unit that reads best: ``12.3 µJ``, ``4.56 mJ``."""
    unit, size = scale_unit([pj], ENERGY_UNITS)
    return f"{pj / size:.3g} {unit}"
