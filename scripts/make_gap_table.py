"""The structured-vs-unstructured table of docs/sparse-model.md, from synthetic or recorded traces.

ResNet-18 CIFAR (batch 32 per branch, 2 branches, 3 phases) on the FP8 preset (8-lane lock-step
vector PEs), with compaction off (with a 16-step stage; with the row balancer, on one-step and
16-step stages), on, and on with a slow decoder (4 indices/cycle): the MAC-only
speedup and the whole step's, with the vector unit's non-MAC work (docs/model.md). With
``--sync-tiles 1,4,16,64`` it prints instead CDG's and SCDG's speedup without compaction at each
queue depth, the register file sized to what each depth needs; with ``--wg-lanes`` the speedup
of every gate scheme in four lane mappings: all over output channels; WG over input channels
(dW^T = dY^T X); and FW, then BD too, on adder trees over their reductions. With
``--recorded RUNS`` (a folder of ``accelsim record`` run directories, such as the demo's
``reports/demo/runs``) it prints the same table for the recorded traces on the FP8 preset narrowed
to ``--cols`` PE columns (the demo's 16x4), each run's k-NN accuracy beside it, and then how
strongly each gated run's real gates are correlated across channels: the share of aligned
8-channel units that are off at a pixel (what 8 lock-step lanes can skip) against what channels
of the same densities would give if they were independent.

    .venv/bin/python scripts/make_gap_table.py [--batch 32] [--sync-tiles 1,4,16,64] [--wg-lanes]
    .venv/bin/python scripts/make_gap_table.py --recorded reports/demo/runs [--cols 4]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from accelsim.analysis import replay_summary  # noqa: E402
from accelsim.config import (  # noqa: E402
    HardwareConfig,
    load_hardware,
    register_file_need,
    with_overrides,
)
from accelsim.engine.replay import replay_trace  # noqa: E402
from accelsim.engine.simulator import results_frame  # noqa: E402
from accelsim.network import resnet18  # noqa: E402
from accelsim.trace import TraceReader  # noqa: E402
from accelsim.trace.synth import SEED_SCHEMES, synthesize  # noqa: E402

SENSITIVITY = ("CDG (unstructured gates)", "SCDG 8x1x1")  # the queue-depth table's schemes
HARDWARE = {
    "no compaction": {},
    "no compaction, 16-step stage": {"pe_array.stage_steps": 16,
                                     "buffers.register_file_words": 1024},
    "balanced rows": {"decoder.balance_rows": True},
    "balanced rows, 16-step stage": {"decoder.balance_rows": True, "pe_array.stage_steps": 16,
                                     "buffers.register_file_words": 1024},
    "compaction": {"decoder.compaction": True},
    "compaction, 4 idx/cycle": {"decoder.compaction": True,
                                "decoder.compaction_indices_per_cycle": 4},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--sync-tiles", default="", help="comma-separated queue depths")
    parser.add_argument("--stage-steps", default="1", help="comma-separated operand stage "
                        "depths for --sync-tiles [default: 1]")
    parser.add_argument("--wg-lanes", action="store_true", help="compare WG lane mappings")
    parser.add_argument("--recorded", type=Path, default=None,
                        help="a folder of recorded run directories (each with trace/)")
    parser.add_argument("--cols", type=int, default=None, help="PE columns for --recorded "
                        "[default: 4]")
    args = parser.parse_args()
    if args.cols is not None and not args.recorded:
        parser.error("--cols applies to --recorded only")
    if args.recorded and (args.sync_tiles or args.wg_lanes or args.batch != 32):
        parser.error("--recorded replays the recorded batch on the preset's queues and lanes: "
                     "--batch, --sync-tiles and --wg-lanes do not apply")
    if args.stage_steps != "1" and not args.sync_tiles:
        parser.error("--stage-steps applies to --sync-tiles only")
    base_hw = load_hardware(ROOT / "hw_configs/fp8_tensor_edge_28nm.yaml")
    if args.recorded:
        recorded(with_overrides(base_hw, {"pe_array.cols": args.cols or 4}), args.recorded)
        return
    if args.sync_tiles:
        queue_depths(base_hw, args.batch, [int(x) for x in args.sync_tiles.split(",")],
                     [int(x) for x in args.stage_steps.split(",")])
        return
    if args.wg_lanes:
        wg_mappings(base_hw, args.batch)
        return
    print(TABLE_HEAD)
    with tempfile.TemporaryDirectory() as tmp:
        for number, (scheme, config) in enumerate(SEED_SCHEMES.items()):
            path = Path(tmp) / f"scheme-{number}"
            synthesize(resnet18(batch=args.batch), path, config)
            scheme_rows(path, base_hw, scheme)


TABLE_HEAD = ("| scheme | hardware | FLOPs red. | speedup (MAC-only) | speedup efficiency | "
              "energy red. | index red. | decoder stall cycles | index energy % | "
              "whole-step speedup | non-MAC share | whole-step energy red. |\n"
              "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")


def scheme_rows(path: Path, base_hw: HardwareConfig, scheme: str) -> None:
    """One table row per :data:`HARDWARE` variant of the trace at ``path``."""
    reader = TraceReader(path)
    gated = [item.name for item in reader.layers if item.gate is not None]
    for label, overrides in HARDWARE.items():
        hw = with_overrides(base_hw, overrides)
        summary = replay_totals(path, hw, scheme, gated)
        t = summary["total"]
        print(f"| {scheme} | {label} | {t['flops_reduction']:.2f}x | {t['speedup']:.2f}x "
              f"| {t['speedup_efficiency']:.2f} | {t['energy_reduction']:.2f}x | "
              f"{summary['index']['index_reduction']:.2f}x | "
              f"{t['cycles_decoder_stall']:,} | "
              f"{100 * t['energy_index_pj'] / t['energy_pj']:.2g} | "
              f"{t['speedup_step']:.2f}x | {t['non_mac_share']:.0%} | "
              f"{t['energy_reduction_step']:.2f}x |", flush=True)


def recorded(hw: HardwareConfig, runs: Path) -> None:
    """The table for every recorded run under ``runs``, then the gated runs' channel
    correlation (:func:`channel_correlation`)."""
    folders = sorted(p for p in runs.iterdir() if (p / "trace" / "manifest.json").exists())
    print(f"{hw.pe_array.rows}x{hw.pe_array.cols} PEs x {hw.pe_array.vector_width} lanes; "
          "k-NN accuracy from each run's eval.json")
    print()
    print("| run | k-NN accuracy |")
    print("| --- | --- |")
    for folder in folders:
        evaluation = folder / "eval.json"
        accuracy = (f"{json.loads(evaluation.read_text())['knn_accuracy']:.3f}"
                    if evaluation.exists() else "n/a (no eval.json: run unfinished)")
        print(f"| {folder.name} | {accuracy} |")
    print()
    print(TABLE_HEAD)
    for folder in folders:
        reader = TraceReader(folder / "trace")
        if any(item.gate is not None or item.weight is not None for item in reader.layers):
            scheme_rows(folder / "trace", hw, folder.name)  # dense runs: 1.00x throughout
    print()
    print("| run | gate density | 8-channel units off: measured | if channels were "
          "independent | closed bits in units off: measured | independent |")
    print("| --- | --- | --- | --- | --- | --- |")
    for folder in folders:
        measured = channel_correlation(TraceReader(folder / "trace"))
        if measured is not None:
            print(f"| {folder.name} | " + " | ".join(f"{v:.3f}" for v in measured) + " |")


def channel_correlation(reader: TraceReader, unit: int = 8
                        ) -> tuple[float, float, float, float, float] | None:
    """Over every gated layer, branch and recorded step: the gate density, the share of
    aligned ``unit``-channel units (at one pixel) whose gates are all closed, that share if
    each channel kept its own density but closed independently (mean over units of the
    product of their channels' closed fractions), and the share of closed gate bits that lie
    in all-closed units, measured and independent. None without gates of one channel per bit."""
    totals = np.zeros(5)
    for step in reader.steps:
        masks = reader.step_packed(step)
        for item in reader.layers:
            if item.gate is None or item.gate.group_size != 1 or item.layer.cout % unit:
                continue
            for branch in range(1, reader.branches + 1):
                gate = masks.gates[(item.name, branch)]
                bits = np.unpackbits(gate.data, count=int(np.prod(gate.shape)),
                                     bitorder="little").reshape(gate.shape).astype(bool)
                n, channels, ho, wo = bits.shape
                units = bits.reshape(n, channels // unit, unit, ho * wo)
                off = ~units.any(axis=2)                          # (n, units, pixels)
                closed = 1.0 - units.mean(axis=(0, 3))             # (units, unit) per channel
                independent_off = closed.prod(axis=1)              # (units,)
                pixels = n * ho * wo
                totals += [bits.sum(), off.sum() * 1.0, independent_off.sum() * pixels,
                           off.sum() * unit, bits.size]
    if not totals[4]:
        return None
    density, units_total = totals[0] / totals[4], totals[4] / unit
    closed_bits = totals[4] - totals[0]
    return (density, totals[1] / units_total, totals[2] / units_total,
            totals[3] / closed_bits, totals[2] * unit / closed_bits)


def at_depth(hw: HardwareConfig, sync_tiles: int, stage_steps: int = 1) -> HardwareConfig:
    """``hw`` with ``sync_tiles``, ``stage_steps`` and the register file they need."""
    pe = dataclasses.replace(hw.pe_array, sync_tiles=sync_tiles, stage_steps=stage_steps)
    return with_overrides(hw, {"pe_array.sync_tiles": sync_tiles,
                               "pe_array.stage_steps": stage_steps,
                               "buffers.register_file_words": register_file_need(pe).total})


def replay_totals(path: Path, hw: HardwareConfig, name: str,
                  gated: list[str] | None = None) -> dict:
    """The replay summary of the trace at ``path`` on ``hw`` (``total``, ``per_phase``,
    ``index``; ``gated``: the gated layers, for the gated-layer FLOPs)."""
    rows, storage = replay_trace(path, hw)
    return replay_summary(results_frame(rows, hw), storage, hw, name, {}, gated or [])


def queue_depths(base_hw: HardwareConfig, batch: int, depths: list[int],
                 stages: list[int]) -> None:
    """CDG's and SCDG's speedup without compaction at each queue and stage depth."""
    print("| sync_tiles | stage_steps | register-file words | " + " | ".join(SENSITIVITY) + " |")
    print("| --- | --- | --- |" + " --- |" * len(SENSITIVITY))
    with tempfile.TemporaryDirectory() as tmp:
        paths = {}
        for number, scheme in enumerate(SENSITIVITY):
            paths[scheme] = Path(tmp) / f"scheme-{number}"
            synthesize(resnet18(batch=batch), paths[scheme], SEED_SCHEMES[scheme])
        for depth in depths:
            for stage in stages:
                hw = at_depth(base_hw, depth, stage)
                cells = []
                for scheme in SENSITIVITY:
                    total = replay_totals(paths[scheme], hw, scheme)["total"]
                    cells.append(f"{total['speedup']:.2f}x")
                print(f"| {depth} | {stage} | {hw.buffers.register_file_words} | "
                      + " | ".join(cells) + " |", flush=True)



def wg_mappings(base_hw: HardwareConfig, batch: int) -> None:
    """Every gate scheme's speedup (and its FW and WG phases') in each lane mapping, without
    compaction: against the dense run in the same mapping and against the output-channel
    mapping's dense run."""
    print("| scheme | FW lanes | BD lanes | WG lanes | speedup | FW | BD | WG | speedup vs "
          "output-channel dense | energy red. |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    with tempfile.TemporaryDirectory() as tmp:
        for number, (scheme, config) in enumerate(SEED_SCHEMES.items()):
            if config.gate_sparsity is None:
                continue
            path = Path(tmp) / f"scheme-{number}"
            synthesize(resnet18(batch=batch), path, config)
            dense_output = 0
            for fw, bd, wg in MAPPINGS:
                trees = "reduction" in (fw, bd)
                hw = with_overrides(base_hw, {
                    "pe_array.fw_lanes": fw, "pe_array.bd_lanes": bd, "pe_array.wg_lanes": wg,
                    **({"sparsity_support.nm_m": []} if trees else {})})
                summary = replay_totals(path, hw, scheme)
                total, phases = summary["total"], summary["per_phase"]
                dense_output = dense_output or total["cycles_dense"]
                speedups = " | ".join(f"{phases[p]['speedup']:.2f}x" for p in ("fw", "bd", "wg"))
                print(f"| {scheme} | {fw} | {bd} | {wg} | {total['speedup']:.2f}x | {speedups} | "
                      f"{dense_output / total['cycles']:.2f}x | "
                      f"{total['energy_reduction']:.2f}x |", flush=True)


OUT, IN, TREE = "output_channels", "input_channels", "reduction"
MAPPINGS = ((OUT, OUT, OUT), (OUT, OUT, IN), (TREE, OUT, IN), (TREE, TREE, IN))

if __name__ == "__main__":
    main()
