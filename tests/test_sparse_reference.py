"""The numba replay kernels against the slow cycle-stepped reference model, on random masks."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from accelsim.config import HardwareConfig, with_overrides
from accelsim.engine.cache import ReplayCache
from accelsim.engine.masks import BasePath, LayerMasks, PackedGate, pack_bits
from accelsim.engine.schedule import NO_STAGE, unit_width
from accelsim.engine.simulator import simulate_job
from accelsim.engine.sparse import sparse_compute
from accelsim.kernels import masked_step_counts, schedule_passes
from accelsim.network import PHASES, conv
from tests.reference_model import RefArray, effective_macs_reference, reference_job


def masks_of(draw: st.DrawFn, shape: tuple[int, int]) -> np.ndarray:
    kind = draw(st.sampled_from(["random", "zeros", "ones", "sparse"]))
    if kind == "zeros":
        return np.zeros(shape, dtype=bool)
    if kind == "ones":
        return np.ones(shape, dtype=bool)
    seed = draw(st.integers(0, 2**32 - 1))
    density = 0.1 if kind == "sparse" else draw(st.floats(0.2, 0.9))
    return np.random.default_rng(seed).random(shape) < density


@st.composite
def jobs(draw: st.DrawFn):
    groups = draw(st.sampled_from([1, 2]))
    cin = groups * draw(st.integers(1, 3))
    cout = groups * draw(st.integers(1, 5))
    k = draw(st.sampled_from([1, 3]))
    size = draw(st.integers(2, 4))
    layer = conv("l", cin, cout, k, draw(st.integers(1, 2)), k // 2, size, size,
                 draw(st.integers(1, 2)))
    m, f, kk = layer.output_pixels, layer.cout, layer.k_per_group
    group = max(s for s in (1, 2, 4) if (f // groups) % s == 0) if draw(st.booleans()) else 1
    gate_groups = masks_of(draw, (m, f // group)) if draw(st.booleans()) else None
    gate = None if gate_groups is None else np.repeat(gate_groups, group, axis=1)
    weight = masks_of(draw, (f, kk)) if draw(st.booleans()) else None
    base = None
    if gate is not None and groups > 1:
        chunks = tuple(draw(st.permutations(range(groups))))
        base = BasePath.of_layer(layer, groups, chunks)
    phase = draw(st.sampled_from(PHASES))
    vw = draw(st.integers(1, 4))
    ipc = draw(st.integers(1, 8))
    overrides = {
        "pe_array.rows": draw(st.integers(1, 3)),
        "pe_array.cols": draw(st.integers(1, 3)),
        "pe_array.vector_width": vw,
        "pe_array.sync_tiles": draw(st.integers(1, 3)),
        "pe_array.stage_steps": draw(st.sampled_from([1, 2, 3, 7, 64])),
        "buffers.register_file_words": 4096,  # deep stages need more than the preset's
        "pe_array.pipeline_latency": draw(st.integers(0, 3)),
        "pe_array.wg_lanes": draw(st.sampled_from(["output_channels", "input_channels"])),
        "pe_array.fw_lanes": (fw_lanes := draw(st.sampled_from(["output_channels",
                                                               "reduction"]))),
        "pe_array.bd_lanes": (bd_lanes := draw(st.sampled_from(["output_channels",
                                                               "reduction"]))),
        "decoder.skip_granularity": "vector" if "reduction" in (fw_lanes, bd_lanes) else draw(
            st.sampled_from(["element", "vector", "pe_row"])),
        "decoder.compaction": (compaction := draw(st.booleans())),
        "decoder.balance_rows": not compaction and draw(st.booleans()),
        "decoder.indices_per_cycle": ipc,
        "decoder.compaction_indices_per_cycle": draw(st.integers(1, ipc)),
        "sparsity_support.gate": draw(st.lists(st.sampled_from(PHASES), unique=True)),
        "sparsity_support.weight": draw(st.lists(st.sampled_from(PHASES), unique=True)),
        "sparsity_support.gate_group_size": 1,
        "sparsity_support.nm_m": [],
    }
    native = None if gate_groups is None else native_layout(layer, gate_groups)
    return layer, phase, gate, (native, group), base, weight, groups, overrides


def native_layout(layer, gate_groups: np.ndarray) -> np.ndarray:
    """An (M, F/s) gate (rows m = n*P + p) in the replay's native (N, F/s, P) layout."""
    pixels = layer.h_out * layer.w_out
    return np.ascontiguousarray(
        gate_groups.reshape(layer.batch, pixels, gate_groups.shape[1]).transpose(0, 2, 1))


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(jobs())
def test_engine_equals_cycle_stepped_reference(fp8_hw: HardwareConfig, job) -> None:
    layer, phase, gate, (native, group), base, weight, groups, overrides = job
    hw = with_overrides(fp8_hw, overrides)
    masks = LayerMasks(gate=native, gate_group_size=group, base=base, weight=weight,
                       gating_groups=groups)
    got = sparse_compute(layer, phase, masks, hw)
    if native is not None:  # the replay's input: the trace's packed bits
        packed = LayerMasks(packed_gate=PackedGate.from_bool(native), gate_group_size=group,
                            base=base, weight=weight, gating_groups=groups)
        assert sparse_compute(layer, phase, packed, hw) == got

    base_mask = None if base is None else base.mask
    support, pe, dec = hw.sparsity_support, hw.pe_array, hw.decoder
    use_gate = phase in support.gate and gate is not None
    use_weight = phase in support.weight and weight is not None
    arr = RefArray(pe.rows, pe.cols, pe.vector_width, unit_width(hw), pe.sync_tiles,
                   dec.compaction, dec.compaction_indices_per_cycle if dec.compaction
                   else dec.indices_per_cycle, pe.pipeline_latency, pe.wg_lanes, pe.fw_lanes,
                   pe.bd_lanes, pe.stage_steps, dec.balance_rows)
    if use_gate or use_weight:
        cycles, stall, indices, issued = reference_job(
            layer, phase, gate if use_gate else None, base_mask if use_gate else None,
            weight if use_weight else None, arr, groups, group)
        assert (got.cycles_compute, got.cycles_decoder_stall, got.decoder_indices,
                got.macs_issued) == (cycles, stall, indices, issued)
    else:
        assert got.cycles_compute == got.cycles_compute_dense
        assert got.macs_issued == layer.macs
    assert got.macs_effective == effective_macs_reference(layer, gate, base_mask, weight, phase)
    assert got.macs_effective <= got.macs_issued or not (use_gate or use_weight)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(jobs(), st.integers(0, 2**32 - 1))
def test_a_kept_job_plan_equals_a_fresh_job_at_every_step(fp8_hw: HardwareConfig, job,
                                                         seed: int) -> None:
    """A replay keeps each gated job's plan (ReplayCache.compute) and applies it to the gates of
    later steps: every step's result must equal the job computed from scratch."""
    layer, phase, _, (native, group), base, weight, groups, overrides = job
    hw = with_overrides(fp8_hw, overrides)
    cache = ReplayCache()
    rng = np.random.default_rng(seed)
    for step in range(3):
        gate = native
        if native is not None and step:
            gate = rng.random(native.shape) < rng.choice([0.0, 0.3, 0.8, 1.0])
        packed = None if gate is None else PackedGate.from_bool(gate)
        kept = cache.compute(layer, phase, LayerMasks(
            packed_gate=packed, gate_group_size=group, base=base, weight=weight,
            gating_groups=groups), hw)
        fresh_base = None if base is None else BasePath(base.base_of_f, base.chunk_of_k,
                                                         base.groups)
        fresh = sparse_compute(layer, phase, LayerMasks(
            gate=gate, gate_group_size=group, base=fresh_base, weight=weight,
            gating_groups=groups), hw)
        assert kept == fresh


@settings(max_examples=80, deadline=None)
@given(st.integers(1, 6), st.integers(1, 5), st.integers(1, 130), st.integers(0, 2**32 - 1))
def test_masked_step_counts_equals_popcount_by_hand(rows: int, units: int, length: int,
                                                    seed: int) -> None:
    rng = np.random.default_rng(seed)
    active = rng.random((rows, length)) < 0.4
    always = rng.random((units, length)) < 0.2
    allowed = rng.random((units, length)) < 0.7
    counts = masked_step_counts(pack_bits(active), pack_bits(always), pack_bits(allowed))
    for i in range(rows):
        for j in range(units):
            assert counts[i, j] == int(((active[i] | always[j]) & allowed[j]).sum())


@settings(max_examples=80, deadline=None)
@given(st.integers(1, 9), st.integers(1, 7), st.integers(1, 3), st.integers(1, 3),
       st.integers(1, 4), st.booleans(), st.integers(1, 5), st.integers(1, 4),
       st.integers(0, 2**32 - 1))
def test_schedule_passes_on_edges(n_rows: int, n_cols: int, rows: int, qcols: int, sync: int,
                                  compaction: bool, ipc: int, n_classes: int, seed: int) -> None:
    """Tiles that do not divide the matrix, empty work, 1x1 arrays, shared unit classes."""
    from tests.reference_model import RefUnit, run_cycles

    rng = np.random.default_rng(seed)
    counts = rng.integers(0, 5, (n_rows, n_classes)).astype(np.int32)
    classes = rng.integers(0, n_classes, n_cols).astype(np.int64)
    unit_idx = rng.integers(0, 2, (n_rows, n_cols)).astype(np.int32)
    row_idx = rng.integers(0, 3, n_rows).astype(np.int64)
    col_idx = rng.integers(0, 3, n_cols).astype(np.int64)
    lanes = rng.integers(1, 4, n_cols).astype(np.int64)
    got = schedule_passes(counts, classes, lanes, unit_idx, True, row_idx, col_idx, rows, qcols,
                          sync, compaction, ipc, NO_STAGE, False)
    units = [RefUnit(i, j, int(counts[i, classes[j]]), int(lanes[j]), int(unit_idx[i, j]))
             for i in range(n_rows) for j in range(n_cols)]
    arr = RefArray(rows, qcols, 1, 1, sync, compaction, ipc, 0)
    issued = sum(u.steps * u.lanes for u in units)
    assert got == (*run_cycles(units, list(row_idx), list(col_idx), n_rows, n_cols, arr), issued,
                   0)


def test_dense_work_gives_the_dense_formula(fp8_hw: HardwareConfig) -> None:
    layer = conv("c", 16, 24, 3, 1, 1, 6, 6, 2)
    ones = LayerMasks(gate=np.ones((layer.output_pixels, 24, 1), dtype=bool),
                      weight=np.ones((24, layer.k_per_group), dtype=bool))
    for phase in PHASES:
        got = sparse_compute(layer, phase, ones, fp8_hw)
        assert got.cycles_compute == got.cycles_compute_dense, phase
        assert got.macs_issued == got.macs_effective == layer.macs


@pytest.mark.parametrize("phase", PHASES)
def test_zero_gate_removes_all_conditional_work(fp8_hw: HardwareConfig, phase: str) -> None:
    # K/G = 32*9/4 = 72 input-gradient columns per chunk: 8-lane units never straddle chunks,
    # so no lane idles (with K/G = 36 some BD units would, and issue more than 1/G).
    layer = conv("c", 32, 32, 3, 1, 1, 8, 8, 2)
    base = BasePath.of_layer(layer, 4, (0, 1, 2, 3))
    zero = LayerMasks(gate=np.zeros((layer.output_pixels, 32, 1), dtype=bool), base=base,
                      gating_groups=4)
    got = sparse_compute(layer, phase, zero, fp8_hw)
    assert got.macs_effective == layer.macs // 4  # only the base path (1/G) remains
    assert got.macs_issued == layer.macs // 4
    no_base = LayerMasks(gate=np.zeros((layer.output_pixels, 32, 1), dtype=bool))
    assert sparse_compute(layer, phase, no_base, fp8_hw).macs_issued == 0


@settings(max_examples=40, deadline=None)
@given(st.sampled_from(PHASES), st.floats(0.0, 1.0), st.sampled_from(["none", "mask", "nm"]),
       st.booleans(), st.booleans(), st.integers(0, 2 ** 31 - 1))
def test_effective_le_required_le_issued(fp8_hw: HardwareConfig, phase: str, density: float,
                                         weights: str, dense_fw_conditional: bool,
                                         compaction: bool, seed: int) -> None:
    """The FLOPs view never exceeds what training needs, nor that what the hardware issues,
    whatever the masks, a declared N:M pattern or the gate's estimator."""
    layer = conv("c", 16, 16, 3, 1, 1, 6, 6, 2)
    rng = np.random.default_rng(seed)
    gate = rng.random((2, 16, 36)) < density
    weight = (rng.random((16, layer.k_per_group)) < 0.5) if weights == "mask" else None
    masks = LayerMasks(gate=gate, base=BasePath.of_layer(layer, 2, (1, 0)), gating_groups=2,
                       weight=weight, nm=(2, 4) if weights == "nm" else None,
                       dense_fw_conditional=dense_fw_conditional)
    hw = with_overrides(fp8_hw, {"decoder.compaction": compaction})
    got = sparse_compute(layer, phase, masks, hw)
    assert got.macs_effective <= got.macs_required <= got.macs_issued
    if phase == "fw" and dense_fw_conditional and weights == "none":
        assert got.macs_required == got.macs_issued == layer.macs


@pytest.mark.parametrize("vector_width", [4, 8])
def test_reduction_lanes_skip_unstructured_gates_per_element_in_fw(fp8_hw: HardwareConfig,
                                                                  vector_width: int) -> None:
    """A PE whose lanes are an adder tree over k computes one output, so a closed per-element
    (CDG) gate skips exactly that output's conditional steps: with no base path and K a
    multiple of the tree, FW issues exactly the effective MACs; 8 output-channel lanes issue far
    more. Dense FW takes ceil(K / vw) steps per rows x cols outputs."""
    from accelsim.engine.pe_array import dense_cycles

    layer = conv("c", 16, 32, 3, 1, 1, 8, 8, 2)  # K = 144
    gate = np.random.default_rng(5).random((2, 32, 64)) < 0.3
    masks = LayerMasks(gate=gate)
    tree = with_overrides(fp8_hw, {"pe_array.fw_lanes": "reduction",
                                   "pe_array.vector_width": vector_width,
                                   "sparsity_support.nm_m": [],
                                   "buffers.register_file_words": 1024})
    got = sparse_compute(layer, "fw", masks, tree)
    assert got.macs_issued == got.macs_effective == int(gate.sum()) * layer.k_per_group
    pe = tree.pe_array
    assert dense_cycles(layer, "fw", pe) == (-(-128 // pe.rows) * -(-32 // pe.cols)
                                             * -(-144 // vector_width) + pe.pipeline_latency)
    if vector_width == 8:
        lanes = sparse_compute(layer, "fw", masks, fp8_hw)
        assert lanes.macs_issued > 1.5 * got.macs_issued
    # K = 9 on an 8-wide tree: the last, partial group issues only its k's, as dense does
    small = conv("s", 1, 8, 3, 1, 1, 4, 4, 1)
    open_gate = LayerMasks(gate=np.ones((1, 8, 16), dtype=bool))
    assert sparse_compute(small, "fw", open_gate, tree).macs_issued == small.macs


def test_bd_trees_skip_what_their_gate_groups_align_with(fp8_hw: HardwareConfig) -> None:
    """BD on 8-wide adder trees over output channels: a tree step is skipped only when all 8 of
    its dY values are gated off, so SCDG's 8-channel groups, aligned with the trees, issue
    exactly the effective MACs, while unstructured CDG gates at the same density issue far
    more (7 of 8 channels idle is still a step)."""
    layer = conv("c", 16, 32, 3, 1, 1, 8, 8, 2)
    tree = with_overrides(fp8_hw, {"pe_array.bd_lanes": "reduction",
                                   "sparsity_support.nm_m": []})
    rng = np.random.default_rng(11)
    groups = rng.random((2, 4, 64)) < 0.3
    scdg = LayerMasks(gate=groups, gate_group_size=8)
    got = sparse_compute(layer, "bd", scdg, tree)
    assert got.macs_issued == got.macs_effective == int(groups.sum()) * 8 * layer.k_per_group
    cdg = LayerMasks(gate=rng.random((2, 32, 64)) < 0.3)
    unstructured = sparse_compute(layer, "bd", cdg, tree)
    assert unstructured.macs_issued > 2 * unstructured.macs_effective


@pytest.mark.parametrize("vector_width", [1, 4, 8])
def test_transposed_wg_skips_unstructured_gates_per_element(fp8_hw: HardwareConfig,
                                                            vector_width: int) -> None:
    """With WG computed as dW^T = dY^T X the gated dY is the operand broadcast to the lanes, so
    per-element (CDG) gates skip ideally whatever the vector width: issued = effective MACs;
    with the output-channel lanes an 8-lane unit idles wherever any lane's gate is on."""
    layer = conv("c", 16, 32, 3, 1, 1, 8, 8, 2)  # K = 144: 8-lane units fill exactly
    gate = np.random.default_rng(3).random((2, 32, 64)) < 0.3
    masks = LayerMasks(gate=gate)
    transposed = with_overrides(fp8_hw, {"pe_array.wg_lanes": "input_channels",
                                         "pe_array.vector_width": vector_width,
                                         "buffers.register_file_words": 1024})
    got = sparse_compute(layer, "wg", masks, transposed)
    assert got.macs_issued == got.macs_effective == int(gate.sum()) * layer.k_per_group
    if vector_width == 8:
        lanes = sparse_compute(layer, "wg", masks, with_overrides(
            fp8_hw, {"pe_array.vector_width": vector_width}))
        assert lanes.macs_issued > 1.5 * got.macs_issued


@pytest.mark.parametrize("sync_tiles", [1, 4])
def test_compaction_never_splits_a_unit(fp8_hw: HardwareConfig, sync_tiles: int) -> None:
    """One active output of a K = 1152 reduction takes its 1152 steps with compaction too:
    dispatching units over idle queues cannot shorten a single unit's reduction."""
    layer = conv("c", 128, 16, 3, 1, 1, 4, 4, 1)
    gate = np.zeros((1, 16, 16), dtype=bool)
    gate[0, 3, 5] = True
    overrides = {"decoder.compaction": True, "decoder.skip_granularity": "element",
                 "pe_array.sync_tiles": sync_tiles}
    hw = with_overrides(fp8_hw, overrides)
    got = sparse_compute(layer, "fw", LayerMasks(gate=gate), hw)
    assert got.macs_issued == got.macs_effective == 1152
    assert got.cycles_compute - hw.pe_array.pipeline_latency - got.cycles_decoder_stall >= 1152


def test_compaction_packs_wg_lanes(fp8_hw: HardwareConfig) -> None:
    """WG over output-channel lanes packs each pixel's active lanes as FW does: two 8-lane
    units with two and one active lanes at every pixel run every pixel unpacked (all 16 lanes
    issue); packed, the three lanes share one slot, so half the MACs are issued, and the
    decoder reads each active lane's pixel list (48 entries) instead of each unit's (32)."""
    layer = conv("c", 4, 16, 1, 1, 0, 4, 4, 1)  # M = 16, F = 16, K = 4
    gate = np.zeros((1, 16, 16), dtype=bool)    # (N, F, P)
    pixels = np.arange(16)
    gate[0, pixels % 8, pixels] = True           # unit 0: two lanes per pixel
    gate[0, (pixels + 1) % 8, pixels] = True
    gate[0, 8 + (pixels * 3) % 8, pixels] = True  # unit 1: one lane per pixel
    plain = sparse_compute(layer, "wg", LayerMasks(gate=gate), fp8_hw)
    packed = sparse_compute(layer, "wg", LayerMasks(gate=gate),
                            with_overrides(fp8_hw, {"decoder.compaction": True}))
    assert plain.macs_effective == packed.macs_effective == 4 * 48
    assert plain.macs_issued == 4 * 16 * 16        # K rows x 2 units x 16 pixels x 8 lanes
    assert packed.macs_issued == plain.macs_issued // 2
    assert plain.decoder_indices == 2 * 16 and packed.decoder_indices == 3 * 16


@pytest.mark.parametrize("phase", ["fw", "wg"])
def test_compaction_packs_nothing_where_units_span_base_paths(fp8_hw: HardwareConfig,
                                                              phase: str) -> None:
    """Two CDG chunks of 3 output channels on 2-lane units: unit 1 holds a lane of each, whose
    base paths differ, so no segment but single units keeps every slot on one base path and
    compaction packs nothing: each unit runs its own active lanes' work (in WG row k = 0,
    which f0-f2 have on their base path, all 20 of its MACs are issued)."""
    layer = conv("c", 2, 6, 1, 1, 0, 2, 2, 1)   # M = 4, F = 6, K = 2
    base = BasePath.of_layer(layer, 2, (0, 1))
    gate = np.zeros((1, 6, 4), dtype=bool)
    gate[0, [4, 5], :] = True
    masks = LayerMasks(gate=gate, base=base, gating_groups=2)
    hw = with_overrides(fp8_hw, {"pe_array.vector_width": 2, "sparsity_support.gate": [phase],
                                 "decoder.skip_granularity": "vector"})
    plain = sparse_compute(layer, phase, masks, hw)
    packed = sparse_compute(layer, phase, masks, with_overrides(hw, {"decoder.compaction": True}))
    assert packed.macs_issued == plain.macs_issued >= plain.macs_effective


@pytest.mark.parametrize("phase", PHASES)
def test_compaction_costs_network_energy(fp8_hw: HardwareConfig, phase: str) -> None:
    """At equal issued MACs (element granularity: packing changes no lane's work) the job with
    compaction spends more energy: its MACs go through the distribution network."""
    layer = conv("c", 16, 32, 3, 1, 1, 8, 8, 2)
    gate = np.random.default_rng(7).random((2, 32, 64)) < 0.3
    element = with_overrides(fp8_hw, {"decoder.skip_granularity": "element"})
    packed = with_overrides(element, {"decoder.compaction": True})
    plain = simulate_job(layer, phase, element, masks=LayerMasks(gate=gate))
    network = simulate_job(layer, phase, packed, masks=LayerMasks(gate=gate))
    assert network.macs_issued == plain.macs_issued > 0
    assert plain.energy_network_pj == 0
    assert network.energy_network_pj == pytest.approx(
        network.macs_issued * packed.energy_pj("compaction_network_per_mac"))
    assert network.energy_pj > plain.energy_pj


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(0, 30), min_size=1, max_size=40), st.integers(1, 4),
       st.integers(1, 3))
def test_compaction_meets_the_bound_of_whole_units(steps: list[int], rows: int,
                                                   qcols: int) -> None:
    """One pass of one unit column: the units of its whole row tiles spread over the rows
    queues, max(ceil(steps / queues), longest unit), then its partial last tile likewise on the
    queues it occupies, unless the static mapping is faster, by hand."""
    work = np.array(steps, dtype=np.int32).reshape(-1, 1)
    n = work.shape[0]
    zeros = np.zeros(n, dtype=np.int64)
    args = (work, np.zeros(1, dtype=np.int64), np.ones(1, np.int64), np.zeros((1, 1), np.int32),
            False, zeros, zeros[:1], rows, qcols, -(-n // rows))
    cycles, _, _, issued, _ = schedule_passes(*args, True, 1, NO_STAGE, False)
    whole = n // rows * rows

    def balanced(part: list[int], queues: int) -> int:
        return max(max(part), -(-sum(part) // queues)) if part else 0

    static = max(sum(steps[r::rows]) for r in range(min(rows, n)))
    assert cycles == min(static, balanced(steps[:whole], rows) + balanced(steps[whole:], n - whole))
    assert issued == sum(steps)
    assert cycles <= schedule_passes(*args, False, 1, NO_STAGE, False)[0]
    assert cycles >= max(steps)


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 40), st.integers(1, 20), st.integers(1, 5), st.integers(1, 5),
       st.integers(1, 4), st.integers(1, 9))
def test_compaction_gains_nothing_on_uniform_work(n_rows: int, n_cols: int, rows: int,
                                                  qcols: int, sync: int, steps: int) -> None:
    """Balancing cannot beat the dense schedule: partial edge tiles keep their idle queues."""
    work = np.full((n_rows, n_cols), steps, dtype=np.int32)
    zeros = np.zeros((n_rows, n_cols), dtype=np.int64)
    args = (work, np.arange(n_cols, dtype=np.int64), np.ones(n_cols, dtype=np.int64),
            zeros.astype(np.int32), False,
            zeros[:, 0].copy(), zeros[0].copy(), rows, qcols, sync)
    assert (schedule_passes(*args, True, 1, NO_STAGE, False)
            == schedule_passes(*args, False, 1, NO_STAGE, False))


@pytest.mark.parametrize(("phase", "lanes"), [
    ("fw", {}), ("bd", {}), ("wg", {}), ("wg", {"pe_array.wg_lanes": "input_channels"}),
    ("fw", {"pe_array.fw_lanes": "reduction"}), ("bd", {"pe_array.bd_lanes": "reduction"})])
@pytest.mark.parametrize("group", [1, 2, 4])
@pytest.mark.parametrize("compaction", [False, True])
def test_group_gates_against_the_reference(fp8_hw: HardwareConfig, phase: str, lanes: dict,
                                           group: int, compaction: bool) -> None:
    """SCDG-style group gates in every phase and lane mapping (a combination random search
    reaches rarely)."""
    layer = conv("l", 8, 16, 3, 1, 1, 5, 5, 2)
    rng = np.random.default_rng(group + 7 * compaction)
    gate_groups = rng.random((layer.output_pixels, 16 // group)) < 0.4
    gate = np.repeat(gate_groups, group, axis=1)
    weight = rng.random((16, layer.k_per_group)) < 0.6
    base = BasePath.of_layer(layer, 2, (1, 0))
    hw = with_overrides(fp8_hw, {
        "pe_array.rows": 2, "pe_array.cols": 3, "pe_array.vector_width": 4,
        "pe_array.sync_tiles": 2, "decoder.compaction": compaction,
        "decoder.indices_per_cycle": 3, "decoder.compaction_indices_per_cycle": 2,
        "sparsity_support.gate_group_size": 4, "sparsity_support.nm_m": [], **lanes})
    got = sparse_compute(layer, phase, LayerMasks(gate=native_layout(layer, gate_groups),
                                                  gate_group_size=group, base=base,
                                                  weight=weight, gating_groups=2), hw)
    pe, dec = hw.pe_array, hw.decoder
    arr = RefArray(pe.rows, pe.cols, pe.vector_width, unit_width(hw), pe.sync_tiles,
                   compaction, dec.compaction_indices_per_cycle if compaction
                   else dec.indices_per_cycle, pe.pipeline_latency, pe.wg_lanes, pe.fw_lanes,
                   pe.bd_lanes, pe.stage_steps, dec.balance_rows)
    expected = reference_job(layer, phase, gate, base.mask, weight, arr, 2, group)
    assert (got.cycles_compute, got.cycles_decoder_stall, got.decoder_indices,
            got.macs_issued) == expected
    assert got.decoder_indices > 0 and got.macs_issued < layer.macs
