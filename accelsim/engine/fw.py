"""Forward pass (FW) of a job: rows = pixels m, lanes = output channels f, steps = k.

Unit (i, j) (output row i, lanes [jU, (j+1)U)) runs its base-path steps always and its
conditional-path steps only if ANY lane's gate bit is 1: a lock-step unit is skipped only when
all its lanes are inactive. Weight skipping uses the unit's static weight index: step k runs
when any lane of the unit keeps a weight at k. Without compaction the unit runs base_j + cond_j
x any_j(i) steps, linear in the gate bits, so :class:`FwPlan` and the gate's per-pass counts
give the schedule's sums (:func:`fw_sums`); :func:`fw_work` builds the per-pixel matrix for
compaction (:mod:`accelsim.engine.compaction`), and tests require both paths to agree.

With ``pe_array.fw_lanes: reduction`` a PE's lanes are an adder tree over k computing one output
(:func:`fw_tree_steps`): units are single output channels, each path's k's are reduced
vector_width at a time, and the issued MACs are counted exactly (:func:`tree_macs_issued`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from accelsim.engine.compaction import active_groups, job_packing, packed_conditional_work
from accelsim.engine.lane_scheduler import LaneScheduler, scheduled_steps
from accelsim.engine.masks import unit_any, unit_lanes
from accelsim.engine.schedule import PassSums, PhaseWork, matrix_work, no_indices, pass_rows
from accelsim.engine.views import MaskViews
from accelsim.kernels import diagonal_sums
from accelsim.network import Layer


@dataclass(frozen=True, eq=False)
class FwStepSets:
    """Which reduction columns k each FW unit column runs: ``allowed`` (some lane keeps
    weight (f, k)) and, of those, ``always`` (on a lane's base path; every allowed k without
    a gate; none with a gate but no base path); the rest run where the unit is active. Bool
    (J, K) each."""

    allowed: np.ndarray
    always: np.ndarray


def fw_step_sets(layer: Layer, views: MaskViews, unit: int, gated: bool,
                 weight: np.ndarray | None) -> FwStepSets:
    """The :class:`FwStepSets` of a job (cached with what depends on the weight mask and base
    path)."""
    key = ("fw_sets", layer.cout, layer.k_per_group, unit, gated, weight is not None)
    return views.structure(key, lambda: _fw_step_sets_of(layer, views, unit, gated, weight))


def _fw_step_sets_of(layer: Layer, views: MaskViews, unit: int, gated: bool,
                     weight: np.ndarray | None) -> FwStepSets:
    masks = views.masks
    f, k = layer.cout, layer.k_per_group
    allowed = (views.weight_any(unit, 0) if weight is not None
               else np.ones((-(-f // unit), k), dtype=bool))
    if not gated:
        return FwStepSets(allowed, allowed)
    if masks.base is None:
        return FwStepSets(allowed, np.zeros_like(allowed))
    if weight is None:
        return FwStepSets(allowed, views.base_any_over_f(unit))
    return FwStepSets(allowed, unit_any(weight & masks.base.mask, unit, axis=0))


def _fw_steps(layer: Layer, views: MaskViews, unit: int, gated: bool,
              weight: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """FW steps per unit column: (base path steps, all steps), int64 (J,) each."""
    sets = fw_step_sets(layer, views, unit, gated, weight)
    return (sets.always.sum(axis=1, dtype=np.int64), sets.allowed.sum(axis=1, dtype=np.int64))


def scaled_steps(steps: np.ndarray, scale: tuple[int, int]) -> np.ndarray:
    """Steps on N:M multiplexers: ceil(steps x t' / t) for ``scale`` = (t', t)."""
    return -(-steps * scale[0] // scale[1])


@dataclass(frozen=True)
class TreeSteps:
    """FW of one output channel on a PE whose lanes are an adder tree over k (``fw_lanes:
    reduction``): steps (cycles) and MACs (the k's of the steps that run; a last, partial group
    of a path issues only its k's) of its base path and of its whole reduction, int64 (F,)."""

    base: np.ndarray
    full: np.ndarray
    base_macs: np.ndarray
    full_macs: np.ndarray
    base_hits: np.ndarray  # bool (F, groups): which groups of the base path have a kept weight
    cond_hits: np.ndarray  # bool (F, groups): which groups of the conditional path have one

    @property
    def indexed(self) -> np.ndarray:
        """int64 (F,): each output's steps with a kept weight, the weight index's entries (a
        lane scheduler runs them in fewer cycles)."""
        return self.base_hits.sum(axis=1) + self.cond_hits.sum(axis=1)


@dataclass(frozen=True, eq=False)
class TreeStream:
    """Each output's tree steps in the order the stage broadcasts them (its base path's
    groups, then its conditional path's): the kept weights on each step's lanes (``bits``,
    bool (F, S, tree)), the step's k's (``size``, int64 (F, S)) and its path (``path``, int8
    (F, S): 0 base, 1 conditional, -1 no step)."""

    bits: np.ndarray
    size: np.ndarray
    path: np.ndarray


def fw_tree_stream(layer: Layer, views: MaskViews, tree: int, gated: bool,
                   weight: np.ndarray | None) -> TreeStream:
    """The :class:`TreeStream` of a job (cached with what depends on the weight mask and base
    path)."""
    key = ("fw_tree_stream", layer.cout, layer.k_per_group, tree, gated, weight is not None)
    return views.structure(key, lambda: _fw_tree_stream_of(layer, views, tree, gated, weight))


def _on_base(layer: Layer, views: MaskViews, gated: bool) -> np.ndarray:
    """bool (F, K): the base path of each output (none without a gate or a base path)."""
    masks = views.masks
    if gated and masks.base is not None:
        return masks.base.mask
    return np.zeros((layer.cout, layer.k_per_group), dtype=bool)


def _fw_tree_stream_of(layer: Layer, views: MaskViews, tree: int, gated: bool,
                       weight: np.ndarray | None) -> TreeStream:
    f, k = layer.cout, layer.k_per_group
    on_base = _on_base(layer, views, gated)
    kept = np.ones((f, k), dtype=bool) if weight is None else weight
    n_base = -(-on_base.sum(axis=1) // tree)
    steps = int((n_base + -(-(~on_base).sum(axis=1) // tree)).max())
    bits = np.zeros((f, steps, tree), dtype=bool)
    size = np.zeros((f, steps), dtype=np.int64)
    path = np.full((f, steps), -1, dtype=np.int8)
    for which, members, first in ((0, on_base, np.zeros(f, dtype=np.int64)),
                                  (1, ~on_base, n_base)):
        position = np.cumsum(members, axis=1) - 1  # index of each k within its row's path
        rows, cols = np.nonzero(members)
        step = first[rows] + position[rows, cols] // tree
        bits[rows, step, position[rows, cols] % tree] = kept[rows, cols]
        np.add.at(size, (rows, step), 1)
        path[rows, step] = which
    return TreeStream(bits, size, path)


def fw_tree_steps(layer: Layer, views: MaskViews, tree: int, gated: bool,
                  weight: np.ndarray | None, scheduler: LaneScheduler | None = None
                  ) -> TreeSteps:
    """The :class:`TreeSteps` of a job: each path's k's, in order, are reduced ``tree`` at a
    time, and a step runs when one of its k's keeps a weight; with a ``scheduler``, each path's
    steps are its schedule's cycles (:mod:`accelsim.engine.lane_scheduler`). Cached with what
    depends on the weight mask and base path: the plan and the issued MACs of every step share
    it."""
    key = ("fw_tree", layer.cout, layer.k_per_group, tree, gated, weight is not None,
           scheduler)
    return views.structure(key, lambda: _fw_tree_steps_of(layer, views, tree, gated, weight,
                                                          scheduler))


def _fw_tree_steps_of(layer: Layer, views: MaskViews, tree: int, gated: bool,
                      weight: np.ndarray | None,
                      scheduler: LaneScheduler | None) -> TreeSteps:
    f, k = layer.cout, layer.k_per_group
    on_base = _on_base(layer, views, gated)
    kept = np.ones((f, k), dtype=bool) if weight is None else weight

    def path_steps(path: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        position = np.cumsum(path, axis=1) - 1  # index of each k within its row's path
        groups = -(-k // tree) + 1
        hit = np.zeros((f, groups), dtype=bool)
        rows, cols = np.nonzero(path & kept)
        hit[rows, position[rows, cols] // tree] = True
        size = np.zeros((f, groups), dtype=np.int64)
        rows, cols = np.nonzero(path)
        np.add.at(size, (rows, position[rows, cols] // tree), 1)
        return hit.sum(axis=1, dtype=np.int64), (hit * size).sum(axis=1), hit

    base, base_macs, base_hits = path_steps(on_base)
    cond, cond_macs, cond_hits = path_steps(~on_base)
    if scheduler is not None:
        stream = fw_tree_stream(layer, views, tree, gated, weight)
        sched = scheduled_steps(scheduler, stream.bits, stream.size, stream.path)
        base, cond = sched.fixed.sum(axis=1), sched.live.sum(axis=1)
        base_macs, cond_macs = sched.fixed_issued, sched.live_issued
    return TreeSteps(base, base + cond, base_macs, base_macs + cond_macs, base_hits, cond_hits)


def tree_macs_issued(layer: Layer, views: MaskViews, tree: int, gated: bool,
                     weight: np.ndarray | None, scheduler: LaneScheduler | None = None) -> int:
    """MACs a FW job issues on adder-tree lanes: every output's base-path MACs, and its
    conditional MACs where its gate bit is 1 (all of them without a gate)."""
    steps = fw_tree_steps(layer, views, tree, gated, weight, scheduler)
    m = layer.output_pixels
    if not gated:
        return int(steps.full_macs.sum()) * m
    active = views.channel_counts  # pixels where each output channel's gate bit is 1
    return int(steps.base_macs.sum()) * m + int(((steps.full_macs - steps.base_macs)
                                                 * active).sum())


def _tree_pair(layer: Layer, views: MaskViews, tree: int, gated: bool,
               weight: np.ndarray | None,
               scheduler: LaneScheduler | None) -> tuple[np.ndarray, np.ndarray]:
    steps = fw_tree_steps(layer, views, tree, gated, weight, scheduler)
    return steps.base, steps.full


def _weight_index(full: np.ndarray, layer: Layer, views: MaskViews, tree: int, gated: bool,
                  weight: np.ndarray, scheduler: LaneScheduler | None) -> np.ndarray:
    """int64 (units,): weight-index entries per unit column: its steps, or, behind a lane
    scheduler, its tree steps with a kept weight."""
    if scheduler is None:
        return full.copy()
    return fw_tree_steps(layer, views, tree, gated, weight, scheduler).indexed


def fw_work(layer: Layer, views: MaskViews, unit: int, *, use_gate: bool, use_weight: bool,
            compaction: bool, tree: int = 0,
            scheduler: LaneScheduler | None = None) -> PhaseWork:
    """Forward: rows = pixels, lanes = output channels, steps = k (see the module docstring).
    ``tree``: a PE's lanes reduce one output ``tree`` steps at a time (``unit`` is then 1 and
    nothing is packed)."""
    masks = views.masks
    m, f = layer.output_pixels, layer.cout
    gated = use_gate and masks.has_gate
    weight = masks.weight if use_weight else None
    base_steps, full = (_tree_pair(layer, views, tree, gated, weight, scheduler) if tree
                        else _fw_steps(layer, views, unit, gated, weight))
    compaction = compaction and not tree
    units = full.shape[0]
    unit_idx, row_idx, col_idx = no_indices(m, units)
    full32, base32 = full.astype(np.int32), base_steps.astype(np.int32)
    if not gated:
        work = np.broadcast_to(full32, (m, units)).copy()
    else:
        cond = full32 - base32
        gate = views.gate_views(unit)
        if compaction:
            unit_idx = active_groups(views, unit, f)
            work = np.broadcast_to(base32, (m, units)).copy()
            work += packed_conditional_work(job_packing(views, unit, f), cond)
        else:
            work = base32[None, :] + gate.unit_active * cond[None, :]
            unit_idx = gate.unit_active.view(np.uint8).astype(np.int32)
    if weight is not None:
        col_idx = _weight_index(full, layer, views, tree, gated, weight, scheduler)
    lanes = np.full(f, tree, dtype=np.int64) if tree else unit_lanes(f, unit)
    return matrix_work(work, unit_idx, row_idx, col_idx, lanes)


@dataclass(frozen=True, eq=False)
class FwPlan:
    """What FW's per-pass sums take from everything but the gate bits, planned once per layer,
    weight mask, base path and hardware (:func:`fw_plan`). Unit j of pass p runs ``fixed[p, j]``
    steps summed over the pass's rows, plus ``cond[j]`` at every row where any of its lanes is
    active."""

    unit: int               # output columns per lock-step unit
    rows: int               # queue rows (PE rows)
    pass_len: int           # output rows per pass
    fixed: np.ndarray       # int64 (passes, J, rows): steps that do not depend on the gate
    cond: np.ndarray        # int64 (J,): conditional steps of each unit
    classes: np.ndarray     # int64 (J,): class of each unit column (its own)
    lanes: np.ndarray       # int64 (J,): real lanes per unit column
    row_idx: np.ndarray     # int64 (passes,): decoder row indices (none in FW)
    col_idx: np.ndarray     # int64 (J,): decoder indices per unit column and pass (weights)

    def ungated(self) -> PassSums:
        """The sums without a gate."""
        return PassSums(self.fixed, self.classes, self.lanes, None, self.row_idx, self.col_idx)

    def gated(self, views: MaskViews) -> PassSums:
        """The sums with the gate of ``views``: fixed + cond x active pixels of each unit (the
        decoder's unit indices are the active units per pass). Keeps each unit's active pixels
        over all passes in the views for WG (:meth:`MaskViews.keep_unit_totals`)."""
        counts = views.unit_counts(self.unit, self.rows, self.pass_len)
        sums, active, totals = diagonal_sums(self.fixed, counts, self.cond)
        views.keep_unit_totals(self.unit, self.rows, self.pass_len, totals)
        return PassSums(sums, self.classes, self.lanes, active, self.row_idx, self.col_idx)


def fw_sums(layer: Layer, views: MaskViews, unit: int, rows: int, pass_len: int, *,
            use_gate: bool, use_weight: bool, scale: tuple[int, int] | None = None,
            tree: int = 0, scheduler: LaneScheduler | None = None) -> PassSums:
    """FW without compaction as per-pass sums (equal to scheduling :func:`fw_work`).
    ``scale`` = (t', t): every unit's steps become ceil(steps * t' / t) (N:M multiplexers);
    ``tree``: a PE's lanes reduce one output that many steps at a time (``scheduler``: a lane
    scheduler in front of them)."""
    masks = views.masks
    gated = use_gate and masks.has_gate
    weight = masks.weight if use_weight else None
    plan = fw_plan(layer, views, unit, rows, pass_len, gated, weight, scale, tree, scheduler)
    return plan.gated(views) if gated else plan.ungated()


def fw_plan(layer: Layer, views: MaskViews, unit: int, rows: int, pass_len: int,
            gated: bool, weight: np.ndarray | None, scale: tuple[int, int] | None,
            tree: int = 0, scheduler: LaneScheduler | None = None) -> FwPlan:
    """The :class:`FwPlan` of a job (cached with what depends on the weight mask and base
    path)."""
    key = ("fw_sums", layer.output_pixels, layer.cout, layer.k_per_group, unit, rows, pass_len,
           gated, weight is not None, scale, tree, scheduler)
    return views.structure(key, lambda: _fw_plan_of(
        layer, views, unit, rows, pass_len, gated, weight, scale, tree, scheduler))


def _fw_plan_of(layer: Layer, views: MaskViews, unit: int, rows: int, pass_len: int,
                gated: bool, weight: np.ndarray | None,
                scale: tuple[int, int] | None, tree: int,
                scheduler: LaneScheduler | None) -> FwPlan:
    m, f = layer.output_pixels, layer.cout
    base_steps, full = (_tree_pair(layer, views, tree, gated, weight, scheduler) if tree
                        else _fw_steps(layer, views, unit, gated, weight))
    if scale is not None:
        base_steps, full = scaled_steps(base_steps, scale), scaled_steps(full, scale)
    units = full.shape[0]
    per_row = pass_rows(m, rows, pass_len)[:, None, :]
    col_idx = (_weight_index(full, layer, views, tree, gated, weight, scheduler)
               if weight is not None else np.zeros(units, dtype=np.int64))
    fixed = per_row * (base_steps if gated else full)[None, :, None]
    lanes = np.full(f, tree, dtype=np.int64) if tree else unit_lanes(f, unit)
    return FwPlan(unit, rows, pass_len, fixed, full - base_steps,
                  np.arange(units, dtype=np.int64), lanes,
                  np.zeros(per_row.shape[0], dtype=np.int64), col_idx)
