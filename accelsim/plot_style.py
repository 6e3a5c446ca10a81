"""The figures' shared style and drawing helpers: the Okabe-Ito palette, fonts and grid
(:func:`styled`), a new constrained-layout figure without pyplot (:func:`new_axes`) and point
labels placed without overlaps (:func:`place_labels`)."""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import matplotlib as mpl
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.transforms import Bbox

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

# Axis labels of summary metrics (their units: the sweep figures scale pJ and cycles).
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


def new_axes(ax: Axes | None, figsize: tuple[float, float]) -> tuple[Figure, Axes]:
    """``ax`` and its figure, or a new constrained-layout figure of ``figsize`` inches with one
    axes (a bare :class:`Figure`: no pyplot)."""
    if ax is not None:
        return ax.figure, ax  # type: ignore[return-value]
    fig = Figure(figsize=figsize, layout="constrained")
    return fig, fig.add_subplot()


_LABEL_SPOTS: tuple[tuple[float, float, str, str], ...] = tuple(
    spot for d in (1.0, 2.2, 3.6) for spot in (
        (8 * d, 0, "left", "center"), (-8 * d, 0, "right", "center"),
        (0, 8 * d, "center", "bottom"), (0, -8 * d, "center", "top"),
        (7 * d, 8 * d, "left", "bottom"), (7 * d, -8 * d, "left", "top"),
        (-7 * d, 8 * d, "right", "bottom"), (-7 * d, -8 * d, "right", "top")))


def place_labels(ax: Axes, xs: Sequence[float], ys: Sequence[float], texts: Sequence[str], *,
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
    for x, y, text in _merge_coincident(ax, xs, ys, texts, 2 * half):
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
            cost = 10 * sum(overlap_area(box, other) for other in [*placed, *markers])
            cost += 3 * (box.width * box.height - overlap_area(box, frame))
            cost += sum(overlap_area(box, other) for other in minor)
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


def _merge_coincident(ax: Axes, xs: Sequence[float], ys: Sequence[float],
                      texts: Sequence[str], within: float) -> list[tuple[float, float, str]]:
    """The labels of points less than ``within`` display units apart (a marker's width)
    joined into one, a line each, at the first point: no ring of spots around one spot holds
    several labels."""
    groups: list[tuple[float, float, float, float, list[str]]] = []
    for x, y, text in zip(xs, ys, texts, strict=True):
        px, py = ax.transData.transform((x, y))
        for gx, gy, _, _, lines in groups:
            if abs(px - gx) < within and abs(py - gy) < within:
                lines.append(text)
                break
        else:
            groups.append((px, py, x, y, [text]))
    return [(x, y, "\n".join(lines)) for _, _, x, y, lines in groups]


def overlap_area(a: Bbox, b: Bbox) -> float:
    """Area (display units squared) where boxes ``a`` and ``b`` overlap."""
    width = min(a.x1, b.x1) - max(a.x0, b.x0)
    height = min(a.y1, b.y1) - max(a.y0, b.y0)
    return width * height if width > 0 and height > 0 else 0.0
