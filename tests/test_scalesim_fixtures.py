"""accelsim's closed-form systolic cycles against real SCALE-Sim v3.0.0 runs.

The fixture table ``tests/fixtures/scalesim_v3_cycles.csv`` was made by
``tests/fixtures/make_scalesim_fixtures.py`` (see ``tests/fixtures/README.md``); this test
needs only the CSV, not SCALE-Sim.
"""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from accelsim.engine.systolic import cycles_dense_systolic, cycles_nm_systolic
from accelsim.network import scalesim_output_size

REPO = Path(__file__).resolve().parents[1]

FIXTURE = REPO / "tests" / "fixtures" / "scalesim_v3_cycles.csv"


def _load() -> list[dict]:
    with FIXTURE.open(newline="") as fh:
        return list(csv.DictReader(fh))


ROWS = _load()


def gemm_of(row: dict) -> tuple[int, int, int]:
    """(sr, t, sc) of a topology row: output pixels, Kh*Kw*C, filters."""
    ho = scalesim_output_size(int(row["ifmap_h"]), int(row["filter_h"]), int(row["stride"]))
    wo = scalesim_output_size(int(row["ifmap_w"]), int(row["filter_w"]), int(row["stride"]))
    t = int(row["filter_h"]) * int(row["filter_w"]) * int(row["channels"])
    return ho * wo, t, int(row["num_filters"])


def ours_cycles(row: dict) -> int:
    sr, t, sc = gemm_of(row)
    rows, cols, dataflow = int(row["rows"]), int(row["cols"]), row["dataflow"]
    if row["sparsity_support"] != "true":
        return cycles_dense_systolic(sr, t, sc, rows, cols, dataflow)
    n, m = (int(x) for x in (row["sparsity"] or "1:1").split(":"))
    return cycles_nm_systolic(
        sr,
        t,
        sc,
        rows,
        cols,
        dataflow,
        n,
        m,
        optimized_mapping=row["optimized_mapping"] == "true",
        block_size=int(row["block_size"]),
    )


@pytest.mark.parametrize("row", ROWS, ids=[row["case_id"] for row in ROWS])
def test_matches_scalesim(row: dict) -> None:
    assert int(row["stall_cycles"]) == 0
    assert ours_cycles(row) == int(row["total_cycles"])


def test_fixture_coverage() -> None:
    assert len(ROWS) >= 40
    assert len({row["case_id"] for row in ROWS}) == len(ROWS)
    nm = [r for r in ROWS if r["sparsity_support"] == "true" and r["sparsity"] not in ("", "1:1")]
    assert len(nm) >= 8
    assert {r["dataflow"] for r in ROWS} == {"ws", "os", "is"}
    assert {r["dataflow"] for r in nm} == {"ws", "os", "is"}
    assert any(r["optimized_mapping"] == "true" for r in nm)
    assert any(r["rows"] != r["cols"] for r in ROWS)
    assert {"1"} < {r["rows"] for r in ROWS} | {r["cols"] for r in ROWS}
    assert {int(r["stride"]) for r in ROWS} >= {1, 2, 3}
    assert any(r["filter_h"] != r["filter_w"] for r in ROWS)
    assert any(r["ifmap_h"] != r["ifmap_w"] for r in ROWS)
    assert all(int(r["stall_cycles"]) == 0 for r in ROWS)


def test_output_size_convention() -> None:
    assert scalesim_output_size(10, 3, 1) == 8
    assert scalesim_output_size(9, 3, 2) == 4
    assert scalesim_output_size(13, 3, 3) == 5  # a partial last window counts
    assert scalesim_output_size(10, 2, 3) == 4
    assert scalesim_output_size(8, 1, 2) == 5
    assert scalesim_output_size(5, 5, 1) == 1


def test_sparse_mode_rejects_what_scalesim_cannot_run() -> None:
    for dataflow in ("os", "is"):
        with pytest.raises(ValueError):
            cycles_nm_systolic(16, 36, 12, 8, 8, dataflow, 2, 4, optimized_mapping=True)
    with pytest.raises(ValueError):
        cycles_nm_systolic(16, 36, 12, 8, 8, "ws", 2, 4, optimized_mapping=True, block_size=6)
    with pytest.raises(ValueError):
        cycles_nm_systolic(16, 36, 12, 8, 8, "ws", 5, 4)
    with pytest.raises(ValueError):
        cycles_dense_systolic(16, 36, 12, 8, 8, "rs")


def test_topology_files_through_the_simulator_match_scalesim(tmp_path: Path) -> None:
    """The user's path: a topology CSV read by accelsim and simulated on a configured array
    gives SCALE-Sim's Total Cycles (layer-wise N:M rows on an array whose config supports it)."""
    from accelsim.config import load_hardware, with_overrides
    from accelsim.engine.simulator import simulate_layer_phase
    from accelsim.network import read_topology_csv

    base = load_hardware(REPO / "hw_configs" / "systolic_32x32_45nm.yaml")
    checked = 0
    for index, row in enumerate(ROWS):
        if row["optimized_mapping"] == "true":
            continue  # row-wise mode ignores the topology's N:M; covered by the formula test
        path = tmp_path / f"{index}.csv"
        sparse = row["sparsity_support"] == "true" and row["sparsity"]
        path.write_text(
            "Layer name, IFMAP Height, IFMAP Width, Filter Height, Filter Width, Channels, "
            "Num Filter, Strides, Sparsity,\n"
            f"{row['layer_name']}, {row['ifmap_h']}, {row['ifmap_w']}, {row['filter_h']}, "
            f"{row['filter_w']}, {row['channels']}, {row['num_filters']}, {row['stride']}, "
            f"{row['sparsity']},\n")
        (layer,) = read_topology_csv(path).layers
        m = layer.nm[1] if layer.nm else 4
        hw = with_overrides(base, {
            "pe_array.rows": int(row["rows"]), "pe_array.cols": int(row["cols"]),
            "pe_array.dataflow": row["dataflow"],
            "sparsity_support.nm_m": [m] if sparse and m >= 2 else [],
        })
        job = simulate_layer_phase(layer, "fw", hw)
        assert job.cycles_compute == int(row["total_cycles"]), row["case_id"]
        checked += 1
    assert checked >= 250
