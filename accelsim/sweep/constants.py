"""Names and limits of the sweep format."""

from __future__ import annotations

from typing import Any

Axis = tuple[str, list[Any]]
"""One grid axis: a dotted config key and the values it takes, in order."""

SWEEP_KIND = "accelsim-sweep"
SWEEP_FORMAT_VERSION = 1
GRID_KIND = "sweep-grid"
GRID_KEYS = ("kind", "version", "vary", "zip")
SWEEP_FILE = "sweep.json"
POINTS_DIR = "points"
RESULTS_CSV = "results.csv"
RESULTS_PARQUET = "results.parquet"
POINT_ID_HEX = 16
INDEX_METRICS = ("index_bits", "index_bits_bitmap", "index_reduction")
ID_COLUMNS = ("trace", "point", "point_id")
GROUP_MAX_POINTS = 8  # points replayed together at most (memory and what a kill loses)
DASK_CONNECT_TIMEOUT_S = 10
PARENT_POLL_S = 0.5
