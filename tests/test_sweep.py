"""Sweeps: grid expansion, the point store, kill-and-resume, Dask, refusals and the CLI."""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from accelsim.analysis import BEST_METRICS, best_points
from accelsim.cli import AccelsimGroup, main
from accelsim.cli_sweep import sweep_command
from accelsim.errors import InputError
from accelsim.network import resnet20
from accelsim.sweep import (
    expand_grid,
    group_tasks,
    load_grid_file,
    parse_vary,
    plan_sweep,
    point_id,
    run_sweep,
    sweep_jobs,
)
from accelsim.trace.synth import SynthConfig, synthesize
from tests.conftest import FP8, ROOT

VARY = ("pe_array.rows=8,16,32", "decoder.compaction=false,true", "dram.bandwidth_gbps=12.8,25.6")
POINTS = 12
SCOPES = ["total", "fw", "bd", "wg", "branch1", "branch2"]

if "sweep" in main.commands:  # registered by accelsim.cli
    CLI_GROUP = main
    SWEEP_ARGV = [sys.executable, "-m", "accelsim.cli", "sweep"]
else:  # until then: the same command under the same error-handling group
    CLI_GROUP = AccelsimGroup("accelsim", commands={"sweep": sweep_command})
    SWEEP_ARGV = [sys.executable, "-c", "from accelsim.cli_sweep import sweep_command; "
                  "sweep_command(prog_name='accelsim sweep')"]


def invoke(*args: object):
    return CliRunner().invoke(CLI_GROUP, ["sweep", *(str(a) for a in args)],
                              catch_exceptions=False)


def grid_12() -> list[dict]:
    return expand_grid([parse_vary(text) for text in VARY])


@pytest.fixture(scope="module")
def traces(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Two tiny gated and pruned traces (resnet20, batch 2, 8x8 images, 1 step)."""
    root = tmp_path_factory.mktemp("traces")
    paths = []
    for name, seed in (("cdg", 0), ("scdg", 1)):
        config = SynthConfig(steps=1, seed=seed, gate_sparsity=0.6, gate_groups=2,
                             gate_group_size=8 if name == "scdg" else 1, weight_sparsity=0.5)
        synthesize(resnet20(batch=2, image_size=8), root / name, config)
        paths.append(root / name)
    return paths


@pytest.fixture(scope="module")
def reference(traces: list[Path], tmp_path_factory: pytest.TempPathFactory):
    """An uninterrupted 2 traces x 12 points sweep on two local worker processes."""
    out = tmp_path_factory.mktemp("reference") / "out"
    result = run_sweep(traces, FP8, [], grid_12(), out, workers=2, progress=False)
    print(f"2x12 sweep, 2 local processes: {result.seconds:.2f} s")
    return result


def sweep_process(traces: list[Path], out: Path, *extra: str) -> subprocess.Popen:
    argv = [*SWEEP_ARGV, *map(str, traces), "--hw", str(FP8), "--out", str(out),
            "--workers", "2", *extra]
    for text in VARY:
        argv += ["--vary", text]
    return subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def stored(out: Path) -> int:
    folder = out / "points"
    return len(list(folder.glob("*.json"))) if folder.is_dir() else 0


def live_members(group: int) -> list[int]:
    """Processes of a process group that still run (not zombies), from /proc (Linux)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rpartition(")")[2].split()
        except OSError:
            continue
        if int(fields[2]) == group and fields[0] != "Z":
            found.append(int(stat.parent.name))
    return found


def signal_when_some_stored(process: subprocess.Popen, out: Path, signum: int, *,
                            group: bool) -> int:
    """Send ``signum`` once at least one point is stored; return the points stored then."""
    deadline = time.monotonic() + 60
    try:
        while stored(out) == 0:
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline, "no point stored within 60 s"
            time.sleep(0.005)
        if group:
            os.killpg(process.pid, signum)
        else:
            os.kill(process.pid, signum)
        process.wait(timeout=60)
        if signum == signal.SIGKILL and Path("/proc/self/stat").exists():
            killed_at = time.monotonic()
            while live_members(process.pid):  # workers notice their parent died and exit
                assert time.monotonic() < killed_at + 10, live_members(process.pid)
                time.sleep(0.05)
            print(f"orphaned workers gone {time.monotonic() - killed_at:.2f} s after the kill")
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)  # leave none of its workers behind
    return stored(out)


# ---------------------------------------------------------------------------------------------
# Grids
# ---------------------------------------------------------------------------------------------


def test_parse_vary_reads_yaml_values() -> None:
    assert parse_vary("pe_array.rows=8,16,32") == ("pe_array.rows", [8, 16, 32])
    assert parse_vary("decoder.compaction=false,true") == ("decoder.compaction", [False, True])
    assert parse_vary("dram.bandwidth_gbps=12.8, 25.6") == ("dram.bandwidth_gbps", [12.8, 25.6])
    assert parse_vary("decoder.formats=[bitmap],[bitmap,rle]") == (
        "decoder.formats", [["bitmap"], ["bitmap", "rle"]])
    for bad in ("pe_array.rows", "pe_array.rows=", "=8,16", "pe_array.rows=[8"):
        with pytest.raises(InputError, match="--vary"):
            parse_vary(bad)


def test_expand_grid_is_a_cartesian_product_first_axis_slowest() -> None:
    grid = expand_grid([("pe_array.rows", [8, 16]), ("decoder.compaction", [False, True])])
    assert grid == [{"pe_array.rows": 8, "decoder.compaction": False},
                    {"pe_array.rows": 8, "decoder.compaction": True},
                    {"pe_array.rows": 16, "decoder.compaction": False},
                    {"pe_array.rows": 16, "decoder.compaction": True}]
    assert expand_grid([]) == [{}]


def test_expand_grid_zips_lists_and_multiplies_them_with_the_axes() -> None:
    zipped = {"pe_array.rows": [8, 32], "pe_array.cols": [32, 8]}
    assert expand_grid([], zipped) == [{"pe_array.rows": 8, "pe_array.cols": 32},
                                       {"pe_array.rows": 32, "pe_array.cols": 8}]
    grid = expand_grid([("dram.bandwidth_gbps", [12.8, 25.6, 51.2])], zipped)
    assert len(grid) == 6
    assert grid[:2] == [{"dram.bandwidth_gbps": 12.8, "pe_array.rows": 8, "pe_array.cols": 32},
                        {"dram.bandwidth_gbps": 12.8, "pe_array.rows": 32, "pe_array.cols": 8}]


@pytest.mark.parametrize(("vary", "zipped", "message"), [
    ([], {"pe_array.rows": [8, 16], "pe_array.cols": [8]}, "equal lengths.*rows has 2.*cols has 1"),
    ([("pe_array.rowz", [8])], None, "did you mean 'rows'"),
    ([("pe_array", [8])], None, "is a section"),
    ([("pe_array.rows", [8]), ("pe_array.rows", [16])], None, "varied twice"),
    ([("pe_array.rows", [8])], {"pe_array.rows": [16]}, "varied twice"),
    ([("pe_array.rows", [])], None, "non-empty list"),
    ([("pe_array.rows", [8, 8])], None, "value 8 given twice"),
])
def test_expand_grid_errors(vary: list, zipped: dict | None, message: str) -> None:
    with pytest.raises(InputError, match=message):
        expand_grid(vary, zipped)


def test_load_grid_file(tmp_path: Path) -> None:
    good = tmp_path / "grid.yaml"
    good.write_text("kind: sweep-grid\nversion: 1\nvary:\n  decoder.compaction: [false, true]\n"
                    "zip:\n  pe_array.rows: [8, 32]\n  pe_array.cols: [32, 8]\n")
    vary, zipped = load_grid_file(good)
    assert vary == [("decoder.compaction", [False, True])]
    assert zipped == {"pe_array.rows": [8, 32], "pe_array.cols": [32, 8]}
    assert len(expand_grid(vary, zipped)) == 4
    unknown = tmp_path / "typo.yaml"
    unknown.write_text("vray:\n  pe_array.rows: [8]\n")
    with pytest.raises(InputError, match=r"typo\.yaml: vray: unknown top-level key.*'vary'"):
        load_grid_file(unknown)
    bad_key = tmp_path / "key.yaml"
    bad_key.write_text("vary:\n  dram.bandwith_gbps: [8]\n")
    with pytest.raises(InputError, match=r"key\.yaml.*did you mean 'bandwidth_gbps'"):
        load_grid_file(bad_key)
    scalar = tmp_path / "scalar.yaml"
    scalar.write_text("vary:\n  pe_array.rows: 8\n")
    with pytest.raises(InputError, match=r"scalar\.yaml: vary\.pe_array\.rows: expected a "):
        load_grid_file(scalar)


def test_point_id_depends_on_trace_overrides_base_and_phases() -> None:
    base = point_id("t", {"a.b": 1, "c.d": 2}, "base", ["fw"])
    assert base == point_id("t", {"c.d": 2, "a.b": 1}, "base", ["fw"])  # canonical JSON
    others = {point_id("u", {"a.b": 1, "c.d": 2}, "base", ["fw"]),
              point_id("t", {"a.b": 2, "c.d": 2}, "base", ["fw"]),
              point_id("t", {"a.b": 1, "c.d": 2}, "other", ["fw"]),
              point_id("t", {"a.b": 1, "c.d": 2}, "base", ["fw", "bd"])}
    assert base not in others and len(others) == 4


# ---------------------------------------------------------------------------------------------
# The sweep, its store and its table
# ---------------------------------------------------------------------------------------------


def test_reference_table_is_tidy_and_points_are_stored(reference, traces: list[Path]) -> None:
    out = reference.out
    assert reference.points_total == 24 and reference.points_computed == 24
    table = pd.read_csv(out / "results.csv")
    assert list(table.columns[:7]) == ["trace", "point", "point_id", "pe_array.rows",
                                       "decoder.compaction", "dram.bandwidth_gbps", "scope"]
    for metric in ("speedup", "flops_reduction", "speedup_efficiency", "energy_pj",
                   "energy_reduction", "tflops_per_watt", "cycles", "energy_dram_pj",
                   "index_reduction"):
        assert metric in table.columns
    assert len(table) == 2 * POINTS * len(SCOPES)
    assert list(table["scope"][:6]) == SCOPES
    assert list(table["trace"].drop_duplicates()) == [str(t) for t in traces]
    assert list(table["point"].drop_duplicates()) == list(range(POINTS))
    first = table[table["point"] == 1].iloc[0]
    assert (first["pe_array.rows"], first["decoder.compaction"], first["dram.bandwidth_gbps"]) \
        == (8, False, 25.6)
    parquet = pd.read_parquet(out / "results.parquet")
    assert list(parquet.columns) == list(table.columns) and len(parquet) == len(table)
    assert parquet["decoder.compaction"].dtype == bool
    # bigger arrays finish sooner; more bandwidth never costs time
    total = table[(table["scope"] == "total") & (table["trace"] == str(traces[0]))]
    cycles = total.set_index("point")["cycles"]
    assert cycles[0] > cycles[4] > cycles[8] and cycles[1] <= cycles[0]
    point_files = sorted((out / "points").glob("*.json"))
    assert len(point_files) == 24
    record = json.loads((out / "points" / f"{first['point_id']}.json").read_text())
    assert record["overrides"] == {"pe_array.rows": 8, "decoder.compaction": False,
                                   "dram.bandwidth_gbps": 25.6}
    assert record["trace"] == str(traces[0]) and record["point"] == 1
    assert {"total", "per_phase", "per_branch", "index"} <= set(record["summary"])
    assert record["config_digest"] != record["base_digest"]
    sweep = json.loads((out / "sweep.json").read_text())
    assert sweep["varied_keys"] == ["pe_array.rows", "decoder.compaction", "dram.bandwidth_gbps"]
    assert len(sweep["grid"]) == POINTS and sweep["base_config"]["path"] == str(FP8)
    assert [t["path"] for t in sweep["traces"]] == [str(t) for t in traces]


def test_points_that_share_their_compute_replay_together(traces: list[Path]) -> None:
    """Points of one trace that differ only in memory or energy form one group (one replay);
    a compute parameter or another trace starts a new group; groups are halved to feed the
    workers."""
    plan = plan_sweep(traces, FP8, [], grid_12())
    tasks = plan.tasks()
    groups = group_tasks(tasks, 1)
    # per trace: 3 array sizes x 2 compaction settings, each with both DRAM bandwidths
    assert len(groups) == 2 * 6 and all(len(group) == 2 for group in groups)
    assert all(len({task.trace_index for task in group}) == 1 for group in groups)
    assert [task for group in groups for task in group] == sorted(
        tasks, key=lambda t: (t.trace_index, t.point // 2, t.point))
    one_trace = [task for task in tasks if task.trace_index == 0 and task.point % 4 < 2]
    assert len(group_tasks(one_trace, 1)) == 3 and len(group_tasks(one_trace, 6)) == 6
    # a group holds at most max_points points (its rows stay in memory until it finishes)
    memory_only = plan_sweep(traces[:1], FP8, [], expand_grid(
        [parse_vary("dram.bandwidth_gbps=1,2,3,4,5,6,7,8,9,10")])).tasks()
    assert [len(g) for g in group_tasks(memory_only, 1)] == [8, 2]
    assert [len(g) for g in group_tasks(memory_only, 1, max_points=4)] == [4, 4, 2]


def test_a_shared_replay_stores_what_each_point_gives_alone(reference,
                                                            traces: list[Path],
                                                            tmp_path: Path) -> None:
    """The stored summary of a point replayed with another equals its own replay's."""
    from accelsim.api import replay_to_dir
    from accelsim.config import load_hardware, with_overrides

    table = pd.read_csv(reference.out / "results.csv")
    row = table[(table["point"] == 1) & (table["trace"] == str(traces[0]))].iloc[0]
    record = json.loads((reference.out / "points" / f"{row['point_id']}.json").read_text())
    hw = with_overrides(load_hardware(FP8), record["overrides"])
    alone = replay_to_dir(traces[0], hw, tmp_path / "alone")
    for key in ("total", "per_phase", "per_branch", "index"):
        assert record["summary"][key] == json.loads(json.dumps(alone[key])), key


def test_each_point_stores_its_job_table(reference, traces: list[Path],
                                         tmp_path: Path) -> None:
    """A sweep keeps every point's job rows (what `accelsim simulate` writes for that config)
    with hw.* columns for the varied keys; sweep_jobs concatenates them in trace, grid order;
    a point whose job table is missing is computed again on resume."""
    from accelsim.api import replay_to_dir
    from accelsim.config import load_hardware, with_overrides

    jobs = sweep_jobs(reference.out)
    runs = jobs["point"][jobs["point"].diff() != 0]  # the points, in the order of the rows
    assert list(runs) == list(range(POINTS)) * 2
    varied = ["hw.pe_array.rows", "hw.decoder.compaction", "hw.dram.bandwidth_gbps"]
    assert set(varied) <= set(jobs.columns) and {"hw.name", "hw.digest"} <= set(jobs.columns)
    table = pd.read_csv(reference.out / "results.csv")
    row = table[(table["point"] == 5) & (table["trace"] == str(traces[1]))].iloc[0]
    point = jobs[jobs["point_id"] == row["point_id"]]
    assert (point["hw.pe_array.rows"] == row["pe_array.rows"]).all()
    record = json.loads((reference.out / "points" / f"{row['point_id']}.json").read_text())
    hw = with_overrides(load_hardware(FP8), record["overrides"])
    replay_to_dir(traces[1], hw, tmp_path / "alone")
    alone = pd.read_csv(tmp_path / "alone" / "results.csv")
    mine = point.drop(columns=["point", "point_id", *varied]).reset_index(drop=True)
    pd.testing.assert_frame_equal(mine.astype(alone.dtypes.to_dict()), alone, check_exact=False,
                                  rtol=1e-12)
    assert int(point["cycles"].sum()) == int(
        record["summary"]["total"]["cycles"])
    out = tmp_path / "copy"
    shutil.copytree(reference.out, out)
    (out / "points" / f"{row['point_id']}.parquet").unlink()
    result = run_sweep(traces, FP8, [], grid_12(), out, resume=True, workers=1, progress=False)
    assert result.points_computed == 1 and result.points_reused == 2 * POINTS - 1
    assert (out / "points" / f"{row['point_id']}.parquet").is_file()


def test_best_points(reference, traces: list[Path]) -> None:
    best = reference.best
    assert list(best.columns) == ["trace", "metric", "goal", "value", "point", "point_id",
                                  "pe_array.rows", "decoder.compaction", "dram.bandwidth_gbps",
                                  "steps"]
    assert len(best) == 2 * len(BEST_METRICS)
    # Absolute figures: a ratio to the dense run at the same point would crown the slowest
    # array (its dense run is slowest too).
    assert BEST_METRICS == {"seconds_step": "min", "energy_step_pj": "min", "seconds": "min",
                            "energy_pj": "min", "tflops_per_watt": "max"}
    total = reference.table[reference.table["scope"] == "total"]
    for _, row in best.iterrows():
        values = total[total["trace"] == row["trace"]][row["metric"]]
        expected = values.max() if row["goal"] == "max" else values.min()
        assert row["value"] == expected
    energy = best[(best["metric"] == "energy_pj") & (best["trace"] == str(traces[0]))]
    assert energy["goal"].item() == "min"


def test_best_points_ties_go_to_the_lowest_point() -> None:
    table = pd.DataFrame({
        "trace": ["t"] * 4, "point": [0, 0, 1, 2], "point_id": ["a", "a", "b", "c"],
        "x.y": [1, 1, 2, 3], "scope": ["total", "fw", "total", "total"],
        "speedup": [1.0, 9.0, 2.0, 2.0], "energy_pj": [5.0, 0.0, 4.0, 4.0],
    })
    best = best_points(table, {"speedup": "max", "energy_pj": "min"})
    assert list(best["point"]) == [1, 1] and list(best["x.y"]) == [2, 2]


def test_kill_and_resume_gives_the_uninterrupted_table(reference, traces: list[Path],
                                                        tmp_path: Path) -> None:
    out = tmp_path / "killed"
    first = sweep_process(traces, out)
    killed_with = signal_when_some_stored(first, out, signal.SIGKILL, group=False)
    assert first.returncode == -signal.SIGKILL
    assert 0 < killed_with < 2 * POINTS
    assert not (out / "results.csv").exists()
    start = time.perf_counter()
    second = sweep_process(traces, out, "--resume")
    output, errors = second.communicate(timeout=120)
    assert second.returncode == 0, errors
    assert f"({2 * POINTS - killed_with} computed, {killed_with} already stored)" in output
    assert "best points" in output and "seconds_step" in output and "ms" in output
    print(f"resumed {2 * POINTS - killed_with} points in {time.perf_counter() - start:.2f} s")
    assert (out / "results.csv").read_bytes() == reference.results_csv.read_bytes()
    assert (out / "results.parquet").read_bytes() == reference.results_parquet.read_bytes()


def test_ctrl_c_stops_cleanly_and_resume_finishes(reference, traces: list[Path],
                                                  tmp_path: Path) -> None:
    out = tmp_path / "interrupted"
    process = sweep_process(traces, out)
    start = time.perf_counter()
    signal_when_some_stored(process, out, signal.SIGINT, group=True)
    assert time.perf_counter() - start < 30
    _, errors = process.communicate()
    assert process.returncode == 130, errors
    assert "interrupted:" in errors and "--resume" in errors and "Traceback" not in errors
    before = stored(out)
    assert before < 2 * POINTS
    result = run_sweep(traces, FP8, [], grid_12(), out, workers=1, resume=True, progress=False)
    assert (result.points_reused, result.points_computed) == (before, 2 * POINTS - before)
    assert (out / "results.csv").read_bytes() == reference.results_csv.read_bytes()


def test_dask_gives_the_local_table(reference, traces: list[Path], tmp_path: Path) -> None:
    distributed = pytest.importorskip("distributed")
    start = time.perf_counter()
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster:
        ready = time.perf_counter()
        result = run_sweep(traces, FP8, [], grid_12(), tmp_path / "dask",
                           dask_address=cluster.scheduler_address, progress=False)
    print(f"2x12 sweep on Dask: cluster start {ready - start:.2f} s, sweep "
          f"{result.seconds:.2f} s")
    assert result.results_csv.read_bytes() == reference.results_csv.read_bytes()
    assert result.results_parquet.read_bytes() == reference.results_parquet.read_bytes()


def test_unreachable_dask_scheduler_is_an_input_error(traces: list[Path], tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("distributed")
    monkeypatch.setattr("accelsim.sweep.execute.DASK_CONNECT_TIMEOUT_S", 1)
    with pytest.raises(InputError, match="--dask: cannot reach the Dask scheduler"):
        run_sweep(traces[:1], FP8, [], [{"pe_array.rows": 8}], tmp_path / "o",
                  dask_address="tcp://127.0.0.1:9", progress=False)
    assert not (tmp_path / "o").exists()


# ---------------------------------------------------------------------------------------------
# Refusals
# ---------------------------------------------------------------------------------------------


@pytest.fixture
def small_sweep(traces: list[Path], tmp_path: Path) -> Path:
    """A finished 1 trace x 2 points sweep, run in this process."""
    out = tmp_path / "small"
    result = run_sweep(traces[:1], FP8, [], [{"pe_array.rows": 8}, {"pe_array.rows": 16}], out,
                       workers=1, progress=False)
    assert result.points_computed == 2
    return out


def test_non_empty_out_needs_resume(small_sweep: Path, traces: list[Path]) -> None:
    result = invoke(traces[0], "--hw", FP8, "--vary", "pe_array.rows=8,16", "--out", small_sweep)
    assert result.exit_code == 2
    assert "is not empty: add --resume" in result.output
    again = invoke(traces[0], "--hw", FP8, "--vary", "pe_array.rows=8,16", "--out", small_sweep,
                   "--resume", "--no-progress")
    assert again.exit_code == 0, again.output
    assert "2 points (0 computed, 2 already stored)" in again.output


@pytest.mark.parametrize(("args", "message"), [
    (["--vary", "pe_array.rows=8,32"], 'the grids differ (point 1 stored: {"pe_array.rows":16}; '
     'this run: {"pe_array.rows":32})'),
    (["--vary", "pe_array.cols=8,16"], "the varied keys differ"),
    (["--vary", "pe_array.rows=8,16", "--set", "pe_array.clock_mhz=500"], "base config"),
    (["--vary", "pe_array.rows=8,16", "--phases", "fw"], "the phases differ"),
])
def test_resume_of_another_sweep_is_refused(small_sweep: Path, traces: list[Path],
                                            args: list[str], message: str) -> None:
    before = sorted(p.name for p in small_sweep.rglob("*"))
    result = invoke(traces[0], "--hw", FP8, *args, "--out", small_sweep, "--resume")
    assert result.exit_code == 2
    assert "cannot resume" in result.output and message in result.output
    assert "use a new --out" in result.output
    assert sorted(p.name for p in small_sweep.rglob("*")) == before


def test_resume_checks_trace_content_not_spelling(small_sweep: Path, traces: list[Path],
                                                  tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    grid = [{"pe_array.rows": 8}, {"pe_array.rows": 16}]
    with pytest.raises(InputError, match="cannot resume: the traces differ"):
        run_sweep(traces[1:], FP8, [], grid, small_sweep, resume=True, progress=False)
    before = (small_sweep / "results.csv").read_bytes()
    elsewhere = Path(os.path.relpath(traces[0], tmp_path))
    monkeypatch.chdir(tmp_path)
    result = run_sweep([elsewhere], FP8, [], grid, small_sweep, resume=True, progress=False)
    assert result.points_computed == 0
    assert (small_sweep / "results.csv").read_bytes() == before


def test_a_run_directory_stands_for_its_trace(traces: list[Path], tmp_path: Path) -> None:
    run = tmp_path / "run"
    shutil.copytree(traces[0], run / "trace")
    result = run_sweep([run], FP8, [], [{"pe_array.rows": 8}], tmp_path / "out", workers=1,
                       progress=False)
    assert list(result.table["trace"].drop_duplicates()) == [str(run)]
    with pytest.raises(InputError, match="same trace"):
        run_sweep([run, traces[0]], FP8, [], [{"pe_array.rows": 8}], tmp_path / "o2",
                  progress=False)


def test_bad_vary_key_gives_did_you_mean(traces: list[Path], tmp_path: Path) -> None:
    result = invoke(traces[0], "--hw", FP8, "--vary", "pe_array.rowz=8,16", "--out",
                    tmp_path / "o")
    assert result.exit_code == 2
    assert result.output.strip() == ("error: --vary: pe_array.rowz: unknown key "
                                     "(did you mean 'rows'?)")
    assert not (tmp_path / "o").exists()


def test_bad_value_fails_before_anything_runs(traces: list[Path], tmp_path: Path) -> None:
    result = invoke(traces[0], "--hw", FP8, "--vary", "pe_array.rows=8,0", "--out",
                    tmp_path / "o")
    assert result.exit_code == 2
    assert "grid point 1: pe_array.rows: 0 is out of range" in result.output
    assert not (tmp_path / "o").exists()
    same = invoke(traces[0], "--hw", FP8, "--vary", "dram.bandwidth_gbps=25,25.0", "--out",
                  tmp_path / "o")
    assert same.exit_code == 2 and "grid points 0 and 1 are the same hardware" in same.output


def test_cli_usage_errors(traces: list[Path], tmp_path: Path) -> None:
    no_grid = invoke(traces[0], "--hw", FP8, "--out", tmp_path / "o")
    assert no_grid.exit_code == 2 and "give at least one --vary" in no_grid.output
    both = invoke(traces[0], "--hw", FP8, "--vary", "pe_array.rows=8", "--out", tmp_path / "o",
                  "--workers", "2", "--dask", "tcp://127.0.0.1:9")
    assert both.exit_code == 2 and "--workers applies to the local executor" in both.output
    phases = invoke(traces[0], "--hw", FP8, "--vary", "pe_array.rows=8", "--out", tmp_path / "o",
                    "--phases", "fw,xx")
    assert phases.exit_code == 2 and "--phases" in phases.output


def test_grid_file_through_the_cli(traces: list[Path], tmp_path: Path) -> None:
    grid = tmp_path / "grid.yaml"
    grid.write_text("zip:\n  pe_array.rows: [8, 32]\n  pe_array.cols: [32, 8]\n")
    out = tmp_path / "out"
    result = invoke(traces[0], "--hw", FP8, "--grid", grid, "--vary",
                    "decoder.compaction=false,true", "--out", out, "--workers", "1",
                    "--phases", "fw", "--no-progress")
    assert result.exit_code == 0, result.output
    table = pd.read_csv(out / "results.csv")
    assert list(table.columns[3:7]) == ["decoder.compaction", "pe_array.rows", "pe_array.cols",
                                        "scope"]
    assert list(table["scope"].drop_duplicates()) == ["total", "fw", "branch1", "branch2"]
    assert list(table[table["scope"] == "total"]["pe_array.rows"]) == [8, 32, 8, 32]
    assert all(math.isnan(v) for v in table[table["scope"] == "fw"]["index_bits"])


def test_help_names_units_and_has_an_example() -> None:
    result = CliRunner().invoke(CLI_GROUP, ["sweep", "--help"])
    assert result.exit_code == 0
    for text in ("Example", "--vary KEY=V1,V2,...", "--grid GRID.yaml", "--resume", "--dask",
                 "cycles", "pJ", "bytes"):
        assert text in result.output


def test_a_point_without_non_mac_work_has_no_whole_step_figures(tmp_path: Path) -> None:
    """vector_unit.lanes 0 counts no non-MAC work: its whole-step columns are blank, so the
    best whole-step point is a point that models the step."""

    trace = synthesize(resnet20(batch=2, image_size=8), tmp_path / "t",
                       SynthConfig(steps=1, gate_sparsity=0.5))
    result = CliRunner().invoke(main, ["sweep", str(trace), "--hw", str(FP8), "--vary",
                                       "vector_unit.lanes=0,64", "--out", str(tmp_path / "s")])
    assert result.exit_code == 0, result.output
    table = pd.read_csv(tmp_path / "s" / "results.csv")
    total = table[table["scope"] == "total"].set_index("vector_unit.lanes")
    assert math.isnan(total.loc[0, "speedup_step"]) and total.loc[64, "speedup_step"] > 0
    best = best_points(table)
    assert best.set_index("metric").loc["seconds_step", "vector_unit.lanes"] == 64
