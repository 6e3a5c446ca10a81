"""The output directory of a sweep: sweep.json, the stored points and the assembled tables."""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from accelsim.errors import InputError
from accelsim.fileio import TMP_SUFFIX, atomic_write_bytes, atomic_write_json, atomic_write_text
from accelsim.inputs import load_json_object
from accelsim.network import PHASES
from accelsim.sweep.constants import (
    ID_COLUMNS,
    INDEX_METRICS,
    POINTS_DIR,
    RESULTS_CSV,
    RESULTS_PARQUET,
    SWEEP_FILE,
    SWEEP_FORMAT_VERSION,
    SWEEP_KIND,
)
from accelsim.sweep.grid import canonical_json
from accelsim.sweep.plan import SweepPlan

if TYPE_CHECKING:
    import pandas as pd


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
        return (f"point {index} stored: {canonical_json(old[index])}; this run: "
                f"{canonical_json(new[index])}")
    if name == "traces":
        def listed(traces: Any) -> str:
            return ", ".join(f"{t.get('path')} ({t.get('digest')})" for t in traces)
        return f"stored: {listed(old)}; this run: {listed(new)}"
    return f"stored: {canonical_json(old)}; this run: {canonical_json(new)}"


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
            record = load_json_object(entry)
            ok = (record["point_id"] == task.point_id
                  and record["config_digest"] == task.hw.digest()
                  and record["base_digest"] == task.base_digest
                  and isinstance(record["summary"]["total"], dict))
        except (InputError, KeyError, TypeError):
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
        stored = load_json_object(sweep_file)
    except InputError as error:
        raise InputError(f"unreadable ({error.message}); choose a new --out",
                         path=str(sweep_file)) from None
    try:
        _check_identity(out, stored, plan)
        labels = [str(t["path"]) for t in stored["traces"]]
    except (AttributeError, KeyError, TypeError):  # the right kind, but not what we wrote
        raise InputError("malformed (not as accelsim sweep writes it); choose a new --out",
                         path=str(sweep_file)) from None
    return _stored_points(out, plan), labels


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
    from accelsim.analysis import WHOLE_STEP_METRICS, totals
    from accelsim.engine.simulator import results_frame

    rows: list[dict[str, Any]] = []
    # the order of summary.json
    metrics = list(totals(results_frame([]), clock_mhz=1.0, macs_per_cycle=1))
    for task in plan.tasks():
        record = load_json_object(out / POINTS_DIR / f"{task.point_id}.json")
        summary = record["summary"]
        metrics += sorted(set(summary["total"]) - set(metrics))
        varied = plan.varied_values(task.point)
        index = summary["index"]
        for scope, values in _scopes(summary):
            row: dict[str, Any] = {"trace": task.trace.label, "point": task.point,
                                   "point_id": task.point_id, **varied, "scope": scope,
                                   "steps": summary.get("steps")}
            row.update(values)
            if not summary.get("non_mac_modelled", True):  # vector_unit.lanes 0: not a step
                row.update({metric: None for metric in WHOLE_STEP_METRICS})
            if scope == "total":
                row.update({"index_bits": index["bits"], "index_bits_bitmap":
                            index["bits_bitmap"], "index_reduction": index["index_reduction"]})
            rows.append(row)
    columns = [*ID_COLUMNS, *plan.varied_keys, "scope", "steps", *metrics, *INDEX_METRICS]
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
        return canonical_json(value)
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


def parquet_bytes(frame: pd.DataFrame) -> bytes:
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False, engine="pyarrow")
    return buffer.getvalue()


def require_parquet() -> None:
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        raise InputError("writing results.parquet needs the 'pyarrow' package (pip install "
                         "pyarrow)", field="sweep") from None


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
        identity = load_json_object(out / SWEEP_FILE)
    except InputError:
        raise InputError("not a sweep output directory (no readable sweep.json)",
                         path=str(out)) from None
    records = []
    for entry in sorted((out / POINTS_DIR).glob("*.json")):
        record = load_json_object(entry)
        try:
            records.append((str(record["trace"]), int(record["point"]),
                            entry.with_suffix(".parquet")))
        except (KeyError, TypeError, ValueError):
            raise InputError("not a point file of accelsim sweep (no trace and point)",
                             path=str(entry)) from None
    try:
        order = {trace["path"]: i for i, trace in enumerate(identity["traces"])}
    except (KeyError, TypeError):
        raise InputError("not a sweep.json of accelsim sweep (no traces)",
                         path=str(out / SWEEP_FILE)) from None
    records.sort(key=lambda r: (order.get(r[0], len(order)), r[1]))
    tables = []
    for _, _, path in records:
        if path.is_file():
            try:
                tables.append(pd.read_parquet(path))
            except (OSError, ValueError) as error:  # pyarrow's ArrowInvalid is a ValueError
                raise InputError(f"unreadable job table ({type(error).__name__})",
                                 path=str(path)) from None
    if not tables:
        raise InputError("no stored point has a job table", path=str(out / POINTS_DIR))
    return pd.concat(tables, ignore_index=True)


def write_tables(out: Path, plan: SweepPlan) -> pd.DataFrame:
    """Assemble the stored points into results.csv and results.parquet (atomically)."""
    columns, rows = table_rows(out, plan)
    frame = table_frame(columns, rows)
    atomic_write_text(out / RESULTS_CSV, csv_text(columns, rows))
    atomic_write_bytes(out / RESULTS_PARQUET, parquet_bytes(frame))
    return frame
