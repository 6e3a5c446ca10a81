"""Compaction (``decoder.compaction``): FW packs the active lanes of each pixel into full units.

Inside a segment (a CDG output chunk when the unit width divides it, so the base path stays
aligned; else the whole row) the first ceil(active lanes / U) units run the segment's
conditional steps (those of its column with the most, in their order: the operand stage
broadcasts them); the decoder pays for it with ``decoder.compaction_indices_per_cycle``.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import pairwise

import numpy as np

from accelsim.engine.masks import LayerMasks
from accelsim.engine.views import MaskViews


@dataclass(frozen=True, eq=False)
class FwPacking:
    """Where FW's compaction packs each pixel's active lanes: ``slots`` bool (M, J), unit
    slot j of pixel m runs its segment's conditional steps; ``segment`` int64 (J,), the
    segment of each unit column (columns [start, stop) of segment s share ``starts[s]``)."""

    slots: np.ndarray
    segment: np.ndarray
    starts: np.ndarray  # int64 (segments + 1,): first unit column of each segment, then J

    def segment_lead(self, cond: np.ndarray) -> np.ndarray:
        """int64 (J,): for each unit column, the column of its segment with the most
        conditional steps ``cond`` (int (J,); the first on ties): a packed slot runs that
        column's conditional steps."""
        lead = np.array([start + int(np.argmax(cond[start:stop]))
                         for start, stop in pairwise(self.starts)], dtype=np.int64)
        return lead[self.segment]


def fw_packing(active_lanes: np.ndarray, unit: int, f: int, masks: LayerMasks) -> FwPacking:
    """The :class:`FwPacking` of a gate whose active lanes per unit are ``active_lanes``, int32
    (M, J): inside a segment (a CDG output chunk when ``unit`` divides it, else the whole row)
    the first ceil(active / unit) units are packed."""
    m, units = active_lanes.shape
    chunk = f
    if masks.base is not None and (f // masks.gating_groups) % unit == 0:
        chunk = f // masks.gating_groups
    per_segment = chunk // unit if chunk % unit == 0 else units
    starts = np.append(np.arange(0, units, per_segment), units).astype(np.int64)
    segment = np.repeat(np.arange(starts.shape[0] - 1), np.diff(starts))
    slots = np.zeros((m, units), dtype=bool)
    for start, stop in pairwise(starts):
        lanes = active_lanes[:, start:stop].sum(axis=1, dtype=np.int64)
        packed = -(-lanes // unit)
        slots[:, start:stop] = np.arange(stop - start)[None, :] < packed[:, None]
    return FwPacking(slots, segment, starts)


def packed_conditional_work(packing: FwPacking, cond: np.ndarray) -> np.ndarray:
    """Compaction in FW: int32 (M, J), the conditional steps each unit slot runs: packed
    slots run their segment's largest conditional path (``cond``, int (J,): each column's
    conditional steps)."""
    return packing.slots * cond[packing.segment_lead(cond)].astype(np.int32)[None, :]


def job_packing(views: MaskViews, unit: int, f: int) -> FwPacking:
    """The :class:`FwPacking` of a job's gate for ``unit``-lane units (kept with the job)."""
    return views.per_job(("fw_packing", unit), lambda: fw_packing(
        views.gate_views(unit).unit_lanes, unit, f, views.masks))


def gate_group_lanes(unit_lanes: np.ndarray, group_size: int) -> np.ndarray:
    """int32 (M, J): the indices compaction's decoder reads per pixel and unit column, one
    per active gate group of s = ``group_size`` channels (ceil(active lanes / s)): what it
    needs to know which lanes to pack."""
    if group_size == 1:
        return unit_lanes
    return (-(-unit_lanes // group_size)).astype(np.int32)
