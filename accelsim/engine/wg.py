"""Weight gradient (WG) of a job, in one of two lane mappings (``pe_array.wg_lanes``).

``output_channels`` (dW = X^T dY): rows = k, lanes = output channels f, steps = pixels m. A unit
whose lanes' weights are all pruned computes no gradient (unless the step needs the dense weight
gradient for regrowth); otherwise it runs all M steps when any lane has k on its base path, else
only the pixels where any lane's gate bit is 1 (:class:`WgPlan`, :func:`wg_sums`; :func:`wg_work`
builds the (K, units) matrix). The decoder's indices are each unit's active pixels. With
compaction each pixel's active lanes are packed into unit slots, as in FW
(:func:`packed_wg_pixels`), and the decoder reads each active gate group's pixels.

``input_channels`` (dW^T = dY^T X, :func:`wg_transposed_work`): rows = output channels f,
lanes = reduction columns k, steps = pixels m. dY(m, f) is the operand broadcast to the unit's
lanes, so gate skipping is per element: a unit runs all M steps when one of its lanes is on f's
base path, else the pixels where f's gate bit is 1; it computes nothing when all its lanes'
weights are pruned (unless the step needs the dense weight gradient). The decoder reads each
row's active-pixel list.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from accelsim.engine.compaction import active_groups, job_packing
from accelsim.engine.masks import unit_lanes
from accelsim.engine.schedule import (
    PassSums,
    PhaseWork,
    matrix_sums,
    matrix_work,
    no_indices,
    pass_rows,
)
from accelsim.engine.views import MaskViews
from accelsim.kernels import diagonal_sums
from accelsim.network import Layer


def wg_work(layer: Layer, views: MaskViews, unit: int, *, use_gate: bool,
            use_weight: bool, rows: int = 1, pass_len: int = 0,
            compaction: bool = False) -> PhaseWork:
    """Weight gradient: rows = k, lanes = output channels f, steps = pixels m. ``rows`` and
    ``pass_len`` only pick which cached gate counts to reuse (0: one pass); ``compaction``:
    each pixel's active lanes are packed into unit slots (:func:`packed_wg_pixels`)."""
    return _wg_matrix_work(layer, views, unit, use_gate, use_weight, "k", rows, pass_len,
                           compaction)


def packed_wg_pixels(layer: Layer, views: MaskViews, unit: int) -> np.ndarray:
    """int64 (J,): the pixels where WG's slot j is packed (compaction, lanes over output
    channels): at each pixel the active lanes of a segment are packed into its first slots,
    as in FW (:func:`accelsim.engine.compaction.lane_packing`). Off its base path slot (k, j)
    runs these pixels where unit j keeps a weight in row k: the lanes packed into it may come
    from other units, whose weights there it does not check, so this is optimistic for
    weight-pruned gated layers, as FW's packed slots are."""
    return job_packing(views, unit, layer.cout).slots.sum(axis=0, dtype=np.int64)


def _wg_matrix_work(layer: Layer, views: MaskViews, unit: int, use_gate: bool,
                    use_weight: bool, rows_over: str, rows: int = 1,
                    pass_len: int = 0, compaction: bool = False) -> PhaseWork:
    """WG's (rows, units) work matrix, rows over ``k`` (lanes over output channels) or over
    ``f`` (lanes over k, :func:`wg_transposed_work`): M steps where the unit's lanes are on a
    base path, else the active pixels (of the unit, with lanes over f: the decoder's column
    indices; of the row's output channel, with lanes over k: the row indices), nothing where
    every weight of the unit is pruned. With ``compaction`` (lanes over f) the active pixels
    are the packed slot's (:func:`packed_wg_pixels`), and the decoder reads the pixel list of
    every active gate group (:func:`~accelsim.engine.compaction.active_groups`)."""
    masks = views.masks
    m, f, k = layer.output_pixels, layer.cout, layer.k_per_group
    units = needed_units(views, unit, use_weight, rows_over=rows_over, shape=(k, f))
    weighted, lanes, needed = units.weighted, units.lanes, units.needed
    unit_idx, row_idx, col_idx = no_indices(*needed.shape)
    if not (use_gate and masks.has_gate):
        steps = np.full(needed.shape, m, dtype=np.int64)
    elif rows_over == "k" and compaction:
        col_idx = active_groups(views, unit, f).sum(axis=0, dtype=np.int64)
        on_base = (views.base_any_over_f(unit).T if masks.base is not None
                   else np.zeros(needed.shape, dtype=bool))
        steps = np.where(on_base, m, packed_wg_pixels(layer, views, unit)[None, :])
    elif rows_over == "k":  # a unit runs the pixels where any of its lanes is on
        col_idx = views.unit_totals(unit, rows, pass_len or max(1, m))
        on_base = (views.base_any_over_f(unit).T if masks.base is not None
                   else np.zeros(needed.shape, dtype=bool))
        steps = np.where(on_base, m, col_idx[None, :])
    else:  # dY(m, f) is broadcast to the lanes: row f runs the pixels where f's gate is on
        row_idx = views.channel_counts.copy()
        on_base = (views.base_any_over_k(unit).T if masks.base is not None
                   else np.zeros(needed.shape, dtype=bool))
        steps = np.where(on_base, m, row_idx[:, None])
    if weighted:
        unit_idx = np.ascontiguousarray(needed, dtype=np.int32)
    return matrix_work(steps * needed, unit_idx, row_idx, col_idx, lanes)


@dataclass(frozen=True)
class WgUnits:
    """Which of WG's units have a gradient to compute (:func:`needed_units`)."""

    weighted: bool       # WG skips with the weight mask
    lanes: np.ndarray    # int64 (units per row,): real lanes per unit column
    needed: np.ndarray   # bool (rows, units per row): the unit has a kept weight


def needed_units(views: MaskViews, unit: int, use_weight: bool, *, rows_over: str,
                 shape: tuple[int, int]) -> WgUnits:
    """The :class:`WgUnits` of WG's rows over ``k`` (lanes over output channels) or over
    ``f`` (lanes over k); ``shape`` = (K, F). Pruned weights get no gradient, except at steps
    that need the dense weight gradient."""
    masks = views.masks
    k, f = shape
    weighted = use_weight and masks.weight is not None and not masks.dense_weight_gradient
    rows, length, axis = (k, f, 0) if rows_over == "k" else (f, k, 1)
    lanes = unit_lanes(length, unit)
    if not weighted:
        return WgUnits(False, lanes, np.ones((rows, lanes.shape[0]), dtype=bool))
    needed = views.weight_any(unit, axis)
    return WgUnits(True, lanes, needed.T if rows_over == "k" else needed)


def wg_sums(layer: Layer, views: MaskViews, unit: int, rows: int, pass_len: int, *,
            use_gate: bool, use_weight: bool) -> PassSums:
    """WG without compaction as per-pass sums (equal to scheduling :func:`wg_work`). A gated
    layer without weight masks needs no (K, units) matrix: reduction row k of unit j runs M
    steps when k is on the unit's base path, else the unit's active pixels, so the sums follow
    from how many rows of each pass and queue row lie in each input chunk."""
    masks = views.masks
    gated = use_gate and masks.has_gate
    weighted = use_weight and masks.weight is not None and not masks.dense_weight_gradient
    if weighted or not gated:
        return matrix_sums(wg_work(layer, views, unit, use_gate=use_gate, use_weight=use_weight,
                                   rows=rows, pass_len=pass_len), rows, pass_len)
    return wg_plan(layer, views, unit, rows, pass_len).gated(views)


@dataclass(frozen=True, eq=False)
class WgPlan:
    """What a gated WG job without weight masks takes from everything but the gate bits
    (:func:`wg_plan`): reduction row k of unit j runs M steps when k is on the unit's base
    path, else the unit's active pixels."""

    unit: int               # lanes per lock-step unit
    rows: int               # queue rows (PE rows)
    pass_len: int           # reduction rows per pass
    base_steps: np.ndarray  # int64 (passes, J, rows): M x the rows on the unit's base path
    off_base: np.ndarray    # int64 (passes, J, rows): rows off the unit's base path
    classes: np.ndarray     # int64 (J,): class of each unit column (its own)
    lanes: np.ndarray       # int64 (J,): real lanes per unit column
    row_idx: np.ndarray     # int64 (passes,): zero (WG's indices are per unit column)

    def gated(self, views: MaskViews) -> PassSums:
        """The sums with the gate of ``masks``: base steps + active pixels x rows off the base
        path (the decoder's column indices are each unit's active pixels)."""
        active = views.unit_totals(self.unit, self.rows, self.pass_len)
        sums, _, _ = diagonal_sums(self.base_steps, self.off_base, active)
        return PassSums(sums, self.classes, self.lanes, None, self.row_idx, active)


def wg_plan(layer: Layer, views: MaskViews, unit: int, rows: int, pass_len: int) -> WgPlan:
    """The :class:`WgPlan` of a gated job without weights, from how many rows of each pass and
    queue row lie in each input chunk (cached with what depends on the base path)."""
    key = ("wg_sums", layer.output_pixels, layer.cout, layer.k_per_group, unit, rows, pass_len)
    return views.structure(key, lambda: _wg_plan_of(layer, views, unit, rows,
                                                              pass_len))


def _wg_plan_of(layer: Layer, views: MaskViews, unit: int, rows: int,
                pass_len: int) -> WgPlan:
    masks = views.masks
    m, k = layer.output_pixels, layer.k_per_group
    lanes = unit_lanes(layer.cout, unit)
    per_row = pass_rows(k, rows, pass_len)  # (passes, rows)
    passes = per_row.shape[0]
    if masks.base is None:
        on_base = np.zeros((passes, lanes.shape[0], rows), dtype=np.int64)
    else:
        kk = np.arange(k)
        in_chunk = np.zeros((passes * rows, masks.base.groups), dtype=np.int64)
        np.add.at(in_chunk, ((kk // pass_len) * rows + kk % rows, masks.base.chunk_of_k), 1)
        members = masks.base.members_over_f(unit).astype(np.int64)  # (J, G)
        on_base = np.einsum("prq,jq->pjr", in_chunk.reshape(passes, rows, -1), members)
    return WgPlan(unit, rows, pass_len, m * on_base, per_row[:, None, :] - on_base,
                  np.arange(lanes.shape[0], dtype=np.int64), lanes,
                  np.zeros(passes, dtype=np.int64))


def wg_transposed_work(layer: Layer, views: MaskViews, unit: int, *, use_gate: bool,
                       use_weight: bool) -> PhaseWork:
    """WG with ``wg_lanes: input_channels`` (see the module docstring): rows = output channels,
    lanes = reduction columns k."""
    return _wg_matrix_work(layer, views, unit, use_gate, use_weight, "f")
