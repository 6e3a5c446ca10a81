"""Hardware sweeps: every trace replayed on every point of a grid of config overrides.

A sweep is traces x grid points. A grid point is a dict of dotted config overrides
(``{"pe_array.rows": 16, "decoder.compaction": True}``) applied on top of a base hardware config
(a YAML file plus ``--set`` overrides). Grids come from :func:`parse_vary` axes
(``pe_array.rows=8,16,32``) and :func:`load_grid_file` YAML files, expanded by
:func:`expand_grid`; every point is validated by the config loader before anything runs.

:func:`run_sweep` replays the (trace, point) pairs on local processes or a Dask cluster, the
points of a trace whose configs share their compute (they differ only in memory, energy, clock or
precision) in one replay, and stores each finished point at once, atomically, as
``OUT/points/<point_id>.json``; a killed sweep
loses only the tasks in flight and ``resume=True`` computes only the missing ones. The final
tables are assembled from the stored points alone, in trace order then grid order, with canonical
number formatting, so they are byte-identical whichever executor ran the points and however often
the sweep was interrupted. The format of ``OUT`` is described in ``docs/sweeps.md``::

    OUT/sweep.json           what the sweep is (written first): base config and digest, phases,
                             varied keys, grid, traces with their digests, accelsim version
    OUT/points/<id>.json     one finished (trace, point): overrides, digests, summary
    OUT/points/<id>.parquet  its job table: one row per job (as ``accelsim simulate`` writes),
                             with point, point_id and hw.* columns (:func:`sweep_jobs`)
    OUT/results.csv          tidy table: one row per (trace, point, scope)
    OUT/results.parquet      the same table

Example::

    from accelsim.analysis import best_points
    from accelsim.sweep import expand_grid, run_sweep
    grid = expand_grid([("pe_array.rows", [8, 16]), ("dram.bandwidth_gbps", [12.8, 25.6])], None)
    result = run_sweep(["runs/cdg"], "hw_configs/fp8_tensor_edge_28nm.yaml", [], grid, "out/sw")
    print(best_points(result.table))
"""

from accelsim.network import parse_phases
from accelsim.sweep.constants import (
    DASK_CONNECT_TIMEOUT_S,
    GRID_KEYS,
    GRID_KIND,
    GROUP_MAX_POINTS,
    ID_COLUMNS,
    INDEX_METRICS,
    PARENT_POLL_S,
    POINT_ID_HEX,
    POINTS_DIR,
    RESULTS_CSV,
    RESULTS_PARQUET,
    SWEEP_FILE,
    SWEEP_FORMAT_VERSION,
    SWEEP_KIND,
    Axis,
)
from accelsim.sweep.execute import (
    OnDone,
    dask_client,
    group_tasks,
    run_dask,
    run_local,
    simulate_points,
)
from accelsim.sweep.grid import (
    check_key,
    expand_grid,
    grid_from_options,
    load_grid_file,
    parse_vary,
)
from accelsim.sweep.plan import (
    PointTask,
    SweepPlan,
    TraceRef,
    plan_sweep,
    point_config,
    point_id,
    trace_digest,
)
from accelsim.sweep.run import SweepResult, run_sweep
from accelsim.sweep.store import (
    count_stored,
    csv_text,
    prepare_out,
    sweep_jobs,
    table_frame,
    table_rows,
    write_tables,
)

# Settings such as DASK_CONNECT_TIMEOUT_S are read where they are defined
# (accelsim.sweep.constants, imported by each module): patch them there.
__all__ = [
    "DASK_CONNECT_TIMEOUT_S", "GRID_KEYS", "GRID_KIND", "GROUP_MAX_POINTS", "ID_COLUMNS",
    "INDEX_METRICS", "PARENT_POLL_S", "POINTS_DIR", "POINT_ID_HEX", "RESULTS_CSV",
    "RESULTS_PARQUET", "SWEEP_FILE", "SWEEP_FORMAT_VERSION", "SWEEP_KIND", "Axis", "OnDone",
    "PointTask", "SweepPlan", "SweepResult", "TraceRef", "check_key", "count_stored",
    "csv_text", "dask_client", "expand_grid", "grid_from_options", "group_tasks",
    "load_grid_file", "parse_phases", "parse_vary", "plan_sweep", "point_config", "point_id",
    "prepare_out", "run_dask", "run_local", "run_sweep", "simulate_points", "sweep_jobs",
    "table_frame", "table_rows", "trace_digest", "write_tables",
]
