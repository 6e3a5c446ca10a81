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

import base64
import html
import io
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from itertools import combinations
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from accelsim.errors import InputError
from accelsim.fileio import atomic_write_bytes, atomic_write_text
from accelsim.inputs import load_json_object

if TYPE_CHECKING:
    from matplotlib.figure import Figure


RUN_FILES = ("results.csv", "summary.json", "run.json")
RUN_COLUMNS = ("trace", "step", "layer", "branch", "phase", "macs_dense", "macs_effective",
               "macs_required", "macs_issued", "cycles_compute", "cycles_decoder_stall", "cycles",
               "cycles_dense",
               "utilization", "energy_pj", "energy_dense_pj", "energy_mac_pj", "energy_rf_pj",
               "energy_buffer_pj", "energy_dram_pj", "energy_index_pj", "energy_network_pj",
               "energy_static_pj")
SWEEP_COLUMNS = ("trace", "point", "point_id", "scope")
ACCURACY_KEYS = ("knn_accuracy", "linear_accuracy")
PNG_DPI = 130
SVG_SALT = "accelsim"
SWEEP_METRICS = ("speedup", "energy_reduction", "efficiency_gap", "speedup_step")
MAX_HEATMAPS = 3


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
            f"(energy {total['energy_reduction_step']:.2f}x); non-MAC work is "
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
        gates = gates or lowered in ("cdg", "scdg", "cgnet")
        weights = weights or lowered == "synccp"
    parts: list[str] = []
    structures: list[str] = []
    if gates:
        size = int(group) if isinstance(group, (int, float)) and group else 1
        if algorithm.lower() == "cgnet":
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
    if not parts:
        parts.append(algorithm or "unknown")
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


def scheme_table(runs: Sequence[RunOutput]) -> pd.DataFrame:
    """One row per replayed trace: scheme, masks, structure, hardware and the summary metrics.

    Columns: scheme, run, masks, structure, hardware, flops_reduction, speedup, efficiency_gap,
    energy_reduction, index_reduction, tflops_per_watt, decoder stall cycles, and
    ``knn_accuracy`` / ``linear_accuracy`` when a summary or producer carries them.
    """
    rows = []
    for run in runs:
        total = run.summary["total"]
        row: dict[str, Any] = {"run": run.name, **describe_scheme(run.producer),
                               "hardware": run.summary.get("hardware", "")}
        for key in ("flops_reduction", "speedup", "efficiency_gap", "energy_reduction",
                    "tflops_per_watt", "cycles_decoder_stall", "speedup_step",
                    "non_mac_share", "energy_reduction_step"):
            row[key] = total.get(key)
        step = total.get("cycles_step") or 0
        row["extra_non_mac_share"] = ((total.get("cycles_non_mac", 0)
                                       - total.get("cycles_non_mac_dense", 0)) / step
                                      if step else 0.0)
        if not run.summary.get("non_mac_modelled"):  # MAC-only: no whole-step figures
            for key in ("speedup_step", "non_mac_share", "energy_reduction_step",
                        "extra_non_mac_share"):
                row[key] = float("nan")
        row["index_reduction"] = run.summary.get("index", {}).get("index_reduction", 1.0)
        for key in ACCURACY_KEYS:
            value = _find_key(run.summary.get("accuracy"), key)
            if value is None:
                value = run.summary.get(key, _find_key(run.producer, key))
            if isinstance(value, (int, float)):
                row[key] = float(value)
        rows.append(row)
    columns = ["scheme", "run", "masks", "structure", "hardware", "flops_reduction", "speedup",
               "efficiency_gap", "energy_reduction", "index_reduction", "tflops_per_watt",
               "cycles_decoder_stall", "speedup_step", "non_mac_share", "energy_reduction_step",
               "extra_non_mac_share", *(k for k in ACCURACY_KEYS if any(k in r for r in rows))]
    table = pd.DataFrame(rows, columns=columns)
    table["label"] = table["scheme"]  # the scheme's own name, before runs are told apart
    duplicated = table["scheme"].duplicated(keep=False)
    table.loc[duplicated, "scheme"] = [f"{s} [{r}]" for s, r in
                                       zip(table.loc[duplicated, "scheme"],
                                           table.loc[duplicated, "run"], strict=True)]
    return table


def gap_table(runs: Sequence[RunOutput], schemes: pd.DataFrame) -> pd.DataFrame:
    """Lost cycles by cause (:func:`accelsim.analysis.gap_decomposition`) per scheme and
    phase."""
    from accelsim.analysis import gap_decomposition

    frames = []
    for run, scheme in zip(runs, schemes["scheme"], strict=True):
        table = gap_decomposition(run.results, ("phase",), macs_per_cycle=run.macs_per_cycle)
        table.insert(0, "scheme", scheme)
        frames.append(table)
    return pd.concat(frames, ignore_index=True)


def _all_results(runs: Sequence[RunOutput], schemes: pd.DataFrame) -> pd.DataFrame:
    frames = []
    for run, scheme in zip(runs, schemes["scheme"], strict=True):
        frame = run.results.copy()
        frame["scheme"] = scheme
        frame["macs_per_cycle"] = run.macs_per_cycle
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)


# ---------------------------------------------------------------------------------------------
# "Why the gap"
# ---------------------------------------------------------------------------------------------

CAUSES = {
    "estimator_cycles": "the forward pass the straight-through gate gradient needs dense",
    "lockstep_cycles": "idle lanes of lock-step units",
    "imbalance_cycles": "load imbalance and partial tiles",
    "decoder_cycles": "decoder stalls",
    "memory_cycles": "memory-bound time",
}


def why_the_gap(gaps: pd.DataFrame) -> list[str]:
    """One paragraph per scheme from its rows of :func:`gap_table` (cycles in millions)."""
    lines = []
    for _, row in gaps[gaps["phase"] == "all"].iterrows():
        lost, cycles = float(row["lost_cycles"]), float(row["cycles"])
        head = (f"**{row['scheme']}**: speedup {row['speedup']:.2f}x for a FLOPs reduction of "
                f"{row['flops_reduction']:.2f}x (efficiency gap "
                f"{row['speedup'] / row['flops_reduction']:.2f}).")
        if lost <= 0.005 * cycles:
            lines.append(f"{head} No cycles are lost: the hardware turns the skipped MACs into "
                         f"time saved.")
            continue
        causes = sorted(((float(row[c]), text) for c, text in CAUSES.items()
                         if float(row[c]) > 0.005 * cycles), reverse=True)
        gross = ", ".join(f"{text} {value / 1e6:.2f} M" for value, text in causes)
        phases = gaps[(gaps["scheme"] == row["scheme"]) & (gaps["phase"] != "all")]
        tail = ""
        if len(phases):
            worst = phases.loc[phases["lost_cycles"].idxmax()]
            tail = (f" Most is lost in {str(worst['phase']).upper()} "
                    f"({float(worst['lost_cycles']) / lost:.0%}).")
        lines.append(f"{head} {lost / 1e6:.2f} M of its {cycles / 1e6:.2f} M cycles "
                     f"({lost / cycles:.0%}) are beyond the ideal. Largest cause: "
                     f"{causes[0][1] if causes else 'none'}. Gross losses: {gross or 'none'}; "
                     f"less {-float(row['baseline_cycles']) / 1e6:.2f} M that the ideal "
                     f"already grants for the dense run's own overhead.{tail}")
    return lines


# ---------------------------------------------------------------------------------------------
# Figures
# ---------------------------------------------------------------------------------------------


def use_agg() -> None:
    """Select matplotlib's non-interactive Agg backend: reports never open windows and work
    headless. The plots draw on bare Figures, never through pyplot; where pyplot is already in
    use (a notebook) its backend is left alone, as switching it would close the user's figures.
    """
    import sys

    import matplotlib

    if "matplotlib.pyplot" not in sys.modules:
        matplotlib.use("Agg")


def save_figure(fig: Figure, folder: Path, stem: str) -> tuple[Path, Path]:
    """Write ``stem.png`` and ``stem.svg`` atomically with fixed metadata; close nothing global.

    SVG ids are salted with a constant and dates left out, so the bytes depend only on the figure
    (and the matplotlib version).
    """
    import matplotlib as mpl

    paths = (folder / f"{stem}.png", folder / f"{stem}.svg")
    with mpl.rc_context({"svg.hashsalt": SVG_SALT, "svg.fonttype": "path"}):
        png = io.BytesIO()
        fig.savefig(png, format="png", dpi=PNG_DPI, metadata={"Software": "accelsim"})
        svg = io.BytesIO()
        fig.savefig(svg, format="svg", metadata={"Date": None, "Creator": "accelsim"})
    atomic_write_bytes(paths[0], png.getvalue())
    atomic_write_bytes(paths[1], svg.getvalue())
    return paths


@dataclass
class Block:
    """One element of the report page: heading, paragraph, list, table or figure."""

    kind: str
    text: str = ""
    level: int = 2
    items: list[str] = field(default_factory=list)
    table: pd.DataFrame | None = None
    path: str = ""


class Page:
    """The report's content, rendered to Markdown and to self-contained HTML."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.blocks: list[Block] = []

    def heading(self, text: str, level: int = 2) -> None:
        self.blocks.append(Block("heading", text, level=level))

    def paragraph(self, text: str) -> None:
        self.blocks.append(Block("paragraph", text))

    def bullets(self, items: Sequence[str]) -> None:
        self.blocks.append(Block("list", items=list(items)))

    def table(self, frame: pd.DataFrame) -> None:
        self.blocks.append(Block("table", table=frame))

    def figure(self, relpath: str, caption: str) -> None:
        self.blocks.append(Block("figure", caption, path=relpath))

    def markdown(self) -> str:
        out: list[str] = []
        for block in self.blocks:
            if block.kind == "heading":
                out.append(f"{'#' * block.level} {block.text}")
            elif block.kind == "paragraph":
                out.append(block.text)
            elif block.kind == "list":
                out.append("\n".join(f"- {item}" for item in block.items))
            elif block.kind == "table":
                assert block.table is not None
                out.append(_markdown_table(block.table))
            else:
                out.append(f"![{block.text}]({block.path})\n\n*{block.text}*")
        return "\n\n".join(out) + "\n"

    def html(self, title: str) -> str:
        body: list[str] = []
        for block in self.blocks:
            if block.kind == "heading":
                body.append(f"<h{block.level}>{_inline(block.text)}</h{block.level}>")
            elif block.kind == "paragraph":
                body.append(f"<p>{_inline(block.text)}</p>")
            elif block.kind == "list":
                body.append("<ul>" + "".join(f"<li>{_inline(i)}</li>" for i in block.items)
                            + "</ul>")
            elif block.kind == "table":
                assert block.table is not None
                body.append(_html_table(block.table))
            else:
                data = base64.b64encode((self.root / block.path).read_bytes()).decode("ascii")
                body.append(f'<figure><img alt="{html.escape(block.text)}" '
                            f'src="data:image/png;base64,{data}"><figcaption>'
                            f"{_inline(block.text)}</figcaption></figure>")
        return (f"<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
                f"<title>{html.escape(title)}</title>\n<style>{CSS}</style>\n</head>\n<body>\n"
                + "\n".join(body) + "\n</body>\n</html>\n")


CSS = ("body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;max-width:1320px;"
       "margin:2em auto;padding:0 1em;color:#222;line-height:1.5}"
       "table{border-collapse:collapse;margin:1em 0;font-size:0.82em}"
       ".wide{overflow-x:auto}"
       "th,td{border:1px solid #ccc;padding:0.25em 0.45em;text-align:right}"
       "th{background:#f2f2f2}td:first-child,th:first-child{text-align:left}"
       "figure{margin:1.5em 0}img{max-width:100%;height:auto;border:1px solid #eee}"
       "figcaption{color:#555;font-size:0.9em}code{background:#f4f4f4;padding:0 0.2em}"
       "h1,h2,h3{color:#0b3d62}")


def _inline(text: str) -> str:
    escaped = html.escape(text)
    escaped = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", escaped)
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", escaped)


def _markdown_table(frame: pd.DataFrame) -> str:
    header = "| " + " | ".join(str(c) for c in frame.columns) + " |"
    rule = "| " + " | ".join("---" for _ in frame.columns) + " |"
    rows = ["| " + " | ".join(str(v).replace("|", "\\|") for v in row) + " |"
            for row in frame.itertuples(index=False)]
    return "\n".join([header, rule, *rows])


def _html_table(frame: pd.DataFrame) -> str:
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in frame.columns)
    rows = "".join("<tr>" + "".join(f"<td>{html.escape(str(v))}</td>" for v in row) + "</tr>"
                   for row in frame.itertuples(index=False))
    return (f"<div class=\"wide\"><table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody>"
            f"</table></div>")


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


def _accuracy(value: Any) -> str:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return ""
    if math.isnan(number):
        return ""
    return f"{100 * number:.1f} %" if number <= 1 else f"{number:.1f} %"


def display_schemes(table: pd.DataFrame) -> pd.DataFrame:
    """The scheme table formatted for reading (ratios as 1.23x)."""
    shown = pd.DataFrame({
        "scheme": table["scheme"],
        "masks": table["masks"],
        "structure": table["structure"],
        "hardware": table["hardware"],
        "FLOPs reduction": table["flops_reduction"].map(_times),
        "speedup (MACs)": table["speedup"].map(_times),
        "efficiency gap": table["efficiency_gap"].map(lambda v: f"{float(v):.2f}"),
        "energy reduction (MACs)": table["energy_reduction"].map(_times),
        "whole-step speedup": table["speedup_step"].map(_times),
        "non-MAC share of the step": table["non_mac_share"].map(_share),
        "whole-step energy reduction": table["energy_reduction_step"].map(_times),
        "index reduction": table["index_reduction"].map(_times),
        "TFLOPS/W (effective work)": table["tflops_per_watt"].map(lambda v: f"{float(v):.2f}"),
    })
    for key in ACCURACY_KEYS:
        if key in table.columns:
            shown[key.replace("_", " ")] = table[key].map(_accuracy)
    return shown


def beyond_the_macs(schemes: pd.DataFrame) -> list[str]:
    """One line per sparse scheme with whole-step figures: how far its non-MAC work pulls the
    MAC-only speedup down."""
    lines = []
    for _, row in schemes.iterrows():
        if row["masks"] == "none" or _missing(row["speedup_step"]):
            continue
        extra = float(row["extra_non_mac_share"])
        what = ("the gate's arithmetic and stored Y_c, waits for streamed work"
                if "gate" in str(row["masks"]) else "waits for streamed work")
        own = ""
        if extra >= 0.005:
            own = (f", including {extra:.0%} of the step in work the dense step does not have "
                   f"({what})")
        elif extra <= -0.005:  # vector_unit.sparse_updates: the optimizer skips pruned weights
            own = (f", {-extra:.0%} of the step less than the dense step's non-MAC work (net "
                   f"of the optimizer's sparse updates)")
        lines.append(f"**{row['scheme']}**: {float(row['speedup']):.2f}x on the MACs, "
                     f"{float(row['speedup_step']):.2f}x for the whole step: non-MAC work is "
                     f"{float(row['non_mac_share']):.0%} of its sparse step{own}; energy "
                     f"{float(row['energy_reduction_step']):.2f}x for the whole step.")
    return lines


def _missing(value: Any) -> bool:
    try:
        return math.isnan(float(value))
    except (TypeError, ValueError):
        return True


def _display_gap(gaps: pd.DataFrame) -> pd.DataFrame:
    def cycles(value: Any) -> str:
        return f"{float(value) / 1e6:,.3f}"

    shown = pd.DataFrame({"scheme": gaps["scheme"], "phase": gaps["phase"].map(
        lambda p: str(p).upper() if p != "all" else "all")})
    for column, label in (("cycles", "cycles"), ("ideal_cycles", "ideal"),
                          ("lost_cycles", "lost"), ("estimator_cycles", "gate gradient"),
                          ("lockstep_cycles", "lock-step lanes"),
                          ("imbalance_cycles", "imbalance + tiles"),
                          ("decoder_cycles", "decoder"), ("memory_cycles", "memory"),
                          ("baseline_cycles", "dense-overhead credit")):
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
        self.written: list[Path] = []

    def add(self, stem: str, caption: str, draw: Callable[[], Figure]) -> None:
        fig = draw()
        png, svg = save_figure(fig, self.folder, stem)
        self.written += [png, svg]
        self.page.figure(png.relative_to(self.out).as_posix(), caption)


def _matching_dense(run: RunOutput, dense_runs: Sequence[RunOutput]) -> pd.DataFrame | None:
    """A dense run of the same jobs on the same hardware, repeated for each recorded step."""
    keys = ["layer", "branch", "phase", "macs_dense"]
    digest = run.summary.get("hardware_digest")
    first_step = run.results[run.results["step"] == run.results["step"].min()]
    wanted = sorted(map(tuple, first_step[keys].astype(str).to_numpy().tolist()))
    for dense in dense_runs:
        if dense.summary.get("hardware_digest") != digest:
            continue
        have = sorted(map(tuple, dense.results[keys].astype(str).to_numpy().tolist()))
        if have == wanted:
            return pd.concat([dense.results] * run.steps, ignore_index=True)
    return None


def _run_section(page: Page, figures: _Figures, run: RunOutput, scheme: str,
                 dense_runs: Sequence[RunOutput]) -> None:
    from accelsim import plots

    total = run.summary["total"]
    page.heading(f"{scheme} ({run.name})" if scheme != run.name else run.name, 3)
    page.paragraph(
        f"`{run.path}` on {run.summary.get('hardware', '?')}: {int(total.get('jobs', 0))} jobs "
        f"over {run.steps} step(s); speedup {total['speedup']:.2f}x, FLOPs reduction "
        f"{total['flops_reduction']:.2f}x, efficiency gap {total['efficiency_gap']:.2f}, energy "
        f"reduction {total['energy_reduction']:.2f}x; {total['tflops_per_watt']:.2f} TFLOPS/W of "
        f"effective work ({total['tflops_per_watt_dense_equivalent']:.2f} dense-equivalent, "
        f"{total['tflops_per_watt_on_chip']:.2f} on chip without DRAM). "
        + whole_step_sentence(run) + modelling_choices(run))
    results = run.results
    if run.producer is not None:
        figures.add(f"{run.slug}_per_layer_speedup", f"{scheme}: per-layer speedup (bars) vs "
                    f"FLOPs reduction (ticks), per phase",
                    lambda: plots.per_layer_speedup(results))
        figures.add(f"{run.slug}_flops_vs_hardware", f"{scheme}: FLOPs reduction vs speedup "
                    f"per phase and branch", lambda: plots.flops_vs_hardware(results))
        figures.add(f"{run.slug}_gap_by_cause", f"{scheme}: cycles lost vs the ideal, by cause",
                    lambda: plots.gap_by_cause(results, macs_per_cycle=run.macs_per_cycle))
    dense = _matching_dense(run, dense_runs) if run.producer is not None else None
    if run.producer is None:
        caption = f"{scheme}: energy by component (dense run)"
    elif dense is not None:
        caption = (f"{scheme}: energy by component, sparse vs dense (dense from a matching "
                   f"dense run)")
    else:
        caption = (f"{scheme}: energy by component, sparse vs dense (dense buffer + DRAM not "
                   f"split)")
    figures.add(f"{run.slug}_energy_breakdown", caption,
                lambda: plots.energy_breakdown(results, dense=dense))


def _sweep_section(page: Page, figures: _Figures, sweep: SweepOutput) -> None:
    from accelsim import plots

    table = sweep.table.copy()
    labels = table["trace"].astype(str)
    short = labels.map(lambda t: Path(t).name or t)
    if short.nunique() == labels.nunique():
        table["trace"] = short
    varied = [k for k in sweep.varied if table[k].nunique() > 1]
    page.heading(f"Sweep: {sweep.name}", 3)
    total = table[table["scope"] == "total"]
    page.paragraph(f"`{sweep.path}`: {total['point'].nunique()} points x "
                   f"{total['trace'].nunique()} traces; varied: "
                   + (", ".join(f"`{k}`" for k in sweep.varied) or "nothing") + ".")
    if "speedup" in total.columns and len(total):
        best = total.loc[total.groupby("trace", sort=False)["speedup"].idxmax()]
        shown = best[["trace", "point", *sweep.varied]].astype(str)
        for metric in ("speedup", "efficiency_gap", "energy_reduction", "tflops_per_watt",
                       "speedup_step"):
            if metric in best.columns:
                shown[metric] = best[metric].map(lambda v: f"{float(v):.3f}")
        page.paragraph("Best point of each trace by speedup (scope total):")
        page.table(shown.reset_index(drop=True))
    for param in varied:
        # One line per trace: the other varied keys stay at their first value (named below).
        others = {k: table[k].iloc[0] for k in varied if k != param}
        part = table
        for key, value in others.items():
            part = part[part[key] == value]
        where = f" at {', '.join(f'{k}={v}' for k, v in others.items())}" if others else ""
        for metric in SWEEP_METRICS:
            if metric in table.columns:
                figures.add(f"{sweep.slug}_{slugify(metric)}_vs_{slugify(param)}",
                            f"sweep {sweep.name}: {metric} vs {param}{where}",
                            lambda m=metric, p=param, t=part: plots.metric_vs_param(t, m, p))
    for px, py in list(combinations(varied, 2))[:MAX_HEATMAPS]:
        fixed = {k: table[k].iloc[0] for k in varied if k not in (px, py)}
        part = table
        for key, value in fixed.items():
            part = part[part[key] == value]
        where = f" at {', '.join(f'{k}={v}' for k, v in fixed.items())}" if fixed else ""
        figures.add(f"{sweep.slug}_heatmap_speedup_{slugify(px)}_{slugify(py)}",
                    f"sweep {sweep.name}: speedup over {px} x {py}{where}",
                    lambda x=px, y=py, t=part, n=where: plots.heatmap(t, "speedup", x, y,
                                                                     note=n))
    if {"energy_pj", "speedup"} <= set(table.columns):
        figures.add(f"{sweep.slug}_pareto_energy_speedup",
                    f"sweep {sweep.name}: energy vs speedup, Pareto front",
                    lambda: plots.pareto(table, x="energy_pj", y="speedup"))


def build_report(dirs: Sequence[str | Path], out: str | Path) -> Path:
    """Build the report over accelsim output directories; return the path of ``report.md``.

    ``dirs``: simulate/replay outputs and sweep outputs, in the order the report lists them.
    Raises InputError (naming the directory) for anything else.
    """
    if not dirs:
        raise InputError("give at least one output directory", field="report")
    outputs = [read_output(d) for d in dirs]
    use_agg()
    from accelsim import plots

    out = Path(out)
    _unique_names(outputs)
    runs = [o for o in outputs if isinstance(o, RunOutput)]
    sparse = [r for r in runs if r.producer is not None]
    dense_runs = [r for r in runs if r.producer is None]
    sweeps = [o for o in outputs if isinstance(o, SweepOutput)]
    page = Page(out)
    figures = _Figures(out, page)
    page.heading("accelsim report", 1)
    page.paragraph("Inputs: " + ", ".join(f"`{o.path}`" for o in outputs) + ". Speedup = dense "
                   "cycles / sparse cycles on the same hardware, of the MAC jobs; FLOPs "
                   "reduction = dense MACs / effective MACs; efficiency gap = speedup / FLOPs "
                   "reduction. Whole-step speedup adds the vector unit's non-MAC work (BN, ReLU, "
                   "residual adds, pooling, the gate's arithmetic, the optimizer step, a "
                   "momentum encoder's update), which sparsity does not shrink (except the "
                   "optimizer's, with `vector_unit.sparse_updates`). Figures are in "
                   "`figures/` as PNG and SVG; see docs/reports.md for what each shows.")
    schemes = scheme_table(sparse) if sparse else None
    if schemes is not None:
        atomic_write_text(out / "schemes.csv", schemes.to_csv(index=False))
        shown = display_schemes(schemes)
        atomic_write_text(out / "schemes.md", _markdown_table(shown) + "\n")
        page.heading("Structured vs unstructured sparsity")
        page.paragraph("One row per replayed trace (`schemes.csv`). Index reduction = element "
                       "bitmap bits / bits in the format the hardware uses.")
        page.table(shown)
        hardware_names = list(dict.fromkeys(schemes["hardware"]))
        for hardware in hardware_names:
            # One picture per hardware, sparse schemes only, labelled by their own names.
            part = schemes[(schemes["hardware"] == hardware) & (schemes["masks"] != "none")]
            if part.empty:
                continue
            part = part.assign(scheme=part["label"])
            suffix = f"_{slugify(hardware)}" if len(hardware_names) > 1 else ""
            figures.add(f"schemes_speedup_vs_index{suffix}",
                        f"speedup vs index-storage reduction per scheme on {hardware} "
                        "(hollow: FLOPs reduction)", lambda t=part: plots.scheme_scatter(t))
            figures.add(f"schemes_speedup_vs_energy{suffix}",
                        f"speedup vs energy reduction per scheme on {hardware}",
                        lambda t=part: plots.scheme_scatter(t, x="energy_reduction"))
        gaps = gap_table(sparse, schemes)
        atomic_write_text(out / "gap.csv", gaps.to_csv(index=False))
        page.heading("Why the gap")
        page.paragraph("Lost cycles = cycles - dense cycles / FLOPs reduction, split by cause "
                       "(definitions in docs/reports.md; `gap.csv`).")
        page.bullets(why_the_gap(gaps))
        beyond = beyond_the_macs(schemes)
        if beyond:
            page.paragraph("Beyond the MACs: the step's non-MAC work, which sparsity does not "
                           "shrink, pulls every speedup towards 1, and a gate's own work (its "
                           "arithmetic, the Y_c its gradient needs) pulls gated runs below it "
                           "where the MACs gain less than it costs (docs/model.md, \"Non-MAC "
                           "work\").")
            page.bullets(beyond)
        combined = _all_results(sparse, schemes)
        figures.add("schemes_gap_by_cause", "cycles lost vs the ideal by cause, per scheme",
                    lambda: plots.gap_by_cause(combined, by="scheme", total=False))
        page.table(_display_gap(gaps))
    if runs:
        page.heading("Runs")
        names = dict(zip([id(r) for r in sparse], schemes["scheme"], strict=True)) \
            if schemes is not None else {}
        for run in runs:
            _run_section(page, figures, run, names.get(id(run), run.name), dense_runs)
    if sweeps:
        page.heading("Sweeps")
        for sweep in sweeps:
            _sweep_section(page, figures, sweep)
    atomic_write_text(out / "report.md", page.markdown())
    atomic_write_text(out / "report.html", page.html("accelsim report"))
    return out / "report.md"
