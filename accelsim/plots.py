"""Plots of accelsim results: pure functions ``(df, ax=None, **opts) -> Figure``, never simulating.

Every function takes a tidy table that accelsim wrote (a run's ``results.csv``, the scheme table
of :mod:`accelsim.report_schemes`, or a sweep's ``results.csv``), draws into ``ax`` when given (or
into a new :class:`matplotlib.figure.Figure`, without pyplot and its global state) and returns the
figure.
Nothing here picks a backend: saving a figure to PNG or SVG works with any. Styles: fonts of at
least 10 pt, the Okabe-Ito colour-blind-safe palette, a title, axis labels with units and a legend.

Result tables (one row per job; see ``docs/reports.md``):

- ``per_layer_speedup``, ``flops_vs_hardware``, ``energy_breakdown``, ``gap_by_cause`` take a
  run's results (columns of ``results.csv``);
- ``scheme_scatter`` takes the scheme table (one row per scheme);
- ``metric_vs_param``, ``heatmap``, ``pareto`` take a sweep's ``results.csv`` (drawn in
  :mod:`accelsim.sweep_plots`, re-exported here).

:func:`accelsim.analysis.gap_decomposition` is the table ``gap_by_cause`` draws: lost cycles
split by cause. The shared style is :mod:`accelsim.plot_style`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from accelsim.analysis import (
    PHASE_ORDER,
    aggregate,
    dense_energy_breakdown,
    gap_decomposition,
    require,
)
from accelsim.plot_style import GREY, METRIC_LABELS, PALETTE, new_axes, place_labels, styled
from accelsim.units import CYCLE_UNITS, ENERGY_UNITS, scale_unit

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
    ("stage_cycles", "waiting at operand-stage chunks", PALETTE[2], ""),
    ("imbalance_cycles", "load imbalance beyond the dense mapping", PALETTE[1], ""),
    ("decoder_cycles", "decoder stalls", PALETTE[4], ""),
    ("memory_cycles", "memory-bound beyond the dense run", PALETTE[0], ""),
    ("placement_cycles", "where the skipped MACs fall", PALETTE[5], ".."),
)

# ---------------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------------




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
    fig, ax = new_axes(ax, (max(7.0, 1.1 * len(labels) + 2), 4.6))
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
    fig, ax = new_axes(ax, (max(7.5, 0.75 * len(kinds) * len(groups) + 4.5), 5.0))
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
    fig, ax = new_axes(ax, (10.0, 1.6 + 0.8 * len(table) + 0.9))
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




@styled
def scheme_scatter(table: pd.DataFrame, ax: Axes | None = None, *, x: str = "index_reduction",
                   y: str = "speedup") -> Figure:
    """Structured vs unstructured co-design: one labelled point per scheme.

    ``table`` is the scheme table of :func:`accelsim.report_schemes.scheme_table` (columns
    ``scheme``, ``structure``, ``x``, ``y``, ``flops_reduction``, optional ``knn_accuracy`` /
    ``linear_accuracy``). Filled markers: ``y`` (speedup); hollow markers joined by a dotted
    line: the FLOPs reduction the scheme would reach without a gap; triangles, with a
    ``speedup_step`` column: the whole step's speedup (non-MAC work included); the dashed line:
    dense. Colour: structured vs unstructured masks. Each label carries the scheme's accuracy
    change vs dense (``knn_delta``, as the report's summary, else ``linear_delta``; percentage
    points), else its accuracy. ``x`` = ``index_reduction`` is drawn on a log axis.
    """
    require(table, ("scheme", x, y), "scheme_scatter")
    fig, ax = new_axes(ax, (8.5, 5.5))
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
    place_labels(ax, list(table[x]), list(table[y]), texts, avoid=avoid)
    return fig


# The sweep figures live in accelsim.sweep_plots; plots is the one place to find every figure.
from accelsim.sweep_plots import heatmap, metric_vs_param, pareto, pretty  # noqa: E402

__all__ = ["energy_breakdown", "flops_vs_hardware", "gap_by_cause", "heatmap", "metric_vs_param",
           "pareto", "per_layer_speedup", "pretty", "scheme_scatter"]
