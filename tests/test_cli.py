"""The CLI: every command's help, one-line errors with exit 2, and real end-to-end runs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from accelsim.cli import main
from tests.conftest import FP8, ROOT, SYSTOLIC

REQUIRED_COLUMNS = {
    "layer", "branch", "phase", "macs_dense", "cycles_compute", "cycles_dram", "cycles",
    "energy_pj", "energy_mac_pj", "energy_rf_pj", "energy_buffer_pj", "energy_dram_pj",
    "energy_index_pj", "energy_static_pj", "dram_bytes",
}


def invoke(*args: str):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def all_commands() -> list[list[str]]:
    found: list[list[str]] = [[]]

    def walk(group, prefix):
        for name, command in group.commands.items():
            found.append([*prefix, name])
            if hasattr(command, "commands"):
                walk(command, [*prefix, name])

    walk(main, [])
    return found


@pytest.mark.parametrize("command", all_commands(), ids=lambda c: " ".join(c) or "accelsim")
def test_every_command_has_help(command: list[str]) -> None:
    result = invoke(*command, "--help")
    assert result.exit_code == 0
    assert "Usage:" in result.output
    if command and command[-1] not in ("config",):
        assert "Example" in result.output


def test_simulate_network_writes_tidy_results(tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = invoke("simulate", "--network", "resnet20", "--batch", "4", "--hw", FP8,
                    "--out", out)
    assert result.exit_code == 0, result.output
    assert "TFLOPS/W" in result.output
    table = pd.read_csv(out / "results.csv")
    assert set(table.columns) >= REQUIRED_COLUMNS
    assert set(table["phase"]) == {"fw", "bd", "wg"} and set(table["branch"]) == {1, 2}
    assert len(table) == 2 * (3 * 21 - 1)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["total"]["energy_pj"] == pytest.approx(table["energy_pj"].sum())
    run = json.loads((out / "run.json").read_text())
    assert run["hardware"]["name"] == "fp8-tensor-edge-28nm"
    assert not list(out.glob("*.tmp")) and not list(out.glob(".*"))


def test_simulate_is_deterministic(tmp_path: Path) -> None:
    for name in ("a", "b"):
        invoke("simulate", "--network", "resnet20", "--batch", "2", "--hw", SYSTOLIC,
               "--set", "pe_array.dataflow=os", "--out", tmp_path / name)
    for file in ("results.csv", "summary.json"):
        assert (tmp_path / "a" / file).read_bytes() == (tmp_path / "b" / file).read_bytes()


def test_simulate_topology_with_phases_and_override(tmp_path: Path) -> None:
    topo = tmp_path / "t.csv"
    topo.write_text("Layer name, IFMAP Height, IFMAP Width, Filter Height, Filter Width, "
                    "Channels, Num Filter, Strides, Sparsity,\nc1, 16, 16, 3, 3, 8, 16, 1, 2:4,\n"
                    "c2, 14, 14, 3, 3, 16, 32, 2,,\n")
    result = invoke("simulate", "--topology", topo, "--hw", SYSTOLIC, "--phases", "fw",
                    "--set", "pe_array.rows=16", "--out", tmp_path / "o")
    assert result.exit_code == 0, result.output
    table = pd.read_csv(tmp_path / "o" / "results.csv")
    assert list(table["layer"]) == ["c1", "c2"] and set(table["phase"]) == {"fw"}
    first = table.iloc[0]
    assert first["macs_effective"] == first["macs_dense"] // 2


@pytest.mark.parametrize(("args", "message"), [
    (["simulate", "--network", "resnet20", "--hw", SYSTOLIC, "--set", "pe_array.rowz=4",
      "--out", "x"], "--set: pe_array.rowz: unknown key (did you mean 'rows'?)"),
    (["simulate", "--network", "resnet20", "--hw", SYSTOLIC, "--phases", "fw,xx", "--out", "x"],
     "--phases: expected a comma-separated subset of fw,bd,wg"),
    (["simulate", "--hw", SYSTOLIC, "--out", "x"], "give exactly one of TRACE, --topology"),
    (["simulate", "--topology", "missing.csv", "--hw", SYSTOLIC, "--out", "x"],
     "missing.csv: no such topology file"),
    (["config", "check", "missing.yaml"], "missing.yaml: no such file"),
    (["config", "check", SYSTOLIC, "--set", "dram.bandwidth_gbps=-1"],
     "--set dram.bandwidth_gbps: -1.0 is out of range"),
])
def test_bad_input_is_one_line_exit_2(tmp_path: Path, args: list, message: str) -> None:
    result = CliRunner().invoke(main, [str(a) for a in args])
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.output
    assert "Traceback" not in result.output
    assert not Path("x").exists()


def test_an_internal_error_is_one_line_exit_1_asking_for_a_bug_report(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A bug (an exception that is not bad input) reaches the user as one line with exit 1;
    ACCELSIM_DEBUG=1 shows the traceback instead."""
    import accelsim.api

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("rows do not add up\nsecond line")

    monkeypatch.setattr(accelsim.api, "simulate_dense_to_dir", broken)
    args = ["simulate", "--network", "resnet20", "--hw", FP8, "--out", tmp_path / "out"]
    result = CliRunner().invoke(main, [str(a) for a in args])
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and "internal error (RuntimeError: rows do not add up second line)"\
        in lines[0] and "please report it" in lines[0], result.output
    monkeypatch.setenv("ACCELSIM_DEBUG", "0")  # only 1 turns the traceback on
    result = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
    assert result.exit_code == 1 and "please report it" in result.output
    monkeypatch.setenv("ACCELSIM_DEBUG", "1")
    with pytest.raises(RuntimeError, match="rows do not add up"):
        CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def test_a_file_the_system_refuses_is_one_line_exit_2_not_a_bug(tmp_path: Path) -> None:
    """An output path under a regular file: the OS error, named, exit 2, no bug report."""
    blocker = tmp_path / "file"
    blocker.write_text("x")
    args = ["simulate", "--network", "resnet20", "--hw", FP8, "--out", blocker / "out"]
    result = CliRunner().invoke(main, [str(a) for a in args])
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and str(blocker) in lines[0] and "bug" not in lines[0], lines


def test_an_os_error_without_errno_is_a_failure_not_bad_input(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An OSError that is not the file system's answer (no errno: a lost connection, a
    library's message) is reported as a failure, exit 1, with its message."""
    import accelsim.api

    def broken(*args: object, **kwargs: object) -> None:
        raise OSError("connection to the scheduler closed")

    monkeypatch.setattr(accelsim.api, "simulate_dense_to_dir", broken)
    args = ["simulate", "--network", "resnet20", "--hw", FP8, "--out", tmp_path / "out"]
    result = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
    assert result.exit_code == 1 and "connection to the scheduler closed" in result.output


def test_config_check_and_keys() -> None:
    result = invoke("config", "check", FP8)
    assert result.exit_code == 0 and "ok" in result.output and "MACs/cycle" in result.output
    keys = invoke("config", "keys").output
    assert "dram.bandwidth_gbps" in keys and "[GB/s]" in keys


def test_console_script_end_to_end(tmp_path: Path) -> None:
    """The installed `accelsim` entry point, in a real subprocess."""
    exe = Path(sys.executable).parent / "accelsim"
    command = [str(exe)] if exe.exists() else [sys.executable, "-m", "accelsim.cli"]
    ok = subprocess.run([*command, "simulate", "--network", "resnet18", "--batch", "2",
                         "--hw", str(FP8), "--out", str(tmp_path / "r")], capture_output=True,
                        text=True, cwd=ROOT)
    assert ok.returncode == 0, ok.stderr
    bad = subprocess.run([*command, "config", "check", str(FP8), "--set", "pe_array.rows=abc"],
                         capture_output=True, text=True, cwd=ROOT)
    assert bad.returncode == 2
    assert bad.stderr.strip().count("\n") == 0 and "Traceback" not in bad.stderr


def test_cli_docs_are_in_sync_with_the_commands() -> None:
    from scripts.make_cli_docs import render

    assert (ROOT / "docs" / "cli.md").read_text() == render(), "run scripts/make_cli_docs.py"
