"""Figures of a sweep's ``results.csv`` (one row per point and scope): a metric against one
varied key, a heatmap over two, and the Pareto front of time against energy. Pure functions
``(table, ..., ax=None) -> Figure`` like :mod:`accelsim.plots`, which re-exports them."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.colors import to_rgb
from matplotlib.figure import Figure

from accelsim.analysis import (
    pareto_front,
    require,
    varied_columns,
)
from accelsim.plot_style import METRIC_LABELS, PALETTE, new_axes, place_labels, styled
from accelsim.units import CYCLE_UNITS, ENERGY_UNITS, scale_unit

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
    fig, ax = new_axes(ax, (9.5, 5.0))
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
    fig, ax = new_axes(ax, (9.0, 5.5))
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
        place_labels(ax, list(front[x] / x_size), list(front[y] / y_size), texts,
                      avoid=list(zip(others[x] / x_size, others[y] / y_size, strict=True)))
    return fig
