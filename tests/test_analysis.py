"""The gap decomposition's accounting: its parts add up, and it blames sparsity for nothing the
dense run loses too."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from accelsim import analysis
from accelsim.api import replay_to_dir
from accelsim.config import load_hardware
from accelsim.network import resnet20
from accelsim.trace.synth import SynthConfig, synthesize
from tests.conftest import FP8, SYSTOLIC


@st.composite
def job_rows(draw: st.DrawFn) -> pd.DataFrame:
    """Job tables that keep the engine's orderings (effective <= required <= issued <= dense,
    stalls within compute, compute within cycles), with any cycle counts."""
    rows = []
    for layer in range(draw(st.integers(1, 6))):
        for phase in ("fw", "bd", "wg"):
            dense = draw(st.integers(1, 10**9))
            issued = draw(st.integers(0, dense))
            required = draw(st.integers(0, issued))
            effective = draw(st.integers(0, required))
            compute_dense = draw(st.integers(1, 10**7))
            cycles_dense = compute_dense + draw(st.integers(0, 10**6))
            compute = draw(st.integers(0, 2 * compute_dense))
            stall = draw(st.integers(0, compute))
            cycles = compute + draw(st.integers(0, 10**6))
            rows.append({"layer": f"l{layer}", "phase": phase, "macs_dense": dense,
                         "macs_effective": effective, "macs_required": required,
                         "macs_issued": issued, "cycles_compute": compute,
                         "cycles_decoder_stall": stall, "cycles": cycles,
                         "cycles_dense": cycles_dense, "cycles_compute_dense": compute_dense,
                         "sparsity_supported": draw(st.integers(0, 1))})
    return pd.DataFrame(rows)


@settings(max_examples=200, deadline=None)
@given(job_rows())
def test_the_parts_add_up_to_the_lost_cycles(rows: pd.DataFrame) -> None:
    for by in (("phase",), ("layer", "phase"), ()):
        table = analysis.gap_decomposition(rows, by, macs_per_cycle=64)
        parts = table[list(analysis.GAP_CAUSES)].sum(axis=1)
        assert np.allclose(parts, table["lost_cycles"], rtol=1e-9, atol=1e-3)
        ideal = table["cycles_dense"] / table["flops_reduction"]
        assert np.allclose(table["lost_cycles"], table["cycles"] - ideal, rtol=1e-9, atol=1e-3)
        for cause in ("estimator_cycles", "unexploited_cycles", "lockstep_cycles",
                      "decoder_cycles"):
            assert (table[cause] >= 0).all(), cause


@settings(max_examples=100, deadline=None)
@given(job_rows(), st.integers(1, 16))
def test_a_sparse_run_that_scales_the_dense_one_loses_nothing(rows: pd.DataFrame,
                                                               keep: int) -> None:
    """A run that does keep/16 of every job's MACs in keep/16 of its dense compute and memory
    time loses nothing, however badly the dense mapping fills the array: partial tiles and
    pipeline fill belong to the dense mapping, not to sparsity."""
    scaled = rows.copy()
    scaled["macs_dense"] = rows["macs_dense"] * 16
    scaled["cycles_compute_dense"] = rows["cycles_compute_dense"] * 16
    scaled["cycles_dense"] = rows["cycles_dense"] * 16
    for column in ("macs_effective", "macs_required", "macs_issued"):
        scaled[column] = rows["macs_dense"] * keep
    scaled["cycles_compute"] = rows["cycles_compute_dense"] * keep
    scaled["cycles"] = rows["cycles_dense"] * keep
    scaled["cycles_decoder_stall"] = 0
    table = analysis.gap_decomposition(scaled, ("phase",), macs_per_cycle=10**6)
    assert np.allclose(table["lost_cycles"], 0.0, atol=1e-6 * table["cycles"].max())
    for cause in analysis.GAP_CAUSES:
        assert np.allclose(table[cause], 0.0, atol=1e-6 * table["cycles"].max()), cause
    assert table["imbalance_share"].isna().all()  # nothing lost: no shares, not 100 %


def _gaps(tmp_path: Path, hw: Path, name: str, config: SynthConfig) -> pd.DataFrame:
    trace = synthesize(resnet20(batch=2, image_size=8), tmp_path / f"t-{name}", config)
    hardware = load_hardware(hw)
    replay_to_dir(trace, hardware, tmp_path / name)
    results = pd.read_csv(tmp_path / name / "results.csv")
    return analysis.gap_decomposition(results, ("phase",),
                                      macs_per_cycle=hardware.pe_array.macs_per_cycle)


def test_hardware_without_gate_support_loses_the_gates_to_not_exploiting_them(
        tmp_path: Path) -> None:
    """The systolic preset has no gate support: every phase runs dense, so the lost cycles are
    all 'not exploited' (FW's too: a gradient that let FW skip would not help there), while the
    lock-step FP8 preset exploits them, naming the straight-through gradient's dense forward in
    FW and idle lanes and imbalance elsewhere."""
    config = SynthConfig(steps=1, gate_sparsity=0.6, gate_groups=2)
    systolic = _gaps(tmp_path, SYSTOLIC, "systolic", config).set_index("phase")
    for phase in ("fw", "bd", "wg"):
        assert systolic.loc[phase, "unexploited_share"] == pytest.approx(1.0, abs=0.02)
        assert systolic.loc[phase, "estimator_cycles"] == 0
    fp8 = _gaps(tmp_path, FP8, "fp8", config).set_index("phase")
    assert fp8.loc["fw", "estimator_share"] == pytest.approx(1.0, abs=0.02)
    assert fp8.loc["all", "unexploited_cycles"] < 0.05 * fp8.loc["all", "lost_cycles"]
    assert fp8.loc["all", "speedup"] > systolic.loc["all", "speedup"]


def test_a_dense_trace_loses_nothing(tmp_path: Path) -> None:
    gaps = _gaps(tmp_path, FP8, "dense", SynthConfig(steps=1))
    assert np.allclose(gaps[list(analysis.GAP_CAUSES)], 0.0)
    assert gaps["lost_cycles"].abs().max() < 1e-6
    assert gaps[[c.replace("_cycles", "_share") for c in analysis.GAP_CAUSES]].isna().all().all()
    assert 0 < gaps.set_index("phase").loc["all", "dense_utilization"] <= 1
