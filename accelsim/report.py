"""Reports: figures, tables and a Markdown + self-contained HTML page from accelsim output dirs.

:func:`build_report` reads output directories of ``accelsim simulate`` (``results.csv``,
``summary.json``, ``run.json``) and of ``accelsim sweep`` (``sweep.json``, ``results.csv``),
draws every applicable plot of :mod:`accelsim.plots` as PNG and SVG, tabulates the sparsity
schemes side by side and writes::

    OUT/report.md             figures embedded by relative path, tables, "why the gap"
    OUT/report.html           the same page, PNGs inlined as base64, no external resources
    OUT/schemes.csv, .md      structured vs unstructured: one row per replayed trace
    OUT/gap.csv               lost cycles by cause per scheme and phase (docs/reports.md)
    OUT/figures/*.png, *.svg

:func:`accelsim.api.compare` replays traces on one hardware config and builds this report over
them. Every file is written atomically; figures and pages have fixed metadata, so the same
inputs give the same bytes (on the same matplotlib version). The layout is described in
``docs/reports.md``.

Example::

    from accelsim.report import build_report
    build_report([Path("out/cdg"), Path("out/scdg")], Path("out/report"))
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from accelsim import report_text
from accelsim.errors import InputError
from accelsim.fileio import atomic_write_text
from accelsim.inputs import load_json_object
from accelsim.report_page import Page, markdown_table, save_figure, use_agg
from accelsim.units import ENERGY_UNITS, scale_unit

if TYPE_CHECKING:
    from matplotlib.figure import Figure


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


def modelling_choices(run: RunOutput) -> str:
    """One sentence naming the knobs a run's sparse result depends on (docs/sparse-model.md):
    queue depth, compaction, skip granularity, WG's lane mapping and the gate's gradient."""
    hardware = run.run_info.get("hardware")
    if not isinstance(hardware, dict):
        return ""
    pe, decoder = hardware.get("pe_array", {}), hardware.get("decoder", {})
    parts = [f"`sync_tiles` {pe.get('sync_tiles', '?')}",
             f"compaction {'on' if decoder.get('compaction') else 'off'}",
             f"skip granularity {decoder.get('skip_granularity', '?')}",
             "FW lanes " + ("an adder tree over k" if pe.get("fw_lanes") == "reduction"
                            else "over output channels"),
             "BD lanes " + ("an adder tree over f" if pe.get("bd_lanes") == "reduction"
                            else "over input-gradient columns"),
             f"WG lanes over {str(pe.get('wg_lanes', 'output_channels')).replace('_', ' ')}"]
    gated = "gate" in describe_scheme(run.producer)["masks"]
    gradient = _first(_flatten(run.producer or {}), "gate_gradient")
    if gated:  # recorded traces before the recorder knew other estimators: straight-through
        parts.append(f"gate gradient {gradient or 'straight_through'}")
    vector = hardware.get("vector_unit", {})
    if vector.get("lanes"):
        parts.append(f"for the whole step the vector unit ({vector['lanes']} lanes, "
                     f"{'fused' if vector.get('fused') else 'unfused'} BN) and the "
                     f"{run.summary.get('optimizer', 'sgd')} step on "
                     f"{vector.get('master_precision', '?')} master weights and "
                     f"{vector.get('state_precision', '?')} state, "
                     + ("updating only kept weights" if vector.get("sparse_updates")
                        else "updating every weight"))
    return "The result depends on: " + ", ".join(parts) + "."


def whole_step_sentence(run: RunOutput) -> str:
    """The whole step's figures (MACs and the vector unit's non-MAC work), or why they are
    missing: a sentence ending in a space."""
    total = run.summary["total"]
    if not run.summary.get("non_mac_modelled"):
        return ("Non-MAC work (BN, ReLU, optimizer) is not modelled on this hardware "
                "(`vector_unit.lanes` 0, or results from before it was): the figures are the "
                "MACs' alone. ")
    steps = max(1, int(run.summary.get("steps", 1)))
    return (f"With its non-MAC work the whole step speeds up {total['speedup_step']:.2f}x "
            f"(energy {report_text.less_or_more(total['energy_reduction_step'])} than dense); "
            f"non-MAC work is "
            f"{total['non_mac_share']:.0%} of the step's time and the stash "
            f"{total['stash_bytes'] / steps / 2**20:.1f} MiB per step. ")


def slugify(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_.") or "run"


def _unique_names(outputs: Sequence[RunOutput | SweepOutput]) -> None:
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


# ---------------------------------------------------------------------------------------------
# Schemes
# ---------------------------------------------------------------------------------------------


def _flatten(data: Any, into: dict[str, Any] | None = None) -> dict[str, Any]:
    """Leaf values of nested dicts by their own key (the first occurrence wins, outer first)."""
    into = {} if into is None else into
    if isinstance(data, dict):
        nested = []
        for key, value in data.items():
            if isinstance(value, dict):
                nested.append(value)
            else:
                into.setdefault(str(key), value)
        for value in nested:
            _flatten(value, into)
    return into


def _first(params: dict[str, Any], *keys: str) -> Any:
    return next((params[k] for k in keys if params.get(k) is not None), None)


def _percent(value: Any) -> str:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return str(value)
    return f"{100 * number:.0f} %" if number <= 1 else f"{number:g} %"


def _weight_name(pattern: str | None, sparsity: Any) -> tuple[str, str]:
    pattern = str(pattern) if pattern else "element"
    nm = re.fullmatch(r"(nmt?):(\d+):(\d+)", pattern)
    if nm:
        transposable = " transposable" if nm[1] == "nmt" else ""
        return f"{nm[2]}:{nm[3]}{transposable}", "structured"
    block = re.fullmatch(r"block:(\d+)x(\d+)", pattern)
    suffix = f" {_percent(sparsity)}" if sparsity is not None else ""
    if block:
        return f"block {block[1]}x{block[2]}{suffix}", "structured"
    return f"{pattern}{suffix}", "unstructured" if pattern == "element" else ""


def describe_scheme(producer: dict[str, Any] | None) -> dict[str, str]:
    """Scheme name, masks (gates/weights) and structure from a trace's producer dict.

    Synthetic traces: CDG (gate groups of 1 channel), SCDG sx1x1, SyncCP element/N:M/block with
    the weight sparsity. Recorded traces: the ``algorithm`` with its gate group size or weight
    pattern and sparsity where the producer names them. Structure: gate groups of more than one
    channel, N:M and blocks are structured; single-channel gates and element-wise weights are not.
    """
    if not producer:
        return {"scheme": "dense", "masks": "none", "structure": "dense"}
    params = _flatten(producer.get("config", {}))
    _flatten(producer, params)
    algorithm = str(producer.get("algorithm", "")).strip()
    group = _first(params, "gate_group_size", "group_size")
    pattern = _first(params, "weight_pattern", "pattern")
    sparsity = _first(params, "weight_sparsity", "target_sparsity", "prune_sparsity")
    if sparsity is None and algorithm.lower() == "synccp":
        sparsity = params.get("sparsity")
    gates = params.get("gate_sparsity") is not None
    weights = sparsity is not None or (pattern is not None
                                       and str(pattern).startswith(("nm:", "nmt:")))
    if algorithm.lower() != "synthetic":
        lowered = algorithm.lower()
        gates = gates or lowered in ("cdg", "scdg", "cgnet", "fbs")
        weights = weights or lowered == "synccp"
    parts: list[str] = []
    structures: list[str] = []
    if gates:
        size = int(group) if isinstance(group, (int, float)) and group else 1
        if algorithm.lower() == "fbs":  # one mask bit per (sample, channel): structured
            parts.append("FBS")
            size = 2
        elif algorithm.lower() == "cgnet":
            parts.append("CGNet")
        elif size > 1 or algorithm.lower() == "scdg":
            parts.append(f"SCDG {size}x1x1" if size > 1 else "SCDG")
        else:
            parts.append("CDG")
        structures.append("structured" if size > 1 else "unstructured")
    if weights:
        text, structure = _weight_name(pattern, sparsity)
        parts.append(f"SyncCP {text}")
        structures.append(structure)
    if not parts:  # a trace without masks: recorded dense, or synthetic without sparsity
        parts.append("dense" if algorithm.lower() in ("dense", "synthetic")
                     else algorithm or "unknown")
    known = [s for s in structures if s]
    structure = known[0] if len(set(known)) == 1 else "mixed" if known else ""
    masks = " + ".join(m for m, on in (("gates", gates), ("weights", weights)) if on) or "none"
    return {"scheme": " + ".join(parts), "masks": masks, "structure": structure}


def _find_key(data: Any, key: str) -> Any:
    if isinstance(data, dict):
        if data.get(key) is not None:
            return data[key]
        for value in data.values():
            found = _find_key(value, key)
            if found is not None:
                return found
    return None


MASK_ORDER = {"none": 0, "gates": 1, "weights": 2}
STRUCTURE_ORDER = {"dense": 0, "unstructured": 1, "structured": 2}


def scheme_table(runs: Sequence[RunOutput]) -> pd.DataFrame:
    """One row per replayed trace: scheme, masks, structure, hardware and the summary metrics.

    Columns: scheme (the label, told apart by run name where one hardware has it twice), run,
    label, masks, structure, hardware (with the digest where one name has several configs),
    hardware_digest, settings (what the scheme was trained with), workload, flops_reduction,
    speedup, speedup_efficiency, energy_reduction, index_reduction, index_bits_per_step,
    tflops_per_watt, decoder stall cycles, the whole step's figures, ``seconds_per_step`` and
    ``energy_per_step_pj`` (whole step where non-MAC work is modelled, else the MACs'), and
    ``knn_accuracy`` / ``linear_accuracy`` / ``finetune_accuracy`` with their change vs the
    dense run of the same workload (``knn_delta`` / ``linear_delta`` / ``finetune_delta``,
    percentage points) when runs carry them. Rows
    are ordered by hardware (first seen), then dense, gates, weights; unstructured before
    structured.
    """
    rows = []
    for run in runs:
        total = run.summary["total"]
        row: dict[str, Any] = {"run": run.name, "folder": run.path.name,
                               **describe_scheme(run.producer),
                               "hardware": run.summary.get("hardware", ""),
                               "hardware_digest": run.summary.get("hardware_digest", ""),
                               "settings": report_text.scheme_settings(run.producer),
                               "workload": repr(report_text.workload_key(run.producer))}
        for key in ("flops_reduction", "speedup", "speedup_efficiency", "energy_reduction",
                    "tflops_per_watt", "cycles_decoder_stall", "speedup_step",
                    "non_mac_share", "energy_reduction_step"):
            row[key] = total.get(key)
        step = total.get("cycles_step") or 0
        row["extra_non_mac_share"] = ((total.get("cycles_non_mac", 0)
                                       - total.get("cycles_non_mac_dense", 0)) / step
                                      if step else 0.0)
        steps = max(1, int(run.summary.get("steps", run.steps) or 1))
        modelled = bool(run.summary.get("non_mac_modelled"))
        row["seconds_per_step"] = float(total.get("seconds_step" if modelled else "seconds",
                                                  0.0)) / steps
        row["energy_per_step_pj"] = float(total.get("energy_step_pj" if modelled
                                                    else "energy_pj", 0.0)) / steps
        if not modelled:  # MAC-only: no whole-step figures
            for key in ("speedup_step", "non_mac_share", "energy_reduction_step",
                        "extra_non_mac_share"):
                row[key] = float("nan")
        index = run.summary.get("index", {})
        row["index_reduction"] = index.get("index_reduction", 1.0)
        row["index_bits_per_step"] = float(index.get("bits", 0)) / steps
        accuracy = run.summary.get("accuracy") if isinstance(run.summary.get("accuracy"),
                                                             dict) else {}
        for key in ACCURACY_KEYS:
            value = _find_key(accuracy, key)
            if value is None:
                value = run.summary.get(key, _find_key(run.producer, key))
            if isinstance(value, (int, float)):
                row[key] = float(value)
        row["seed"] = _find_key(run.producer, "seed")
        row["train_steps"] = accuracy.get("steps", _find_key(run.producer, "steps"))
        row["eval_test_samples"] = accuracy.get("eval_test_samples")
        rows.append(row)
    accuracy_columns = [k for k in ACCURACY_KEYS if any(k in r for r in rows)]
    columns = ["run", "folder", "label", "masks", "structure", "hardware",
               "hardware_digest", "settings", "workload", "flops_reduction", "speedup",
               "speedup_efficiency",
               "energy_reduction", "index_reduction", "index_bits_per_step", "tflops_per_watt",
               "cycles_decoder_stall",
               "speedup_step", "non_mac_share", "energy_reduction_step", "extra_non_mac_share",
               "seconds_per_step", "energy_per_step_pj", *accuracy_columns, "seed",
               "train_steps", "eval_test_samples"]
    for row in rows:
        row["label"] = row.pop("scheme")
    table = pd.DataFrame(rows, columns=columns)
    # One name, several configs (a --set without a new name): tell them apart by digest.
    named = table.groupby("hardware")["hardware_digest"].transform("nunique")
    table.loc[named > 1, "hardware"] = [f"{h} [{d[:8]}]" for h, d in zip(
        table.loc[named > 1, "hardware"], table.loc[named > 1, "hardware_digest"], strict=True)]
    hardware_rank = {h: i for i, h in enumerate(dict.fromkeys(table["hardware"]))}
    table = table.assign(
        _h=table["hardware"].map(hardware_rank),
        _m=table["masks"].map(MASK_ORDER).fillna(len(MASK_ORDER)),
        _s=table["structure"].map(STRUCTURE_ORDER).fillna(len(STRUCTURE_ORDER)),
    ).sort_values(["_h", "_m", "_s", "label"], kind="stable")  # ties: input order
    table = table.drop(columns=["_h", "_m", "_s"]).reset_index(drop=True)
    # A label one hardware has twice is told apart by the run's folder, else its run name.
    scheme = table["label"].copy()
    twice = table.duplicated(["label", "hardware"], keep=False)
    alike = table.duplicated(["label", "hardware", "folder"], keep=False)
    scheme[twice] = [f"{s} ({f if not a else r})" for s, f, r, a in zip(
        table.loc[twice, "label"], table.loc[twice, "folder"], table.loc[twice, "run"],
        alike[twice], strict=True)]
    table.insert(0, "scheme", scheme)
    for key in accuracy_columns:
        table[key.replace("_accuracy", "_delta")] = report_text.accuracy_delta(table, key)
    return table


def gap_table(runs: Sequence[RunOutput], schemes: pd.DataFrame) -> pd.DataFrame:
    """Lost cycles by cause (:func:`accelsim.analysis.gap_decomposition`) per scheme and
    phase; ``schemes`` is :func:`scheme_table` of the same runs (matched by run name)."""
    from accelsim.analysis import gap_decomposition

    frames = []
    by_name = {run.name: run for run in runs}
    for _, row in schemes.iterrows():  # in the scheme table's order
        run = by_name[row["run"]]
        table = gap_decomposition(run.results, ("phase",), macs_per_cycle=run.macs_per_cycle)
        for column in ("run", "hardware", "label", "scheme"):
            table.insert(0, column, row[column])
        frames.append(table)
    return pd.concat(frames, ignore_index=True)


# ---------------------------------------------------------------------------------------------
# Tables as shown
# ---------------------------------------------------------------------------------------------


def _formatted(value: Any, spec: str) -> str:
    """``value`` formatted with ``spec``, blank where it is missing or not a number."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return ""
    return "" if math.isnan(number) else format(number, spec)


def _times(value: Any) -> str:
    text = _formatted(value, ".2f")
    return f"{text}x" if text else ""


def _share(value: Any) -> str:
    return _formatted(value, ".0%")


def _points(value: Any) -> str:
    text = _formatted(value, "+.1f")
    return f"{text} pp" if text else ""


def display_schemes(table: pd.DataFrame) -> pd.DataFrame:
    """Scheme rows formatted for reading: ratios as 1.23x, time in ms, energy in the unit that
    reads best, accuracy as the change vs dense."""
    energy_unit, energy_size = scale_unit(table["energy_per_step_pj"], ENERGY_UNITS)
    step = not table["speedup_step"].isna().all()
    shown = pd.DataFrame({
        "scheme": table["scheme"],
        "structure": table["structure"],
        "MACs kept": table["flops_reduction"].map(lambda v: _share(1 / float(v))
                                                  if float(v) else ""),
        "FLOPs reduction": table["flops_reduction"].map(_times),
        "speedup (MACs)": table["speedup"].map(_times),
        "speedup / FLOPs reduction": table["speedup_efficiency"].map(_share),
    })
    if step:
        shown["whole-step speedup"] = table["speedup_step"].map(_times)
        shown["energy reduction (whole step)"] = table["energy_reduction_step"].map(_times)
    else:
        shown["energy reduction (MACs)"] = table["energy_reduction"].map(_times)
    shown["step time (ms)"] = (table["seconds_per_step"] * 1e3).map(lambda v: f"{v:.2f}")
    shown[f"step energy ({energy_unit})"] = (table["energy_per_step_pj"] / energy_size).map(
        lambda v: f"{v:.3g}")
    shown["index storage / step (vs element bitmaps)"] = [
        f"{report_text.bits_text(b)} ({_times(r)})" if b else ""
        for b, r in zip(table["index_bits_per_step"], table["index_reduction"], strict=True)]
    for key, name in (("knn", "k-NN"), ("linear", "linear"), ("finetune", "fine-tuned")):
        if f"{key}_accuracy" in table.columns:
            shown[f"{name} accuracy, % (vs dense, pp)"] = [
                _formatted(100 * float(value), ".1f")
                + (f" ({_formatted(delta, '+.1f')})" if masks != "none" and _points(delta)
                   else "")
                for value, delta, masks in zip(table[f"{key}_accuracy"],
                                               table[f"{key}_delta"], table["masks"],
                                               strict=True)]
    return shown


def _display_gap(gaps: pd.DataFrame) -> pd.DataFrame:
    def cycles(value: Any) -> str:
        return _formatted(float(value) / 1e6, ",.3f")

    shown = pd.DataFrame({"scheme": gaps["scheme"], "phase": gaps["phase"].map(
        lambda p: str(p).upper() if p != "all" else "all")})
    for column, label in (("cycles", "cycles"), ("ideal_cycles", "ideal"),
                          ("lost_cycles", "lost"), ("estimator_cycles", "gate gradient"),
                          ("unexploited_cycles", "not exploited"),
                          ("lockstep_cycles", "lock-step lanes"),
                          ("imbalance_cycles", "imbalance"),
                          ("decoder_cycles", "decoder"), ("memory_cycles", "memory"),
                          ("placement_cycles", "placement")):
        shown[f"{label} (M cycles)"] = gaps[column].map(cycles)
    return shown


# ---------------------------------------------------------------------------------------------
# The report
# ---------------------------------------------------------------------------------------------


class _Figures:
    """Draws figures into OUT/figures and adds them to the page."""

    def __init__(self, out: Path, page: Page) -> None:
        self.out = out
        self.folder = out / "figures"
        self.page = page

    def add(self, stem: str, caption: str, draw: Callable[[], Figure]) -> None:
        fig = draw()
        png, _ = save_figure(fig, self.folder, stem)
        self.page.figure(png.relative_to(self.out).as_posix(), caption)


def _matching_dense(run: RunOutput, dense_runs: Sequence[RunOutput]) -> pd.DataFrame | None:
    """A dense run's jobs on the same hardware, its first step repeated for each of ``run``'s
    recorded steps (dense jobs are the same at every step), or None."""
    keys = ["layer", "branch", "phase", "macs_dense"]
    digest = run.summary.get("hardware_digest")

    def first_step(results: pd.DataFrame) -> pd.DataFrame:
        return results[results["step"] == results["step"].min()]

    wanted = sorted(map(tuple, first_step(run.results)[keys].astype(str).to_numpy().tolist()))
    for dense in dense_runs:
        if dense.summary.get("hardware_digest") != digest:
            continue
        rows = first_step(dense.results)
        have = sorted(map(tuple, rows[keys].astype(str).to_numpy().tolist()))
        if have == wanted:
            return pd.concat([rows] * run.steps, ignore_index=True)
    return None


def _run_section(page: Page, figures: _Figures, run: RunOutput, row: pd.Series | None,
                 dense_runs: Sequence[RunOutput]) -> None:
    from accelsim import plots

    total = run.summary["total"]
    hardware = run.summary.get("hardware", "?")
    scheme = str(row["scheme"]) if row is not None else run.name
    sparse = row is not None and row["masks"] != "none"
    summary = (f"{scheme} on {hardware}: speedup {total['speedup']:.2f}x, FLOPs reduction "
               f"{total['flops_reduction']:.2f}x" if sparse else f"{scheme} on {hardware}")
    with page.section(summary):
        settings = f" Trained with {row['settings']}." if row is not None else ""
        page.paragraph(
            f"`{run.path}`: {int(total.get('jobs', 0))} jobs over {run.steps} recorded "
            f"step(s).{settings} " + report_text.run_sentence(total, run.steps)
            + whole_step_sentence(run) + modelling_choices(run))
        results = run.results.assign(label=f"{scheme} on {hardware}")
        if sparse:
            figures.add(f"{run.slug}_per_layer_speedup", f"{scheme} on {hardware}: per-layer "
                        f"speedup (bars) vs FLOPs reduction (ticks), per phase",
                        lambda: plots.per_layer_speedup(results))
            figures.add(f"{run.slug}_flops_vs_hardware", f"{scheme} on {hardware}: FLOPs "
                        f"reduction vs speedup per phase and branch",
                        lambda: plots.flops_vs_hardware(results))
            figures.add(f"{run.slug}_gap_by_cause", f"{scheme} on {hardware}: cycles lost vs "
                        f"the ideal, by cause",
                        lambda: plots.gap_by_cause(results))
        dense = _matching_dense(run, dense_runs) if sparse else None
        if not sparse:
            caption = f"{scheme} on {hardware}: energy by component"
        elif dense is not None:
            caption = (f"{scheme} on {hardware}: energy by component, sparse vs dense (dense "
                       f"from the dense run)")
        else:
            caption = (f"{scheme} on {hardware}: energy by component, sparse vs dense (no "
                       f"dense run in the report: its buffer + DRAM are not split)")
        figures.add(f"{run.slug}_energy_breakdown", caption,
                    lambda: plots.energy_breakdown(results, dense=dense))


# The sweep's best points on the page: time, energy (whole step where modelled) and TFLOPS/W.
SWEEP_BEST = ("seconds_step", "energy_step_pj", "tflops_per_watt")
SWEEP_BEST_MAC_ONLY = ("seconds", "energy_pj", "tflops_per_watt")


def _sweep_best(total: pd.DataFrame, varied: Sequence[str]) -> pd.DataFrame:
    """Per trace the fastest and the least-energy point and the best TFLOPS/W, on absolute
    figures (whole step where the sweep has it), one row each with the point's varied values."""
    from accelsim.analysis import BEST_METRICS, best_points

    whole = "seconds_step" in total.columns and bool(total["seconds_step"].notna().all())
    goals = {m: BEST_METRICS[m] for m in (SWEEP_BEST if whole else SWEEP_BEST_MAC_ONLY)
             if m in total.columns}
    best = best_points(total, goals)
    energy = next((m for m in goals if "energy" in m), None)
    unit, size = scale_unit(total[energy], ENERGY_UNITS) if energy else ("pJ", 1.0)
    names = {m: "fastest" if m.startswith("seconds") else "least energy" if "energy" in m
             else "best TFLOPS/W" for m in goals}
    rows = []
    for _, pick in best.iterrows():
        metric, value = str(pick["metric"]), float(pick["value"])
        shown = (f"{value * 1e3:.2f} ms" if metric.startswith("seconds")
                 else f"{value / size:.3g} {unit}" if "energy" in metric else f"{value:.2f}")
        rows.append({"trace": pick["trace"], "best for": names[metric], "value": shown,
                     **{k: pick[k] for k in varied}})
    return pd.DataFrame(rows)


def _sweep_section(page: Page, figures: _Figures, sweep: SweepOutput) -> None:
    from accelsim import plots

    table = sweep.table.copy()
    labels = table["trace"].astype(str)
    short = labels.map(lambda t: Path(t).name or t)
    if short.nunique() == labels.nunique():
        table["trace"] = short
    if "steps" in table.columns:  # the sweep table sums a trace's replayed steps
        for column in ("seconds", "seconds_step", "energy_pj", "energy_step_pj"):
            if column in table.columns:
                table[column] = table[column] / table["steps"]
    varied = [k for k in sweep.varied if table[k].nunique() > 1]
    page.heading(f"Sweep: {sweep.name}", 3)
    total = table[table["scope"] == "total"]
    whole = "seconds_step" in total.columns and total["seconds_step"].notna().all()
    per = " per replayed step" if "steps" in table.columns else " of the replayed steps"
    page.paragraph(f"`{sweep.path}`: {total['point'].nunique()} points x "
                   f"{total['trace'].nunique()} traces; varied: "
                   + (", ".join(f"`{k}`" for k in sweep.varied) or "nothing") + ". Best "
                   f"points are chosen on absolute figures: time and energy{per}"
                   + (" (whole step, non-MAC work included)" if whole else " (MAC jobs)")
                   + ", not on ratios to a dense run at the same point (a small, slow array has "
                   "a slow dense run too); speedup / FLOPs reduction is drawn as context.")
    if len(total):
        page.paragraph("Best point of each trace, on absolute figures (scope total):")
        page.table(_sweep_best(total, sweep.varied))
    time, energy = ("seconds_step", "energy_step_pj") if whole else ("seconds", "energy_pj")
    for param in varied:
        # One line per trace: the other varied keys stay at their first value (named below).
        others = {k: table[k].iloc[0] for k in varied if k != param}
        part = table
        for key, value in others.items():
            part = part[part[key] == value]
        where = f" at {', '.join(f'{k}={v}' for k, v in others.items())}" if others else ""
        for metric in (time, energy, "speedup_efficiency"):
            if metric in table.columns:
                figures.add(f"{sweep.slug}_{slugify(metric)}_vs_{slugify(param)}",
                            f"{sweep.name}: {plots.pretty(metric)} vs {param}{where}",
                            lambda m=metric, p=param, t=part: plots.metric_vs_param(t, m, p))
    if {time, energy} <= set(table.columns):
        figures.add(f"{sweep.slug}_pareto_time_energy",
                    f"{sweep.name}: step time vs energy per trace, each trace's Pareto front",
                    lambda: plots.pareto(table, x=energy, y=time, lower_y=True,
                                         per_trace=True))


def _hardware_slug(hardware: str, several: bool) -> str:
    return f"_{slugify(hardware)}" if several else ""


def _dense_utilization(gaps: pd.DataFrame) -> float:
    """The dense utilisation of the first run among ``gaps``' rows (all its runs share one
    hardware config and workload, so one dense run)."""
    rows = gaps[gaps["phase"] == "all"]
    return float(rows["dense_utilization"].iloc[0]) if len(rows) else float("nan")


def _why_the_gap(page: Page, figures: _Figures, schemes: pd.DataFrame, gaps: pd.DataFrame,
                 recorded: Sequence[RunOutput], several: bool) -> None:
    """The "Why the gap" section: per hardware, a line per sparse scheme, the lost-cycle figure
    across its schemes and, collapsed, the table by phase."""
    from accelsim import plots

    hardware_names = list(dict.fromkeys(schemes["hardware"]))
    page.heading("Why the gap")
    page.paragraph("Lost cycles = cycles - dense cycles / FLOPs reduction, split by cause; "
                   "every MAC is priced at what its job costs the dense run per MAC, so "
                   "the dense mapping's own losses stay out (definitions in "
                   "docs/reports.md; `gap.csv`).")
    by_run = {r.name: r for r in recorded}
    for hardware in hardware_names:
        part = schemes[(schemes["hardware"] == hardware) & (schemes["masks"] != "none")]
        sparse_rows = gaps[(gaps["hardware"] == hardware) & gaps["run"].isin(part["run"])]
        if sparse_rows.empty:
            continue
        page.heading(hardware, 3)
        page.bullets(report_text.why_the_gap(sparse_rows))
        combined = pd.concat([by_run[r].results.assign(scheme=s, label=hardware)
                              for r, s in zip(part["run"], part["scheme"], strict=True)],
                             ignore_index=True)
        figures.add(f"schemes_gap_by_cause{_hardware_slug(hardware, several)}",
                    f"cycles lost vs the ideal by cause, per scheme, on {hardware}",
                    lambda c=combined: plots.gap_by_cause(c, by="scheme", total=False))
        with page.section(f"Lost cycles by cause and phase on {hardware} (table)"):
            page.table(_display_gap(sparse_rows))


def build_report(dirs: Sequence[str | Path], out: str | Path) -> Path:
    """Build the report over accelsim output directories; return the path of ``report.md``.

    ``dirs``: simulate/replay outputs and sweep outputs. Raises InputError (naming the
    directory) for anything else.
    """
    if not dirs:
        raise InputError("give at least one output directory", field="report")
    outputs = [read_output(d) for d in dirs]
    use_agg()
    from accelsim import plots

    out = Path(out)
    _unique_names(outputs)
    runs = [o for o in outputs if isinstance(o, RunOutput)]
    recorded = [r for r in runs if r.producer is not None]
    dense_runs = [r for r in runs if describe_scheme(r.producer)["masks"] == "none"]
    sweeps = [o for o in outputs if isinstance(o, SweepOutput)]
    page = Page(out)
    figures = _Figures(out, page)
    page.heading("accelsim report", 1)
    schemes = scheme_table(recorded) if recorded else None
    gaps = gap_table(recorded, schemes) if schemes is not None else None
    if schemes is not None and gaps is not None:
        atomic_write_text(out / "schemes.csv", schemes.to_csv(index=False))
        atomic_write_text(out / "schemes.md", markdown_table(display_schemes(schemes)) + "\n")
        atomic_write_text(out / "gap.csv", gaps.to_csv(index=False))
        hardware_names = list(dict.fromkeys(schemes["hardware"]))
        several = len(hardware_names) > 1
        page.heading("Summary")
        first = {}
        for run in recorded:
            first.setdefault(repr(report_text.workload_key(run.producer)), run)
        workloads = {key: n for n, key in enumerate(first, start=1)}
        for key, run in first.items():
            assert run.producer is not None
            name = f"Workload {workloads[key]}." if len(first) > 1 else "Workload."
            page.paragraph(f"**{name}** " + report_text.workload_sentence(run.producer,
                                                                          run.steps))
        settings = [f"{r['scheme']}: {r['settings']}" for _, r in
                    schemes.drop_duplicates(["scheme", "settings"]).iterrows()
                    if r["masks"] != "none"]
        if settings:
            page.paragraph("**Schemes.** " + "; ".join(settings) + ".")
        for (hardware, workload), part in schemes.groupby(["hardware", "workload"],
                                                          sort=False):
            of = f", workload {workloads[workload]}" if len(first) > 1 else ""
            page.paragraph(f"**On {hardware}{of}.**")
            rows = gaps[gaps["run"].isin(part["run"]) & (gaps["hardware"] == hardware)]
            page.bullets(report_text.headline(part, rows, _dense_utilization(rows)))
        caveat = report_text.accuracy_caveat(schemes)
        if caveat:
            page.paragraph(caveat, style="caveat")
        page.paragraph("Speedup = dense cycles / sparse cycles on the same hardware; FLOPs "
                       "reduction = dense MACs / effective MACs; speedup / FLOPs reduction is "
                       "the share of the FLOPs reduction the hardware turns into time. The "
                       "whole step adds the vector unit's non-MAC work (BN, ReLU, residual "
                       "adds, pooling, the gate's arithmetic, the optimizer step, a momentum "
                       "encoder's update), which sparsity does not shrink. docs/reports.md "
                       "defines every column and figure.")
        page.heading("Structured vs unstructured sparsity")
        page.paragraph("One table per hardware (every column: `schemes.csv`). Index storage "
                       "per step is in the format the hardware uses; in brackets, how many "
                       "times smaller that is than the same masks as element bitmaps.")
        for hardware in hardware_names:
            part = schemes[schemes["hardware"] == hardware]
            page.heading(hardware, 3)
            page.table(display_schemes(part))
            sparse = part[part["masks"] != "none"]
            if sparse.empty:
                continue
            suffix = _hardware_slug(hardware, several)
            figures.add(f"schemes_speedup_vs_index{suffix}",
                        f"speedup vs index-storage reduction per scheme on {hardware} "
                        "(hollow: FLOPs reduction)", lambda t=sparse: plots.scheme_scatter(t))
            figures.add(f"schemes_speedup_vs_energy{suffix}",
                        f"speedup vs energy reduction per scheme on {hardware}",
                        lambda t=sparse: plots.scheme_scatter(t, x="energy_reduction"))
        if (schemes["masks"] != "none").any():
            _why_the_gap(page, figures, schemes, gaps, recorded, several)
        beyond = {h: report_text.beyond_the_macs(schemes[schemes["hardware"] == h])
                  for h in hardware_names}
        if any(beyond.values()):
            page.heading("Beyond the MACs")
            page.paragraph("The step's non-MAC work, which sparsity does not shrink, pulls every "
                           "speedup towards 1, and a gate's own work (its arithmetic, the Y_c "
                           "its gradient needs) pulls gated runs below it where the MACs gain "
                           "less than it costs (docs/model.md, \"Non-MAC work\").")
            for hardware, lines in beyond.items():
                if lines:
                    page.paragraph(f"**On {hardware}.**")
                    page.bullets(lines)
    if runs:
        page.heading("Runs")
        page.paragraph("One collapsible section per replay: its numbers, the knobs its result "
                       "depends on, and its figures.")
        rows = {row["run"]: row for _, row in schemes.iterrows()} \
            if schemes is not None else {}
        rank = {name: i for i, name in enumerate(rows)}  # the scheme table's order, then others
        ordered = sorted(runs, key=lambda r: rank.get(r.name, len(rank)))
        for run in ordered:
            _run_section(page, figures, run, rows.get(run.name), dense_runs)
    if sweeps:
        page.heading("Sweeps")
        for sweep in sweeps:
            _sweep_section(page, figures, sweep)
    page.heading("Inputs")
    page.bullets([f"`{o.path}`" for o in outputs])
    atomic_write_text(out / "report.md", page.markdown())
    atomic_write_text(out / "report.html", page.html("accelsim report"))
    return out / "report.md"
