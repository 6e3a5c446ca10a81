"""The structured-vs-unstructured table of docs/sparse-model.md, from synthetic traces.

ResNet-18 CIFAR (batch 32 per branch, 2 branches, 3 phases) on the FP8 preset (8-lane lock-step
vector PEs), with compaction off, on, and on with a slow decoder (4 indices/cycle).

    .venv/bin/python scripts/make_gap_table.py [--batch 32]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from accelsim.analysis import replay_summary  # noqa: E402
from accelsim.config import load_hardware, with_overrides  # noqa: E402
from accelsim.engine.replay import replay_trace  # noqa: E402
from accelsim.engine.simulator import results_frame  # noqa: E402
from accelsim.network import resnet18  # noqa: E402
from accelsim.trace import TraceReader  # noqa: E402
from accelsim.trace.synth import SEED_SCHEMES, synthesize  # noqa: E402

HARDWARE = {
    "no compaction": {},
    "compaction": {"decoder.compaction": True},
    "compaction, 4 idx/cycle": {"decoder.compaction": True,
                                "decoder.compaction_indices_per_cycle": 4},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=32)
    args = parser.parse_args()
    base_hw = load_hardware(ROOT / "hw_configs/fp8_tensor_edge_28nm.yaml")
    print("| scheme | hardware | FLOPs red. | speedup | efficiency gap | energy red. | "
          "index red. | decoder stall cycles | index energy % |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    with tempfile.TemporaryDirectory() as tmp:
        for scheme, config in SEED_SCHEMES.items():
            path = Path(tmp) / str(abs(hash(scheme)))
            synthesize(resnet18(batch=args.batch), path, config)
            reader = TraceReader(path)
            gated = [item.name for item in reader.layers if item.gate is not None]
            for label, overrides in HARDWARE.items():
                hw = with_overrides(base_hw, overrides)
                rows, storage = replay_trace(path, hw)
                summary = replay_summary(results_frame(rows, hw), storage, hw, scheme, {},
                                         gated)
                t = summary["total"]
                print(f"| {scheme} | {label} | {t['flops_reduction']:.2f}x | {t['speedup']:.2f}x "
                      f"| {t['efficiency_gap']:.2f} | {t['energy_reduction']:.2f}x | "
                      f"{summary['index']['index_reduction']:.2f}x | "
                      f"{t['cycles_decoder_stall']:,} | "
                      f"{100 * t['energy_index_pj'] / t['energy_pj']:.2g} |")


if __name__ == "__main__":
    main()
