"""Library entry points the CLI (and users' scripts) call: simulate and write tidy results."""

from __future__ import annotations

import io
import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path

import pandas as pd

from accelsim import __version__, analysis
from accelsim.config import HardwareConfig
from accelsim.engine.simulator import (
    ROW_FIELDS,
    results_frame,
    simulate_network_dense,
)
from accelsim.engine.vector import DEFAULT_OPTIMIZER, recorded_optimizer
from accelsim.errors import InputError
from accelsim.fileio import atomic_write_json, atomic_write_text
from accelsim.inputs import load_json_file, load_json_object
from accelsim.network import PHASES, Network
from accelsim.report import build_report
from accelsim.report_inputs import RUN_FILES, slugify
from accelsim.trace import resolve_trace_dir
from accelsim.trace.format import MANIFEST_NAME


def git_revision() -> str | None:
    """The accelsim source checkout's git revision, if it is one."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent,
                             capture_output=True, text=True, timeout=5, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def write_results(jobs: pd.DataFrame, summary: dict, out_dir: Path, run_info: dict) -> None:
    """Write results.csv (the job table, :func:`accelsim.engine.simulator.results_frame`),
    summary.json and run.json atomically into ``out_dir``."""
    buffer = io.StringIO()
    jobs.to_csv(buffer, index=False)
    atomic_write_text(out_dir / "results.csv", buffer.getvalue())
    atomic_write_json(out_dir / "summary.json", summary)
    atomic_write_json(out_dir / "run.json", run_info)


def simulate_dense_to_dir(network: Network, hw: HardwareConfig, out_dir: Path, *,
                          phases: Sequence[str] = PHASES,
                          branches: Sequence[int] = (1, 2)) -> dict:
    """Simulate a dense training step of ``network`` and write the results; return the summary."""
    jobs = results_frame(simulate_network_dense(network, hw, phases=phases, branches=branches),
                         hw)
    summary = analysis.summary(jobs, hw)
    summary["workload"] = network.name
    summary["optimizer"] = DEFAULT_OPTIMIZER
    run_info = {
        "accelsim_version": __version__,
        "git_revision": git_revision(),
        "hardware": hw.to_dict(),
        "hardware_digest": hw.digest(),
        "workload": {"network": network.name, "layers": len(network.layers),
                     "batch": network.layers[0].batch},
        "phases": list(phases),
        "branches": list(branches),
    }
    write_results(jobs, summary, Path(out_dir), run_info)
    return summary


def unexploited_sparsity(trace_path: Path, hw: HardwareConfig,
                         phases: Sequence[str] = PHASES) -> list[str]:
    """Warnings, one line each naming the key, for sparsity the trace records and ``hw``
    exploits in none of the replayed ``phases`` (that part of the replay gains nothing by
    construction)."""
    from accelsim.trace import TraceReader

    layers = TraceReader(trace_path).layers
    support = hw.sparsity_support
    warnings = []
    for kind, supported in (("gate", support.gate), ("weight", support.weight)):
        recorded = sum(getattr(item, kind) is not None for item in layers)
        if not recorded or set(supported) & set(phases):
            continue
        why = ("is empty" if not supported else
               f"({','.join(supported)}) exploits none of the phases replayed ({','.join(phases)})")
        warnings.append(f"{hw.name}: sparsity_support.{kind} {why}: the {kind} masks of "
                        f"{recorded} layers in {trace_path} gain nothing on this hardware")
    return warnings


def trace_name(path: Path) -> str:
    """A readable name for a trace: its run directory's name for `accelsim record` runs."""
    return path.parent.name if path.name == "trace" else path.name


def replay_to_dir(trace_path: Path, hw: HardwareConfig, out_dir: Path, *,
                  phases: Sequence[str] = PHASES, workers: int = 1) -> dict:
    """Replay a trace and write results.csv, summary.json and run.json; return the summary."""
    from accelsim.engine.replay import replay_trace
    from accelsim.trace import TraceReader

    reader = TraceReader(trace_path)
    evaluation = Path(trace_path).parent / "eval.json"
    # a trace recorded by `accelsim record` sits in its run directory, beside its evaluation
    accuracy = load_json_file(evaluation) if evaluation.is_file() else None
    rows, storage = replay_trace(trace_path, hw, phases=phases, workers=workers)
    gated = [item.name for item in reader.layers if item.gated]
    jobs = results_frame(rows, hw)
    summary = analysis.replay_summary(jobs, storage, hw, trace_name(Path(trace_path)),
                                      reader.manifest.producer, gated)
    summary["optimizer"] = recorded_optimizer(reader.manifest.producer)
    if accuracy is not None:
        summary["accuracy"] = accuracy
    run_info = {
        "accelsim_version": __version__,
        "git_revision": git_revision(),
        "hardware": hw.to_dict(),
        "hardware_digest": hw.digest(),
        "trace": str(trace_path),
        "trace_steps": reader.steps,
        "producer": reader.manifest.producer,
        "phases": list(phases),
    }
    write_results(jobs, summary, Path(out_dir), run_info)
    return summary


def _run_is_current(folder: Path, trace: Path, hw: HardwareConfig) -> bool:
    if not all((folder / f).is_file() for f in RUN_FILES):
        return False
    try:
        info = load_json_object(folder / "run.json")
    except InputError:
        return False
    if not (isinstance(info, dict) and info.get("hardware_digest") == hw.digest()
            and Path(str(info.get("trace", ""))).resolve() == trace.resolve()):
        return False
    return _has_current_columns(folder / "results.csv")


def _has_current_columns(results: Path) -> bool:
    """Whether a results.csv has every column this accelsim writes (an older one is replayed
    again rather than reported with columns missing)."""
    try:
        with results.open(encoding="utf-8") as file:
            header = file.readline().rstrip("\r\n").split(",")
    except (OSError, UnicodeDecodeError):
        return False
    return set(ROW_FIELDS) <= set(header)


def compare(traces: Sequence[str | Path], hw: HardwareConfig, out: str | Path,
            workers: int = 1, *, on_run: Callable[[str, bool], None] | None = None) -> Path:
    """Replay each trace on ``hw`` into ``OUT/runs/<name>/`` and build the report in ``OUT``.

    A run already there for the same trace and hardware digest is reused. ``workers``: processes
    per replay. ``on_run(name, reused)`` is called after each trace. Returns ``OUT/report.md``.
    """
    if not traces:
        raise InputError("give at least one trace directory", field="compare")
    out = Path(out)
    paths = [resolve_trace_dir(t) for t in traces]
    for path in paths:
        if not (path / MANIFEST_NAME).is_file():
            raise InputError("not a trace directory (no manifest.json)", path=str(path))
    from accelsim.engine.dgc import refuse_dgc
    from accelsim.trace import TraceReader

    for path in paths:  # every trace replayable on hw before the first replay starts
        refuse_dgc(TraceReader(path).layers, hw, PHASES, str(path))
    names: list[str] = []
    for path in paths:
        base = slugify(trace_name(path.resolve()))
        name, n = base, 2
        while name in names:
            name, n = f"{base}_{n}", n + 1
        names.append(name)
    run_dirs = []
    for path, name in zip(paths, names, strict=True):
        folder = out / "runs" / name
        reused = _run_is_current(folder, path, hw)
        if not reused:
            replay_to_dir(path, hw, folder, workers=workers)
        if on_run is not None:
            on_run(name, reused)
        run_dirs.append(folder)
    return build_report(run_dirs, out)
