"""Library entry points the CLI (and users' scripts) call: simulate and write tidy results."""

from __future__ import annotations

import io
import json
import subprocess
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from accelsim import __version__
from accelsim.config import HardwareConfig
from accelsim.engine.simulator import JobResult, simulate_network_dense, summarize
from accelsim.fileio import atomic_write_json, atomic_write_text
from accelsim.network import PHASES, Network


def results_frame(rows: Sequence[JobResult]) -> pd.DataFrame:
    """Tidy table: one row per job, snake_case columns with units in their names."""
    return pd.DataFrame([r.row() for r in rows])


def git_revision() -> str | None:
    """The accelsim source checkout's git revision, if it is one."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent,
                             capture_output=True, text=True, timeout=5, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def write_results(rows: Sequence[JobResult], summary: dict, out_dir: Path,
                  run_info: dict) -> None:
    """Write results.csv, summary.json and run.json atomically into ``out_dir``."""
    buffer = io.StringIO()
    results_frame(rows).to_csv(buffer, index=False)
    atomic_write_text(out_dir / "results.csv", buffer.getvalue())
    atomic_write_json(out_dir / "summary.json", summary)
    atomic_write_json(out_dir / "run.json", run_info)


def simulate_dense_to_dir(network: Network, hw: HardwareConfig, out_dir: Path, *,
                          phases: Sequence[str] = PHASES,
                          branches: Sequence[int] = (1, 2)) -> dict:
    """Simulate a dense training step of ``network`` and write the results; return the summary."""
    rows = simulate_network_dense(network, hw, phases=phases, branches=branches)
    summary = summarize(rows, hw)
    summary["workload"] = network.name
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
    write_results(rows, summary, Path(out_dir), run_info)
    return summary


def replay_summary(rows: Sequence[JobResult], storage: dict[str, int], hw: HardwareConfig,
                   trace_name: str, producer: dict, gated_layers: Sequence[str]) -> dict:
    """summarize() plus index storage and the FLOPs view over the gated layers' forward pass."""
    summary = summarize(rows, hw)
    summary["workload"] = trace_name
    summary["producer"] = producer
    bits, bitmap = storage["bits"], storage["bits_bitmap"]
    summary["index"] = {
        "bits": bits,
        "bits_bitmap": bitmap,
        "index_reduction": bitmap / bits if bits else 1.0,
    }
    gated = [r for r in rows if r.layer in set(gated_layers) and r.phase == "fw"]
    if gated:
        summary["gated_layers_fw"] = summarize(gated, hw)["total"]
    return summary


def trace_name(path: Path) -> str:
    """A readable name for a trace: its run directory's name for `accelsim record` runs."""
    return path.parent.name if path.name == "trace" else path.name


def replay_to_dir(trace_path: Path, hw: HardwareConfig, out_dir: Path, *,
                  phases: Sequence[str] = PHASES, workers: int = 1) -> dict:
    """Replay a trace and write results.csv, summary.json and run.json; return the summary."""
    from accelsim.engine.replay import replay_trace
    from accelsim.trace import TraceReader

    reader = TraceReader(trace_path)
    rows, storage = replay_trace(trace_path, hw, phases=phases, workers=workers)
    gated = [item.name for item in reader.layers if item.gate is not None]
    summary = replay_summary(rows, storage, hw, trace_name(Path(trace_path)),
                             reader.manifest.producer, gated)
    evaluation = Path(trace_path).parent / "eval.json"
    if evaluation.is_file():  # a trace recorded by `accelsim record` sits in its run directory
        summary["accuracy"] = json.loads(evaluation.read_text())
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
    write_results(rows, summary, Path(out_dir), run_info)
    return summary
