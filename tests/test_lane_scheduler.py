"""The TensorDash-style lane scheduler (decoder.lane_scheduler): its kernel against the
cycle-stepped reference, whole jobs against the reference model, its bounds and its refusals."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from accelsim.config import HardwareConfig, load_hardware, with_overrides
from accelsim.engine.lane_scheduler import LaneScheduler, scheduled_steps
from accelsim.engine.masks import BasePath, LayerMasks
from accelsim.engine.schedule import unit_width
from accelsim.engine.simulator import simulate_job
from accelsim.engine.sparse import sparse_compute
from accelsim.errors import InputError
from accelsim.network import conv
from tests.conftest import FP8
from tests.reference_model import RefArray, reference_job, scheduled_cycles

TREES = {"pe_array.fw_lanes": "reduction", "pe_array.bd_lanes": "reduction",
         "sparsity_support.nm_m": [], "buffers.register_file_words": 8192}
SCHEDULER = {"decoder.lane_scheduler": "tensordash",
             "energy.lane_scheduler_per_mac": {"pj": 0.05, "source": "test"}}


def scheduled(hw: HardwareConfig, **more) -> HardwareConfig:
    """``hw`` on adder trees behind the scheduler."""
    return with_overrides(hw, {**TREES, **SCHEDULER, "pe_array.stage_steps": 4, **more})


def test_tensordash_geometry() -> None:
    """TensorDash's H = 2, D = 5: seven candidates, an 8-input multiplexer, and slots filled in
    rounds of lanes 5 apart."""
    td = LaneScheduler(2, 5, 4)
    assert td.candidates() == ((1, -1), (1, 0), (1, 1), (1, 3), (2, -2), (2, 0), (2, 2))
    assert td.mux_inputs == 8
    assert td.slot_order(16) == (0, 5, 10, 1, 6, 11, 2, 7, 12, 3, 8, 13, 4, 9, 14, 15)


def run(rows: list[list[int]], lookahead: int, lookaside: int) -> tuple[int, int]:
    bits = np.array([rows], dtype=bool)
    size = np.full((1, len(rows)), len(rows[0]), dtype=np.int64)
    got = scheduled_steps(LaneScheduler(lookahead, lookaside, len(rows)), bits, size,
                          np.zeros((1, len(rows)), dtype=np.int8))
    return int(got.fixed[0, 0]), int(got.fixed_issued[0])


def test_hand_schedules() -> None:
    """Lookahead alone packs two alternating lanes two to one; lookaside moves one lane's
    stream onto its neighbours, at most H + 1 = 3 steps a cycle; dense steps stay."""
    alternating = [[1, 0, 0, 0], [0, 1, 0, 0]] * 3
    assert run(alternating, 2, 0) == (3, 12)
    one_lane = [[1] + [0] * 15] * 6
    assert run(one_lane, 2, 0) == (6, 96)
    assert run(one_lane, 2, 5) == (2, 32)
    assert run([[1] * 8] * 5, 2, 5) == (5, 40)
    assert run([[0] * 8] * 5, 2, 5) == (0, 0)  # the index drops empty steps


@st.composite
def streams(draw: st.DrawFn):
    lanes = draw(st.integers(1, 16))
    steps = draw(st.integers(1, 24))
    density = draw(st.floats(0.0, 1.0))
    seed = draw(st.integers(0, 2**32 - 1))
    bits = np.random.default_rng(seed).random((3, steps, lanes)) < density
    path = np.array(draw(st.lists(st.sampled_from([-1, 0, 1]), min_size=3 * steps,
                                  max_size=3 * steps)), dtype=np.int8).reshape(3, steps)
    bits &= (path >= 0)[:, :, None]
    sizes = np.array(draw(st.lists(st.integers(1, lanes), min_size=3 * steps,
                                   max_size=3 * steps)), dtype=np.int64).reshape(3, steps)
    return bits, sizes, path, draw(st.integers(1, 4)), draw(st.integers(0, 7)), \
        draw(st.integers(1, 30))


@settings(max_examples=300, deadline=None)
@given(streams())
def test_kernel_equals_cycle_stepped_reference(stream) -> None:
    """Every unit, chunk and path: the kernel's cycles and MACs are the reference's."""
    bits, sizes, path, lookahead, lookaside, stage = stream
    got = scheduled_steps(LaneScheduler(lookahead, lookaside, stage), bits, sizes, path)
    units, steps, _ = bits.shape
    for u in range(units):
        for which, cycles, issued in ((0, got.fixed, got.fixed_issued),
                                      (1, got.live, got.live_issued)):
            total = 0
            for x, start in enumerate(range(0, steps, stage)):
                inside = [s for s in range(start, min(steps, start + stage))
                          if path[u, s] == which]
                c, m = scheduled_cycles([list(bits[u, s]) for s in inside],
                                        [int(sizes[u, s]) for s in inside], lookahead,
                                        lookaside)
                assert cycles[u, x] == c
                total += m
            assert issued[u] == total


@settings(max_examples=300, deadline=None)
@given(streams())
def test_schedule_bounds(stream) -> None:
    """Never more cycles than nonempty steps (the index alone), never fewer than the steps'
    effectual pairs over the lanes, nor than the steps over lookahead + 1."""
    bits, sizes, path, lookahead, lookaside, _ = stream
    bits = bits & (path >= 0)[:, :, None]
    got = scheduled_steps(LaneScheduler(lookahead, lookaside, bits.shape[1]), bits, sizes,
                          np.where(path >= 0, 0, -1).astype(np.int8))
    nonempty = bits.any(axis=2).sum(axis=1)
    lanes = bits.shape[2]
    assert (got.fixed[:, 0] <= nonempty).all()
    assert (got.fixed[:, 0] >= -(-bits.sum(axis=(1, 2)) // lanes)).all()
    assert (got.fixed[:, 0] >= -(-nonempty // (lookahead + 1))).all()


@st.composite
def tree_jobs(draw: st.DrawFn):
    groups = draw(st.sampled_from([1, 2]))
    cin = groups * draw(st.integers(1, 3))
    cout = groups * draw(st.integers(1, 6))
    k = draw(st.sampled_from([1, 3]))
    size = draw(st.integers(2, 4))
    layer = conv("l", cin, cout, k, 1, k // 2, size, size, draw(st.integers(1, 2)))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    weight = rng.random((layer.cout, layer.k_per_group)) < draw(st.floats(0.05, 1.0))
    gate = (rng.random((layer.output_pixels, layer.cout)) < draw(st.floats(0.1, 0.9))
            if draw(st.booleans()) else None)
    base = None
    if gate is not None and groups > 1:
        base = BasePath.of_layer(layer, groups, tuple(draw(st.permutations(range(groups)))))
    phase = draw(st.sampled_from(["fw", "bd"]))
    overrides = {
        "pe_array.rows": draw(st.integers(1, 3)),
        "pe_array.cols": draw(st.integers(1, 3)),
        "pe_array.vector_width": draw(st.integers(1, 8)),
        "pe_array.sync_tiles": draw(st.integers(1, 3)),
        "pe_array.stage_steps": draw(st.sampled_from([3, 4, 7, 64])),
        "pe_array.pipeline_latency": draw(st.integers(0, 3)),
        "decoder.scheduler_lookahead": draw(st.integers(1, 2)),
        "decoder.scheduler_lookaside": draw(st.integers(0, 5)),
        "decoder.indices_per_cycle": draw(st.integers(1, 8)),
        "decoder.balance_rows": draw(st.booleans()),
        "sparsity_support.gate": ["fw", "bd", "wg"],
        "sparsity_support.weight": ["fw", "bd", "wg"],
        "sparsity_support.gate_group_size": 1,
    }
    return layer, phase, gate, base, weight, overrides


def native(layer, gate: np.ndarray) -> np.ndarray:
    """An (M, F) gate in the replay's (N, F, P) layout."""
    pixels = layer.h_out * layer.w_out
    return np.ascontiguousarray(gate.reshape(layer.batch, pixels, -1).transpose(0, 2, 1))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tree_jobs())
def test_jobs_equal_the_cycle_stepped_reference(fp8_hw: HardwareConfig, job) -> None:
    """FW and BD, gated or not, on adder trees behind the scheduler: cycles, decoder stalls,
    indices and issued MACs equal the reference model stepped cycle by cycle."""
    layer, phase, gate, base, weight, overrides = job
    hw = scheduled(fp8_hw, **overrides)
    masks = LayerMasks(gate=None if gate is None else native(layer, gate), weight=weight,
                       base=base, gating_groups=1 if base is None else base.groups)
    got = sparse_compute(layer, phase, masks, hw)
    pe, dec = hw.pe_array, hw.decoder
    arr = RefArray(pe.rows, pe.cols, pe.vector_width, unit_width(hw), pe.sync_tiles, False,
                   dec.indices_per_cycle, pe.pipeline_latency, pe.wg_lanes, pe.fw_lanes,
                   pe.bd_lanes, pe.stage_steps, dec.balance_rows, dec.scheduler_lookahead,
                   dec.scheduler_lookaside)
    expected = reference_job(layer, phase, gate, None if base is None else base.mask, weight,
                             arr, 1 if base is None else base.groups)
    assert (got.cycles_compute, got.cycles_decoder_stall, got.decoder_indices,
            got.macs_issued) == expected


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tree_jobs())
def test_the_scheduler_never_costs_cycles(fp8_hw: HardwareConfig, job) -> None:
    """The same job on the same trees with and without the scheduler: never more compute
    cycles with it, nor more issued MACs."""
    layer, phase, gate, base, weight, overrides = job
    overrides["decoder.balance_rows"] = False
    hw = scheduled(fp8_hw, **overrides)
    plain = with_overrides(hw, {"decoder.lane_scheduler": "none"})
    masks = LayerMasks(gate=None if gate is None else native(layer, gate), weight=weight,
                       base=base, gating_groups=1 if base is None else base.groups)
    with_it, without = sparse_compute(layer, phase, masks, hw), sparse_compute(
        layer, phase, masks, plain)
    assert with_it.cycles_compute <= without.cycles_compute
    assert with_it.macs_issued <= without.macs_issued


def test_unstructured_weights_gain_towards_their_density(fp8_hw: HardwareConfig) -> None:
    """50 % element-wise weights on 8-wide trees: without the scheduler almost every tree step
    has a kept weight (dense); with it FW approaches the 2x the density allows, bounded by the
    stage, and the multiplexers' energy is the network component."""
    layer = conv("l", 64, 64, 3, 1, 1, 8, 8, 2)
    weight = np.random.default_rng(0).random((64, layer.k_per_group)) < 0.5
    masks = LayerMasks(weight=weight)
    plain = with_overrides(fp8_hw, {**TREES, "pe_array.stage_steps": 16})
    deep = scheduled(fp8_hw, **{"pe_array.stage_steps": 16})
    without, with_it = (sparse_compute(layer, "fw", masks, hw) for hw in (plain, deep))
    assert without.cycles_compute == without.cycles_compute_dense
    assert 1.4 < without.cycles_compute / with_it.cycles_compute < 2.0
    job = simulate_job(layer, "fw", deep, masks=masks)
    assert job.energy_network_pj == pytest.approx(job.macs_issued * 0.05)


@pytest.mark.parametrize("overrides, field", [
    ({"pe_array.fw_lanes": "output_channels", "pe_array.bd_lanes": "output_channels"},
     "decoder.lane_scheduler"),
    ({"pe_array.stage_steps": 2}, "pe_array.stage_steps"),
    ({"decoder.compaction": True,
      "energy.compaction_network_per_mac": {"pj": 0.1, "source": "test"}},
     "decoder.lane_scheduler"),
])
def test_configs_it_cannot_apply_to_are_errors(fp8_hw: HardwareConfig, overrides: dict,
                                               field: str) -> None:
    with pytest.raises(InputError, match=field):
        scheduled(fp8_hw, **overrides)


def test_missing_energy_is_an_error(tmp_path: Path) -> None:
    raw = yaml.safe_load(FP8.read_text())
    del raw["energy"]["lane_scheduler_per_mac"]
    path = tmp_path / "hw.yaml"
    path.write_text(yaml.safe_dump(raw))
    overrides = [f"{key}={value}" for key, value in TREES.items()]
    with pytest.raises(InputError, match="lane_scheduler_per_mac"):
        load_hardware(path, [*overrides, "decoder.lane_scheduler=tensordash",
                             "pe_array.stage_steps=4"])
