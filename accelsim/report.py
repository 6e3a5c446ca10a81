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

The directories are read by :mod:`accelsim.report_inputs`, the tables built by
:mod:`accelsim.report_schemes`, the sentences written by :mod:`accelsim.report_text` and the
page assembled by :mod:`accelsim.report_page`; this module lays the page out.
:func:`accelsim.api.compare` replays traces on one hardware config and builds this report over
them. Every file is written atomically; figures and pages have fixed metadata, so the same
inputs give the same bytes (on the same matplotlib version). The layout is described in
``docs/reports.md``.

Example::

    from accelsim.report import build_report
    build_report([Path("out/cdg"), Path("out/scdg")], Path("out/report"))
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from accelsim import report_text
from accelsim.errors import InputError
from accelsim.fileio import atomic_write_text
from accelsim.report_inputs import RunOutput, SweepOutput, read_output, slugify, unique_names
from accelsim.report_page import Page, markdown_table, save_figure, use_agg
from accelsim.report_schemes import (
    describe_scheme,
    display_gap,
    display_schemes,
    first_param,
    flatten_params,
    gap_table,
    scheme_table,
)
from accelsim.units import ENERGY_UNITS, scale_unit

if TYPE_CHECKING:
    from matplotlib.figure import Figure

def modelling_choices(run: RunOutput) -> str:
    """One sentence naming the knobs a run's sparse result depends on (docs/sparse-model.md):
    queue depth, operand stage depth, compaction (or the row balancer), a lane scheduler, skip
    granularity, the three lane mappings, the gate's gradient and, for the whole step, the
    vector unit and the optimizer."""
    hardware = run.run_info.get("hardware")
    if not isinstance(hardware, dict):
        return ""
    pe, decoder = hardware.get("pe_array", {}), hardware.get("decoder", {})
    parts = [f"`sync_tiles` {pe.get('sync_tiles', '?')}",
             f"`stage_steps` {pe.get('stage_steps', '?')}",
             ("compaction on (an ideal dispatcher that balances each operand-stage chunk "
              "over the queues)" if decoder.get("compaction")
              else "compaction off, the row balancer on" if decoder.get("balance_rows")
              else "compaction off"),
             f"skip granularity {decoder.get('skip_granularity', '?')}",
             "FW lanes " + ("an adder tree over k" if pe.get("fw_lanes") == "reduction"
                            else "over output channels"),
             "BD lanes " + ("an adder tree over f" if pe.get("bd_lanes") == "reduction"
                            else "over input-gradient columns"),
             f"WG lanes over {str(pe.get('wg_lanes', 'output_channels')).replace('_', ' ')}"]
    if decoder.get("lane_scheduler", "none") != "none":
        parts.insert(3, f"the {decoder['lane_scheduler']} lane scheduler in front of the adder "
                     f"trees (lookahead {decoder.get('scheduler_lookahead', '?')}, lookaside "
                     f"{decoder.get('scheduler_lookaside', '?')}, inside each stage chunk)")
    gated = "gate" in describe_scheme(run.producer)["masks"]
    gradient = first_param(flatten_params(run.producer or {}), "gate_gradient")
    algorithm = str((run.producer or {}).get("algorithm", "")).lower()
    if algorithm == "dgc":  # no gate: a selection per (sample, head, input channel)
        parts.append("how DGC's heads fall on the lock-step units and column tiles (a unit "
                     "or tile spanning several heads runs the union of their selections)")
    elif algorithm == "fbs":  # FBS always records a masked gradient
        parts.append("gate gradient masked")
    elif gated:  # recorded traces before the recorder knew other estimators: straight-through
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
            page.table(display_gap(sparse_rows))


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
    unique_names(outputs)
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
