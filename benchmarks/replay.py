"""Replay throughput beside the memory-bound limit measured in the same run.

For synthetic ResNet-18 CIFAR traces at batch 256 (one step, both branches; CDG gates,
SCDG gates, SyncCP element-wise and 2:4 weights) this times ``replay_trace`` on the FP8 preset
(all three phases) and, beside it, the time numpy needs just to read the same masks once
(``np.count_nonzero`` over every decoded mask): the memory-bound limit of any replay that looks
at every mask bit. It prints seconds per training step, mask bits per second, and the ratio.

    .venv/bin/python benchmarks/replay.py [--batch 256] [--repeats 3] [--keep DIR]

Run it on an otherwise idle machine: the numbers are wall-clock times on one core (numba
kernels are single-threaded; numpy is limited to one thread here).
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from accelsim.config import load_hardware  # noqa: E402
from accelsim.engine.replay import replay_trace  # noqa: E402
from accelsim.network import resnet18  # noqa: E402
from accelsim.trace import TraceReader  # noqa: E402
from accelsim.trace.synth import SEED_SCHEMES, synthesize  # noqa: E402


def best_of(repeats: int, fn) -> float:
    """Smallest wall time of ``repeats`` calls (seconds)."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def mask_arrays(trace: Path) -> list[np.ndarray]:
    """Every decoded mask of the trace's first step (what a replay must look at)."""
    step = TraceReader(trace).step_masks(TraceReader(trace).steps[0])
    return [*step.gates.values(), *step.weights.values()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--keep", type=Path, default=None,
                        help="directory to keep (and reuse) the synthetic traces")
    args = parser.parse_args()
    hw = load_hardware(ROOT / "hw_configs/fp8_tensor_edge_28nm.yaml")
    base = args.keep or Path(tempfile.mkdtemp(prefix="accelsim-bench-"))
    print(f"ResNet-18 CIFAR, batch {args.batch} per branch, 2 branches x 3 phases, "
          f"{hw.name}; best of {args.repeats}")
    print(f"{'trace':26s} {'replay s/step':>14s} {'Mbit/s':>9s} {'numpy read s':>13s} "
          f"{'ratio':>6s}")
    for name, config in SEED_SCHEMES.items():
        path = base / "".join(c if c.isalnum() else "-" for c in name)
        if not (path / "manifest.json").exists():
            synthesize(resnet18(batch=args.batch), path, config, overwrite=True)
        replay_trace(path, hw)  # compile kernels, warm caches
        replay_s = best_of(args.repeats, lambda p=path: replay_trace(p, hw))
        masks = mask_arrays(path)
        bits = sum(m.size for m in masks)
        limit_s = best_of(args.repeats, lambda ms=masks: [np.count_nonzero(m) for m in ms])
        print(f"{name:26s} {replay_s:14.3f} {bits / replay_s / 1e6:9.1f} {limit_s:13.4f} "
              f"{replay_s / limit_s:6.1f}x")
    print("ratio = replay time / time to read the same decoded mask bytes once with numpy")


if __name__ == "__main__":
    main()
