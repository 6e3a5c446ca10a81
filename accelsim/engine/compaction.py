"""Compaction (``decoder.compaction``): FW packs the active lanes of each pixel into full units.

Inside a segment (a CDG output chunk when the unit width divides it, so the base path stays
aligned; else the whole row) the first ceil(active lanes / U) units run the segment's
conditional steps; the decoder pays for it with ``decoder.compaction_indices_per_cycle``.
"""

from __future__ import annotations

import numpy as np

from accelsim.engine.masks import LayerMasks


def packed_conditional_work(active_lanes: np.ndarray, cond: np.ndarray, unit: int, f: int,
                            masks: LayerMasks) -> np.ndarray:
    """Compaction in FW: the active lanes of each pixel are packed into full units inside a
    segment (a CDG output chunk when ``unit`` divides it, else the whole row); the first
    ceil(active / unit) units of the segment run the segment's conditional steps (its maximum).
    ``active_lanes`` is int32 (M, J): active lanes per unit."""
    m, units = active_lanes.shape
    chunk = f
    if masks.base is not None and (f // masks.gating_groups) % unit == 0:
        chunk = f // masks.gating_groups
    result = np.zeros((m, units), dtype=np.int32)
    per_segment = chunk // unit if chunk % unit == 0 else units
    for start in range(0, units, per_segment):
        stop = min(start + per_segment, units)
        lanes = active_lanes[:, start:stop].sum(axis=1, dtype=np.int64)
        packed = -(-lanes // unit)
        seg_cond = int(cond[start:stop].max())
        slots = np.arange(stop - start)[None, :] < packed[:, None]
        result[:, start:stop] = slots * seg_cond
    return result
