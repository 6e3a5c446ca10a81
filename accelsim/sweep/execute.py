"""Running a sweep's points: one trace's points replayed together, on local processes or Dask."""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from accelsim import __version__
from accelsim.config import plain
from accelsim.errors import InputError
from accelsim.sweep.constants import DASK_CONNECT_TIMEOUT_S, GROUP_MAX_POINTS, PARENT_POLL_S
from accelsim.sweep.plan import PointTask
from accelsim.sweep.store import parquet_bytes


def simulate_points(tasks: Sequence[PointTask]) -> list[tuple[dict[str, Any], bytes]]:
    """Replay one trace on the configs of ``tasks`` (points of one trace): per task, in the order
    of ``tasks``, its record (stored as ``points/<id>.json``) and its job table as parquet
    bytes (``points/<id>.parquet``: the job rows of ``accelsim simulate`` with ``point``,
    ``point_id`` and the ``hw.*`` columns of the varied keys). Points whose configs share their
    compute (:func:`accelsim.engine.sparse.compute_key`: they differ only in memory, energy,
    clock or precision) are replayed together, each job's compute found once.

    ``summary`` holds ``total``, ``per_phase``, ``per_branch``, ``index`` and (for gated traces)
    ``gated_layers_fw``, as in ``summary.json`` of ``accelsim simulate``.
    """
    from accelsim.analysis import replay_summary
    from accelsim.engine.replay import replay_trace_on
    from accelsim.engine.simulator import results_frame
    from accelsim.trace import TraceReader

    if not tasks:
        return []
    trace = tasks[0].trace
    assert all(task.trace == trace and task.phases == tasks[0].phases for task in tasks)
    reader = TraceReader(trace.path)
    gated = [item.name for item in reader.layers if item.gated]
    replays = replay_trace_on(trace.path, [task.hw for task in tasks], phases=tasks[0].phases)
    kept = ("total", "per_phase", "per_branch", "index", "gated_layers_fw", "non_mac_modelled",
            "steps")
    records = []
    for task, (rows, storage) in zip(tasks, replays, strict=True):
        jobs = results_frame(rows, task.hw, task.varied)
        summary = replay_summary(jobs, storage, task.hw, Path(trace.path).name,
                                 reader.manifest.producer, gated)
        jobs.insert(0, "point_id", task.point_id)
        jobs.insert(0, "point", task.point)
        records.append((plain({
            "point_id": task.point_id,
            "point": task.point,
            "trace": task.trace.label,
            "trace_digest": task.trace.digest,
            "overrides": task.overrides,
            "config_digest": task.hw.digest(),
            "base_digest": task.base_digest,
            "phases": list(task.phases),
            "accelsim_version": __version__,
            "summary": {key: summary[key] for key in kept if key in summary},
        }), parquet_bytes(jobs)))
    return records


def group_tasks(tasks: Sequence[PointTask], parts: int,
                max_points: int = GROUP_MAX_POINTS) -> list[tuple[PointTask, ...]]:
    """``tasks`` in groups that :func:`simulate_points` replays at once: the points of one
    trace whose configs share their compute, in task order, at most ``max_points`` a group
    (a group's rows are held until it finishes, and a kill loses the groups in flight). While
    there are fewer groups than ``parts`` (workers), the largest group is halved, so every
    worker has a replay to run."""
    from accelsim.engine.sparse import compute_key

    groups: dict[tuple[int, object], list[PointTask]] = {}
    for task in tasks:
        groups.setdefault((task.trace_index, compute_key(task.hw)), []).append(task)
    result = [tuple(group[i:i + max_points]) for group in groups.values()
              for i in range(0, len(group), max_points)]
    while len(result) < parts and any(len(group) > 1 for group in result):
        largest = max(range(len(result)), key=lambda i: len(result[i]))
        group = result.pop(largest)
        half = (len(group) + 1) // 2
        result[largest:largest] = [group[:half], group[half:]]
    return result


OnDone = Callable[[PointTask, tuple[dict[str, Any], bytes]], None]


def _watch_parent(parent_pid: int) -> None:
    while True:
        time.sleep(PARENT_POLL_S)
        if os.getppid() != parent_pid:  # the sweep was killed: do not outlive it
            os._exit(1)


def _worker_init(parent_pid: int) -> None:
    """Local worker set-up: Ctrl-C is the parent's to handle; exit when the parent dies."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    threading.Thread(target=_watch_parent, args=(parent_pid,), daemon=True).start()


def _abort_pool(pool: ProcessPoolExecutor, futures: Sequence[Any]) -> None:
    """Cancel queued tasks and stop the running ones now (their points are lost)."""
    for future in futures:
        future.cancel()
    # ProcessPoolExecutor cannot cancel a running task: stop its worker processes instead
    for process in list((getattr(pool, "_processes", None) or {}).values()):
        if process.is_alive():
            process.terminate()
    pool.shutdown(wait=True, cancel_futures=True)


def run_local(tasks: Sequence[PointTask], workers: int | None, on_done: OnDone) -> None:
    """Run ``tasks`` on ``workers`` spawned processes (all cores when None), in groups that
    share a replay (:func:`group_tasks`); one process runs them here, in order. ``on_done`` is
    called in this process for each task as its group finishes."""
    workers = min(workers or os.cpu_count() or 1, len(tasks))
    groups = group_tasks(tasks, workers)
    workers = min(workers, len(groups))
    if workers <= 1:
        for group in groups:
            for task, record in zip(group, simulate_points(group), strict=True):
                on_done(task, record)
        return
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"),
                               initializer=_worker_init, initargs=(os.getpid(),))
    futures = {pool.submit(simulate_points, group): group for group in groups}
    try:
        for future in as_completed(futures):
            for task, record in zip(futures[future], future.result(), strict=True):
                on_done(task, record)
    except BaseException:
        _abort_pool(pool, list(futures))
        raise
    pool.shutdown(wait=True)


@contextmanager
def dask_client(address: str) -> Iterator[Any]:
    """A ``distributed.Client`` connected to the scheduler at ``address``, closed on exit;
    InputError if ``distributed`` is missing or the scheduler does not answer."""
    try:
        import distributed
    except ImportError:
        raise InputError("the Dask executor needs the 'distributed' package (pip install "
                         "'accelsim[dask]')", field="--dask") from None
    try:
        client = distributed.Client(address, timeout=DASK_CONNECT_TIMEOUT_S,
                                    set_as_default=False)
    except (OSError, TimeoutError, ValueError, TypeError) as error:
        reason = " ".join(str(error).split()) or type(error).__name__
        raise InputError(f"cannot reach the Dask scheduler at {address!r}: {reason}",
                         field="--dask") from None
    try:
        yield client
    finally:
        client.close()


def run_dask(tasks: Sequence[PointTask], client: Any, on_done: OnDone) -> None:
    """Run ``tasks`` on a Dask cluster through ``client`` (see :func:`dask_client`). Workers
    must see the trace paths (a shared file system) and have accelsim installed; results come
    back here and ``on_done`` stores them. On any error or Ctrl-C every task is cancelled."""
    import distributed

    workers = max(1, len(client.scheduler_info().get("workers", {})))
    groups = group_tasks(tasks, workers)
    keys = [f"accelsim-points-{group[0].point_id}-{len(group)}" for group in groups]
    futures = client.map(simulate_points, groups, key=keys)
    by_key = dict(zip(keys, groups, strict=True))
    try:
        for future in distributed.as_completed(futures, loop=client.loop):
            for task, record in zip(by_key[future.key], future.result(), strict=True):
                on_done(task, record)
    except BaseException:
        client.cancel(futures)
        raise
