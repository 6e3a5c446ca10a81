"""run_sweep: plan, prepare the output, run the points that are missing, assemble the tables."""

from __future__ import annotations

import dataclasses
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from accelsim.analysis import best_points
from accelsim.errors import InputError
from accelsim.fileio import atomic_write_bytes, atomic_write_json
from accelsim.network import PHASES
from accelsim.sweep.constants import POINTS_DIR, RESULTS_CSV, RESULTS_PARQUET, SWEEP_FILE
from accelsim.sweep.execute import dask_client, run_dask, run_local
from accelsim.sweep.plan import PointTask, plan_sweep
from accelsim.sweep.store import (
    prepare_out,
    require_parquet,
    write_tables,
)

if TYPE_CHECKING:
    import pandas as pd


@dataclass(frozen=True)
class SweepResult:
    """What :func:`run_sweep` did: the assembled table (one row per trace x point x scope), the
    best points, how many points were computed now and how many were already stored."""

    out: Path
    table: pd.DataFrame
    best: pd.DataFrame
    points_total: int
    points_computed: int
    points_reused: int
    seconds: float

    @property
    def results_csv(self) -> Path:
        return self.out / RESULTS_CSV

    @property
    def results_parquet(self) -> Path:
        return self.out / RESULTS_PARQUET

    @property
    def sweep_json(self) -> Path:
        return self.out / SWEEP_FILE


@contextmanager
def _progress(total: int, initial: int, enabled: bool) -> Iterator[Any]:
    from tqdm import tqdm

    bar = tqdm(total=total, initial=initial, desc="sweep", unit="point", file=sys.stderr,
               disable=not enabled, dynamic_ncols=True, smoothing=0.1)
    try:
        yield bar
    finally:
        bar.close()


def run_sweep(traces: Sequence[str | Path], base_config_path: str | Path,
              set_overrides: Sequence[str], points: Sequence[Mapping[str, Any]],
              out: str | Path, *, phases: str | Sequence[str] = PHASES,
              workers: int | None = None, dask_address: str | None = None,
              resume: bool = False, progress: bool = True) -> SweepResult:
    """Replay every trace on every grid point; store each point as it finishes; assemble.

    ``points`` are override dicts (from :func:`expand_grid`) applied on top of
    ``base_config_path`` with ``set_overrides`` (``["pe_array.clock_mhz=500"]``). ``out`` must
    be empty or absent unless ``resume``, which computes only the points missing there after
    checking that they belong to this sweep. Tasks run on ``workers`` local processes (all cores
    when None) or on the Dask scheduler at ``dask_address``. A progress bar goes to stderr.
    Ctrl-C cancels the queued tasks, stops the running ones and re-raises KeyboardInterrupt;
    every point finished before it stays stored.
    """
    start = time.perf_counter()
    if dask_address is not None and workers is not None:
        raise InputError("--workers applies to the local executor; the Dask cluster has its "
                         "own workers", field="--workers")
    if workers is not None and workers < 1:
        raise InputError(f"expected a positive number of workers, got {workers}",
                         field="--workers")
    require_parquet()
    plan = plan_sweep(traces, base_config_path, set_overrides, points, phases=phases)
    out = Path(out)
    with ExitStack() as stack:
        client = None if dask_address is None else stack.enter_context(dask_client(dask_address))
        stored, labels = prepare_out(out, plan, resume)
        plan = dataclasses.replace(plan, traces=tuple(
            dataclasses.replace(trace, label=label)
            for trace, label in zip(plan.traces, labels, strict=True)))
        tasks = [task for task in plan.tasks() if task.point_id not in stored]
        total = len(plan.traces) * len(plan.grid)

        with _progress(total, len(stored), progress) as bar:
            def on_done(task: PointTask, result: tuple[dict[str, Any], bytes]) -> None:
                record, jobs = result  # the job table first: a point is stored with its JSON
                atomic_write_bytes(out / POINTS_DIR / f"{task.point_id}.parquet", jobs)
                atomic_write_json(out / POINTS_DIR / f"{task.point_id}.json", record)
                bar.update(1)

            if tasks and client is not None:
                run_dask(tasks, client, on_done)
            elif tasks:
                run_local(tasks, workers, on_done)
    table = write_tables(out, plan)
    return SweepResult(out, table, best_points(table), total, len(tasks), len(stored),
                       time.perf_counter() - start)
