"""The engine's speed targets, measured in one run and printed side by side.

For this checkout (and, with ``--against DIR``, another checkout of accelsim such as a git
worktree of an older revision, measured in the same run, alternating) it prints:

- ``cold simulate``: wall seconds of a first ``accelsim simulate`` of a 1-step SCDG ResNet-18
  CIFAR batch-16 trace on the FP8 preset with an empty numba cache (``NUMBA_CACHE_DIR`` a new
  directory): what a new user waits for, JIT compilation included; ``warm simulate``: the same
  command again with that cache;
- ``CDG step`` / ``SCDG step``: milliseconds of a later step of a ResNet-18 CIFAR batch-256
  replay on the FP8 preset (synthetic gates at the seeds' 71.64 % conditional sparsity; SCDG
  8x1x1 groups), the best over the later steps of ``--repeats`` fresh replays; ``CDG step,
  compaction``: the CDG step with ``decoder.compaction`` (the per-pixel work path);
- ``16-point memory sweep / replay``: a 16-point sweep of parameters compute never reads (DRAM
  bandwidth x DRAM energy x static power) over the SCDG trace on one worker, over one replay of
  it (each the best of ``--repeats``).

    .venv/bin/python benchmarks/engine.py [--repeats 3] [--against /path/to/other/checkout]

Traces are written once under ``--keep`` (default: a temporary directory). The numbers are
wall-clock times on this machine: run it when the machine is otherwise idle; the side-by-side
columns come from the same run, so their ratio is what to read.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SWEEP = ["dram.bandwidth_gbps=3.2,6.4,12.8,25.6", "dram.energy_pj_per_bit=5,20",
         "static_power_mw=0,100"]


def make_traces(folder: Path) -> dict[str, Path]:
    """The benchmark's traces (written once; reused when ``folder`` already holds them)."""
    sys.path.insert(0, str(ROOT))
    from accelsim.network import resnet18
    from accelsim.trace.synth import SynthConfig, synthesize

    configs = {
        "scdg16": (16, SynthConfig(steps=1, gate_sparsity=0.7164, gate_groups=4,
                                   gate_group_size=8)),
        "cdg256": (256, SynthConfig(steps=4, gate_sparsity=0.7164, gate_groups=4)),
        "scdg256": (256, SynthConfig(steps=4, gate_sparsity=0.7164, gate_groups=4,
                                     gate_group_size=8)),
    }
    paths = {}
    for name, (batch, config) in configs.items():
        path = folder / name
        if not (path / "manifest.json").exists():
            synthesize(resnet18(batch=batch), path, config, overwrite=True)
        paths[name] = path
    return paths


def measure(tree: Path, traces: dict[str, Path], repeats: int) -> dict[str, float]:
    """Every number of one checkout, measured in subprocesses that import it."""
    env = {**os.environ, "PYTHONPATH": str(tree), "OMP_NUM_THREADS": "1",
           "OPENBLAS_NUM_THREADS": "1", "NUMBA_NUM_THREADS": "1"}
    hw = str(tree / "hw_configs" / "fp8_tensor_edge_28nm.yaml")
    results: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        cache_env = {**env, "NUMBA_CACHE_DIR": str(Path(tmp) / "numba")}
        for label in ("cold simulate s", "warm simulate s"):
            out = Path(tmp) / label.split()[0]
            start = time.perf_counter()
            subprocess.run([sys.executable, "-m", "accelsim.cli", "simulate",
                            str(traces["scdg16"]), "--hw", hw, "--out", str(out)],
                           env=cache_env, check=True, capture_output=True, cwd=tree)
            results[label] = time.perf_counter() - start
    code = f"""
import json, sys, time, tempfile
from pathlib import Path
from accelsim.config import load_hardware
from accelsim.engine.replay import Replayer, replay_trace
from accelsim.sweep import expand_grid, parse_vary, run_sweep
from accelsim.config import with_overrides
hw = load_hardware({hw!r})
compacted = with_overrides(hw, {{"decoder.compaction": True}})
out = {{}}
for name, config, label in (("cdg256", hw, "CDG step ms"), ("scdg256", hw, "SCDG step ms"),
                            ("cdg256", compacted, "CDG step, compaction ms")):
    path = {json.dumps({k: str(v) for k, v in traces.items()})}[name]
    best = float("inf")
    for _ in range({repeats}):
        replayer = Replayer(path, config)
        replayer.replay_step(0)
        for step in replayer.reader.steps[1:]:
            start = time.perf_counter()
            replayer.replay_step(step)
            best = min(best, time.perf_counter() - start)
    out[label] = best * 1e3
path = {str(traces["scdg256"])!r}
one = float("inf")
for _ in range({repeats}):
    start = time.perf_counter()
    replay_trace(path, hw)
    one = min(one, time.perf_counter() - start)
grid = expand_grid([parse_vary(text) for text in {SWEEP!r}])
sweep = float("inf")
for round in range({repeats}):
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        run_sweep([path], {hw!r}, [], grid, Path(tmp) / "sweep", workers=1, progress=False)
        sweep = min(sweep, time.perf_counter() - start)
out["one replay s"] = one
out["16-point memory sweep / replay"] = sweep / one
print(json.dumps(out))
"""
    done = subprocess.run([sys.executable, "-c", code], env=env, check=True,
                          capture_output=True, text=True, cwd=tree)
    results.update(json.loads(done.stdout.strip().splitlines()[-1]))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--against", type=Path, default=None,
                        help="another accelsim checkout to measure beside this one")
    parser.add_argument("--keep", type=Path, default=None,
                        help="directory to keep (and reuse) the synthetic traces")
    args = parser.parse_args()
    folder = args.keep or Path(tempfile.mkdtemp(prefix="accelsim-engine-bench-"))
    folder.mkdir(parents=True, exist_ok=True)
    traces = make_traces(folder)
    trees = {"this": ROOT} | ({"against": args.against.resolve()} if args.against else {})
    columns: dict[str, dict[str, float]] = {}
    for name, tree in trees.items():
        try:
            columns[name] = measure(tree, traces, args.repeats)
        except subprocess.CalledProcessError as error:  # an old tree may lack a feature
            print(f"{name} ({tree}): failed: {error.stderr.strip().splitlines()[-1:]}")
            columns[name] = {}
    keys = list(dict.fromkeys(k for column in columns.values() for k in column))
    names = list(columns)
    print(f"{'':34s}" + "".join(f"{n:>12s}" for n in names)
          + ("   this/against" if len(names) == 2 else ""))
    for key in keys:
        values = [columns[n].get(key) for n in names]
        cells = "".join(f"{v:12.2f}" if v is not None else f"{'n/a':>12s}" for v in values)
        ratio = ""
        if len(values) == 2 and all(v for v in values):
            ratio = f"   {values[0] / values[1]:.2f}x"
        print(f"{key:34s}{cells}{ratio}")


if __name__ == "__main__":
    main()
