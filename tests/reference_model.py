"""A slow, readable reference of the sparse tensor-dataflow model, stepped cycle by cycle.

It derives every unit's reduction steps from the rules of ``accelsim/engine/fw.py``, ``bd.py``,
``wg.py`` and ``compaction.py``
lane by lane and step by step (sets, not bit tricks), then runs the queues one cycle at a time.
The numba kernels must agree with it exactly (tests/test_sparse_reference.py). Small shapes only.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class RefArray:
    rows: int
    cols: int
    vector_width: int
    unit: int               # lanes per lock-step unit
    sync_tiles: int
    compaction: bool
    indices_per_cycle: int
    pipeline_latency: int
    wg_lanes: str = "output_channels"
    fw_lanes: str = "output_channels"
    bd_lanes: str = "output_channels"
    stage_steps: int = 0    # reduction steps the operand stage holds (0: the whole pass)
    balance_rows: bool = False  # the row balancer assigns each pass's rows to queue rows
    lookahead: int = 0      # a lane scheduler's lookahead in front of adder trees (0: none)
    lookaside: int = 0      # its lookaside positions


@dataclass
class RefUnit:
    row: int
    col: int
    steps: int
    lanes: int
    decoder_indices: int = 0
    macs: int | None = None  # MACs issued when not steps x lanes (a tree's partial groups)
    at: tuple[int, ...] = ()  # the steps it runs, in the order they are broadcast


def _lanes(col: int, unit: int, length: int) -> range:
    return range(col * unit, min((col + 1) * unit, length))


def fw_units(gate, base, weight, unit, compaction, gating_groups):
    """FW units: rows = pixels m, lanes = output channels f, steps = k."""
    f_count, k_count = weight.shape
    m_count = gate.shape[0] if gate is not None else 0
    units_per_row = math.ceil(f_count / unit)
    base_steps, all_steps, base_sets, all_sets = [], [], [], []
    for j in range(units_per_row):
        on_base, any_kept = set(), set()
        for f in _lanes(j, unit, f_count):
            for k in range(k_count):
                if weight[f, k]:
                    any_kept.add(k)
                    if base is not None and base[f, k]:
                        on_base.add(k)
        base_steps.append(len(on_base) if gate is not None else len(any_kept))
        all_steps.append(len(any_kept))
        base_sets.append(on_base if gate is not None else any_kept)
        all_sets.append(any_kept)
    return base_steps, all_steps, units_per_row, m_count, base_sets, all_sets


def segments(f_count, unit, base, gating_groups):
    """Compaction's segments of unit columns: a CDG output chunk when ``unit`` divides it,
    the whole row without a base path, else single units (nothing packed);
    [(first column, end)]."""
    units_per_row = math.ceil(f_count / unit)
    chunk = f_count // gating_groups
    per_segment = (units_per_row if base is None
                   else chunk // unit if chunk % unit == 0 else 1)
    return [(start, min(start + per_segment, units_per_row))
            for start in range(0, units_per_row, per_segment)]


def packed_at(gate, m, f_count, unit, base, gating_groups):
    """{unit column: whether compaction packs active lanes of pixel m into it}: the first
    ceil(active lanes / unit) slots of each segment."""
    packed_slots = {}
    for start, stop in segments(f_count, unit, base, gating_groups):
        active_lanes = sum(int(gate[m, f]) for f in range(start * unit,
                                                           min(stop * unit, f_count)))
        for j in range(start, stop):
            packed_slots[j] = (j - start) < math.ceil(active_lanes / unit)
    return packed_slots


def fw_reference(layer, gate, base, weight, arr, gating_groups, group_size=1):
    f_count, k_count = layer.cout, layer.k_per_group
    m_count = layer.output_pixels
    kept = weight if weight is not None else np.ones((f_count, k_count), dtype=bool)
    base_steps, all_steps, units_per_row, _, base_sets, all_sets = fw_units(
        gate, base, kept, arr.unit, arr.compaction, gating_groups)
    units: list[RefUnit] = []
    col_idx = [all_steps[j] if weight is not None else 0 for j in range(units_per_row)]
    if gate is not None and arr.compaction:
        lead = {}  # the segment's column with the most conditional steps (first on ties)
        for start, stop in segments(f_count, arr.unit, base, gating_groups):
            cond = [all_steps[j] - base_steps[j] for j in range(start, stop)]
            for j in range(start, stop):
                lead[j] = start + cond.index(max(cond))
    for m in range(m_count):
        if gate is not None and arr.compaction:
            packed_slots = packed_at(gate, m, f_count, arr.unit, base, gating_groups)
        for j in range(units_per_row):
            lanes = list(_lanes(j, arr.unit, f_count))
            at: set[int] = set()
            if gate is None:
                steps, idx, at = all_steps[j], 0, all_sets[j]
            elif arr.compaction:  # a packed slot runs its base path and the lead's conditional
                cond_at = sorted(all_sets[lead[j]] - base_sets[lead[j]]) if packed_slots[j] else []
                at = sorted(base_sets[j]) + cond_at  # a multiset: the two may share steps
                steps = len(at)
                idx = len({f // group_size for f in lanes if gate[m, f]})
            else:
                active = any(gate[m, f] for f in lanes)
                steps = base_steps[j] + (all_steps[j] - base_steps[j] if active else 0)
                idx = int(active)
                at = all_sets[j] if active else base_sets[j]
            units.append(RefUnit(m, j, steps, len(lanes), idx, at=tuple(sorted(at))))
    return units, [0] * m_count, col_idx, units_per_row


def fw_nm_reference(layer, gate, base, arr, gating_groups, nm, group_size=1):
    """Gated FW on N:M multiplexers: the reduction shrinks from t to t' = (t // M) * N +
    min(t % M, N) positions, and a unit runs the first ceil(steps x t' / t) of them, steps
    being its FW steps by the gate rule (with compaction its packed slot's). The decoder reads
    ceil(t / M) metadata indices per unit column and pass, and one per active unit (with
    compaction one per active gate group its lanes touch)."""
    n, m_ = nm
    k_count = layer.k_per_group
    shrunk = (k_count // m_) * n + min(k_count % m_, n)
    units, _, _, per_row = fw_reference(layer, gate, base, None, arr, gating_groups,
                                        group_size)
    scaled = []
    for u in units:
        steps = math.ceil(u.steps * shrunk / k_count)
        scaled.append(dataclasses.replace(u, steps=steps, at=tuple(range(steps))))
    return scaled, [0] * layer.output_pixels, [math.ceil(k_count / m_)] * per_row, per_row


def bd_reference(layer, gate, base, weight, arr, group_size=1):
    f_count, k_count = layer.cout, layer.k_per_group
    m_count = layer.output_pixels
    units_per_row = math.ceil(k_count / arr.unit)
    units: list[RefUnit] = []
    for m in range(m_count):
        for j in range(units_per_row):
            lanes = list(_lanes(j, arr.unit, k_count))
            at = []
            for f in range(f_count):
                allowed = weight is None or any(weight[f, k] for k in lanes)
                always = base is not None and any(base[f, k] for k in lanes)
                active = gate is None or bool(gate[m, f])
                if allowed and (active or always):
                    at.append(f)
            units.append(RefUnit(m, j, len(at), len(lanes), at=tuple(at)))
    # The decoder reads one index per active gate group (s channels) of each pixel row.
    row_idx = [int(gate[m].sum()) // group_size if gate is not None else 0
               for m in range(m_count)]
    col_idx = []
    for j in range(units_per_row):
        lanes = list(_lanes(j, arr.unit, k_count))
        col_idx.append(sum(1 for f in range(f_count) if any(weight[f, k] for k in lanes))
                       if weight is not None else 0)
    return units, row_idx, col_idx, units_per_row


def wg_reference(layer, gate, base, weight, arr, gating_groups=1, group_size=1):
    """WG over output-channel lanes. With compaction and a gate each pixel's active lanes
    are packed into slots as in FW: off its base path slot (k, j) runs the pixels where it
    is packed, where unit j keeps a weight in row k, and the decoder reads
    the pixel list of every active gate group its lanes touch."""
    f_count, k_count = layer.cout, layer.k_per_group
    m_count = layer.output_pixels
    units_per_row = math.ceil(f_count / arr.unit)
    packing = gate is not None and arr.compaction
    active_pixels, active_sets = [], []
    if packing:
        packed = [packed_at(gate, m, f_count, arr.unit, base, gating_groups)
                  for m in range(m_count)]
    for j in range(units_per_row):
        lanes = list(_lanes(j, arr.unit, f_count))
        if packing:
            pixels = tuple(m for m in range(m_count) if packed[m][j])
            active_pixels.append(sum(len({f // group_size for f in lanes if gate[m, f]})
                                     for m in range(m_count)))
        else:
            pixels = tuple(m for m in range(m_count)
                           if gate is None or any(gate[m, f] for f in lanes))
            active_pixels.append(len(pixels))
        active_sets.append(pixels)
    units: list[RefUnit] = []
    for k in range(k_count):
        for j in range(units_per_row):
            lanes = list(_lanes(j, arr.unit, f_count))
            needed = weight is None or any(weight[f, k] for f in lanes)
            on_base = gate is not None and base is not None and any(base[f, k] for f in lanes)
            if not needed:
                at: tuple[int, ...] = ()
            elif gate is None or on_base:
                at = tuple(range(m_count))
            else:
                at = active_sets[j]
            idx = int(needed) if weight is not None else 0
            units.append(RefUnit(k, j, len(at), len(lanes), idx, at=at))
    col_idx = active_pixels if gate is not None else [0] * units_per_row
    return units, [0] * k_count, col_idx, units_per_row


def scheduler_candidates(lookahead: int, lookaside: int) -> list[tuple[int, int]]:
    """A TensorDash-style scheduler's candidates (step offset, lane offset), nearest step
    first: its own lane 1..H steps ahead, and lanes +1, -1, +2, -2, +3, ... aside, the step
    offset cycling 1, 2, ..., H, 1, ... with each pair."""
    found = [(h, 0) for h in range(1, lookahead + 1)]
    for i in range(lookaside):
        d = i // 2 + 1
        found.append((i // 2 % lookahead + 1, d if i % 2 == 0 else -d))
    return sorted(found)


def scheduled_cycles(rows: list[list[bool]], sizes: list[int], lookahead: int,
                     lookaside: int) -> tuple[int, int]:
    """(cycles, MACs issued) of one stream of tree steps behind the scheduler, one cycle at a
    time: steps without an effectual lane are dropped (the index skips them); then each cycle
    the window's first step fills its empty slots, in rounds of lanes ``lookaside`` apart, each
    from the first effectual candidate inside the stream, and runs (issuing its lanes); a step
    the promotions emptied is passed over without a cycle, at most ``lookahead`` in a row."""
    kept = [(list(row), size) for row, size in zip(rows, sizes, strict=True) if any(row)]
    if not kept:
        return 0, 0
    lanes = len(kept[0][0])
    stride = max(lookaside, 1)
    order: list[int] = []
    for start in range(lanes):
        if start not in order:
            lane = start
            while lane < lanes and (lane == start or lane < lanes - stride + start):
                order.append(lane)
                lane += stride
    candidates = scheduler_candidates(lookahead, lookaside)
    window = [row for row, _ in kept]
    cycles = issued = passed = 0
    for t, (row, size) in enumerate(zip(window, (size for _, size in kept), strict=True)):
        if not any(row) and passed < lookahead:
            passed += 1
            continue
        passed = 0
        for lane in order:
            if row[lane]:
                continue
            for dt, dl in candidates:
                if t + dt < len(window) and window[t + dt][(lane + dl) % lanes]:
                    window[t + dt][(lane + dl) % lanes] = False
                    row[lane] = True
                    break
        cycles += 1
        issued += size
    return cycles, issued


def _scheduled_path(steps: list[list[bool]], sizes: list[int], first: int, arr: RefArray
                    ) -> tuple[int, int, list[int]]:
    """(cycles, MACs, positions: one entry per cycle, at its chunk's first position) of a path
    whose step i is broadcast at position ``first + i``, scheduled chunk by chunk of the stage
    (the whole path at once without a stage)."""
    stage = arr.stage_steps or len(steps) + first + 1
    cycles = macs = 0
    at: list[int] = []
    for start in range(0, first + len(steps), stage):
        inside = [i for i in range(len(steps)) if start <= first + i < start + stage]
        if not inside:
            continue
        c, m = scheduled_cycles([steps[i] for i in inside], [sizes[i] for i in inside],
                                arr.lookahead, arr.lookaside)
        cycles, macs = cycles + c, macs + m
        at += [first + inside[0]] * c
    return cycles, macs, at


def fw_tree_reference(layer, gate, base, weight, arr):
    """FW with one output (m, f) per PE whose vector_width lanes are an adder tree over k: each
    path's k's (the base path's, then the conditional path's, in order) are reduced
    vector_width at a time, and a tree step runs when one of its k's keeps a weight, issuing a
    MAC per k of the group; the conditional steps run where the gate bit (m, f) is 1. One
    decoder index per active output; with weights, each output column's tree steps are its
    weight index."""
    f_count = layer.cout
    m_count = layer.output_pixels
    tree = arr.vector_width
    paths = fw_tree_paths(layer, gate, base, weight, arr)
    units: list[RefUnit] = []
    for m in range(m_count):
        for f in range(f_count):
            (base_steps, base_macs, base_at, _), (cond_steps, cond_macs, cond_at, _) = paths[f]
            active = gate is None or bool(gate[m, f])
            steps = base_steps + (cond_steps if active else 0)
            macs = base_macs + (cond_macs if active else 0)
            idx = 0 if gate is None else int(active)
            units.append(RefUnit(m, f, steps, tree, idx, macs,
                                 at=tuple(base_at + (cond_at if active else []))))
    # the weight index: one entry per tree step with a kept weight (a scheduler runs fewer)
    plain = dataclasses.replace(arr, lookahead=0)
    col_idx = ([b[0] + c[0] for b, c in fw_tree_paths(layer, gate, base, weight, plain)]
               if weight is not None else [0] * f_count)
    return units, [0] * m_count, col_idx, f_count


def fw_tree_paths(layer, gate, base, weight, arr) -> list[tuple[tuple, tuple]]:
    """Per output channel f, (steps, MACs, positions, groups) of its base and conditional
    paths on adder trees (behind the scheduler where ``arr`` has one)."""
    f_count, k_count, tree = layer.cout, layer.k_per_group, arr.vector_width

    def tree_steps(f: int, on_path, first: int) -> tuple[int, int, list[int], int]:
        """(steps, MACs, positions of the running groups, groups) of one path whose first
        group is broadcast at position ``first``."""
        ks = [k for k in range(k_count) if on_path(k)]
        groups = [ks[i:i + tree] for i in range(0, len(ks), tree)]
        if arr.lookahead:
            rows = [[weight is None or bool(weight[f, k]) for k in g] + [False] * (tree - len(g))
                    for g in groups]
            cycles, macs, at = _scheduled_path(rows, [len(g) for g in groups], first, arr)
            return cycles, macs, at, len(groups)
        running = [i for i, g in enumerate(groups)
                   if weight is None or any(weight[f, k] for k in g)]
        return (len(running), sum(len(groups[i]) for i in running),
                [first + i for i in running], len(groups))

    paths = []
    for f in range(f_count):
        if gate is None or base is None:
            on_base = (0, 0, [], 0)
        else:
            on_base = tree_steps(f, lambda k, f=f: bool(base[f, k]), 0)
        cond = tree_steps(f, lambda k, f=f: base is None or gate is None or not base[f, k],
                          on_base[3])
        paths.append((on_base, cond))
    return paths


def bd_tree_reference(layer, gate, base, weight, arr):
    """BD with one output dX(m, k) per PE whose vector_width lanes are an adder tree over
    groups of vector_width consecutive output channels f: a group's step runs when one of its
    weights (f, k) is kept and one of its f's has k on its base path or its gate bit at m on,
    issuing one MAC per f of the group. One decoder index per active group of each pixel row;
    with weights, each column's kept groups are its weight index."""
    f_count, k_count, tree = layer.cout, layer.k_per_group, arr.vector_width
    m_count = layer.output_pixels
    groups = [list(range(g, min(g + tree, f_count))) for g in range(0, f_count, tree)]
    units: list[RefUnit] = []
    row_idx = []
    if arr.lookahead:  # a lane scheduler: each output's effectual dY values, pixel by pixel
        for m in range(m_count):
            row_idx.append(0 if gate is None else
                           sum(1 for g in groups if any(gate[m, f] for f in g)))
            for k in range(k_count):
                rows = [[(weight is None or bool(weight[f, k]))
                         and (gate is None or bool(gate[m, f])
                              or (base is not None and bool(base[f, k])))
                         for f in g] + [False] * (tree - len(g)) for g in groups]
                cycles, macs, at = _scheduled_path(rows, [len(g) for g in groups], 0, arr)
                units.append(RefUnit(m, k, cycles, tree, 0, macs, at=tuple(at)))
        col_idx = ([sum(1 for g in groups if any(weight[f, k] for f in g))
                    for k in range(k_count)] if weight is not None else [0] * k_count)
        return units, row_idx, col_idx, k_count
    for m in range(m_count):
        row_idx.append(0 if gate is None else
                       sum(1 for g in groups if any(gate[m, f] for f in g)))
        for k in range(k_count):
            macs, at = 0, []
            for index, g in enumerate(groups):
                allowed = weight is None or any(weight[f, k] for f in g)
                always = base is not None and gate is not None and any(base[f, k] for f in g)
                active = gate is None or any(gate[m, f] for f in g)
                if allowed and (always or active):
                    at.append(index)
                    macs += len(g)
            units.append(RefUnit(m, k, len(at), tree, 0, macs, at=tuple(at)))
    col_idx = ([sum(1 for g in groups if any(weight[f, k] for f in g)) for k in range(k_count)]
               if weight is not None else [0] * k_count)
    return units, row_idx, col_idx, k_count


def wg_transposed_reference(layer, gate, base, weight, arr):
    """WG as dW^T = dY^T X: rows = output channels f, lanes = reduction columns k, steps =
    pixels; dY(m, f) is broadcast to the lanes, so a unit runs pixel m when f's gate bit is 1 or
    one of its lanes is on f's base path, and nothing when all its lanes' weights are pruned."""
    f_count, k_count = layer.cout, layer.k_per_group
    m_count = layer.output_pixels
    units_per_row = math.ceil(k_count / arr.unit)
    units: list[RefUnit] = []
    row_idx = []
    for f in range(f_count):
        pixels = tuple(m for m in range(m_count) if gate is None or gate[m, f])
        row_idx.append(len(pixels) if gate is not None else 0)
        for j in range(units_per_row):
            lanes = list(_lanes(j, arr.unit, k_count))
            needed = weight is None or any(weight[f, k] for k in lanes)
            on_base = base is not None and any(base[f, k] for k in lanes)
            at = (() if not needed else
                  tuple(range(m_count)) if on_base or gate is None else pixels)
            units.append(RefUnit(f, j, len(at), len(lanes), int(needed) if weight is not None
                                 else 0, at=at))
    return units, row_idx, [0] * units_per_row, units_per_row


def run_cycles(units: list[RefUnit], row_idx: list[int], col_idx: list[int], n_rows: int,
               units_per_row: int, arr: RefArray) -> tuple[int, int, int]:
    """Step the queues one cycle at a time. Returns (cycles, decoder stall cycles, indices)."""
    qcols = max(1, arr.cols * arr.vector_width // arr.unit)
    by_pos = {(u.row, u.col): u for u in units}
    queue_of = balanced_rows(by_pos, n_rows, units_per_row, arr) if arr.balance_rows else {
        i: i % arr.rows for i in range(n_rows)}
    pass_len = arr.rows * arr.sync_tiles
    moved = {i // pass_len for i in range(n_rows) if queue_of[i] != i % arr.rows}
    cycles = stall = indices_total = 0
    for tc in range(math.ceil(units_per_row / qcols)):
        cols = range(tc * qcols, min((tc + 1) * qcols, units_per_row))
        row_tiles = math.ceil(n_rows / arr.rows)
        for first in range(0, row_tiles, arr.sync_tiles):
            rows = range(first * arr.rows, min((first + arr.sync_tiles) * arr.rows, n_rows))
            queues: dict[tuple[int, int], list[int]] = {}
            staged: dict[tuple[int, int], list[tuple[int, ...]]] = {}
            decoder = sum(col_idx[j] for j in cols)
            for i in rows:
                decoder += row_idx[i] + int(i // pass_len in moved)  # the balancer's index
                for j in cols:
                    unit = by_pos[(i, j)]
                    queues.setdefault((queue_of[i], j - cols.start), []).append(unit.steps)
                    staged.setdefault((queue_of[i], j - cols.start), []).append(unit.at)
                    decoder += unit.decoder_indices
            indices_total += decoder
            compute = static_steps(queues)
            if arr.stage_steps:
                compute = stage_steps(staged, arr.stage_steps)
            if arr.compaction:
                compute = min(compute, compacted_steps(by_pos, rows, cols, arr))
            decode = -(-decoder // arr.indices_per_cycle) if decoder > 0 else 0
            pass_cycles = max(compute, decode)
            stall += pass_cycles - compute
            cycles += pass_cycles
    return cycles + arr.pipeline_latency, stall, indices_total


def balanced_rows(by_pos: dict, n_rows: int, units_per_row: int, arr: RefArray) -> dict:
    """{row: queue row} by the row balancer: in each pass the rows, most work first (summed
    over all unit columns; the lower row first on ties), each to the queue row with the least
    work so far (the lowest on ties) among those that still have room for as many rows as the
    static mapping gives them."""
    pass_len = arr.rows * arr.sync_tiles
    queue_of = {}
    for r0 in range(0, n_rows, pass_len):
        members = range(r0, min(r0 + pass_len, n_rows))
        room = {q: sum(1 for i in members if i % arr.rows == q) for q in range(arr.rows)}
        load = dict.fromkeys(range(arr.rows), 0)
        work = {i: sum(by_pos[(i, j)].steps for j in range(units_per_row)) for i in members}
        for i in sorted(members, key=lambda i: (-work[i], i)):
            q = min((q for q in room if room[q] > 0), key=lambda q: (load[q], q))
            queue_of[i] = q
            room[q] -= 1
            load[q] += work[i]
    return queue_of


def effective_macs_reference(layer, gate, base, weight, phase, dense_weight_gradient=False):
    """MACs by definition: every (m, f, k) with a kept weight whose gate (or base path) allows."""
    total = 0
    if phase == "wg" and dense_weight_gradient:
        weight = None
    for m in range(layer.output_pixels):
        for f in range(layer.cout):
            for k in range(layer.k_per_group):
                if weight is not None and not weight[f, k]:
                    continue
                if gate is None or gate[m, f] or (base is not None and base[f, k]):
                    total += 1
    return total


def reference_job(layer, phase, gate, base, weight, arr, gating_groups=1, group_size=1):
    """(cycles, stall, indices, macs_issued) of one job by the slow definitions."""
    if phase == "fw" and arr.fw_lanes == "reduction":
        units, row_idx, col_idx, per_row = fw_tree_reference(layer, gate, base, weight, arr)
        n_rows = layer.output_pixels
        arr = dataclasses.replace(arr, unit=arr.vector_width)  # one output per PE: cols queues
    elif phase == "fw":
        units, row_idx, col_idx, per_row = fw_reference(layer, gate, base, weight, arr,
                                                        gating_groups, group_size)
        n_rows = layer.output_pixels
    elif phase == "bd" and arr.bd_lanes == "reduction":
        units, row_idx, col_idx, per_row = bd_tree_reference(layer, gate, base, weight, arr)
        n_rows = layer.output_pixels
        arr = dataclasses.replace(arr, unit=arr.vector_width)  # one output per PE: cols queues
    elif phase == "bd":
        units, row_idx, col_idx, per_row = bd_reference(layer, gate, base, weight, arr,
                                                        group_size)
        n_rows = layer.output_pixels
    elif arr.wg_lanes == "input_channels":
        units, row_idx, col_idx, per_row = wg_transposed_reference(layer, gate, base, weight,
                                                                   arr)
        n_rows = layer.cout
    else:
        units, row_idx, col_idx, per_row = wg_reference(layer, gate, base, weight, arr,
                                                        gating_groups, group_size)
        n_rows = layer.k_per_group
    cycles, stall, indices = run_cycles(units, row_idx, col_idx, n_rows, per_row, arr)
    issued = sum(u.steps * u.lanes if u.macs is None else u.macs for u in units)
    return cycles, stall, indices, issued


def static_steps(queues: dict[tuple[int, int], list[int]]) -> int:
    """Cycles until every queue has worked through its own units, one step per cycle."""
    remaining = {key: list(q) for key, q in queues.items()}
    cycles = 0
    while any(sum(q) for q in remaining.values()):
        cycles += 1
        for q in remaining.values():
            while q and q[0] == 0:
                q.pop(0)
            if q:
                q[0] -= 1
    return cycles


def stage_steps(queues: dict[tuple[int, int], list[tuple[int, ...]]], stage: int) -> int:
    """Cycles of a pass whose operands are broadcast ``stage`` reduction steps at a time:
    inside a chunk every queue works one step of one of its units per cycle, over the steps
    of the chunk that its units run; the next chunk starts when every queue is done."""
    last = max((max(at) for q in queues.values() for at in q if at), default=-1)
    cycles = 0
    for start in range(0, last + 1, stage):
        chunk = range(start, start + stage)
        cycles += max(sum(1 for at in q for t in at if t in chunk) for q in queues.values())
    return cycles


def compacted_steps(by_pos: dict, rows: range, cols: range, arr: RefArray) -> int:
    """Compaction: the units of the pass's whole row tiles, then those of its partial last row
    tile; each cycle every queue the group occupies works one step of a different unit of the
    group, the units with the most steps left first (a unit is never on two queues at once).
    With an operand stage of D steps the dispatcher does so chunk by chunk: each unit's
    steps in the chunk, and the next chunk once every unit is done."""
    whole = rows.start + (len(rows) // arr.rows) * arr.rows
    cycles = 0
    for part, queue_rows in ((range(rows.start, whole), arr.rows),
                             (range(whole, rows.stop), rows.stop - whole)):
        units = [by_pos[(i, j)] for i in part for j in cols]
        if arr.stage_steps:
            last = max((max(u.at) for u in units if u.at), default=-1)
            chunks = [range(start, start + arr.stage_steps)
                      for start in range(0, last + 1, arr.stage_steps)]
            works = [[sum(1 for t in u.at if t in chunk) for u in units] for chunk in chunks]
        else:
            works = [[u.steps for u in units]]
        for left in works:
            cycles += longest_first(left, queue_rows * len(cols))
    return cycles


def longest_first(left: list[int], queues: int) -> int:
    """Cycles until ``queues`` queues have worked off units of ``left`` steps, each cycle one
    step of each of the units with most steps left."""
    left = list(left)
    cycles = 0
    while any(left):
        cycles += 1
        for u in sorted(range(len(left)), key=lambda u: -left[u])[:queues]:
            if left[u]:
                left[u] -= 1
    return cycles


def dgc_weights(layer, select, weight):
    """bool (N, F, K): each sample's weights under DGC's input selection: W_n(f, k) = W(f, k)
    and select[n, head of f, input channel of k]."""
    n_count, heads, cin = select.shape
    f_count, k_count = layer.cout, layer.k_per_group
    kept = weight if weight is not None else np.ones((f_count, k_count), dtype=bool)
    per_sample = np.zeros((n_count, f_count, k_count), dtype=bool)
    for n in range(n_count):
        for f in range(f_count):
            head = f // (f_count // heads)
            for k in range(k_count):
                per_sample[n, f, k] = kept[f, k] and select[n, head, k // (k_count // cin)]
    return per_sample


def dgc_reference(layer, phase, select, weight, arr):
    """DGC by the definitions: FW and BD are weight-pruned with each row's sample's weights
    (their decoder reads a unit column's step list once per sample and pass), WG's unit (k, j)
    runs the pixels of the samples where one of its lanes keeps weight (f, k), one decoder
    index per such sample. Returns (units, row_idx, col_idx, units per row, rows)."""
    per_sample = dgc_weights(layer, select, weight)
    f_count, k_count = layer.cout, layer.k_per_group
    pixels = layer.h_out * layer.w_out
    m_count = layer.output_pixels
    pass_len = arr.rows * arr.sync_tiles
    units: list[RefUnit] = []
    if phase == "wg":
        per_row = math.ceil(f_count / arr.unit)
        for k in range(k_count):
            for j in range(per_row):
                lanes = list(_lanes(j, arr.unit, f_count))
                samples = [n for n in range(select.shape[0])
                           if any(per_sample[n, f, k] for f in lanes)]
                at = tuple(m for m in range(m_count) if m // pixels in samples)
                units.append(RefUnit(k, j, len(at), len(lanes), len(samples), at=at))
        return units, [0] * k_count, [0] * per_row, per_row, k_count
    lane_count = f_count if phase == "fw" else k_count
    per_row = math.ceil(lane_count / arr.unit)
    for m in range(m_count):
        n = m // pixels
        starts_list = m % pixels == 0 or m % pass_len == 0
        for j in range(per_row):
            lanes = list(_lanes(j, arr.unit, lane_count))
            if phase == "fw":
                at = tuple(k for k in range(k_count) if any(per_sample[n, f, k] for f in lanes))
            else:
                at = tuple(f for f in range(f_count) if any(per_sample[n, f, k] for k in lanes))
            units.append(RefUnit(m, j, len(at), len(lanes), len(at) if starts_list else 0,
                                 at=at))
    return units, [0] * m_count, [0] * per_row, per_row, m_count


def dgc_reference_job(layer, phase, select, weight, arr):
    """(cycles, stall, indices, macs_issued, effective MACs) of one DGC job."""
    units, row_idx, col_idx, per_row, n_rows = dgc_reference(layer, phase, select, weight, arr)
    cycles, stall, indices = run_cycles(units, row_idx, col_idx, n_rows, per_row, arr)
    issued = sum(u.steps * u.lanes for u in units)
    macs = int(dgc_weights(layer, select, weight).sum()) * layer.h_out * layer.w_out
    return cycles, stall, indices, issued, macs
