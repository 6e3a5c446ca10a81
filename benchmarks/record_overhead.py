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


def time_steps(trainer: Trainer, recorder: object, steps: int, every: int) -> float:
    """Seconds per step over ``steps`` steps, recording every ``every`` steps."""
    trainer.config = RunConfig(**{**trainer.config.to_dict(), "record_every": every})
    start = time.perf_counter()
    for step in range(2, 2 + steps):
        trainer.train_step(step, recorder, -1)
    return (time.perf_counter() - start) / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"ResNet-20 SimCLR, Fashion-MNIST, batch 64 per branch, {args.threads} threads, "
          f"{args.steps} steps per measurement")
    print(f"{'algorithm':10s} {'no record s/step':>17s} {'K=1 s/step':>11s} {'overhead':>9s} "
          f"{'K=25 s/step':>12s} {'overhead':>9s}")
    for algo in ("cdg", "synccp"):
        config = RunConfig(algo=algo, batch_size=64, steps=1000, update_every=5)
        with tempfile.TemporaryDirectory() as tmp:
            trainer = Trainer(config, Path(tmp), progress=False)
            for step in range(2):  # warm up (allocator, kernels)
                trainer.train_step(step, NoRecorder(), 10**9)
            layers = trace_layers(trainer.backbone, config.batch_size, trainer.image_size,
                                  config.gating, config.pruning)
            base = time_steps(trainer, NoRecorder(), args.steps, 1)
            every = {}
            for k in (1, 25):
                recorder = TraceRecorder(Path(tmp) / f"trace{k}", layers, {"benchmark": True})
                every[k] = time_steps(trainer, recorder, args.steps if k == 1 else 2 * k, k)
            print(f"{algo:10s} {base:17.3f} {every[1]:11.3f} {every[1] / base - 1:9.1%} "
                  f"{every[25]:12.3f} {every[25] / base - 1:9.1%}")


if __name__ == "__main__":
    main()
