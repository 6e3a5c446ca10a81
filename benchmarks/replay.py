"""Replay throughput beside the memory-bound limit measured in the same run.

For synthetic ResNet-18 CIFAR traces at batch 256 (both branches; CDG gates, SCDG gates, SyncCP
element-wise, 2:4 and block weights; ``--steps`` training steps each, weights drawn once as
between two pruning updates) this times the replay on the FP8 preset (all three phases):

- ``first step``: a fresh ``Replayer`` replaying the first step (it also builds what lasts the
  whole trace: weight structure, base paths, dense halves, the numba dispatch);
- ``next steps``: each later step of the same replay, the steady state of a long trace.

Beside them, two memory-bound limits per step, for any replay that looks at every stored mask
bit once, each for the first step and for the mean of the later ones (a trace whose weights
change only at pruning updates stores them at the first step alone):

- ``stored``: numpy reading the step's mask bytes as the trace stores them (``np.fromfile`` of
  the step's ``.bin``, from the page cache; n/a when the step stores no mask bytes);
- ``bool``: numpy reading every mask the step stores once, decoded to bool bytes
  (``np.count_nonzero``).

and, for the later steps, ``checked``: the trace reader alone reading a step's masks with the
checks every replay makes (crc32 and set-bit count of each mask, as the replay reads it), no
modelling. It is the part of ``next`` that reading costs, so ``next - checked`` is the model.

Each number is the best of ``--repeats`` rounds; a round replays the trace and then reads its
steps, so a replay and its limits are measured under the same machine state (on a shared
machine, a limit measured minutes apart from its replay moved a ratio by up to 1.5x).

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
from accelsim.kernels import popcount_words  # noqa: E402
from accelsim.network import resnet18  # noqa: E402
from accelsim.trace import MIN_SAVING, TraceReader  # noqa: E402
from accelsim.trace.format import step_bin_path  # noqa: E402
from accelsim.trace.synth import SEED_SCHEMES, synthesize  # noqa: E402


def stored_masks(reader: TraceReader, step: int) -> list[np.ndarray]:
    """Every mask ``step`` stores, decoded (weights stored at an earlier step excluded)."""
    masks = reader.step_masks(step)
    arrays = list(masks.gates.values())
    for (layer, branch), weight in masks.weights.items():
        if reader.weight_step(step, layer, branch) == step:
            arrays.append(weight)
    return arrays


def replay_times(replayer_of, steps: list[int]) -> tuple[float, float]:
    """(first step, mean of the later steps) of one fresh replay of the whole trace, seconds."""
    replayer = replayer_of()
    start = time.perf_counter()
    replayer.replay_step(steps[0])
    middle = time.perf_counter()
    for step in steps[1:]:
        replayer.replay_step(step)
    end = time.perf_counter()
    return middle - start, (end - middle) / max(1, len(steps) - 1)


def read_times(path: Path, reader: TraceReader, steps: list[int]) -> tuple[list[float],
                                                                             list[float], int]:
    """Seconds numpy needs to read each step's stored masks once (:func:`fastest`): its
    ``.bin`` as stored (``np.fromfile``), and decoded to bool bytes (0 when the step stores
    no mask); and the mask bits all the steps store."""
    stored, decoded, bits = [], [], 0
    for step in steps:
        arrays = stored_masks(reader, step)
        bits += sum(a.size for a in arrays)
        stored_file = step_bin_path(path, step)
        has_bytes = stored_file.exists() and stored_file.stat().st_size > 0
        stored.append(fastest(lambda f=stored_file: np.fromfile(f, dtype=np.uint8))
                      if has_bytes else 0.0)
        decoded.append(fastest(lambda ms=arrays: [np.count_nonzero(m) for m in ms])
                       if arrays else 0.0)
    return stored, decoded, bits


def checked_read(reader: TraceReader, step: int) -> None:
    """Read ``step`` as the replay reads it: every gate's packed bits, checked."""
    masks = reader.step_packed(step)
    for key in masks.gates:
        masks.gates[key]  # the lookup reads and checks the mask


def checked_times(path: Path, steps: list[int]) -> float:
    """Mean seconds a fresh reader needs to read and check each later step (:func:`fastest`),
    after reading the first step untimed (as a replay has, so weights stored there are
    cached)."""
    reader = TraceReader(path, count_words=popcount_words)  # as the replay reads
    checked_read(reader, steps[0])
    times = [fastest(lambda s=step: checked_read(reader, s)) for step in steps[1:]]
    return sum(times) / len(times)


def fastest(read, times: int = 3) -> float:
    """Smallest of ``times`` back-to-back calls of ``read`` (seconds): the reads after the
    first reuse its buffers, so the limit is the fastest numpy read, never a slow one."""
    best = float("inf")
    for _ in range(times):
        start = time.perf_counter()
        read()
        best = min(best, time.perf_counter() - start)
    return best


def measure(path: Path, hw, repeats: int) -> tuple[dict[str, float], float]:
    """Replay times and read limits, each the best of ``repeats`` rounds, and the stored mask
    bits per step; a round replays the trace and then reads its steps, so a replay and its
    limits see the same machine state. Limits are per step, like the replay: the first step's,
    and the mean of the later ones'."""
    reader = TraceReader(path)
    steps = list(reader.steps)
    best: dict[str, float] = {}
    bits = 0
    for _ in range(repeats):
        first, later = replay_times(lambda: Replayer(path, hw), steps)
        stored, decoded, bits = read_times(path, reader, steps)
        later_count = max(1, len(steps) - 1)
        round_ = {"first": first, "next": later, "checked_next": checked_times(path, steps),
                  "stored_first": stored[0], "stored_next": sum(stored[1:]) / later_count,
                  "bool_first": decoded[0], "bool_next": sum(decoded[1:]) / later_count}
        best = {key: min(value, best.get(key, value)) for key, value in round_.items()}
    return best, bits / len(steps)


def ratio(time_s: float, limit_s: float) -> str:
    """Replay time over a limit ('n/a' when there is nothing to read)."""
    return f"{time_s / limit_s:.1f}" if limit_s else "n/a"


def milliseconds(times: dict[str, float], limit: str) -> str:
    """'first/next' limit in ms ('n/a' where a step stores no mask)."""
    return "/".join(f"{times[f'{limit}_{which}'] * 1e3:.2f}" if times[f"{limit}_{which}"]
                    else "n/a" for which in ("first", "next"))


def ratios(times: dict[str, float], limit: str) -> str:
    """'first/next' replay time over the first step's and the later steps' ``limit``."""
    return (f"{ratio(times['first'], times[limit + '_first'])}/"
            f"{ratio(times['next'], times[limit + '_next'])}")


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
          f"{'stored ms':>11s} {'ratio':>11s} {'bool ms':>11s} {'ratio':>11s} "
          f"{'checked ms':>10s}")
    for name, config in SEED_SCHEMES.items():
        stem = "".join(c if c.isalnum() else "-" for c in name)
        path = base / f"{stem}-s{args.steps}-z{args.compression}-m{args.min_saving:g}"
        if not (path / "manifest.json").exists():
            synthesize(resnet18(batch=args.batch), path,
                       dataclasses.replace(config, steps=args.steps), overwrite=True,
                       compression_level=args.compression, min_saving=args.min_saving)
        replay_trace(path, hw)  # compile kernels, warm the page cache
        times, bits = measure(path, hw, args.repeats)
        stored_ms, bool_ms = milliseconds(times, "stored"), milliseconds(times, "bool")
        print(f"{name:24s} {bits / 1e6:9.1f} {times['first'] * 1e3:9.1f} "
              f"{times['next'] * 1e3:8.1f} {bits / times['next'] / 1e6:7.0f} {stored_ms:>11s} "
              f"{ratios(times, 'stored'):>11s} {bool_ms:>11s} {ratios(times, 'bool'):>11s} "
              f"{times['checked_next'] * 1e3:10.2f}")
    print("first: the first step of a fresh replay; next: each later step (steady state); "
          "Mbit/s: stored mask bits per second at the steady state; stored ms, bool ms: the "
          "time numpy needs to read the first step's / a later step's stored masks once "
          "(stored bytes; decoded bool bytes; n/a: the step stores no mask bytes); ratio: "
          "first/next step time over them; checked ms: the trace reader reading and checking a "
          "later step's masks as the replay does (no modelling); every number is the best of "
          "the rounds, and a round replays the trace and then reads it")


if __name__ == "__main__":
    main()
