"""Bad input never gets a traceback: one line naming the file and the field, exit 2, nothing
left in --out. One parametrised test per class of bad input (our own corpus)."""

from __future__ import annotations

import gzip
import json
import os
import re
import resource
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import FP8, SYSTOLIC, run_cli

GRID = "vary:\n  pe_array.rows: [8, 16]\n"
TOPOLOGY = ("Layer name, IFMAP Height, IFMAP Width, Filter Height, Filter Width, Channels, "
            "Num Filter, Strides,\nc1, 8, 8, 3, 3, 4, 8, 1,\n")


def bomb(levels: int = 10, width: int = 10) -> str:
    """A flow list whose aliases expand to width**levels strings ("billion laughs")."""
    items = [f"&l0 [{', '.join(['lol'] * width)}]"]
    for level in range(1, levels):
        items.append(f"&l{level} [{', '.join([f'*l{level - 1}'] * width)}]")
    return "[" + ", ".join(items) + "]"


def assert_clean_error(args: list, *expected: str, out: Path | None = None) -> str:
    """Exit 2, one line on stderr holding every ``expected`` text, no traceback, nothing
    written to ``out``. Returns the line."""
    code, _, err = run_cli(*args)
    lines = err.strip().splitlines()
    assert code == 2, (code, err)
    assert len(lines) == 1, err
    assert "Traceback" not in err and len(lines[0]) < 2000, err
    for text in expected:
        assert text in lines[0], (text, lines[0])
    if out is not None:
        assert not out.exists() or not any(out.iterdir()), sorted(out.iterdir())
    return lines[0]


@pytest.fixture(scope="module")
def trace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small synthetic trace: resnet20, batch 2, 2 steps, gates and weight masks."""
    path = tmp_path_factory.mktemp("bad-input") / "trace"
    code, _, err = run_cli("trace", "synth", "--network", "resnet20", "--batch", "2",
                           "--steps", "2", "--gate-sparsity", "0.5", "--weight-sparsity", "0.5",
                           "--out", path)
    assert code == 0, err
    return path


def hw_text() -> str:
    return FP8.read_text()


# ------------------------------------------------------------------------------ YAML bombs


def test_an_alias_bomb_in_a_value_is_refused_in_bounded_memory(tmp_path: Path) -> None:
    """A config whose name (1 KB of text) expands to 10**10 strings: refused before anything
    is built, under a 1 GiB address-space limit (the old loader printed the expansion)."""
    config = tmp_path / "bomb.yaml"
    assert len(bomb()) < 1024
    config.write_text(hw_text().replace("name: fp8-tensor-edge-28nm", f"name: {bomb()}", 1))

    def limit_memory() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))

    done = subprocess.run([sys.executable, "-m", "accelsim.cli", "config", "check", str(config)],
                          capture_output=True, text=True, timeout=120, preexec_fn=limit_memory,
                          env={**os.environ, "PYTHONPATH": str(Path(__file__).parent.parent)})
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1, done.stderr[-2000:]
    assert f"{config}: line " in lines[0] and "aliases expand the document beyond" in lines[0]


@pytest.mark.parametrize("where", ["hw", "grid", "recipe", "set", "vary", "recursive", "top"])
def test_alias_bombs_everywhere_are_one_short_line(where: str, tmp_path: Path,
                                                   trace: Path) -> None:
    out = tmp_path / "out"
    path = tmp_path / "input.yaml"
    if where == "hw":
        path.write_text(hw_text().replace("description:", f"description: {bomb()}\nx_:", 1))
        args = ["config", "check", path]
    elif where == "top":
        lines = ["k0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
        lines += [f"k{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 9)]
        path.write_text("\n".join(lines) + "\n")
        args = ["config", "check", path]
    elif where == "recursive":
        path.write_text("a: &a [1, *a]\n")
        args = ["config", "check", path]
    elif where == "grid":
        path.write_text(f"vary:\n  pe_array.rows: {bomb()}\n")
        args = ["sweep", trace, "--hw", FP8, "--grid", path, "--out", out]
    elif where == "recipe":
        pytest.importorskip("torch")
        path.write_text(f"algo: dense\ndata: {bomb()}\n")
        args = ["record", "--config", path, "--out", out]
    elif where == "set":
        args = ["config", "check", FP8, "--set", f"name={bomb()}"]
    else:
        args = ["sweep", trace, "--hw", FP8, "--vary", f"pe_array.rows={bomb()[1:-1]}",
                "--out", out]
    line = assert_clean_error(args, out=out)
    assert "aliases expand the document beyond" in line or "recursive" in line, line
    assert len(line) < 300, line


def test_many_unknown_keys_list_the_expected_keys_once(tmp_path: Path) -> None:
    path = tmp_path / "hw.yaml"
    path.write_text(hw_text() + "".join(f"extra{i}: 1\n" for i in range(30)))
    line = assert_clean_error(["config", "check", path], str(path), "extra0, extra1",
                              "and 22 more", "expected one of")
    assert line.count("expected one of") == 1 and len(line) < 600, line


def test_control_characters_in_keys_and_names_cannot_break_the_line(tmp_path: Path) -> None:
    config = tmp_path / "hw\nname.yaml"
    config.write_text(hw_text() + '"bad\\r\\nkey": 1\n')
    line = assert_clean_error(["config", "check", config], "hw\\nname.yaml", "'bad\\r\\nkey'")
    assert "unknown key" in line
    assert_clean_error(["config", "check", tmp_path / "no\nsuch.yaml"], "no\\nsuch.yaml")


# ------------------------------------------------------------------------ duplicate keys


@pytest.mark.parametrize("kind", ["hw-nested", "hw-top-level", "flow", "grid", "recipe"])
def test_a_key_given_twice_is_an_error_naming_its_line(kind: str, tmp_path: Path,
                                                      trace: Path) -> None:
    out = tmp_path / "out"
    path = tmp_path / "input.yaml"
    if kind == "hw-nested":
        path.write_text(hw_text().replace("pe_array:\n", "pe_array:\n  rows: 3\n", 1))
        args, key = ["config", "check", path], "rows"
    elif kind == "hw-top-level":
        path.write_text(hw_text() + "dram:\n  bandwidth_gbps: 1\n")
        args, key = ["config", "check", path], "dram"
    elif kind == "flow":
        path.write_text(hw_text().replace("vector_unit:", "x_: {a: 1, a: 2}\nvector_unit:", 1))
        args, key = ["config", "check", path], "a"
    elif kind == "grid":
        path.write_text("vary:\n  pe_array.rows: [8]\n  pe_array.rows: [16]\n")
        args, key = ["sweep", trace, "--hw", FP8, "--grid", path, "--out", out], "pe_array.rows"
    else:
        pytest.importorskip("torch")
        path.write_text("algo: dense\nsteps: 1\nsteps: 2\n")
        args, key = ["record", "--config", path, "--out", out], "steps"
    assert_clean_error(args, f"{path}: line ", f"duplicate key {key!r}", "first given at line",
                       out=out)


@pytest.mark.parametrize(("text", "expected"), [
    ("base: &b {a: 1}\nother:\n  <<: *b\n  a: 2\n", {"a": 2}),  # a merge may be overridden
    ("c:\n  <<: &b\n    <<: {x: 1}\n    x: 2\nother: *b\n", {"x": 2}),  # a merged source
    ("1: a\n'1': b\nother: 0\n", 0),  # an integer key and a string key are two keys
])
def test_what_is_not_a_duplicate_key(text: str, expected: object) -> None:
    from accelsim.inputs import parse_yaml
    assert parse_yaml(text, "t.yaml")["other"] == expected


# ---------------------------------------------------------------- binary and non-UTF-8 files


def _gzip(path: Path) -> None:
    path.write_bytes(gzip.compress(FP8.read_bytes()))


def _latin1(path: Path) -> None:
    path.write_bytes("name: caf\xe9\n".encode("latin-1"))


def _nul(path: Path) -> None:
    path.write_bytes(b"name: x\x00\x00\n")


@pytest.mark.parametrize("make", [_gzip, _latin1, _nul], ids=["gzip", "latin1", "nul"])
@pytest.mark.parametrize("option", ["--hw", "--topology", "--grid", "--config"])
def test_binary_or_non_utf8_files_are_one_line(option: str, make: Callable[[Path], None],
                                               tmp_path: Path, trace: Path) -> None:
    bad = tmp_path / "bad.file"
    make(bad)
    out = tmp_path / "out"
    kind = "CSV" if option == "--topology" else "YAML"
    args = {
        "--hw": ["simulate", "--network", "resnet20", "--hw", bad, "--out", out],
        "--topology": ["simulate", "--topology", bad, "--hw", FP8, "--out", out],
        "--grid": ["sweep", trace, "--hw", FP8, "--grid", bad, "--out", out],
        "--config": ["record", "--config", bad, "--out", out],
    }[option]
    if option == "--config":
        pytest.importorskip("torch")
    assert_clean_error(args, f"{bad}: not a text {kind} file", out=out)


def test_a_directory_given_as_a_config_is_one_line(tmp_path: Path) -> None:
    assert_clean_error(["config", "check", tmp_path], f"{tmp_path}' is a directory")
    from accelsim.errors import InputError
    from accelsim.inputs import read_text_file
    with pytest.raises(InputError, match="is a directory, expected a YAML file"):
        read_text_file(tmp_path, "YAML")


# ------------------------------------------------------------------ unreadable trace files


def _bin_is_a_directory(root: Path) -> None:
    (root / "steps" / "step-00000001.bin").unlink()
    (root / "steps" / "step-00000001.bin").mkdir()


def _bin_is_a_symlink_loop(root: Path) -> None:
    path = root / "steps" / "step-00000001.bin"
    path.unlink()
    path.symlink_to(path.name)


def _json_is_a_directory(root: Path) -> None:
    (root / "steps" / "step-00000001.json").unlink()
    (root / "steps" / "step-00000001.json").mkdir()


def _manifest_is_a_directory(root: Path) -> None:
    (root / "manifest.json").unlink()
    (root / "manifest.json").mkdir()


def _bin_unreadable(root: Path) -> None:
    if os.geteuid() == 0:
        pytest.skip("root reads files whatever their permissions")
    (root / "steps" / "step-00000001.bin").chmod(0)


@pytest.mark.parametrize(("damage", "expected"), [
    (_bin_is_a_directory, "step 1: steps/step-00000001.bin: cannot read (Is a directory)"),
    (_bin_is_a_symlink_loop, "step 1: steps/step-00000001.bin: cannot read (Too many levels"),
    (_json_is_a_directory, "step 1: steps/step-00000001.json: cannot read (Is a directory)"),
    (_manifest_is_a_directory, "manifest.json: cannot read (Is a directory)"),
    (_bin_unreadable, "step 1: steps/step-00000001.bin: cannot read (Permission denied)"),
], ids=["bin-dir", "bin-loop", "json-dir", "manifest-dir", "bin-mode-0"])
@pytest.mark.parametrize("command", ["simulate", "trace info"])
def test_an_unreadable_trace_file_names_the_step_and_file(
        damage: Callable[[Path], None], expected: str, command: str, trace: Path,
        tmp_path: Path) -> None:
    import shutil
    if command == "trace info" and ".bin" in expected:
        pytest.skip("trace info reads the step JSON files only")
    root = tmp_path / "trace"
    shutil.copytree(trace, root, symlinks=True)
    damage(root)
    out = tmp_path / "out"
    args = (["simulate", root, "--hw", FP8, "--phases", "fw", "--out", out]
            if command == "simulate" else ["trace", "info", root])
    assert_clean_error(args, f"trace {root}: {expected}", out=out)


# ------------------------------------------------------------------------- unwritable --out


def _under_a_file(tmp_path: Path) -> tuple[Path, str]:
    (tmp_path / "file").write_text("x")
    return tmp_path / "file" / "out", "cannot be created"


def _a_file(tmp_path: Path) -> tuple[Path, str]:
    (tmp_path / "file").write_text("x")
    return tmp_path / "file", "is a file"


def _pseudo_fs(tmp_path: Path) -> tuple[Path, str]:
    return Path("/proc/accelsim-out"), "cannot write in /proc"


def _dangling(tmp_path: Path) -> tuple[Path, str]:
    (tmp_path / "link").symlink_to(tmp_path / "nowhere")
    return tmp_path / "link", "symbolic link to nothing"


def _read_only(tmp_path: Path) -> tuple[Path, str]:
    if os.geteuid() == 0:
        pytest.skip("root writes into read-only directories")
    (tmp_path / "ro").mkdir(mode=0o500)
    return tmp_path / "ro" / "out", "cannot write in"


def _under_a_dangling_link(tmp_path: Path) -> tuple[Path, str]:
    (tmp_path / "link").symlink_to(tmp_path / "nowhere")
    return tmp_path / "link" / "out", "link is a symbolic link to nothing"


def _a_link_loop(tmp_path: Path) -> tuple[Path, str]:
    (tmp_path / "loop").symlink_to("loop")
    return tmp_path / "loop", "is a symbolic link loop"


def _a_name_too_long(tmp_path: Path) -> tuple[Path, str]:
    return tmp_path / ("x" * 300) / "out", "cannot be created (File name too long)"


def _empty(tmp_path: Path) -> tuple[str, str]:
    return "", "is empty"  # Path("") would be "."


@pytest.mark.parametrize("place", [_under_a_file, _a_file, _pseudo_fs, _dangling, _read_only,
                                   _under_a_dangling_link, _a_link_loop, _a_name_too_long,
                                   _empty],
                         ids=["under-file", "file", "proc", "dangling", "read-only",
                              "under-dangling", "loop", "long-name", "empty"])
@pytest.mark.parametrize("command", ["simulate", "sweep", "compare", "report", "trace-synth",
                                     "record"])
def test_an_unwritable_out_fails_before_any_work(
        place: Callable[[Path], tuple[Path, str]], command: str, trace: Path, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    out, expected = place(tmp_path)
    monkeypatch.chdir(tmp_path)
    import accelsim.api
    import accelsim.engine.replay

    def no_work(*args: object, **kwargs: object) -> None:
        raise AssertionError("work started before --out was checked")

    monkeypatch.setattr(accelsim.engine.replay, "replay_trace", no_work)
    monkeypatch.setattr(accelsim.api, "simulate_dense_to_dir", no_work)
    args = {
        "simulate": ["simulate", trace, "--hw", FP8, "--out", out],
        "sweep": ["sweep", trace, "--hw", FP8, "--vary", "pe_array.rows=8,16", "--out", out],
        "compare": ["compare", trace, "--hw", FP8, "--out", out],
        "report": ["report", trace, "--out", out],
        "trace-synth": ["trace", "synth", "--network", "resnet20", "--out", out],
        "record": ["record", "--steps", "1", "--out", out],
    }[command]
    assert_clean_error(args, "--out", expected)
    assert {p.name for p in tmp_path.iterdir()} <= {"file", "link", "loop", "ro"}  # made here


def test_out_checks_leave_nothing_behind(tmp_path: Path) -> None:
    from accelsim.fileio import check_output_dir
    check_output_dir(tmp_path / "a" / "b")
    check_output_dir(tmp_path)
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------ click usage errors


@pytest.mark.parametrize(("args", "expected"), [
    (["simulate", "--outt", "x"], "accelsim simulate: No such option '--outt'"),
    (["simulat"], "accelsim: No such command 'simulat'"),
    (["simulate", "--network", "resnet20", "--out", "x"], "Missing option '--hw'"),
    (["trace", "synth", "--network", "resnet20", "--batch", "0", "--out", "x"],
     "accelsim trace synth: Invalid value for '--batch'"),
    (["simulate", "--network", "vgg", "--hw", FP8, "--out", "x"], "'--network'"),
    (["config", "check"], "Missing argument 'FILE'"),
])
def test_usage_errors_are_one_line_with_a_help_hint(args: list, expected: str,
                                                    tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    line = assert_clean_error(args, expected)
    assert line.startswith("error: accelsim") and line.endswith("--help)"), line
    assert not Path("x").exists()


def test_a_group_without_a_command_still_shows_its_help() -> None:
    code, _, err = run_cli("trace")
    assert code == 2 and "Usage: accelsim trace" in err and "synth" in err


# -------------------------------------------------------------------- imprecise messages


def test_a_trace_path_that_is_not_a_directory_says_why(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    (tmp_path / "loop").symlink_to("loop")
    (tmp_path / "dangling").symlink_to(tmp_path / "nowhere")
    for name, expected in (("file", "not a directory (a trace is a directory"),
                           ("loop", "cannot open (Too many levels of symbolic links)"),
                           ("dangling", "a symbolic link to nothing"),
                           ("missing", "no such trace directory")):
        assert_clean_error(["trace", "info", tmp_path / name], f"trace {tmp_path / name}: "
                           f"{expected}")


@pytest.mark.parametrize(("ref", "expected"), [
    (1, "ref_step 1 points to its own step"),
    (5, "ref_step 5 points to a later step"),
    ("0", "ref_step '0' is not a step number"),
])
def test_a_weight_reference_says_what_is_wrong_with_it(ref: object, expected: str,
                                                       trace: Path, tmp_path: Path) -> None:
    import shutil
    root = tmp_path / "trace"
    shutil.copytree(trace, root)
    step = root / "steps" / "step-00000001.json"
    data = json.loads(step.read_text())
    entry = next(e for e in data["masks"] if "ref_step" in e)  # masks drawn once: references
    entry["ref_step"] = ref
    step.write_text(json.dumps(data))
    assert_clean_error(["simulate", root, "--hw", FP8, "--out", tmp_path / "o"],
                       f"trace {root}: step 1, layer "
                       f"{entry['layer']!r}, branch {entry['branch']}, weight mask: {expected}")


# ------------------------------------------------------------------ options that do not apply


@pytest.mark.parametrize(("extra", "expected"), [
    (["--batch", "3"], "--batch: applies to --network and --topology only, not to TRACE"),
    (["--branches", "1"], "--branches: applies to --network and --topology only"),
    (["--width", "2"], "--width: applies to --network only, not to TRACE"),
    (["--in-channels", "1"], "--in-channels: applies to --network only"),
    (["--image-size", "16"], "--image-size: applies to --network only"),
])
def test_simulate_trace_refuses_the_options_of_dense_networks(
        extra: list, expected: str, trace: Path, tmp_path: Path) -> None:
    assert_clean_error(["simulate", trace, "--hw", FP8, *extra, "--out", tmp_path / "o"],
                       expected, out=tmp_path / "o")


def test_simulate_refuses_workers_and_shapes_where_they_do_not_apply(tmp_path: Path) -> None:
    topology = tmp_path / "net.csv"
    topology.write_text(TOPOLOGY)
    assert_clean_error(["simulate", "--network", "resnet20", "--workers", "2", "--hw", FP8,
                        "--out", tmp_path / "o"], "--workers: applies to TRACE only")
    assert_clean_error(["simulate", "--topology", topology, "--workers", "2", "--hw", FP8,
                        "--out", tmp_path / "o"], "--workers: applies to TRACE only")
    assert_clean_error(["simulate", "--topology", topology, "--width", "2", "--hw", FP8,
                        "--out", tmp_path / "o"], "--width: applies to --network only, not to "
                       "--topology")


def test_simulate_phases_are_canonical_like_sweep(trace: Path, tmp_path: Path) -> None:
    code, _, err = run_cli("simulate", trace, "--hw", FP8, "--phases", "wg,fw", "--out",
                           tmp_path / "o")
    assert code == 0, err
    run = json.loads((tmp_path / "o" / "run.json").read_text())
    assert run["phases"] == ["fw", "wg"]


@pytest.mark.parametrize(("options", "recipe", "expected"), [
    (["--algo", "cdg", "--weight-pattern", "nm:2:4"], None,
     "--weight-pattern: applies to algo synccp only, not to cdg"),
    (["--algo", "synccp", "--gate-groups", "2"], None,
     "--gate-groups: applies to algo cdg, scdg or cgnet only, not to synccp"),
    ([], "algo: dense\ndelta: 0.1\n", "delta: applies to algo synccp only, not to dense"),
    ([], "algo: synccp\nsteps: ten\nlr: -1\n",
     "steps: expected an integer, got 'ten'; lr: -1.0 is out of range (must be > 0"),
    (["--width", "100"], "algo: dense\n", "Invalid value for '--width': 100.0 is not in the "
     "range 0<x<=64"),  # the option's range is the recipe key's
    ([], "algo: dense\nlr: 1e-3\n", "write it with a dot and a signed exponent"),
    ([], "[algo, dense]\n", "r.yaml: a recipe is a YAML mapping"),
    ([], "algo: synccp\nweight_pattern: bogus\n",
     "r.yaml: SyncCP settings: pattern must be 'element', 'nm:N:M', 'nmt:N:M' or "
     "'block:BOxBI', got 'bogus' (weight_pattern given)"),
    (["--weight-pattern", "nm:4:2"], "algo: synccp\n", "r.yaml: SyncCP settings: N:M pattern "
     "needs 1 <= N < M, got 'nm:4:2' (--weight-pattern given)"),
    ([], "algo: synccp\ndelta: 1\n", "delta: 1.0 is out of range (must be >= 0 and < 1)"),
    ([], "algo: synccp\ninitial_sparsity: 0.9\n",
     "r.yaml: SyncCP settings: need 0 <= initial_sparsity <= final_sparsity < 1"),
    ([], "algo: synccp\nprune_start: 50\nprune_end: 10\n",
     "r.yaml: SyncCP settings: need t0 <= tf"),
    ([], "algo: dense\ndelta: 0.1\nprune_start: 3\ngate_groups: 2\n",
     "delta: applies to algo synccp only, not to dense; prune_start: applies to algo synccp "
     "only, not to dense; gate_groups: applies to algo cdg, scdg or cgnet only, not to dense "
     "(3 errors)"),
    (["--device", "cudaX"], None, "device: must be cpu, cuda or cuda:N, got 'cudaX'"),
    (["--device", "cpu\n"], None, "device: must be cpu, cuda or cuda:N, got 'cpu\\n'"),
])
def test_record_refuses_options_that_do_not_apply_to_its_algorithm(
        options: list, recipe: str | None, expected: str, tmp_path: Path) -> None:
    pytest.importorskip("torch")
    args = ["record", *options]
    if recipe is not None:
        (tmp_path / "r.yaml").write_text(recipe)
        args += ["--config", tmp_path / "r.yaml"]
    assert_clean_error([*args, "--out", tmp_path / "run"], expected, out=tmp_path / "run")


def test_hardware_that_exploits_nothing_in_a_trace_is_warned_about(
        trace: Path, tmp_path: Path) -> None:
    config = tmp_path / "plain.yaml"
    text = SYSTOLIC.read_text()
    start = text.index("sparsity_support:")
    end = text.index("\n\n", start) if "\n\n" in text[start:] else len(text)
    config.write_text(text[:start] + text[end:])
    code, _, err = run_cli("simulate", trace, "--hw", config, "--phases", "fw", "--out",
                           tmp_path / "o")
    assert code == 0, err
    warnings = [line for line in err.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 2, err
    assert "sparsity_support.gate is empty" in warnings[0]
    assert "sparsity_support.weight is empty" in warnings[1]
    code, _, err = run_cli("simulate", trace, "--hw", FP8, "--phases", "fw", "--out",
                           tmp_path / "o2")
    assert code == 0 and "warning" not in err


def test_recipe_problems_name_options_as_options(tmp_path: Path) -> None:
    from accelsim.errors import InputError
    from workloads.run_config import run_config
    (tmp_path / "r.yaml").write_text("algo: dense\nsteps: 0\n")
    with pytest.raises(InputError) as error:
        run_config(tmp_path / "r.yaml", {"width": 100.0})
    assert str(error.value) == (f"{tmp_path / 'r.yaml'}: --width: 100.0 is out of range (must "
                                "be > 0 and <= 64); steps: 0 is out of range (must be >= 1 and "
                                "<= 1000000000) (2 errors)")


def test_the_warning_knows_the_replayed_phases_and_compare_gives_it_too(
        trace: Path, tmp_path: Path) -> None:
    code, _, err = run_cli("simulate", trace, "--hw", SYSTOLIC, "--phases", "bd,wg", "--out",
                           tmp_path / "o")
    assert code == 0, err
    assert "sparsity_support.weight (fw) exploits none of the phases replayed (bd,wg)" in err
    code, _, err = run_cli("compare", trace, "--hw", SYSTOLIC, "--out", tmp_path / "c")
    assert code == 0, err
    assert "warning: systolic-32x32-45nm: sparsity_support.gate is empty" in err


# ----------------------------------------------------------------- JSON nested too deeply


@pytest.mark.parametrize("victim", ["manifest.json", "steps/step-00000001.json", "summary.json",
                                    "sweep.json"])
def test_json_nested_too_deeply_is_one_line(victim: str, trace: Path, tmp_path: Path) -> None:
    import shutil
    deep = "[" * 100_000 + "]" * 100_000
    if victim in ("manifest.json", "steps/step-00000001.json"):
        root = tmp_path / "trace"
        shutil.copytree(trace, root)
        (root / victim).write_text(deep)
        args = ["simulate", root, "--hw", FP8, "--out", tmp_path / "o"]
        expected = "nested too deeply"
    elif victim == "summary.json":
        run = tmp_path / "run"
        assert run_cli("simulate", trace, "--hw", FP8, "--phases", "fw", "--out", run)[0] == 0
        (run / "summary.json").write_text(deep)
        args, expected = ["report", run, "--out", tmp_path / "r"], "summary.json: invalid JSON"
    else:
        sweep = tmp_path / "sweep"
        assert run_cli("sweep", trace, "--hw", FP8, "--phases", "fw", "--vary",
                       "pe_array.rows=8", "--out", sweep, "--no-progress")[0] == 0
        (sweep / "sweep.json").write_text(deep)
        args = ["sweep", trace, "--hw", FP8, "--phases", "fw", "--vary", "pe_array.rows=8",
                "--out", sweep, "--resume", "--no-progress"]
        expected = "sweep.json: unreadable (invalid JSON"
    assert_clean_error(args, expected)


def test_a_broken_pipe_is_quiet() -> None:
    """The reader closes the pipe before accelsim writes a byte: exit 1, nothing on stderr."""
    child = subprocess.Popen([sys.executable, "-m", "accelsim.cli", "config", "keys"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             env={**os.environ, "PYTHONPATH": str(Path(__file__).parent.parent)})
    assert child.stdout is not None and child.stderr is not None
    child.stdout.close()
    err = child.stderr.read().decode()
    assert child.wait(timeout=120) == 1 and err == "", err


def test_a_run_resumes_across_keys_that_do_not_apply_to_its_algorithm() -> None:
    from workloads.run_config import RunConfig, same_run
    config = RunConfig(algo="cdg")
    stored = {**config.to_dict(), "delta": 0.5, "weight_pattern": "nm:2:4"}  # ignored by cdg
    assert same_run(stored, config)
    assert not same_run({**config.to_dict(), "gate_groups": 8}, config)


def test_option_types_are_the_schema_s(tmp_path: Path) -> None:
    import click

    from accelsim.cli_options import schema_option_type
    from workloads.run_config import RunConfig
    delta = schema_option_type(RunConfig, "delta")
    assert isinstance(delta, click.FloatRange) and (delta.min, delta.max) == (0, 1)
    assert not delta.min_open and delta.max_open
    width = schema_option_type(RunConfig, "width")
    assert isinstance(width, click.FloatRange) and width.min_open and not width.max_open
    size = schema_option_type(RunConfig, "gate_group_size")  # int | None
    assert isinstance(size, click.IntRange) and (size.min, size.max) == (1, 1024)
    assert schema_option_type(RunConfig, "algo").choices == (
        "dense", "cdg", "scdg", "cgnet", "fbs", "dgc", "synccp")
    assert schema_option_type(RunConfig, "data") is str


def test_what_a_run_directory_may_be_used_for(tmp_path: Path) -> None:
    """Decided before a file is written: new, resume, restart (killed before its first
    checkpoint), or refused naming why."""
    import yaml

    from accelsim.errors import InputError
    from workloads.run_config import RunConfig
    pytest.importorskip("torch")
    from workloads.train import check_run_directory
    run = tmp_path / "run"
    config = RunConfig(algo="cdg", steps=5)
    assert check_run_directory(run, config) == "new"
    (run / "trace" / "steps").mkdir(parents=True)
    (run / "trace" / "manifest.json").write_text("{}")
    with pytest.raises(InputError, match=r"holds a trace or a checkpoint but no run\.yaml"):
        check_run_directory(run, config)
    (run / "run.yaml").write_text(yaml.safe_dump(config.to_dict()))
    assert check_run_directory(run, config) == "restart"
    for name in ("step-00000000.json", "step-00000003.json"):
        (run / "trace" / "steps" / name).write_text("{}")
    with pytest.raises(InputError, match="recorded steps of this run but no checkpoint"):
        check_run_directory(run, config)
    (run / "checkpoint.json").write_text("{}")
    assert check_run_directory(run, config) == "resume"
    with pytest.raises(InputError, match=r"different configuration \(steps: 5 there, 6 here\)"):
        check_run_directory(run, RunConfig(algo="cdg", steps=6, delta=0.5))  # delta: not cdg's
    (run / "run.yaml").write_text(yaml.safe_dump({**config.to_dict(), "old_key": 1}))
    with pytest.raises(InputError, match=r"run\.yaml has keys this accelsim does not know"):
        check_run_directory(run, config)
    (run / "run.yaml").write_text("[1, 2]\n")
    with pytest.raises(InputError, match=r"run\.yaml: is not a mapping"):
        check_run_directory(run, config)


TINY = ("algo: dense\ndata: 'synthetic:n=32,size=8'\nsteps: 1\nbatch_size: 8\n"
        "record_every: 1\nlinear_probe: false\neval_train_samples: 16\n"
        "eval_test_samples: 16\nknn_k: 4\n")


def test_a_batch_larger_than_the_dataset_is_refused_before_anything_is_written(
        tmp_path: Path) -> None:
    pytest.importorskip("torch")
    (tmp_path / "r.yaml").write_text(TINY.replace("batch_size: 8", "batch_size: 64"))
    assert_clean_error(["record", "--config", tmp_path / "r.yaml", "--out", tmp_path / "run"],
                       "batch_size: 64 is larger than the dataset 'synthetic:n=32,size=8' (32 "
                       "training images)", out=tmp_path / "run")


def test_a_run_stopped_before_its_first_checkpoint_starts_again(tmp_path: Path) -> None:
    """run.yaml and a trace were written, then the run was killed before step 0's checkpoint:
    the same command starts again (it does not refuse the trace it left)."""
    pytest.importorskip("torch")
    import yaml

    from workloads.run_config import run_config
    recipe, run = tmp_path / "r.yaml", tmp_path / "run"
    recipe.write_text(TINY)
    (run / "trace").mkdir(parents=True)
    (run / "run.yaml").write_text(yaml.safe_dump(run_config(recipe, {}).to_dict()))
    (run / "trace" / "manifest.json").write_text("{}")
    code, _, err = run_cli("record", "--config", recipe, "--out", run, "--quiet")
    assert code == 0, err
    assert (run / "eval.json").is_file() and (run / "trace" / "steps").is_dir()


def test_corrupt_files_of_a_run_directory_are_named() -> None:
    pytest.importorskip("torch")
    import tempfile

    from accelsim.errors import InputError
    from workloads.train import _read_evaluation, _truncate_log
    with tempfile.TemporaryDirectory() as folder:
        log, evaluation = Path(folder) / "log.csv", Path(folder) / "eval.json"
        log.write_text("step,loss\n0,1.0\nx,2.0\n")
        with pytest.raises(InputError, match=r"log\.csv: a row does not start with its step"):
            _truncate_log(log, 1)
        log.write_bytes(b"step,loss\n\xff\n")
        with pytest.raises(InputError, match="not a text CSV file"):
            _truncate_log(log, 1)
        for text in ("{}", "[]", '{"knn_accuracy": "x", "chance_accuracy": 0.1}',
                     '{"knn_accuracy": 0.5, "chance_accuracy": 0.1, "linear_accuracy": "x"}',
                     '{"knn_accuracy": 0.5, "chance_accuracy": 0.1, "weight_sparsity": 3}'):
            evaluation.write_text(text)
            with pytest.raises(InputError, match=r"eval\.json: not an evaluation"):
                _read_evaluation(evaluation)


@pytest.mark.parametrize(("spec", "expected"), [
    ("synthetic:seed=99999999999999999999999", "seed: 99999999999999999999999 is out of range"),
    ("synthetic:n=\u00b2", "n: expected a non-negative integer, got '\u00b2'"),
    ("synthetic:n=100000000000", "n: 100000000000 is out of range (must be <= 10000000)"),
    ("synthetic:n=1000000,size=1024", "bytes of images, more than 256 MiB"),
])
def test_synthetic_dataset_parameters_are_bounded(spec: str, expected: str) -> None:
    pytest.importorskip("torch")
    from accelsim.errors import InputError
    from workloads.data import load_dataset
    with pytest.raises(InputError) as error:
        load_dataset(spec, "train")
    assert expected in str(error.value) and "\n" not in str(error.value)


@pytest.mark.parametrize(("text", "expected"), [
    ("1: a\n0x1: b\n", "line 2: duplicate key '0x1' (first given at line 1)"),
    ("yes: a\ntrue: b\n", "line 2: duplicate key 'true' (first given at line 1)"),
    ("1: a\n1.0: b\n", "line 2: duplicate key '1.0' (first given at line 1)"),
    ("k: 2001-13-45\n", "invalid YAML value (month must be in 1..12)"),
    ("2001-13-45: k\n", "invalid YAML value (month must be in 1..12)"),
    ("a: [" + ",".join(["1"] * 200_000) + "]\n", "more than 100,000 values: not a config"),
])
def test_keys_that_mean_the_same_and_huge_documents(text: str, expected: str) -> None:
    from accelsim.errors import InputError
    from accelsim.inputs import parse_yaml
    with pytest.raises(InputError, match=re.escape(expected)):
        parse_yaml(text, "t.yaml")
