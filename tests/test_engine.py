"""Dense timing, memory and energy models: invariants and hand-checked numbers."""

from __future__ import annotations

import dataclasses
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from accelsim.analysis import summary as summarize_jobs
from accelsim.analysis import tflops_per_watt
from accelsim.config import HardwareConfig, with_overrides
from accelsim.engine.energy import (
    ENERGY_COMPONENTS,
    EnergyBreakdown,
    energy_of,
    static_energy_pj,
)
from accelsim.engine.memory import choose_tiling, combine_cycles, memory_dense, phase_tensors
from accelsim.engine.pe_array import cycles_dense_tensor, cycles_gemm
from accelsim.engine.simulator import results_frame, simulate_layer_phase, simulate_network_dense
from accelsim.network import PHASES, Layer, conv, resnet20
from tests.test_network import layers

sizes = st.floats(min_value=1, max_value=1e8, allow_nan=False)


def test_tensor_cycles_by_hand() -> None:
    # 100 rows on 16 PE rows -> 7 row tiles; 70 columns on 4 cols x 8 lanes -> 3 column tiles.
    assert cycles_dense_tensor(100, 50, 70, rows=16, cols=4, vector_width=8,
                               pipeline_latency=6) == 7 * 3 * 50 + 6


def test_groups_run_one_after_another(fp8_hw: HardwareConfig) -> None:
    grouped = conv("g", 16, 16, 3, 1, 1, 8, 8, batch=1, groups=4)
    one_group = conv("o", 4, 4, 3, 1, 1, 8, 8, batch=1)
    assert cycles_gemm(grouped.gemm("fw"), fp8_hw.pe_array) == \
        4 * cycles_gemm(one_group.gemm("fw"), fp8_hw.pe_array)


@given(sizes, sizes, sizes, st.floats(min_value=1e3, max_value=1e7), st.floats(1.0, 8.0))
def test_more_buffer_never_means_more_traffic(a: float, b: float, o: float, cap: float,
                                              factor: float) -> None:
    small, large = choose_tiling(a, b, o, cap), choose_tiling(a, b, o, cap * factor)

    def traffic(t):
        return t.a_reads * a + t.b_reads * b + t.o_writes * o

    assert traffic(large) <= traffic(small)
    assert traffic(small) >= a + b + o
    assert small.a_reads >= 1 and small.b_reads >= 1


def test_resident_when_everything_fits() -> None:
    tiling = choose_tiling(100, 200, 300, 1000)
    assert (tiling.order, tiling.a_reads, tiling.b_reads) == ("resident", 1, 1)
    tiling = choose_tiling(10_000, 100, 100, 1000)  # A huge: keep B, stream A once
    assert tiling.a_reads == 1 and tiling.b_reads == 1


def test_training_phases_move_the_right_tensors(fp8_hw: HardwareConfig) -> None:
    layer = conv("c", 8, 16, 3, 1, 1, 4, 4, batch=2)
    word = fp8_hw.operand_bits / 8
    fw, bd, wg = (memory_dense(layer, p, fp8_hw) for p in PHASES)
    assert fw.activations_bytes == (layer.input_count + layer.output_count) * word
    assert fw.weights_bytes == layer.weight_count * word and fw.gradients_bytes == 0
    assert bd.gradients_bytes == (layer.output_count + layer.input_count) * word
    assert wg.activations_bytes == layer.input_count * word  # saved in FW, re-read in WG
    assert wg.gradients_bytes == (layer.output_count + layer.weight_count) * word
    assert phase_tensors(layer, "wg").o_class == "gradients"


def test_double_buffering_overlaps_causes() -> None:
    assert combine_cycles(100, 30, 70, double_buffering=True) == 100
    assert combine_cycles(100, 30, 70, double_buffering=False) == 170
    assert combine_cycles(10, 30, 70, double_buffering=True) == 70


def test_static_energy_units(fp8_hw: HardwareConfig) -> None:
    hw = with_overrides(fp8_hw, {"static_power_mw": 1.0, "pe_array.clock_mhz": 1000.0})
    assert static_energy_pj(1000, hw) == pytest.approx(1000.0)  # 1 mW for 1 us = 1 nJ


def test_tflops_per_watt() -> None:
    # 1e12 MACs = 2e12 FLOPs for 1 J -> 2 TFLOPS/W
    assert tflops_per_watt(1e12, 1e12) == pytest.approx(2.0)


def test_energy_breakdown_fields_are_the_components() -> None:
    """EnergyBreakdown.total adds its fields by name: a new component must be in both."""
    assert tuple(f.name for f in dataclasses.fields(EnergyBreakdown)) == ENERGY_COMPONENTS
    parts = {name: float(2 ** i) for i, name in enumerate(ENERGY_COMPONENTS)}
    assert EnergyBreakdown(**parts).total == 2 ** len(ENERGY_COMPONENTS) - 1


@settings(max_examples=60, deadline=None)
@given(layers(), st.sampled_from(PHASES), st.sampled_from(["ws", "os", "is", "tensor"]),
       st.booleans())
def test_energy_components_sum_to_total(fp8_hw: HardwareConfig, layer: Layer, phase: str,
                                        dataflow: str, double: bool) -> None:
    overrides = {"pe_array.dataflow": dataflow, "dram.double_buffering": double}
    if dataflow != "tensor":
        overrides.update({"pe_array.vector_width": 1, "sparsity_support.gate_group_size": 1,
                          "sparsity_support.gate": []})
    hw = with_overrides(fp8_hw, overrides)
    job = simulate_layer_phase(layer, phase, hw)
    parts = [getattr(job, f"energy_{c}_pj") for c in ENERGY_COMPONENTS]
    assert job.energy_pj == pytest.approx(sum(parts), rel=1e-12)
    assert all(p >= 0 for p in parts)
    assert job.cycles >= max(job.cycles_compute, job.cycles_dram, job.cycles_buffer)
    assert 0 < job.utilization <= 1
    assert job.macs_dense == job.macs_effective == job.macs_issued == layer.macs
    assert job.cycles == job.cycles_dense and job.energy_pj == job.energy_dense_pj


def test_energy_of_counts_each_action(fp8_hw: HardwareConfig) -> None:
    e = energy_of(macs_issued=10, gb_read_bits=100, gb_write_bits=50, rf_fill_bits=40,
                  dram_bytes=2, indices_decoded=3, cycles=0, hw=fp8_hw)
    pe = fp8_hw.pe_array
    assert e.mac == pytest.approx(10 * fp8_hw.mac_energy_pj)
    assert e.dram == pytest.approx(16 * fp8_hw.dram.energy_pj_per_bit)
    assert e.index == pytest.approx(3 * fp8_hw.energy_pj("index_decode"))
    # the 40 operand bits delivered into the register files are written there once
    assert e.buffer == pytest.approx(100 * fp8_hw.energy_pj("gb_read_per_bit")
                                     + 50 * fp8_hw.energy_pj("gb_write_per_bit")
                                     + 40 * fp8_hw.energy_pj("rf_write_per_bit"))
    rf_bits = 10 * (pe.operand_reads_per_mac * 8 + pe.psum_accesses_per_mac * 16)
    assert e.rf == pytest.approx(rf_bits * fp8_hw.energy_pj("rf_read_per_bit"))
    assert e.static == 0


def test_network_rows_and_summary(fp8_hw: HardwareConfig) -> None:
    net = resnet20(batch=8)
    rows = simulate_network_dense(net, fp8_hw)
    assert len(rows) == 2 * (3 * len(net.layers) - 1)  # no BD for the first layer
    assert not any(r.phase == "bd" and r.layer == "conv1" for r in rows)
    jobs = results_frame(rows, fp8_hw)
    summary = summarize_jobs(jobs, fp8_hw)
    total = summary["total"]
    for column in ("macs_dense", "macs_effective", "macs_issued", "cycles", "cycles_dense",
                   "cycles_compute", "cycles_decoder_stall", "cycles_dram", "cycles_buffer",
                   "decoder_indices"):  # counts: exact integer sums of the job table
        assert type(total[column]) is int and total[column] == sum(getattr(r, column)
                                                                   for r in rows), column
    for column in ("energy_pj", "energy_dense_pj", "dram_bytes"):
        assert type(total[column]) is float
        assert total[column] == pytest.approx(sum(getattr(r, column) for r in rows), rel=1e-12)
    assert total["jobs"] == len(rows) and list(summary["per_branch"]) == ["1", "2"]
    assert total["macs_dense"] == 2 * (3 * net.macs - net.layers[0].macs)
    assert total["speedup"] == 1.0 and total["flops_reduction"] == 1.0
    assert total["energy_pj"] == pytest.approx(sum(total[f"energy_{c}_pj"]
                                                   for c in ENERGY_COMPONENTS))
    assert set(summary["per_phase"]) == {"fw", "bd", "wg"}
    assert summary["per_branch"]["1"]["cycles"] == summary["per_branch"]["2"]["cycles"]
    assert math.isclose(sum(v["cycles"] for v in summary["per_phase"].values()), total["cycles"])


def test_nm_weights_speed_up_forward_only_where_supported(systolic_hw: HardwareConfig) -> None:
    dense = Layer(name="d", kind="conv", cin=256, cout=64, kh=3, kw=3, stride=1, padding=0,
                  groups=1, h_in=10, w_in=10, h_out=8, w_out=8, batch=1)
    sparse = Layer(**{**dense.__dict__, "name": "s", "nm": (2, 4)})
    fw_dense = simulate_layer_phase(dense, "fw", systolic_hw)
    fw_sparse = simulate_layer_phase(sparse, "fw", systolic_hw)
    assert fw_sparse.cycles_compute < 0.6 * fw_dense.cycles_compute
    assert fw_sparse.macs_effective == fw_dense.macs_dense // 2
    assert fw_sparse.cycles_dense == fw_dense.cycles
    bd = simulate_layer_phase(sparse, "bd", systolic_hw)
    assert bd.cycles_compute == simulate_layer_phase(dense, "bd", systolic_hw).cycles_compute
    unsupported = with_overrides(systolic_hw, {"sparsity_support.nm_m": [8]})
    assert simulate_layer_phase(sparse, "fw", unsupported).cycles == fw_dense.cycles


@given(st.floats(1, 1e6), st.floats(1, 1e6), st.integers(1, 400))
def test_o_stationary_search_equals_brute_force(a: float, b: float, n_o: int) -> None:
    cap = 2.0  # half = 1 byte, so O of n_o bytes needs n_o tiles
    chosen = choose_tiling(a * 1e6, b * 1e6, float(n_o), cap)
    best = min(c * a * 1e6 + math.ceil(n_o / c) * b * 1e6 for c in range(1, n_o + 1))
    n_a, n_b = math.ceil(a * 1e6 / 1), math.ceil(b * 1e6 / 1)
    others = min(b * 1e6 + n_b * a * 1e6, a * 1e6 + n_a * b * 1e6)
    got = chosen.a_reads * a * 1e6 + chosen.b_reads * b * 1e6
    assert got == pytest.approx(min(best, others))
