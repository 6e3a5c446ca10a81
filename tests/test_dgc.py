"""DGC's input selection: the engine against the cycle-stepped reference, and its physics."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from accelsim.config import HardwareConfig, with_overrides
from accelsim.engine.masks import LayerMasks
from accelsim.engine.schedule import unit_width
from accelsim.engine.sparse import sparse_compute
from accelsim.errors import InputError
from accelsim.network import PHASES, conv
from tests.reference_model import RefArray, dgc_reference_job


@st.composite
def dgc_jobs(draw: st.DrawFn):
    heads = draw(st.sampled_from([1, 2, 4]))
    cin = draw(st.integers(1, 4))
    cout = heads * draw(st.integers(1, 3))
    k = draw(st.sampled_from([1, 3]))
    size = draw(st.integers(1, 4))
    layer = conv("l", cin, cout, k, draw(st.integers(1, 2)), k // 2, size, size,
                 draw(st.integers(1, 4)))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    select = rng.random((layer.batch, heads, cin)) < draw(st.floats(0.0, 1.0))
    weight = (rng.random((cout, layer.k_per_group)) < draw(st.floats(0.2, 1.0))
              if draw(st.booleans()) else None)
    overrides = {
        "pe_array.rows": draw(st.integers(1, 3)),
        "pe_array.cols": draw(st.integers(1, 3)),
        "pe_array.vector_width": draw(st.integers(1, 4)),
        "pe_array.sync_tiles": draw(st.integers(1, 3)),
        "pe_array.stage_steps": draw(st.sampled_from([1, 2, 3, 7, 64])),
        "buffers.register_file_words": 4096,
        "pe_array.pipeline_latency": draw(st.integers(0, 3)),
        "decoder.skip_granularity": draw(st.sampled_from(["element", "vector", "pe_row"])),
        "decoder.indices_per_cycle": draw(st.integers(1, 8)),
        "sparsity_support.gate": list(PHASES),
        "sparsity_support.weight": list(PHASES),
        "sparsity_support.gate_group_size": 1,
        "sparsity_support.nm_m": [],
    }
    return layer, draw(st.sampled_from(PHASES)), select, weight, overrides


def _arr(hw: HardwareConfig) -> RefArray:
    pe, dec = hw.pe_array, hw.decoder
    return RefArray(pe.rows, pe.cols, pe.vector_width, unit_width(hw), pe.sync_tiles, False,
                    dec.indices_per_cycle, pe.pipeline_latency, stage_steps=pe.stage_steps)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(dgc_jobs())
def test_dgc_equals_cycle_stepped_reference(fp8_hw: HardwareConfig, job) -> None:
    layer, phase, select, weight, overrides = job
    hw = with_overrides(fp8_hw, overrides)
    got = sparse_compute(layer, phase, LayerMasks(weight=weight, select=select), hw)
    cycles, stall, indices, issued, macs = dgc_reference_job(layer, phase, select, weight,
                                                             _arr(hw))
    assert (got.cycles_compute, got.cycles_decoder_stall, got.decoder_indices,
            got.macs_issued, got.macs_effective) == (cycles, stall, indices, issued, macs)
    assert got.macs_effective <= got.macs_issued


@pytest.mark.parametrize("phase", PHASES)
def test_an_all_ones_selection_costs_what_the_weights_alone_cost(fp8_hw: HardwareConfig,
                                                                  phase: str) -> None:
    """Selecting every input channel is the layer's weight mask on every sample: the same
    cycles and MACs as the weight-pruned job, except the decoder's per-sample step lists."""
    layer = conv("l", 16, 32, 3, 1, 1, 8, 8, 4)
    rng = np.random.default_rng(3)
    weight = rng.random((32, layer.k_per_group)) < 0.5
    hw = with_overrides(fp8_hw, {"decoder.indices_per_cycle": 65536})
    dgc = sparse_compute(layer, phase, LayerMasks(weight=weight,
                                                  select=np.ones((4, 4, 16), bool)), hw)
    pruned = sparse_compute(layer, phase, LayerMasks(weight=weight), hw)
    assert dgc.macs_effective == pruned.macs_effective
    assert dgc.cycles_compute == pruned.cycles_compute
    assert dgc.macs_issued == pruned.macs_issued


@pytest.mark.parametrize("phase", PHASES)
def test_fewer_selected_channels_never_cost_more(fp8_hw: HardwareConfig, phase: str) -> None:
    """Dropping channels from a selection never adds cycles or issued MACs (same schedule)."""
    layer = conv("l", 32, 64, 3, 1, 1, 4, 4, 8)
    rng = np.random.default_rng(5)
    wide = rng.random((8, 4, 32)) < 0.6
    narrow = wide & (rng.random(wide.shape) < 0.5)
    hw = with_overrides(fp8_hw, {"decoder.indices_per_cycle": 65536})
    more = sparse_compute(layer, phase, LayerMasks(select=wide), hw)
    less = sparse_compute(layer, phase, LayerMasks(select=narrow), hw)
    assert less.cycles_compute <= more.cycles_compute
    assert less.macs_issued <= more.macs_issued
    assert less.macs_effective < more.macs_effective


def test_heads_aligned_with_units_skip_what_the_flops_promise(fp8_hw: HardwareConfig) -> None:
    """FW: a head's selection is the same for all its output channels, so lock-step units of
    8 channels inside a head skip exactly the unselected channels' steps."""
    layer = conv("l", 64, 64, 3, 1, 1, 16, 16, 2)
    select = np.zeros((2, 4, 64), bool)
    select[:, :, :16] = True  # every head reads a quarter of the inputs
    got = sparse_compute(layer, "fw", LayerMasks(select=select), fp8_hw)
    assert got.macs_effective * 4 == layer.macs
    assert got.macs_issued == got.macs_effective


@pytest.mark.parametrize("field, value", [("decoder.compaction", True),
                                          ("decoder.balance_rows", True),
                                          ("pe_array.fw_lanes", "reduction"),
                                          ("pe_array.bd_lanes", "reduction"),
                                          ("pe_array.wg_lanes", "input_channels")])
def test_unmodelled_hardware_is_refused(fp8_hw: HardwareConfig, field: str,
                                        value: object) -> None:
    layer = conv("l", 8, 8, 3, 1, 1, 4, 4, 2)
    hw = with_overrides(fp8_hw, {field: value, "sparsity_support.nm_m": []})
    phase = {"pe_array.bd_lanes": "bd", "pe_array.wg_lanes": "wg"}.get(field, "fw")
    with pytest.raises(InputError, match=field.replace(".", r"\.")):
        sparse_compute(layer, phase, LayerMasks(select=np.ones((2, 2, 8), bool)), hw)


def test_systolic_arrays_run_dgc_dense(fp8_hw: HardwareConfig) -> None:
    from accelsim.config import load_hardware
    from tests.conftest import SYSTOLIC

    hw = load_hardware(SYSTOLIC)
    layer = conv("l", 8, 8, 3, 1, 1, 4, 4, 2)
    select = np.zeros((2, 2, 8), bool)
    got = sparse_compute(layer, "fw", LayerMasks(select=select), hw)
    assert got.cycles_compute == got.cycles_compute_dense and not got.supported
    assert got.macs_effective == 0


def _dgc_trace(path, steps: dict[int, np.ndarray]) -> None:
    """A one-layer DGC trace with the selection of each step for both branches."""
    from accelsim.trace import TraceLayer, TraceWriter, select_spec_for

    layer = conv("layer1.0.conv1", 16, 16, 3, 1, 1, 4, 4, 4, role="block")
    spec = TraceLayer(layer, None, None, select_spec_for(layer, 2))
    with TraceWriter.create(path, {"algorithm": "dgc", "ssl": "simclr"}, [spec]) as writer:
        for step, chosen in steps.items():
            writer.write_step(step, {}, {}, selects={(layer.name, b): chosen for b in (1, 2)})


def test_a_dgc_trace_replays_step_by_step(tmp_path, fp8_hw: HardwareConfig) -> None:
    """Each step replays its own selection (no row is reused across steps), an all-ones
    selection runs dense with no index, and the selection's index is stored."""
    from accelsim.engine.replay import Replayer

    rng = np.random.default_rng(1)
    half = rng.random((4, 2, 16)) < 0.5
    _dgc_trace(tmp_path / "t", {0: half, 1: np.ones((4, 2, 16), bool), 2: half})
    warm = Replayer(tmp_path / "t", fp8_hw)
    rows = {step: warm.replay_step(step) for step in (0, 1, 2)}
    cycles = {step: sum(r.cycles_compute for r in jobs) for step, (jobs, _) in rows.items()}
    dense = sum(r.cycles_compute_dense for r in rows[1][0])
    assert cycles[1] == dense and cycles[0] == cycles[2] < dense
    assert rows[1][1]["bits"] == 0 and rows[0][1]["bits"] > 0
    fresh, _ = Replayer(tmp_path / "t", fp8_hw).replay_step(2)
    assert [r.cycles_compute for r in fresh] == [r.cycles_compute for r in rows[2][0]]


def test_unreplayable_hardware_is_refused_before_any_work(tmp_path,
                                                          fp8_hw: HardwareConfig) -> None:
    """A config DGC's rules do not cover fails when the replay is set up, naming the field;
    a phase that does not skip dynamic masks runs the layer dense instead."""
    from accelsim.engine.replay import Replayer

    _dgc_trace(tmp_path / "t", {0: np.ones((4, 2, 16), bool)})
    bad = with_overrides(fp8_hw, {"pe_array.bd_lanes": "reduction"})
    with pytest.raises(InputError, match=r"pe_array\.bd_lanes: not modelled with DGC"):
        Replayer(tmp_path / "t", bad)
    Replayer(tmp_path / "t", with_overrides(bad, {"sparsity_support.gate": ["fw", "wg"]}))
    Replayer(tmp_path / "t", bad, phases=("fw", "wg"))


def test_a_phase_that_skips_no_dynamic_mask_still_skips_pruned_weights(
        fp8_hw: HardwareConfig) -> None:
    layer = conv("l", 16, 32, 3, 1, 1, 8, 8, 4)
    weight = np.random.default_rng(2).random((32, layer.k_per_group)) < 0.3
    weight[:, :72] = False  # half of the input channels pruned in every output channel
    select = np.random.default_rng(3).random((4, 4, 16)) < 0.5
    hw = with_overrides(fp8_hw, {"sparsity_support.gate": ["bd", "wg"]})
    got = sparse_compute(layer, "fw", LayerMasks(weight=weight, select=select), hw)
    pruned = sparse_compute(layer, "fw", LayerMasks(weight=weight), hw)
    assert got.cycles_compute == pruned.cycles_compute < got.cycles_compute_dense
    assert got.macs_effective < pruned.macs_effective


def test_compare_and_sweeps_refuse_unreplayable_hardware_up_front(tmp_path,
                                                                  fp8_hw: HardwareConfig) -> None:
    from accelsim.api import compare
    from accelsim.sweep.plan import plan_sweep
    from tests.conftest import FP8

    _dgc_trace(tmp_path / "t", {0: np.ones((4, 2, 16), bool)})
    bad = with_overrides(fp8_hw, {"decoder.compaction": True})
    with pytest.raises(InputError, match=r"decoder\.compaction: not modelled with DGC"):
        compare([tmp_path / "t"], bad, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    with pytest.raises(InputError, match=r"decoder\.balance_rows: not modelled with DGC"):
        plan_sweep([tmp_path / "t"], FP8, [], [{"decoder.balance_rows": False},
                                              {"decoder.balance_rows": True}])
