"""Operand delivery on the tensor dataflow: staged operands, priced whether or not work is skipped.

The rules (docs/sparse-model.md, "Operand delivery"): A is broadcast along PE rows once per column
tile, B down PE columns once per pass of ``sync_tiles`` row tiles; every delivered word is written
into a PE register file; skipped work still has its operands staged, so masks change buffer
traffic only through what is stored compressed (weights) and through index traffic.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from accelsim.config import HardwareConfig, register_file_need, with_overrides
from accelsim.engine.masks import LayerMasks
from accelsim.engine.memory import (
    GatedForward,
    gate_extra,
    gb_operand_reads,
    memory_dense,
    memory_plan,
)
from accelsim.engine.simulator import IndexCost, simulate_job
from accelsim.engine.sparse import compute_key
from accelsim.network import PHASES, conv


def tensor_hw(fp8_hw: HardwareConfig, sync_tiles: int, **extra: object) -> HardwareConfig:
    """The FP8 preset with ``sync_tiles`` and a register file that can stage it."""
    pe = dataclasses.replace(fp8_hw.pe_array, sync_tiles=sync_tiles)
    return with_overrides(fp8_hw, {"pe_array.sync_tiles": sync_tiles, **extra,
                                   "buffers.register_file_words": register_file_need(pe).total})


def test_staged_operand_words_by_hand(fp8_hw: HardwareConfig) -> None:
    # 100 rows on 4 PE rows x 2 tiles per pass -> 13 passes; 70 columns on 4 cols x 8 lanes
    # -> 3 column tiles: A is read once per column tile, B once per pass.
    hw = tensor_hw(fp8_hw, 2, **{"pe_array.rows": 4, "pe_array.cols": 4})
    words = gb_operand_reads(100, 50, 70, 3, hw)
    assert words.a_reads == 100 * 50 * 3 * 3
    assert words.b_reads == 50 * 70 * math.ceil(100 / 8) * 3
    assert (words.psum_reads, words.writes) == (0, 100 * 70 * 3)


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 3000), st.integers(1, 600), st.integers(1, 600), st.integers(1, 64),
       st.integers(1, 64))
def test_deeper_passes_never_read_more(fp8_hw: HardwareConfig, sr: int, t: int, sc: int,
                                       shallow: int, extra: int) -> None:
    one = gb_operand_reads(sr, t, sc, 1, tensor_hw(fp8_hw, shallow))
    deeper = gb_operand_reads(sr, t, sc, 1, tensor_hw(fp8_hw, shallow + extra))
    assert deeper.a_reads == one.a_reads and deeper.b_reads <= one.b_reads


@settings(max_examples=25, deadline=None)
@given(st.sampled_from(PHASES), st.floats(0.0, 1.0), st.integers(0, 2 ** 31 - 1),
       st.integers(0, 10_000), st.integers(0, 10_000), st.sampled_from([1, 4, 16]))
def test_skipped_work_still_pays_its_operand_delivery(fp8_hw: HardwareConfig, phase: str,
                                                      density: float, seed: int,
                                                      read_bits: int, write_bits: int,
                                                      sync_tiles: int) -> None:
    """A gated job's buffer energy is the dense job's plus its index traffic, whatever it
    skips: the index's DRAM fills are buffer writes, its write-backs buffer reads."""
    hw = tensor_hw(fp8_hw, sync_tiles)
    layer = conv("c", 16, 32, 3, 1, 1, 8, 8, batch=2)
    gate = np.random.default_rng(seed).random((2, 32, 64)) < density
    index = IndexCost(bits=read_bits, read_bits=read_bits, write_bits=write_bits)
    job = simulate_job(layer, phase, hw, masks=LayerMasks(gate=gate), index=index)
    dense = simulate_job(layer, phase, hw)
    extra = read_bits * hw.energy_pj("gb_write_per_bit") + \
        write_bits * hw.energy_pj("gb_read_per_bit")
    assert np.isclose(job.energy_buffer_pj, dense.energy_buffer_pj + extra, rtol=1e-12)
    assert job.cycles_buffer >= dense.cycles_buffer


@given(st.sampled_from(["fw", "bd"]), st.floats(0.05, 1.0))
def test_compressed_weights_are_delivered_as_stored(fp8_hw: HardwareConfig, phase: str,
                                                    density: float) -> None:
    """FW and BD stage only the stored (kept) weights; the streamed operand is staged whole."""
    layer = conv("c", 16, 32, 3, 1, 1, 8, 8, batch=2)
    gemm = layer.gemm(phase)
    words = gb_operand_reads(gemm.sr, gemm.t, gemm.sc, gemm.count, fp8_hw)
    sparse = memory_plan(layer, phase, fp8_hw, weight_density=density)
    dense = memory_dense(layer, phase, fp8_hw)
    op, pe = fp8_hw.operand_bits, fp8_hw.pe_array
    # every PE a word is broadcast to stages it: A along a PE row, B down a PE column
    assert dense.rf_fill_bits == (words.a_reads * pe.cols + words.b_reads * pe.rows) * op
    assert np.isclose(sparse.rf_fill_bits,
                      (words.a_reads * pe.cols + words.b_reads * density * pe.rows) * op)
    assert np.isclose(dense.gb_read_bits - sparse.gb_read_bits,
                      words.b_reads * (1 - density) * op)


@given(st.floats(4, 2048), st.booleans())
def test_the_gate_holds_outputs_on_chip_or_spills_them(fp8_hw: HardwareConfig, kib: float,
                                                       dense_conditional: bool) -> None:
    """FW's gate needs a sample's whole Y_b: a masked gradient runs two passes (here one
    output-column tile spans all 4 output chunks, so X is staged twice) holding Y_b; a
    straight-through one runs one pass holding Y_b and Y_c. A sample's held outputs that do not
    fit in half the buffer go to DRAM and back."""
    hw = with_overrides(fp8_hw, {"buffers.global_kib": kib})
    layer = conv("c", 16, 32, 3, 1, 1, 16, 16, batch=2)
    gated = GatedForward(4, (0, 1, 2, 3), dense_conditional)
    one = memory_plan(layer, "fw", hw)
    two = memory_plan(layer, "fw", hw, gated_forward=gated)
    gemm = layer.gemm("fw")
    words = gb_operand_reads(gemm.sr, gemm.t, gemm.sc, gemm.count, hw)
    acc, op = hw.accumulator_bits, hw.operand_bits
    maps = 2 if dense_conditional else 1
    held = maps * layer.output_count * acc
    restaged = 0 if dense_conditional else words.a_reads * op
    spills = maps * 32 * 16 * 16 * acc / 8 > kib * 1024 / 2
    dram = 2 * held / 8 if spills else 0.0
    assert two.rf_fill_bits == one.rf_fill_bits + restaged * fp8_hw.pe_array.cols
    assert two.activations_bytes == one.activations_bytes + dram
    assert np.isclose(two.gb_read_bits, one.gb_read_bits + restaged + held + dram * 4)
    assert np.isclose(two.gb_write_bits, one.gb_write_bits + held + dram * 4)
    assert memory_plan(layer, "bd", hw, gated_forward=gated) == memory_plan(layer, "bd", hw)


@pytest.mark.parametrize(("cout", "chunks", "extra"), [
    (32, (0, 1, 2, 3), 1.0),     # a 128-channel tile spans all output chunks: X twice
    (512, (0, 1, 2, 3), 0.0),    # tiles = output chunks: base chunk, then the other three
    (32, (0, 0, 0, 0), 0.0),     # one shared base chunk: base pass, then the rest
    (256, (3, 2, 1, 0), 1 / 2),  # each tile spans 2 chunks: bases {3, 2}, conditional all 4
])
def test_a_masked_gate_restages_what_its_two_passes_need(fp8_hw: HardwareConfig, cout: int,
                                                         chunks: tuple[int, ...],
                                                         extra: float) -> None:
    layer = conv("c", 16, cout, 3, 1, 1, 8, 8, batch=1)
    got = gate_extra(layer, 1000, fp8_hw, GatedForward(4, chunks, dense_conditional=False))
    assert got.restaged_bits == pytest.approx(1000 * fp8_hw.operand_bits * extra)


def test_transposed_wg_stages_its_own_operands(fp8_hw: HardwareConfig) -> None:
    """WG with lanes over input channels is the GEMM dW^T = dY^T X: its buffer reads and
    register fills follow that GEMM's tiles (dY along PE rows, X down PE columns)."""
    layer = conv("c", 64, 16, 3, 1, 1, 8, 8, batch=2)
    transposed = with_overrides(fp8_hw, {"pe_array.wg_lanes": "input_channels"})
    g = layer.gemm("wg")
    words = gb_operand_reads(g.sc, g.t, g.sr, g.count, transposed)
    plan = memory_plan(layer, "wg", transposed)
    pe, op = fp8_hw.pe_array, fp8_hw.operand_bits
    assert plan.rf_fill_bits == (words.a_reads * pe.cols + words.b_reads * pe.rows) * op
    assert plan.rf_fill_bits != memory_plan(layer, "wg", fp8_hw).rf_fill_bits
    assert compute_key(transposed) != compute_key(fp8_hw)  # sweeps replay them apart


def test_a_masked_gate_restages_per_tile_of_the_fw_mapping(fp8_hw: HardwareConfig) -> None:
    """With FW's lanes an adder tree a column tile is cols (16) outputs wide, so 16-channel
    output chunks are whole tiles and the two passes stage X once in all; on output-channel
    lanes a 128-channel tile spans all 4 chunks and stages it twice."""
    layer = conv("c", 16, 64, 3, 1, 1, 8, 8, batch=1)
    gated = GatedForward(4, (0, 1, 2, 3), dense_conditional=False)
    tree = with_overrides(fp8_hw, {"pe_array.fw_lanes": "reduction",
                                   "sparsity_support.nm_m": []})
    assert gate_extra(layer, 1000, tree, gated).restaged_bits == 0
    assert gate_extra(layer, 1000, fp8_hw, gated).restaged_bits == 1000 * fp8_hw.operand_bits


def test_adder_tree_lanes_stage_a_per_cols_wide_tile(fp8_hw: HardwareConfig) -> None:
    """With FW's lanes an adder tree a column tile is cols outputs wide, so A (X) is staged once
    per 16 output channels instead of per 128; the config is its own compute."""
    layer = conv("c", 16, 256, 3, 1, 1, 8, 8, batch=1)
    tree = with_overrides(fp8_hw, {"pe_array.fw_lanes": "reduction",
                                   "sparsity_support.nm_m": []})
    g = layer.gemm("fw")
    words = gb_operand_reads(g.sr, g.t, g.sc, g.count, tree, tree.pe_array.cols)
    assert words.a_reads == g.sr * g.t * (256 // 16)
    pe, op = tree.pe_array, tree.operand_bits
    assert memory_plan(layer, "fw", tree).rf_fill_bits == \
        (words.a_reads * pe.cols + words.b_reads * pe.rows) * op
    assert compute_key(tree) != compute_key(with_overrides(fp8_hw, {"sparsity_support.nm_m": []}))
