"""The output directories a report reads: ``accelsim simulate`` runs (``results.csv``,
``summary.json``, ``run.json``) and ``accelsim sweep`` sweeps (``sweep.json``, ``results.csv``),
checked as they are read, and the distinct display names and file-name slugs they are shown
under."""


from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from accelsim.errors import InputError
from accelsim.inputs import load_json_object

RUN_FILES = ("results.csv", "summary.json", "run.json")
RUN_COLUMNS = ("trace", "step", "layer", "branch", "phase", "macs_dense", "macs_effective",
               "macs_required", "macs_issued", "cycles_compute", "cycles_decoder_stall", "cycles",
               "cycles_dense", "cycles_compute_dense", "sparsity_supported",
               "utilization", "energy_pj", "energy_dense_pj", "energy_mac_pj", "energy_rf_pj",
               "energy_buffer_pj", "energy_dram_pj", "energy_index_pj", "energy_network_pj",
               "energy_static_pj")
SWEEP_COLUMNS = ("trace", "point", "point_id", "scope")
ACCURACY_KEYS = ("knn_accuracy", "linear_accuracy", "finetune_accuracy")


# ---------------------------------------------------------------------------------------------
# Reading output directories
# ---------------------------------------------------------------------------------------------


@dataclass
class RunOutput:
    """A simulate/replay output directory: its results, summary and run info."""

    path: Path
    name: str
    results: pd.DataFrame
    summary: dict[str, Any]
    run_info: dict[str, Any]
    slug: str = ""

    @property
    def producer(self) -> dict[str, Any] | None:
        """The trace's producer (algorithm and parameters); None for a dense simulation."""
        value = self.summary.get("producer", self.run_info.get("producer"))
        return value if isinstance(value, dict) else None

    @property
    def macs_per_cycle(self) -> int | None:
        """Peak MACs/cycle of the run's hardware (rows x cols x vector_width)."""
        pe = self.run_info.get("hardware", {}).get("pe_array", {})
        try:
            return int(pe["rows"]) * int(pe["cols"]) * int(pe.get("vector_width", 1))
        except (KeyError, TypeError, ValueError):
            return None

    @property
    def steps(self) -> int:
        """Recorded steps in the results."""
        return int(self.results["step"].nunique()) if "step" in self.results else 1


@dataclass
class SweepOutput:
    """A sweep output directory: ``sweep.json`` and the tidy table."""

    path: Path
    name: str
    table: pd.DataFrame
    spec: dict[str, Any]
    varied: list[str] = field(default_factory=list)
    slug: str = ""


def _read_csv(path: Path, required: Sequence[str]) -> pd.DataFrame:
    try:
        table = pd.read_csv(path)
    except (OSError, UnicodeDecodeError, pd.errors.ParserError,
            pd.errors.EmptyDataError) as error:
        raise InputError(f"cannot read CSV: {error}", path=str(path)) from None
    missing = [c for c in required if c not in table.columns]
    if missing:
        raise InputError(f"missing columns {', '.join(missing)} (written by an older accelsim? "
                         f"simulate the trace again)", path=str(path))
    if table.empty:
        raise InputError("no rows", path=str(path))
    return table


def read_output(path: str | Path) -> RunOutput | SweepOutput:
    """Read an accelsim output directory: a sweep (``sweep.json``) or a run (``results.csv``,
    ``summary.json``, ``run.json``). InputError naming the directory otherwise."""
    path = Path(path)
    if not path.is_dir():
        raise InputError("not a directory (expected an accelsim simulate or sweep output "
                         "directory)", path=str(path))
    name = path.resolve().name or str(path)
    if (path / "sweep.json").is_file():
        if not (path / "results.csv").is_file():
            raise InputError("sweep.json but no results.csv: an unfinished sweep? (resume it "
                             "with accelsim sweep --resume)", path=str(path))
        spec = load_json_object(path / "sweep.json")
        table = _read_csv(path / "results.csv", SWEEP_COLUMNS)
        listed = spec.get("varied_keys")
        columns = list(table.columns)
        between = columns[columns.index("point_id") + 1:columns.index("scope")]
        varied = [k for k in listed if k in table.columns] if isinstance(listed, list) \
            else between
        return SweepOutput(path, name, table, spec, varied)
    missing = [f for f in RUN_FILES if not (path / f).is_file()]
    if missing:
        raise InputError(f"not an accelsim output directory: no {', '.join(missing)} (expected "
                         f"results.csv, summary.json and run.json of accelsim simulate, or "
                         f"sweep.json and results.csv of accelsim sweep)", path=str(path))
    summary = load_json_object(path / "summary.json")
    run_info = load_json_object(path / "run.json")
    if "total" not in summary:
        raise InputError("summary.json has no 'total' block", path=str(path))
    results = _read_csv(path / "results.csv", RUN_COLUMNS)
    return RunOutput(path, name, results, summary, run_info)



def slugify(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_.") or "run"


def unique_names(outputs: Sequence[RunOutput | SweepOutput]) -> None:
    """Give every output a distinct display name and file-name slug: runs of the same trace on
    different hardware are named after the hardware, other clashes are numbered."""
    names = [o.name for o in outputs]
    for output in outputs:
        if isinstance(output, RunOutput) and names.count(output.name) > 1:
            hardware = output.summary.get("hardware")
            if hardware:
                output.name = f"{output.name} @ {hardware}"
    seen: dict[str, int] = {}
    for output in outputs:
        base = output.name
        count = seen.get(base, 0)
        seen[base] = count + 1
        if count:
            output.name = f"{base} ({count + 1})"
    used: set[str] = set()
    for output in outputs:
        slug = slugify(output.name)
        candidate, n = slug, 2
        while candidate in used:
            candidate, n = f"{slug}_{n}", n + 1
        used.add(candidate)
        output.slug = candidate
