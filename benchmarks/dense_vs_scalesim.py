"""Time accelsim's dense simulation against SCALE-Sim v3.0.0 on the same ResNet-18 GEMMs.

SCALE-Sim models forward convs only, so every training-phase GEMM ``[sr x t] . [t x sc]`` of
CIFAR ResNet-18 (batch 1) is given to it as the equivalent topology row: an ``sr x 1`` input map,
a 1x1 filter, ``t`` channels and ``sc`` filters. Both tools simulate the same GEMMs on the same
array; the script checks that their cycles agree and prints the time per GEMM side by side.

SCALE-Sim needs its own virtual environment (``bash tests/fixtures/setup_scalesim_venv.sh``);
without it only accelsim's timings are printed.

    .venv/bin/python benchmarks/dense_vs_scalesim.py [--gemms 6] [--dataflow ws]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from accelsim.analysis import summary  # noqa: E402
from accelsim.config import load_hardware, with_overrides  # noqa: E402
from accelsim.engine.simulator import (  # noqa: E402
    results_frame,
    simulate_layer_phase,
    simulate_network_dense,
)
from accelsim.network import PHASES, Layer, resnet18  # noqa: E402
from tests.fixtures.scalesim_runner import run_scalesim  # noqa: E402


def phase_gemms(batch: int) -> list[tuple[str, Layer]]:
    """Every phase GEMM of ResNet-18 as a 1x1-conv layer SCALE-Sim can run (sr x 1 input)."""
    gemms = []
    for index, layer in enumerate(resnet18(batch=batch).layers):
        for phase in PHASES:
            if phase == "bd" and index == 0:
                continue
            g = layer.gemm(phase)
            gemms.append((f"{layer.name}.{phase}", Layer(
                name=f"{layer.name}.{phase}", kind="conv", cin=g.t, cout=g.sc, kh=1, kw=1,
                stride=1, padding=0, groups=1, h_in=g.sr, w_in=1, h_out=g.sr, w_out=1,
                batch=1)))
    return gemms


def time_accelsim(layers: list[Layer], hw, repeats: int) -> tuple[float, list[int]]:
    """Seconds per GEMM (mean over ``repeats`` passes) and the cycles of each GEMM."""
    cycles = [simulate_layer_phase(layer, "fw", hw).cycles_compute for layer in layers]
    start = time.perf_counter()
    for _ in range(repeats):
        for layer in layers:
            simulate_layer_phase(layer, "fw", hw)
    return (time.perf_counter() - start) / (repeats * len(layers)), cycles


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--gemms", type=int, default=6,
                        help="how many ResNet-18 phase GEMMs SCALE-Sim runs (it is slow)")
    parser.add_argument("--dataflow", default="ws", choices=["ws", "os", "is"])
    parser.add_argument("--scalesim-python", default=str(ROOT / ".venv-scalesim/bin/python"))
    args = parser.parse_args()

    hw = with_overrides(load_hardware(ROOT / "hw_configs/systolic_32x32_45nm.yaml"),
                        {"pe_array.dataflow": args.dataflow})
    pe = hw.pe_array
    gemms = phase_gemms(batch=1)
    chosen = [layer for _, layer in gemms[: args.gemms]]
    ours_s, ours_cycles = time_accelsim(chosen, hw, repeats=200)

    start = time.perf_counter()
    step = simulate_network_dense(resnet18(batch=256), hw)
    summary(results_frame(step, hw), hw)
    step_s = time.perf_counter() - start
    print(f"array {pe.rows}x{pe.cols} {args.dataflow}; {len(chosen)} of {len(gemms)} "
          "ResNet-18 phase GEMMs (batch 1)")
    print(f"accelsim: {ours_s * 1e6:10.1f} us per GEMM (timing + memory + energy)")
    print(f"accelsim: {step_s * 1e3:10.1f} ms for a whole ResNet-18 training step, batch 256, "
          f"2 branches x 3 phases ({len(step)} jobs)")

    if not Path(args.scalesim_python).exists():
        print("SCALE-Sim: not installed (bash tests/fixtures/setup_scalesim_venv.sh); no ratio")
        return
    rows = [{"layer_name": layer.name, "ifmap_h": layer.h_in, "ifmap_w": 1, "filter_h": 1,
             "filter_w": 1, "channels": layer.cin, "num_filters": layer.cout, "stride": 1}
            for layer in chosen]
    with tempfile.TemporaryDirectory() as workdir:
        result = run_scalesim(rows, pe.rows, pe.cols, args.dataflow, workdir,
                              args.scalesim_python)
    theirs_cycles = [layer["total_cycles"] for layer in result["layers"]]
    theirs_s = result["sim_s"] / len(chosen)
    agree = all(abs(a - b) <= 1 for a, b in zip(ours_cycles, theirs_cycles, strict=True))
    print(f"SCALE-Sim: {theirs_s * 1e6:10.1f} us per GEMM (simulation only, start-up excluded)")
    print(f"cycles agree on all {len(chosen)} GEMMs: {agree}")
    print(f"ratio: accelsim is {theirs_s / ours_s:,.0f}x faster per GEMM (goal >= 1000x)")


if __name__ == "__main__":
    main()
