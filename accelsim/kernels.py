"""Numba hot loops of the sparse replay, and nothing else: pure functions over contiguous arrays.

Numba settings live here only. No config objects, dicts or logging inside a kernel; the typed
wrappers in :mod:`accelsim.engine.sparse` check inputs and call these. Every kernel has a readable
twin in ``tests/reference_model.py`` (or an inline one in the tests) and a differential test.
"""

from __future__ import annotations

import numpy as np
from numba import njit

JIT = {"cache": True, "nogil": True, "fastmath": False}


@njit(**JIT)
def schedule_passes(counts: np.ndarray, classes: np.ndarray, lanes: np.ndarray,
                    unit_idx: np.ndarray, has_unit_idx: bool, row_idx: np.ndarray,
                    col_idx: np.ndarray, rows: int, qcols: int, sync_tiles: int,
                    compaction: bool, indices_per_cycle: int) -> tuple[int, int, int, int]:
    """Cycles of a work matrix on a rows x qcols grid of queues (see engine/sparse.py).

    The work of unit (i, j) is counts[i, classes[j]] reduction steps (cycles): units whose work
    depends on the row in the same way share a class (a plain matrix has classes = arange(J)).
    Unit (i, j) goes to queue (i % rows, j % qcols) in tile (i // rows, j // qcols). Column
    tiles run one after another; inside a column tile, every ``sync_tiles`` consecutive row tiles
    form a pass, after which all queues synchronise. Without compaction a pass lasts as long as
    its slowest queue. With compaction every tile's steps are dispatched evenly over the queues
    that hold a unit of that tile: the tile lasts ceil(steps / occupied queues), and the pass is
    the sum of its tiles. A pass lasts at least as long as the decoder needs:
    ceil(indices / indices_per_cycle), with indices = unit_idx of its units (if
    ``has_unit_idx``) + row_idx of its rows + col_idx of its unit columns.

    Returns (cycles, decoder stall cycles, decoder indices, MACs issued = sum over units of
    steps x lanes[j]).
    """
    n_rows = counts.shape[0]
    n_cols = classes.shape[0]
    row_tiles = (n_rows + rows - 1) // rows
    col_tiles = (n_cols + qcols - 1) // qcols
    per_class = np.zeros((rows, qcols), dtype=np.int64)
    local_class = np.zeros(qcols, dtype=np.int64)
    local_of_col = np.zeros(qcols, dtype=np.int64)
    multiplicity = np.zeros(qcols, dtype=np.int64)
    local_lanes = np.zeros(qcols, dtype=np.int64)
    tile_work = np.zeros(sync_tiles, dtype=np.int64)
    issued = 0
    cycles = 0
    stall = 0
    indices_total = 0
    for tc in range(col_tiles):
        c0 = tc * qcols
        c1 = min(c0 + qcols, n_cols)
        width = c1 - c0
        col_part = 0
        n_local = 0
        for j in range(c0, c1):
            col_part += col_idx[j]
            found = -1
            for lc in range(n_local):
                if local_class[lc] == classes[j]:
                    found = lc
                    break
            if found < 0:
                found = n_local
                local_class[n_local] = classes[j]
                multiplicity[n_local] = 0
                local_lanes[n_local] = 0
                n_local += 1
            local_of_col[j - c0] = found
            multiplicity[found] += 1
            local_lanes[found] += lanes[j]
        tr = 0
        while tr < row_tiles:
            t_end = min(tr + sync_tiles, row_tiles)
            r0 = tr * rows
            r1 = min(t_end * rows, n_rows)
            per_class[:, :n_local] = 0
            tile_work[:] = 0
            indices = col_part
            for i in range(r0, r1):
                r = i % rows
                indices += row_idx[i]
                row_total = 0
                for lc in range(n_local):
                    w = counts[i, local_class[lc]]
                    per_class[r, lc] += w
                    row_total += w * multiplicity[lc]
                    issued += w * local_lanes[lc]
                tile_work[(i - r0) // rows] += row_total
                if has_unit_idx:
                    for j in range(c0, c1):
                        indices += unit_idx[i, j]
            compute = 0
            if compaction:
                for t in range(t_end - tr):
                    occupied = min(rows, r1 - r0 - t * rows) * width
                    compute += (tile_work[t] + occupied - 1) // occupied
            else:
                for r in range(min(rows, r1 - r0)):
                    for lc in range(n_local):
                        if per_class[r, lc] > compute:
                            compute = per_class[r, lc]
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
    return cycles, stall, indices_total, issued


@njit(**JIT)
def group_any(mask: np.ndarray, unit: int) -> np.ndarray:
    """OR over groups of ``unit`` consecutive columns: uint8 (R, L) -> bool (R, ceil(L/unit))."""
    n_rows, length = mask.shape
    units = (length + unit - 1) // unit
    out = np.zeros((n_rows, units), dtype=np.bool_)
    for i in range(n_rows):
        for j in range(units):
            stop = min((j + 1) * unit, length)
            for c in range(j * unit, stop):
                if mask[i, c]:
                    out[i, j] = True
                    break
    return out


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
    """Steps of every (row, class) when the reduction is sparse per row.

    active_bits[i, w]: reduction steps row i activates (bit-packed, 64 per word);
    always_bits[c, w]: steps class c always runs (its dense base path);
    allowed_bits[c, w]: steps class c can run at all (its weights are not all zero).
    Returns counts[i, c] = popcount((active[i] | always[c]) & allowed[c]) (steps, int32).
    """
    n_rows, words = active_bits.shape
    n_classes = always_bits.shape[0]
    counts = np.empty((n_rows, n_classes), dtype=np.int32)
    for i in range(n_rows):
        for c in range(n_classes):
            total = 0
            for w in range(words):
                total += popcount64((active_bits[i, w] | always_bits[c, w]) & allowed_bits[c, w])
            counts[i, c] = total
    return counts


@njit(**JIT)
def gate_views(gate: np.ndarray, group_size: int, unit: int,
               channels: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray,
                                       np.ndarray, np.ndarray]:
    """Everything the replay needs from one gate mask, in one pass over its native layout.

    gate: uint8 (N, F/s, P) with P = Ho*Wo, one bit per group of ``group_size`` (s) output
    channels; output rows are pixels m = n*P + p, lanes are the F = ``channels`` output channels
    cut into units of ``unit`` lanes. The pass walks each (image, channel) row contiguously over
    pixels and writes unit-major results (N, J, P), transposed at the end (8x smaller than F).
    Returns (unit_active bool (M, J), unit_lanes int32 (M, J) active lanes per unit,
    packed uint8 (M, ceil(F/64)*8) active channels per pixel as little-endian bits (view it as
    uint64), per_pixel int64 (M,) active channels, per_channel int64 (F,) active pixels,
    per_unit int64 (J,) pixels where the unit has an active lane).
    """
    n_images, _, pixels = gate.shape
    units = (channels + unit - 1) // unit
    byte_words = ((channels + 63) // 64) * 8
    lanes_nj = np.zeros((n_images, units, pixels), dtype=np.int32)
    packed_nb = np.zeros((n_images, byte_words, pixels), dtype=np.uint8)
    per_pixel_n = np.zeros((n_images, pixels), dtype=np.int64)
    per_channel = np.zeros(channels, dtype=np.int64)
    for n in range(n_images):
        for f in range(channels):
            row = gate[n, f // group_size]
            lanes_row = lanes_nj[n, f // unit]
            packed_row = packed_nb[n, f >> 3]
            bit = np.uint8(1 << (f & 7))
            pixel_row = per_pixel_n[n]
            active = 0
            for p in range(pixels):
                v = row[p]
                lanes_row[p] += v
                packed_row[p] |= bit * v
                pixel_row[p] += v
                active += v
            per_channel[f] += active
    rows = n_images * pixels
    unit_lanes = np.empty((rows, units), dtype=np.int32)
    unit_active = np.empty((rows, units), dtype=np.bool_)
    packed = np.empty((rows, byte_words), dtype=np.uint8)
    per_unit = np.zeros(units, dtype=np.int64)
    for n in range(n_images):
        for p in range(pixels):
            m = n * pixels + p
            for j in range(units):
                lanes = lanes_nj[n, j, p]
                unit_lanes[m, j] = lanes
                unit_active[m, j] = lanes > 0
                per_unit[j] += lanes > 0
            for b in range(byte_words):
                packed[m, b] = packed_nb[n, b, p]
    return unit_active, unit_lanes, packed, per_pixel_n.reshape(rows), per_channel, per_unit
