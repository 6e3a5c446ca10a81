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
    OUT/results.csv          tidy table: one row per (trace, point, scope), see TABLE_COLUMNS
    OUT/results.parquet      the same table

Example::

    from accelsim.analysis import best_points
    from accelsim.sweep import expand_grid, run_sweep
    grid = expand_grid([("pe_array.rows", [8, 16]), ("dram.bandwidth_gbps", [12.8, 25.6])], None)
    result = run_sweep(["runs/cdg"], "hw_configs/fp8_tensor_edge_28nm.yaml", [], grid, "out/sw")
    print(best_points(result.table))
"""

from __future__ import annotations

import copy
import csv
import dataclasses
import difflib
import hashlib
import io
import itertools
import json
import multiprocessing
import os
import signal
import sys
import threading
import time
import typing
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from accelsim import __version__
from accelsim.analysis import best_points
from accelsim.config import (
    FrozenMap,
    HardwareConfig,
    apply_overrides,
    build_hardware,
    load_hardware,
    load_yaml_file,
    resolve_key_type,
)
from accelsim.errors import InputError
from accelsim.fileio import TMP_SUFFIX, atomic_write_bytes, atomic_write_json, atomic_write_text
from accelsim.network import PHASES
from accelsim.trace import resolve_trace_dir

if TYPE_CHECKING:
    import pandas as pd

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
SCOPES = ("total", "fw", "bd", "wg", "branch1", "branch2")
INDEX_METRICS = ("index_bits", "index_bits_bitmap", "index_reduction")
ID_COLUMNS = ("trace", "point", "point_id")
GROUP_MAX_POINTS = 8  # points replayed together at most (memory and what a kill loses)
DASK_CONNECT_TIMEOUT_S = 10
PARENT_POLL_S = 0.5


# ---------------------------------------------------------------------------------------------
# Grids
# ---------------------------------------------------------------------------------------------


def check_key(key: str, field: str = "--vary") -> None:
    """Raise InputError unless ``key`` is a dotted leaf of the config schema (did-you-mean)."""
    try:
        tp = resolve_key_type(key)
    except KeyError as error:
        raise InputError(str(error.args[0]), field=field) from None
    if dataclasses.is_dataclass(tp) or typing.get_origin(tp) is FrozenMap:
        raise InputError(f"{key}: is a section, not a value; vary one of its keys "
                         "(`accelsim config keys` lists them)", field=field)


def parse_vary(text: str) -> Axis:
    """``"pe_array.rows=8,16,32"`` -> ``("pe_array.rows", [8, 16, 32])``.

    The values are one YAML flow list without its brackets (safe loader): ``true,false``,
    ``ws,os``, ``12.8,25.6``; a list value is written in brackets: ``[bitmap],[bitmap,rle]``.
    """
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key or not raw.strip():
        raise InputError(f"expected KEY=V1,V2,..., got {text!r}", field="--vary")
    check_key(key, "--vary")
    try:
        values = yaml.safe_load(f"[{raw}]")
    except yaml.YAMLError:
        raise InputError(f"cannot parse the values {raw!r} (a comma-separated YAML list, e.g. "
                         "8,16,32 or [bitmap],[bitmap,rle])", field=f"--vary {key}") from None
    return key, values


def load_grid_file(path: str | Path) -> tuple[list[Axis], dict[str, list[Any]]]:
    """Read a grid YAML file: ``vary: {key: [values]}`` and/or ``zip: {key: [values], ...}``.

    Optional ``kind: sweep-grid`` and ``version: 1``; any other top-level key is an error naming
    the file and the key. Returns ``(vary axes in file order, zipped lists)`` for
    :func:`expand_grid`.
    """
    where = str(path)
    data = load_yaml_file(path)
    for name in data:
        if name not in GRID_KEYS:
            close = difflib.get_close_matches(str(name), GRID_KEYS, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise InputError(f"unknown top-level key{hint}; expected vary and/or zip",
                             path=where, field=str(name))
    if "kind" in data and data["kind"] != GRID_KIND:
        raise InputError(f"expected {GRID_KIND!r}, got {data['kind']!r}", path=where,
                         field="kind")
    if "version" in data and data["version"] != 1:
        raise InputError(f"unsupported grid file version {data['version']!r} (this accelsim "
                         "reads version 1)", path=where, field="version")
    if "vary" not in data and "zip" not in data:
        raise InputError("expected vary: and/or zip: with lists of values", path=where)
    sections: dict[str, dict[str, list[Any]]] = {}
    for section in ("vary", "zip"):
        raw = data.get(section, {})
        if not isinstance(raw, dict):
            raise InputError(f"expected a mapping of dotted keys to lists, got {raw!r}",
                             path=where, field=section)
        for key, values in raw.items():
            field = f"{section}.{key}"
            if not isinstance(values, list) or not values:
                raise InputError(f"expected a non-empty list of values, got {values!r}",
                                 path=where, field=field)
            try:
                check_key(str(key), section)
            except InputError as error:
                raise InputError(str(error), path=where) from None
        sections[section] = {str(k): v for k, v in raw.items()}
    return list(sections["vary"].items()), sections["zip"]


def _canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def expand_grid(vary: Sequence[Axis], zipped: Mapping[str, list[Any]] | None = None
                ) -> list[dict[str, Any]]:
    """Grid points: the cartesian product of the ``vary`` axes (first axis slowest), times the
    zipped lists taken together as one more (innermost) axis.

    Every key must be a config leaf (did-you-mean otherwise) and appear once; every axis a
    non-empty list without repeated values; all zipped lists of equal length. No axis at all gives
    one point with no overrides. Values are checked against the config by :func:`plan_sweep`.
    """
    zipped = dict(zipped or {})
    seen: set[str] = set()
    for key, values in [*vary, *zipped.items()]:
        field = "zip" if key in zipped else "--vary"
        check_key(key, field)
        if key in seen:
            raise InputError(f"{key}: varied twice (give each key one axis)", field=field)
        seen.add(key)
        if not isinstance(values, list) or not values:
            raise InputError(f"{key}: expected a non-empty list of values, got {values!r}",
                             field=field)
        texts = [_canonical_json(v) for v in values]
        repeated = sorted({t for t in texts if texts.count(t) > 1})
        if repeated:
            raise InputError(f"{key}: value {repeated[0]} given twice", field=field)
    lengths = {key: len(values) for key, values in zipped.items()}
    if len(set(lengths.values())) > 1:
        listed = ", ".join(f"{key} has {n}" for key, n in lengths.items())
        raise InputError(f"zipped lists must have equal lengths: {listed}", field="zip")
    axes: list[list[dict[str, Any]]] = [[{key: v} for v in values] for key, values in vary]
    if zipped:
        count = next(iter(lengths.values()))
        axes.append([{key: values[i] for key, values in zipped.items()} for i in range(count)])
    points = []
    for combo in itertools.product(*axes):
        point: dict[str, Any] = {}
        for part in combo:
            point.update(copy.deepcopy(part))
        points.append(point)
    return points


def grid_from_options(vary_texts: Sequence[str], grid_files: Sequence[str | Path]
                      ) -> list[dict[str, Any]]:
    """The grid of a command line: ``--vary`` axes (in order), then each grid file's ``vary``
    axes; the ``zip`` lists of all grid files form one zipped axis."""
    vary = [parse_vary(text) for text in vary_texts]
    zipped: dict[str, list[Any]] = {}
    for path in grid_files:
        file_vary, file_zip = load_grid_file(path)
        vary.extend(file_vary)
        for key, values in file_zip.items():
            if key in zipped:
                raise InputError(f"{key}: zipped in two grid files", path=str(path), field="zip")
            zipped[key] = values
    return expand_grid(vary, zipped)


def parse_phases(phases: str | Sequence[str]) -> tuple[str, ...]:
    """``"fw,bd"`` or ``["fw", "bd"]`` -> a non-empty subset of fw, bd, wg in that order."""
    items = phases.split(",") if isinstance(phases, str) else list(phases)
    names = [str(p).strip() for p in items if str(p).strip()]
    bad = [p for p in names if p not in PHASES]
    if bad or not names:
        raise InputError(f"expected a comma-separated subset of {','.join(PHASES)}, got "
                         f"{phases!r}", field="--phases")
    return tuple(p for p in PHASES if p in names)


# ---------------------------------------------------------------------------------------------
# The plan: traces, validated points and their ids
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TraceRef:
    """A trace of the sweep: ``label`` is the path as given (the table's ``trace`` column),
    ``path`` its absolute form (what workers open), ``digest`` identifies its content."""

    label: str
    path: str
    digest: str


def trace_digest(path: str | Path) -> str:
    """Short SHA-256 of a trace's manifest and the JSON of every complete step (which holds a
    checksum of every mask), so no mask is decoded; InputError if it is not a replayable trace."""
    from accelsim.trace import TraceReader
    from accelsim.trace.format import MANIFEST_NAME, step_json_path

    root = Path(path)
    reader = TraceReader(root)
    if not reader.steps:
        raise InputError("the trace has no complete step to replay", path=str(root))
    digest = hashlib.sha256((root / MANIFEST_NAME).read_bytes())
    for step in reader.steps:
        digest.update(step_json_path(root, step).read_bytes())
    return digest.hexdigest()[:16]


def point_id(trace: str, overrides: Mapping[str, Any], base_digest: str,
             phases: Sequence[str]) -> str:
    """Short hash of (trace digest, canonical JSON of the overrides, base config digest,
    phases): the name of the point's file in ``OUT/points/``."""
    text = _canonical_json({"trace": trace, "overrides": dict(overrides), "base": base_digest,
                            "phases": list(phases)})
    return hashlib.sha256(text.encode()).hexdigest()[:POINT_ID_HEX]


def _value_at(data: Mapping[str, Any], key: str) -> Any:
    node: Any = data
    for part in key.split("."):
        node = node[part]
    return node


def point_config(base: HardwareConfig, overrides: Mapping[str, Any],
                 source: str = "grid point") -> HardwareConfig:
    """``base`` with the dotted ``overrides`` applied and validated (as ``with_overrides``, with
    errors labelled by ``source`` instead of ``--set``)."""
    for key in overrides:
        check_key(key, source)
    raw = apply_overrides(base.to_dict(), list(overrides.items()))
    return build_hardware(raw, source=source)


@dataclass(frozen=True)
class PointTask:
    """One unit of work: replay trace ``trace_index`` on grid point ``point``. Picklable."""

    trace_index: int
    point: int
    point_id: str
    trace: TraceRef
    overrides: dict[str, Any]
    varied: dict[str, Any]  # every varied key's value in this point's config
    hw: HardwareConfig
    base_digest: str
    phases: tuple[str, ...]


@dataclass(frozen=True)
class SweepPlan:
    """A validated sweep: base config, phases, canonical grid, the config of every point and
    the traces. Building it touches no output."""

    base: HardwareConfig
    base_path: str
    set_overrides: tuple[str, ...]
    phases: tuple[str, ...]
    varied_keys: tuple[str, ...]
    grid: tuple[dict[str, Any], ...]
    configs: tuple[HardwareConfig, ...]
    traces: tuple[TraceRef, ...]

    @property
    def base_digest(self) -> str:
        return self.base.digest()

    def point_id(self, trace_index: int, point: int) -> str:
        return point_id(self.traces[trace_index].digest, self.grid[point], self.base_digest,
                        self.phases)

    def tasks(self) -> list[PointTask]:
        """Every (trace, point), in trace order then grid order."""
        base_digest = self.base_digest
        return [PointTask(t, p, self.point_id(t, p), trace, self.grid[p],
                          self.varied_values(p), self.configs[p], base_digest, self.phases)
                for t, trace in enumerate(self.traces) for p in range(len(self.grid))]

    def varied_values(self, point: int) -> dict[str, Any]:
        """The varied keys' values of a point as the config holds them (canonical types)."""
        data = self.configs[point].to_dict()
        return {key: _value_at(data, key) for key in self.varied_keys}

    def identity(self) -> dict[str, Any]:
        """The content of ``sweep.json``."""
        return {
            "kind": SWEEP_KIND,
            "version": SWEEP_FORMAT_VERSION,
            "accelsim_version": __version__,
            "base_config": {"path": self.base_path, "set": list(self.set_overrides),
                            "digest": self.base_digest, "name": self.base.name},
            "phases": list(self.phases),
            "varied_keys": list(self.varied_keys),
            "grid": [dict(point) for point in self.grid],
            "traces": [{"path": t.label, "digest": t.digest} for t in self.traces],
        }


def plan_sweep(traces: Sequence[str | Path], base_config_path: str | Path,
               set_overrides: Sequence[str], points: Sequence[Mapping[str, Any]], *,
               phases: str | Sequence[str] = PHASES) -> SweepPlan:
    """Validate everything before anything runs: the base config, every grid point (a bad value
    fails naming the point, key and value), the traces (each replayable, none given twice)."""
    phase_list = parse_phases(phases)
    if not traces:
        raise InputError("give at least one trace", field="TRACE")
    if not points:
        raise InputError("the grid has no point", field="--vary")
    base = load_hardware(base_config_path, list(set_overrides))
    varied: list[str] = []
    grid, configs, seen = [], [], {}
    for index, overrides in enumerate(points):
        if not isinstance(overrides, Mapping):
            raise InputError(f"grid point {index}: expected a mapping of dotted keys, got "
                             f"{overrides!r}", field="--vary")
        hw = point_config(base, overrides, source=f"grid point {index}")
        data = hw.to_dict()
        canonical = {key: _value_at(data, key) for key in overrides}
        text = _canonical_json(canonical)
        if text in seen:
            raise InputError(f"grid points {seen[text]} and {index} are the same hardware "
                             f"({text})", field="--vary")
        seen[text] = index
        varied.extend(key for key in overrides if key not in varied)
        grid.append(canonical)
        configs.append(hw)
    refs = []
    by_digest: dict[str, str] = {}
    for path in traces:
        digest = trace_digest(resolve_trace_dir(path))
        if digest in by_digest:
            raise InputError(f"the same trace as {by_digest[digest]} (given twice?)",
                             path=str(path))
        by_digest[digest] = str(path)
        refs.append(TraceRef(str(path), str(resolve_trace_dir(path).resolve()), digest))
    return SweepPlan(base, str(base_config_path), tuple(set_overrides), phase_list,
                     tuple(varied), tuple(grid), tuple(configs), tuple(refs))


# ---------------------------------------------------------------------------------------------
# One point (runs in a worker process)
# ---------------------------------------------------------------------------------------------


def _plain(value: Any) -> Any:
    """JSON-ready copy: numpy scalars to Python numbers, tuples to lists."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        return value.item()
    return value


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
    gated = [item.name for item in reader.layers if item.gate is not None]
    replays = replay_trace_on(trace.path, [task.hw for task in tasks], phases=tasks[0].phases)
    kept = ("total", "per_phase", "per_branch", "index", "gated_layers_fw")
    records = []
    for task, (rows, storage) in zip(tasks, replays, strict=True):
        jobs = results_frame(rows, task.hw, task.varied)
        summary = replay_summary(jobs, storage, task.hw, Path(trace.path).name,
                                 reader.manifest.producer, gated)
        jobs.insert(0, "point_id", task.point_id)
        jobs.insert(0, "point", task.point)
        records.append((_plain({
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
        }), _parquet_bytes(jobs)))
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


# ---------------------------------------------------------------------------------------------
# Executors
# ---------------------------------------------------------------------------------------------

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


# ---------------------------------------------------------------------------------------------
# The store: OUT/sweep.json and OUT/points/
# ---------------------------------------------------------------------------------------------

_IDENTITY_CHECKS = (
    ("accelsim_version", "accelsim versions"),
    ("phases", "phases"),
    ("varied_keys", "varied keys"),
    ("grid", "grids"),
    ("traces", "traces"),
)


def _difference(name: str, old: Any, new: Any) -> str:
    """What differs between the stored and this run's value of an identity field."""
    if name == "grid":
        if len(old) != len(new):
            return f"stored: {len(old)} points; this run: {len(new)} points"
        index = next(i for i, (a, b) in enumerate(zip(old, new, strict=True)) if a != b)
        return (f"point {index} stored: {_canonical_json(old[index])}; this run: "
                f"{_canonical_json(new[index])}")
    if name == "traces":
        def listed(traces: Any) -> str:
            return ", ".join(f"{t.get('path')} ({t.get('digest')})" for t in traces)
        return f"stored: {listed(old)}; this run: {listed(new)}"
    return f"stored: {_canonical_json(old)}; this run: {_canonical_json(new)}"


def _check_identity(out: Path, stored: Mapping[str, Any], plan: SweepPlan) -> None:
    """Refuse to resume a different sweep, naming what differs."""
    mine = plan.identity()
    where = str(out / SWEEP_FILE)
    if stored.get("kind") != SWEEP_KIND or stored.get("version") != SWEEP_FORMAT_VERSION:
        raise InputError(f"not a version {SWEEP_FORMAT_VERSION} accelsim sweep; choose a new "
                         "--out", path=where)
    old_base, new_base = stored.get("base_config") or {}, mine["base_config"]
    if old_base.get("digest") != new_base["digest"]:
        raise InputError(f"cannot resume: the stored sweep's base config ({old_base.get('path')}"
                         f", digest {old_base.get('digest')}) differs from this one "
                         f"({new_base['path']}, digest {new_base['digest']}): the --hw file or "
                         "--set values changed; use a new --out", path=where)
    for name, label in _IDENTITY_CHECKS:
        old, new = stored.get(name), mine[name]
        if name == "traces":  # the same content, wherever it is now
            same = [t.get("digest") for t in old or []] == [t["digest"] for t in new]
        else:
            same = old == new
        if not same:
            raise InputError(f"cannot resume: the {label} differ ({_difference(name, old, new)})"
                             "; resume needs the same sweep; use a new --out", path=where)


def _stored_points(out: Path, plan: SweepPlan) -> set[str]:
    """Ids of the points already stored; each checked to belong to this sweep."""
    folder = out / POINTS_DIR
    if not folder.is_dir():
        return set()
    expected = {task.point_id: task for task in plan.tasks()}
    found = set()
    for entry in sorted(folder.iterdir()):
        if entry.name.endswith(TMP_SUFFIX):
            entry.unlink(missing_ok=True)  # a write cut short by a kill
            continue
        if entry.suffix != ".json":
            continue
        task = expected.get(entry.stem)
        if task is None:
            raise InputError("not a point of this sweep (a file from another sweep?); remove it "
                             "or use a new --out", path=str(entry))
        try:
            record = json.loads(entry.read_text())
            ok = (record["point_id"] == task.point_id
                  and record["config_digest"] == task.hw.digest()
                  and record["base_digest"] == task.base_digest
                  and isinstance(record["summary"]["total"], dict))
        except (ValueError, KeyError, TypeError, OSError):
            raise InputError("unreadable point file; delete it to compute the point again",
                             path=str(entry)) from None
        if not ok:
            raise InputError("this point was computed with another config; delete it to "
                             "compute it again", path=str(entry))
        if (folder / f"{entry.stem}.parquet").is_file():  # else computed again
            found.add(task.point_id)
    return found


def prepare_out(out: Path, plan: SweepPlan, resume: bool) -> tuple[set[str], list[str]]:
    """Create ``OUT`` with its ``sweep.json``, or (``resume``) check the sweep stored there.

    Returns the ids of the points already done and the trace labels of ``sweep.json`` (a resumed
    sweep keeps the spelling of its first run, so its table does not depend on the cwd)."""
    if out.exists() and not out.is_dir():
        raise InputError("exists and is not a directory", path=str(out))
    entries = list(out.iterdir()) if out.is_dir() else []
    if entries and not resume:
        raise InputError("is not empty: add --resume to finish the sweep stored there, or "
                         "choose a new --out", path=str(out))
    if not entries:
        atomic_write_json(out / SWEEP_FILE, plan.identity())
        (out / POINTS_DIR).mkdir(exist_ok=True)
        return set(), [t.label for t in plan.traces]
    sweep_file = out / SWEEP_FILE
    if not sweep_file.is_file():
        raise InputError(f"has no {SWEEP_FILE}, so it is not a sweep output; choose a new --out",
                         path=str(out))
    try:
        stored = json.loads(sweep_file.read_text())
    except (ValueError, OSError):
        raise InputError("unreadable; choose a new --out", path=str(sweep_file)) from None
    _check_identity(out, stored, plan)
    return _stored_points(out, plan), [t["path"] for t in stored["traces"]]


# ---------------------------------------------------------------------------------------------
# The table
# ---------------------------------------------------------------------------------------------


def _scopes(summary: Mapping[str, Any]) -> list[tuple[str, Mapping[str, Any]]]:
    scopes = [("total", summary["total"])]
    scopes += [(phase, summary["per_phase"][phase]) for phase in PHASES
               if phase in summary["per_phase"]]
    scopes += [(f"branch{b}", summary["per_branch"][b])
               for b in sorted(summary["per_branch"], key=int)]
    return scopes


def table_rows(out: Path, plan: SweepPlan) -> tuple[list[str], list[dict[str, Any]]]:
    """Columns and rows of the tidy table, read from ``OUT/points/`` in trace order, grid order,
    scope order (total, fw, bd, wg, branch1, branch2)."""
    from accelsim.analysis import totals
    from accelsim.engine.simulator import results_frame

    rows: list[dict[str, Any]] = []
    # the order of summary.json
    metrics = list(totals(results_frame([]), clock_mhz=1.0, macs_per_cycle=1))
    for task in plan.tasks():
        record = json.loads((out / POINTS_DIR / f"{task.point_id}.json").read_text())
        summary = record["summary"]
        metrics += sorted(set(summary["total"]) - set(metrics))
        varied = plan.varied_values(task.point)
        index = summary["index"]
        for scope, values in _scopes(summary):
            row: dict[str, Any] = {"trace": task.trace.label, "point": task.point,
                                   "point_id": task.point_id, **varied, "scope": scope}
            row.update(values)
            if scope == "total":
                row.update({"index_bits": index["bits"], "index_bits_bitmap":
                            index["bits_bitmap"], "index_reduction": index["index_reduction"]})
            rows.append(row)
    columns = [*ID_COLUMNS, *plan.varied_keys, "scope", *metrics, *INDEX_METRICS]
    return columns, rows


def _csv_cell(value: Any) -> str:
    """Canonical text of a value: shortest round-trip floats, lower-case booleans, JSON lists."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, (list, dict)):
        return _canonical_json(value)
    return str(value)


def csv_text(columns: Sequence[str], rows: Sequence[Mapping[str, Any]]) -> str:
    """The table as CSV text with canonical cells (deterministic bytes)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow([_csv_cell(row.get(column)) for column in columns])
    return buffer.getvalue()


def table_frame(columns: Sequence[str], rows: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """The table as a DataFrame: bool, int64 (Int64 with gaps), float64 or string columns; list
    values as canonical JSON text."""
    import pandas as pd

    data = {}
    for column in columns:
        values = [row.get(column) for row in rows]
        present = [v for v in values if v is not None]
        gaps = len(present) < len(values)
        if present and all(isinstance(v, bool) for v in present):
            data[column] = pd.array(values, dtype="boolean" if gaps else "bool")
        elif present and all(isinstance(v, int) and not isinstance(v, bool) for v in present):
            data[column] = pd.array(values, dtype="Int64" if gaps else "int64")
        elif present and all(isinstance(v, (int, float)) and not isinstance(v, bool)
                             for v in present):
            data[column] = pd.array([float("nan") if v is None else float(v) for v in values],
                                    dtype="float64")
        else:
            data[column] = pd.array([None if v is None else _csv_cell(v) for v in values],
                                    dtype="string")
    return pd.DataFrame(data, columns=list(columns))


def _parquet_bytes(frame: pd.DataFrame) -> bytes:
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False, engine="pyarrow")
    return buffer.getvalue()


def _require_parquet() -> None:
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        raise InputError("writing results.parquet needs the 'pyarrow' package (pip install "
                         "pyarrow)", field="sweep") from None


# ---------------------------------------------------------------------------------------------
# The sweep
# ---------------------------------------------------------------------------------------------


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


def count_stored(out: str | Path) -> int:
    """Points stored in ``OUT/points/`` (for progress messages)."""
    folder = Path(out) / POINTS_DIR
    return sum(1 for _ in folder.glob("*.json")) if folder.is_dir() else 0


def sweep_jobs(out: str | Path) -> pd.DataFrame:
    """Every stored point's job table (``points/<id>.parquet``) as one table, in trace order
    then grid order: the job rows of ``accelsim simulate`` with ``point``, ``point_id`` and
    ``hw.*`` columns for the varied keys, ready for a per-layer look at any point."""
    import pandas as pd

    out = Path(out)
    try:
        identity = json.loads((out / SWEEP_FILE).read_text())
    except (OSError, ValueError):
        raise InputError("not a sweep output directory (no readable sweep.json)",
                         path=str(out)) from None
    records = []
    for entry in sorted((out / POINTS_DIR).glob("*.json")):
        record = json.loads(entry.read_text())
        records.append((record["trace"], record["point"], entry.with_suffix(".parquet")))
    order = {trace["path"]: i for i, trace in enumerate(identity["traces"])}
    records.sort(key=lambda r: (order.get(r[0], len(order)), r[1]))
    tables = [pd.read_parquet(path) for _, _, path in records if path.is_file()]
    if not tables:
        raise InputError("no stored point has a job table", path=str(out / POINTS_DIR))
    return pd.concat(tables, ignore_index=True)


def write_tables(out: Path, plan: SweepPlan) -> pd.DataFrame:
    """Assemble the stored points into results.csv and results.parquet (atomically)."""
    columns, rows = table_rows(out, plan)
    frame = table_frame(columns, rows)
    atomic_write_text(out / RESULTS_CSV, csv_text(columns, rows))
    atomic_write_bytes(out / RESULTS_PARQUET, _parquet_bytes(frame))
    return frame


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
    _require_parquet()
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
