"""Backward data (BD) of a job: rows = pixels m, lanes = input-gradient columns k, steps = f.

The reduction operand dY(m, f) is shared by all lanes, so step f is skipped when d(m, f) = 0 and
no lane of the unit has f on its base path, or when no lane keeps the weight (f, k). Unit
columns with equal (always, allowed) step sets form a class; class c runs
|always_c & allowed_c| + |active(i) & allowed_c & ~always_c| steps at pixel i, linear in the
gate bits (:class:`BdPlan`, :func:`bd_sums`); :func:`bd_work` builds the per-pixel matrix. The
decoder reads one index per active gate group of a pixel.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from accelsim.engine.lane_scheduler import LaneScheduler, scheduled_steps
from accelsim.engine.masks import pack_bits, unit_lanes
from accelsim.engine.schedule import PassSums, PhaseWork, no_indices, pass_rows
from accelsim.engine.views import MaskViews
from accelsim.kernels import coefficient_sums, masked_step_counts
from accelsim.kernels import gated_tree_schedule as gated_tree_schedule_kernel
from accelsim.network import Layer


@dataclass(frozen=True, eq=False)
class BdClasses:
    """BD's unit columns grouped by their step sets (:func:`bd_classes`). Without a gate the
    classes group columns by step count only (all the pass sums need)."""

    allowed: np.ndarray        # bool (J, F): some lane of the column keeps weight (f, k)
    classes: np.ndarray        # int64 (J,): class of each unit column
    first: np.ndarray          # int64 (C,): first unit column of each class
    always: np.ndarray | None  # bool (J, F): f's base chunk feeds a lane; None: not gated


def bd_classes(layer: Layer, views: MaskViews, unit: int, gated: bool,
               weight: np.ndarray | None) -> BdClasses:
    """BD unit columns grouped by (always, allowed) step sets. Cached: they depend on the
    weight mask and the base path only."""
    return views.structure(("bd_classes", layer.cout, layer.k_per_group, unit, gated,
                            weight is not None),
                           lambda: _bd_classes_of(layer, views, unit, gated, weight))


def _bd_classes_of(layer: Layer, views: MaskViews, unit: int, gated: bool,
                   weight: np.ndarray | None) -> BdClasses:
    masks = views.masks
    f = layer.cout
    units = unit_lanes(layer.k_per_group, unit).shape[0]
    allowed = (views.weight_any(unit, 1).T if weight is not None
               else np.ones((units, f), dtype=bool))
    if not gated:
        steps = allowed.sum(axis=1, dtype=np.int64)
        _, first, classes = np.unique(steps, return_index=True, return_inverse=True)
        return BdClasses(allowed, classes.reshape(-1).astype(np.int64), first, None)
    if masks.base is None:
        always = np.zeros((units, f), dtype=bool)
        if weight is None:
            return BdClasses(allowed, np.zeros(units, dtype=np.int64),
                             np.zeros(1, dtype=np.int64), always)
    else:
        always = views.base_any_over_k(unit)
        if weight is None and masks.base.groups < 63:
            # a unit's always-set is fixed by the input chunks it touches
            members = masks.base.members_over_k(unit)
            code = members.astype(np.int64) @ (np.int64(1) << np.arange(members.shape[1]))
            _, first, classes = np.unique(code, return_index=True, return_inverse=True)
            return BdClasses(allowed, classes.astype(np.int64), first, always)
    keys = np.concatenate([pack_bits(always), pack_bits(allowed)], axis=1)
    _, first, classes = np.unique(keys, axis=0, return_index=True, return_inverse=True)
    return BdClasses(allowed, classes.reshape(-1).astype(np.int64), first, always)


def bd_work(layer: Layer, views: MaskViews, unit: int, *, use_gate: bool,
            use_weight: bool) -> PhaseWork:
    """Backward data: rows = pixels, lanes = input-gradient columns k, steps = f."""
    masks = views.masks
    m, k = layer.output_pixels, layer.k_per_group
    gated = use_gate and masks.has_gate
    weight = masks.weight if use_weight else None
    lanes = unit_lanes(k, unit)
    unit_idx, row_idx, col_idx = no_indices(m, lanes.shape[0])
    grouped = bd_classes(layer, views, unit, gated, weight)
    allowed, classes, first, always = (grouped.allowed, grouped.classes, grouped.first,
                                       grouped.always)
    if always is None:
        steps = allowed[first].sum(axis=1, dtype=np.int32)
        counts = np.ascontiguousarray(np.broadcast_to(steps, (m, len(steps))))
    else:
        gate = views.gate_views(unit)
        counts = masked_step_counts(gate.packed, pack_bits(always[first]),
                                    pack_bits(allowed[first]))
        row_idx = gate.per_pixel // masks.gate_group_size  # one index per active gate group
    if weight is not None:
        col_idx = allowed.sum(axis=1, dtype=np.int64)
    return PhaseWork(counts, classes, unit_idx, row_idx, col_idx, lanes)


@dataclass(frozen=True, eq=False)
class BdPlan:
    """What BD's per-pass sums take from everything but the gate bits (:func:`bd_plan`). Class
    c runs ``fixed`` steps (|always_c & allowed_c| a row, summed per pass) plus, at pixel i,
    coef[c, q] steps for each active gate group of set q."""

    rows: int                      # queue rows (PE rows)
    pass_len: int                  # output rows per pass
    fixed: np.ndarray              # int64 (passes, C, rows): steps that do not need the gate
    coef: np.ndarray | None        # int64 (C, Q): steps per active group of each set; None:
                                   # not gated
    group_set: np.ndarray | None   # int64 (F/s,): the set of every gate group
    classes: np.ndarray            # int64 (J,): class of each unit column
    lanes: np.ndarray              # int64 (J,): real lanes per unit column
    row_idx: np.ndarray            # int64 (passes,): zero (no gate)
    col_idx: np.ndarray            # int64 (J,): decoder indices per unit column and pass

    def ungated(self) -> PassSums:
        """The sums without a gate."""
        return PassSums(self.fixed, self.classes, self.lanes, None, self.row_idx, self.col_idx)

    def gated(self, views: MaskViews) -> PassSums:
        """The sums with the gate of ``masks``: fixed + coef @ active gate groups of each set
        (the decoder's row indices are the active gate groups per pass)."""
        assert self.coef is not None and self.group_set is not None
        counts = views.group_counts(self.rows, self.pass_len, self.group_set,
                                    self.coef.shape[1])
        sums, active = coefficient_sums(self.fixed, counts, self.coef)
        return PassSums(sums, self.classes, self.lanes, None, active, self.col_idx)


def bd_sums(layer: Layer, views: MaskViews, unit: int, rows: int, pass_len: int, *,
            use_gate: bool, use_weight: bool) -> PassSums:
    """BD as per-pass sums (equal to scheduling :func:`bd_work`): class c runs
    |always_c & allowed_c| + |active(i) & allowed_c & ~always_c| steps at pixel i."""
    masks = views.masks
    gated = use_gate and masks.has_gate
    weight = masks.weight if use_weight else None
    plan = bd_plan(layer, views, unit, rows, pass_len, gated, weight)
    return plan.ungated() if plan.coef is None else plan.gated(views)


def bd_plan(layer: Layer, views: MaskViews, unit: int, rows: int, pass_len: int,
             gated: bool, weight: np.ndarray | None) -> BdPlan:
    """The :class:`BdPlan` of a job (cached with what depends on the weight mask and base
    path)."""
    masks = views.masks
    key = ("bd_sums", layer.output_pixels, layer.cout, layer.k_per_group,
           masks.gate_group_size, unit, rows, pass_len, gated, weight is not None)
    return views.structure(key, lambda: _bd_plan_of(
        layer, views, unit, rows, pass_len, gated, weight))


def _bd_plan_of(layer: Layer, views: MaskViews, unit: int, rows: int, pass_len: int,
                gated: bool, weight: np.ndarray | None) -> BdPlan:
    masks = views.masks
    m, f, k = layer.output_pixels, layer.cout, layer.k_per_group
    lanes = unit_lanes(k, unit)
    grouped = bd_classes(layer, views, unit, gated, weight)
    allowed, classes, first, always = (grouped.allowed, grouped.classes, grouped.first,
                                       grouped.always)
    per_row = pass_rows(m, rows, pass_len)[:, None, :]
    no_row_idx = np.zeros(per_row.shape[0], dtype=np.int64)
    col_idx = (allowed.sum(axis=1, dtype=np.int64) if weight is not None
               else np.zeros(lanes.shape[0], dtype=np.int64))
    if always is None:
        steps = allowed[first].sum(axis=1, dtype=np.int64)
        return BdPlan(rows, pass_len, per_row * steps[None, :, None], None, None, classes, lanes,
                      no_row_idx, col_idx)
    fixed = (always[first] & allowed[first]).sum(axis=1, dtype=np.int64)
    s = masks.gate_group_size
    coef = (allowed[first] & ~always[first]).reshape(len(first), f // s, s).sum(
        axis=2, dtype=np.int64)
    # Gate groups with the same coefficient in every class are counted together (a CDG
    # layer without weight masks has G such sets: its output chunks).
    _, group_first, group_set = np.unique(coef.T, axis=0, return_index=True,
                                          return_inverse=True)
    return BdPlan(rows, pass_len, per_row * fixed[None, :, None],
                  np.ascontiguousarray(coef[:, group_first]),
                  group_set.reshape(-1).astype(np.int64), classes, lanes, no_row_idx, col_idx)


@dataclass(frozen=True)
class BdTree:
    """BD on adder-tree lanes (``pe_array.bd_lanes: reduction``): one output dX(m, k) per PE,
    its lanes reducing ``tree`` consecutive output channels f a step. Per tree group g of f's and
    reduction column k: ``allowed[g, k]`` (a kept weight in the group) and ``always[g, k]`` (the
    group's base chunk feeds k), bool (G_t, K); ``size`` int64 (G_t,): f's per group."""

    allowed: np.ndarray
    always: np.ndarray
    size: np.ndarray


def bd_tree(layer: Layer, views: MaskViews, tree: int, gated: bool,
            weight: np.ndarray | None) -> BdTree:
    """The :class:`BdTree` of a job."""
    masks = views.masks
    f, k = layer.cout, layer.k_per_group
    groups = -(-f // tree)
    allowed = (views.weight_any(tree, 0) if weight is not None
               else np.ones((groups, k), dtype=bool))
    always = (views.base_any_over_f(tree) if gated and masks.base is not None
              else np.zeros((groups, k), dtype=bool))
    size = np.full(groups, tree, dtype=np.int64)
    size[-1] = f - (groups - 1) * tree
    return BdTree(allowed, always, size)


@dataclass(frozen=True)
class BdTreePlan:
    """What BD on adder-tree lanes takes from everything but the gate bits: the groups
    (:class:`BdTree`), the class of every column k (columns with equal group patterns) and per
    class the steps that always run (``fixed``, int64 (C,)) and the groups that run where live
    (``coef``, int64 (G_t, C))."""

    groups: BdTree
    classes: np.ndarray
    fixed: np.ndarray
    coef: np.ndarray
    allowed_steps: np.ndarray  # int64 (C,): steps of each class without a gate
    issued: np.ndarray | None = None  # int64 (C,): MACs of each class's steps (a scheduler's)


@dataclass(frozen=True, eq=False)
class BdTreeStream:
    """BD's columns k behind a lane scheduler (no gate): columns with equal kept weights form a
    class; per class, the kept weights on each tree step's lanes (``bits``, bool (C, G_t,
    tree)) and the step's f's (``size``, int64 (C, G_t))."""

    classes: np.ndarray  # int64 (K,)
    bits: np.ndarray
    size: np.ndarray

    @property
    def path(self) -> np.ndarray:
        """int8 (C, G_t): every step on the one (fixed) path."""
        return np.zeros(self.size.shape, dtype=np.int8)


def bd_tree_stream(layer: Layer, views: MaskViews, tree: int,
                   weight: np.ndarray | None) -> BdTreeStream:
    """The :class:`BdTreeStream` of an ungated job (cached with the weight mask)."""
    key = ("bd_tree_stream", layer.cout, layer.k_per_group, tree, weight is not None)
    return views.structure(key, lambda: _bd_tree_stream_of(layer, tree, weight))


def _bd_tree_stream_of(layer: Layer, tree: int, weight: np.ndarray | None) -> BdTreeStream:
    f, k = layer.cout, layer.k_per_group
    kept = np.ones((f, k), dtype=bool) if weight is None else weight
    _, first, classes = np.unique(pack_bits(kept.T), axis=0, return_index=True,
                                  return_inverse=True)
    groups = -(-f // tree)
    padded = np.zeros((groups * tree, first.shape[0]), dtype=bool)
    padded[:f] = kept[:, first]
    bits = np.ascontiguousarray(padded.T.reshape(first.shape[0], groups, tree))
    size = np.full(groups, tree, dtype=np.int64)
    size[-1] = f - (groups - 1) * tree
    return BdTreeStream(classes.reshape(-1).astype(np.int64), bits,
                        np.broadcast_to(size, (first.shape[0], groups)).copy())


@dataclass(frozen=True, eq=False)
class GatedTreeColumns:
    """BD's columns k behind a lane scheduler with a gate: columns with equal kept weights and
    base path form a class; per class and tree step g, the kept weights (``kept``) and the f's
    whose base chunk feeds the column (``base``), uint64 (C, G_t) each (lane l = bit l), and
    each step's f's (``size``, int64 (G_t,))."""

    classes: np.ndarray  # int64 (K,)
    kept: np.ndarray
    base: np.ndarray
    size: np.ndarray


def tree_words(bits: np.ndarray, tree: int) -> np.ndarray:
    """uint64 (X, ceil(F / tree)): bool (X, F) in words of ``tree`` <= 64 lanes (lane l of
    word g = bit l = column g x tree + l)."""
    rows, channels = bits.shape
    groups = -(-channels // tree)
    padded = np.zeros((rows, groups * tree), dtype=np.uint64)
    padded[:, :channels] = bits
    weights = np.left_shift(np.uint64(1), np.arange(tree, dtype=np.uint64))
    return np.ascontiguousarray((padded.reshape(rows, groups, tree) * weights).sum(
        axis=2, dtype=np.uint64))


def gated_tree_columns(layer: Layer, views: MaskViews, tree: int,
                       weight: np.ndarray | None) -> GatedTreeColumns:
    """The :class:`GatedTreeColumns` of a gated job (cached with the weight mask and base
    path)."""
    key = ("bd_gated_tree_columns", layer.cout, layer.k_per_group, tree, weight is not None)
    return views.structure(key, lambda: _gated_tree_columns_of(layer, views, tree, weight))


def _gated_tree_columns_of(layer: Layer, views: MaskViews, tree: int,
                           weight: np.ndarray | None) -> GatedTreeColumns:
    f, k = layer.cout, layer.k_per_group
    kept = np.ones((f, k), dtype=bool) if weight is None else weight
    masks = views.masks
    base = masks.base.mask if masks.base is not None else np.zeros((f, k), dtype=bool)
    keys = np.concatenate([pack_bits(kept.T), pack_bits(base.T)], axis=1)
    _, first, classes = np.unique(keys, axis=0, return_index=True, return_inverse=True)
    groups = -(-f // tree)
    size = np.full(groups, tree, dtype=np.int64)
    size[-1] = f - (groups - 1) * tree
    return GatedTreeColumns(classes.reshape(-1).astype(np.int64),
                            tree_words(kept.T[first], tree), tree_words(base.T[first], tree),
                            size)


def gate_words(views: MaskViews, tree: int) -> np.ndarray:
    """uint64 (M, ceil(F / tree)): the gate bits of every tree step's output channels at pixel
    m = n * P + p (kept with the job's views)."""
    def pack() -> np.ndarray:
        gate = views.gate_bool  # (N, F/s, P)
        s = views.masks.gate_group_size
        per_f = np.repeat(gate, s, axis=1) if s > 1 else gate
        n, f, pixels = per_f.shape
        return tree_words(per_f.transpose(0, 2, 1).reshape(n * pixels, f), tree)
    return views.per_job(("gate_words", tree), pack)


def bd_tree_plan(layer: Layer, views: MaskViews, tree: int, gated: bool,
                 weight: np.ndarray | None,
                 scheduler: LaneScheduler | None = None) -> BdTreePlan:
    """The :class:`BdTreePlan` of a job (cached with what depends on the weight mask and base
    path); with a lane ``scheduler`` (ungated jobs: gated ones are scheduled per pixel by
    :func:`bd_tree_work`), each class's steps are its schedule's cycles."""
    key = ("bd_tree", layer.cout, layer.k_per_group, tree, gated, weight is not None,
           scheduler)
    return views.structure(key, lambda: _bd_tree_plan_of(layer, views, tree, gated, weight,
                                                         scheduler))


def _bd_tree_plan_of(layer: Layer, views: MaskViews, tree: int, gated: bool,
                     weight: np.ndarray | None,
                     scheduler: LaneScheduler | None) -> BdTreePlan:
    groups = bd_tree(layer, views, tree, gated, weight)
    if scheduler is not None:
        assert not gated, "the lane scheduler is not modelled with BD's gates"
        stream = bd_tree_stream(layer, views, tree, weight)
        sched = scheduled_steps(scheduler, stream.bits, stream.size, stream.path)
        c = stream.bits.shape[0]
        return BdTreePlan(groups, stream.classes, np.zeros(c, dtype=np.int64),
                          np.zeros((groups.size.shape[0], c), dtype=np.int64),
                          sched.fixed.sum(axis=1), sched.fixed_issued)
    keys = np.concatenate([pack_bits(groups.allowed.T), pack_bits(groups.always.T)], axis=1)
    _, first, classes = np.unique(keys, axis=0, return_index=True, return_inverse=True)
    allowed, always = groups.allowed[:, first], groups.always[:, first]  # (G_t, C)
    return BdTreePlan(groups, classes.reshape(-1).astype(np.int64),
                      (allowed & always).sum(axis=0, dtype=np.int64),
                      (allowed & ~always).astype(np.int64),
                      allowed.sum(axis=0, dtype=np.int64))


def bd_tree_work(layer: Layer, views: MaskViews, tree: int, *, use_gate: bool,
                 use_weight: bool, scheduler: LaneScheduler | None = None,
                 queues: tuple[int, int, int] = (1, 1, 1)) -> tuple[PhaseWork, int]:
    """BD on adder-tree lanes: rows = pixels, one output column k per unit; a tree step over
    ``tree`` output channels runs when one of its weights is kept and its base chunk feeds k or
    one of its f's gate bits is 1 at the pixel. Returns the work (per class of columns with
    equal steps) and the MACs issued (a running step issues one MAC per f of its group). The
    decoder reads one index per active tree group of each pixel row. ``queues``: (PE rows,
    output rows per pass, queue columns), which a gated job behind a ``scheduler`` schedules
    its passes on in the same sweep."""
    masks = views.masks
    m, k = layer.output_pixels, layer.k_per_group
    gated = use_gate and masks.has_gate
    weight = masks.weight if use_weight else None
    if gated and scheduler is not None:
        return _bd_tree_scheduled_work(layer, views, tree, weight, scheduler, *queues)
    plan = bd_tree_plan(layer, views, tree, gated, weight, scheduler)
    groups = plan.groups
    unit_idx, row_idx, col_idx = no_indices(m, k)
    if gated:
        active = views.gate_views(tree).unit_active  # (M, G_t): any f of the group is on
        counts = plan.fixed[None, :] + active.astype(np.int64) @ plan.coef
        row_idx = active.sum(axis=1, dtype=np.int64)
        per_group = active.sum(axis=0, dtype=np.int64)
    else:
        counts = np.broadcast_to(plan.allowed_steps, (m, plan.allowed_steps.shape[0]))
        per_group = np.zeros(groups.size.shape[0], dtype=np.int64)
    if weight is not None:
        col_idx = groups.allowed.sum(axis=0, dtype=np.int64)
    kept_always = (groups.allowed & (groups.always | (not gated))).astype(np.int64)
    macs = (int(groups.size @ kept_always.sum(axis=1)) * m if plan.issued is None
            else int(plan.issued[plan.classes].sum()) * m)
    if gated:
        macs += int((groups.size * per_group) @ (groups.allowed & ~groups.always).sum(axis=1))
    work = PhaseWork(np.ascontiguousarray(counts, dtype=np.int32), plan.classes, unit_idx,
                     row_idx, col_idx, np.full(k, tree, dtype=np.int64))
    return work, macs


@dataclass(frozen=True, eq=False)
class GatedTreeSchedule:
    """Gated BD on scheduled adder trees, every output scheduled once
    (:func:`accelsim.kernels.gated_tree_schedule`): cycles per (pixel, column class), int32
    (M, C); MACs issued; each pass's cycles under the operand stage, int64 (passes, tiles)."""

    classes: np.ndarray
    cycles: np.ndarray
    macs: int
    staged: np.ndarray


def gated_tree_schedule(layer: Layer, views: MaskViews, tree: int, weight: np.ndarray | None,
                        scheduler: LaneScheduler, rows: int, pass_len: int, qcols: int,
                        order: np.ndarray | None = None) -> GatedTreeSchedule:
    """The :class:`GatedTreeSchedule` of a gated job on ``rows`` PE rows, passes of
    ``pass_len`` output rows and ``qcols`` queue columns (``order``: the row balancer's order
    of the pixels, or None), kept with the job's views."""
    def make() -> GatedTreeSchedule:
        columns = gated_tree_columns(layer, views, tree, weight)
        dts, _, slots = scheduler.arrays(tree)
        full, bits, near = scheduler.word_tables(tree)
        positions = (np.arange(layer.output_pixels, dtype=np.int64) if order is None
                     else np.ascontiguousarray(order, dtype=np.int64))
        cycles, issued, staged = gated_tree_schedule_kernel(
            gate_words(views, tree), columns.kept, columns.base, columns.classes, positions,
            rows, pass_len, qcols, full, columns.size, scheduler.window, scheduler.lookahead,
            dts, bits, near, slots)
        return GatedTreeSchedule(columns.classes, cycles, int(issued[columns.classes].sum()),
                                 staged)
    key = ("gated_tree_schedule", tree, weight is not None, scheduler, rows, pass_len, qcols,
           None if order is None else order.tobytes())
    return views.per_job(key, make)


def _bd_tree_scheduled_work(layer: Layer, views: MaskViews, tree: int,
                            weight: np.ndarray | None, scheduler: LaneScheduler, rows: int,
                            pass_len: int, qcols: int) -> tuple[PhaseWork, int]:
    """Gated BD on adder trees behind a lane scheduler: every output's effectual dY values
    (kept weight, and base path or gate on) scheduled per pixel (:func:`gated_tree_schedule`)."""
    m, k = layer.output_pixels, layer.k_per_group
    schedule = gated_tree_schedule(layer, views, tree, weight, scheduler, rows, pass_len, qcols)
    unit_idx, _, col_idx = no_indices(m, k)
    row_idx = views.gate_views(tree).unit_active.sum(axis=1, dtype=np.int64)
    if weight is not None:
        col_idx = bd_tree(layer, views, tree, True, weight).allowed.sum(axis=0, dtype=np.int64)
    work = PhaseWork(schedule.cycles, schedule.classes, unit_idx, row_idx, col_idx,
                     np.full(k, tree, dtype=np.int64))
    return work, schedule.macs
