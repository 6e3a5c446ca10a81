"""Dump every replay row of a fixed set of traces and hardware variants, or check them against a
dump: the guard for refactors that must leave the model's results unchanged, bit for bit.

Traces: synthetic CDG, SCDG (8x1x1), SyncCP element-wise, 2:4 and 8x8-block traces of ResNet-18
(CIFAR geometry, batch 8, 2 steps, both branches; weights re-drawn at step 1 so the replay sees a
weight update), a ResNet-20 28x28 CDG trace at batch 16 (small feature maps, grayscale), plus any
recorded traces given with ``--trace``. Hardware: both presets in ``hw_configs/``, each with
``decoder.compaction`` off and on, and the FP8 preset with ``decoder.skip_granularity: element``,
``pe_row``, 12 PE rows (queue rows that do not divide 64), ``sync_tiles: 3`` (passes that
do not start on 64-bit words), WG's lanes over input channels, and all three phases on adder
trees. A CDG trace with a masked gate gradient and a symmetric BYOL loss covers those paths.

    .venv/bin/python scripts/replay_reference.py write DIR [--trace RUN_OR_TRACE ...]
    .venv/bin/python scripts/replay_reference.py check DIR [--trace RUN_OR_TRACE ...]

``write`` stores one CSV per (trace, hardware) in DIR (floats written with repr: exact);
``check`` replays again and prints SAME or DIFF per file, exiting 1 on any difference.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import pandas as pd  # noqa: E402

from accelsim.config import load_hardware  # noqa: E402
from accelsim.engine.replay import replay_trace  # noqa: E402
from accelsim.network import resnet18, resnet20  # noqa: E402
from accelsim.trace import resolve_trace_dir  # noqa: E402
from accelsim.trace.synth import SynthConfig, synthesize  # noqa: E402

SYNTHETIC = {
    "cdg": SynthConfig(steps=2, gate_sparsity=0.7164, gate_groups=4),
    "scdg": SynthConfig(steps=2, gate_sparsity=0.7164, gate_groups=4, gate_group_size=8),
    "element": SynthConfig(steps=2, weight_sparsity=0.8, weight_delta=0.3,
                           weight_update_every=1),
    "nm24": SynthConfig(steps=2, weight_pattern="nm:2:4", weight_update_every=1),
    "block8x8": SynthConfig(steps=2, weight_sparsity=0.8, weight_delta=0.3,
                            weight_pattern="block:8x8", weight_update_every=1),
    "cdg-masked-byol": SynthConfig(steps=2, gate_sparsity=0.7164, gate_groups=4,
                                   gate_gradient="masked", ssl="byol", symmetric=True),
}

HARDWARE = {
    "fp8": ("fp8_tensor_edge_28nm", ()),
    "fp8-compaction": ("fp8_tensor_edge_28nm", ("decoder.compaction=true",)),
    "fp8-element": ("fp8_tensor_edge_28nm", ("decoder.skip_granularity=element",)),
    "fp8-pe-row": ("fp8_tensor_edge_28nm", ("decoder.skip_granularity=pe_row",)),
    "fp8-rows12": ("fp8_tensor_edge_28nm", ("pe_array.rows=12",)),
    "fp8-sync3": ("fp8_tensor_edge_28nm", ("pe_array.sync_tiles=3",)),
    "fp8-wg-input": ("fp8_tensor_edge_28nm", ("pe_array.wg_lanes=input_channels",)),
    "fp8-trees": ("fp8_tensor_edge_28nm", ("pe_array.fw_lanes=reduction",
                                           "pe_array.bd_lanes=reduction",
                                           "pe_array.wg_lanes=input_channels",
                                           "sparsity_support.nm_m=[]")),
    "systolic": ("systolic_32x32_45nm", ()),
    "systolic-compaction": ("systolic_32x32_45nm", (
        "decoder.compaction=true",
        'energy.compaction_network_per_mac={pj: 1.2, source: "replay guard: any value"}')),
}


def make_traces(folder: Path) -> dict[str, Path]:
    """The synthetic traces, written under ``folder``."""
    traces = {}
    for name, config in SYNTHETIC.items():
        traces[f"r18-{name}"] = synthesize(resnet18(batch=8), folder / f"r18-{name}", config)
    small = resnet20(batch=16, in_channels=1, image_size=28)
    traces["r20-cdg"] = synthesize(small, folder / "r20-cdg", SYNTHETIC["cdg"])
    return traces


def dump(trace: Path, hardware: str) -> str:
    """Every row of the replay of ``trace`` on ``hardware`` as CSV text (exact floats)."""
    preset, overrides = HARDWARE[hardware]
    hw = load_hardware(ROOT / "hw_configs" / f"{preset}.yaml", list(overrides))
    rows, storage = replay_trace(trace, hw)
    frame = pd.DataFrame([dataclasses.asdict(row) for row in rows])  # any revision's rows
    text = frame.to_csv(index=False, float_format=repr)
    return text + f"# index storage bits={storage['bits']} bitmap={storage['bits_bitmap']}\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=["write", "check"])
    parser.add_argument("dir", type=Path)
    parser.add_argument("--trace", action="append", default=[],
                        help="a recorded trace or run directory to include")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        traces = make_traces(Path(tmp))
        for path in args.trace:
            resolved = resolve_trace_dir(Path(path))
            traces[f"rec-{Path(path).resolve().name}"] = resolved
        args.dir.mkdir(parents=True, exist_ok=True)
        differ = 0
        for name, trace in traces.items():
            for hardware in HARDWARE:
                text = dump(trace, hardware)
                file = args.dir / f"{name}--{hardware}.csv"
                if args.mode == "write":
                    file.write_text(text)
                    print(f"wrote {file}")
                    continue
                same = file.exists() and file.read_text() == text
                differ += not same
                print(f"{'SAME' if same else 'DIFF'} {file.name}")
    if args.mode == "check":
        print(f"{differ} of {len(traces) * len(HARDWARE)} dumps differ")
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main())
