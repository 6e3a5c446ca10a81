"""Fuzz-style property tests: malformed configs, manifests, step files, recipes and command
lines have two outcomes only, success or a clean error (exit 2, one line, no traceback)."""

from __future__ import annotations

import copy
import json
import shutil
import uuid
from pathlib import Path
from typing import Any

import click
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from accelsim.cli import main
from accelsim.errors import InputError
from tests.conftest import FP8, run_cli

FUZZ = settings(max_examples=40, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow])

scalars = st.one_of(st.none(), st.booleans(), st.integers(-3, 3), st.integers(),
                    st.floats(allow_nan=True, allow_infinity=True),
                    st.text(max_size=12), st.sampled_from(["fw", "bitmap", "tensor", "fp8",
                                                           "cdg", "nm:2:4", "1.3"]))
values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)),
    max_leaves=12)


def paths_of(tree: Any, prefix: tuple = ()) -> list[tuple]:
    """Every path (tuple of keys / indices) into a parsed YAML/JSON tree."""
    found = [prefix]
    if isinstance(tree, dict):
        for key, value in tree.items():
            found += paths_of(value, (*prefix, key))
    elif isinstance(tree, list):
        for index, value in enumerate(tree):
            found += paths_of(value, (*prefix, index))
    return found


@st.composite
def mutated(draw: st.DrawFn, tree: Any) -> Any:
    """``tree`` with 1-3 random edits: a value replaced, a key deleted or added, a node
    wrapped in a list."""
    tree = copy.deepcopy(tree)
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(paths_of(tree)))
        if not path:
            continue
        parent = tree
        for part in path[:-1]:
            parent = parent[part]
        action = draw(st.sampled_from(["replace", "delete", "add", "wrap"]))
        last = path[-1]
        if action == "replace":
            parent[last] = draw(values)
        elif action == "delete":
            del parent[last]
        elif action == "add" and isinstance(parent, dict):
            parent[draw(st.text(min_size=1, max_size=10))] = draw(values)
        else:
            parent[last] = [parent[last]]
    return tree


def assert_success_or_clean_error(args: list) -> None:
    code, _, err = run_cli(*args)
    assert code in (0, 2), (args, code, err[-2000:])
    if code == 2 and not err.startswith("Usage:"):  # a group without a command shows its help
        lines = [line for line in err.strip().splitlines() if not line.startswith("warning:")]
        assert len(lines) == 1 and lines[0].startswith("error: "), (args, err[-2000:])
        assert "Traceback" not in err and len(lines[0]) < 2000, (args, err[-2000:])


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A small trace and a simulate output directory made from it."""
    root = tmp_path_factory.mktemp("fuzz")
    trace = root / "trace"
    code, _, err = run_cli("trace", "synth", "--network", "resnet20", "--batch", "1", "--steps",
                           "2", "--gate-sparsity", "0.5", "--weight-sparsity", "0.5",
                           "--weight-update-every", "1", "--out", trace)
    assert code == 0, err
    run = root / "run"
    code, _, err = run_cli("simulate", trace, "--hw", FP8, "--phases", "fw", "--out", run)
    assert code == 0, err
    return {"root": root, "trace": trace, "run": run}


# ------------------------------------------------------------------- configs and manifests

HW_TREE = yaml.safe_load(FP8.read_text())


@FUZZ
@given(tree=mutated(HW_TREE))
def test_malformed_hardware_configs(tree: Any, tmp_path: Path) -> None:
    config = tmp_path / f"{uuid.uuid4().hex}.yaml"
    config.write_text(yaml.safe_dump(tree))
    assert_success_or_clean_error(["config", "check", config])
    assert_success_or_clean_error(["simulate", "--network", "resnet20", "--batch", "1",
                                   "--phases", "fw", "--hw", config,
                                   "--out", tmp_path / uuid.uuid4().hex])


@FUZZ
@given(text=st.text(max_size=300), cut=st.integers(0, 6000))
def test_arbitrary_and_truncated_yaml_text(text: str, cut: int, tmp_path: Path) -> None:
    for body in (text, FP8.read_text()[:cut] + text):
        config = tmp_path / f"{uuid.uuid4().hex}.yaml"
        config.write_text(body)
        assert_success_or_clean_error(["config", "check", config])


def _mutated_trace(base: dict[str, Path], name: str, tree: Any) -> Path:
    trace = base["root"] / uuid.uuid4().hex
    shutil.copytree(base["trace"], trace)
    (trace / name).write_text(json.dumps(tree))
    return trace


def _tree(base: dict[str, Path], name: str) -> Any:
    return json.loads((base["trace"] / name).read_text())


@FUZZ
@given(data=st.data())
def test_malformed_manifests(base: dict[str, Path], data: st.DataObject) -> None:
    tree = data.draw(mutated(_tree(base, "manifest.json")))
    trace = _mutated_trace(base, "manifest.json", tree)
    assert_success_or_clean_error(["trace", "info", trace])
    assert_success_or_clean_error(["simulate", trace, "--hw", FP8, "--phases", "fw",
                                   "--out", trace / "out"])
    shutil.rmtree(trace)


@FUZZ
@given(data=st.data(), step=st.sampled_from([0, 1]))
def test_malformed_step_files(base: dict[str, Path], data: st.DataObject, step: int) -> None:
    name = f"steps/step-{step:08d}.json"
    tree = data.draw(mutated(_tree(base, name)))
    trace = _mutated_trace(base, name, tree)
    assert_success_or_clean_error(["trace", "info", trace])
    assert_success_or_clean_error(["simulate", trace, "--hw", FP8, "--phases", "fw,wg",
                                   "--out", trace / "out"])
    shutil.rmtree(trace)


@FUZZ
@given(data=st.data(), offset=st.integers(0, 10_000), junk=st.binary(min_size=1, max_size=8))
def test_corrupt_mask_bytes(base: dict[str, Path], data: st.DataObject, offset: int,
                            junk: bytes) -> None:
    trace = base["root"] / uuid.uuid4().hex
    shutil.copytree(base["trace"], trace)
    blob = trace / "steps" / "step-00000001.bin"
    raw = bytearray(blob.read_bytes())
    at = offset % len(raw)
    raw[at:at + len(junk)] = junk
    if data.draw(st.booleans()):
        raw = raw[:at]  # truncated
    blob.write_bytes(bytes(raw))
    assert_success_or_clean_error(["simulate", trace, "--hw", FP8, "--phases", "fw",
                                   "--out", trace / "out"])
    shutil.rmtree(trace)


RECIPE = {"algo": "synccp", "steps": 10, "weight_pattern": "nm:2:4", "final_sparsity": 0.5,
          "batch_size": 8, "data": "synthetic", "lr": 0.001, "image_size": None}


@FUZZ
@given(tree=mutated(RECIPE))
def test_malformed_recipes(tree: Any, tmp_path: Path) -> None:
    pytest.importorskip("torch")
    from workloads.train import RunConfig, run_config
    recipe = tmp_path / f"{uuid.uuid4().hex}.yaml"
    recipe.write_text(yaml.safe_dump(tree))
    try:
        assert isinstance(run_config(recipe, {}), RunConfig)
    except InputError as error:
        assert "\n" not in str(error) and str(recipe) in str(error), str(error)


# -------------------------------------------------------------------------- command lines


def leaf_commands() -> list[tuple[str, ...]]:
    found = []

    def walk(group: click.Group, prefix: tuple[str, ...]) -> None:
        for name, command in group.commands.items():
            if isinstance(command, click.Group):
                walk(command, (*prefix, name))
            else:
                found.append((*prefix, name))
    walk(main, ())
    return sorted(found)


def command_of(path: tuple[str, ...]) -> click.Command:
    command: click.Command = main
    for name in path:
        assert isinstance(command, click.Group)
        command = command.commands[name]
    return command


TOKENS = ["", "0", "1", "2", "-1", "1.5", "nan", "1e309", "fw", "wg,fw", "fw,xx", "resnet20",
          "x" * 300, "pe_array.rows=8", "pe_array.rowz=8", "name=[&a [1], *a]", "nm:2:4",
          "block:2x2", "cdg", "synccp", "simclr", "byol", "element", "ü"]


def _base_args(path: tuple[str, ...], base: dict[str, Path], out: Path) -> list:
    return {
        ("compare",): [base["trace"], "--hw", FP8, "--out", out],
        ("config", "check"): [FP8],
        ("config", "keys"): [],
        ("record",): ["--data", "synthetic", "--out", out],
        ("report",): [base["run"], "--out", out],
        ("simulate",): [base["trace"], "--hw", FP8, "--out", out],
        ("sweep",): [base["trace"], "--hw", FP8, "--vary", "pe_array.rows=8", "--out", out],
        ("trace", "info"): [base["trace"]],
        ("trace", "synth"): ["--network", "resnet20", "--batch", "1", "--steps", "1", "--out",
                             out],
    }[path]


@pytest.mark.parametrize("path", leaf_commands(), ids=" ".join)
def test_every_option_of_every_command_fails_cleanly_or_works(
        path: tuple[str, ...], base: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    """Each command gets its working arguments plus random options from its own list (all but
    ``--out``, which the unwritable-output tests cover), with values from a pool of plausible
    and hostile tokens. Training is replaced by a stub (what
    is fuzzed is how the command line is checked, not the training loop)."""
    if path == ("record",):
        pytest.importorskip("torch")
        import workloads.train

        def no_training(config: Any, out: Path, progress: bool = True) -> dict[str, Any]:
            assert isinstance(config, workloads.train.RunConfig)
            return {"knn_accuracy": 0.5, "chance_accuracy": 0.1}
        monkeypatch.setattr(workloads.train, "train", no_training)
    monkeypatch.chdir(base["root"])  # whatever a token names, it lands in the test's folder
    command = command_of(path)
    options = [p for p in command.params if isinstance(p, click.Option) and
               "--help" not in p.opts and "--out" not in p.opts]  # --out: the test's own
    assert options or path in (("config", "keys"), ("report",))  # report: DIRS and --out

    slow = path in (("report",), ("compare",))  # a success draws every figure: seconds

    @settings(max_examples=8 if slow else 25, deadline=None, derandomize=True,
              suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
    @given(choices=st.lists(st.tuples(st.sampled_from(options or [None]),
                                      st.sampled_from(TOKENS)), max_size=3))
    def check(choices: list[tuple[click.Option | None, str]]) -> None:
        out = base["root"] / uuid.uuid4().hex
        args = [*path, *_base_args(path, base, out)]
        for option, token in choices:
            if option is None:
                continue
            if option.name == "workers" and token not in ("0", "1", "-1"):
                token = "1"  # keep process pools out of a fuzz loop
            args += [option.opts[0]] if option.is_flag else [option.opts[0], token]
        assert_success_or_clean_error(args)
        shutil.rmtree(out, ignore_errors=True)

    check()
