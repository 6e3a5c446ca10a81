"""Compaction under the operand stage: what the dispatcher can balance inside each chunk.

With ``decoder.compaction`` the dispatcher spreads the units of each pass part (its whole row
tiles, then its partial last tile on the queues it occupies, as in
:func:`accelsim.kernels.schedule_passes`) over the part's Q queues. The operand stage
(:mod:`accelsim.engine.stage`) broadcasts D = ``pe_array.stage_steps`` reduction steps at a
time, so the dispatcher balances one chunk at a time: a unit may sit on a different queue in
each chunk but never on two at once, and chunk x lasts

    max(ceil(W_x / Q), L_x)

where W_x is the part's unit-steps in x and L_x its busiest unit's steps in x (at most D). A
pass lasts the sum over its chunks and parts, or what the static staged mapping gives where
that is shorter (the dispatcher keeps the static mapping then, as without a stage).

What each unit runs in a chunk is the static stage's step sets; FW's and WG's packed slots
run what :mod:`accelsim.engine.compaction` says (FW: their own base steps and their segment's
lead column's conditional steps; WG: the pixels where they are packed). The functions here
mirror the static stage kernels of :mod:`accelsim.kernels` (``staged_columns_rc`` and so on).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from accelsim.kernels import compacted_chunks, compacted_chunks_rt


@dataclass(frozen=True)
class PassParts:
    """The parts the dispatcher balances one after another: each pass's whole row tiles, then
    its partial last row tile (rows [start[p], start[p + 1]) on ``queue_rows[p]`` rows)."""

    start: np.ndarray       # int64 (parts + 1,): first row of each part, then the total
    pass_of: np.ndarray     # int64 (parts,): the pass each part belongs to
    queue_rows: np.ndarray  # int64 (parts,): queue rows the part occupies
    n_passes: int

    @property
    def sizes(self) -> np.ndarray:
        """int64 (parts,): rows in each part."""
        return np.diff(self.start)

    def row_sums(self, per_row: np.ndarray) -> np.ndarray:
        """int64 (parts, ...): ``per_row`` (rows, ...) summed over each part's rows."""
        return np.add.reduceat(per_row, self.start[:-1], axis=0, dtype=np.int64)

    def per_pass(self, per_part: np.ndarray) -> np.ndarray:
        """int64 (passes, ...): ``per_part`` (parts, ...) summed over each pass's parts."""
        out = np.zeros((self.n_passes, *per_part.shape[1:]), dtype=np.int64)
        np.add.at(out, self.pass_of, per_part)
        return out


def pass_parts(total: int, rows: int, pass_len: int) -> PassParts:
    """The :class:`PassParts` of ``total`` rows on ``rows`` queue rows, ``pass_len`` rows a
    pass."""
    starts = np.arange(0, total, pass_len, dtype=np.int64)
    stops = np.minimum(starts + pass_len, total)
    whole = starts + (stops - starts) // rows * rows
    bounds = np.stack([starts, whole, stops], axis=1)  # (passes, 3)
    has = np.stack([whole > starts, stops > whole], axis=1)
    passes = np.repeat(np.arange(starts.shape[0], dtype=np.int64), has.sum(axis=1))
    first = bounds[:, :2][has]
    queue_rows = np.where(has, np.stack([np.full_like(starts, rows), stops - whole], axis=1),
                          0)[has]
    return PassParts(np.append(first, total).astype(np.int64), passes,
                     queue_rows.astype(np.int64), starts.shape[0])


def column_tiles(n_cols: int, qcols: int) -> list[tuple[int, int]]:
    """The column tiles of ``n_cols`` unit columns on ``qcols`` queue columns: [(c0, c1)]."""
    return [(c0, min(c0 + qcols, n_cols)) for c0 in range(0, n_cols, qcols)]


def compacted_columns_rc(parts: PassParts, fixed: np.ndarray, live: np.ndarray,
                         activity: np.ndarray | None, qcols: int) -> np.ndarray:
    """Compute cycles, int64 (passes, column tiles), of steps that belong to unit columns with
    activity per unit (FW): unit (i, j) runs fixed[j, x] steps in chunk x, plus live[j, x]
    where activity[i, j] (bool (rows, J); None: never)."""
    sizes = parts.sizes
    tiles = column_tiles(fixed.shape[0], qcols)
    active = (parts.row_sums(activity) if activity is not None
              else np.zeros((sizes.shape[0], fixed.shape[0]), dtype=np.int64))
    out = np.zeros((parts.n_passes, len(tiles)), dtype=np.int64)
    for tc, (c0, c1) in enumerate(tiles):
        vectors = np.concatenate([fixed[c0:c1], fixed[c0:c1] + live[c0:c1]]).T
        counts = np.concatenate([sizes[:, None] - active[:, c0:c1], active[:, c0:c1]], axis=1)
        out[:, tc] = parts.per_pass(compacted_chunks(
            counts, np.ascontiguousarray(vectors, dtype=np.int64),
            parts.queue_rows * (c1 - c0)))
    return out


def compacted_columns_rt(parts: PassParts, fixed: np.ndarray, live: np.ndarray,
                         activity: np.ndarray | None, classes: np.ndarray, qcols: int,
                         stage: int) -> np.ndarray:
    """Compute cycles, int64 (passes, column tiles), of steps that belong to unit columns with
    activity per row and step (BD): unit (i, j) runs fixed[c, x] steps in chunk x (int64
    (C, chunks)), plus the steps t of x with live[c, t] (bool (C, T)) and activity[t, i]
    (bool (T, rows); None: never), c = classes[j]."""
    n_steps = live.shape[1]
    if activity is None:  # no live steps: the kernel reads no row's activity
        active_rows = np.zeros((parts.sizes.shape[0], n_steps), dtype=np.int64)
        active8 = np.zeros((1, 1), dtype=np.uint8)
    else:
        active_rows = np.add.reduceat(activity, parts.start[:-1], axis=1, dtype=np.int64).T
        active8 = np.ascontiguousarray(activity, dtype=np.uint8)
    out = np.zeros((parts.n_passes, -(-classes.shape[0] // qcols)), dtype=np.int64)
    live8 = np.ascontiguousarray(live, dtype=np.uint8)
    fixed = np.ascontiguousarray(fixed, dtype=np.int64)
    active_rows = np.ascontiguousarray(active_rows)
    for tc in range(out.shape[1]):
        out[:, tc] = parts.per_pass(compacted_chunks_rt(
            parts.start, parts.queue_rows, fixed, live8, active8, active_rows, classes, tc,
            qcols, stage))
    return out


def compacted_rows_jt(parts: PassParts, fixed: np.ndarray, live: np.ndarray,
                      lengths: np.ndarray, active: np.ndarray, qcols: int) -> np.ndarray:
    """Compute cycles, int64 (passes, column tiles), of WG over output-channel lanes: unit
    (i, j) runs every step of a chunk (``fixed``, bool (rows, J)) or unit column j's active
    steps in it (``live``; active[j, x], at most ``lengths[x]``, the steps in chunk x)."""
    tiles = column_tiles(fixed.shape[1], qcols)
    fixed_parts = parts.row_sums(fixed)  # (parts, J)
    live_parts = parts.row_sums(live)
    out = np.zeros((parts.n_passes, len(tiles)), dtype=np.int64)
    for tc, (c0, c1) in enumerate(tiles):
        vectors = np.concatenate([lengths[:, None], active[c0:c1].T], axis=1)
        counts = np.concatenate([fixed_parts[:, c0:c1].sum(axis=1, keepdims=True),
                                 live_parts[:, c0:c1]], axis=1)
        out[:, tc] = parts.per_pass(compacted_chunks(
            counts, np.ascontiguousarray(vectors, dtype=np.int64),
            parts.queue_rows * (c1 - c0)))
    return out


def compacted_rows_rt(parts: PassParts, fixed: np.ndarray, live: np.ndarray,
                      lengths: np.ndarray, active: np.ndarray, qcols: int) -> np.ndarray:
    """Compute cycles, int64 (passes, column tiles), of transposed WG (lanes over k): unit
    (i, j) runs every step of a chunk (``fixed``, bool (rows, J)) or row i's active steps in
    it (``live``; active[i, x], at most ``lengths[x]``). One kind per row (its active steps)
    and one for every fixed unit; the kernel's parts are the column tiles of one pass part."""
    tiles = column_tiles(fixed.shape[1], qcols)
    starts = np.array([c0 for c0, _ in tiles])
    widths = np.array([c1 - c0 for c0, c1 in tiles], dtype=np.int64)
    fixed_tiles = np.add.reduceat(fixed, starts, axis=1, dtype=np.int64)  # (rows, tiles)
    live_tiles = np.add.reduceat(live, starts, axis=1, dtype=np.int64)
    per_part = np.zeros((parts.sizes.shape[0], len(tiles)), dtype=np.int64)
    for part in range(parts.sizes.shape[0]):
        i0, i1 = parts.start[part], parts.start[part + 1]
        vectors = np.concatenate([lengths[:, None], active[i0:i1].T], axis=1)
        counts = np.concatenate([fixed_tiles[i0:i1].sum(axis=0)[:, None],
                                 live_tiles[i0:i1].T], axis=1)
        per_part[part] = compacted_chunks(counts, np.ascontiguousarray(vectors, dtype=np.int64),
                                          parts.queue_rows[part] * widths)
    return parts.per_pass(per_part)
