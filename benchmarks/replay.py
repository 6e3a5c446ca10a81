"""Replay throughput beside the memory-bound limit measured in the same run.

For synthetic ResNet-18 CIFAR traces at batch 256 (one step, both branches; CDG gates, SCDG
gates, SyncCP element-wise, 2:4 and block weights) this times ``replay_trace`` on the FP8 preset
(all three phases) and, beside it, two memory-bound limits of any replay that looks at every mask
bit once:

- ``read stored``: numpy reading the step's mask bytes as the trace stores them
  (``np.fromfile`` of the step's ``.bin``, from the page cache);
- ``read bool``: numpy reading every mask once as decoded bool bytes (``np.count_nonzero``).

It prints seconds per training step, mask bits per second and both ratios. Traces are written
with ``--compression`` (default 0: packed bits stored uncompressed, what the replay reads
fastest; zlib levels 1..9 add the decompression).

    .venv/bin/python benchmarks/replay.py [--batch 256] [--repeats 3] [--compression 0]
                                          [--keep DIR]

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


def mask_arrays(trace: Path) -> list[np.ndarray]:
    """Every decoded mask of the trace's first step (what a replay must look at)."""
    reader = TraceReader(trace)
    step = reader.step_masks(reader.steps[0])
    return [*step.gates.values(), *step.weights.values()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--compression", type=int, default=0, choices=range(10),
                        help="zlib level of the synthetic traces (0: stored uncompressed)")
    parser.add_argument("--keep", type=Path, default=None,
                        help="directory to keep (and reuse) the synthetic traces")
    args = parser.parse_args()
    hw = load_hardware(ROOT / "hw_configs/fp8_tensor_edge_28nm.yaml")
    base = args.keep or Path(tempfile.mkdtemp(prefix="accelsim-bench-"))
    print(f"ResNet-18 CIFAR, batch {args.batch} per branch, 2 branches x 3 phases, {hw.name}; "
          f"traces stored with compression level {args.compression}; best of {args.repeats}")
    print(f"{'trace':24s} {'Mbit':>6s} {'replay ms':>10s} {'Mbit/s':>8s} "
          f"{'read stored ms':>15s} {'ratio':>6s} {'read bool ms':>13s} {'ratio':>6s}")
    for name, config in SEED_SCHEMES.items():
        stem = "".join(c if c.isalnum() else "-" for c in name)
        path = base / f"{stem}-z{args.compression}"
        if not (path / "manifest.json").exists():
            synthesize(resnet18(batch=args.batch), path, config, overwrite=True,
                       compression_level=args.compression)
        replay_trace(path, hw)  # compile kernels, warm caches
        replay_s = best_of(args.repeats, lambda p=path: replay_trace(p, hw))
        masks = mask_arrays(path)
        bits = sum(m.size for m in masks)
        stored = step_bin_path(path, TraceReader(path).steps[0])
        stored_s = best_of(args.repeats, lambda f=stored: np.fromfile(f, dtype=np.uint8))
        bool_s = best_of(args.repeats, lambda ms=masks: [np.count_nonzero(m) for m in ms])
        print(f"{name:24s} {bits / 1e6:6.1f} {replay_s * 1e3:10.1f} {bits / replay_s / 1e6:8.0f} "
              f"{stored_s * 1e3:15.2f} {replay_s / stored_s:5.1f}x {bool_s * 1e3:13.2f} "
              f"{replay_s / bool_s:5.1f}x")
    print("ratio = replay time / time numpy needs to read the same masks once (stored bytes; "
          "decoded bool bytes)")


if __name__ == "__main__":
    main()
