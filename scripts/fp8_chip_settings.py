"""Which settings of the FP8 preset reproduce the FP8 chip's 7.3x FLOPs -> 4.7x latency (0.64)?

A chip-like synthetic trace (ResNet-18 CIFAR, both branches, 3 phases; SCDG 8x1x1 gates at 78 %
conditional sparsity, G = 4, and 8x8-block weights at 65 %) replayed on `fp8_tensor_edge_28nm`
over the knobs the result depends on: the lane mappings (every phase's lanes over output columns,
or the chip's fused multiply-add trees: FW and BD on adder trees, WG transposed; trees also with
four times the buffer bandwidth, which they need), queue depth
`sync_tiles` and operand stage depth `stage_steps` (with the register file each needs; a
compacted pass is balanced chunk by chunk of the stage), `decoder.compaction`, and the gate's
gradient (straight-through, as the seeds train, or masked). Prints one markdown row per
setting: FLOPs reduction, speedup, efficiency (speedup / FLOPs reduction), energy reduction, the
register-file words per PE it needs, and the whole step's speedup and efficiency (the vector
unit's non-MAC work included, docs/model.md).

    .venv/bin/python scripts/fp8_chip_settings.py [--batch 16]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from accelsim.config import HardwareConfig, load_hardware, with_overrides  # noqa: E402
from accelsim.network import resnet18  # noqa: E402
from accelsim.trace.synth import SynthConfig, synthesize  # noqa: E402
from scripts.make_gap_table import at_depth, replay_totals  # noqa: E402

DEPTHS = (4, 16, 64)
SETTINGS = ((False, 1), (False, 16), (True, 1), (True, 16))  # (compaction, stage_steps)
GRADIENTS = ("straight_through", "masked")
TREES = {"pe_array.fw_lanes": "reduction", "pe_array.bd_lanes": "reduction",
         "pe_array.wg_lanes": "input_channels", "sparsity_support.nm_m": []}
LANES = {"output columns": {}, "trees": TREES,
         "trees, 1024 buffer words/cycle": {**TREES, "buffers.words_per_cycle": 1024}}


def configure(base_hw: HardwareConfig, lanes: dict, depth: int, compaction: bool,
              stage: int) -> HardwareConfig:
    """``base_hw`` with the lane mapping, queue depth, stage depth and compaction, and the
    register file they need."""
    return at_depth(with_overrides(base_hw, {**lanes, "decoder.compaction": compaction}), depth,
                    stage)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=16)
    args = parser.parse_args()
    base_hw = load_hardware(ROOT / "hw_configs/fp8_tensor_edge_28nm.yaml")
    print("| lanes | gate gradient | sync_tiles | stage_steps | register-file words | compaction "
          "| FLOPs red. | speedup | efficiency | energy red. | whole-step speedup | "
          "whole-step efficiency |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    with tempfile.TemporaryDirectory() as tmp:
        for gradient in GRADIENTS:
            path = Path(tmp) / gradient
            synthesize(resnet18(batch=args.batch), path, SynthConfig(
                steps=1, gate_sparsity=0.78, gate_groups=4, gate_group_size=8,
                gate_gradient=gradient, weight_sparsity=0.65, weight_pattern="block:8x8"))
            for name, lanes in LANES.items():
                for depth in DEPTHS:
                    for compaction, stage in SETTINGS:
                        hw = configure(base_hw, lanes, depth, compaction, stage)
                        total = replay_totals(path, hw, gradient)["total"]
                        print(f"| {name} | {gradient} | {depth} | {stage} | "
                              f"{hw.buffers.register_file_words} | "
                              f"{'on' if compaction else 'off'} | "
                              f"{total['flops_reduction']:.2f}x | {total['speedup']:.2f}x | "
                              f"{total['speedup_efficiency']:.2f} | "
                              f"{total['energy_reduction']:.2f}x | "
                              f"{total['speedup_step']:.2f}x | "
                              f"{total['speedup_step'] / total['flops_reduction']:.2f} |",
                              flush=True)


if __name__ == "__main__":
    main()
