"""Numba hot loops of the sparse replay, and nothing else: pure functions over contiguous arrays.

Numba settings live here only. No config objects, dicts or logging inside a kernel; the typed
wrappers in :mod:`accelsim.engine.sparse` check inputs and call these. Every kernel has a readable
twin in ``tests/reference_model.py`` and a differential test.
"""

from __future__ import annotations

import numpy as np
from numba import njit

JIT = {"cache": True, "nogil": True, "fastmath": False}


@njit(**JIT)
def schedule_passes(work: np.ndarray, unit_idx: np.ndarray, row_idx: np.ndarray,
                    col_idx: np.ndarray, rows: int, qcols: int, sync_tiles: int,
                    compaction: bool, indices_per_cycle: int) -> tuple[int, int, int]:
    """Cycles of a work matrix on a rows x qcols grid of queues (see engine/sparse.py).

    work[i, j]: reduction steps (cycles) of unit (i, j); unit (i, j) goes to queue
    (i % rows, j % qcols) in tile (i // rows, j // qcols). Column tiles run one after another;
    inside a column tile, every ``sync_tiles`` consecutive row tiles form a pass, after which all
    queues synchronise. A pass lasts as long as its slowest queue (no compaction) or
    ceil(total steps / queues) (compaction dispatches steps evenly), and at least as long as the
    decoder needs: ceil(indices / indices_per_cycle), where indices = sum of unit_idx over the
    pass's units + row_idx of its rows + col_idx of its unit columns.

    Returns (cycles, decoder stall cycles, decoder indices).
    """
    n_rows, n_cols = work.shape
    row_tiles = (n_rows + rows - 1) // rows
    col_tiles = (n_cols + qcols - 1) // qcols
    queue_work = np.zeros(rows * qcols, dtype=np.int64)
    cycles = 0
    stall = 0
    indices_total = 0
    for tc in range(col_tiles):
        c0 = tc * qcols
        c1 = min(c0 + qcols, n_cols)
        col_part = 0
        for j in range(c0, c1):
            col_part += col_idx[j]
        tr = 0
        while tr < row_tiles:
            t_end = min(tr + sync_tiles, row_tiles)
            r0 = tr * rows
            r1 = min(t_end * rows, n_rows)
            queue_work[:] = 0
            total = 0
            indices = col_part
            for i in range(r0, r1):
                qi = (i % rows) * qcols
                indices += row_idx[i]
                for j in range(c0, c1):
                    w = work[i, j]
                    queue_work[qi + (j - c0)] += w
                    total += w
                    indices += unit_idx[i, j]
            if compaction:
                compute = (total + rows * qcols - 1) // (rows * qcols)
            else:
                compute = 0
                for q in range(rows * qcols):
                    if queue_work[q] > compute:
                        compute = queue_work[q]
            decode = 0
            if indices > 0:
                decode = (indices + indices_per_cycle - 1) // indices_per_cycle
            if decode > compute:
                stall += decode - compute
                cycles += decode
            else:
                cycles += compute
            indices_total += indices
            tr = t_end
    return cycles, stall, indices_total


@njit(**JIT)
def popcount64(x: np.uint64) -> int:
    """Number of set bits of a 64-bit word."""
    x = x - ((x >> np.uint64(1)) & np.uint64(0x5555555555555555))
    x = (x & np.uint64(0x3333333333333333)) + ((x >> np.uint64(2)) & np.uint64(0x3333333333333333))
    x = (x + (x >> np.uint64(4))) & np.uint64(0x0F0F0F0F0F0F0F0F)
    return int((x * np.uint64(0x0101010101010101)) >> np.uint64(56))


@njit(**JIT)
def masked_step_counts(active_bits: np.ndarray, always_bits: np.ndarray,
                       allowed_bits: np.ndarray) -> np.ndarray:
    """Steps of every (row, unit) when the reduction is sparse per row.

    active_bits[i, w]: reduction steps row i activates (bit-packed, 64 per word);
    always_bits[j, w]: steps unit j always runs (its dense base path);
    allowed_bits[j, w]: steps unit j can run at all (its weights are not all zero).
    Returns counts[i, j] = popcount((active[i] | always[j]) & allowed[j]) (steps, int64).
    """
    n_rows, words = active_bits.shape
    n_units = always_bits.shape[0]
    counts = np.empty((n_rows, n_units), dtype=np.int64)
    for i in range(n_rows):
        for j in range(n_units):
            total = 0
            for w in range(words):
                total += popcount64((active_bits[i, w] | always_bits[j, w]) & allowed_bits[j, w])
            counts[i, j] = total
    return counts
