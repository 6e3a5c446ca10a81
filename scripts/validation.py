"""The table of docs/validation.md: accelsim against published numbers of real or modelled
sparse accelerators, one row per published result.

Each row runs accelsim on the preset (``hw_configs/``) that models the paper's hardware and
prints the published number, ours and the error (ours / published - 1). Rows with a tolerance
are reproduced results; tests/test_validation.py fails when a model change moves any row's
number away from the page, or a reproduced row out of its tolerance. A few seconds.

    .venv/bin/python scripts/validation.py            # print the table
    .venv/bin/python scripts/validation.py --write    # and write it into docs/validation.md
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from accelsim.config import load_hardware, with_overrides  # noqa: E402
from accelsim.engine.masks import LayerMasks  # noqa: E402
from accelsim.engine.simulator import simulate_job  # noqa: E402
from accelsim.fileio import atomic_write_text  # noqa: E402
from accelsim.network import linear, resnet18  # noqa: E402
from accelsim.trace.synth import SynthConfig, synthesize  # noqa: E402
from scripts.fp8_chip_settings import LANES, configure  # noqa: E402
from scripts.make_gap_table import replay_totals  # noqa: E402
from tests.test_scalesim_fixtures import ROWS as SCALESIM_ROWS  # noqa: E402
from tests.test_scalesim_fixtures import ours_cycles  # noqa: E402

PAGE = ROOT / "docs" / "validation.md"
BEGIN, END = "<!-- validation table: scripts/validation.py --write -->", "<!-- end of table -->"
GEMM = 512  # the DSTC GEMM's M = N = K: normalised cycles do not depend on it once tiles fill
DSTC_DENSE = 4600  # the artifact's dense 4096^3 point (A = B = 1.0)
DSTC = {  # (A density, B density) -> the artifact's baseline.yaml (DSTC paper, Fig. 21)
    (1.0, 0.4): 2500, (0.9, 1.0): 4160, (0.7, 1.0): 3300, (0.5, 1.0): 2690, (0.3, 1.0): 1930}
STC_LAYERS = ((128, 1152, 1024), (512, 1024, 256), (512, 128, 1024), (512, 256, 1024))  # M K N
STC_FLEXIBLE = {4: 0.500, 6: 0.5049, 8: 0.4524}  # Sparseloop's STC-flexible, cycles / dense TC


@dataclass(frozen=True)
class Row:
    """One published result and accelsim's number for it. ``tolerance``: the largest
    |ours / published - 1| of a reproduced row (None: not claimed as reproduced)."""

    key: str
    result: str
    workload: str
    model: str
    published: float | None
    ours: float | None
    tolerance: float | None = None
    unit: str = ""

    @property
    def error(self) -> float | None:
        """ours / published - 1, or None where either is missing."""
        if self.published is None or self.ours is None:
            return None
        return self.ours / self.published - 1

    @property
    def status(self) -> str:
        """reproduced (within tolerance), differs, or not reproduced."""
        if self.ours is None:
            return "not reproduced"
        if self.tolerance == 0.0 and self.error == 0.0:
            return "reproduced exactly"
        if self.tolerance is not None and abs(self.error or 0.0) <= self.tolerance:
            return f"reproduced (within {self.tolerance:.0%})"
        return "differs"

    def cells(self) -> list[str]:
        """The row's markdown cells."""
        def number(value: float | None) -> str:
            return "-" if value is None else f"{value:.3g}{self.unit}"
        error = "-" if self.error is None else f"{self.error:+.1%}"
        return [self.key, self.result, self.workload, self.model, number(self.published),
                number(self.ours), error, self.status]


def scalesim_rows() -> list[Row]:
    """SCALE-Sim v3's dense and N:M systolic cycles: every fixture row, exact."""
    exact = sum(ours_cycles(row) == int(row["total_cycles"]) for row in SCALESIM_ROWS)
    worst = max(abs(ours_cycles(row) / int(row["total_cycles"]) - 1) for row in SCALESIM_ROWS)
    n = len(SCALESIM_ROWS)
    return [Row("S1", f"SCALE-Sim v3.0.0: runs whose compute cycles we equal (largest error "
                f"{worst:.0%})",
                "conv layers, ws / os / is, arrays 1x1 to 32x32; dense and N:M 1:4 to 4:8",
                "accelsim.engine.systolic", float(n), float(exact), 0.0)]


def dstc_rows() -> list[Row]:
    """DSTC's 4096^3 latency normalised to dense, the one-sided points: B (weights) at 0.4,
    and A at 0.9-0.3 with B dense, which by the outer product's symmetry is the transposed GEMM
    with weights at that density."""
    hw = load_hardware(ROOT / "hw_configs/dstc_128mac_fp16.yaml")
    layer = linear("gemm", GEMM, GEMM, GEMM)
    dense = simulate_job(layer, "fw", hw).cycles
    rows = []
    for (a, b), cycles in DSTC.items():
        density = b if a == 1.0 else a
        kept = np.random.default_rng(0).random((GEMM, GEMM)) < density
        ours = simulate_job(layer, "fw", hw, masks=LayerMasks(weight=kept)).cycles / dense
        side = f"B = {b}, A dense" if a == 1.0 else f"A = {a}, B dense"
        rows.append(Row(f"D{len(rows) + 1}", "DSTC (Wang et al., ISCA 2021) latency / dense",
                        f"GEMM, {side}, uniform random", "dstc_128mac_fp16",
                        cycles / DSTC_DENSE, ours, 0.10))
    return rows


def nm_mask(rng: np.random.Generator, rows: int, cols: int, n: int, m: int) -> np.ndarray:
    """bool (rows, cols): the ``n`` kept of every ``m`` consecutive columns, at random."""
    scores = rng.random((rows, cols))
    kept = np.zeros((rows, cols), dtype=bool)
    for start in range(0, cols, m):
        block = scores[:, start:start + m]
        best = np.argsort(-block, axis=1)[:, :min(n, block.shape[1])]
        np.put_along_axis(kept[:, start:start + m], best, True, axis=1)
    return kept


def stc_rows() -> list[Row]:
    """STC-flexible's cycles over four ResNet-50 GEMMs, normalised to the dense tensor core."""
    hw = load_hardware(ROOT / "hw_configs/stc_flexible_1024mac_int8.yaml")
    rows = []
    for m, published in STC_FLEXIBLE.items():
        sparse = dense = 0
        for out, reduction, pixels in STC_LAYERS:
            layer = linear("gemm", reduction, out, pixels)
            kept = nm_mask(np.random.default_rng(1), out, reduction, 2, m)
            sparse += simulate_job(layer, "fw", hw,
                                   masks=LayerMasks(weight=kept, nm=(2, m))).cycles
            dense += simulate_job(layer, "fw", hw).cycles
        rows.append(Row(f"T{len(rows) + 1}", "STC-flexible (Sparseloop MICRO 2022 model) "
                        "cycles / dense TC", f"4 ResNet-50 GEMMs, 2:{m} weights",
                        "stc_flexible_1024mac_int8", published, sparse / dense,
                        0.02 if m == 4 else None))
    return rows


def tensordash_rows() -> list[Row]:
    """TensorDash's published averages: not reproducible from a trace (natural activation and
    gradient zeros are not recorded); its multiplexer is."""
    from accelsim.engine.lane_scheduler import LaneScheduler

    td = LaneScheduler.of(load_hardware(ROOT / "hw_configs/tensordash_bf16.yaml"))
    assert td is not None
    workload = "8 models' natural zeros (ReLU activations, gradients)"
    return [
        Row("TD1", "TensorDash (MICRO 2020) training speedup", workload, "tensordash_bf16",
            1.95, None, unit="x"),
        Row("TD2", "TensorDash compute-unit energy efficiency (arXiv 2009.00748)", workload,
            "tensordash_bf16", 1.89, None, unit="x"),
        Row("TD3", "TensorDash multiplexer inputs per multiplier input",
            "lookahead 2, lookaside 5", "decoder.lane_scheduler", 8.0,
            float(td.mux_inputs), 0.0),
    ]


def sat_rows() -> list[Row]:
    """SAT + BDWP: 2:8 weights in FW and BD (transposable), WG dense, over dense training on
    the same accelerator; ours on the FP8 preset (SAT's array is not in our sources)."""
    hw = with_overrides(load_hardware(ROOT / "hw_configs/fp8_tensor_edge_28nm.yaml"),
                        {"sparsity_support.weight": ["fw", "bd"]})
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bdwp"
        synthesize(resnet18(batch=16), path, SynthConfig(steps=1, weight_pattern="nmt:2:8"))
        total = replay_totals(path, hw, "bdwp")["total"]
    workload = "ResNet-18 CIFAR (synthetic masks), 2:8 in FW and BD"
    return [
        Row("B1", "SAT + BDWP (Fang et al., TCAD 2023) training speedup, 2:8", workload,
            "fp8_tensor_edge_28nm, whole step", 1.75, total["speedup_step"], unit="x"),
        Row("B2", "the same, MAC-only", workload, "fp8_tensor_edge_28nm, MACs only", 1.75,
            total["speedup"], unit="x"),
    ]


def fp8_rows() -> list[Row]:
    """The FP8 chip's 7.3x FLOPs -> 4.7x latency (efficiency 0.64), against the FP8 preset as
    shipped and with the knobs that come nearest (compaction, a masked gate gradient)."""
    base = load_hardware(ROOT / "hw_configs/fp8_tensor_edge_28nm.yaml")
    settings = (("preset as shipped (straight-through gate gradient)", "straight_through",
                 False), ("preset + compaction, masked gate gradient", "masked", True))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for label, gradient, compaction in settings:
            path = Path(tmp) / gradient
            synthesize(resnet18(batch=16), path, SynthConfig(
                steps=1, gate_sparsity=0.78, gate_groups=4, gate_group_size=8,
                gate_gradient=gradient, weight_sparsity=0.65, weight_pattern="block:8x8"))
            hw = configure(base, LANES["output columns"], 16, compaction, 1)
            total = replay_totals(path, hw, gradient)["total"]
            for what, speedup in (("MAC-only", total["speedup"]),
                                  ("whole step", total["speedup_step"])):
                rows.append(Row(f"F{len(rows) + 1}", "FP8 chip (JSSC 2023) latency speedup / "
                                "FLOPs reduction", "ResNet-18 CIFAR (synthetic: SCDG 78 %, "
                                "8x8 blocks 65 %)", f"fp8_tensor_edge_28nm, {label}, {what}",
                                4.7 / 7.3, speedup / total["flops_reduction"]))
    return rows


def validation_rows() -> list[Row]:
    """Every row of the table, in order."""
    return [*scalesim_rows(), *dstc_rows(), *stc_rows(), *tensordash_rows(), *sat_rows(),
            *fp8_rows()]


def table(rows: list[Row]) -> str:
    """The markdown table of ``rows``."""
    head = ["row", "published result", "workload, sparsity", "accelsim model", "published",
            "ours", "error", "status"]
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    lines += ["| " + " | ".join(row.cells()) + " |" for row in rows]
    return "\n".join(lines)


def page_with(text: str, rows: list[Row]) -> str:
    """``text`` (docs/validation.md) with its table replaced by that of ``rows``."""
    start, end = text.index(BEGIN) + len(BEGIN), text.index(END)
    return text[:start] + "\n" + table(rows) + "\n" + text[end:]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--write", action="store_true", help="write the table into "
                        "docs/validation.md")
    args = parser.parse_args()
    rows = validation_rows()
    print(table(rows))
    if args.write:
        atomic_write_text(PAGE, page_with(PAGE.read_text(), rows))


if __name__ == "__main__":
    main()
