"""Reports and plots: every file of a report, its tables, the gap decomposition, the HTML page,
sweep plots, and the ``report`` / ``compare`` commands (with bad input)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from matplotlib.figure import Figure

from accelsim import analysis, plots
from accelsim.api import compare, replay_to_dir, simulate_dense_to_dir
from accelsim.cli import AccelsimGroup
from accelsim.cli_report import compare_command, report_command
from accelsim.config import load_hardware
from accelsim.errors import InputError
from accelsim.network import resnet18, resnet20
from accelsim.report import build_report
from accelsim.report_inputs import read_output
from accelsim.report_schemes import describe_scheme, gap_table, scheme_table
from accelsim.trace.synth import SynthConfig, synthesize
from tests.conftest import FP8, SYSTOLIC

SMALL = {"batch": 2, "image_size": 8}
SCHEMES = {
    # name: (network, config, expected scheme name, structure)
    "cdg": (resnet20, SynthConfig(steps=1, gate_sparsity=0.7, gate_groups=4),
            "CDG", "unstructured"),
    "scdg8": (resnet18, SynthConfig(steps=1, gate_sparsity=0.7, gate_groups=4,
                                    gate_group_size=8), "SCDG 8x1x1", "structured"),
    "synccp_element": (resnet20, SynthConfig(steps=1, weight_sparsity=0.8),
                       "SyncCP element 80 %", "unstructured"),
    "synccp_nm": (resnet20, SynthConfig(steps=1, weight_pattern="nm:2:4"), "SyncCP 2:4",
                  "structured"),
}
VARIED = ("pe_array.sync_tiles", "decoder.compaction")


@pytest.fixture(scope="module")
def traces(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("traces")
    out = {}
    for name, (network, config, _, _) in SCHEMES.items():
        out[name] = synthesize(network(**SMALL), root / name, config)
    return out


@pytest.fixture(scope="module")
def runs(traces: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("runs")
    hw = load_hardware(FP8)
    out = {}
    for name, trace in traces.items():
        replay_to_dir(trace, hw, root / name)
        out[name] = root / name
    return out


def fake_sweep(folder: Path) -> Path:
    """A sweep output written by hand in the format of accelsim.sweep (sweep.json, results.csv)."""
    folder.mkdir(parents=True)
    rows = []
    grid = [{"pe_array.sync_tiles": s, "decoder.compaction": c} for s in (1, 4, 16)
            for c in (False, True)]
    for trace, base in (("traces/cdg", 1.1), ("traces/scdg", 1.6)):
        for point, values in enumerate(grid):
            for scope in ("total", "fw", "bd", "wg", "branch1", "branch2"):
                speedup = base + 0.05 * np.log2(values["pe_array.sync_tiles"]) \
                    + 0.3 * values["decoder.compaction"]
                energy = 1e9 / speedup + 1e7 * point
                rows.append({"trace": trace, "point": point, "point_id": f"{point:016x}",
                             **values, "scope": scope, "cycles": int(1e6 / speedup),
                             "seconds": 1e-3 / speedup,
                             "energy_pj": energy, "speedup": speedup, "flops_reduction": 2.1,
                             "speedup_efficiency": speedup / 2.1, "energy_reduction": 1e9 * 1.2
                             / energy, "tflops_per_watt": 1.5})
    table = pd.DataFrame(rows)
    table["decoder.compaction"] = table["decoder.compaction"].map({True: "true",
                                                                   False: "false"})
    table.to_csv(folder / "results.csv", index=False)
    spec = {"kind": "accelsim-sweep", "version": 1, "varied_keys": list(VARIED), "grid": grid,
            "traces": [{"path": "traces/cdg", "digest": "0"},
                       {"path": "traces/scdg", "digest": "1"}]}
    (folder / "sweep.json").write_text(json.dumps(spec))
    return folder


@pytest.fixture(scope="module")
def report(runs: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("report")
    sweep = fake_sweep(root / "sweep")
    out = root / "out"
    path = build_report([*runs.values(), sweep], out)
    assert path == out / "report.md"
    return out


def cli():
    return AccelsimGroup(commands={"report": report_command, "compare": compare_command})


# ---------------------------------------------------------------------------------------------
# The report
# ---------------------------------------------------------------------------------------------


def test_report_writes_every_file(report: Path) -> None:
    for name in ("report.md", "report.html", "schemes.csv", "schemes.md", "gap.csv"):
        assert (report / name).is_file(), name
    stems = [f"{run}_{kind}" for run in SCHEMES for kind in
             ("per_layer_speedup", "flops_vs_hardware", "energy_breakdown", "gap_by_cause")]
    stems += ["schemes_speedup_vs_index", "schemes_speedup_vs_energy", "schemes_gap_by_cause",
              "sweep_pareto_time_energy"]
    stems += [f"sweep_{metric}_vs_{param}" for metric in ("seconds", "energy_pj",
                                                          "speedup_efficiency") for param in VARIED]
    for stem in stems:
        for suffix in (".png", ".svg"):
            path = report / "figures" / f"{stem}{suffix}"
            assert path.is_file() and path.stat().st_size > 1000, path
    assert not list(report.rglob("*.tmp"))
    markdown = (report / "report.md").read_text()
    for stem in stems:
        assert f"](figures/{stem}.png)" in markdown


def test_tables_hold_every_scheme(report: Path) -> None:
    table = pd.read_csv(report / "schemes.csv")
    assert list(table["scheme"]) == [s[2] for s in SCHEMES.values()]
    assert list(table["structure"]) == [s[3] for s in SCHEMES.values()]
    for column in ("speedup", "flops_reduction", "speedup_efficiency", "energy_reduction",
                   "index_reduction"):
        assert table[column].notna().all() and (table[column] > 0).all()
    assert table.loc[table["scheme"] == "SCDG 8x1x1", "index_reduction"].item() == \
        pytest.approx(8.0)
    markdown = (report / "schemes.md").read_text()
    page = (report / "report.md").read_text()
    for _, _, name, _ in SCHEMES.values():
        assert f"| {name} |" in markdown
        assert f"| {name} |" in page
        assert f"**{name}**" in page  # its "why the gap" line
    assert "## Why the gap" in page


def test_gap_parts_add_up(report: Path) -> None:
    gaps = pd.read_csv(report / "gap.csv")
    assert tuple(c for c, _, _, _ in plots.GAP_PARTS) == analysis.GAP_CAUSES  # one label each
    parts = gaps[[c for c, _, _, _ in plots.GAP_PARTS]].sum(axis=1)
    assert np.allclose(parts, gaps["lost_cycles"], rtol=1e-9, atol=1e-6)
    ideal = gaps["cycles_dense"] / gaps["flops_reduction"]
    assert np.allclose(gaps["lost_cycles"], gaps["cycles"] - ideal, rtol=1e-9)
    # MACs the hardware issues beyond the needed ones, stalls and the estimator only cost
    # cycles (imbalance, memory and placement are measured against the dense run: either sign).
    for column in ("estimator_cycles", "unexploited_cycles", "lockstep_cycles",
                   "decoder_cycles"):
        assert (gaps[column] >= -1e-6).all(), column
    assert set(gaps["phase"]) == {"fw", "bd", "wg", "all"}


def test_gap_decomposition_per_layer(runs: dict[str, Path]) -> None:
    results = pd.read_csv(runs["cdg"] / "results.csv")
    peak = load_hardware(FP8).pe_array.macs_per_cycle
    explicit = analysis.gap_decomposition(results, ("layer", "phase"), macs_per_cycle=peak)
    unknown = analysis.gap_decomposition(results, ("layer", "phase"))
    # The peak only gives the dense utilisation; no cause depends on it.
    pd.testing.assert_frame_equal(explicit.drop(columns="dense_utilization"),
                                  unknown.drop(columns="dense_utilization"))
    assert unknown["dense_utilization"].isna().all()
    whole = explicit[explicit["layer"] == "all"].iloc[0]
    assert whole["dense_utilization"] == pytest.approx(
        results["macs_dense"].sum() / (peak * results["cycles_dense"].sum()))
    parts = explicit[[c for c, _, _, _ in plots.GAP_PARTS]].sum(axis=1)
    assert np.allclose(parts, explicit["lost_cycles"], atol=1e-6)
    total = explicit[explicit["layer"] == "all"].iloc[0]
    summary = json.loads((runs["cdg"] / "summary.json").read_text())["total"]
    assert total["speedup"] == pytest.approx(summary["speedup"])
    assert total["cycles"] == summary["cycles"]
    # CDG's unstructured gates on 8-lane lock-step PEs waste lanes; 2:4 FW does not.
    assert total["lockstep_cycles"] > 0


def test_the_page_leads_with_the_answer(report: Path) -> None:
    page = (report / "report.md").read_text()
    headings = re.findall(r"^## (.+)$", page, flags=re.M)
    assert headings[0] == "Summary" and headings[-1] == "Inputs"
    summary = page[page.index("## Summary"):page.index("## Structured vs unstructured")]
    # SCDG's trace is a ResNet-18, the others ResNet-20s: two workloads, answered apart, so
    # SCDG is never ranked against CDG on another network.
    assert "**Workload 1.** Synthetic trace of resnet20" in summary
    assert "**Workload 2.** Synthetic trace of resnet18" in summary
    assert "**On fp8-tensor-edge-28nm, workload 1.**" in summary
    assert "**On fp8-tensor-edge-28nm, workload 2.**" in summary
    assert "Fastest on the MACs" in summary and "of the array's peak MACs busy" in summary
    assert "Structured against unstructured (MAC speedup): SyncCP 2:4" in summary
    assert "against CDG" not in summary
    assert re.search(r"Smallest index storage: \*\*[^*]+\*\*, [0-9.]+ [KM]?i?B per step", summary)
    # The runs are collapsed sections; their figures are titled by scheme and hardware.
    assert page.count("<details><summary>") >= len(SCHEMES) + 1
    assert "CDG on fp8-tensor-edge-28nm: per-layer speedup" in page
    html = (report / "report.html").read_text()
    assert '<nav class="toc">' in html and html.index('id="summary"') < html.index("<table>")


def test_a_hardware_that_exploits_nothing_says_so(traces: dict[str, Path],
                                                  tmp_path: Path) -> None:
    """The systolic preset skips no gates: the summary names all of CDG's phases as not
    exploited, and the gap table puts their lost cycles there, not in lanes or imbalance."""
    from accelsim.api import compare

    compare([traces["cdg"]], load_hardware(SYSTOLIC), tmp_path / "out")
    page = (tmp_path / "out" / "report.md").read_text()
    assert "Not exploited by this hardware (it computes these phases dense): CDG (FW, BD, WG)" \
        in page
    assert "Largest cause: sparsity this hardware does not exploit" in page
    gaps = pd.read_csv(tmp_path / "out" / "gap.csv").set_index("phase")
    assert gaps.loc["bd", "unexploited_share"] == pytest.approx(1.0, abs=0.02)
    assert gaps.loc["wg", "lockstep_cycles"] == 0


def test_accuracy_is_shown_as_the_change_vs_dense(runs: dict[str, Path],
                                                  tmp_path: Path) -> None:
    def with_accuracy(name: str, knn: float, seed: int = 0, copy_name: str = "",
                      finetune: float | None = None) -> Path:
        copy = tmp_path / "with-accuracy" / (copy_name or name)
        copy.mkdir(parents=True)
        for file in ("results.csv", "run.json"):
            (copy / file).write_bytes((runs[name] / file).read_bytes())
        summary = json.loads((runs[name] / "summary.json").read_text())
        summary["accuracy"] = {"knn_accuracy": knn, "steps": 100, "eval_test_samples": 2000}
        if finetune is not None:
            summary["accuracy"]["finetune_accuracy"] = finetune
        summary["producer"]["seed"] = seed
        (copy / "summary.json").write_text(json.dumps(summary))
        return copy

    dense = tmp_path / "dense-trace"
    synthesize(resnet20(**SMALL), dense, SynthConfig(steps=1))
    replay_to_dir(dense, load_hardware(FP8), tmp_path / "dense")
    runs = {**runs, "dense": tmp_path / "dense"}
    dirs = [with_accuracy("dense", 0.70, finetune=0.80), with_accuracy("cdg", 0.66),
            with_accuracy("synccp_nm", 0.705)]
    table = scheme_table([read_output(d) for d in dirs])
    assert list(table["label"]) == ["dense", "CDG", "SyncCP 2:4"]  # dense, gates, weights
    assert list(table["knn_delta"].round(6)) == [0.0, -4.0, 0.5]
    build_report(dirs, tmp_path / "report")
    page = (tmp_path / "report" / "report.md").read_text()
    assert "k-NN accuracy vs dense: CDG -4.0 pp, SyncCP 2:4 +0.5 pp." in page
    assert "| 66.0 (-4.0) |" in page and "after 100 training steps. One seed per scheme" in page
    assert "by up to ±2.9 pp (95 %; less, as both models are scored on the same images)" in page
    # A second dense seed: the baseline is the mean, and the caveat quotes the measured spread.
    dirs.append(with_accuracy("dense", 0.68, seed=1, copy_name="dense-seed1", finetune=0.75))
    table = scheme_table([read_output(d) for d in dirs])
    assert list(table["scheme"][:2]) == ["dense (dense)", "dense (dense-seed1)"]
    assert table.set_index("label").loc["CDG", "knn_delta"] == pytest.approx(-3.0)
    build_report(dirs, tmp_path / "report2")
    page = (tmp_path / "report2" / "report.md").read_text()
    assert ("Measured seed-to-seed spread of accuracy: k-NN dense 2.0 pp over 2 seeds; "
            "fine-tuned dense 5.0 pp over 2 seeds.") in page
    assert "fine-tuned accuracy, % (vs dense, pp)" in page
    assert "The other schemes have one seed each" in page


def test_html_is_self_contained(report: Path) -> None:
    page = (report / "report.html").read_text()
    assert page.startswith("<!DOCTYPE html>")
    images = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    text = re.sub(r"base64,[A-Za-z0-9+/=]+", "", page)
    # Nothing outside the page: images inline, links only to the page's own anchors (contents).
    assert not re.search(r"(https?:|//[a-z]|src=\"(?!data:)|href=\"(?!#)|url\(|@import)", text)
    anchors = set(re.findall(r' id="([^"]+)"', page))
    links = re.findall(r'href="#([^"]+)"', page)
    assert links and set(links) <= anchors
    markdown = (report / "report.md").read_text()
    assert len(images) == markdown.count("![") > 10
    assert all(base64_png(i) for i in images)
    assert "<table>" in page and "SCDG 8x1x1" in page


def base64_png(text: str) -> bool:
    """A PNG with a palette (colour type 3 in its IHDR): small enough to inline them all."""
    import base64

    data = base64.b64decode(text)
    return data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR" and data[25] == 3


@pytest.fixture(scope="module")
def dense_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The network of the resnet20 traces simulated dense (``accelsim simulate --network``)."""
    out = tmp_path_factory.mktemp("dense") / "dense"
    simulate_dense_to_dir(resnet20(**SMALL), load_hardware(FP8), out)
    return out


def test_report_is_deterministic(runs: dict[str, Path], dense_run: Path,
                                 tmp_path: Path) -> None:
    dirs = [runs["cdg"], dense_run]
    build_report(dirs, tmp_path / "a")
    build_report(dirs, tmp_path / "b")
    files = sorted((tmp_path / "a").rglob("*.*"))
    assert len(files) > 10
    for path in files:
        twin = tmp_path / "b" / path.relative_to(tmp_path / "a")
        assert path.read_bytes() == twin.read_bytes(), path.name
    page = (tmp_path / "a" / "report.md").read_text()
    # The dense run matches the trace's jobs, so the CDG energy figure uses its breakdown.
    assert ("CDG on fp8-tensor-edge-28nm: energy by component, sparse vs dense (dense from "
            "the dense run)") in page
    assert ("dense on fp8-tensor-edge-28nm: energy by component]"
            "(figures/dense_energy_breakdown.png)") in page
    assert "figures/dense_gap_by_cause.png" not in page


def test_plot_functions_return_figures_and_never_need_pyplot(runs: dict[str, Path]) -> None:
    results = pd.read_csv(runs["scdg8"] / "results.csv")
    for draw in (plots.per_layer_speedup, plots.flops_vs_hardware, plots.energy_breakdown,
                 plots.gap_by_cause):
        fig = draw(results)
        assert isinstance(fig, Figure)
        assert fig.axes[0].get_title() or fig.get_suptitle()
        assert all(t.get_fontsize() >= 10 for ax in fig.axes for t in
                   [*ax.get_xticklabels(), *ax.get_yticklabels(), ax.xaxis.label,
                    ax.yaxis.label])
    fig = Figure()
    ax = fig.add_subplot()
    assert plots.flops_vs_hardware(results, ax=ax) is fig
    assert plots.per_layer_speedup(results, ax=ax, phases=["fw"]) is fig
    with pytest.raises(ValueError, match="3 phases need 3 Axes"):
        plots.per_layer_speedup(results, ax=ax)


@pytest.mark.parametrize("name", ["cdg", "synccp_nm"])
def test_dense_energy_breakdown_is_exact(runs: dict[str, Path], dense_run: Path,
                                         name: str) -> None:
    results = pd.read_csv(runs[name] / "results.csv")
    derived = analysis.dense_energy_breakdown(results)
    assert np.allclose(derived.sum(axis=1), results["energy_dense_pj"], rtol=1e-9)
    assert (derived["buffer_dram"] > 0).all()
    dense = pd.read_csv(dense_run / "results.csv")
    for part in ("mac", "rf", "static"):
        assert derived[part].sum() == pytest.approx(dense[f"energy_{part}_pj"].sum(), rel=1e-9)
    assert derived["buffer_dram"].sum() == pytest.approx(
        dense["energy_buffer_pj"].sum() + dense["energy_dram_pj"].sum(), rel=1e-9)
    fig = plots.energy_breakdown(results, dense=dense)
    assert isinstance(fig, Figure)
    # The dense half of the non-MAC work is the dense network's: no gate, every weight updated.
    steps = results["step"].nunique()
    for dense_half, of_dense_run in (("cycles_non_mac_dense", "cycles_non_mac"),
                                     ("energy_non_mac_dense_pj", "energy_non_mac_pj")):
        assert dense[of_dense_run].sum() > 0
        assert results[dense_half].sum() == pytest.approx(steps * dense[of_dense_run].sum(),
                                                          rel=1e-9)


def test_scheme_names() -> None:
    assert describe_scheme(None)["scheme"] == "dense"
    assert describe_scheme({"algorithm": "scdg", "gate_group_size": 8})["scheme"] == \
        "SCDG 8x1x1"
    recorded = describe_scheme({"algorithm": "synccp", "params": {"pattern": "block:4x4",
                                                                  "sparsity": 0.9}})
    assert recorded == {"scheme": "SyncCP block 4x4 90 %", "masks": "weights",
                        "structure": "structured"}
    assert describe_scheme({"algorithm": "my-method"})["scheme"] == "my-method"


def test_accuracy_column_and_scatter(runs: dict[str, Path], tmp_path: Path) -> None:
    copy = tmp_path / "with_acc"
    copy.mkdir()
    for name in ("results.csv", "run.json"):
        (copy / name).write_bytes((runs["scdg8"] / name).read_bytes())
    summary = json.loads((runs["scdg8"] / "summary.json").read_text())
    summary["producer"]["eval"] = {"knn_accuracy": 0.871}
    (copy / "summary.json").write_text(json.dumps(summary))
    table = scheme_table([read_output(runs["cdg"]), read_output(copy)])
    assert list(table["knn_accuracy"].isna()) == [True, False]
    assert table["knn_accuracy"].iloc[1] == pytest.approx(0.871)
    fig = plots.scheme_scatter(table)
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert "SCDG 8x1x1 (87.1 % acc.)" in texts and "CDG" in texts
    gaps = gap_table([read_output(runs["cdg"]), read_output(copy)], table)
    assert list(gaps["scheme"].unique()) == ["CDG", "SCDG 8x1x1"]


# ---------------------------------------------------------------------------------------------
# Sweeps
# ---------------------------------------------------------------------------------------------


def test_sweep_plots(tmp_path: Path) -> None:
    sweep = read_output(fake_sweep(tmp_path / "sweep"))
    assert sweep.varied == list(VARIED)
    table = sweep.table
    fig = plots.metric_vs_param(table, "speedup", "pe_array.sync_tiles")
    assert len(fig.axes[0].lines) == 4  # 2 traces x 2 compaction values
    fig = plots.metric_vs_param(table, "energy_pj", "decoder.compaction", scope="fw")
    assert "(" in fig.axes[0].get_ylabel()  # a unit
    fig = plots.heatmap(table, "speedup", "pe_array.sync_tiles", "decoder.compaction")
    assert len(fig.axes) == 3  # two traces and the colour bar
    total = table[table["scope"] == "total"]
    front = analysis.pareto_front(total, "energy_pj", "speedup")
    assert front.any()
    for i in np.flatnonzero(front.to_numpy()):
        row = total.iloc[i]
        assert not ((total["energy_pj"] < row["energy_pj"])
                    & (total["speedup"] > row["speedup"])).any()
    fig = plots.pareto(table)
    assert "Pareto front" in [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    with pytest.raises(ValueError, match="no rows with scope"):
        plots.pareto(table, scope="layer")


# ---------------------------------------------------------------------------------------------
# Errors and the commands
# ---------------------------------------------------------------------------------------------


def test_bad_dirs_raise_input_errors(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="not a directory"):
        build_report([tmp_path / "missing"], tmp_path / "out")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="not an accelsim output directory"):
        build_report([tmp_path / "empty"], tmp_path / "out")
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "results.csv").write_text("a,b\n1,2\n")
    (bad / "summary.json").write_text("{\"total\": {}}")
    (bad / "run.json").write_text("[]")
    with pytest.raises(InputError, match="expected a JSON object"):
        build_report([bad], tmp_path / "out")
    (bad / "run.json").write_text("{}")
    with pytest.raises(InputError, match="missing columns"):
        build_report([bad], tmp_path / "out")
    with pytest.raises(InputError, match="at least one"):
        build_report([], tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_report_command(runs: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "rep"
    result = CliRunner().invoke(cli(), ["report", str(runs["synccp_nm"]), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert (out / "report.html").is_file() and "wrote" in result.output
    result = CliRunner().invoke(cli(), ["report", str(tmp_path / "nope"), "--out", str(out)])
    assert result.exit_code == 2
    assert result.output.count("\n") == 1 and "error:" in result.output
    assert "not a directory" in result.output
    result = CliRunner().invoke(cli(), ["report", "--help"])
    assert result.exit_code == 0 and "Example:" in result.output


def test_compare_command_reuses_runs(traces: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "cmp"
    args = ["compare", str(traces["synccp_nm"]), "--hw", str(FP8), "--out", str(out)]
    result = CliRunner().invoke(cli(), args)
    assert result.exit_code == 0, result.output
    assert result.output.count("replayed") == 1
    results = out / "runs" / "synccp_nm" / "results.csv"
    assert results.is_file() and (out / "report.md").is_file()
    assert "SyncCP 2:4" in (out / "schemes.csv").read_text()
    stamp = results.stat().st_mtime_ns
    result = CliRunner().invoke(cli(), args)
    assert result.output.count("reused existing run") == 1
    assert results.stat().st_mtime_ns == stamp
    # Another hardware digest replays.
    result = CliRunner().invoke(cli(), [*args, "--set", "decoder.compaction=true"])
    assert result.exit_code == 0, result.output
    assert result.output.count("replayed") == 1
    assert "Example:" in CliRunner().invoke(cli(), ["compare", "--help"]).output


def test_compare_bad_input(traces: dict[str, Path], tmp_path: Path) -> None:
    result = CliRunner().invoke(cli(), ["compare", str(tmp_path), "--hw", str(FP8), "--out",
                                        str(tmp_path / "o")])
    assert result.exit_code == 2 and "no manifest.json" in result.output
    assert result.output.count("\n") == 1
    result = CliRunner().invoke(cli(), ["compare", str(traces["cdg"]), "--hw", str(FP8),
                                        "--set", "nope.key=1", "--out", str(tmp_path / "o")])
    assert result.exit_code == 2 and result.output.startswith("error:")
    with pytest.raises(InputError, match="at least one"):
        compare([], load_hardware(FP8), tmp_path / "o")


def test_importing_accelsim_does_not_pick_a_backend() -> None:
    import subprocess
    import sys

    code = ("import accelsim, accelsim.plots, sys; "
            "print('matplotlib.pyplot' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "False"
    assert matplotlib.get_backend()  # the test process itself is unaffected


def test_every_run_names_the_knobs_its_result_depends_on(report: Path,
                                                         runs: dict[str, Path]) -> None:
    """docs/sparse-model.md: queue depth, compaction, skip granularity, WG's lane mapping and,
    for gated traces, the gate's gradient decide the sparse result; each run's paragraph says
    which it used."""
    page = (report / "report.md").read_text()
    hw = load_hardware(FP8)
    knobs = (f"The result depends on: `sync_tiles` {hw.pe_array.sync_tiles}, `stage_steps` "
             f"{hw.pe_array.stage_steps}, compaction off, "
             f"skip granularity {hw.decoder.skip_granularity}, FW lanes over output channels, "
             f"BD lanes over input-gradient columns, WG lanes over output channels")
    assert page.count(knobs) == len(runs)
    vector = (f", for the whole step the vector unit ({hw.vector_unit.lanes} lanes, fused BN) "
              f"and the sgd step on {hw.vector_unit.master_precision} master weights and "
              f"{hw.vector_unit.state_precision} state, updating every weight.")
    assert page.count(knobs + ", gate gradient straight_through" + vector) == 2  # cdg, scdg8


def test_the_report_shows_the_whole_step_beside_the_macs(report: Path,
                                                         runs: dict[str, Path]) -> None:
    """Every sparse scheme's row has its whole-step speedup, never above max(1, its MAC-only
    one) on hardware without sparse optimizer updates, and each run's paragraph says how much
    of its step is non-MAC work."""
    assert not load_hardware(FP8).vector_unit.sparse_updates
    schemes = pd.read_csv(report / "schemes.csv")
    assert schemes["speedup_step"].notna().all()
    assert (schemes["speedup_step"] <= schemes["speedup"].clip(lower=1.0) + 1e-9).all()
    page = (report / "report.md").read_text()
    assert "| whole-step speedup |" in page and "Beyond the MACs" in page
    assert page.count("With its non-MAC work the whole step speeds up") == len(runs)


def test_energy_labels_say_less_or_more() -> None:
    from accelsim.plots import _less_or_more

    assert _less_or_more(50.0, 100.0) == "2.00× less"
    assert _less_or_more(125.0, 100.0) == "1.25× more"
    assert _less_or_more(10.0, 0.0) == "" and _less_or_more(0.0, 10.0) == ""


def test_a_compacted_run_names_its_dispatcher() -> None:
    """docs/sparse-model.md, "Compaction under the operand stage": the run's sentence says
    its cycles are an ideal dispatcher's, balanced chunk by chunk; a lane scheduler is named
    with its reach."""
    from types import SimpleNamespace

    from accelsim.report import modelling_choices
    hardware = {"pe_array": {"sync_tiles": 16, "stage_steps": 1},
                "decoder": {"compaction": True, "skip_granularity": "vector"}}
    run = SimpleNamespace(run_info={"hardware": hardware}, producer=None, summary={})
    assert "`stage_steps` 1, compaction on (an ideal dispatcher that balances each " \
        "operand-stage chunk over the queues)" in modelling_choices(run)
    hardware["decoder"]["compaction"] = False
    assert "compaction off, skip granularity vector" in modelling_choices(run)
    hardware["decoder"]["balance_rows"] = True
    assert "compaction off, the row balancer on, skip granularity" in modelling_choices(run)
    hardware["decoder"].update(balance_rows=False, lane_scheduler="tensordash",
                               scheduler_lookahead=2, scheduler_lookaside=5)
    assert "compaction off, the tensordash lane scheduler in front of the adder trees " \
        "(lookahead 2, lookaside 5, inside each stage chunk), skip granularity" \
        in modelling_choices(run)


def test_saliency_baselines_name_what_their_result_depends_on() -> None:
    """FBS records a masked gradient whatever its recipe's gate_gradient says; DGC has no gate
    gradient but depends on how its heads fall on the lock-step units."""
    from types import SimpleNamespace

    from accelsim.report import modelling_choices
    hardware = {"pe_array": {"sync_tiles": 16, "stage_steps": 1},
                "decoder": {"skip_granularity": "vector"}}

    def sentence(algorithm: str) -> str:
        producer = {"algorithm": algorithm, "config": {"algo": algorithm,
                                                       "gate_gradient": "straight_through"}}
        return modelling_choices(SimpleNamespace(run_info={"hardware": hardware},
                                                 producer=producer, summary={}))

    assert "gate gradient masked" in sentence("fbs")
    assert "gate gradient" not in sentence("dgc")
    assert "how DGC's heads fall on the lock-step units" in sentence("dgc")
    assert "gate gradient straight_through" in sentence("cdg")


def test_labels_of_coinciding_points_are_one_label_and_never_overprint() -> None:
    """Five schemes at about (1x, 1x) (every scheme on a systolic array): their labels are
    joined into one, a line each, and no two labels of the figure overlap."""
    from accelsim.plot_style import overlap_area, place_labels

    fig = Figure(figsize=(6, 4))
    ax = fig.add_subplot()
    xs = [1.0, 1.0, 1.0, 1.0, 1.0, 3.0]
    ys = [1.0, 1.0, 1.001, 1.0, 1.002, 2.0]
    ax.scatter(xs, ys)
    ax.set_xlim(0, 4)
    ax.set_ylim(0, 3)
    texts = [f"scheme {i}" for i in range(6)]
    place_labels(ax, xs, ys, texts)
    labels = [t for t in ax.texts]
    assert [t.get_text() for t in labels] == ["\n".join(texts[:5]), "scheme 5"]
    renderer = fig.canvas.get_renderer()
    a, b = (t.get_window_extent(renderer) for t in labels)
    assert overlap_area(a, b) == 0
