"""``accelsim trace synth`` and ``accelsim trace info`` through the click app."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from accelsim.cli import main
from accelsim.trace import open_trace
from tests.conftest import ROOT

TOPOLOGY = ("Layer name, IFMAP Height, IFMAP Width, Filter Height, Filter Width, Channels, "
            "Num Filter, Strides,\nc1, 10, 10, 3, 3, 3, 8, 1,\nc2, 8, 8, 3, 3, 8, 8, 1,\n"
            "c3, 6, 6, 1, 1, 8, 16, 1,\n")


def invoke(*args: object):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture(scope="module")
def scdg_trace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("cli") / "scdg"
    result = invoke("trace", "synth", "--network", "resnet20", "--batch", 2, "--steps", 2,
                    "--gate-sparsity", 0.7, "--gate-group-size", 4, "--weight-sparsity", 0.8,
                    "--weight-delta", 0.3, "--weight-pattern", "block:4x4", "--out", out)
    assert result.exit_code == 0, result.output
    assert f"wrote {out}: 2 steps x 2 branches, 21 layers of resnet20 (18 gated, 20 pruned)" \
        in result.output
    return out


@pytest.mark.parametrize("command", [["trace"], ["trace", "synth"], ["trace", "info"]])
def test_help_has_an_example(command: list[str]) -> None:
    result = invoke(*command, "--help")
    assert result.exit_code == 0
    assert "Example" in result.output


def test_synth_writes_a_valid_trace(scdg_trace: Path) -> None:
    trace = open_trace(scdg_trace)
    trace.verify()
    assert trace.steps == [0, 1] and trace.branches == 2
    producer = trace.manifest.producer
    assert producer["config"]["gate_group_size"] == 4
    assert producer["config"]["weight_pattern"] == "block:4x4"
    gate = trace.manifest.layer("layer1.0.conv1").gate
    assert gate.group_size == 4 and gate.gating_groups == 4
    assert trace.gate(0, "layer1.0.conv1", 1).shape == (2, 4, 32, 32)


def test_info_text(scdg_trace: Path) -> None:
    result = invoke("trace", "info", scdg_trace)
    assert result.exit_code == 0, result.output
    text = result.output
    assert "algorithm=synthetic" in text and "network=resnet20" in text
    assert "branches 2; steps 2 (first 0, last 1)" in text
    assert "16->16 k3x3 s1 32x32" in text and "gate s=4 G=4" in text
    assert "then bn+add+relu+fan" in text and "then bn+relu " in text  # non-MAC post ops
    assert "weight block:4x4" in text
    assert "gate 0.300/0.300" in text
    assert "index bits at step 0" in text and "group_bitmap" in text
    assert "total gate" in text and "total weight" in text and "vs bitmap" in text
    assert "4.00x" in text  # SCDG s = 4: the group bitmap is 4x smaller than the bitmap


def test_info_of_a_run_directory_reads_its_trace(scdg_trace: Path, tmp_path: Path) -> None:
    """`accelsim record` prints its run directory; `trace info` takes it like simulate does."""
    import shutil

    run = tmp_path / "run"
    shutil.copytree(scdg_trace, run / "trace")
    result = invoke("trace", "info", run)
    assert result.exit_code == 0, result.output
    head, _, rest = result.output.partition("\n")
    assert head.startswith(f"trace {run / 'trace'} ")
    assert rest == invoke("trace", "info", scdg_trace).output.partition("\n")[2]


def test_info_json(scdg_trace: Path) -> None:
    result = invoke("trace", "info", scdg_trace, "--json")
    assert result.exit_code == 0, result.output
    info = json.loads(result.output)
    assert info["steps"] == {"count": 2, "first": 0, "last": 1}
    assert info["branches"] == 2 and info["producer"]["algorithm"] == "synthetic"
    layers = {layer["name"]: layer for layer in info["layers"]}
    assert len(layers) == 21
    block = layers["layer1.0.conv1"]
    assert block["post_ops"] == ["batchnorm", "relu"]
    assert block["gate"] == {"group_size": 4, "gating_groups": 4,
                             "base_chunks": [[0, 1, 2, 3], [3, 2, 1, 0]],
                             "gradient": "straight_through"}
    assert block["weight"] == {"pattern": "block:4x4"}
    assert block["density_mean"]["gate"] == pytest.approx({"1": 0.3, "2": 0.3}, abs=1e-3)
    assert layers["conv1"]["gate"] is None and layers["conv1"]["density_mean"] == {}
    index = info["index"]
    assert index["step"] == 0 and "group_bitmap" in index["formats"]
    assert len(index["masks"]) == 2 * (18 + 20)
    row = next(r for r in index["masks"] if r["layer"] == "layer1.0.conv1" and r["kind"] == "gate")
    assert row["elements"] == 2 * 16 * 32 * 32
    assert row["bits"]["bitmap"] == row["elements"]
    assert row["bits"]["group_bitmap"] == row["elements"] // 4
    assert row["bits"]["nm"] is None
    assert row["best_format"] == "group_bitmap" and row["bits"]["best"] == row["elements"] // 4
    gate_total = index["totals"]["gate"]
    assert gate_total["reduction"]["group_bitmap"] == pytest.approx(4.0)
    weight_total = index["totals"]["weight"]
    # block:4x4 over whole kernels: 4 * 4 * kh * kw weights per group bit
    assert weight_total["bits"]["group_bitmap"] is not None
    assert weight_total["reduction"]["group_bitmap"] > 16
    total = index["totals"]["all"]
    assert total["elements"] == gate_total["elements"] + weight_total["elements"]
    assert total["bits"]["group_bitmap"] == (gate_total["bits"]["group_bitmap"]
                                             + weight_total["bits"]["group_bitmap"])
    assert total["bits"]["best"] == sum(r["bits"]["best"] for r in index["masks"])
    assert total["reduction"]["best"] == pytest.approx(total["elements"] / total["bits"]["best"])


def test_info_other_step_and_nm(tmp_path: Path) -> None:
    out = tmp_path / "nm"
    assert invoke("trace", "synth", "--network", "resnet20", "--batch", 1, "--steps", 3,
                  "--weight-pattern", "nm:2:4", "--weight-update-every", 2,
                  "--out", out).exit_code == 0
    info = json.loads(invoke("trace", "info", out, "--json", "--step", 2).output)
    assert info["index"]["step"] == 2
    weight = info["index"]["totals"]["weight"]
    assert weight["reduction"]["nm"] == pytest.approx(4 / 3)  # ceil(log2(C(4, 2))) = 3 bits / 4
    assert weight["bits"]["group_bitmap"] is None  # no block pattern: not available
    totals = info["index"]["totals"]
    assert totals["gate"]["masks"] == 0 and totals["gate"]["bits"]["bitmap"] is None


def test_synth_topology(tmp_path: Path) -> None:
    topo = tmp_path / "net.csv"
    topo.write_text(TOPOLOGY)
    out = tmp_path / "t"
    result = invoke("trace", "synth", "--network", topo, "--batch", 2, "--gate-sparsity", 0.5,
                    "--gate-groups", 2, "--out", out)
    assert result.exit_code == 0, result.output
    assert "3 layers of net (2 gated, 0 pruned)" in result.output
    trace = open_trace(out)
    assert [item.gate is not None for item in trace.layers] == [False, True, True]
    assert trace.layers[0].layer.batch == 2
    assert invoke("trace", "info", out).exit_code == 0


def test_synth_is_deterministic_and_overwrite(tmp_path: Path) -> None:
    args = ["trace", "synth", "--network", "resnet20", "--batch", 1, "--steps", 1,
            "--gate-sparsity", 0.5, "--spatial-correlation", 1.0, "--seed", 7]
    for name in ("a", "b"):
        assert invoke(*args, "--out", tmp_path / name).exit_code == 0
    for path in (tmp_path / "a").rglob("*"):
        if path.is_file():
            twin = tmp_path / "b" / path.relative_to(tmp_path / "a")
            assert path.read_bytes() == twin.read_bytes()
    assert invoke(*args, "--out", tmp_path / "a", "--overwrite").exit_code == 0


def test_info_of_a_trace_without_steps(tmp_path: Path) -> None:
    from accelsim.network import resnet20
    from accelsim.trace import TraceLayer, TraceWriter

    layers = [TraceLayer(layer) for layer in resnet20(batch=1).layers]
    TraceWriter.create(tmp_path / "empty", {"algorithm": "none"}, layers).close()
    result = invoke("trace", "info", tmp_path / "empty")
    assert result.exit_code == 0, result.output
    assert "steps 0;" in result.output and "no steps recorded" in result.output
    assert json.loads(invoke("trace", "info", tmp_path / "empty", "--json").output)[
        "index"] is None


@pytest.mark.parametrize(("args", "message"), [
    (["synth", "--network", "resnet20", "--weight-pattern", "nm:3", "--out", "x"],
     "error: --weight-pattern: expected element, nm:N:M"),
    (["synth", "--network", "resnet20", "--weight-pattern", "blocks:4x4", "--out", "x"],
     "error: --weight-pattern"),
    (["synth", "--network", "resnet20", "--gate-sparsity", 0.5, "--gate-group-size", 8,
      "--out", "x"], "error: layer 'layer1.0.conv1': --gate-group-size 8 must divide"),
    (["synth", "--network", "resnet20", "--weight-pattern", "nm:2:4", "--weight-sparsity", 0.7,
      "--out", "x"], "error: --weight-sparsity: 0.7 contradicts --weight-pattern nm:2:4"),
    (["synth", "--network", "resnet20", "--overlap", 0.5, "--out", "x"],
     "error: --overlap: applies to gate masks only"),
    (["synth", "--network", "vgg", "--out", "x"],
     "error: --network: expected a built-in network (resnet20, "),
    (["synth", "--network", "missing.csv", "--out", "x"], "missing.csv: no such topology file"),
    (["info", "missing-trace"], "error: trace missing-trace: no such trace directory"),
])
def test_bad_input_is_one_line_exit_2(args: list, message: str) -> None:
    result = CliRunner().invoke(main, ["trace", *[str(a) for a in args]])
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.output
    assert "Traceback" not in result.output
    assert not Path("x").exists()


def test_trace_errors_are_one_line(scdg_trace: Path, tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["trace", "info", str(scdg_trace), "--step", "9"])
    assert result.exit_code == 2
    assert result.output.strip() == (f"error: trace {scdg_trace}: no step 9 in this trace "
                                     f"(steps 0..1, 2 recorded)")
    topo = tmp_path / "net.csv"
    topo.write_text(TOPOLOGY)
    result = CliRunner().invoke(main, ["trace", "synth", "--network", str(topo), "--width", "2",
                                       "--out", str(tmp_path / "o")])
    assert result.exit_code == 2 and result.output.count("\n") == 1
    assert "--width: applies to built-in networks only" in result.output
    result = CliRunner().invoke(main, ["trace", "synth", "--network", "resnet20", "--batch",
                                       "1", "--out", str(scdg_trace)])
    assert result.exit_code == 2 and result.output.count("\n") == 1
    assert "pass --overwrite" in result.output
    manifest = json.loads((scdg_trace / "manifest.json").read_text())
    assert manifest["producer"]["config"]["gate_group_size"] == 4  # untouched


@pytest.mark.parametrize("args", [
    ["--gate-sparsity", "1.0"], ["--overlap", "1.5"], ["--steps", "0"], ["--branches", "3"],
    ["--weight-sparsity", "-0.1"], ["--spatial-correlation", "-1"],
])
def test_out_of_range_options_exit_2(tmp_path: Path, args: list[str]) -> None:
    result = CliRunner().invoke(main, ["trace", "synth", "--network", "resnet20",
                                       "--out", str(tmp_path / "o"), *args])
    assert result.exit_code == 2
    assert "Traceback" not in result.output and "Invalid value" in result.output
    assert not (tmp_path / "o").exists()


def test_console_script_end_to_end(tmp_path: Path) -> None:
    """The installed `accelsim` entry point, in a real subprocess: synth, then info --json."""
    exe = Path(sys.executable).parent / "accelsim"
    command = [str(exe)] if exe.exists() else [sys.executable, "-m", "accelsim.cli"]
    out = tmp_path / "t"
    made = subprocess.run([*command, "trace", "synth", "--network", "resnet20", "--batch", "1",
                           "--steps", "1", "--gate-sparsity", "0.5", "--out", str(out)],
                          capture_output=True, text=True, cwd=ROOT)
    assert made.returncode == 0, made.stderr
    shown = subprocess.run([*command, "trace", "info", str(out), "--json"], capture_output=True,
                           text=True, cwd=ROOT)
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["steps"]["count"] == 1
    bad = subprocess.run([*command, "trace", "synth", "--network", "resnet20", "--weight-pattern",
                          "nm:9:4", "--out", str(tmp_path / "bad")], capture_output=True,
                         text=True, cwd=ROOT)
    assert bad.returncode == 2
    assert bad.stderr.strip().count("\n") == 0 and "Traceback" not in bad.stderr
