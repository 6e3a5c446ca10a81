"""Plots of accelsim results: pure functions ``(df, ax=None, **opts) -> Figure``, never simulating.

Every function takes a tidy table that accelsim wrote (a run's ``results.csv``, the scheme table
of :mod:`accelsim.report`, or a sweep's ``results.csv``), draws into ``ax`` when given (or into a
new :class:`matplotlib.figure.Figure`, without pyplot and its global state) and returns the figure.
Nothing here picks a backend: saving a figure to PNG or SVG works with any. Styles: fonts of at
least 10 pt, the Okabe-Ito colour-blind-safe palette, a title, axis labels with units and a legend.

Result tables (one row per job; see ``docs/reports.md``):

- ``per_layer_speedup``, ``flops_vs_hardware``, ``energy_breakdown``, ``gap_by_cause`` take a
  run's results (columns of ``results.csv``);
- ``scheme_scatter`` takes the scheme table (one row per scheme);
- ``metric_vs_param``, ``heatmap``, ``pareto`` take a sweep's ``results.csv``.

:func:`gap_decomposition` is the table ``gap_by_cause`` draws: lost cycles split by cause.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import matplotlib as mpl
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import to_rgb
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from matplotlib.transforms import Bbox

from accelsim.analysis import (
    PHASE_ORDER,
    aggregate,
    dense_energy_breakdown,
    gap_decomposition,
    pareto_front,
    require,
    varied_columns,
)
from accelsim.units import CYCLE_UNITS, ENERGY_UNITS, scale_unit

# Okabe & Ito (2008), safe for the common colour-vision deficiencies.
PALETTE: tuple[str, ...] = ("#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9",
                            "#F0E442", "#000000")
GREY = "#999999"
STYLE: dict[str, Any] = {
    "font.size": 11,
    "axes.titlesize": 12,
    "axes.labelsize": 11,
    "xtick.labelsize": 10,
    "ytick.labelsize": 10,
    "legend.fontsize": 10,
    "legend.title_fontsize": 10,
    "figure.titlesize": 13,
    "axes.prop_cycle": mpl.cycler(color=PALETTE),
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "axes.axisbelow": True,
}
PHASE_NAMES = {"fw": "FW", "bd": "BD", "wg": "WG"}
ENERGY_PARTS: tuple[tuple[str, str, str], ...] = (
    ("mac", "MAC", PALETTE[0]),
    ("rf", "register file", PALETTE[5]),
    ("buffer", "global buffer", PALETTE[2]),
    ("dram", "DRAM", PALETTE[1]),
    ("index", "index decode", PALETTE[4]),
    ("network", "compaction network", PALETTE[6]),
    ("static", "static", GREY),
)
# Causes of lost cycles, in stacking order: (column, legend label, colour, hatch).
GAP_PARTS: tuple[tuple[str, str, str, str], ...] = (
    ("estimator_cycles", "dense forward for the gate's gradient", PALETTE[6], ""),
    ("unexploited_cycles", "not exploited by this hardware", GREY, "//"),
    ("lockstep_cycles", "idle lock-step lanes", PALETTE[3], ""),
    ("imbalance_cycles", "load imbalance beyond the dense mapping", PALETTE[1], ""),
    ("decoder_cycles", "decoder stalls", PALETTE[4], ""),
    ("memory_cycles", "memory-bound beyond the dense run", PALETTE[0], ""),
    ("placement_cycles", "where the skipped MACs fall", PALETTE[5], ".."),
)
# Sweep metrics: (axis label, unit prefix family). Family "pJ" and "cycles" are auto-scaled.
METRIC_LABELS: dict[str, str] = {
    "speedup": "speedup vs dense (×)",
    "speedup_step": "whole-step speedup vs dense, non-MAC work included (×)",
    "non_mac_share": "non-MAC share of the step's time",
    "flops_reduction": "FLOPs reduction (×)",
    "speedup_efficiency": "speedup / FLOPs reduction (1: every skipped MAC saves its time)",
    "energy_reduction": "energy reduction vs dense (×)",
    "tflops_per_watt": "energy efficiency, effective work (TFLOPS/W)",
    "tflops_per_watt_dense_equivalent": "energy efficiency, dense-equivalent (TFLOPS/W)",
    "tflops_per_watt_on_chip": "energy efficiency, effective work on chip (TFLOPS/W)",
    "effective_tflops": "effective throughput (TFLOPS)",
    "utilization": "utilization (fraction of peak MACs)",
    "seconds": "time (s)",
    "dram_bytes": "DRAM traffic (bytes)",
    "index_reduction": "index-storage reduction (×)",
}

F = TypeVar("F", bound=Callable[..., Figure])


def styled(function: F) -> F:
    """Run a plot function under :data:`STYLE` (fonts, palette, grid)."""

    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Figure:
        with mpl.rc_context(STYLE):
            return function(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


# ---------------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------------


def _axes(ax: Axes | None, figsize: tuple[float, float]) -> tuple[Figure, Axes]:
    if ax is not None:
        return ax.figure, ax  # type: ignore[return-value]
    fig = Figure(figsize=figsize, layout="constrained")
    return fig, fig.add_subplot()


def _phases(results: pd.DataFrame) -> list[str]:
    present = list(dict.fromkeys(results["phase"]))
    return [p for p in PHASE_ORDER if p in present] + [p for p in present if p not in PHASE_ORDER]


def _title_suffix(results: pd.DataFrame) -> str:
    """" — <what the rows are>" for a title: a ``label`` column (the report sets the scheme and
    hardware there), else the one trace's name; nothing where the rows mix several."""
    column = "label" if "label" in results.columns else "trace"
    if column not in results.columns:
        return ""
    names = [str(t) for t in dict.fromkeys(results[column]) if str(t) and str(t) != "nan"]
    return f" — {names[0]}" if len(names) == 1 else ""


def _bar_labels(ax: Axes, xs: Sequence[float], heights: Sequence[float], texts: Sequence[str],
                **kwargs: Any) -> None:
    for x, h, text in zip(xs, heights, texts, strict=True):
        ax.annotate(text, (x, h), xytext=(0, 2), textcoords="offset points", ha="center",
                    va="bottom", fontsize=10, **kwargs)


# ---------------------------------------------------------------------------------------------
# One run's results
# ---------------------------------------------------------------------------------------------


@styled
def per_layer_speedup(results: pd.DataFrame, ax: Axes | Sequence[Axes] | None = None, *,
                      phases: Sequence[str] | None = None) -> Figure:
    """Per-layer speedup (bars) against the layer's FLOPs reduction (black ticks), per phase.

    One panel per phase (``phases``, default all present), layers in network order on x, one
    bar per branch (colour); jobs are summed over recorded steps. Where a bar stops short of its
    tick the hardware falls short of the FLOPs view: the speedup efficiency is bar / tick. ``ax``:
    one Axes per phase (or a single Axes for a single phase); new figure when None.
    """
    require(results, ("layer", "branch", "phase", "macs_dense", "macs_effective", "cycles",
                       "cycles_dense"), "per_layer_speedup")
    chosen = list(phases) if phases is not None else _phases(results)
    axes_list = [ax] if isinstance(ax, Axes) else list(ax) if ax is not None else None
    layers = list(dict.fromkeys(results["layer"]))
    branches = sorted(dict.fromkeys(results["branch"]))
    if axes_list is None:
        width = max(8.0, 0.42 * len(layers) + 2.5)
        fig = Figure(figsize=(width, 2.6 * len(chosen) + 1.6), layout="constrained")
        axes_list = list(fig.subplots(len(chosen), 1, sharex=True, squeeze=False)[:, 0])
    elif len(axes_list) != len(chosen):
        raise ValueError(f"per_layer_speedup: {len(chosen)} phases need {len(chosen)} Axes, "
                         f"got {len(axes_list)}")
    fig = axes_list[0].figure
    table = aggregate(results, ("phase", "layer", "branch"))
    bar = 0.8 / len(branches)
    xs = np.arange(len(layers))
    top = max(float(table["flops_reduction"].max()), float(table["speedup"].max()), 1.0)
    for axis, phase in zip(axes_list, chosen, strict=True):
        part = table[table["phase"] == phase]
        for b, branch in enumerate(branches):
            rows = part[part["branch"] == branch].set_index("layer")
            present = [layer for layer in layers if layer in rows.index]
            pos = np.array([layers.index(layer) for layer in present]) - 0.4 + bar * (b + 0.5)
            axis.bar(pos, rows.loc[present, "speedup"], width=bar * 0.92,
                     color=PALETTE[b % len(PALETTE)], label=f"speedup, branch {branch}")
            axis.hlines(rows.loc[present, "flops_reduction"], pos - bar * 0.46, pos + bar * 0.46,
                        colors="black", linewidth=2.2,
                        label="FLOPs reduction (ideal)" if b == 0 else None)
        axis.axhline(1.0, color=GREY, linewidth=1, linestyle="--")
        axis.set_ylim(0, top * 1.12)
        axis.set_ylabel(f"{PHASE_NAMES.get(phase, phase)}\n× vs dense")
        axis.set_xlim(-0.6, len(layers) - 0.4)
    axes_list[-1].set_xticks(xs, layers, rotation=60, ha="right", rotation_mode="anchor")
    axes_list[-1].set_xlabel("layer (network order)")
    handles, labels = axes_list[0].get_legend_handles_labels()
    axes_list[0].legend(handles, labels, loc="lower left", bbox_to_anchor=(0, 1.02),
                        ncols=len(labels), frameon=False, borderaxespad=0)
    title = f"Per-layer speedup vs FLOPs reduction{_title_suffix(results)}"
    if isinstance(fig, Figure) and ax is None:
        fig.suptitle(title)
    else:
        axes_list[0].set_title(title, pad=28)
    return fig  # type: ignore[return-value]


@styled
def flops_vs_hardware(results: pd.DataFrame, ax: Axes | None = None) -> Figure:
    """FLOPs view against hardware view: FLOPs reduction and speedup per phase x branch, and all.

    Numbers above the speedup bars are the speedup efficiency (speedup / FLOPs reduction).
    """
    require(results, ("branch", "phase", "macs_dense", "macs_effective", "cycles",
                       "cycles_dense"), "flops_vs_hardware")
    table = aggregate(results, ("phase", "branch"))
    order = {p: i for i, p in enumerate(_phases(results))}
    table = table.sort_values(["phase", "branch"], key=lambda s: s.map(order)
                              if s.name == "phase" else s, kind="stable")
    total = aggregate(results, ())
    labels = [f"{PHASE_NAMES.get(p, p)}\nbranch {b}" for p, b in zip(table["phase"],
                                                                        table["branch"],
                                                                        strict=True)]
    labels.append("all jobs")
    flops = [*table["flops_reduction"], float(total["flops_reduction"].iloc[0])]
    speed = [*table["speedup"], float(total["speedup"].iloc[0])]
    fig, ax = _axes(ax, (max(7.0, 1.1 * len(labels) + 2), 4.6))
    xs = np.arange(len(labels), dtype=float)
    xs[-1] += 0.5  # set the total apart
    width = 0.38
    ax.bar(xs - width / 2, flops, width, color=PALETTE[5], label="FLOPs reduction (algorithm)")
    ax.bar(xs + width / 2, speed, width, color=PALETTE[0], label="speedup (hardware)")
    _bar_labels(ax, xs + width / 2, speed, [f"{s / f:.2f}" for s, f in zip(speed, flops,
                                                                            strict=True)])
    ax.axhline(1.0, color=GREY, linewidth=1, linestyle="--", label="dense (1×)")
    ax.set_xticks(xs, labels)
    ax.set_ylim(0, max(max(flops), max(speed), 1.0) * 1.18)
    ax.set_ylabel("× vs dense")
    ax.set_xlabel("phase and contrastive branch (numbers: speedup efficiency)")
    ax.set_title(f"FLOPs view vs hardware view{_title_suffix(results)}")
    ax.legend(loc="upper left", ncols=2, frameon=False)
    return fig


@styled
def energy_breakdown(results: pd.DataFrame, ax: Axes | None = None, *,
                     dense: pd.DataFrame | None = None) -> Figure:
    """Stacked energy by component, sparse vs dense, per phase and in total.

    Sparse bars stack the components of the results (MAC, register file, global buffer, DRAM,
    index decode, compaction network, static) and, where the results have it, the vector unit's
    non-MAC work on top (the dense bar's: the dense network's), so the bars are the whole
    step's. Dense bars: with ``dense`` (the results of the
    same network run dense, e.g. ``accelsim simulate --network``), its components; without it,
    MAC, register
    file and static derived exactly from the sparse run's per-MAC and per-cycle rates
    (:func:`dense_energy_breakdown`) and buffer + DRAM as one hatched segment, the rest of
    ``energy_dense_pj`` (the results do not split the dense run's memory energy). Numbers over
    each pair: energy reduction. Results of a dense run (energy equal to dense energy in every
    job, no ``dense`` given) get one bar per phase.
    """
    parts = [f"energy_{name}_pj" for name, _, _ in ENERGY_PARTS]
    require(results, ("phase", "energy_pj", "energy_dense_pj", "macs_dense", "macs_issued",
                       "cycles", "cycles_dense", *parts), "energy_breakdown")
    groups = [*((PHASE_NAMES.get(p, p), p) for p in _phases(results)), ("all", None)]
    if dense is not None:
        require(dense, ("phase", *parts), "energy_breakdown (dense)")
    dense_only = dense is None and bool(np.allclose(results["energy_pj"],
                                                    results["energy_dense_pj"], rtol=1e-12))
    derived = dense_energy_breakdown(results) if dense is None and not dense_only else None
    kinds = ["dense"] if dense_only else ["sparse", "dense"]
    non_mac = "energy_non_mac_pj" in results.columns and bool(
        results["energy_non_mac_pj"].sum() > 0)
    stacks: list[dict[str, float]] = []
    for _, phase in groups:
        mask = results["phase"] == phase if phase else pd.Series(True, index=results.index)
        stacks.append({n: float(results.loc[mask, f"energy_{n}_pj"].sum())
                       for n, _, _ in ENERGY_PARTS})
        if non_mac:
            stacks[-1]["non_mac"] = float(results.loc[mask, "energy_non_mac_pj"].sum())
        if dense is not None:
            dmask = dense["phase"] == phase if phase else pd.Series(True, index=dense.index)
            stacks.append({n: float(dense.loc[dmask, f"energy_{n}_pj"].sum())
                           for n, _, _ in ENERGY_PARTS})
            if non_mac and "energy_non_mac_pj" in dense.columns:
                stacks[-1]["non_mac"] = float(dense.loc[dmask, "energy_non_mac_pj"].sum())
        elif derived is not None:
            stacks.append({n: float(derived.loc[mask, n].sum())
                           for n in ("mac", "rf", "index", "network", "static",
                                     "buffer_dram")})
            if non_mac:
                stacks[-1]["non_mac"] = float(results.loc[mask,
                                                          "energy_non_mac_dense_pj"].sum())
    unit, size = scale_unit([sum(s.values()) for s in stacks], ENERGY_UNITS)
    fig, ax = _axes(ax, (max(7.5, 0.75 * len(kinds) * len(groups) + 4.5), 5.0))
    pitch = len(kinds) + 0.6
    xs = [g * pitch + k for g in range(len(groups)) for k in range(len(kinds))]
    order = ["mac", "rf", "buffer", "dram", "buffer_dram", "index", "network", "static",
             "non_mac"]
    colours = {n: c for n, _, c in ENERGY_PARTS}
    colours["buffer_dram"] = PALETTE[2]
    colours["non_mac"] = PALETTE[3]
    hatches = {"buffer_dram": "xx", "non_mac": "//"}
    for x, stack in zip(xs, stacks, strict=True):
        bottom = 0.0
        for name in order:
            if name not in stack:
                continue
            height = stack[name] / size
            ax.bar(x, height, 0.8, bottom=bottom, color=colours[name],
                   hatch=hatches.get(name), edgecolor=PALETTE[1] if name == "buffer_dram"
                   else "white", linewidth=0.6)
            bottom += height
    totals = [sum(s.values()) / size for s in stacks]
    centres = [g * pitch + (len(kinds) - 1) / 2 for g in range(len(groups))]
    if len(kinds) == 2:
        pairs = list(zip(totals[0::2], totals[1::2], strict=True))
        _bar_labels(ax, centres, [max(p) * 1.01 for p in pairs],
                    [_less_or_more(s, d) for s, d in pairs])
    ax.set_xticks(xs, kinds * len(groups))
    group_axis = ax.secondary_xaxis("bottom")
    group_axis.set_xticks(centres, [label for label, _ in groups], fontweight="bold")
    group_axis.tick_params(length=0, pad=20)
    group_axis.spines["bottom"].set_visible(False)
    ax.set_ylabel(f"energy ({unit})")
    ax.set_ylim(0, max(totals) * 1.12)
    what = "dense run" if dense_only else "sparse vs dense"
    step = ", whole step" if non_mac else ""
    steps = results["step"].nunique() if "step" in results.columns else 1
    over = f", sum of {steps} steps" if steps > 1 else ""
    ax.set_title(f"Energy by component, {what}{step}{over}{_title_suffix(results)}")
    # the legend names the components some bar has (no compaction: no network)
    shown = {name for stack in stacks for name, value in stack.items() if value > 0}
    handles = [Patch(color=c, label=label) for name, label, c in ENERGY_PARTS
               if name in shown or name in ("mac", "rf", "buffer", "dram")]
    if derived is not None:
        handles.insert(4, Patch(facecolor=PALETTE[2], edgecolor=PALETTE[1], hatch="xx",
                                label="buffer + DRAM (dense, not split)"))
    if non_mac:
        handles.append(Patch(facecolor=PALETTE[3], edgecolor="white", hatch="//",
                             label="non-MAC work (vector unit)"))
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False,
              title="component")
    ax.grid(axis="x", visible=False)
    return fig


def _less_or_more(sparse: float, dense: float) -> str:
    """The energy label over a sparse / dense pair: "1.25× less", or "1.25× more" where the
    sparse run spends more; blank where either bar is empty."""
    if sparse <= 0 or dense <= 0:
        return ""
    if dense >= sparse:
        return f"{dense / sparse:.2f}× less"
    return f"{sparse / dense:.2f}× more"


@styled
def gap_by_cause(results: pd.DataFrame, ax: Axes | None = None, *, by: str = "phase",
                 total: bool = True) -> Figure:
    """Why speedup falls short of FLOPs reduction: lost cycles by cause, per group (``by``).

    One horizontal bar per group (default per phase, plus ``all`` when ``total``): causes that
    cost cycles stack to the right of 0, those that save cycles (compaction packing better than
    dense tiles; skipped MACs in layers the dense mapping runs at low utilisation) to the left;
    the black diamond marks the net lost cycles = cycles - cycles_dense / flops_reduction, which
    the parts sum to (:func:`gap_decomposition`). Group labels give speedup and FLOPs reduction.
    ``by="scheme"`` with ``total=False`` compares runs concatenated with a ``scheme`` column.
    """
    table = gap_decomposition(results, (by,), total=total)
    if by == "phase":
        table[by] = [PHASE_NAMES.get(str(p), str(p)) for p in table[by]]
    parts = [c for c, _, _, _ in GAP_PARTS]
    unit, size = scale_unit(np.concatenate([table[parts].to_numpy().ravel(),
                                            table["lost_cycles"].to_numpy()]), CYCLE_UNITS)
    fig, ax = _axes(ax, (10.0, 1.6 + 0.8 * len(table) + 0.9))
    ys = np.arange(len(table))[::-1].astype(float)
    positive = np.zeros(len(table))
    negative = np.zeros(len(table))
    for column, label, colour, hatch in GAP_PARTS:
        values = np.nan_to_num(table[column].to_numpy(dtype=float) / size)
        if not np.any(np.abs(values) > 1e-6 * max(1.0, float(np.abs(positive).max()))):
            continue  # a cause no group has: no bar, no legend entry
        left = np.where(values >= 0, positive, negative)
        ax.barh(ys, values, 0.62, left=left, color=colour, hatch=hatch or None,
                edgecolor="white", linewidth=0.6, label=label)
        positive += np.where(values >= 0, values, 0)
        negative += np.where(values < 0, values, 0)
    lost = table["lost_cycles"].to_numpy(dtype=float) / size
    ax.scatter(lost, ys, marker="D", s=46, color="black", zorder=5,
               label="net lost cycles = cycles − ideal")
    ax.axvline(0, color="black", linewidth=0.8)
    labels = [f"{g}\nspeedup {s:.2f}×\nideal {f:.2f}×" for g, s, f in
              zip(table[by], table["speedup"], table["flops_reduction"], strict=True)]
    ax.set_yticks(ys, labels)
    ax.set_ylim(ys.min() - 0.6, ys.max() + 0.6)
    ax.grid(axis="y", visible=False)
    ax.set_xlabel(f"cycles beyond the ideal ({unit}); ideal = dense cycles / FLOPs reduction")
    ax.set_title(f"Why speedup falls short of FLOPs reduction{_title_suffix(results)}")
    handles, names = ax.get_legend_handles_labels()
    order = [*range(1, len(handles)), 0]  # the causes first, the net marker last
    if ax is fig.axes[0] and len(fig.axes) == 1:
        fig.legend([handles[i] for i in order], [names[i] for i in order], ncols=3,
                   loc="outside lower center", frameon=False)
    else:
        ax.legend([handles[i] for i in order], [names[i] for i in order], frameon=False)
    return fig


# ---------------------------------------------------------------------------------------------
# The scheme table
# ---------------------------------------------------------------------------------------------

SCHEME_AXES = {
    "index_reduction": "index-storage reduction vs element bitmaps (×, log)",
    "energy_reduction": "energy reduction vs dense (×)",
    "flops_reduction": "FLOPs reduction (×)",
}


_LABEL_SPOTS: tuple[tuple[float, float, str, str], ...] = tuple(
    spot for d in (1.0, 2.2, 3.6) for spot in (
        (8 * d, 0, "left", "center"), (-8 * d, 0, "right", "center"),
        (0, 8 * d, "center", "bottom"), (0, -8 * d, "center", "top"),
        (7 * d, 8 * d, "left", "bottom"), (7 * d, -8 * d, "left", "top"),
        (-7 * d, 8 * d, "right", "bottom"), (-7 * d, -8 * d, "right", "top")))


def _place_labels(ax: Axes, xs: Sequence[float], ys: Sequence[float], texts: Sequence[str], *,
                  avoid: Sequence[tuple[float, float]] = ()) -> None:
    """Label points (data coordinates) without overlaps where possible.

    Each label takes the first of a ring of spots around its point (right, left, above,
    below, diagonals; then further out, with a leader line) whose box stays inside the axes and
    overlaps no placed label and no marker (the points themselves and ``avoid``). Needs the
    figure's layout (legend included) to be final, as text is measured in display space.
    """
    fig = ax.figure
    if not hasattr(fig.canvas, "get_renderer"):
        FigureCanvasAgg(fig)  # a bare Figure: measure text with Agg (no window, no pyplot)
    fig.draw_without_rendering()  # settle the layout before measuring
    renderer = fig.canvas.get_renderer()  # type: ignore[attr-defined]
    half = 6 * fig.dpi / 72

    def boxes(points: Sequence[tuple[float, float]]) -> list[Bbox]:
        out = []
        for x, y in points:
            px, py = ax.transData.transform((x, y))
            out.append(Bbox.from_extents(px - half, py - half, px + half, py + half))
        return out

    markers = boxes(list(zip(xs, ys, strict=True)))
    minor = boxes(avoid)
    frame = ax.get_window_extent(renderer)
    placed: list[Bbox] = []
    for x, y, text in zip(xs, ys, texts, strict=True):
        best: tuple[float, Any] | None = None
        for dx, dy, ha, va in _LABEL_SPOTS:
            leader = abs(dx) > 10 or abs(dy) > 10 or (dx != 0 and dy != 0)
            annotation = ax.annotate(
                text, (x, y), xytext=(dx, dy), textcoords="offset points", ha=ha, va=va,
                fontsize=10, arrowprops={"arrowstyle": "-", "color": "#555555",
                                         "linewidth": 0.8, "shrinkA": 1, "shrinkB": 4}
                if leader else None)
            annotation.set_in_layout(False)  # placing a label must not move the axes
            box = annotation.get_window_extent(renderer)
            # Hiding a label or a labelled point is worst, leaving the axes next, crossing a
            # line or a secondary marker least.
            cost = 10 * sum(_overlap(box, other) for other in [*placed, *markers])
            cost += 3 * (box.width * box.height - _overlap(box, frame))
            cost += sum(_overlap(box, other) for other in minor)
            if best is None or cost < best[0]:
                if best is not None:
                    best[1].remove()
                best = (cost, annotation)
            else:
                annotation.remove()
            if cost == 0:
                break
        assert best is not None
        placed.append(best[1].get_window_extent(renderer))


def _overlap(a: Bbox, b: Bbox) -> float:
    width = min(a.x1, b.x1) - max(a.x0, b.x0)
    height = min(a.y1, b.y1) - max(a.y0, b.y0)
    return width * height if width > 0 and height > 0 else 0.0


@styled
def scheme_scatter(table: pd.DataFrame, ax: Axes | None = None, *, x: str = "index_reduction",
                   y: str = "speedup") -> Figure:
    """Structured vs unstructured co-design: one labelled point per scheme.

    ``table`` is the scheme table of :func:`accelsim.report.scheme_table` (columns ``scheme``,
    ``structure``, ``x``, ``y``, ``flops_reduction``, optional ``knn_accuracy`` /
    ``linear_accuracy``). Filled markers: ``y`` (speedup); hollow markers joined by a dotted
    line: the FLOPs reduction the scheme would reach without a gap; triangles, with a
    ``speedup_step`` column: the whole step's speedup (non-MAC work included); the dashed line:
    dense. Colour: structured vs unstructured masks. Each label carries the scheme's accuracy
    change vs dense (``knn_delta``, as the report's summary, else ``linear_delta``; percentage
    points), else its accuracy. ``x`` = ``index_reduction`` is drawn on a log axis.
    """
    require(table, ("scheme", x, y), "scheme_scatter")
    fig, ax = _axes(ax, (8.5, 5.5))
    accuracy = next((c for c in ("knn_delta", "linear_delta", "knn_accuracy",
                                 "linear_accuracy") if c in table.columns
                     and table[c].notna().any()), None)
    kinds = table["structure"] if "structure" in table.columns else pd.Series("scheme",
                                                                               index=table.index)
    colours = {"unstructured": PALETTE[3], "structured": PALETTE[0], "dense": GREY}
    show_ideal = y == "speedup" and "flops_reduction" in table.columns
    show_step = y == "speedup" and "speedup_step" in table.columns and bool(
        table["speedup_step"].notna().any())
    for kind in dict.fromkeys(kinds):
        rows = table[kinds == kind]
        colour = colours.get(str(kind), PALETTE[2])
        ax.scatter(rows[x], rows[y], s=70, color=colour, edgecolor="black",
                   linewidth=0.6, zorder=4,
                   label=f"{kind}: {'MAC-only speedup' if show_step else y.replace('_', ' ')}")
        if show_step:
            ax.scatter(rows[x], rows["speedup_step"], s=60, marker="v", color=colour,
                       edgecolor="black", linewidth=0.5, alpha=0.75, zorder=4,
                       label=f"{kind}: whole-step speedup")
        if show_ideal:
            ax.scatter(rows[x], rows["flops_reduction"], s=50, facecolor="none",
                       edgecolor=colour, linewidth=1.4, zorder=3,
                       label=f"{kind}: FLOPs reduction")
            ax.vlines(rows[x], rows[y], rows["flops_reduction"], colors=colour,
                      linestyles=":", linewidth=1.2)
    texts = []
    for _, row in table.iterrows():
        text = str(row["scheme"])
        if accuracy is not None and pd.notna(row[accuracy]):
            value = float(row[accuracy])
            text += (f" ({value:+.1f} pp)" if accuracy.endswith("_delta")
                     else f" ({100 * value if value <= 1 else value:.1f} % acc.)")
        texts.append(text)
    if x == "index_reduction":
        ax.set_xscale("log")
    values = np.concatenate([table[x].to_numpy(dtype=float)])
    low, high = float(values.min()), float(values.max())
    if x == "index_reduction":
        ax.set_xlim(low / 2.5, high * 12)
    else:
        pad = (high - low) or 1.0
        ax.set_xlim(low - 0.3 * pad, high + 0.9 * pad)
    ys_all = [*table[y], *(table["flops_reduction"] if show_ideal else []),
              *(table["speedup_step"].dropna() if show_step else [])]
    ax.set_ylim(min(0.9, min(ys_all) * 0.9), max(ys_all) * 1.1)
    ax.axhline(1.0, color=GREY, linewidth=1, linestyle="--", label="dense (1×)")
    ax.set_xlabel(SCHEME_AXES.get(x, x))
    ax.set_ylabel(METRIC_LABELS.get(y, y) if y != "speedup" else "× vs dense")
    title = "Speedup vs index storage" if x == "index_reduction" \
        else f"Speedup vs {x.replace('_', ' ')}"
    hardware = list(dict.fromkeys(table["hardware"])) if "hardware" in table.columns else []
    ax.set_title(title + (f" on {hardware[0]}" if len(hardware) == 1 else ""))
    legend = ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    if accuracy is not None:
        legend.set_title("pp: accuracy vs dense, " + accuracy.split("_")[0].replace(
            "knn", "k-NN") if accuracy.endswith("_delta")
            else f"acc. = {accuracy.replace('_', ' ')}")
    avoid: list[tuple[float, float]] = []
    if show_ideal:  # the hollow markers and the dotted lines to them
        for px, low_y, high_y in zip(table[x], table[y], table["flops_reduction"],
                                     strict=True):
            avoid += [(px, v) for v in np.linspace(low_y, high_y, 12)]
    if show_step:
        avoid += [(px, v) for px, v in zip(table[x], table["speedup_step"], strict=True)
                  if pd.notna(v)]
    _place_labels(ax, list(table[x]), list(table[y]), texts, avoid=avoid)
    return fig


# ---------------------------------------------------------------------------------------------
# Sweeps
# ---------------------------------------------------------------------------------------------


ENERGY_NAMES = {"energy_pj": "MAC jobs' energy", "energy_step_pj": "step energy"}
TIME_NAMES = {"seconds": "MAC jobs' time", "seconds_step": "step time"}


def _metric_unit(table: pd.DataFrame, metric: str) -> tuple[str, float]:
    if metric.endswith("_pj"):
        unit, size = scale_unit(table[metric], ENERGY_UNITS)
        name = ENERGY_NAMES.get(metric, metric[:-3].replace("_", " "))
        return f"{name} ({unit})", size
    if metric in TIME_NAMES:
        return f"{TIME_NAMES[metric]} (ms)", 1e-3
    if metric.startswith("cycles"):
        unit, size = scale_unit(table[metric], CYCLE_UNITS)
        return f"{metric.replace('_', ' ')} ({unit})", size
    return METRIC_LABELS.get(metric, metric.replace("_", " ")), 1.0


def _scope(table: pd.DataFrame, scope: str) -> pd.DataFrame:
    if "scope" not in table.columns:
        return table
    chosen = table[table["scope"].astype(str) == scope]
    if chosen.empty:
        raise ValueError(f"no rows with scope {scope!r}; scopes: "
                         f"{sorted(set(table['scope'].astype(str)))}")
    return chosen


def _positions(values: pd.Series) -> tuple[np.ndarray, list[str] | None]:
    """Numeric x positions of parameter values: the values, or ranks for non-numbers."""
    numeric = pd.to_numeric(values, errors="coerce")
    if numeric.notna().all() and values.map(lambda v: not isinstance(v, bool)).all():
        return numeric.to_numpy(dtype=float), None
    levels = list(dict.fromkeys(values.astype(str)))
    return np.array([levels.index(str(v)) for v in values], dtype=float), levels


def pretty(metric: str) -> str:
    """A metric's name for titles and captions."""
    named = {**ENERGY_NAMES, **TIME_NAMES, "speedup_efficiency": "speedup / FLOPs reduction"}
    if metric in named:
        return named[metric]
    return (metric[:-3] if metric.endswith("_pj") else metric).replace("_", " ")


def _short(key: str) -> str:
    return key.rsplit(".", 1)[-1]


LINE_STYLES = ("-", "--", ":", "-.")


@styled
def metric_vs_param(table: pd.DataFrame, metric: str, param: str, ax: Axes | None = None, *,
                    scope: str = "total") -> Figure:
    """A sweep metric against one parameter: one line per trace (colour) and per combination of
    the other varied parameters (line style and marker). ``scope``: which of the sweep's
    total/fw/bd/wg/branch1/branch2 rows to draw. Numeric parameters spanning a factor of 8 or
    more get a log axis; booleans and strings are categories."""
    require(table, (metric, param), "metric_vs_param")
    rows = _scope(table, scope)
    others = [c for c in varied_columns(rows) if c != param and rows[c].nunique() > 1]
    label, size = _metric_unit(rows, metric)
    fig, ax = _axes(ax, (9.5, 5.0))
    positions, levels = _positions(rows[param])
    rows = rows.assign(_x=positions)
    traces = list(dict.fromkeys(rows["trace"].astype(str))) if "trace" in rows.columns \
        else [""]
    combos = list(dict.fromkeys(map(tuple, rows[others].astype(str).to_numpy().tolist()))) \
        if others else [()]
    markers = "osD^vP*X"
    for t, name in enumerate(traces):
        for c, combo in enumerate(combos):
            part = rows[rows["trace"].astype(str) == name] if name else rows
            for column, value in zip(others, combo, strict=True):
                part = part[part[column].astype(str) == value]
            if part.empty:
                continue
            part = part.sort_values("_x")
            extra = ", ".join(f"{_short(k)}={v}" for k, v in zip(others, combo, strict=True))
            text = ", ".join(x for x in (name, extra) if x) or metric
            ax.plot(part["_x"], part[metric] / size, color=PALETTE[t % len(PALETTE)],
                    linestyle=LINE_STYLES[c % len(LINE_STYLES)],
                    marker=markers[c % len(markers)], linewidth=1.8, markersize=6, label=text)
    if levels is not None:
        ax.set_xticks(range(len(levels)), levels)
        ax.set_xlim(-0.4, len(levels) - 0.6)
    else:
        values = sorted(set(positions))
        if values[0] > 0 and values[-1] / values[0] >= 8:
            ax.set_xscale("log")
        ax.set_xticks(values, [f"{v:g}" for v in values])
        ax.minorticks_off()
    ax.set_xlabel(param)
    ax.set_ylabel(label)
    scope_text = "" if scope == "total" else f" ({scope})"
    ax.set_title(f"{pretty(metric)} vs {param}{scope_text}")
    title = "trace" + (", " + ", ".join(_short(k) for k in others) if others else "")
    ax.legend(title=title, frameon=False, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return fig


@styled
def heatmap(table: pd.DataFrame, metric: str, param_x: str, param_y: str,
            ax: Axes | Sequence[Axes] | None = None, *, scope: str = "total",
            trace: str | None = None, note: str = "") -> Figure:
    """A sweep metric over a two-parameter grid, one panel per trace (or just ``trace``).

    Cells are annotated with their values. Where other varied parameters take several values
    the cell shows the mean over them (the title says so): filter the table first to fix them.
    Colour map viridis (perceptually uniform, colour-blind safe). ``note`` ends the title.
    """
    require(table, (metric, param_x, param_y), "heatmap")
    rows = _scope(table, scope)
    if trace is not None and "trace" in rows.columns:
        rows = rows[rows["trace"].astype(str) == trace]
    averaged = [c for c in varied_columns(rows) if c not in (param_x, param_y)
                and rows[c].nunique() > 1]
    traces = list(dict.fromkeys(rows["trace"].astype(str))) if "trace" in rows.columns \
        else [""]
    label, size = _metric_unit(rows, metric)
    axes_list = [ax] if isinstance(ax, Axes) else list(ax) if ax is not None else None
    if axes_list is None:
        fig = Figure(figsize=(min(5.2 * len(traces), 16) + 1.0, 4.6), layout="constrained")
        axes_list = list(fig.subplots(1, len(traces), squeeze=False)[0])
    elif len(axes_list) != len(traces):
        raise ValueError(f"heatmap: {len(traces)} traces need {len(traces)} Axes")
    fig = axes_list[0].figure
    x_levels = list(dict.fromkeys(rows[param_x].astype(str)))
    y_levels = list(dict.fromkeys(rows[param_y].astype(str)))
    low = float(rows[metric].min()) / size
    high = float(rows[metric].max()) / size
    image = None
    for axis, name in zip(axes_list, traces, strict=True):
        part = rows[rows["trace"].astype(str) == name] if name else rows
        grid = (part.assign(_x=part[param_x].astype(str), _y=part[param_y].astype(str))
                .groupby(["_y", "_x"])[metric].mean().unstack("_x")
                .reindex(index=y_levels, columns=x_levels)) / size
        values = grid.to_numpy(dtype=float)
        image = axis.imshow(values, cmap="viridis", vmin=low, vmax=high, origin="lower",
                            aspect="auto")
        for (i, j), value in np.ndenumerate(values):
            if math.isnan(value):
                continue
            shade = image.cmap(image.norm(value))
            dark = sum(to_rgb(shade)) / 3 < 0.5
            text = f"{value:.2f}" if abs(high) < 100 else f"{value:.3g}"
            axis.text(j, i, text, ha="center", va="center", fontsize=10,
                      color="white" if dark else "black")
        axis.set_xticks(range(len(x_levels)), x_levels)
        axis.set_yticks(range(len(y_levels)), y_levels)
        axis.set_xlabel(param_x)
        axis.set_ylabel(param_y)
        axis.grid(False)
        axis.set_title(name or metric)
    assert image is not None
    fig.colorbar(image, ax=axes_list, label=label, shrink=0.9)  # type: ignore[arg-type]
    scope_text = "" if scope == "total" else f" ({scope})"
    if ax is None:
        mean = f", mean over {', '.join(averaged)}" if averaged else ""
        fig.suptitle(f"{pretty(metric)} over {param_x} × {param_y}{scope_text}{mean}{note}")
    return fig  # type: ignore[return-value]


def _point_label(row: pd.Series, keys: Sequence[str]) -> str:
    return ", ".join(f"{_short(key)}={row[key]}" for key in keys)


@styled
def pareto(table: pd.DataFrame, ax: Axes | None = None, *, x: str = "energy_pj",
           y: str = "speedup", scope: str = "total", label: str | None = None,
           lower_y: bool = False, per_trace: bool = False) -> Figure:
    """Every sweep point as ``x`` (lower is better) vs ``y`` (higher is better, or lower with
    ``lower_y``), coloured by trace, with the Pareto front highlighted: over all points, or with
    ``per_trace`` one front per trace in its colour. Front points (at most 10) are labelled by
    the ``label`` column, or by default with their varied parameters (``rows=16,
    compaction=True``)."""
    require(table, (x, y), "pareto")
    rows = _scope(table, scope).reset_index(drop=True)
    x_label, x_size = _metric_unit(rows, x)
    y_label, y_size = _metric_unit(rows, y)
    fig, ax = _axes(ax, (9.0, 5.5))
    traces = list(dict.fromkeys(rows["trace"].astype(str))) if "trace" in rows.columns \
        else [""]
    markers = "osD^vP*X"
    ranked = rows.assign(_goal=-rows[y] if lower_y else rows[y])
    fronts = []
    for i, name in enumerate(traces):
        part = ranked[ranked["trace"].astype(str) == name] if name else ranked
        colour = PALETTE[i % len(PALETTE)]
        ax.scatter(part[x] / x_size, part[y] / y_size, s=36, color=colour,
                   marker=markers[i % len(markers)], alpha=0.85, label=name or "points",
                   zorder=3)
        if per_trace:
            front = part[pareto_front(part, x, "_goal")].sort_values(x)
            ax.step(front[x] / x_size, front[y] / y_size, where="post", color=colour,
                    linewidth=1.2, zorder=2)
            fronts.append(front)
    if not per_trace:
        front = ranked[pareto_front(ranked, x, "_goal")].sort_values(x)
        ax.step(front[x] / x_size, front[y] / y_size, where="post", color="black",
                linewidth=1.4, zorder=2)
        fronts.append(front)
    front = pd.concat(fronts)
    ax.scatter(front[x] / x_size, front[y] / y_size, s=130, facecolor="none",
               edgecolor="black", linewidth=1.6, zorder=4,
               label="Pareto front" + (" of each trace" if per_trace else ""))
    ax.set_xlabel(f"{x_label} — lower is better")
    ax.set_ylabel(f"{y_label} — {'lower' if lower_y else 'higher'} is better")
    scope_text = "" if scope == "total" else f" ({scope})"
    ax.set_title(f"Pareto front: {pretty(y)} vs {pretty(x)}{scope_text}")
    ax.legend(frameon=False, loc="upper left", bbox_to_anchor=(1.01, 1.0), title="trace")
    keys = varied_columns(rows)
    if len(front) <= (4 if per_trace and len(traces) > 1 else 10) and (
            label in rows.columns or (label is None and keys)):
        texts = [str(row[label]) if label else _point_label(row, keys)
                 for _, row in front.iterrows()]
        others = rows.drop(index=front.index)
        _place_labels(ax, list(front[x] / x_size), list(front[y] / y_size), texts,
                      avoid=list(zip(others[x] / x_size, others[y] / y_size, strict=True)))
    return fig
