"""The operand stage: how far queues may drift apart, and what a pass then lasts.

A tensor-dataflow PE stages ``pe_array.stage_steps`` reduction steps of operands,
double-buffered: the array broadcasts the streamed operand of each queued unit along its PE
row and the shared operand down its PE column for D = stage_steps steps of the reduction at a
time, in the reduction's order, and broadcasts the next D once every PE has worked through
them. Inside a chunk of D steps each queue runs its units' work privately, so a pass lasts

    sum over chunks x of max over queues q of W(q, x)

where W(q, x) is the work (cycles) of q's queued units in the steps of x. When D covers the
whole reduction this is the pass model of :mod:`accelsim.engine.schedule` (a pass lasts as
long as its slowest queue); with D = 1 the queues step together, and a step lasts as long as
the queue with most active units at that step.

Each phase's steps, in the order they are broadcast:

- FW (lanes over output channels): reduction columns k. A unit column's step k always runs
  when a lane keeps weight (f, k) on its base path (every kept k without a gate), and runs
  where the unit is active when it is kept off the base path.
- FW on adder trees: each output's path groups, the base path's first (the tree's own order).
- BD: output channels f (lanes over k) or groups of ``vector_width`` of them (adder trees).
- WG: pixels m, in both lane mappings.

With N:M multiplexers and a gate (:func:`staged_compute_nm`), FW's steps are those of the
shrunk reduction: a unit runs its t'/t-scaled base steps, then, where it is active, its scaled
conditional steps, as the pass sums count them.

With compaction FW's and WG's units are packed slots (:mod:`accelsim.engine.compaction`), and
a pass lasts the static mapping's cycles or the dispatcher's, which balances each chunk over
the queues (:mod:`accelsim.engine.stage_compaction`), whichever is fewer.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from accelsim.config import SYSTOLIC_DATAFLOWS, HardwareConfig
from accelsim.engine.bd import (
    bd_classes,
    bd_tree_plan,
    bd_tree_stream,
    gated_tree_schedule,
)
from accelsim.engine.compaction import job_packing
from accelsim.engine.fw import fw_step_sets, fw_tree_steps, fw_tree_stream, scaled_steps
from accelsim.engine.lane_scheduler import LaneScheduler, scheduled_steps
from accelsim.engine.masks import pack_bits
from accelsim.engine.schedule import LaneLayout, pass_rows
from accelsim.engine.stage_compaction import (
    PassParts,
    compacted_columns_rc,
    compacted_columns_rt,
    compacted_rows_jt,
    compacted_rows_rt,
    pass_parts,
)
from accelsim.engine.views import MaskViews
from accelsim.engine.wg import needed_units
from accelsim.kernels import (
    pass_row_sums,
    staged_columns_rc,
    staged_columns_rt,
    staged_rows_jt,
    staged_rows_rt,
)
from accelsim.network import Layer


@dataclass(frozen=True)
class StageLayout:
    """What the stage reads of the hardware for one phase: queue rows and columns, output
    rows per pass, lanes per unit (``unit``), adder-tree width (``tree``, 0: none), WG's lane
    mapping and the stage depth in reduction steps."""

    rows: int
    pass_len: int
    qcols: int
    unit: int
    tree: int
    wg_lanes: str
    stage_steps: int
    compaction: bool = False  # the dispatcher balances each chunk (stage_compaction.py)
    scheduler: LaneScheduler | None = None  # a lane scheduler in front of the tree

    @property
    def balances(self) -> bool:
        """Whether compaction can beat the static staged mapping: with one row tile a pass
        every queue holds at most one unit, whose chunk the static mapping already waits for."""
        return self.compaction and self.pass_len > self.rows

    def parts(self, total: int) -> PassParts:
        """The pass parts of ``total`` rows the dispatcher balances."""
        return pass_parts(total, self.rows, self.pass_len)


def stage_layout(hw: HardwareConfig, layout: LaneLayout) -> StageLayout | None:
    """The :class:`StageLayout` of a phase on ``hw``, or None where the stage does not bound
    the schedule (systolic arrays)."""
    pe = hw.pe_array
    if pe.dataflow in SYSTOLIC_DATAFLOWS:
        return None
    return StageLayout(pe.rows, pe.rows * pe.sync_tiles, layout.qcols, layout.unit,
                       layout.tree, pe.wg_lanes, pe.stage_steps, hw.decoder.compaction,
                       layout.scheduler)


def staged_compute(layer: Layer, phase: str, views: MaskViews, stage: StageLayout, *,
                   use_gate: bool, use_weight: bool,
                   order: np.ndarray | None = None) -> np.ndarray | None:
    """int64 (passes, column tiles): each pass's compute cycles under the operand stage, or
    None when the stage holds the whole reduction (the pass model is then exact); ``order``:
    the row balancer's order of the phase's rows (:mod:`accelsim.engine.balance`), or None."""
    gated = use_gate and views.masks.has_gate
    if phase == "fw":
        return _fw(layer, views, stage, gated, use_weight, order)
    if phase == "bd":
        return _bd(layer, views, stage, gated, use_weight, order)
    return _wg(layer, views, stage, gated, use_weight, order)


def staged_compute_nm(layer: Layer, views: MaskViews, stage: StageLayout, shrunk: int,
                      steps: int, order: np.ndarray | None = None) -> np.ndarray | None:
    """:func:`staged_compute` of gated FW on N:M multiplexers that shrink a reduction of
    ``steps`` to ``shrunk``: unit j runs positions [0, b_j) always and [b_j, t'_j) where
    active, b_j and t'_j its base and whole reduction scaled by shrunk / steps (rounded up)."""
    sets = fw_step_sets(layer, views, stage.unit, True, None)
    base_steps = sets.always.sum(axis=1, dtype=np.int64)
    cond = sets.allowed.sum(axis=1, dtype=np.int64) - base_steps
    packing = job_packing(views, stage.unit, layer.cout) if stage.compaction else None
    if packing is not None:  # packed slots run their segment's largest conditional path
        cond = cond[packing.segment_lead(cond)]
    base = scaled_steps(base_steps, (shrunk, steps))
    full = scaled_steps(base_steps + cond, (shrunk, steps))
    position = np.arange(int(full.max()))[None, :]
    fixed = position < base[:, None]
    live = (position < full[:, None]) & ~fixed
    if packing is None:
        active = _active_units(views, stage.unit, layer.cout, stage, order)
        return _columns(position.shape[1], fixed, live, active, layer.output_pixels, stage)
    return _packed_columns(layer, stage, chunk_sums(fixed, stage.stage_steps),
                           chunk_sums(live, stage.stage_steps), packing.slots,
                           position.shape[1])


def unit_activity(views: MaskViews, unit: int, channels: int) -> np.ndarray:
    """bool (ceil(channels / unit), M): whether any output channel of each ``unit``-channel
    unit is active at pixel m = n * P + p (read from the gate's groups of s channels; kept
    with the job's views)."""
    return views.per_job(("unit_activity", unit, channels),
                         lambda: _unit_activity(views, unit, channels))


def _unit_activity(views: MaskViews, unit: int, channels: int) -> np.ndarray:
    gate = views.gate_bool  # (N, F/s, P)
    s = views.masks.gate_group_size
    n, _, pixels = gate.shape
    if s % unit == 0:  # every unit lies inside one group
        per_unit = gate[:, np.arange(0, channels, unit) // s, :]
    else:  # OR of each unit's channels: unit strided slices of the padded channels
        per_channel = np.repeat(gate, s, axis=1) if s > 1 else gate
        units = -(-channels // unit)
        padded = np.zeros((n, units * unit, pixels), dtype=bool)
        padded[:, :channels] = per_channel
        per_unit = padded[:, 0::unit].copy()
        for lane in range(1, unit):
            per_unit |= padded[:, lane::unit]
    return np.ascontiguousarray(per_unit.transpose(1, 0, 2)).reshape(per_unit.shape[1],
                                                                      n * pixels)


def _active_units(views: MaskViews, unit: int, channels: int, stage: StageLayout,
                  order: np.ndarray | None) -> np.ndarray:
    """int64 (passes, units, rows): the rows of each pass and queue row where any lane of each
    ``unit``-channel unit is active: the gate's counts, or, with the row balancer's ``order``,
    those of the reordered rows."""
    if order is None:
        return views.unit_counts(unit, stage.rows, stage.pass_len)
    activity = unit_activity(views, unit, channels).T[order]  # (M, units)
    return pass_row_sums(activity.astype(np.int64), stage.rows, stage.pass_len)


def chunk_sums(steps: np.ndarray, stage: int) -> np.ndarray:
    """int64 (R, ceil(T / stage)): the steps of a (R, T) array summed over chunks of
    ``stage`` consecutive steps."""
    if stage == 1:
        return steps.astype(np.int64)
    starts = np.arange(0, steps.shape[1], stage)
    return np.add.reduceat(steps.astype(np.int64), starts, axis=1)


def _chunk_lengths(steps: int, stage: int) -> np.ndarray:
    """int64 (ceil(steps / stage),): the steps in each chunk (the last may be short)."""
    starts = np.arange(0, steps, stage, dtype=np.int64)
    return np.minimum(starts + stage, steps) - starts


def _columns(n_steps: int, fixed: np.ndarray, live: np.ndarray, active: np.ndarray | None,
             layer_rows: int, stage: StageLayout,
             activity: Callable[[], np.ndarray] | None = None) -> np.ndarray | None:
    """The stage of steps that belong to unit columns (FW): ``fixed`` / ``live``, bool
    (J, T), the steps each column runs always / where a unit is active; ``active``, int64
    (passes, J, rows): active units of each pass, column and queue row (None: no gate);
    ``activity``: the active units themselves, bool (rows, J), for compaction (None: no
    gate). Returns compute cycles per (pass, column tile), or None when one chunk holds T."""
    if stage.stage_steps >= n_steps:
        return None
    return _column_chunks(chunk_sums(fixed, stage.stage_steps),
                          chunk_sums(live, stage.stage_steps), active, layer_rows, stage,
                          activity)


def _column_chunks(fixed_sums: np.ndarray, live_sums: np.ndarray, active: np.ndarray | None,
                   layer_rows: int, stage: StageLayout,
                   activity: Callable[[], np.ndarray] | None) -> np.ndarray:
    """:func:`_columns` from each column's steps summed per chunk, int64 (J, chunks)."""
    n_rows = pass_rows(layer_rows, stage.rows, stage.pass_len)
    if active is None:
        active = np.zeros((n_rows.shape[0], fixed_sums.shape[0], stage.rows), dtype=np.int64)
    static = staged_columns_rc(n_rows, fixed_sums, live_sums,
                               np.ascontiguousarray(active, dtype=np.int64), stage.qcols)
    if not stage.balances:
        return static
    balanced = compacted_columns_rc(stage.parts(layer_rows), fixed_sums, live_sums,
                                    None if activity is None else activity(), stage.qcols)
    return np.minimum(static, balanced)


def _packed_columns(layer: Layer, stage: StageLayout, fixed_sums: np.ndarray,
                    live_sums: np.ndarray, slots: np.ndarray, n_steps: int) -> np.ndarray | None:
    """:func:`_columns` of FW's packed slots (compaction): slot (m, j) runs its fixed steps
    and, where packed (``slots``, bool (M, J)), ``live_sums`` (its segment's lead's)."""
    if stage.stage_steps >= n_steps:
        return None
    active = pass_row_sums(slots.astype(np.int64), stage.rows, stage.pass_len)
    return _column_chunks(fixed_sums, live_sums, active, layer.output_pixels, stage,
                          lambda: slots)


def _fw(layer: Layer, views: MaskViews, stage: StageLayout, gated: bool,
        use_weight: bool, order: np.ndarray | None) -> np.ndarray | None:
    """FW over output-channel lanes: steps are the reduction columns k."""
    weight = views.masks.weight if use_weight else None
    if stage.tree:
        return _fw_tree(layer, views, stage, gated, weight, order)
    sets = fw_step_sets(layer, views, stage.unit, gated, weight)
    if gated and stage.compaction:  # packed slots run their segment's conditional steps
        packing = job_packing(views, stage.unit, layer.cout)
        cond = sets.allowed & ~sets.always
        lead = packing.segment_lead(cond.sum(axis=1, dtype=np.int64))
        live = chunk_sums(cond, stage.stage_steps)[lead]
        return _packed_columns(layer, stage, chunk_sums(sets.always, stage.stage_steps), live,
                               packing.slots, layer.k_per_group)
    active = _active_units(views, stage.unit, layer.cout, stage, order) if gated else None
    return _columns(layer.k_per_group, sets.always, sets.allowed & ~sets.always, active,
                    layer.output_pixels, stage)


def _fw_tree(layer: Layer, views: MaskViews, stage: StageLayout, gated: bool,
             weight: np.ndarray | None, order: np.ndarray | None) -> np.ndarray | None:
    """FW on adder trees: output f's steps are its path's groups, the base path's first (with
    a lane scheduler, each chunk's cycles of each path)."""
    if stage.scheduler is not None:
        return _fw_tree_scheduled(layer, views, stage, gated, weight, order)
    masks = views.masks
    steps = fw_tree_steps(layer, views, stage.tree, gated, weight)
    f, groups = steps.base_hits.shape
    gated_base = gated and masks.base is not None
    n_base = (-(-masks.base.per_f // stage.tree) if gated_base
              else np.zeros(f, dtype=np.int64))
    n_steps = int((n_base + groups).max())
    fixed = np.zeros((f, n_steps), dtype=bool)
    live = np.zeros((f, n_steps), dtype=bool)
    fixed[:, :groups] = steps.base_hits
    rows = np.repeat(np.arange(f), groups)
    cols = (n_base[:, None] + np.arange(groups)[None, :]).ravel()
    if gated:  # the conditional path's groups run where the output's gate bit is on
        live[rows, cols] = steps.cond_hits.ravel()
    else:      # without a gate the whole path is one, and always runs
        fixed[rows, cols] |= steps.cond_hits.ravel()
    active = _active_units(views, 1, f, stage, order) if gated else None
    return _columns(n_steps, fixed, live, active, layer.output_pixels, stage,
                    (lambda: unit_activity(views, 1, f).T) if gated else None)


def _fw_tree_scheduled(layer: Layer, views: MaskViews, stage: StageLayout, gated: bool,
                       weight: np.ndarray | None,
                       order: np.ndarray | None) -> np.ndarray | None:
    """FW on adder trees behind a lane scheduler: each output's cycles per chunk and path, the
    scheduler seeing one chunk of a path at a time."""
    stream = fw_tree_stream(layer, views, stage.tree, gated, weight)
    n_steps = stream.path.shape[1]
    if stage.stage_steps >= n_steps:
        return None
    sched = scheduled_steps(stage.scheduler, stream.bits, stream.size, stream.path)
    f = layer.cout
    if gated:
        fixed, live = sched.fixed, sched.live
        active = _active_units(views, 1, f, stage, order)
    else:  # without a gate the whole path always runs
        fixed, live, active = sched.fixed + sched.live, np.zeros_like(sched.live), None
    return _column_chunks(fixed, live, active, layer.output_pixels, stage,
                          (lambda: unit_activity(views, 1, f).T) if gated else None)


def _bd(layer: Layer, views: MaskViews, stage: StageLayout, gated: bool,
        use_weight: bool, order: np.ndarray | None) -> np.ndarray | None:
    """BD: steps are output channels f (or groups of them on adder trees); a column's step
    runs always where its base chunk feeds it, else where the pixel's gate is on."""
    masks = views.masks
    m = layer.output_pixels
    weight = masks.weight if use_weight else None
    n_rows = pass_rows(m, stage.rows, stage.pass_len)
    if stage.tree and stage.scheduler is not None:
        return _bd_tree_scheduled(layer, views, stage, gated, weight, n_rows, order)
    if stage.tree:
        plan = bd_tree_plan(layer, views, stage.tree, gated, weight)
        _, first = np.unique(plan.classes, return_index=True)
        allowed = plan.groups.allowed[:, first].T  # (C, G_t)
        always = plan.groups.always[:, first].T
        classes = plan.classes
        counts = (_active_units(views, stage.tree, layer.cout, stage, order) if gated
                  else None)
    else:
        grouped = bd_classes(layer, views, stage.unit, gated, weight)
        classes, first = grouped.classes, grouped.first
        if grouped.always is None:  # BD's classes without a gate go by step counts, not sets
            _, first, classes = np.unique(pack_bits(grouped.allowed), axis=0,
                                          return_index=True, return_inverse=True)
            classes = classes.reshape(-1)
        allowed = grouped.allowed[first]
        always = (grouped.always[first] if grouped.always is not None
                  else np.zeros_like(allowed))
        counts = None
        if gated and order is not None:
            counts = _active_units(views, 1, layer.cout, stage, order)
        elif gated:
            s = masks.gate_group_size
            counts = np.repeat(views.group_counts(stage.rows, stage.pass_len), s, axis=1)
    n_steps = allowed.shape[1]
    if stage.stage_steps >= n_steps:
        return None
    fixed = allowed & always if gated else allowed
    live = allowed & ~always if gated else np.zeros_like(allowed)
    if counts is None:
        counts = np.zeros((n_rows.shape[0], n_steps, stage.rows), dtype=np.int64)
    fixed_sums = chunk_sums(fixed, stage.stage_steps)
    classes = np.ascontiguousarray(classes, dtype=np.int64)
    static = staged_columns_rt(n_rows, fixed_sums, np.ascontiguousarray(live, dtype=np.uint8),
                               np.ascontiguousarray(counts, dtype=np.int64), classes,
                               stage.qcols, stage.stage_steps)
    if not stage.balances:
        return static
    activity = unit_activity(views, stage.tree or 1, layer.cout) if gated else None
    return np.minimum(static, compacted_columns_rt(stage.parts(m), fixed_sums, live, activity,
                                                   classes, stage.qcols, stage.stage_steps))


def _bd_tree_scheduled(layer: Layer, views: MaskViews, stage: StageLayout, gated: bool,
                       weight: np.ndarray | None, n_rows: np.ndarray,
                       order: np.ndarray | None) -> np.ndarray | None:
    """BD on adder trees behind a lane scheduler: each output's cycles per chunk of tree
    steps (per pixel with a gate, per column class without)."""
    if stage.stage_steps >= -(-layer.cout // stage.tree):
        return None
    if gated:
        return gated_tree_schedule(layer, views, stage.tree, weight, stage.scheduler,
                                   stage.rows, stage.pass_len, stage.qcols, order).staged
    stream = bd_tree_stream(layer, views, stage.tree, weight)
    n_steps = stream.size.shape[1]
    sched = scheduled_steps(stage.scheduler, stream.bits, stream.size, stream.path)
    live = np.zeros(stream.size.shape, dtype=np.uint8)
    counts = np.zeros((n_rows.shape[0], n_steps, stage.rows), dtype=np.int64)
    return staged_columns_rt(n_rows, sched.fixed, live, counts, stream.classes, stage.qcols,
                             stage.stage_steps)


def _wg(layer: Layer, views: MaskViews, stage: StageLayout, gated: bool,
        use_weight: bool, order: np.ndarray | None) -> np.ndarray | None:
    """WG's steps are pixels; a unit runs every one (on a base path, or without a gate) or
    the active ones; with lanes over output channels the activity is the unit column's,
    with lanes over k its row's (output channel's)."""
    masks = views.masks
    m, f, k = layer.output_pixels, layer.cout, layer.k_per_group
    if stage.stage_steps >= m:
        return None
    over_k = stage.wg_lanes == "output_channels"
    unit = stage.unit
    needed = needed_units(views, unit, use_weight, rows_over="k" if over_k else "f",
                          shape=(k, f)).needed
    if gated and masks.base is not None:
        on_base = (views.base_any_over_f(unit).T if over_k else views.base_any_over_k(unit).T)
    else:
        on_base = np.zeros(needed.shape, dtype=bool)
    fixed = needed & (on_base | (not gated))
    live = needed & ~on_base & gated
    packed = over_k and gated and stage.compaction  # packed slots run their packed pixels
    if order is not None:  # the row balancer's order of the rows (k, or f with lanes over k)
        fixed, live = fixed[order], live[order]
    lengths = _chunk_lengths(m, stage.stage_steps)
    fixed_rows = pass_row_sums(fixed.astype(np.int64), stage.rows, stage.pass_len)
    if over_k:
        live_rows = pass_row_sums(live.astype(np.int64), stage.rows, stage.pass_len)
        activity = (job_packing(views, unit, f).slots.T if packed
                    else unit_activity(views, unit, f) if gated else None)
        active = (chunk_sums(activity, stage.stage_steps) if activity is not None
                  else np.zeros((needed.shape[1], lengths.shape[0]), dtype=np.int64))
        static = staged_rows_jt(fixed_rows, live_rows, lengths, active, stage.qcols)
        if not stage.balances:
            return static
        return np.minimum(static, compacted_rows_jt(stage.parts(k), fixed, live, lengths,
                                                    active, stage.qcols))
    keys = np.concatenate([fixed.T, live.T], axis=1)
    _, first, classes = np.unique(keys, axis=0, return_index=True, return_inverse=True)
    if gated:
        gate = views.gate_bool  # (N, F/s, P): pixel m = n * P + p
        per_group = np.ascontiguousarray(gate.transpose(1, 0, 2)).reshape(gate.shape[1], -1)
        counts = np.repeat(chunk_sums(per_group, stage.stage_steps),
                           masks.gate_group_size, axis=0)
    else:
        counts = np.zeros((f, lengths.shape[0]), dtype=np.int64)
    if order is not None:
        counts = counts[order]
    static = staged_rows_rt(fixed_rows, np.ascontiguousarray(live[:, first], dtype=np.uint8),
                            counts, classes.reshape(-1).astype(np.int64), stage.rows,
                            stage.pass_len, lengths, stage.qcols)
    if not stage.balances:
        return static
    return np.minimum(static, compacted_rows_rt(stage.parts(f), fixed, live, lengths, counts,
                                                stage.qcols))
