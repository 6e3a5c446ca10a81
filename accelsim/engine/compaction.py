"""Compaction (``decoder.compaction``): FW and WG pack the active lanes of each pixel into full
units.

Lanes are output channels in both. Inside a segment the first ceil(active lanes / U) unit
slots are packed: a segment is a CDG output chunk when the unit width U divides it (so every
slot shares the chunk's base path), the whole row without a base path, and a single unit
where units span chunks with different base paths (nothing is then packed, only moved). A
packed FW slot runs its own base steps and the conditional steps of its segment's column with
the most, in their k order (the operand stage broadcasts them); a packed WG slot runs the
pixels where it is packed. The decoder reads one index per active gate group of each unit
(:func:`active_groups`) at ``decoder.compaction_indices_per_cycle``.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import pairwise

import numpy as np

from accelsim.engine.masks import LayerMasks
from accelsim.engine.views import MaskViews


@dataclass(frozen=True, eq=False)
class LanePacking:
    """Where compaction packs each pixel's active lanes: ``slots`` bool (M, J), unit slot j is
    packed at pixel m; ``segment`` int64 (J,), the segment of each unit column (columns
    [starts[s], starts[s + 1]) form segment s)."""

    slots: np.ndarray
    segment: np.ndarray
    starts: np.ndarray  # int64 (segments + 1,): first unit column of each segment, then J

    def segment_lead(self, cond: np.ndarray) -> np.ndarray:
        """int64 (J,): for each unit column, the column of its segment with the most
        conditional steps ``cond`` (int (J,); the first on ties): a packed FW slot runs that
        column's conditional steps."""
        lead = np.array([start + int(np.argmax(cond[start:stop]))
                         for start, stop in pairwise(self.starts)], dtype=np.int64)
        return lead[self.segment]


def segment_length(f: int, unit: int, masks: LayerMasks) -> int:
    """Unit columns per packing segment (see the module docstring)."""
    units = -(-f // unit)
    if masks.base is None:
        return units
    chunk = f // masks.gating_groups
    return chunk // unit if chunk % unit == 0 else 1


def lane_packing(active_lanes: np.ndarray, unit: int, f: int,
                 masks: LayerMasks) -> LanePacking:
    """The :class:`LanePacking` of a gate whose active lanes per unit are ``active_lanes``,
    int32 (M, J): the first ceil(active / unit) slots of each segment are packed."""
    m, units = active_lanes.shape
    starts = np.append(np.arange(0, units, segment_length(f, unit, masks)),
                       units).astype(np.int64)
    segment = np.repeat(np.arange(starts.shape[0] - 1), np.diff(starts))
    slots = np.zeros((m, units), dtype=bool)
    for start, stop in pairwise(starts):
        lanes = active_lanes[:, start:stop].sum(axis=1, dtype=np.int64)
        packed = -(-lanes // unit)
        slots[:, start:stop] = np.arange(stop - start)[None, :] < packed[:, None]
    return LanePacking(slots, segment, starts)


def packed_conditional_work(packing: LanePacking, cond: np.ndarray) -> np.ndarray:
    """Compaction in FW: int32 (M, J), the conditional steps each unit slot runs: packed
    slots run their segment's largest conditional path (``cond``, int (J,): each column's
    conditional steps)."""
    return packing.slots * cond[packing.segment_lead(cond)].astype(np.int32)[None, :]


def job_packing(views: MaskViews, unit: int, f: int) -> LanePacking:
    """The :class:`LanePacking` of a job's gate for ``unit``-lane units (kept with the job)."""
    return views.per_job(("lane_packing", unit), lambda: lane_packing(
        views.gate_views(unit).unit_lanes, unit, f, views.masks))


def active_groups(views: MaskViews, unit: int, f: int) -> np.ndarray:
    """int32 (M, J): the indices compaction's decoder reads per pixel and unit column, one per
    active gate group (s = the gate's group size channels) that the unit's lanes touch: what
    it needs to know which lanes to pack (kept with the job)."""
    return views.per_job(("active_groups", unit), lambda: _active_groups(views, unit, f))


def _active_groups(views: MaskViews, unit: int, f: int) -> np.ndarray:
    s = views.masks.gate_group_size
    if s == 1:
        return views.gate_views(unit).unit_lanes
    gate = views.gate_bool  # (N, F/s, P): pixel m = n * P + p
    per_pixel = np.ascontiguousarray(gate.transpose(0, 2, 1)).reshape(-1, gate.shape[1])
    units = -(-f // unit)
    first = np.arange(units) * unit // s
    last = (np.minimum((np.arange(units) + 1) * unit, f) - 1) // s
    count = np.zeros((per_pixel.shape[0], units), dtype=np.int32)
    for offset in range(int((last - first).max()) + 1):
        touched = first + offset <= last
        count[:, touched] += per_pixel[:, (first + offset)[touched]]
    return count
