"""The vector unit's non-MAC work: exact pass formulas, and the invariants a whole step keeps."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from accelsim.analysis import aggregate, totals
from accelsim.config import HardwareConfig, build_hardware, with_overrides
from accelsim.engine.energy import EnergyRates
from accelsim.engine.memory import combine_cycles, cycles_buffer, cycles_dram
from accelsim.engine.replay import replay_trace, replay_trace_on
from accelsim.engine.simulator import results_frame, simulate_network_dense
from accelsim.engine.vector import (
    NonMacDuties,
    activation_bytes,
    job_duties,
    non_mac_work,
    parameter_count,
)
from accelsim.errors import InputError
from accelsim.network import builtin_network, conv, resnet18, resnet20
from accelsim.trace import open_trace
from accelsim.trace.synth import SynthConfig, synthesize


def _frame(rows: list, hw: HardwareConfig) -> pd.DataFrame:
    return results_frame(rows, hw)


def _totals(rows: list, hw: HardwareConfig) -> dict:
    return totals(_frame(rows, hw), clock_mhz=hw.pe_array.clock_mhz,
                  macs_per_cycle=hw.pe_array.macs_per_cycle)


def test_the_presets_model_non_mac_work(fp8_hw: HardwareConfig,
                                        systolic_hw: HardwareConfig) -> None:
    assert fp8_hw.vector_unit.lanes > 0 and fp8_hw.vector_unit.fused
    assert systolic_hw.vector_unit.lanes > 0 and not systolic_hw.vector_unit.fused


def test_a_fused_residual_conv_costs_its_formula(fp8_hw: HardwareConfig) -> None:
    """conv2 of a block: BN + add + ReLU (+ fanout to the next block). Fused FW: statistics
    (2 ops/element) on the array's stream, then one pass of 3 ops/element reading Y and the
    shortcut, writing the output."""
    layer = resnet20(batch=4).layer("layer1.0.conv2")
    assert layer.post_ops == ("batchnorm", "add", "relu", "fanout")
    hw, e, b = fp8_hw, layer.output_count, activation_bytes(fp8_hw)
    work = non_mac_work(layer, NonMacDuties(forward=True), hw)
    lanes = hw.vector_unit.lanes
    # a fanout costs nothing forward; a stem has no add: one read, one write
    stem = resnet20(batch=4).layer("conv1")
    assert stem.post_ops == ("batchnorm", "relu", "fanout")
    assert non_mac_work(stem, NonMacDuties(forward=True), hw).dram_bytes == \
        2 * stem.output_count * b
    assert work.stream_cycles == math.ceil(2 * e / lanes)
    moved = 3 * e * b  # Y and the shortcut read, the output written
    bits = 8 * moved
    assert work.pass_cycles == combine_cycles(math.ceil(3 * e / lanes), cycles_buffer(
        bits, bits, hw), cycles_dram(moved, hw), hw.dram.double_buffering)
    assert work.ops == 5 * e and work.dram_bytes == moved
    rates = EnergyRates.of(hw)
    assert work.energy_vector_pj == pytest.approx(5 * e * hw.energy_pj("vector_op"))
    assert work.energy_buffer_pj == pytest.approx(bits * (rates.gb_read + rates.gb_write))
    assert work.energy_dram_pj == pytest.approx(moved * 8 * rates.dram_bits)
    # The streamed statistics hide under the MACs while those take longer, and not after.
    assert work.cycles(work.stream_cycles) == work.pass_cycles
    assert work.cycles(0) == work.pass_cycles + work.stream_cycles


@pytest.mark.parametrize("fused", [True, False])
def test_an_imagenet_stem_pays_for_its_max_pool(fp8_hw: HardwareConfig, fused: bool) -> None:
    """The 7x7 stem's BN + ReLU + 3x3/2 max-pool: FW writes the full ReLU output (ReLU's mask)
    and the pooled map with one byte per maximum's position, 8 compares per pooled value;
    backward reads the pooled gradient and the positions and scatters a full-size gradient;
    the stash keeps the pooled map and the positions besides."""
    hw = with_overrides(fp8_hw, {"vector_unit.fused": fused})
    net = builtin_network("resnet18-imagenet", batch=2, image_size=64)
    stem = net.layers[0]
    plain = dataclasses.replace(stem, post_ops=("batchnorm", "relu", "fanout"))
    e, b, pooled = stem.output_count, activation_bytes(hw), stem.maxpooled_count
    assert pooled == 2 * 64 * 16 * 16 and e == 4 * pooled
    fw = non_mac_work(stem, NonMacDuties(forward=True), hw)
    fw_plain = non_mac_work(plain, NonMacDuties(forward=True), hw)
    assert fw.ops - fw_plain.ops == pytest.approx(8 * pooled)  # 8 compares per 3x3 window
    # backward: a fanout of pooled gradients costs a quarter of a full-size one, fused or not
    ops = non_mac_work(stem, NonMacDuties(backward=True), hw).ops
    ops_plain = non_mac_work(plain, NonMacDuties(backward=True), hw).ops
    passes = 2 if fused else 1  # fused: every op rides on BN's two passes
    assert ops - ops_plain == pytest.approx(passes * (e + pooled - e))  # + maxpool, fanout / 4
    # fused, the pooled map is written by the one pass; unfused, its own pass reads Y again
    assert fw.dram_bytes - fw_plain.dram_bytes == pytest.approx(
        pooled * (b + 1) + (0 if fused else e * b))
    bd = non_mac_work(stem, NonMacDuties(backward=True), hw)
    bd_plain = non_mac_work(plain, NonMacDuties(backward=True), hw)
    # the gradients arrive (two, from the fanout) at the pooled size, with the positions
    arriving = 2 * pooled * b + pooled
    assert bd.dram_bytes < bd_plain.dram_bytes
    if not fused:  # fanout (pooled size), maxpool backward (scatter), relu, BN passes
        assert bd.dram_bytes == pytest.approx(
            3 * pooled * b + (pooled * b + pooled + e * b) + 3 * e * b + 2 * e * b + 3 * e * b)
    else:
        assert bd.dram_bytes == pytest.approx(2 * (arriving + e * b + e * b) + e * b)
    stash = non_mac_work(stem, NonMacDuties(stash=True), hw).stash_bytes
    assert stash == non_mac_work(plain, NonMacDuties(stash=True), hw).stash_bytes + pooled * (
        b + 1)


def test_unfused_passes_move_more_and_never_cost_fewer_cycles(fp8_hw: HardwareConfig) -> None:
    unfused = with_overrides(fp8_hw, {"vector_unit.fused": False})
    for layer in resnet20(batch=4).layers:
        for duties in (NonMacDuties(forward=True), NonMacDuties(backward=True),
                       NonMacDuties(backward=True, gate_group_size=8)):
            fused = non_mac_work(layer, duties, fp8_hw)
            apart = non_mac_work(layer, duties, unfused)
            assert apart.dram_bytes >= fused.dram_bytes
            assert apart.cycles(0) >= fused.cycles(0)


def test_unfused_backward_of_a_residual_conv_costs_its_formula(fp8_hw: HardwareConfig) -> None:
    """conv2 unfused, backward: fanout sum (1; read 2 / write 1), ReLU (1; 2 / 1), BN reduce
    (3; 2 / 0), BN gradient (3; 2 / 1): 8 ops and 11 tensors moved per element; the add is
    free (both its inputs take the same gradient)."""
    hw = with_overrides(fp8_hw, {"vector_unit.fused": False})
    layer = resnet20(batch=4).layer("layer1.1.conv2")
    e, b = layer.output_count, activation_bytes(hw)
    work = non_mac_work(layer, NonMacDuties(backward=True), hw)
    assert work.ops == 8 * e and work.dram_bytes == 11 * e * b
    fused = non_mac_work(layer, NonMacDuties(backward=True), fp8_hw)
    # fused: two passes of (3 + ReLU + fanout) ops, each reading both gradients, the mask and
    # Y; the second writes dY and the shortcut's gradient
    assert fused.ops == 10 * e and fused.dram_bytes == (4 + 4 + 2) * e * b


def test_optimizer_traffic_scales_with_the_master_precision(fp8_hw: HardwareConfig) -> None:
    """SGD with momentum reads the master weights, momentum and gradient and writes the
    weights, momentum and the FP8 copy: (2m + 2s + 2b) bytes per parameter."""
    layer = resnet18(batch=2).layer("layer3.0.conv1")
    params = layer.weight_count + 2 * layer.cout
    assert parameter_count(layer) == params
    duties = NonMacDuties(optimizer="sgd")
    for master, width in (("fp32", 4), ("fp16", 2)):
        hw = with_overrides(fp8_hw, {"vector_unit.master_precision": master})
        assert non_mac_work(layer, duties, hw).dram_bytes == params * (2 * width + 2 * 4 + 2)
    adam = non_mac_work(layer, NonMacDuties(optimizer="adam"), fp8_hw).dram_bytes
    assert adam == params * (2 * 4 + 2 * 8 + 2 * 1)  # two state tensors
    # SimCLR's two branches each wrote a gradient: the step reads and sums both
    both = non_mac_work(layer, NonMacDuties(optimizer="sgd", gradients=2), fp8_hw)
    assert both.dram_bytes == params * (2 * 4 + 2 * 4 + 3) and both.ops == 4 * params
    # LARS: a norm pass over weights and both gradients (writing their sum), then the update
    lars = non_mac_work(layer, NonMacDuties(optimizer="lars", gradients=2), fp8_hw)
    assert lars.dram_bytes == params * ((4 + 2 + 1) + (4 + 4 + 1) + (4 + 4 + 1))
    assert lars.ops == 6 * params


def test_a_momentum_encoder_update_moves_its_formula(fp8_hw: HardwareConfig) -> None:
    """theta_t = tau theta_t + (1 - tau) theta: read both master copies, write the target's and
    its FP8 copy."""
    layer = resnet18(batch=2).layer("layer4.0.conv2")
    params = parameter_count(layer)
    work = non_mac_work(layer, NonMacDuties(ema=True), fp8_hw)
    assert work.ops == 2 * params and work.dram_bytes == params * (2 * 4 + 4 + 1)


def test_stash_holds_every_conv_output_and_its_bn_output(tmp_path: Path,
                                                         fp8_hw: HardwareConfig) -> None:
    net = resnet20(batch=2, image_size=8)
    trace = tmp_path / "t"
    synthesize(net, trace, SynthConfig(steps=1, gate_sparsity=0.5))
    rows, _ = replay_trace(trace, fp8_hw)
    table = _frame(rows, fp8_hw)
    b = activation_bytes(fp8_hw)
    for branch in (1, 2):
        rows = table[(table["branch"] == branch) & (table["phase"] == "fw")].set_index("layer")
        for layer in net.layers:
            # the conv output (BN's input) and the BN/ReLU output backward reads (a projection
            # shortcut's BN output only enters the add: its backward needs no operand), and
            # Y_c where a gate has a base path
            kept = 1 + (bool(layer.post_ops) and layer.role != "downsample")
            gated = layer.name.endswith((".conv1", ".conv2"))
            assert rows.loc[layer.name, "stash_bytes"] == (kept + gated) * layer.output_count * b
        # the bound: every conv output and every BN output backward reads
        bn_outputs = sum(layer.output_count for layer in net.layers
                         if "batchnorm" in layer.post_ops and layer.role != "downsample")
        assert rows["stash_bytes"].sum() >= b * (
            sum(layer.output_count for layer in net.layers) + bn_outputs)


def _momentum_pair(tmp_path: Path) -> tuple[Path, Path]:
    net = resnet20(batch=2, image_size=8)
    paths = []
    for ssl in ("simclr", "byol"):
        path = tmp_path / ssl
        synthesize(net, path, SynthConfig(steps=1, gate_sparsity=0.5, ssl=ssl))
        paths.append(path)
    return paths[0], paths[1]


def test_a_momentum_step_updates_its_target_encoder_and_simclr_does_not(
        tmp_path: Path, fp8_hw: HardwareConfig) -> None:
    simclr, byol = _momentum_pair(tmp_path)
    table = {name: _frame(replay_trace(path, fp8_hw)[0], fp8_hw).set_index(
        ["branch", "layer", "phase"]) for name, path in (("simclr", simclr), ("byol", byol))}
    net = resnet20(batch=2, image_size=8)
    for layer in net.layers:
        extra = (table["byol"].loc[(2, layer.name, "fw"), "non_mac_ops"]
                 - table["simclr"].loc[(2, layer.name, "fw"), "non_mac_ops"])
        assert extra == 2 * parameter_count(layer)  # the EMA update: 2 ops per parameter
        # the target encoder stores nothing for a backward it does not run
        assert table["byol"].loc[(2, layer.name, "fw"), "stash_bytes"] == 0
    byol_wg = table["byol"].xs("wg", level="phase")["non_mac_ops"]
    for layer in net.layers[1:]:  # BYOL's one online branch: one gradient, 3 SGD ops
        assert byol_wg.loc[(1, layer.name)] == 3 * parameter_count(layer)
    wg = table["simclr"].xs("wg", level="phase")["non_mac_ops"]
    for layer in net.layers:  # one SGD step (3 ops per parameter + summing the 2 gradients)
        assert wg.loc[(1, layer.name)] - wg.loc[(2, layer.name)] == 4 * parameter_count(layer)


def test_non_mac_work_does_not_depend_on_the_masks(tmp_path: Path,
                                                   fp8_hw: HardwareConfig) -> None:
    """Two traces of one network with different gate sparsities: every job's vector operations,
    DRAM bytes and stash are equal; unfused, where the only streamed work is the gate's short FW
    arithmetic and it hides under the MACs of both, so are its cycles."""
    net = resnet20(batch=2, image_size=8)
    unfused = with_overrides(fp8_hw, {"vector_unit.fused": False})
    tables = []
    for sparsity in (0.2, 0.9):
        path = tmp_path / f"s{sparsity}"
        synthesize(net, path, SynthConfig(steps=1, gate_sparsity=sparsity, gate_groups=2,
                                          gate_group_size=8))
        for hw in (fp8_hw, unfused):
            tables.append(_frame(replay_trace(path, hw)[0], hw))
    for a, b in ((tables[0], tables[2]), (tables[1], tables[3])):
        for column in ("non_mac_ops", "dram_bytes_non_mac", "stash_bytes"):
            assert (a[column] == b[column]).all()
    assert (tables[1]["cycles_non_mac"] == tables[3]["cycles_non_mac"]).all()
    # the dense network has no gate to compute: gated layers' work is longer, the others' equal
    gated = tables[1]["layer"].str.contains(r"\.conv[12]$")
    on_gated = tables[1][gated & tables[1]["phase"].isin(["fw", "bd"])]
    assert (on_gated["cycles_non_mac"] > on_gated["cycles_non_mac_dense"]).all()
    assert (tables[1].loc[~gated, "cycles_non_mac"] == tables[1].loc[
        ~gated, "cycles_non_mac_dense"]).all()


@settings(max_examples=16, deadline=None)
@given(sparsity=st.floats(0.05, 0.95), group=st.sampled_from([1, 8]),
       weights=st.sampled_from([None, 0.5, 0.9]), fused=st.booleans(),
       lanes=st.sampled_from([8, 64, 1024]), ssl=st.sampled_from(["simclr", "byol"]))
def test_whole_step_speedup_never_exceeds_the_mac_only_speedup(
        tmp_path_factory: pytest.TempPathFactory, fp8_hw: HardwareConfig, sparsity: float,
        group: int, weights: float | None, fused: bool, lanes: int, ssl: str) -> None:
    path = tmp_path_factory.mktemp("t") / "t"
    synthesize(resnet20(batch=2, image_size=8), path,
               SynthConfig(steps=1, gate_sparsity=sparsity, gate_groups=2,
                           gate_group_size=group, weight_sparsity=weights, ssl=ssl))
    hw = with_overrides(fp8_hw, {"vector_unit.fused": fused, "vector_unit.lanes": lanes})
    rows = replay_trace(path, hw)[0]
    total = _totals(rows, hw)
    # Non-MAC work is never shorter than the dense network's (a gate adds its arithmetic), so
    # it pulls the step's speedup towards 1, or below it, never beyond the MACs'.
    assert total["speedup_step"] <= max(1.0, total["speedup"]) + 1e-12
    assert total["cycles_non_mac"] >= total["cycles_non_mac_dense"] > 0
    # the sweeps' per-group ratio is the same figure
    assert aggregate(_frame(rows, hw), [])["speedup_step"].item() == pytest.approx(
        total["speedup_step"], rel=1e-12)


def test_sparse_updates_can_lift_the_step_beyond_the_macs(tmp_path: Path,
                                                          fp8_hw: HardwareConfig) -> None:
    """The one exception to the bound: with vector_unit.sparse_updates a pruned step also
    saves optimizer work, which the MAC-only speedup does not count."""
    path = synthesize(resnet20(batch=2, image_size=8), tmp_path / "t",
                      SynthConfig(steps=1, weight_sparsity=0.9))
    hw = with_overrides(fp8_hw, {"vector_unit.sparse_updates": True})
    total = _totals(replay_trace(path, hw)[0], hw)
    assert total["speedup_step"] > total["speedup"] > 1.0


def test_the_first_layer_takes_its_post_ops_backward_in_wg(tmp_path: Path,
                                                           fp8_hw: HardwareConfig) -> None:
    """The stem has no BD job: its BN/ReLU backward (which WG's dY needs) rides on its WG,
    besides the optimizer on branch 1."""
    net = resnet20(batch=2, image_size=8)
    path = synthesize(net, tmp_path / "t", SynthConfig(steps=1))
    table = _frame(replay_trace(path, fp8_hw)[0], fp8_hw).set_index(["branch", "layer",
                                                                     "phase"])
    stem = net.layers[0]
    backward = non_mac_work(stem, NonMacDuties(backward=True), fp8_hw)
    assert (2, "conv1", "bd") not in table.index
    assert table.loc[(2, "conv1", "wg"), "non_mac_ops"] == backward.ops > 0
    assert table.loc[(2, "layer1.0.conv1", "wg"), "non_mac_ops"] == 0


def test_without_lanes_the_step_is_the_mac_step(fp8_hw: HardwareConfig) -> None:
    hw = with_overrides(fp8_hw, {"vector_unit.lanes": 0})
    total = _totals(simulate_network_dense(resnet20(batch=2, image_size=8), hw), hw)
    assert total["cycles_non_mac"] == 0 and total["energy_non_mac_pj"] == 0
    assert total["cycles_step"] == total["cycles"] and total["speedup_step"] == 1.0


def test_non_mac_energy_includes_its_static_energy(fp8_hw: HardwareConfig) -> None:
    net = resnet20(batch=2, image_size=8)
    rows = simulate_network_dense(net, fp8_hw)
    rates = EnergyRates.of(fp8_hw)
    for row in rows:
        work = non_mac_work(net.layer(row.layer), _duties_of(row), fp8_hw)
        assert row.energy_non_mac_pj == pytest.approx(
            work.energy_pj + rates.static(row.cycles_non_mac))
        assert row.energy_non_mac_static_pj == pytest.approx(rates.static(row.cycles_non_mac))
        assert row.energy_non_mac_pj == pytest.approx(  # the components sum to the total
            row.energy_non_mac_vector_pj + row.energy_non_mac_buffer_pj
            + row.energy_non_mac_dram_pj + row.energy_non_mac_static_pj)


def _duties_of(row) -> NonMacDuties:
    net = resnet20(batch=2, image_size=8)
    index = [layer.name for layer in net.layers].index(row.layer)
    phases = ("fw", "wg") if index == 0 else ("fw", "bd", "wg")
    return job_duties(row.phase, phases, runs_backward=True,
                      optimizer="sgd" if row.branch == 1 else "", gradients=2)


def test_a_layer_without_post_ops_carries_only_its_stash_and_optimizer(
        fp8_hw: HardwareConfig) -> None:
    layer = conv("c", 16, 16, 3, 1, 1, 8, 8, 2)
    assert layer.post_ops == ()
    assert non_mac_work(layer, NonMacDuties(forward=True), fp8_hw).ops == 0
    assert non_mac_work(layer, NonMacDuties(forward=True, stash=True),
                        fp8_hw).stash_bytes == layer.output_count * activation_bytes(fp8_hw)


def test_vector_lanes_need_a_vector_op_energy(fp8_hw: HardwareConfig) -> None:
    raw = fp8_hw.to_dict()
    del raw["energy"]["vector_op"]
    with pytest.raises(InputError, match=r"energy\.vector_op: missing required key"):
        build_hardware(raw, source="x.yaml")
    raw["vector_unit"]["lanes"] = 0
    assert build_hardware(raw, source="x.yaml").vector_unit.lanes == 0


def test_an_older_trace_of_a_builtin_resnet_gets_its_post_ops(tmp_path: Path) -> None:
    net = resnet20(batch=2, image_size=8)
    path = synthesize(net, tmp_path / "t", SynthConfig(steps=1, gate_sparsity=0.5))
    manifest = json.loads((path / "manifest.json").read_text())
    assert [layer["post_ops"] for layer in manifest["layers"]] == [
        list(layer.post_ops) for layer in net.layers]
    manifest["version"] = "1.2"
    for layer in manifest["layers"]:
        del layer["post_ops"]
    (path / "manifest.json").write_text(json.dumps(manifest))
    assert [item.layer.post_ops for item in open_trace(path).layers] == [
        layer.post_ops for layer in net.layers]
    manifest["producer"]["network"] = "my-net"
    (path / "manifest.json").write_text(json.dumps(manifest))
    assert all(item.layer.post_ops == () for item in open_trace(path).layers)
    # a 1.3 trace says what it has: no post_ops means none, even for a built-in network
    manifest["producer"]["network"], manifest["version"] = "resnet20", "1.3"
    (path / "manifest.json").write_text(json.dumps(manifest))
    assert all(item.layer.post_ops == () for item in open_trace(path).layers)


def test_an_unknown_post_op_is_refused(tmp_path: Path) -> None:
    path = synthesize(resnet20(batch=2, image_size=8), tmp_path / "t", SynthConfig(steps=1))
    manifest = json.loads((path / "manifest.json").read_text())
    manifest["layers"][1]["post_ops"] = ["batchnorm", "gelu"]
    (path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(InputError, match=r"layers\[1\].*post_ops.*'gelu'"):
        open_trace(path)


def test_synth_refuses_a_momentum_method_with_one_branch() -> None:
    with pytest.raises(InputError, match="--ssl: byol needs --branches 2"):
        SynthConfig(ssl="byol", branches=1)
    with pytest.raises(InputError, match="--optimizer"):
        SynthConfig(optimizer="rmsprop")


def test_the_gate_costs_its_formula(fp8_hw: HardwareConfig) -> None:
    """A gated conv with BN (fused): FW's standardise/compare hides under the MACs (4 ops per
    gated value, SCDG 1 + 4/8) and Y_c is stored (E x b); backward reads Y_c inside BN's
    gradient pass, then dY, Y and Y_c, writing the base path's gradient (E x b). Unfused the
    first gradient pass is its own, reading dY, Y and Y_c."""
    layer = resnet18(batch=2).layer("layer2.1.conv1")
    e, b, lanes = layer.output_count, activation_bytes(fp8_hw), fp8_hw.vector_unit.lanes
    plain = non_mac_work(layer, NonMacDuties(forward=True, stash=True), fp8_hw)
    for group, ops in ((1, 4.0), (8, 1.5)):
        gated = non_mac_work(layer, NonMacDuties(forward=True, stash=True,
                                                       gate_group_size=group), fp8_hw)
        assert gated.ops - plain.ops == pytest.approx(ops * e)
        assert gated.stream_cycles - plain.stream_cycles == math.ceil(ops * e / lanes)
        assert gated.dram_bytes - plain.dram_bytes == e * b
        assert gated.stash_bytes - plain.stash_bytes == e * b
    back = non_mac_work(layer, NonMacDuties(backward=True), fp8_hw)
    back_gated = non_mac_work(layer, NonMacDuties(backward=True, gate_group_size=8),
                              fp8_hw)
    assert back_gated.dram_bytes - back.dram_bytes == (1 + 3 + 1) * e * b
    assert back_gated.ops - back.ops == 8 * e
    assert back_gated.pass_cycles > back.pass_cycles
    unfused = with_overrides(fp8_hw, {"vector_unit.fused": False})
    apart = non_mac_work(layer, NonMacDuties(backward=True), unfused)
    apart_gated = non_mac_work(layer, NonMacDuties(backward=True, gate_group_size=8), unfused)
    assert apart_gated.dram_bytes - apart.dram_bytes == (3 + 3 + 1) * e * b


def test_sparse_updates_touch_only_the_kept_weights(tmp_path: Path,
                                                    fp8_hw: HardwareConfig) -> None:
    """With vector_unit.sparse_updates the optimizer's traffic follows the weight mask's
    density; without it every parameter is updated, pruned or not. The dense network updates
    all of them in both cases."""
    net = resnet20(batch=2, image_size=8)
    path = synthesize(net, tmp_path / "t", SynthConfig(steps=1, weight_sparsity=0.75))
    sparse = with_overrides(fp8_hw, {"vector_unit.sparse_updates": True})
    tables = [_frame(replay_trace(path, hw)[0], hw).set_index(["branch", "layer", "phase"])
              for hw in (fp8_hw, sparse)]
    b = activation_bytes(fp8_hw)
    # SGD: master and momentum read and written, both branches' gradients read, the copy written
    per_param = 2 * 4 + 2 * 4 + 2 * b + b
    for layer in net.layers:
        every, kept = (t.loc[(1, layer.name, "wg")] for t in tables)
        assert kept["cycles_non_mac_dense"] == every["cycles_non_mac_dense"]
        if layer.role == "stem":  # not pruned
            assert kept["dram_bytes_non_mac"] == every["dram_bytes_non_mac"]
            continue
        saved = layer.weight_count - round(layer.weight_count * 0.25)
        assert every["dram_bytes_non_mac"] - kept["dram_bytes_non_mac"] == pytest.approx(
            saved * per_param, rel=1e-3)


def test_the_pooling_and_shortcut_layers_cost_their_formulas(fp8_hw: HardwareConfig) -> None:
    """The last conv2 (BN, add, ReLU, pool) and a projection shortcut (BN alone), fused and
    unfused, forward and backward: ops per element and tensors moved, exactly."""
    net = resnet20(batch=4)
    last, shortcut = net.layer("layer3.2.conv2"), net.layer("layer2.0.shortcut")
    assert last.post_ops == ("batchnorm", "add", "relu", "pool")
    unfused = with_overrides(fp8_hw, {"vector_unit.fused": False})
    b = activation_bytes(fp8_hw)
    e, pooled = last.output_count, last.batch * last.cout
    fw, bd = NonMacDuties(forward=True), NonMacDuties(backward=True)
    # fused FW: statistics streamed; one pass of 4 ops reading Y and the shortcut, writing the
    # output and the pooled values
    assert non_mac_work(last, fw, fp8_hw).dram_bytes == (3 * e + pooled) * b
    assert non_mac_work(last, fw, fp8_hw).ops == 6 * e
    # unfused FW: statistics 1, normalise 1/1, add 2/1, ReLU 1/1, pool 1/pooled
    assert non_mac_work(last, fw, unfused).dram_bytes == (9 * e + pooled) * b
    # fused backward: two BN passes of 3 + ReLU + pool ops, each reading the pooled gradient,
    # ReLU's output and Y; the second writes dY and the shortcut's gradient
    assert non_mac_work(last, bd, fp8_hw).ops == 10 * e
    assert non_mac_work(last, bd, fp8_hw).dram_bytes == (2 * (pooled + 2 * e) + 2 * e) * b
    # unfused backward: pool (pooled / 1), ReLU (2 / 1), BN (2 / 0, 2 / 1); the add is free
    assert non_mac_work(last, bd, unfused).dram_bytes == (pooled + 9 * e) * b
    es = shortcut.output_count
    for hw in (fp8_hw, unfused):  # BN alone: reduce (2 / 0), gradient (2 / 1), 6 ops
        work = non_mac_work(shortcut, bd, hw)
        assert work.ops == 6 * es and work.dram_bytes == 5 * es * b


def test_an_add_alone_hands_its_gradient_on(fp8_hw: HardwareConfig) -> None:
    """Nothing changes a gradient after a bare add: no backward pass, and BN before it writes
    dY alone (both of the add's inputs read the arriving gradient)."""
    base = conv("c", 16, 16, 3, 1, 1, 8, 8, 2)
    e, b = base.output_count, activation_bytes(fp8_hw)
    bare = dataclasses.replace(base, post_ops=("add",))
    assert non_mac_work(bare, NonMacDuties(backward=True), fp8_hw).ops == 0
    bn_add = dataclasses.replace(base, post_ops=("batchnorm", "add"))
    assert non_mac_work(bn_add, NonMacDuties(backward=True), fp8_hw).dram_bytes == 5 * e * b


def test_lars_and_a_momentum_method_read_one_gradient(fp8_hw: HardwareConfig) -> None:
    layer = resnet18(batch=2).layer("layer3.0.conv1")
    params = parameter_count(layer)
    lars = non_mac_work(layer, NonMacDuties(optimizer="lars"), fp8_hw)
    assert lars.dram_bytes == params * ((4 + 1) + (4 + 4 + 1) + (4 + 4 + 1))
    assert lars.ops == 5 * params
    assert job_duties("wg", ("fw", "bd", "wg"), runs_backward=True, optimizer="sgd",
                      gradients=1).gradients == 1


@pytest.mark.parametrize("post_ops, problem", [
    (("relu", "batchnorm"), "out of order or repeated"),
    (("batchnorm", "batchnorm"), "out of order or repeated"),
    (("pool", "fanout"), "cannot hold both pool and fanout"),
    (("gelu",), "must be drawn from"),
    ("relu", "must be a list of operations"),
])
def test_post_ops_must_be_a_known_ordered_list(post_ops: object, problem: str) -> None:
    with pytest.raises(InputError, match=problem):
        dataclasses.replace(conv("c", 16, 16, 3, 1, 1, 8, 8, 2), post_ops=post_ops)


def test_a_masked_gate_gradient_stores_y_c_only_where_the_gate_is_open(
        tmp_path: Path, fp8_hw: HardwareConfig) -> None:
    """With a masked estimator the gate's gradient needs Y_c only where the gate is open: with
    dram.compress_sparse FW stores that share (the gate's index is already stored) and backward
    reads it back; without compression, or with a straight-through gradient, all of Y_c."""
    net = resnet20(batch=2, image_size=8)
    tables = {}
    for gradient in ("masked", "straight_through"):
        path = synthesize(net, tmp_path / gradient, SynthConfig(
            steps=1, gate_sparsity=0.75, gate_groups=2, gate_gradient=gradient))
        hws = [with_overrides(fp8_hw, {"dram.compress_sparse": compress})
               for compress in (True, False)]
        # both configs share their compute: one replay prices both (as a sweep does)
        for compress, hw, (rows, _) in zip((True, False), hws, replay_trace_on(path, hws),
                                           strict=True):
            tables[gradient, compress] = _frame(rows, hw).set_index(
                ["branch", "layer", "phase"])
        assert (tables[gradient, True]["cycles_non_mac_dense"]
                == tables[gradient, False]["cycles_non_mac_dense"]).all()
    b = activation_bytes(fp8_hw)
    for layer in net.layers:
        if not layer.name.endswith((".conv1", ".conv2")):
            continue
        full_y_c = layer.output_count * b
        key = (1, layer.name, "fw")
        # FW stores Y_c once (stash and traffic); fused backward reads it twice (inside BN's
        # gradient pass, then in the gate's gradient pass)
        for column, phase, times in (("stash_bytes", "fw", 1), ("dram_bytes_non_mac", "fw", 1),
                                     ("dram_bytes_non_mac", "bd", 2)):
            at = (1, layer.name, phase)
            saved = tables["masked", False].loc[at, column] - tables["masked", True].loc[
                at, column]
            assert saved == pytest.approx(times * 0.75 * full_y_c)
            assert tables["straight_through", True].loc[at, column] == \
                tables["straight_through", False].loc[at, column]
        assert tables["masked", True].loc[key, "stash_bytes"] < tables["masked", False].loc[
            key, "stash_bytes"]


def test_compressed_y_c_needs_the_gate_index_stored(tmp_path: Path,
                                                     fp8_hw: HardwareConfig) -> None:
    """Hardware whose BD and WG do not skip with the gate stores no gate index: Y_c stays
    dense; unfused, the first gradient pass reads the compressed share too."""
    net = resnet20(batch=2, image_size=8)
    path = synthesize(net, tmp_path / "t", SynthConfig(steps=1, gate_sparsity=0.75,
                                                       gate_groups=2, gate_gradient="masked"))
    e, b = net.layer("layer1.0.conv1").output_count, activation_bytes(fp8_hw)

    def bd_bytes(overrides: dict) -> float:
        hw = with_overrides(fp8_hw, overrides)
        table = _frame(replay_trace(path, hw)[0], hw).set_index(["branch", "layer", "phase"])
        return table.loc[(1, "layer1.0.conv1", "bd"), "dram_bytes_non_mac"]

    fw_only = {"sparsity_support.gate": ["fw"]}
    assert bd_bytes({**fw_only, "dram.compress_sparse": True}) == bd_bytes(
        {**fw_only, "dram.compress_sparse": False})
    unfused = {"vector_unit.fused": False}
    saved = bd_bytes({**unfused, "dram.compress_sparse": False}) - bd_bytes(
        {**unfused, "dram.compress_sparse": True})
    assert saved == pytest.approx(2 * 0.75 * e * b)  # both gradient passes read Y_c


def test_optimizer_arithmetic_is_priced_at_the_master_precision(fp8_hw: HardwareConfig) -> None:
    """energy.vector_op_<master_precision> prices the optimizer's and EMA's operations; BN's
    stay at vector_op; without the key the optimizer falls back to vector_op."""
    layer = resnet18(batch=2).layer("layer3.0.conv1")
    params = parameter_count(layer)
    sgd = non_mac_work(layer, NonMacDuties(optimizer="sgd"), fp8_hw)
    assert sgd.energy_vector_pj == pytest.approx(3 * params * fp8_hw.energy_pj("vector_op_fp32"))
    bn = non_mac_work(layer, NonMacDuties(backward=True), fp8_hw)
    assert bn.energy_vector_pj == pytest.approx(bn.ops * fp8_hw.energy_pj("vector_op"))
    raw = fp8_hw.to_dict()
    del raw["energy"]["vector_op_fp32"]
    plain = build_hardware(raw, source="x.yaml")
    assert non_mac_work(layer, NonMacDuties(optimizer="sgd"), plain).energy_vector_pj == \
        pytest.approx(3 * params * plain.energy_pj("vector_op"))
    raw["energy"]["vector_op_fp64"] = {"pj": 1.0, "source": "x"}
    with pytest.raises(InputError, match=r"energy\.vector_op_fp64"):
        build_hardware(raw, source="x.yaml")
    # a bf16 master weight takes vector_op_bf16, for the optimizer, LARS and the EMA alike
    raw["energy"] = {k: v for k, v in raw["energy"].items() if k != "vector_op_fp64"}
    raw["energy"]["vector_op_bf16"] = {"pj": 0.7, "source": "x"}
    raw["vector_unit"]["master_precision"] = "bf16"
    bf16 = build_hardware(raw, source="x.yaml")
    for duties, ops in ((NonMacDuties(optimizer="sgd"), 3), (NonMacDuties(optimizer="lars"), 5),
                        (NonMacDuties(ema=True), 2)):
        assert non_mac_work(layer, duties, bf16).energy_vector_pj == pytest.approx(
            ops * params * 0.7)
