"""TensorDash's lane scheduler beside compaction and structure: every seed scheme on five lane
mappings of the FP8 preset.

Synthetic ResNet-18 CIFAR traces (both branches, 3 phases) of each scheme of
``accelsim.trace.synth.SEED_SCHEMES`` (CDG and SCDG gates, straight-through and masked gate
gradients; SyncCP element-wise, 2:4 and 8x8 blocks) replayed on ``fp8_tensor_edge_28nm``:
its 8-lane output-column units (the preset), with compaction, FW and BD on 8-wide adder trees
(WG stays on output-column lanes; the N:M multiplexers off, as trees have none), and the
trees behind the TensorDash-style scheduler (``decoder.lane_scheduler: tensordash``,
lookahead 2, lookaside 5) with a 3-step and a 16-step operand stage (the register file each
needs). Prints one markdown row per scheme and mapping: MAC-only speedup (and per phase),
energy reduction (the scheduler's multiplexers priced at the preset's
``lane_scheduler_per_mac``), and the whole step's speedup with the vector unit's non-MAC work.

    .venv/bin/python scripts/lane_scheduler_sweep.py [--batch 16]
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
from accelsim.trace.synth import SEED_SCHEMES, synthesize  # noqa: E402
from scripts.make_gap_table import at_depth, replay_totals  # noqa: E402

TREES = {"pe_array.fw_lanes": "reduction", "pe_array.bd_lanes": "reduction",
         "sparsity_support.nm_m": []}
SCHEDULER = {**TREES, "decoder.lane_scheduler": "tensordash"}
MAPPINGS: dict[str, tuple[dict, int]] = {  # overrides and operand-stage depth
    "output-column lanes (preset)": ({}, 1),
    "output-column lanes, compaction": ({"decoder.compaction": True}, 1),
    "FW, BD on trees, 3-step stage": (TREES, 3),
    "trees + TensorDash scheduler, 3-step stage": (SCHEDULER, 3),
    "trees + TensorDash scheduler, 16-step stage": (SCHEDULER, 16),
}
SCHEMES = [name for name in SEED_SCHEMES if "transposable" not in name]


def mapping(base_hw: HardwareConfig, name: str) -> HardwareConfig:
    """``base_hw`` in the mapping ``name`` of :data:`MAPPINGS`, with the register file its
    queue and stage depth need."""
    overrides, stage = MAPPINGS[name]
    lanes = {key: value for key, value in overrides.items() if key != "decoder.lane_scheduler"}
    hw = at_depth(with_overrides(base_hw, lanes), base_hw.pe_array.sync_tiles, stage)
    return with_overrides(hw, overrides) if len(lanes) < len(overrides) else hw


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=16)
    args = parser.parse_args()
    base_hw = load_hardware(ROOT / "hw_configs/fp8_tensor_edge_28nm.yaml")
    print("| scheme | lanes | FLOPs red. | speedup | FW | BD | WG | energy red. | "
          "whole-step speedup |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    with tempfile.TemporaryDirectory() as tmp:
        for number, scheme in enumerate(SCHEMES):
            path = Path(tmp) / f"scheme-{number}"
            synthesize(resnet18(batch=args.batch), path, SEED_SCHEMES[scheme])
            for name in MAPPINGS:
                summary = replay_totals(path, mapping(base_hw, name), scheme)
                total, phases = summary["total"], summary["per_phase"]
                per_phase = " | ".join(f"{phases[p]['speedup']:.2f}x" for p in ("fw", "bd", "wg"))
                print(f"| {scheme} | {name} | {total['flops_reduction']:.2f}x | "
                      f"{total['speedup']:.2f}x | {per_phase} | "
                      f"{total['energy_reduction']:.2f}x | {total['speedup_step']:.2f}x |",
                      flush=True)


if __name__ == "__main__":
    main()
