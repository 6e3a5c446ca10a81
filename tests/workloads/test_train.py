"""Real short training runs: every algorithm records a trace the simulator replays; recorded masks
are the ones the forward used; determinism and crash-resume give identical traces."""

from __future__ import annotations

import copy
import dataclasses
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

torch = pytest.importorskip("torch")

from click.testing import CliRunner  # noqa: E402

from accelsim.cli import main  # noqa: E402
from accelsim.network import builtin_network  # noqa: E402
from accelsim.trace import TraceReader  # noqa: E402
from workloads import run_config as run_config_module  # noqa: E402
from workloads.gating import branch_convs, set_branch  # noqa: E402
from workloads.train import RunConfig, Trainer, step_generator, train  # noqa: E402

DATA = "synthetic:n=96,classes=4,size=16,channels=1,seed=3"
FP8 = Path(__file__).resolve().parents[2] / "hw_configs" / "fp8_tensor_edge_28nm.yaml"


def tiny(**overrides: object) -> RunConfig:
    base = {"data": DATA, "steps": 3, "record_every": 1, "batch_size": 8, "linear_probe": False,
            "eval_train_samples": 64, "eval_test_samples": 32, "knn_k": 5, "threads": 1,
            "gate_groups": 2, "update_every": 1}
    return RunConfig(**{**base, **overrides})


ALGOS = {
    "dense": {"finetune_epochs": 1, "finetune_fraction": 0.25},
    "cdg": {"algo": "cdg"},
    "scdg": {"algo": "scdg"},
    "cgnet": {"algo": "cgnet"},
    "fbs": {"algo": "fbs"},
    "dgc": {"algo": "dgc", "dgc_heads": 2},
    "synccp-element": {"algo": "synccp"},
    "synccp-2:4": {"algo": "synccp", "weight_pattern": "nm:2:4"},
    "synccp-block": {"algo": "synccp", "weight_pattern": "block:4x4"},
}


@pytest.mark.parametrize("name", list(ALGOS))
def test_every_algorithm_records_a_trace_that_replays(tmp_path: Path, name: str) -> None:
    out = tmp_path / "run"
    result = train(tiny(**ALGOS[name]), out, progress=False)
    assert 0 <= result["knn_accuracy"] <= 1
    reader = TraceReader(out / "trace")
    assert reader.steps == [0, 1, 2]
    reader.verify()
    gated = [item for item in reader.layers if item.gate is not None]
    pruned = [item for item in reader.layers if item.weight is not None]
    selected = [item for item in reader.layers if item.select is not None]
    assert bool(gated) == (name in ("cdg", "scdg", "cgnet", "fbs"))
    assert bool(selected) == (name == "dgc")
    assert bool(pruned) == name.startswith("synccp")
    sim = CliRunner().invoke(main, ["simulate", str(out), "--hw", str(FP8), "--out",
                                    str(tmp_path / "sim")])
    assert sim.exit_code == 0, sim.output
    summary = json.loads((tmp_path / "sim" / "summary.json").read_text())
    assert summary["accuracy"]["knn_accuracy"] == result["knn_accuracy"]
    if "finetune_epochs" in ALGOS[name]:  # fine-tuned on a quarter of the 96 images
        assert result["finetune_samples"] == 24 and 0 <= result["finetune_accuracy"] <= 1
        assert summary["accuracy"]["finetune_accuracy"] == result["finetune_accuracy"]
    else:
        assert "finetune_accuracy" not in result
    if name != "dense":
        assert summary["total"]["flops_reduction"] > 1
    # the recorded network's BN/ReLU/add work and the run's own optimizer reach the replay
    assert [item.layer.post_ops for item in reader.layers] == [
        layer.post_ops for layer in builtin_network("resnet20", batch=8, image_size=16).layers]
    assert summary["optimizer"] == tiny().optimizer
    assert summary["total"]["cycles_non_mac"] > 0


def run_and_restart(config: RunConfig, tmp_path: Path) -> tuple[Trainer, dict]:
    """Train ``config`` in tmp_path/run, then a fresh trainer holding the state from before
    step 0, in training mode, and step 0's two augmented views ({view: images})."""
    from workloads.train import batch_indices

    trainer = Trainer(config, tmp_path / "run", progress=False)
    before = copy.deepcopy(trainer.method.state_dict())
    trainer.run()
    fresh = Trainer(config, tmp_path / "other", progress=False)
    fresh.method.load_state_dict(before)
    fresh.method.train()
    index = batch_indices(0, len(fresh.train_ds.labels), config.batch_size, config.seed)
    images = fresh.train_ds.images[index]
    return fresh, {b: fresh.augment(images, step_generator(config.seed, 0, b)) for b in (1, 2)}


def test_recorded_gates_are_the_ones_the_forward_used(tmp_path: Path) -> None:
    """Re-run a recorded step from the model state before it and compare bit for bit."""
    fresh, views = run_and_restart(tiny(algo="cdg"), tmp_path)
    reader = TraceReader(tmp_path / "run" / "trace")
    checked = 0
    with torch.no_grad():
        for branch, view in views.items():
            set_branch(fresh.method, branch)
            fresh.method.encode(view, branch)
            for name, conv in branch_convs(fresh.method.encoders()[branch]):
                if conv.gating is None:
                    continue
                recorded = reader.gate(0, name, branch)
                assert np.array_equal(conv.last_gate[branch].numpy(), recorded), (name, branch)
                checked += 1
    assert checked == 2 * len([i for i in reader.layers if i.gate is not None])


def test_gate_sparsity_rises_under_the_regulariser(tmp_path: Path) -> None:
    out = tmp_path / "run"
    train(tiny(algo="cdg", steps=12, record_every=11, gate_lr=0.05, reg_lambda=1e-2), out,
          progress=False)
    reader = TraceReader(out / "trace")
    first, last = reader.stats(reader.steps[0]), reader.stats(reader.steps[-1])
    assert last["gate_sparsity"] > first["gate_sparsity"] + 0.05


def test_base_paths_per_branch(tmp_path: Path) -> None:
    for overlap, equal in ((0.0, False), (1.0, True)):
        out = tmp_path / f"o{overlap}"
        train(tiny(algo="cdg", steps=1, overlap=overlap), out, progress=False)
        gate = next(i.gate for i in TraceReader(out / "trace").layers if i.gate is not None)
        first, second = gate.base_chunks
        assert (list(first) == list(second)) == equal
        assert list(first) == [0, 1]


@pytest.mark.parametrize(("pattern", "nm"), [("nm:2:4", (2, 4)), ("element", None)])
def test_synccp_masks_nested_and_nm_exact(tmp_path: Path, pattern: str, nm) -> None:
    out = tmp_path / "run"
    train(tiny(algo="synccp", weight_pattern=pattern, final_sparsity=0.5, delta=0.25), out,
          progress=False)
    reader = TraceReader(out / "trace")
    for step in reader.steps:
        for item in reader.layers:
            if item.weight is None:
                continue
            one, two = reader.weight(step, item.name, 1), reader.weight(step, item.name, 2)
            assert not (one & ~two).any(), (step, item.name)  # branch 2 contains branch 1
            if nm is not None:
                n, m = nm
                groups = one.reshape(one.shape[0], one.shape[1] // m, m, *one.shape[2:])
                assert (groups.sum(axis=2) == n).all()


def test_same_seed_same_trace_bit_for_bit(tmp_path: Path) -> None:
    for name in ("a", "b"):
        train(tiny(algo="scdg"), tmp_path / name, progress=False)
    files = sorted(p.relative_to(tmp_path / "a" / "trace")
                   for p in (tmp_path / "a" / "trace").rglob("*") if p.is_file())
    assert files
    for rel in files:
        assert (tmp_path / "a" / "trace" / rel).read_bytes() == \
            (tmp_path / "b" / "trace" / rel).read_bytes(), rel


def test_killed_run_resumes_with_the_trace_intact(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    config = tiny(algo="synccp", steps=6, record_every=2)
    train(config, tmp_path / "whole", progress=False)

    real_step = Trainer.train_step

    def dying(self, step, recorder, last):
        if step == 4:
            raise KeyboardInterrupt
        return real_step(self, step, recorder, last)

    monkeypatch.setattr(Trainer, "train_step", dying)
    with pytest.raises(KeyboardInterrupt):
        train(config, tmp_path / "cut", progress=False)
    assert TraceReader(tmp_path / "cut" / "trace").steps == [0, 2]
    monkeypatch.setattr(Trainer, "train_step", real_step)
    train(config, tmp_path / "cut", progress=False)
    whole, cut = tmp_path / "whole" / "trace", tmp_path / "cut" / "trace"
    for path in sorted(whole.rglob("*")):
        if path.is_file():
            assert path.read_bytes() == (cut / path.relative_to(whole)).read_bytes(), path
    log = (tmp_path / "cut" / "log.csv").read_text().splitlines()
    assert [int(line.split(",")[0]) for line in log[1:]] == list(range(6))


def test_run_yaml_of_an_older_version_still_matches() -> None:
    """A run.yaml written before a RunConfig key existed matches while that key keeps its
    default (so old runs resume); any differing value does not."""
    from workloads.train import same_run
    config = tiny(algo="cdg")
    stored = config.to_dict()
    assert same_run(stored, config)
    older = {key: value for key, value in stored.items() if key != "trace_min_saving"}
    assert same_run(older, config)
    assert not same_run(older, dataclasses.replace(config, trace_min_saving=0.5))
    assert not same_run({**stored, "steps": config.steps + 1}, config)
    assert not same_run(None, config)


def test_record_cli_errors_are_one_line(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["record", "--data", "cifar10:/nonexistent", "--steps", "1",
                                       "--out", str(tmp_path / "r")])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1
    recipe = tmp_path / "r.yaml"
    recipe.write_text("algo: cdg\nstepz: 3\n")
    result = CliRunner().invoke(main, ["record", "--config", str(recipe), "--out",
                                       str(tmp_path / "r2")])
    assert result.exit_code == 2 and "did you mean 'steps'" in result.output
    recipe.write_text("algo: cdg\ntrace_min_saving: 1.5\n")
    result = CliRunner().invoke(main, ["record", "--config", str(recipe), "--out",
                                       str(tmp_path / "r3")])
    assert result.exit_code == 2 and "trace_min_saving" in result.output
    assert "1.5 is out of range (must be >= 0 and <= 1)" in result.output
    assert run_config_module.ALGORITHMS[0] == "dense"


def test_every_recipe_loads() -> None:
    from workloads.train import run_config

    recipes = sorted((Path(__file__).resolve().parents[2] / "workloads" / "recipes").glob("*.yaml"))
    assert len(recipes) >= 8
    algos = {run_config(path, {}).algo for path in recipes}
    assert algos == {"dense", "cdg", "scdg", "fbs", "dgc", "synccp"}


def test_an_imagenet_style_run_from_an_image_folder(tmp_path: Path) -> None:
    """resnet18-imagenet on a train/ val/ folder: the images are decoded at the run's
    image_size, the trace's layers are the built-in network's (N = record_samples), and it
    replays."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for split, count in (("train", 6), ("val", 2)):
        for label in ("a", "b"):
            folder = tmp_path / "data" / split / label
            folder.mkdir(parents=True)
            for i in range(count):
                Image.fromarray(rng.integers(0, 255, (50, 60, 3), dtype=np.uint8)).save(
                    folder / f"{i}.png")
    out = tmp_path / "run"
    config = tiny(model="resnet18-imagenet", width=0.25, data=f"folder:{tmp_path / 'data'}",
                  image_size=40, batch_size=4, record_samples=2, steps=1,
                  eval_train_samples=0, eval_test_samples=0, knn_k=3)
    assert Trainer(config, tmp_path / "unused", progress=False).train_ds.image_size == (40, 40)
    train(config, out, progress=False)
    layers = [item.layer for item in TraceReader(out / "trace").layers]
    assert layers == list(builtin_network("resnet18-imagenet", batch=2, width=0.25,
                                          image_size=40).layers)
    sim = CliRunner().invoke(main, ["simulate", str(out), "--hw", str(FP8), "--out",
                                    str(tmp_path / "sim")])
    assert sim.exit_code == 0, sim.output


def test_a_symmetric_byol_run_records_its_four_passes(tmp_path: Path) -> None:
    """online(view 1), target(view 2), online(view 2), target(view 1): each pass's gates, bit
    for bit, as trace branches 1-4, which replay with the second online pass's backward."""
    fresh, views = run_and_restart(tiny(algo="cdg", ssl="byol", symmetric=True, steps=2),
                                   tmp_path)
    reader = TraceReader(tmp_path / "run" / "trace")
    assert reader.branches == 4
    gated = [item for item in reader.layers if item.gate is not None]
    assert gated and all(item.gate.base_chunks[2] == item.gate.base_chunks[0]
                         and item.gate.base_chunks[3] == item.gate.base_chunks[1]
                         and item.gate.base_chunks[0] != item.gate.base_chunks[1]
                         for item in gated)
    passes = {1: (1, 1), 2: (2, 2), 3: (1, 2), 4: (2, 1)}  # trace branch: (encoder, view)
    with torch.no_grad():
        for branch, (encoder, view) in passes.items():
            fresh.method.encode(views[view], encoder, record_as=branch)
            for item in gated:
                conv = dict(branch_convs(fresh.method.encoders()[encoder]))[item.name]
                assert np.array_equal(conv.last_gate[branch].numpy(),
                                      reader.gate(0, item.name, branch)), (item.name, branch)
    assert not np.array_equal(reader.gate(0, gated[0].name, 1), reader.gate(0, gated[0].name, 3))
    sim = CliRunner().invoke(main, ["simulate", str(tmp_path / "run"), "--hw", str(FP8),
                                    "--out", str(tmp_path / "sim")])
    assert sim.exit_code == 0, sim.output
    jobs = pd.read_csv(tmp_path / "sim" / "results.csv")
    assert jobs.groupby("branch")["phase"].agg(set).to_dict() == {
        1: {"fw", "bd", "wg"}, 2: {"fw"}, 3: {"fw", "bd", "wg"}, 4: {"fw"}}
    problem = CliRunner().invoke(main, ["record", "--ssl", "simclr", "--symmetric", "--data",
                                        DATA, "--out", str(tmp_path / "refused")])
    assert problem.exit_code == 2 and "symmetric: applies to ssl byol or moco only" in \
        problem.output, problem.output
    assert not (tmp_path / "refused").exists()


def test_a_transposable_nm_run_records_masks_whose_bd_the_replay_shrinks(tmp_path: Path) -> None:
    """record --weight-pattern nmt:2:4: the trace declares the pattern, its masks hold along
    both axes, and the replay's BD of the pruned layers runs on the multiplexers (half the
    MACs issued), which plain 2:4 masks do not allow."""
    from accelsim.sparsity import nm_fits

    bd_issued = {}
    for pattern in ("nm:2:4", "nmt:2:4"):
        out = tmp_path / pattern.replace(":", "-")
        # delta 0: both branches 2:4 (a trace declares one N:M pattern per layer; a denser
        # 3:4 branch 2 would not fit it)
        train(tiny(algo="synccp", weight_pattern=pattern, steps=2, delta=0.0), out,
              progress=False)
        reader = TraceReader(out / "trace")
        pruned = [item for item in reader.layers if item.weight is not None]
        assert pruned and {item.weight.pattern for item in pruned} == {pattern}
        if pattern.startswith("nmt"):
            for item in pruned:
                mask = reader.weight(0, item.name, 1)
                assert nm_fits(mask, 2, 4, axis=1) and nm_fits(mask, 2, 4, axis=0), item.name
        sim = CliRunner().invoke(main, ["simulate", str(out), "--hw", str(FP8), "--out",
                                        str(out / "sim")])
        assert sim.exit_code == 0, sim.output
        jobs = pd.read_csv(out / "sim" / "results.csv")
        bd = jobs[(jobs.phase == "bd") & jobs.layer.isin([i.name for i in pruned])]
        bd_issued[pattern] = bd.macs_issued.sum() / bd.macs_dense.sum()
    assert bd_issued["nm:2:4"] > 0.9 and bd_issued["nmt:2:4"] == pytest.approx(0.5)
