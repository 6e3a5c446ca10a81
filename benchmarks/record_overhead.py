"""What recording masks adds to the training step time (goal: under 10 %).

Times the same training steps (ResNet-20 CDG and SyncCP SimCLR on Fashion-MNIST, batch 64 per
branch, CPU) with no recorder and with the trace recorder writing every K steps (K = 1 and the
recipes' K = 25), side by side in one run, and prints the overhead ratio.

    .venv/bin/python benchmarks/record_overhead.py [--steps 12] [--threads 2]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from workloads.record import TraceRecorder, trace_layers  # noqa: E402
from workloads.train import RunConfig, Trainer  # noqa: E402


class NoRecorder:
    """Stands in for the recorder: records nothing."""

    last_step = None

    def record(self, *args: object, **kwargs: object) -> None:
        pass


def time_steps(trainer: Trainer, recorder: object, first: int, steps: int, every: int) -> float:
    """Seconds per step over steps [first, first + steps), recording every ``every`` steps."""
    trainer.config = RunConfig(**{**trainer.config.to_dict(), "record_every": every})
    start = time.perf_counter()
    for step in range(first, first + steps):
        trainer.train_step(step, recorder, -1)
    return (time.perf_counter() - start) / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"ResNet-20 SimCLR, Fashion-MNIST, batch 64 per branch, {args.threads} threads; each "
          "recorded measurement is paired with a baseline over the same steps")
    print(f"{'algorithm':10s} {'K':>3s} {'zlib':>4s} {'no record s/step':>17s} "
          f"{'recorded s/step':>16s} {'overhead':>9s}")
    for algo in ("cdg", "synccp"):
        config = RunConfig(algo=algo, batch_size=64, steps=10**6, update_every=5)
        with tempfile.TemporaryDirectory() as tmp:
            trainer = Trainer(config, Path(tmp), progress=False)
            for step in range(2):  # warm up (allocator, kernels)
                trainer.train_step(step, NoRecorder(), 10**9)
            layers = trace_layers(trainer.backbone, config.batch_size, trainer.image_size,
                                  config.gating, config.pruning)
            first = 2
            for every, level in ((1, 6), (1, 1), (25, 6)):
                steps = args.steps if every == 1 else 2 * every
                recorder = TraceRecorder(Path(tmp) / f"trace{every}-{level}", layers,
                                         {"benchmark": True}, compression_level=level)
                base = time_steps(trainer, NoRecorder(), first, steps, every)
                recorded = time_steps(trainer, recorder, first, steps, every)
                first += steps
                print(f"{algo:10s} {every:3d} {level:4d} {base:17.3f} {recorded:16.3f} "
                      f"{recorded / base - 1:9.1%}")


if __name__ == "__main__":
    main()
