"""Replaying traces: the issue's acceptance checks on synthetic traces (no torch needed)."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from accelsim import analysis
from accelsim.analysis import totals
from accelsim.api import replay_to_dir
from accelsim.cli import main
from accelsim.config import HardwareConfig, with_overrides
from accelsim.engine.energy import EnergyRates
from accelsim.engine.masks import BasePath, LayerMasks
from accelsim.engine.memory import GatedForward, gate_extra, gb_operand_reads
from accelsim.engine.replay import replay_trace, replay_trace_on
from accelsim.engine.simulator import JobResult, results_frame, simulate_network_dense
from accelsim.engine.sparse import compute_key, sparse_compute
from accelsim.engine.systolic import cycles_nm_systolic
from accelsim.errors import InputError
from accelsim.network import PHASES, Layer, conv, resnet18, resnet20
from accelsim.trace import TraceReader
from accelsim.trace.synth import SynthConfig, synthesize
from tests.conftest import FP8


def make_trace(tmp_path: Path, name: str, network, config: SynthConfig) -> Path:
    path = tmp_path / name
    synthesize(network, path, config)
    return path


def test_flops_accounting_reproduces_the_seeds_formula(tmp_path: Path,
                                                       fp8_hw: HardwareConfig) -> None:
    """ResNet-18, G = 4, 71.64 % gate sparsity on gated layers -> 2.16x over the gated layers."""
    trace = make_trace(tmp_path, "cdg", resnet18(batch=2, image_size=16),
                       SynthConfig(steps=1, gate_sparsity=0.7164, gate_groups=4))
    summary = replay_to_dir(trace, fp8_hw, tmp_path / "out")
    rho = 1 - 0.7164
    expected = 1 / (1 / 4 + (1 - 1 / 4) * rho)
    assert expected == pytest.approx(2.16, abs=0.005)
    assert summary["gated_layers_fw"]["flops_reduction"] == pytest.approx(expected, rel=2e-3)
    table = pd.read_csv(tmp_path / "out" / "results.csv")
    gated = table[table["layer"].str.contains(r"\.conv[12]$")]
    for phase in PHASES:  # the FLOPs view is the same in every phase
        part = gated[gated["phase"] == phase]
        assert part["macs_dense"].sum() / part["macs_effective"].sum() == pytest.approx(
            expected, rel=2e-3)


def test_scdg_needs_exactly_8x_fewer_index_bits(tmp_path: Path, fp8_hw: HardwareConfig) -> None:
    net = resnet18(batch=2, image_size=16)
    bits, bitmaps = {}, {}
    for s in (1, 8):
        trace = make_trace(tmp_path, f"s{s}", net, SynthConfig(
            steps=1, gate_sparsity=0.7, gate_groups=4, gate_group_size=s))
        summary = replay_to_dir(trace, fp8_hw, tmp_path / f"out{s}")
        bits[s], bitmaps[s] = summary["index"]["bits"], summary["index"]["bits_bitmap"]
    assert bitmaps[1] == bitmaps[8]  # the same shapes
    assert bits[1] == 8 * bits[8]


@pytest.mark.parametrize(("groups", "gradient"), [(1, "straight_through"),
                                                  (2, "straight_through"), (2, "masked")])
def test_all_ones_masks_give_exactly_the_dense_result(tmp_path: Path, fp8_hw: HardwareConfig,
                                                      groups: int, gradient: str) -> None:
    """All-ones masks skip nothing: every job is the dense job, except that FW of a gated
    layer with a base path (G = 2) still pays for its gate (it had to be computed to find it all
    ones): the same compute, plus exactly the outputs held until the gate is known and, for a
    masked gradient's two passes, X staged again where a 64-channel tile spans both chunks."""
    net = resnet20(batch=2, image_size=16)
    trace = make_trace(tmp_path, "ones", net, SynthConfig(
        steps=1, gate_sparsity=0.0, gate_groups=groups, weight_sparsity=0.0,
        gate_gradient=gradient))
    rows, storage = replay_trace(trace, fp8_hw)
    dense = simulate_network_dense(net, fp8_hw)
    assert storage == {"bits": 0, "bits_bitmap": 0}
    assert [(r.layer, r.branch, r.phase) for r in rows] == \
        [(r.layer, r.branch, r.phase) for r in dense]
    gated_fw = 0
    for got, ref in zip(rows, dense, strict=True):
        assert (got.cycles_compute, got.macs_issued, got.macs_required) == \
            (ref.cycles_compute, ref.macs_issued, ref.macs_dense)
        assert (got.cycles_dense, got.energy_dense_pj) == (ref.cycles, ref.energy_pj)
        if groups == 2 and got.phase == "fw" and net.layer(got.layer).role == "block":
            gated_fw += 1
            layer = net.layer(got.layer)
            gemm = layer.gemm("fw")
            words = gb_operand_reads(gemm.sr, gemm.t, gemm.sc, gemm.count, fp8_hw)
            chunks = (0, 1) if got.branch == 1 else (1, 0)
            straight = gradient == "straight_through"
            extra = gate_extra(layer, words.a_reads, fp8_hw, GatedForward(2, chunks, straight))
            maps = 2 if straight else 1  # Y_b and Y_c, or Y_b between the two passes
            assert extra.held_bits == maps * layer.output_count * fp8_hw.accumulator_bits
            # ResNet-20's <= 64 channels fit one 128-channel tile spanning both output chunks
            restaged = 0 if straight else words.a_reads * fp8_hw.operand_bits
            assert extra.restaged_bits == restaged
            assert extra.dram_bytes == 0  # a sample's held outputs fit in half the buffer here
            rates = EnergyRates.of(fp8_hw)
            added = restaged * (rates.gb_read + fp8_hw.pe_array.cols * rates.rf_write) + \
                extra.held_bits * (rates.gb_read + rates.gb_write)
            assert got.energy_buffer_pj == pytest.approx(ref.energy_buffer_pj + added,
                                                         rel=1e-12)
            assert got.cycles >= ref.cycles
        else:
            assert (got.cycles, got.energy_pj) == (ref.cycles, ref.energy_pj)
    assert gated_fw == (2 * 18 if groups == 2 else 0)


def test_zero_gate_removes_all_conditional_path_work(tmp_path: Path,
                                                     fp8_hw: HardwareConfig) -> None:
    net = resnet18(batch=2, image_size=8)
    trace = make_trace(tmp_path, "zeros", net, SynthConfig(
        steps=1, gate_sparsity=0.999999, gate_groups=4))
    rows, _ = replay_trace(trace, fp8_hw)
    for row in rows:
        if row.layer.endswith((".conv1", ".conv2")):
            assert row.macs_effective == row.macs_dense // 4, row  # only the base path is left


def test_24_weights_halve_forward_cycles_on_a_ws_array_like_scalesim(
        tmp_path: Path, systolic_hw: HardwareConfig) -> None:
    net = resnet18(batch=1, image_size=16)
    trace = make_trace(tmp_path, "nm", net, SynthConfig(steps=1, weight_pattern="nm:2:4"))
    rows, _ = replay_trace(trace, systolic_hw)
    pe = systolic_hw.pe_array
    checked = 0
    for row in rows:
        layer = net.layer(row.layer)
        if row.phase != "fw" or layer.role == "stem":
            continue
        g = layer.gemm("fw")
        assert row.cycles_compute == cycles_nm_systolic(g.sr, g.t, g.sc, pe.rows, pe.cols,
                                                        "ws", n=2, m=4)
        assert row.macs_issued * 2 == row.macs_dense
        checked += 1
    assert checked > 10
    fw = [r for r in rows if r.phase == "fw" and net.layer(r.layer).role != "stem"]
    ratio = sum(r.cycles_compute for r in fw) / sum(
        r.cycles_compute for r in simulate_network_dense(net, systolic_hw, branches=(1, 2))
        if r.phase == "fw" and net.layer(r.layer).role != "stem")
    assert 0.49 <= ratio < 0.56  # SCALE-Sim's fold arithmetic: about half


def gaps(tmp_path: Path, hw: HardwareConfig, s: int, compaction: bool, name: str,
         gradient: str = "masked") -> dict:
    """Summary of a 1-step ResNet-18 trace with gate groups of ``s`` channels (gates trained
    with ``gradient``: masked lets FW skip too)."""
    path = tmp_path / f"s{s}-{gradient}"
    if not path.exists():
        synthesize(resnet18(batch=4), path, SynthConfig(
            steps=1, gate_sparsity=0.7, gate_groups=4, gate_group_size=s,
            gate_gradient=gradient))
    summary = replay_to_dir(path, with_overrides(hw, {"decoder.compaction": compaction}),
                            tmp_path / name)
    return {**summary["total"], "fw": summary["per_phase"]["fw"]}


@pytest.mark.parametrize("gradient", ["straight_through", "masked"])
def test_cdg_gates_constant_over_8_channels_replay_as_scdg(tmp_path: Path, fp8_hw: HardwareConfig,
                                                          gradient: str) -> None:
    """The channel-correlation knob: a CDG trace whose gates are equal over blocks of 8
    channels holds SCDG 8x1x1's bits and gives its cycles and MACs in every job; only BD's
    decoder, which reads one index per stored gate bit, decodes 8x more."""
    net = resnet18(batch=2)
    common = dict(steps=1, gate_sparsity=0.7164, gate_groups=4, gate_gradient=gradient)
    cdg = synthesize(net, tmp_path / "cdg", SynthConfig(**common, channel_block=8))
    scdg = synthesize(net, tmp_path / "scdg", SynthConfig(**common, gate_group_size=8))
    cdg_rows, _ = replay_trace(cdg, fp8_hw)
    scdg_rows, _ = replay_trace(scdg, fp8_hw)
    assert len(cdg_rows) == len(scdg_rows)
    for a, b in zip(cdg_rows, scdg_rows, strict=True):
        assert (a.layer, a.branch, a.phase) == (b.layer, b.branch, b.phase)
        assert (a.cycles_compute, a.macs_issued, a.macs_effective) == \
            (b.cycles_compute, b.macs_issued, b.macs_effective), (a.layer, a.phase)
        assert a.cycles_decoder_stall == b.cycles_decoder_stall == 0
        if a.phase == "bd" and b.decoder_indices:
            assert a.decoder_indices > b.decoder_indices
        else:
            assert a.decoder_indices == b.decoder_indices
    independent = synthesize(net, tmp_path / "iid", SynthConfig(**common))
    rows, _ = replay_trace(independent, fp8_hw)
    assert sum(r.cycles for r in rows) > sum(r.cycles for r in cdg_rows)


def test_three_energy_efficiencies_are_named_apart(tmp_path: Path,
                                                  fp8_hw: HardwareConfig) -> None:
    """Dense-equivalent TFLOPS/W = the dense run's TFLOPS/W x energy reduction; effective
    TFLOPS/W counts only the useful MACs; on-chip leaves DRAM energy out."""
    sparse = gaps(tmp_path, fp8_hw, 8, False, "scdg-tflops")
    dense_rows = simulate_network_dense(resnet18(batch=4), fp8_hw)
    dense = totals(results_frame(dense_rows, fp8_hw), clock_mhz=fp8_hw.pe_array.clock_mhz,
                   macs_per_cycle=fp8_hw.pe_array.macs_per_cycle)
    assert sparse["energy_dense_pj"] == pytest.approx(dense["energy_pj"], rel=1e-12)
    assert sparse["tflops_per_watt_dense_equivalent"] == pytest.approx(
        dense["tflops_per_watt"] * sparse["energy_reduction"], rel=1e-12)
    assert sparse["tflops_per_watt"] == pytest.approx(
        sparse["tflops_per_watt_dense_equivalent"] / sparse["flops_reduction"], rel=1e-12)
    assert sparse["tflops_per_watt_on_chip"] == pytest.approx(
        2 * sparse["macs_effective"] / (sparse["energy_pj"] - sparse["energy_dram_pj"]))
    assert dense["tflops_per_watt_dense_equivalent"] == dense["tflops_per_watt"]


@pytest.mark.parametrize("s", [1, 8])
def test_a_straight_through_gate_gradient_keeps_fw_dense(tmp_path: Path, fp8_hw: HardwareConfig,
                                                         s: int) -> None:
    """The seeds' gate is trained straight-through: dL/dd needs Y_c everywhere, so FW issues
    every MAC of a gated layer (required = dense there), while BD and WG still skip with the
    gate; the FLOPs view is the same, and the gap decomposition names the dense forward."""
    dense_fw = gaps(tmp_path, fp8_hw, s, False, f"ste{s}", "straight_through")
    skipping = gaps(tmp_path, fp8_hw, s, False, f"masked{s}", "masked")
    rows = pd.read_csv(tmp_path / f"ste{s}" / "results.csv")
    fw = rows[rows["phase"] == "fw"]
    assert (fw["macs_issued"] == fw["macs_dense"]).all()
    assert (fw["macs_required"] == fw["macs_dense"]).all()
    assert (fw["macs_effective"] < fw["macs_dense"]).any()
    other = rows[rows["phase"] != "fw"]
    assert (other["macs_required"] == other["macs_effective"]).all()
    assert (other["macs_issued"] < other["macs_dense"]).any()
    assert dense_fw["flops_reduction"] == pytest.approx(skipping["flops_reduction"])
    # SCDG's 8-channel groups skip whole 8-lane units in FW when the gradient lets them
    assert dense_fw["speedup"] < skipping["speedup"] if s == 8 else \
        dense_fw["speedup"] <= skipping["speedup"]
    peak = fp8_hw.pe_array.macs_per_cycle
    gap = analysis.gap_decomposition(rows, ("phase",), macs_per_cycle=peak)
    by_phase = gap.set_index("phase")
    assert by_phase.loc["fw", "estimator_cycles"] > 0
    assert by_phase.loc["bd", "estimator_cycles"] == by_phase.loc["wg", "estimator_cycles"] == 0


def test_structure_gains_where_queues_may_drift(tmp_path: Path,
                                                fp8_hw: HardwareConfig) -> None:
    """8-lane lock-step PEs: with the preset's one-step operand stage every step waits for the
    busiest of 256 queues, so SCDG's aligned groups gain little over CDG; a deeper stage lets
    queues drift and widens SCDG's lead, and compaction's dispatcher (which fills idle queues
    at every step) widens it most though it packs CDG's lanes too (FW and WG), at a decoder
    cost (more decoded indices and index energy)."""
    assert fp8_hw.pe_array.vector_width == 8 and fp8_hw.decoder.skip_granularity == "vector"
    assert fp8_hw.pe_array.stage_steps == 1
    cdg = gaps(tmp_path, fp8_hw, 1, False, "cdg")
    scdg = gaps(tmp_path, fp8_hw, 8, False, "scdg")
    assert cdg["flops_reduction"] == pytest.approx(scdg["flops_reduction"], rel=0.01)
    lead = scdg["speedup_efficiency"] - cdg["speedup_efficiency"]
    assert 0 < lead < 0.05
    deep = with_overrides(fp8_hw, {"pe_array.stage_steps": 16,
                                   "buffers.register_file_words": 1024})
    deep_lead = (gaps(tmp_path, deep, 8, False, "scdg-16")["speedup_efficiency"]
                 - gaps(tmp_path, deep, 1, False, "cdg-16")["speedup_efficiency"])
    assert deep_lead > lead + 0.02
    scdg_packed = gaps(tmp_path, fp8_hw, 8, True, "scdg-c")
    cdg_packed = gaps(tmp_path, fp8_hw, 1, True, "cdg-c")
    packed_lead = scdg_packed["speedup_efficiency"] - cdg_packed["speedup_efficiency"]
    assert packed_lead > deep_lead + 0.02
    assert cdg_packed["speedup_efficiency"] > cdg["speedup_efficiency"] + 0.1
    # Packing decodes every active lane instead of one index per active unit (FW).
    assert cdg_packed["fw"]["decoder_indices"] > 2 * cdg["fw"]["decoder_indices"]
    assert cdg_packed["fw"]["energy_index_pj"] > 2 * cdg["fw"]["energy_index_pj"]
    slow = gaps(tmp_path, with_overrides(fp8_hw, {"decoder.compaction_indices_per_cycle": 1}),
                1, True, "cdg-slow")
    assert slow["cycles_decoder_stall"] > 0 and slow["cycles"] > cdg_packed["cycles"]


@st.composite
def nested_masks(draw: st.DrawFn):
    layer = conv("c", 8, draw(st.sampled_from([8, 16])), 3, 1, 1, 4, 4,
                 draw(st.integers(1, 2)))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    m, f, k = layer.output_pixels, layer.cout, layer.k_per_group
    gate = rng.random((m, f)) < draw(st.floats(0.1, 0.9))
    weight = rng.random((f, k)) < draw(st.floats(0.1, 0.9))
    drop_gate = rng.random((m, f)) < draw(st.floats(0.0, 0.5))
    drop_weight = rng.random((f, k)) < draw(st.floats(0.0, 0.5))
    return layer, gate, weight, gate & ~drop_gate, weight & ~drop_weight


@settings(max_examples=60, deadline=None)
@given(nested_masks(), st.sampled_from(PHASES), st.booleans(),
       st.sampled_from(["element", "vector", "pe_row"]), st.integers(1, 4))
def test_more_skipping_never_costs_more_cycles(fp8_hw: HardwareConfig, masks, phase: str,
                                               compaction: bool, granularity: str,
                                               sync: int) -> None:
    """For the same schedule (same hardware, sparse mode), a mask with fewer ones never costs
    more compute cycles or more issued MACs."""
    layer, gate, weight, fewer_gate, fewer_weight = masks
    hw = with_overrides(fp8_hw, {"decoder.compaction": compaction, "pe_array.rows": 2,
                                 "pe_array.cols": 2, "decoder.skip_granularity": granularity,
                                 "pe_array.sync_tiles": sync})
    base = BasePath.of_layer(layer, 2, (0, 1))
    more = sparse_compute(layer, phase, LayerMasks(gate=gate[:, :, None], base=base,
                                                   weight=weight, gating_groups=2), hw)
    less = sparse_compute(layer, phase, LayerMasks(gate=fewer_gate[:, :, None], base=base,
                                                   weight=fewer_weight, gating_groups=2), hw)
    assert less.cycles_compute - less.cycles_decoder_stall <= \
        more.cycles_compute - more.cycles_decoder_stall
    assert less.macs_issued <= more.macs_issued
    assert less.macs_effective <= more.macs_effective


def test_energy_sums_and_identical_across_runs_and_workers(tmp_path: Path,
                                                           fp8_hw: HardwareConfig) -> None:
    trace = make_trace(tmp_path, "multi", resnet20(batch=2, image_size=8), SynthConfig(
        steps=3, gate_sparsity=0.6, gate_groups=2, weight_sparsity=0.5,
        weight_update_every=2))
    one, storage_one = replay_trace(trace, fp8_hw, workers=1)
    again, _ = replay_trace(trace, fp8_hw, workers=1)
    two, storage_two = replay_trace(trace, fp8_hw, workers=2)
    assert one == again == two and storage_one == storage_two
    assert sorted({r.step for r in one}) == [0, 1, 2]
    declared = [f.name for f in dataclasses.fields(JobResult)]
    for row in one:  # rows made by JobResult.of, reused ones included
        assert list(row.__dict__) == declared and row == JobResult(**row.row())
        parts = (row.energy_mac_pj + row.energy_rf_pj + row.energy_buffer_pj + row.energy_dram_pj
                 + row.energy_index_pj + row.energy_static_pj)
        assert row.energy_pj == pytest.approx(parts, rel=1e-12)


@pytest.mark.parametrize("config", [
    SynthConfig(steps=4, gate_sparsity=0.6, gate_groups=2, weight_sparsity=0.5,
                weight_update_every=2),
    SynthConfig(steps=3, gate_sparsity=0.7, gate_groups=4, gate_group_size=4),
    SynthConfig(steps=3, weight_sparsity=0.6, weight_pattern="block:4x4",
                weight_update_every=2),
    SynthConfig(steps=3, weight_pattern="nm:2:4"),
], ids=["cdg+weights", "scdg", "block", "2:4"])
def test_warm_caches_give_the_cold_result_at_every_step(tmp_path: Path, fp8_hw: HardwareConfig,
                                                        config: SynthConfig) -> None:
    """A replay keeps what depends only on weights, base paths and shapes across steps; every
    step must equal replaying it alone with fresh caches."""
    from accelsim.engine.replay import Replayer
    trace = make_trace(tmp_path, "t", resnet20(batch=2, image_size=8), config)
    warm = Replayer(trace, fp8_hw)
    for step in warm.reader.steps:
        assert warm.replay_step(step) == Replayer(trace, fp8_hw).replay_step(step)


def test_a_replay_keeps_only_the_latest_weight_mask_of_each_layer(
        tmp_path: Path, fp8_hw: HardwareConfig) -> None:
    """Weights stored at every step must not pile up over a long replay: a replay keeps what
    the latest stored weight mask of each layer and branch gives, and nothing older."""
    from accelsim.engine.replay import Replayer
    trace = make_trace(tmp_path, "t", resnet20(batch=2, image_size=8), SynthConfig(
        steps=4, weight_sparsity=0.6, weight_update_every=1))
    replayer = Replayer(trace, fp8_hw)
    for step in replayer.reader.steps:
        replayer.replay_step(step)
    pairs = {(item.name, branch) for item in replayer.reader.layers
             for branch in range(1, replayer.reader.branches + 1)}
    weighted = {(item.name, branch) for item in replayer.reader.layers if item.weight is not None
                for branch in range(1, replayer.reader.branches + 1)}
    cache = replayer.cache
    assert weighted and {slot for slot, _ in cache.weights.items()} == weighted
    assert {key[2] for _, (key, _) in cache.weights.items()} == {3}
    # the structure derived from the weight masks: the latest mask's, one per layer and branch
    assert {slot for slot, _ in cache.structure.items()} == weighted
    assert {source[2] for _, (source, _) in cache.structure.items()} == {3}
    # rows of jobs without a gate: one set a layer and branch (of the one config replayed)
    rows = [key for key, _ in cache.rows.items()]
    assert {(name, branch) for _, name, branch in rows} <= pairs
    assert {config for config, _, _ in rows} == {0}


@pytest.mark.parametrize("config", [SynthConfig(steps=1, gate_sparsity=0.7),
                                    SynthConfig(steps=1, weight_sparsity=0.8)],
                         ids=["packed gate", "weight"])
def test_a_decoder_without_a_usable_format_is_named(tmp_path: Path, fp8_hw: HardwareConfig,
                                                    config: SynthConfig) -> None:
    """Gates priced from their packed bits and weights priced from bools fail alike when
    decoder.formats holds no format that can store them (unstructured masks, group bitmaps)."""
    from accelsim.engine.replay import Replayer
    trace = make_trace(tmp_path, "t", resnet20(batch=2, image_size=8), config)
    hw = with_overrides(fp8_hw, {"decoder.formats": ["group_bitmap", "nm"]})
    with pytest.raises(InputError, match=r"no format in decoder.formats \[.group_bitmap., .nm.\] "
                                         r"can store the (gate|weight) mask of layer .*add bitmap"):
        Replayer(trace, hw).replay_step(0)


def test_simulate_trace_cli_writes_the_views(tmp_path: Path) -> None:
    trace = make_trace(tmp_path, "t", resnet20(batch=2, image_size=8),
                       SynthConfig(steps=2, gate_sparsity=0.7, gate_groups=2))
    result = CliRunner().invoke(main, ["simulate", str(trace), "--hw", str(FP8), "--out",
                                       str(tmp_path / "o"), "--workers", "2"])
    assert result.exit_code == 0, result.output
    assert "speedup efficiency" in result.output and "index reduction" in result.output
    table = pd.read_csv(tmp_path / "o" / "results.csv")
    for column in ("macs_dense", "macs_effective", "macs_issued", "cycles", "cycles_dense",
                   "speedup", "utilization", "index_bits", "index_bits_bitmap",
                   "energy_dense_pj", "cycles_decoder_stall", "step", "trace"):
        assert column in table.columns
    assert set(table["step"]) == {0, 1}
    summary = json.loads((tmp_path / "o" / "summary.json").read_text())
    for key in ("flops_reduction", "speedup", "energy_reduction", "speedup_efficiency"):
        assert key in summary["total"]
        assert key in summary["per_phase"]["bd"] and key in summary["per_branch"]["2"]
    assert summary["index"]["index_reduction"] >= 1


def corrupt(trace: Path, how: str) -> None:
    step_json = trace / "steps" / "step-00000001.json"
    data = json.loads(step_json.read_text())
    if how == "missing layer":
        data["masks"] = [e for e in data["masks"] if e["layer"] != "layer1.0.conv2"]
        step_json.write_text(json.dumps(data))
    elif how == "shape mismatch":
        entry = next(e for e in data["masks"] if e["layer"] == "layer1.0.conv2")
        entry["shape"][0] += 1
        step_json.write_text(json.dumps(data))
    else:
        entry = next(e for e in data["masks"] if e["layer"] == "layer1.0.conv2")
        blob = bytearray((trace / "steps" / "step-00000001.bin").read_bytes())
        blob[entry["offset"] + entry["length"] // 2] ^= 0xFF
        (trace / "steps" / "step-00000001.bin").write_bytes(bytes(blob))


@pytest.mark.parametrize("how", ["missing layer", "shape mismatch", "corrupt mask"])
def test_bad_traces_fail_with_step_and_layer_named(tmp_path: Path, how: str) -> None:
    trace = make_trace(tmp_path, "bad", resnet20(batch=2, image_size=8),
                       SynthConfig(steps=2, gate_sparsity=0.5, gate_groups=2))
    corrupt(trace, how)
    result = CliRunner().invoke(main, ["simulate", str(trace), "--hw", str(FP8), "--out",
                                       str(tmp_path / "o")])
    assert result.exit_code == 2, result.output
    line = result.output.strip()
    assert "\n" not in line and "Traceback" not in line
    assert "step 1" in line and "layer1.0.conv2" in line, line
    assert not (tmp_path / "o" / "results.csv").exists()


def test_grouped_conv_with_declared_nm(fp8_hw: HardwareConfig,
                                       systolic_hw: HardwareConfig) -> None:
    """A declared N:M pattern on a grouped conv: FW shrinks per group; BD and WG stay dense."""
    layer = conv("g", 64, 64, 3, 1, 1, 8, 8, 1, groups=8)
    layer = Layer(**{**layer.__dict__, "nm": (2, 4)})
    for hw in (fp8_hw, systolic_hw):
        fw = sparse_compute(layer, "fw", LayerMasks(nm=(2, 4)), hw)
        assert fw.macs_issued == layer.macs // 2 == fw.macs_effective
        assert fw.cycles_compute < fw.cycles_compute_dense
        for phase in ("bd", "wg"):
            job = sparse_compute(layer, phase, LayerMasks(nm=(2, 4)), hw)
            assert job.cycles_compute == job.cycles_compute_dense
            assert job.macs_issued == layer.macs


def test_nm_multiplexers_on_the_tensor_array(fp8_hw: HardwareConfig) -> None:
    from accelsim.engine.pe_array import cycles_dense_tensor
    from accelsim.engine.systolic import nm_reduction_length

    layer = conv("c", 32, 16, 3, 1, 1, 6, 6, 2)
    rng = np.random.default_rng(0)
    scores = rng.random((16, 8, 4, 3, 3))
    keep = np.argsort(scores, axis=2) >= 2  # exactly 2 of every 4 input channels
    weight = keep.reshape(16, 32, 3, 3).reshape(16, -1)
    job = sparse_compute(layer, "fw", LayerMasks(weight=weight, nm=(2, 4)), fp8_hw)
    g, pe = layer.gemm("fw"), fp8_hw.pe_array
    t = nm_reduction_length(g.t, 2, 4)
    assert job.cycles_compute == cycles_dense_tensor(g.sr, t, g.sc, pe.rows, pe.cols,
                                                     pe.vector_width, pe.pipeline_latency)
    assert job.macs_issued == g.sr * g.sc * t and job.macs_effective == layer.macs // 2
    gate = rng.random((layer.output_pixels, 16)) < 0.3
    gated = sparse_compute(layer, "fw", LayerMasks(gate=gate[:, :, None], weight=weight,
                                                   nm=(2, 4)), fp8_hw)
    assert gated.cycles_compute <= job.cycles_compute and gated.decoder_indices > 0


def test_transposable_nm_weights_shrink_backward_data_too(tmp_path: Path,
                                                          fp8_hw: HardwareConfig) -> None:
    """Transposable 2:4 weights are 2:4 along BD's reduction (output channels) as well, so BD
    runs t' = F/2 steps on the multiplexers, by the formula; plain 2:4 gives BD no such
    structure. FW is the same for both; WG, reducing over pixels, keeps its unit rule (whose
    results differ only because transposable masks never prune a whole 8-channel unit)."""
    from accelsim.engine.pe_array import cycles_dense_tensor
    from accelsim.engine.systolic import nm_reduction_length

    net = resnet20(batch=2, image_size=16)
    rows = {}
    for pattern in ("nm:2:4", "nmt:2:4"):
        trace = make_trace(tmp_path, pattern.replace(":", "-"), net,
                           SynthConfig(steps=1, weight_pattern=pattern))
        rows[pattern] = {(r.layer, r.branch, r.phase): r for r in replay_trace(trace, fp8_hw)[0]}
    pe = fp8_hw.pe_array
    checked = 0
    for key, plain in rows["nm:2:4"].items():
        both = rows["nmt:2:4"][key]
        layer = net.layer(key[0])
        if key[2] == "fw" or layer.role == "stem":
            assert (both.cycles_compute, both.macs_issued) == \
                (plain.cycles_compute, plain.macs_issued), key
        elif key[2] == "bd":
            g = layer.gemm("bd")
            t = nm_reduction_length(g.t, 2, 4)
            assert both.cycles_compute == cycles_dense_tensor(
                g.sr, t, g.sc, pe.rows, pe.cols, pe.vector_width, pe.pipeline_latency) * g.count
            assert both.macs_issued == g.sr * g.sc * t * g.count
            assert both.cycles_compute < plain.cycles_compute
            checked += 1
    assert checked > 10


def test_dense_gradient_steps_count_every_weight_of_an_nm_layer(fp8_hw: HardwareConfig) -> None:
    """At a dense-gradient step WG computes every weight's gradient: a recorded 2:4 mask is not
    a declared pattern there (FW still keeps 2 of 4)."""
    from accelsim.engine.sparse import effective_macs

    layer = conv("c", 32, 16, 3, 1, 1, 6, 6, 2)
    keep = np.argsort(np.random.default_rng(1).random((16, 8, 4, 3, 3)), axis=2) >= 2
    masks = LayerMasks(weight=keep.reshape(16, -1), nm=(2, 4), dense_weight_gradient=True)
    assert effective_macs(layer, masks, "wg") == layer.macs
    assert effective_macs(layer, masks, "fw") == layer.macs // 2


def test_a_masked_gate_costs_one_pass_where_fw_cannot_skip(fp8_hw: HardwareConfig) -> None:
    """Hardware whose FW does not skip with the gate computes the conditional path everywhere:
    one pass holding Y_b and Y_c, whatever the estimator."""
    from accelsim.engine.replay import _gated_forward
    from accelsim.trace.manifest import TraceLayer, gate_spec_for

    layer = conv("c", 16, 32, 3, 1, 1, 8, 8, 2, role="block")
    item = TraceLayer(layer, gate_spec_for(layer, 1, 2, ((0, 1), (1, 0)), "masked"))
    no_fw = with_overrides(fp8_hw, {"sparsity_support.gate": ["bd", "wg"]})
    assert _gated_forward(item, 1, fp8_hw) == GatedForward(2, (0, 1), False)
    assert _gated_forward(item, 2, no_fw) == GatedForward(2, (1, 0), True)


def test_a_declared_transposable_pattern_the_masks_break_is_not_exploited(
        tmp_path: Path, fp8_hw: HardwareConfig) -> None:
    """Masks that are 2:4 only along input channels, in a trace that declares nmt:2:4, get
    FW's multiplexers but not BD's: the replay checks both axes."""
    net = resnet20(batch=2, image_size=16)
    plain = make_trace(tmp_path, "plain", net, SynthConfig(steps=1, weight_pattern="nm:2:4"))
    declared = tmp_path / "declared"
    shutil.copytree(plain, declared)
    manifest = declared / "manifest.json"
    manifest.write_text(manifest.read_text().replace('"nm:2:4"', '"nmt:2:4"'))
    want, _ = replay_trace(plain, fp8_hw)
    got, _ = replay_trace(declared, fp8_hw)
    assert [(r.cycles_compute, r.macs_issued) for r in got] == \
        [(r.cycles_compute, r.macs_issued) for r in want]


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 2 ** 31 - 1), st.sampled_from([(1, 4), (2, 4), (3, 4), (2, 8), (5, 8)]),
       st.integers(1, 3), st.integers(1, 3))
def test_transposable_nm_masks_keep_n_of_m_on_both_axes(seed: int, nm: tuple[int, int],
                                                        blocks_out: int, blocks_in: int) -> None:
    from accelsim.trace.synth import transposable_nm_mask

    n, m = nm
    mask = transposable_nm_mask(np.random.default_rng(seed), (m * blocks_out, m * blocks_in, 3, 3),
                                n, m)
    cout, cin = mask.shape[:2]
    along_in = mask.reshape(cout, cin // m, m, 3, 3).sum(axis=2)
    along_out = mask.reshape(cout // m, m, cin, 3, 3).sum(axis=1)
    assert (along_in == n).all() and (along_out == n).all()


def test_dense_gradient_steps_and_momentum_branches(tmp_path: Path,
                                                    fp8_hw: HardwareConfig) -> None:
    """Regrowth steps replay WG dense without reading the weight index; a BYOL/MoCo target
    branch runs the forward pass only."""
    import shutil

    net = resnet20(batch=2, image_size=8)
    trace = make_trace(tmp_path, "w", net, SynthConfig(steps=1, weight_sparsity=0.6))
    rows, _ = replay_trace(trace, fp8_hw)
    sparse_wg = {r.layer: r for r in rows if r.phase == "wg" and r.branch == 1}
    step_json = trace / "steps" / "step-00000000.json"
    data = json.loads(step_json.read_text())
    data["stats"]["dense_weight_gradient"] = True
    step_json.write_text(json.dumps(data))
    rows, _ = replay_trace(trace, fp8_hw)
    for row in rows:
        if row.phase == "wg" and net.layer(row.layer).role != "stem":
            assert row.macs_effective == row.macs_dense, row.layer
            assert row.index_bits == 0 and row.traffic_indices_bytes == 0
            assert row.cycles_compute >= sparse_wg[row.layer].cycles_compute
    momentum = tmp_path / "byol"
    shutil.copytree(trace, momentum)
    manifest = json.loads((momentum / "manifest.json").read_text())
    manifest["producer"]["ssl"] = "byol"
    (momentum / "manifest.json").write_text(json.dumps(manifest))
    rows, _ = replay_trace(momentum, fp8_hw)
    assert {r.phase for r in rows if r.branch == 2} == {"fw"}
    assert {r.phase for r in rows if r.branch == 1} == {"fw", "bd", "wg"}


def test_every_config_key_is_known_to_be_read_by_compute_or_not() -> None:
    """A new hardware key must be classified: in compute_key (the compute reads it, so shared
    replays must differ in it) or known never to be read by a job's compute. A key that is
    neither fails here until someone decides."""
    from accelsim.config import iter_keys
    from accelsim.engine.sparse import ComputeKey

    in_key = {f"pe_array.{name}" for name in ComputeKey.__dataclass_fields__
              if name not in ("decoder", "sparsity_support", "compress_sparse")}
    in_key.add("dram.compress_sparse")  # BD's weight index copy depends on it
    in_key_sections = ("decoder.", "sparsity_support.")
    not_read = {"name", "description", "version", "kind", "static_power_mw",
                "pe_array.precision", "pe_array.clock_mhz", "pe_array.accumulator_precision",
                "pe_array.operand_reads_per_mac", "pe_array.psum_accesses_per_mac"}
    not_read_sections = ("buffers.", "dram.", "energy.", "vector_unit.")
    for key, _, _ in iter_keys():
        compute = key in in_key or key.startswith(in_key_sections)
        other = (key in not_read or key.startswith(not_read_sections)) and key not in in_key
        assert compute != other, f"{key}: classify it as read by compute or not"


# Overrides that compute never reads (memory, energy, clock, precision) and one that it reads.
NOT_COMPUTE = [{}, {"dram.bandwidth_gbps": 3.2, "dram.energy_pj_per_bit": 5.0},
               {"buffers.global_kib": 64.0, "pe_array.clock_mhz": 1000.0},
               {"energy.index_decode.pj": 0.5, "static_power_mw": 0.0,
                "pe_array.precision": "fp16", "dram.double_buffering": False}]
COMPUTE = {"pe_array.sync_tiles": 1}


@pytest.mark.parametrize("config", [
    SynthConfig(steps=2, gate_sparsity=0.6, gate_groups=4),
    SynthConfig(steps=2, gate_sparsity=0.6, gate_groups=2, gate_group_size=8,
                weight_sparsity=0.5, weight_update_every=1),
    SynthConfig(steps=2, weight_pattern="nm:2:4"),
], ids=["cdg", "scdg-weights", "nm24"])
def test_configs_that_share_their_compute_replay_once_with_the_same_rows(
        tmp_path: Path, fp8_hw: HardwareConfig, config: SynthConfig,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Replaying several configs together gives each the rows of its own replay; the configs
    whose compute_key is equal share one compute per job (found as often as for one config)."""
    trace = make_trace(tmp_path, "t", resnet20(batch=2, image_size=16), config)
    hws = [with_overrides(fp8_hw, o) for o in NOT_COMPUTE] + [with_overrides(fp8_hw, COMPUTE)]
    assert len({compute_key(hw) for hw in hws}) == 2 and len(set(hws)) == len(hws)
    from accelsim.engine.cache import ReplayCache

    calls = {"n": 0}
    original = ReplayCache.compute

    def counted(self: ReplayCache, *args: object) -> object:
        calls["n"] += 1
        return original(self, *args)

    monkeypatch.setattr(ReplayCache, "compute", counted)
    replay_trace(trace, fp8_hw)
    alone = calls["n"]
    assert alone > 0
    calls["n"] = 0
    together = replay_trace_on(trace, hws)
    assert calls["n"] == 2 * alone  # once for the four memory/energy configs, once for sync 1
    for hw, (rows, storage) in zip(hws, together, strict=True):
        expected_rows, expected_storage = replay_trace(trace, hw)
        assert rows == expected_rows and storage == expected_storage


def test_a_symmetric_momentum_loss_replays_four_passes_with_one_update(
        tmp_path: Path, fp8_hw: HardwareConfig) -> None:
    """BYOL's symmetric loss runs online and target on both views: branches 3 (online, FW, BD,
    WG) and 4 (target, FW only) cost what 1 and 2 cost on their masks, the optimizer sums the
    two online gradients and the momentum update still runs once per step."""
    from accelsim.engine.vector import EMA_OPS, parameter_count

    net = resnet20(batch=4)
    base = dict(steps=1, gate_sparsity=0.7, gate_groups=4, ssl="byol")
    one = make_trace(tmp_path, "asymmetric", net, SynthConfig(**base))
    two = make_trace(tmp_path, "symmetric", net, SynthConfig(**base, symmetric=True))
    rows_one, _ = replay_trace(one, fp8_hw)
    rows_two, _ = replay_trace(two, fp8_hw)
    frame_one, frame_two = results_frame(rows_one), results_frame(rows_two)
    assert sorted(frame_two["branch"].unique()) == [1, 2, 3, 4]
    phases = frame_two.groupby("branch")["phase"].agg(set)
    assert phases[3] == {"fw", "bd", "wg"} and phases[2] == phases[4] == {"fw"}
    key = ["layer", "phase"]
    for branch, encoder in ((3, 1), (4, 2)):
        mirrored = frame_two[frame_two.branch == branch].set_index(key)
        own = frame_two[frame_two.branch == encoder].set_index(key)
        assert mirrored["macs_dense"].equals(own["macs_dense"])
        assert (mirrored["macs_effective"] < mirrored["macs_dense"]).any()  # its own gates
    # branches 1 and 2 are the asymmetric trace's, but for the optimizer's second gradient
    first = ["layer", "phase", "branch", "cycles_compute", "macs_effective"]
    asym = frame_one.sort_values(first[:3])[first].reset_index(drop=True)
    sym = frame_two[frame_two.branch <= 2].sort_values(first[:3])[first].reset_index(drop=True)
    pd.testing.assert_frame_equal(asym, sym)
    wg_one = frame_one[(frame_one.branch == 1) & (frame_one.phase == "wg")]
    wg_two = frame_two[(frame_two.branch == 1) & (frame_two.phase == "wg")]
    assert wg_two["dram_bytes_non_mac"].sum() > wg_one["dram_bytes_non_mac"].sum()
    # the EMA rides on branch 2's FW only: 2 ops per parameter, not on branch 4
    params = sum(parameter_count(layer) for layer in net.layers)
    ema = (frame_two[frame_two.branch == 2]["non_mac_ops"].sum()
           - frame_two[frame_two.branch == 4]["non_mac_ops"].sum())
    assert ema == EMA_OPS * params
    assert frame_two["macs_dense"].sum() == 2 * frame_one["macs_dense"].sum()


def test_a_momentum_trace_with_other_branch_counts_is_refused(tmp_path: Path,
                                                              fp8_hw: HardwareConfig) -> None:
    trace = make_trace(tmp_path, "simclr", resnet20(batch=2), SynthConfig(steps=1,
                                                                          branches=1))
    manifest = json.loads((trace / "manifest.json").read_text())
    manifest["producer"]["ssl"] = "moco"
    (trace / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(InputError, match=r"branches: a moco trace records 2 branches"):
        replay_trace(trace, fp8_hw)
    with pytest.raises(InputError, match="a symmetric loss is BYOL's or MoCo's"):
        SynthConfig(symmetric=True)


def test_bd_reads_the_weights_transposed_and_pays_for_a_copy_where_the_format_needs_one(
        tmp_path: Path, fp8_hw: HardwareConfig) -> None:
    """decoder.bd_weight_index: copy. A row-laid format (csr, N:M metadata) needs a transposed
    copy for BD, so a layer that runs BD stores the cheaper of a grid alone and the format plus
    its copy, and BD reads the copy; the stem (no BD) keeps its own format; free prices the
    cheapest single format, as if the decoder read it transposed at no cost."""
    from accelsim.engine.indices import training_weight_index
    from accelsim.sparsity import index_bits

    net = resnet20(batch=2, image_size=8, in_channels=4)  # 4 input channels: a 2:4 stem
    trace = make_trace(tmp_path, "nm", net, SynthConfig(steps=1, weight_pattern="nm:2:4",
                                                       prune_layers=("*",)))
    free = with_overrides(fp8_hw, {"decoder.bd_weight_index": "free"})
    _, copy_storage = replay_trace(trace, fp8_hw)
    _, free_storage = replay_trace(trace, free)
    reader = TraceReader(trace)
    pruned = [item for item in reader.layers if item.weight is not None]
    sizes = {item.name: int(np.prod(item.weight.shape)) for item in pruned}
    nm_bits = {name: size // 4 * 3 for name, size in sizes.items()}  # ceil(log2 C(4, 2)) = 3
    stem = net.layers[0].name
    assert stem in sizes  # pruned too: it runs no BD, so it keeps its N:M metadata
    assert free_storage["bits"] == 2 * sum(nm_bits.values())  # two branches
    # 2:4 metadata plus its copy (6 bits per 4 weights) lose to a bitmap (4) where BD runs
    assert copy_storage["bits"] == 2 * sum(nm_bits[n] if n == stem else sizes[n] for n in sizes)
    assert copy_storage["bits_bitmap"] == free_storage["bits_bitmap"]
    # a BD that neither skips with the weights nor reads them compressed needs no copy
    fw_only = with_overrides(fp8_hw, {"sparsity_support.weight": ["fw"],
                                      "dram.compress_sparse": False})
    rows, fw_only_storage = replay_trace(trace, fw_only)
    assert fw_only_storage == free_storage
    assert all(r.index_bits == 0 for r in rows if r.phase == "bd")
    # a symmetric loss's branches 3 and 4 reuse their encoders' weights: stored once
    one = make_trace(tmp_path, "byol", net, SynthConfig(steps=1, weight_pattern="nm:2:4",
                                                         ssl="byol"))
    two = make_trace(tmp_path, "byol-sym", net, SynthConfig(
        steps=1, weight_pattern="nm:2:4", ssl="byol", symmetric=True))
    assert replay_trace(one, fp8_hw)[1] == replay_trace(two, fp8_hw)[1]
    # a very sparse mask: csr plus its transposed csr beat the bitmap; BD reads the copy
    rng = np.random.default_rng(0)
    mask = rng.random((64, 64, 3, 3)) < 0.02
    nnz = int(mask.sum())
    stored = training_weight_index(mask, "element", fp8_hw, "w", bd_reads=True, nnz=nnz)
    transposed = np.ascontiguousarray(mask.reshape(64, -1).T)
    assert stored.index.fmt == "csr" and stored.bd.fmt == "csr"
    assert stored.bd.bits == index_bits(transposed, "csr") != stored.index.bits
    assert stored.bits < mask.size
    no_bd = training_weight_index(mask, "element", fp8_hw, "w", bd_reads=False, nnz=nnz)
    assert no_bd.bd.bits == 0 and no_bd.index == stored.index
    grid = rng.random((8, 8)) < 0.3
    block_mask = np.broadcast_to(grid.repeat(8, 0).repeat(8, 1)[:, :, None, None],
                                 (64, 64, 3, 3)).copy()
    blocks = training_weight_index(block_mask, "block:8x8", fp8_hw, "w", bd_reads=True,
                                   nnz=int(block_mask.sum()))
    assert blocks.index.fmt == "group_bitmap" and blocks.bd.bits == 0  # a grid: no copy
    # the BD job of the replay reads the copy
    sparse = make_trace(tmp_path, "csr", net, SynthConfig(steps=1, weight_sparsity=0.98))
    rows, _ = replay_trace(sparse, with_overrides(fp8_hw, {"dram.compress_sparse": True}))
    by_job = {(r.layer, r.branch, r.phase): r for r in rows}
    layer = next(i.name for i in TraceReader(sparse).layers
                 if i.weight is not None and i.name != stem)
    fw, bd = by_job[(layer, 1, "fw")], by_job[(layer, 1, "bd")]
    assert fw.index_bits > 0 and bd.index_bits > 0 and fw.index_bits != bd.index_bits
