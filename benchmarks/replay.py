"""Replay throughput beside the memory-bound limit measured in the same run.

For synthetic ResNet-18 CIFAR traces at batch 256 (both branches; CDG gates, SCDG gates, SyncCP
element-wise, 2:4 and block weights; ``--steps`` training steps each, weights drawn once as
between two pruning updates) this times the replay on the FP8 preset (all three phases):

- ``first step``: a fresh ``Replayer`` replaying the first step (it also builds what lasts the
  whole trace: weight structure, base paths, dense halves, the numba dispatch);
- ``next steps``: each later step of the same replay, the steady state of a long trace.

Beside them, two memory-bound limits per step, for any replay that looks at every stored mask
bit once:

- ``read stored``: numpy reading the step's mask bytes as the trace stores them
  (``np.fromfile`` of the step's ``.bin``, from the page cache);
- ``read bool``: numpy reading every mask the step stores once, decoded to bool bytes
  (``np.count_nonzero``).

It prints milliseconds per step, stored mask bits per step and per second of replay, and the
ratios replay / limit. Traces are stored as ``accelsim trace synth`` stores them by default:
zlib level 6 (``--compression``) for a mask only when that saves at least 25 % of its packed
bytes (``--min-saving``), which here deflates only the block-pruned weights; random gates and
element-wise or 2:4 weights save 0-12 % and are stored raw. ``--min-saving 0`` deflates every
mask (each replay then pays the inflate), ``--compression 0`` stores every mask raw.

    .venv/bin/python benchmarks/replay.py [--batch 256] [--steps 4] [--repeats 3]
                                          [--compression 6] [--min-saving 0.25] [--keep DIR]

Run it on an otherwise idle machine: the numbers are wall-clock times on one core (numba
kernels are single-threaded; numpy is limited to one thread here).
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import dataclasses  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from accelsim.config import load_hardware  # noqa: E402
from accelsim.engine.replay import Replayer, replay_trace  # noqa: E402
from accelsim.network import resnet18  # noqa: E402
from accelsim.trace import MIN_SAVING, TraceReader  # noqa: E402
from accelsim.trace.format import step_bin_path  # noqa: E402
from accelsim.trace.synth import SEED_SCHEMES, synthesize  # noqa: E402


def best_of(repeats: int, fn) -> float:
    """Smallest wall time of ``repeats`` calls (seconds)."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def stored_masks(reader: TraceReader, step: int) -> list[np.ndarray]:
    """Every mask ``step`` stores, decoded (weights stored at an earlier step excluded)."""
    masks = reader.step_masks(step)
    arrays = list(masks.gates.values())
    for (layer, branch), weight in masks.weights.items():
        if reader.weight_step(step, layer, branch) == step:
            arrays.append(weight)
    return arrays


def replay_times(path: Path, hw, repeats: int) -> tuple[float, float]:
    """(first step, mean of the later steps) in seconds, each the best of ``repeats`` fresh
    replays of the whole trace."""
    first, later = [], []
    for _ in range(repeats):
        replayer = Replayer(path, hw)
        steps = replayer.reader.steps
        start = time.perf_counter()
        replayer.replay_step(steps[0])
        middle = time.perf_counter()
        for step in steps[1:]:
            replayer.replay_step(step)
        end = time.perf_counter()
        first.append(middle - start)
        later.append((end - middle) / max(1, len(steps) - 1))
    return min(first), min(later)


def ratios(first: float, later: float, limit: float) -> str:
    """'first/next' replay time over a limit ('n/a' when the limit is 0)."""
    return f"{first / limit:5.1f}/{later / limit:<5.1f}" if limit else "n/a"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--compression", type=int, default=6, choices=range(10),
                        help="zlib level of the synthetic traces (0: stored uncompressed)")
    parser.add_argument("--min-saving", type=float, default=MIN_SAVING,
                        help="deflate a mask only when zlib saves this share of its bytes")
    parser.add_argument("--keep", type=Path, default=None,
                        help="directory to keep (and reuse) the synthetic traces")
    args = parser.parse_args()
    if args.steps < 2:
        parser.error("--steps must be at least 2 (the first step and the steady state)")
    hw = load_hardware(ROOT / "hw_configs/fp8_tensor_edge_28nm.yaml")
    base = args.keep or Path(tempfile.mkdtemp(prefix="accelsim-bench-"))
    print(f"ResNet-18 CIFAR, batch {args.batch} per branch, 2 branches x 3 phases, {hw.name}; "
          f"{args.steps} steps per trace stored with compression level {args.compression} "
          f"where it saves >= {args.min_saving:.0%}; "
          f"best of {args.repeats}")
    print(f"{'trace':24s} {'Mbit/step':>9s} {'first ms':>9s} {'next ms':>8s} {'Mbit/s':>7s} "
          f"{'stored ms':>9s} {'ratio':>11s} {'bool ms':>8s} {'ratio':>11s}")
    for name, config in SEED_SCHEMES.items():
        stem = "".join(c if c.isalnum() else "-" for c in name)
        path = base / f"{stem}-s{args.steps}-z{args.compression}-m{args.min_saving:g}"
        if not (path / "manifest.json").exists():
            synthesize(resnet18(batch=args.batch), path,
                       dataclasses.replace(config, steps=args.steps), overwrite=True,
                       compression_level=args.compression, min_saving=args.min_saving)
        replay_trace(path, hw)  # compile kernels, warm the page cache
        first_s, next_s = replay_times(path, hw, args.repeats)
        reader = TraceReader(path)
        stored_s = bool_s = 0.0
        bits = 0
        for step in reader.steps:
            arrays = stored_masks(reader, step)
            bits += sum(a.size for a in arrays)
            stored = step_bin_path(path, step)
            if stored.exists():
                stored_s += best_of(args.repeats, lambda f=stored: np.fromfile(f, dtype=np.uint8))
            bool_s += best_of(args.repeats,
                              lambda ms=arrays: [np.count_nonzero(m) for m in ms])
        steps = len(reader.steps)
        bits, stored_s, bool_s = bits / steps, stored_s / steps, bool_s / steps
        print(f"{name:24s} {bits / 1e6:9.1f} {first_s * 1e3:9.1f} {next_s * 1e3:8.1f} "
              f"{bits / next_s / 1e6:7.0f} {stored_s * 1e3:9.2f} "
              f"{ratios(first_s, next_s, stored_s):>11s} {bool_s * 1e3:8.2f} "
              f"{ratios(first_s, next_s, bool_s):>11s}")
    print("first: the first step of a fresh replay; next: each later step (steady state); "
          "Mbit/s: stored mask bits per second at the steady state; ratio: first/next step "
          "time over the time numpy needs to read the step's stored masks once (stored "
          "bytes; decoded bool bytes), averaged over the trace's steps")


if __name__ == "__main__":
    main()
