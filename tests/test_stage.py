"""The operand stage (``pe_array.stage_steps``): how long a pass lasts when the queues may drift
apart by only a few reduction steps, and what the register file must hold for it."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from accelsim.config import HardwareConfig, with_overrides
from accelsim.engine.masks import BasePath, LayerMasks
from accelsim.engine.schedule import unit_width
from accelsim.engine.sparse import sparse_compute
from accelsim.errors import InputError
from accelsim.network import conv
from tests.reference_model import RefArray, fw_nm_reference, reference_job, run_cycles
from tests.test_sparse_reference import jobs, native_layout

SMALL_ARRAY = {"pe_array.rows": 2, "pe_array.cols": 1, "pe_array.vector_width": 8,
               "pe_array.sync_tiles": 1, "pe_array.pipeline_latency": 0,
               "sparsity_support.gate_group_size": 1, "sparsity_support.nm_m": []}


def two_pixel_bd(fp8_hw: HardwareConfig, stage: int) -> int:
    """BD compute cycles of a 1x1 conv whose two pixels (one per PE row) each need a different
    one of its two output channels' gradients (and checks the wait is named as the stage's)."""
    layer = conv("c", 8, 2, 1, 1, 0, 1, 2, 1)  # M = 2 pixels, F = 2, K = 8: one unit column
    gate = np.zeros((1, 2, 2), dtype=bool)  # (N, F, P)
    gate[0, 0, 0] = gate[0, 1, 1] = True    # pixel 0 needs f = 0, pixel 1 needs f = 1
    hw = with_overrides(fp8_hw, {**SMALL_ARRAY, "pe_array.stage_steps": stage})
    compute = sparse_compute(layer, "bd", LayerMasks(gate=gate), hw)
    assert compute.cycles_stage_wait == compute.cycles_compute - 1  # the slowest queue: 1
    return compute.cycles_compute


def test_a_one_step_stage_waits_for_the_busiest_queue_at_every_step(fp8_hw) -> None:
    # Each queue has one step of work. Drifting by a step, both finish in one cycle; a stage
    # of one step broadcasts f = 0, waits for pixel 0's queue, then f = 1 for pixel 1's.
    assert two_pixel_bd(fp8_hw, 2) == 1
    assert two_pixel_bd(fp8_hw, 1) == 2


def test_a_deeper_stage_than_the_register_file_holds_is_rejected(fp8_hw) -> None:
    # the preset's 320 words hold one double-buffered step for 16 queued units (304 words)
    with pytest.raises(InputError, match=r"register_file_words.*stage_steps"):
        with_overrides(fp8_hw, {"pe_array.stage_steps": 2})
    deeper = with_overrides(fp8_hw, {"pe_array.stage_steps": 2,
                                     "buffers.register_file_words": 352})
    assert deeper.pe_array.stage_steps == 2


def _compute(job, fp8_hw: HardwareConfig, stage: int):
    layer, phase, _, (native, group), base, weight, groups, overrides = job
    hw = with_overrides(fp8_hw, {**overrides, "pe_array.stage_steps": stage,
                                 "buffers.register_file_words": 4096})
    masks = LayerMasks(gate=native, gate_group_size=group, base=base, weight=weight,
                       gating_groups=groups)
    return sparse_compute(layer, phase, masks, hw), hw


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(jobs(), st.sampled_from([1, 2, 3]))
def test_a_stage_twice_as_deep_never_costs_cycles(fp8_hw, job, stage) -> None:
    shallow, _ = _compute(job, fp8_hw, stage)
    deep, _ = _compute(job, fp8_hw, 2 * stage)
    assert deep.cycles_compute <= shallow.cycles_compute
    assert deep.macs_issued == shallow.macs_issued  # the stage moves time, not work


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(jobs())
def test_a_stage_that_holds_the_reduction_is_the_pass_model(fp8_hw, job) -> None:
    # every reduction of these small jobs has at most 64 steps: one chunk per pass, so the
    # pass lasts as long as its slowest queue (the reference's pass model, stage 0)
    layer, phase, gate, _, base, weight, groups, _ = job
    got, hw = _compute(job, fp8_hw, 64)
    pe, dec, support = hw.pe_array, hw.decoder, hw.sparsity_support
    use_gate = phase in support.gate and gate is not None
    use_weight = phase in support.weight and weight is not None
    if not (use_gate or use_weight):
        return
    arr = RefArray(pe.rows, pe.cols, pe.vector_width, unit_width(hw), pe.sync_tiles,
                   dec.compaction, dec.compaction_indices_per_cycle if dec.compaction
                   else dec.indices_per_cycle, pe.pipeline_latency, pe.wg_lanes, pe.fw_lanes,
                   pe.bd_lanes, stage_steps=0, balance_rows=dec.balance_rows)
    base_mask = None if base is None else base.mask
    expected = reference_job(layer, phase, gate if use_gate else None,
                             base_mask if use_gate else None,
                             weight if use_weight else None, arr, groups,
                             job[3][1])
    assert (got.cycles_compute, got.cycles_decoder_stall, got.decoder_indices,
            got.macs_issued) == expected


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_nm_multiplexers_with_a_gate_stage_the_shrunk_reduction(fp8_hw, seed) -> None:
    """FW on 2:4 multiplexers with a gate: each unit runs its scaled base steps, then its
    scaled conditional steps where active, so every unit column has the same step positions
    and queues differ only in how many units are active: every chunk's busiest queue is the
    pass's, and each stage gives the pass model's cycles (never fewer)."""
    layer = conv("c", 8, 8, 1, 1, 0, 2, 3, 2)  # M = 12, F = 8, K = 8
    base = BasePath.of_layer(layer, 2, (1, 0))
    rng = np.random.default_rng(seed)
    gate = rng.random((2, 8, 6)) < 0.4
    cycles = {}
    for stage in (1, 2, 4, 8):
        hw = with_overrides(fp8_hw, {
            "pe_array.rows": 2, "pe_array.cols": 1, "pe_array.vector_width": 1,
            "pe_array.sync_tiles": 2, "pe_array.stage_steps": stage,
            "pe_array.pipeline_latency": 0, "decoder.skip_granularity": "element",
            "buffers.register_file_words": 4096, "sparsity_support.gate_group_size": 1,
            "sparsity_support.nm_m": [4]})
        got = sparse_compute(layer, "fw", LayerMasks(gate=gate, base=base, nm=(2, 4),
                                                     gating_groups=2), hw)
        assert got.cycles_stage_wait == 0
        cycles[stage] = got.cycles_compute
    assert cycles[1] == cycles[2] == cycles[4] == cycles[8]


def test_a_declared_nm_pattern_without_multiplexers_for_it_runs_dense(fp8_hw) -> None:
    """A grouped conv whose N:M pattern is declared (no recorded mask) with an M the
    multiplexers do not support runs every group dense, like the dense job."""
    layer = conv("g", 16, 16, 3, 1, 1, 8, 8, 2, groups=4)
    hw = with_overrides(fp8_hw, {"sparsity_support.nm_m": [8]})
    got = sparse_compute(layer, "fw", LayerMasks(nm=(2, 4)), hw)
    assert got.cycles_compute == got.cycles_compute_dense
    assert got.macs_issued == layer.macs and not got.supported


def _tiles(n_cols: int, qcols: int) -> list[range]:
    return [range(c0, min(c0 + qcols, n_cols)) for c0 in range(0, n_cols, qcols)]


def _by_chunk(w: np.ndarray, stage: int) -> np.ndarray:
    """(..., T) per-step work summed over chunks of ``stage`` steps."""
    if w.shape[-1] == 0:
        return w[..., :0]
    return np.add.reduceat(w, np.arange(0, w.shape[-1], stage), axis=-1)


def _staged(w_of_pass, n_passes: int, tiles: list[range], stage: int) -> np.ndarray:
    """sum over chunks of max over (row, column) of W, per pass and tile; ``w_of_pass(p)``
    gives the per-step work (rows, columns, steps)."""
    out = np.zeros((n_passes, len(tiles)), dtype=np.int64)
    for p in range(n_passes):
        chunks = _by_chunk(w_of_pass(p), stage)
        for t, cols in enumerate(tiles):
            out[p, t] = chunks[:, cols].max(axis=(0, 1), initial=0).sum()
    return out


@settings(max_examples=150, deadline=None)
@given(st.integers(0, 2**32 - 1), st.sampled_from([1, 2, 3]), st.booleans())
def test_stage_kernels_equal_their_formulas(seed, stage, gated) -> None:
    """Each stage kernel against its docstring's W, summed over chunks of its maximum over the
    queue rows and the columns of a tile, on random counts in the ranges the phases give."""
    from accelsim.engine.schedule import pass_rows
    from accelsim.engine.stage import chunk_sums
    from accelsim.kernels import (
        pass_row_sums,
        staged_columns_rc,
        staged_columns_rt,
        staged_rows_jt,
        staged_rows_rt,
    )
    rng = np.random.default_rng(seed)
    rows, qcols, cols, steps = (int(rng.integers(1, 4)), int(rng.integers(1, 4)),
                                int(rng.integers(1, 7)), int(rng.integers(1, 9)))
    pass_len = rows * int(rng.integers(1, 3))
    units = int(rng.integers(1, 3 * pass_len + 1))
    n_rows = pass_rows(units, rows, pass_len)
    passes, tiles = n_rows.shape[0], _tiles(cols, qcols)
    fixed = rng.random((cols, steps)) < 0.5
    live = (rng.random((cols, steps)) < 0.5) & ~fixed & gated
    # FW: activity per (pass, column, row), at most the row's units
    active = (rng.random((passes, cols, rows)) * (n_rows[:, None, :] + 1)).astype(np.int64)
    expected = _staged(lambda p: (n_rows[p][:, None, None] * fixed[None] + active[p].T[:, :, None]
                                  * live[None]), passes, tiles, stage)
    got = staged_columns_rc(n_rows, chunk_sums(fixed, stage), chunk_sums(live, stage), active,
                            qcols)
    assert (got == expected).all()
    # BD: activity per (pass, step, row); columns share classes
    classes = rng.integers(0, cols, cols)
    counts = (rng.random((passes, steps, rows)) * (n_rows[:, None, :] + 1)).astype(np.int64)
    expected = _staged(lambda p: (n_rows[p][:, None, None] * fixed[classes][None]
                                  + counts[p].T[:, None, :] * live[classes][None]),
                       passes, tiles, stage)
    got = staged_columns_rt(n_rows, chunk_sums(fixed, stage), live.astype(np.uint8), counts,
                            classes.astype(np.int64), qcols, stage)
    assert (got == expected).all()
    # WG: step sets per unit (row i, column j); activity per (column, pixel) or (row, pixel)
    on = rng.random((units, cols)) < 0.5
    idle = (rng.random((units, cols)) < 0.5) & ~on & gated
    lengths = np.diff(np.append(np.arange(0, steps, stage), steps))
    column_active = rng.random((cols, steps)) < 0.5
    row_active = rng.random((units, steps)) < 0.5
    queue = np.arange(units) % rows
    per_pass = np.arange(units) // pass_len

    def wg(p: int, activity: np.ndarray, row_wise: bool) -> np.ndarray:
        w = np.zeros((rows, cols, steps), dtype=np.int64)
        for i in np.flatnonzero(per_pass == p):
            act = activity[i][None, :] if row_wise else activity
            w[queue[i]] += on[i][:, None] + idle[i][:, None] * act
        return w

    expected = _staged(lambda p: wg(p, column_active, False), passes, tiles, stage)
    got = staged_rows_jt(pass_row_sums(on.astype(np.int64), rows, pass_len),
                         pass_row_sums(idle.astype(np.int64), rows, pass_len), lengths,
                         chunk_sums(column_active, stage), qcols)
    assert (got == expected).all()
    keys = np.concatenate([on.T, idle.T], axis=1)
    _, first, wg_classes = np.unique(keys, axis=0, return_index=True, return_inverse=True)
    expected = _staged(lambda p: wg(p, row_active, True), passes, tiles, stage)
    got = staged_rows_rt(pass_row_sums(on.astype(np.int64), rows, pass_len),
                         np.ascontiguousarray(idle[:, first], dtype=np.uint8),
                         chunk_sums(row_active, stage), wg_classes.reshape(-1).astype(np.int64),
                         rows, pass_len, lengths, qcols)
    assert (got == expected).all()


def four_pixel_bd(fp8_hw: HardwareConfig, needs: list[list[int]], *, stage: int,
                  compaction: bool, balance: bool = False) -> int:
    """BD compute cycles of a 1x1 conv with four pixels on two queue rows (one unit column, a
    pass of two row tiles) whose pixel p needs the output channels ``needs[p]`` of two."""
    layer = conv("c", 8, 2, 1, 1, 0, 1, 4, 1)  # M = 4, F = 2, K = 8: one unit column
    gate = np.zeros((1, 2, 4), dtype=bool)      # (N, F, P)
    for p, channels in enumerate(needs):
        gate[0, channels, p] = True
    hw = with_overrides(fp8_hw, {**SMALL_ARRAY, "pe_array.sync_tiles": 2,
                                 "pe_array.stage_steps": stage,
                                 "buffers.register_file_words": 4096,
                                 "decoder.compaction": compaction,
                                 "decoder.balance_rows": balance,
                                 "decoder.indices_per_cycle": 16,
                                 "decoder.compaction_indices_per_cycle": 16})
    compute = sparse_compute(layer, "bd", LayerMasks(gate=gate), hw)
    assert compute.cycles_decoder_stall == 0
    return compute.cycles_compute


def test_compaction_balances_each_stage_chunk_not_the_whole_pass(fp8_hw) -> None:
    # Pixels 0 and 2 share queue row 0. Three pixels need f = 0, one needs f = 1. Over the
    # whole pass the dispatcher would spread the four unit-steps over the two queues (2
    # cycles); with one step staged at a time, f = 0's three units need two cycles on two
    # queues and f = 1's one more: 3, the static mapping's (queue row 0 runs f = 0 twice).
    skewed = [[0], [0], [0], [1]]
    assert four_pixel_bd(fp8_hw, skewed, stage=2, compaction=True) == 2
    assert four_pixel_bd(fp8_hw, skewed, stage=1, compaction=True) == 3
    assert four_pixel_bd(fp8_hw, skewed, stage=1, compaction=False) == 3
    # Inside a chunk it still fills idle queues: pixels 0 and 2 need f = 0, pixels 1 and 3
    # nothing. Statically queue row 0 runs both (2 cycles); compacted, one each (1 cycle).
    one_row = [[0], [], [0], []]
    assert four_pixel_bd(fp8_hw, one_row, stage=1, compaction=False) == 2
    assert four_pixel_bd(fp8_hw, one_row, stage=1, compaction=True) == 1


def test_the_row_balancer_spreads_busy_rows_over_queue_rows(fp8_hw) -> None:
    # Pixels 0 and 2 need both output channels and share queue row 0; 1 and 3 need nothing.
    # Statically queue row 0 runs 2 units at each step (4 cycles); the balancer puts the two
    # busy pixels on different queue rows (2 cycles), without compaction's network.
    busy = [[0, 1], [], [0, 1], []]
    assert four_pixel_bd(fp8_hw, busy, stage=1, compaction=False) == 4
    assert four_pixel_bd(fp8_hw, busy, stage=1, compaction=False, balance=True) == 2
    assert four_pixel_bd(fp8_hw, busy, stage=2, compaction=False, balance=True) == 2


def test_the_row_balancer_decodes_a_row_index_per_row_of_a_pass_it_moves(fp8_hw) -> None:
    layer = conv("c", 8, 2, 1, 1, 0, 1, 4, 1)  # M = 4 rows, one pass of two row tiles
    hw = with_overrides(fp8_hw, {**SMALL_ARRAY, "pe_array.sync_tiles": 2})
    balancing = with_overrides(hw, {"decoder.balance_rows": True})
    for busy, extra in (([0, 1, 2, 3], 0), ([0, 2], 4)):  # equal rows stay; skewed ones move
        gate = np.zeros((1, 2, 4), dtype=bool)
        gate[0, :, busy] = True
        plain = sparse_compute(layer, "bd", LayerMasks(gate=gate), hw)
        balanced = sparse_compute(layer, "bd", LayerMasks(gate=gate), balancing)
        assert balanced.decoder_indices == plain.decoder_indices + extra
        assert balanced.cycles_compute <= plain.cycles_compute
    with pytest.raises(InputError, match="balance_rows"):
        with_overrides(hw, {"decoder.balance_rows": True, "decoder.compaction": True})


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, 2**32 - 1), st.sampled_from([1, 2, 3, 5]), st.integers(1, 3))
def test_compacted_nm_multiplexers_with_a_gate_under_the_stage(fp8_hw, seed, stage,
                                                               sync) -> None:
    """FW on 2:4 multiplexers with a gate and compaction: the stage never shortens a pass
    (its wait is never negative), a deeper stage never costs cycles, and one that holds the
    whole shrunk reduction gives the pass model's cycles."""
    layer = conv("c", 8, 8, 3, 1, 1, 2, 3, 2)  # M = 12, F = 8, K = 72 (t' = 36)
    base = BasePath.of_layer(layer, 2, (1, 0))
    gate = np.random.default_rng(seed).random((2, 8, 6)) < 0.4

    def compute(depth: int):
        hw = with_overrides(fp8_hw, {
            "pe_array.rows": 2, "pe_array.cols": 2, "pe_array.vector_width": 1,
            "pe_array.sync_tiles": sync, "pe_array.stage_steps": depth,
            "pe_array.pipeline_latency": 0, "decoder.skip_granularity": "element",
            "decoder.compaction": True, "buffers.register_file_words": 8192,
            "sparsity_support.gate_group_size": 1, "sparsity_support.nm_m": [4]})
        return sparse_compute(layer, "fw", LayerMasks(gate=gate, base=base, nm=(2, 4),
                                                      gating_groups=2), hw)

    shallow, deep, whole = compute(stage), compute(2 * stage), compute(36)
    assert shallow.cycles_stage_wait >= 0 and whole.cycles_stage_wait == 0
    assert whole.cycles_compute <= deep.cycles_compute <= shallow.cycles_compute
    assert shallow.macs_issued == deep.macs_issued == whole.macs_issued


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, 2**32 - 1), st.booleans())
def test_gated_nm_multiplexers_equal_the_reference(fp8_hw, seed, compaction) -> None:
    """Gated FW on 2:4 multiplexers (with compaction, the row balancer or neither, at any
    stage depth) equals the cycle-stepped reference: each unit runs the first
    ceil(steps x t' / t) positions of the shrunk reduction."""
    rng = np.random.default_rng(seed)
    groups = int(rng.choice([1, 2, 3]))
    layer = conv("c", groups * int(rng.integers(1, 4)), groups * int(rng.integers(1, 5)), 3, 1,
                 1, int(rng.integers(2, 5)), int(rng.integers(2, 5)), int(rng.integers(1, 3)))
    m, f = layer.output_pixels, layer.cout
    gate = rng.random((m, f)) < rng.uniform(0.1, 0.8)
    base = (BasePath.of_layer(layer, groups, tuple(int(c) for c in rng.permutation(groups)))
            if groups > 1 else None)
    hw = with_overrides(fp8_hw, {
        "pe_array.rows": int(rng.integers(1, 4)), "pe_array.cols": int(rng.integers(1, 3)),
        "pe_array.vector_width": int(rng.integers(1, 4)),
        "pe_array.sync_tiles": int(rng.integers(1, 4)),
        "pe_array.stage_steps": int(rng.choice([1, 2, 3, 5, 64])),
        "buffers.register_file_words": 65536, "pe_array.pipeline_latency": 0,
        "decoder.skip_granularity": str(rng.choice(["element", "vector", "pe_row"])),
        "decoder.compaction": compaction, "decoder.balance_rows": not compaction and bool(
            rng.integers(2)), "decoder.indices_per_cycle": 64,
        "decoder.compaction_indices_per_cycle": int(rng.integers(1, 64)),
        "sparsity_support.gate": ["fw"], "sparsity_support.gate_group_size": 1,
        "sparsity_support.nm_m": [4]})
    got = sparse_compute(layer, "fw", LayerMasks(gate=native_layout(layer, gate), base=base,
                                                 nm=(2, 4), gating_groups=groups), hw)
    pe, dec = hw.pe_array, hw.decoder
    arr = RefArray(pe.rows, pe.cols, pe.vector_width, unit_width(hw), pe.sync_tiles,
                   compaction, dec.compaction_indices_per_cycle if compaction
                   else dec.indices_per_cycle, 0, stage_steps=pe.stage_steps,
                   balance_rows=dec.balance_rows)
    units, row_idx, col_idx, per_row = fw_nm_reference(
        layer, gate, None if base is None else base.mask, arr, groups, (2, 4))
    cycles, stall, indices = run_cycles(units, row_idx, col_idx, m, per_row, arr)
    issued = sum(u.steps * u.lanes for u in units)
    assert (got.cycles_compute, got.cycles_decoder_stall, got.decoder_indices,
            got.macs_issued) == (cycles, stall, indices, issued)
    assert got.cycles_stage_wait >= 0
