"""Numba hot loops of the sparse replay, and nothing else: pure functions over contiguous arrays.

Numba settings live here only. No config objects, dicts or logging inside a kernel; the typed
callers in :mod:`accelsim.engine` (the phase modules, :mod:`~accelsim.engine.masks`,
:mod:`~accelsim.engine.schedule`) check inputs and call these. Every kernel has a readable twin
in ``tests/reference_model.py`` (or an inline one in the tests) and a differential test.
"""

from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic

JIT = {"cache": True, "nogil": True, "fastmath": False}
INLINE = {"cache": True, "nogil": True, "inline": "always"}

_ONE = np.uint64(1)
_ALL = np.uint64(0xFFFFFFFFFFFFFFFF)


@intrinsic
def ctpop64(typingctx, x):
    """Set bits of a uint64 (LLVM's ctpop: one instruction where the CPU has it)."""
    if x != types.uint64:
        return None

    def codegen(context, builder, signature, args):
        fn = builder.module.declare_intrinsic("llvm.ctpop", [ir.IntType(64)])
        return builder.call(fn, args)

    return types.uint64(types.uint64), codegen


def _zero_count(name: str, doc: str):
    """A numba intrinsic for LLVM's ``name`` (ctlz or cttz) of a uint64; its result for 0 is
    64 (the intrinsic's is-zero-poison flag is off)."""

    @intrinsic
    def count(typingctx, x):
        if x != types.uint64:
            return None

        def codegen(context, builder, signature, args):
            fn = builder.module.declare_intrinsic(f"llvm.{name}", [ir.IntType(64),
                                                                   ir.IntType(1)])
            return builder.call(fn, [args[0], ir.Constant(ir.IntType(1), 0)])

        return types.uint64(types.uint64), codegen

    count.__doc__ = doc
    return count


ctlz64 = _zero_count("ctlz", "Leading zero bits of a uint64 (LLVM's ctlz; 64 for 0).")
cttz64 = _zero_count("cttz", "Trailing zero bits of a uint64 (LLVM's cttz; 64 for 0).")


@njit(**INLINE)
def load_bits(words: np.ndarray, start: int, count: int) -> np.uint64:
    """``count`` (1..64) bits of a little-endian bit string held in uint64 ``words``, from bit
    ``start``, as the low bits of a uint64 (bit b = element start + b); bits past the end read
    as 0."""
    index = start >> 6
    shift = start & 63
    x = words[index] >> np.uint64(shift)
    if shift and index + 1 < words.shape[0]:
        x |= words[index + 1] << np.uint64(64 - shift)
    if count < 64:
        x &= (_ONE << np.uint64(count)) - _ONE
    return x


@njit(**INLINE)
def _column_tile(classes: np.ndarray, lanes: np.ndarray, col_idx: np.ndarray, tc: int,
                 qcols: int) -> tuple[int, int, int, int, np.ndarray, np.ndarray, np.ndarray]:
    """Column tile ``tc`` of ``qcols`` unit columns: (c0, c1: its columns [c0, c1), its
    decoder column indices, n_local: how many distinct classes its columns have, and per
    local class: the class, its columns (multiplicity) and their real lanes)."""
    c0 = tc * qcols
    c1 = min(c0 + qcols, classes.shape[0])
    local_class = np.zeros(qcols, dtype=np.int64)
    multiplicity = np.zeros(qcols, dtype=np.int64)
    local_lanes = np.zeros(qcols, dtype=np.int64)
    n_local = 0
    for j in range(c0, c1):
        found = -1
        for lc in range(n_local):
            if local_class[lc] == classes[j]:
                found = lc
                break
        if found < 0:
            found = n_local
            local_class[n_local] = classes[j]
            n_local += 1
        multiplicity[found] += 1
        local_lanes[found] += lanes[j]
    return c0, c1, col_idx[c0:c1].sum(), n_local, local_class, multiplicity, local_lanes


@njit(**INLINE)
def _pass_cycles(compute: int, indices: int, indices_per_cycle: int) -> tuple[int, int]:
    """(cycles, decoder stall cycles) of one pass: it lasts as long as its compute or as the
    decoder needs for its indices, ceil(indices / indices_per_cycle), whichever is longer."""
    decode = (indices + indices_per_cycle - 1) // indices_per_cycle if indices > 0 else 0
    if decode > compute:
        return decode, decode - compute
    return compute, 0


@njit(**JIT)
def schedule_passes(counts: np.ndarray, classes: np.ndarray, lanes: np.ndarray,
                    unit_idx: np.ndarray, has_unit_idx: bool, row_idx: np.ndarray,
                    col_idx: np.ndarray, rows: int, qcols: int, sync_tiles: int,
                    compaction: bool, indices_per_cycle: int, staged: np.ndarray,
                    has_staged: bool) -> tuple[int, int, int, int, int]:
    """Cycles of a work matrix on a rows x qcols grid of queues (see engine/schedule.py).

    The work of unit (i, j) is counts[i, classes[j]] reduction steps (cycles): units whose work
    depends on the row in the same way share a class (a plain matrix has classes = arange(J)).
    Unit (i, j) goes to queue (i % rows, j % qcols) in tile (i // rows, j // qcols). Column
    tiles run one after another; inside a column tile, every ``sync_tiles`` consecutive row tiles
    form a pass, after which all queues synchronise. Without compaction a pass lasts as long as
    its slowest queue. With compaction the units of the pass's whole row tiles are spread over
    the rows x (column tile's unit columns) queues, a unit never on two queues at once and moved
    at most once (McNaughton's wrap-around rule), lasting max(ceil(steps / queues), their
    longest unit); a partial last row tile then runs the same way on the queues it occupies
    (its idle queues stay idle, as in the dense mapping); where that is slower than the static
    mapping, the dispatcher keeps the static mapping. A pass
    lasts at least as long as the decoder needs: ceil(indices / indices_per_cycle), with
    indices = unit_idx of its units (if ``has_unit_idx``) + row_idx of its rows + col_idx of its
    unit columns. With ``has_staged`` the compute of pass p in column tile tc is
    ``staged[p, tc]`` instead (the operand stage's bound, :mod:`accelsim.engine.stage`).

    Returns (cycles, decoder stall cycles, decoder indices, MACs issued = sum over units of
    steps x lanes[j], cycles the stage added).
    """
    n_rows = counts.shape[0]
    n_cols = classes.shape[0]
    row_tiles = (n_rows + rows - 1) // rows
    col_tiles = (n_cols + qcols - 1) // qcols
    per_class = np.zeros((rows, qcols), dtype=np.int64)
    issued = cycles = stall = indices_total = waited = 0
    for tc in range(col_tiles):
        c0, c1, col_part, n_local, local_class, multiplicity, local_lanes = _column_tile(
            classes, lanes, col_idx, tc, qcols)
        tr = 0
        while tr < row_tiles:
            t_end = min(tr + sync_tiles, row_tiles)
            r0 = tr * rows
            r1 = min(t_end * rows, n_rows)
            per_class[:, :n_local] = 0
            # compaction: the pass's whole tiles, then its partial last tile on its own queues
            whole_end = r0 + (r1 - r0) // rows * rows
            total = longest = part_total = part_longest = 0
            indices = col_part
            for i in range(r0, r1):
                r = i % rows
                indices += row_idx[i]
                for lc in range(n_local):
                    w = counts[i, local_class[lc]]
                    per_class[r, lc] += w
                    issued += w * local_lanes[lc]
                    if i < whole_end:
                        total += w * multiplicity[lc]
                        longest = max(longest, w)
                    else:
                        part_total += w * multiplicity[lc]
                        part_longest = max(part_longest, w)
                if has_unit_idx:
                    for j in range(c0, c1):
                        indices += unit_idx[i, j]
            compute = 0  # the static mapping: the slowest queue
            for r in range(min(rows, r1 - r0)):
                for lc in range(n_local):
                    if per_class[r, lc] > compute:
                        compute = per_class[r, lc]
            if compaction:
                width = c1 - c0
                balanced = 0
                if whole_end > r0:
                    queues = rows * width
                    balanced = max((total + queues - 1) // queues, longest)
                if r1 > whole_end:
                    queues = (r1 - whole_end) * width
                    balanced += max((part_total + queues - 1) // queues, part_longest)
                compute = min(compute, balanced)
            if has_staged:
                waited += staged[tr // sync_tiles, tc] - compute
                compute = staged[tr // sync_tiles, tc]
            pass_cycles, pass_stall = _pass_cycles(compute, indices, indices_per_cycle)
            cycles += pass_cycles
            stall += pass_stall
            indices_total += indices
            tr = t_end
    return cycles, stall, indices_total, issued, waited


@njit(**JIT)
def unit_or(mask: np.ndarray, unit: int, axis: int) -> np.ndarray:
    """OR over groups of ``unit`` consecutive rows (``axis`` 0) or columns (1) of a uint8 (R, L)
    0/1 matrix; the last group may be partial. Returns bool (ceil(R/unit), L) or
    (R, ceil(L/unit))."""
    n_rows, length = mask.shape
    if axis == 0:
        out = np.zeros(((n_rows + unit - 1) // unit, length), dtype=np.uint8)
        for i in range(n_rows):
            row = out[i // unit]
            for c in range(length):
                row[c] |= mask[i, c]
        return out.view(np.bool_)
    units = (length + unit - 1) // unit
    out = np.zeros((n_rows, units), dtype=np.uint8)
    for i in range(n_rows):
        row = mask[i]
        for j in range(units):
            acc = np.uint8(0)
            for c in range(j * unit, min(length, (j + 1) * unit)):
                acc |= row[c]
            out[i, j] = acc
    return out.view(np.bool_)


@njit(**JIT)
def nm_max_kept(mask: np.ndarray, m: int) -> int:
    """Most kept elements in any group of ``m`` <= 255 consecutive entries along axis 1 of a
    uint8 0/1 array (A, L, B) with L divisible by m (groups: fixed a and b).

    Per a, the (L, B) plane is one row of bytes; the sum of every window of m entries B apart
    is formed by m shifted whole-row adds (contiguous, so LLVM vectorises them), and the
    windows that start a group are then read (rather than summing group by group, which does
    not vectorise when B is a kernel's 9 taps).
    """
    n_outer, length, n_inner = mask.shape
    flat = mask.reshape(n_outer, length * n_inner)
    inner = np.uint64(n_inner)
    width = np.uint64(m) * inner  # bytes of one group row
    span = np.uint64(length * n_inner) - np.uint64(m - 1) * inner  # windows that fit
    sums = np.empty(length * n_inner, dtype=np.uint8)
    best = np.uint8(0)
    for a in range(n_outer):
        row = flat[a]
        for x in range(span):
            sums[x] = row[x]
        for i in range(np.uint64(1), np.uint64(m)):
            offset = i * inner
            for x in range(span):
                sums[x] += row[x + offset]
        for block in range(np.uint64(length // m)):
            start = block * width
            for b in range(inner):
                if sums[start + b] > best:
                    best = sums[start + b]
    return int(best)


@njit(**JIT)
def row_ones(mask: np.ndarray) -> np.ndarray:
    """int64 (R,): set entries of each row of a 2-D 0/1 uint8 array (7x numpy's bool
    ``sum(axis=1)``: the unsigned-index byte loop vectorises)."""
    n_rows, length = mask.shape
    out = np.empty(n_rows, dtype=np.int64)
    for i in range(n_rows):
        row = mask[i]
        total = np.uint64(0)
        for c in range(np.uint64(length)):
            total += row[c]
        out[i] = np.int64(total)
    return out


@njit(**JIT)
def rle_counts(words: np.ndarray, tail: np.ndarray, run_bits: int) -> tuple[int, int]:
    """(kept elements, fillers) of the run-length index of a flat 0/1 byte mask given as
    uint64 words of 8 bytes (``words``) and the bytes after them (``tail``, < 8): each kept
    element stores the zeros before it in ``run_bits`` bits, and a gap of g zeros needs
    g >> run_bits fillers. Bytes are 0 or 1, so byte k of a word is bit 8k.

    With ``run_bits`` >= 3 a gap inside one word (< 8 zeros) needs no filler, so a word costs
    a popcount and its two end gaps (cttz, ctlz); shorter runs walk every kept element."""
    nnz, fillers = 0, 0
    shift = np.uint64(run_bits)
    if run_bits >= 3:
        zeros = np.uint64(0)  # zeros since the last kept element
        for i in range(words.shape[0]):
            x = words[i]
            if x == 0:
                zeros += np.uint64(8)
                continue
            nnz += np.int64(ctpop64(x))
            fillers += np.int64((zeros + cttz64(x) // np.uint64(8)) >> shift)
            zeros = ctlz64(x) // np.uint64(8)
        for k in range(tail.shape[0]):
            if tail[k]:
                nnz += 1
                fillers += np.int64(zeros >> shift)
                zeros = np.uint64(0)
            else:
                zeros += np.uint64(1)
        return nnz, fillers
    last = -1
    for i in range(words.shape[0]):
        x = words[i]
        base = i * 8
        while x:
            pos = base + np.int64(cttz64(x)) // 8
            fillers += np.int64(np.uint64(pos - last - 1) >> shift)
            last = pos
            nnz += 1
            x &= x - np.uint64(1)
    base = words.shape[0] * 8
    for k in range(tail.shape[0]):
        if tail[k]:
            pos = base + k
            fillers += np.int64(np.uint64(pos - last - 1) >> shift)
            last = pos
            nnz += 1
    return nnz, fillers


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
                total += ctpop64((active_bits[i, w] | always_bits[c, w]) & allowed_bits[c, w])
            counts[i, c] = total
    return counts


@njit(**JIT)
def gate_views(gate: np.ndarray, group_size: int, unit: int,
               channels: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Everything the replay needs from one gate mask, in one pass over its native layout.

    gate: uint8 (N, F/s, P) with P = Ho*Wo, one bit per group of ``group_size`` (s) output
    channels; output rows are pixels m = n*P + p, lanes are the F = ``channels`` output channels
    cut into units of ``unit`` lanes. The pass walks each (image, channel) row contiguously over
    pixels and writes unit-major results (N, J, P), transposed at the end (8x smaller than F).
    Returns (unit_active bool (M, J), unit_lanes int32 (M, J) active lanes per unit,
    packed uint8 (M, ceil(F/64)*8) active channels per pixel as little-endian bits (view it as
    uint64), per_pixel int64 (M,) active channels). Totals per channel and per unit come from
    the packed-bit kernels (row_popcounts, residue_counts).
    """
    n_images, _, pixels = gate.shape
    units = (channels + unit - 1) // unit
    byte_words = ((channels + 63) // 64) * 8
    lanes_nj = np.zeros((n_images, units, pixels), dtype=np.int32)
    packed_nb = np.zeros((n_images, byte_words, pixels), dtype=np.uint8)
    per_pixel_n = np.zeros((n_images, pixels), dtype=np.int64)
    for n in range(n_images):
        for f in range(channels):
            row = gate[n, f // group_size]
            lanes_row = lanes_nj[n, f // unit]
            packed_row = packed_nb[n, f >> 3]
            bit = np.uint8(1 << (f & 7))
            pixel_row = per_pixel_n[n]
            for p in range(pixels):
                v = row[p]
                lanes_row[p] += v
                packed_row[p] |= bit * v
                pixel_row[p] += v
    rows = n_images * pixels
    unit_lanes = np.empty((rows, units), dtype=np.int32)
    unit_active = np.empty((rows, units), dtype=np.bool_)
    packed = np.empty((rows, byte_words), dtype=np.uint8)
    for n in range(n_images):
        for p in range(pixels):
            m = n * pixels + p
            for j in range(units):
                lanes = lanes_nj[n, j, p]
                unit_lanes[m, j] = lanes
                unit_active[m, j] = lanes > 0
            for b in range(byte_words):
                packed[m, b] = packed_nb[n, b, p]
    return unit_active, unit_lanes, packed, per_pixel_n.reshape(rows)


def as_words(bits: np.ndarray) -> np.ndarray:
    """Packed uint8 bits as uint64 words for the bit kernels: a view when the buffer allows
    (8-byte aligned, whole words), else a zero-padded copy."""
    if bits.size % 8 == 0 and bits.size:
        words = bits.view(np.uint64)
        if words.flags.aligned:  # numpy's own check, 4x cheaper than reading bits.ctypes
            return words
    words = np.zeros(bits.size // 8 + 1, dtype=np.uint64)
    words.view(np.uint8)[:bits.size] = bits
    return words


_BYTE_LOW_BITS = np.uint64(0x0101010101010101)
_BYTE = np.uint64(0xFF)
_EVEN_BYTES = np.uint64(0x00FF00FF00FF00FF)
_LANE = np.uint64(0xFFFF)
_LANE_SUM = np.uint64(0x0001000100010001)  # x * this >> 48: sum of x's four 16-bit lanes


@njit(**INLINE)
def _spread(x: np.uint64, a0: np.uint64, a1: np.uint64, a2: np.uint64, a3: np.uint64,
            a4: np.uint64, a5: np.uint64, a6: np.uint64,
            a7: np.uint64) -> tuple[np.uint64, np.uint64, np.uint64, np.uint64, np.uint64,
                                    np.uint64, np.uint64, np.uint64]:
    """Count the bits of ``x`` by position in eight byte-lane counters: bit q adds 1 to byte
    q // 8 of a{q % 8}. Returns the new counters."""
    low = _BYTE_LOW_BITS
    return (a0 + (x & low), a1 + ((x >> np.uint64(1)) & low), a2 + ((x >> np.uint64(2)) & low),
            a3 + ((x >> np.uint64(3)) & low), a4 + ((x >> np.uint64(4)) & low),
            a5 + ((x >> np.uint64(5)) & low), a6 + ((x >> np.uint64(6)) & low),
            a7 + ((x >> np.uint64(7)) & low))


@njit(**INLINE)
def _fold_counter(a: np.uint64, i: int, out: np.ndarray, p: int, t: int, rows: int) -> None:
    """Add the eight byte counters of ``a`` (byte k counts bit position q = 8k + i) to
    out[p, t, q % rows] (``rows`` divides 64). Bytes of one queue row are summed in 16-bit
    lanes first: one add per queue row instead of one per byte."""
    if rows == 64:
        for k in range(8):
            out[p, t, 8 * k + i] += np.int64((a >> np.uint64(8 * k)) & _BYTE)
        return
    even = a & _EVEN_BYTES                    # bytes 0, 2, 4, 6 in 16-bit lanes
    odd = (a >> np.uint64(8)) & _EVEN_BYTES   # bytes 1, 3, 5, 7
    if rows == 32:   # byte k: queue row 8 * (k % 4) + i
        e = even + (even >> np.uint64(32))
        o = odd + (odd >> np.uint64(32))
        out[p, t, i] += np.int64(e & _LANE)
        out[p, t, i + 16] += np.int64((e >> np.uint64(16)) & _LANE)
        out[p, t, i + 8] += np.int64(o & _LANE)
        out[p, t, i + 24] += np.int64((o >> np.uint64(16)) & _LANE)
    elif rows == 16:  # byte k: queue row 8 * (k % 2) + i
        out[p, t, i] += np.int64((even * _LANE_SUM) >> np.uint64(48))
        out[p, t, i + 8] += np.int64((odd * _LANE_SUM) >> np.uint64(48))
    else:             # rows divides 8: queue row i % rows
        out[p, t, i % rows] += np.int64(((even + odd) * _LANE_SUM) >> np.uint64(48))


@njit(**JIT)
def _fold_lanes(lanes: np.ndarray, held: np.ndarray, out: np.ndarray, t: int, rows: int,
                p0: int, p1: int) -> None:
    """Fold the byte-lane counters lanes[p, 0..7] (bit position q counted in byte q // 8 of
    lane q % 8) of passes p0 <= p < p1 that hold any word into out[p, t, q % rows], and
    clear them (``held``: words counted per pass, at most 255 so that no byte wraps)."""
    for p in range(p0, p1):
        if held[p]:
            for i in range(8):
                _fold_counter(lanes[p, i], i, out, p, t, rows)
                lanes[p, i] = 0
            held[p] = 0


@njit(**INLINE)
def _add_lanes(lanes: np.ndarray, p: int, a0: np.uint64, a1: np.uint64, a2: np.uint64,
               a3: np.uint64, a4: np.uint64, a5: np.uint64, a6: np.uint64,
               a7: np.uint64) -> None:
    """Add eight byte-lane registers to the counters lanes[p]."""
    lanes[p, 0] += a0
    lanes[p, 1] += a1
    lanes[p, 2] += a2
    lanes[p, 3] += a3
    lanes[p, 4] += a4
    lanes[p, 5] += a5
    lanes[p, 6] += a6
    lanes[p, 7] += a7


@njit(**JIT)
def _set_bits(words: np.ndarray, n_rows: int, pixels: int, lo: int, hi: int, m0: int,
              count: int) -> np.uint64:
    """Output rows m0 .. m0 + count - 1 (``count`` 1..64; m = n*P + p over all images) of the
    OR of gate rows [lo, hi), as the low bits of a uint64: one load per gate row when the
    chunk lies in one image, one per image and gate row when it spans several (small maps)."""
    n = m0 // pixels
    p = m0 - n * pixels
    x = np.uint64(0)
    got = 0
    while got < count:
        take = min(count - got, pixels - p)
        first = n * n_rows * pixels + p
        part = np.uint64(0)
        for g in range(lo, hi):
            part |= load_bits(words, first + g * pixels, take)
        x |= part << np.uint64(got)
        got += take
        n += 1
        p = 0
    return x


@njit(**INLINE)
def _count_run(src: np.ndarray, w0: int, w1: int, lanes: np.ndarray, p: int) -> None:
    """Count the bits of src[w0:w1] by bit position (:func:`_spread`, in registers) into the
    byte-lane counters lanes[p]. The loop index is unsigned: a signed one makes numba wrap
    negative indices, which stops LLVM's vectoriser."""
    a0 = a1 = a2 = a3 = a4 = a5 = a6 = a7 = np.uint64(0)
    for w in range(np.uint64(w0), np.uint64(w1)):
        a0, a1, a2, a3, a4, a5, a6, a7 = _spread(src[w], a0, a1, a2, a3, a4, a5, a6, a7)
    _add_lanes(lanes, p, a0, a1, a2, a3, a4, a5, a6, a7)


@njit(**INLINE)
def _set_into_words(words: np.ndarray, n_images: int, n_rows: int, pixels: int, lo: int,
                    hi: int, set_words: np.ndarray) -> None:
    """The OR of gate rows [lo, hi) of every image, m-ordered (bit m = n*P + p), into the
    words ``set_words``, when a gate row holds whole words (64 divides P: whole-row ORs with
    unsigned indices, which vectorise) or lies inside one word (P divides 64: the set's
    rows of an image are read as at most (hi - lo) * P / 64 + 1 words and folded onto P
    bits)."""
    span = hi - lo
    if pixels % 64 == 0:
        stride = np.uint64(pixels // 64)
        for n in range(n_images):
            first = np.uint64((n * n_rows + lo) * (pixels // 64))
            out = np.uint64(n) * stride
            for w in range(stride):
                set_words[out + w] = words[first + w]
            for g in range(np.uint64(1), np.uint64(span)):
                start = first + g * stride
                for w in range(stride):
                    set_words[out + w] |= words[start + w]
        return
    low = (_ONE << np.uint64(pixels)) - _ONE  # P < 64 here
    if span == 1:  # a row lies inside one word: images packed 64 / P to a word
        per_word = 64 // pixels
        packed = np.uint64(0)
        slot, word = 0, 0  # n % per_word and n // per_word, without dividing
        for n in range(n_images):
            start = (n * n_rows + lo) * pixels
            packed |= ((words[start >> 6] >> np.uint64(start & 63)) & low) << np.uint64(
                slot * pixels)
            slot += 1
            if slot == per_word or n == n_images - 1:
                set_words[word] = packed
                packed = np.uint64(0)
                slot = 0
                word += 1
        return
    set_words[:] = 0
    bits = span * pixels
    for n in range(n_images):
        start = (n * n_rows + lo) * pixels
        x = np.uint64(0)
        for c in range(0, bits, 64):
            x |= load_bits(words, start + c, min(64, bits - c))
        width = 64
        while width > pixels:  # fold the set's rows onto the low P bits
            width //= 2
            x |= x >> np.uint64(width)
        m = n * pixels
        set_words[m >> 6] |= (x & low) << np.uint64(m & 63)


@njit(**JIT)
def _residue_counts_words(words: np.ndarray, n_images: int, n_rows: int, pixels: int,
                          set_lo: np.ndarray, set_hi: np.ndarray, target: np.ndarray,
                          rows: int, pass_len: int, out: np.ndarray) -> None:
    """:func:`residue_counts`'s fast path when ``rows`` divides 64, 64 divides ``pass_len``
    and a gate row holds whole words or lies inside one (64 % P == 0 or P % 64 == 0): each
    set's OR over all images is formed m-ordered in a buffer (:func:`_set_into_words`),
    whose bit b of word w is then queue row b % rows of pass w // (pass_len / 64), and
    counted in runs of at most 255 words within one pass (:func:`_count_run`)."""
    per_pass = pass_len // 64
    total = (n_images * pixels + 63) // 64
    set_words = np.empty(total, dtype=np.uint64)
    lanes = np.zeros((out.shape[0], 8), dtype=np.uint64)
    held = np.zeros(out.shape[0], dtype=np.int64)
    for s in range(set_lo.shape[0]):
        _set_into_words(words, n_images, n_rows, pixels, set_lo[s], set_hi[s], set_words)
        w0 = 0
        while w0 < total:
            p = w0 // per_pass
            w1 = min(total, (p + 1) * per_pass, w0 + 255)
            if held[p] + w1 - w0 > 255:
                _fold_lanes(lanes, held, out, target[s], rows, p, p + 1)
            _count_run(set_words, w0, w1, lanes, p)
            held[p] += w1 - w0
            w0 = w1
        _fold_lanes(lanes, held, out, target[s], rows, 0, out.shape[0])


@njit(**JIT)
def residue_counts(words: np.ndarray, n_images: int, n_rows: int, pixels: int,
                   set_lo: np.ndarray, set_hi: np.ndarray, target: np.ndarray, n_targets: int,
                   rows: int, pass_len: int) -> np.ndarray:
    """Per-pass, per-queue-row counts of a bit-packed gate, without unpacking it.

    words: uint64, the little-endian bits of a C-order bool (N = ``n_images``, ``n_rows``,
    P = ``pixels``) gate (:func:`as_words`); output rows are pixels m = n*P + p. Set s is the OR
    of gate rows [set_lo[s], set_hi[s]) (a lock-step unit's channels, or one row), and its counts
    add to ``target[s]`` (< ``n_targets``; several sets may share one target: their counts sum).
    Row m belongs to pass m // ``pass_len`` and queue row m % ``rows``.
    Returns int64 (passes, n_targets, rows): set bits per pass, target and queue row.

    One general path and one fast path. Both count a set's bits by position in byte lanes
    (bit q adds to byte q // 8 of lane q % 8; a lane's byte k is queue row (8k + q % 8) %
    rows when ``rows`` divides 64), kept per pass and folded into queue rows once per set and
    pass (:func:`_fold_lanes`), or sooner where a byte could wrap (255 words).

    - Fast path (:func:`_residue_counts_words`), when ``rows`` divides 64, 64 divides
      ``pass_len`` and a gate row holds whole words or lies inside one (P % 64 == 0 or
      64 % P == 0): each set's OR over all images is laid out m-ordered in a buffer, whose
      words are counted in runs within one pass, in registers.
    - General path, any layout: each set is read over m in chunks of up to 64 rows that never
      cross a pass (:func:`_set_bits`). When ``rows`` divides 64, a chunk starting at m0 is
      rotated left by m0 % rows (bit position q is then queue row q % rows) and counted by
      position; other queue-row counts take one step per set bit.
    """
    total = n_images * pixels
    n_passes = (total + pass_len - 1) // pass_len
    out = np.zeros((n_passes, n_targets, rows), dtype=np.int64)
    by_position = 64 % rows == 0
    if by_position and pass_len % 64 == 0 and (pixels % 64 == 0 or 64 % pixels == 0):
        _residue_counts_words(words, n_images, n_rows, pixels, set_lo, set_hi, target, rows,
                              pass_len, out)
        return out
    lanes = np.zeros((n_passes, 8), dtype=np.uint64)
    held = np.zeros(n_passes, dtype=np.int64)
    for s in range(set_lo.shape[0]):
        t, lo, hi = target[s], set_lo[s], set_hi[s]
        p, m0, pass_end = 0, 0, min(pass_len, total)
        while m0 < total:
            count = min(64, pass_end - m0)
            x = _set_bits(words, n_rows, pixels, lo, hi, m0, count)
            if x and by_position:
                shift = np.uint64(m0 % rows)
                if shift:
                    x = (x << shift) | (x >> (np.uint64(64) - shift))
                if held[p] == 255:
                    _fold_lanes(lanes, held, out, t, rows, p, p + 1)
                for i in range(8):
                    lanes[p, i] += (x >> np.uint64(i)) & _BYTE_LOW_BITS
                held[p] += 1
            elif x:
                while x:
                    out[p, t, (m0 + np.int64(cttz64(x))) % rows] += 1
                    x &= x - _ONE
            m0 += count
            if m0 == pass_end:
                p += 1
                pass_end = min(pass_end + pass_len, total)
        _fold_lanes(lanes, held, out, t, rows, 0, n_passes)
    return out


@njit(**JIT)
def popcount_words(words: np.ndarray) -> int:
    """Set bits of uint64 words (one pass, LLVM's ctpop)."""
    total = np.uint64(0)
    for i in range(words.shape[0]):
        total += ctpop64(words[i])
    return np.int64(total)


@njit(**JIT)
def row_popcounts(words: np.ndarray, n_images: int, n_rows: int, pixels: int) -> np.ndarray:
    """Set bits of every gate row over all images: int64 (n_rows,) (see residue_counts)."""
    out = np.zeros(n_rows, dtype=np.int64)
    for n in range(n_images):
        for g in range(n_rows):
            start = (n * n_rows + g) * pixels
            total = 0
            for p0 in range(0, pixels, 64):
                total += ctpop64(load_bits(words, start + p0, min(64, pixels - p0)))
            out[g] += total
    return out


@njit(**JIT)
def uniform_group_ones(words: np.ndarray, n_images: int, n_rows: int, pixels: int,
                       group_rows: int) -> int:
    """Kept groups when every group of ``group_rows`` consecutive gate rows is equal at every
    pixel (all kept or all skipped), else -1 (see residue_counts for the layout)."""
    kept = 0
    for n in range(n_images):
        for g0 in range(0, n_rows, group_rows):
            for p0 in range(0, pixels, 64):
                count = min(64, pixels - p0)
                any_ = np.uint64(0)
                all_ = _ALL
                for g in range(g0, g0 + group_rows):
                    x = load_bits(words, (n * n_rows + g) * pixels + p0, count)
                    any_ |= x
                    all_ &= x
                if any_ != (all_ & any_):
                    return -1
                kept += ctpop64(any_)
    return kept


@njit(**JIT)
def pass_row_sums(values: np.ndarray, rows: int, pass_len: int) -> np.ndarray:
    """int64 (passes, C, rows): the rows i of an int (R, C) array summed per pass
    (i // ``pass_len``) and queue row (i % ``rows``; ``rows`` divides ``pass_len``)."""
    n_rows, n_cols = values.shape
    n_passes = (n_rows + pass_len - 1) // pass_len
    acc = np.zeros((n_passes, rows, n_cols), dtype=np.int64)
    p, r, in_pass = 0, 0, 0
    for i in range(n_rows):
        target = acc[p, r]
        source = values[i]
        for c in range(np.uint64(n_cols)):
            target[c] += source[c]
        r += 1
        if r == rows:
            r = 0
        in_pass += 1
        if in_pass == pass_len:
            in_pass = 0
            p += 1
    out = np.empty((n_passes, n_cols, rows), dtype=np.int64)
    for p in range(n_passes):
        for r in range(rows):
            for c in range(n_cols):
                out[p, c, r] = acc[p, r, c]
    return out


@njit(**JIT)
def class_sums(counts: np.ndarray, classes: np.ndarray, n_classes: int) -> np.ndarray:
    """int64 (passes, ``n_classes``, rows): int64 counts (passes, G, rows) summed over the
    entries g of each class ``classes[g]``."""
    n_passes, n_entries, rows = counts.shape
    out = np.zeros((n_passes, n_classes, rows), dtype=np.int64)
    for p in range(n_passes):
        for g in range(n_entries):
            target = out[p, classes[g]]
            source = counts[p, g]
            for r in range(np.uint64(rows)):
                target[r] += source[r]
    return out


@njit(**JIT)
def diagonal_sums(fixed: np.ndarray, counts: np.ndarray,
                  scale: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-pass sums fixed[p, c, r] + scale[c] * counts[p, c, r] (int64 (P, C, R) each),
    counts summed over queue rows (P, C), and over passes too (C,)."""
    n_passes, n_classes, n_rows = fixed.shape
    sums = np.empty_like(fixed)
    per_class = np.zeros((n_passes, n_classes), dtype=np.int64)
    totals = np.zeros(n_classes, dtype=np.int64)
    for p in range(n_passes):
        for c in range(n_classes):
            k = scale[c]
            total = 0
            for r in range(n_rows):
                x = counts[p, c, r]
                sums[p, c, r] = fixed[p, c, r] + k * x
                total += x
            per_class[p, c] = total
            totals[c] += total
    return sums, per_class, totals


@njit(**JIT)
def coefficient_sums(fixed: np.ndarray, counts: np.ndarray,
                     coef: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-pass sums fixed[p, c, r] + sum_q coef[c, q] * counts[p, q, r] (fixed int64
    (P, C, R), counts int64 (P, Q, R), coef int64 (C, Q)), and counts summed over sets and
    queue rows (P,). Rows are walked with unsigned indices over flat views, so the queue-row
    loops vectorise."""
    n_passes, n_classes, n_rows = fixed.shape
    n_sets = counts.shape[1]
    sums = fixed.copy().ravel()
    flat_counts = counts.ravel()
    per_pass = np.zeros(n_passes, dtype=np.int64)
    width = np.uint64(n_rows)
    for p in range(n_passes):
        first = np.uint64(p * n_sets * n_rows)
        total = 0
        for i in range(first, first + np.uint64(n_sets) * width):
            total += flat_counts[i]
        per_pass[p] = total
        for c in range(n_classes):
            out = np.uint64((p * n_classes + c) * n_rows)
            for q in range(n_sets):
                k = coef[c, q]
                if k:
                    src = first + np.uint64(q) * width
                    for r in range(width):
                        sums[out + r] += k * flat_counts[src + r]
    return sums.reshape(fixed.shape), per_pass


@njit(**JIT)
def schedule_sums(sums: np.ndarray, classes: np.ndarray, lanes: np.ndarray,
                  unit_idx_sums: np.ndarray, has_unit_idx: bool, row_idx_sums: np.ndarray,
                  col_idx: np.ndarray, qcols: int, indices_per_cycle: int,
                  staged: np.ndarray, has_staged: bool) -> tuple[int, int, int, int, int]:
    """:func:`schedule_passes` without compaction, from per-pass sums instead of rows.

    sums[p, c, r]: steps of class c summed over the rows of pass p in queue row r (without a
    stage a pass lasts as long as its slowest queue, so these sums are all it needs);
    unit_idx_sums[p, j]: decoder indices of unit column j in pass p (if ``has_unit_idx``);
    row_idx_sums[p]: row indices of pass p; col_idx[j], classes[j], lanes[j] as in
    schedule_passes. With ``has_staged`` the compute of pass p in column tile tc is
    ``staged[p, tc]`` instead (the operand stage's bound, :mod:`accelsim.engine.stage`).
    Returns the same (cycles, stall cycles, indices, MACs issued) and the cycles the stage
    added to the slowest queues' sums.
    """
    n_passes, _, n_queue_rows = sums.shape
    n_cols = classes.shape[0]
    col_tiles = (n_cols + qcols - 1) // qcols
    issued = cycles = stall = indices_total = waited = 0
    for tc in range(col_tiles):
        c0, c1, col_part, n_local, local_class, _, local_lanes = _column_tile(
            classes, lanes, col_idx, tc, qcols)
        for p in range(n_passes):
            compute = 0
            for lc in range(n_local):
                c = local_class[lc]
                total = 0
                for r in range(n_queue_rows):
                    w = sums[p, c, r]
                    total += w
                    if w > compute:
                        compute = w
                issued += total * local_lanes[lc]
            if has_staged:
                waited += staged[p, tc] - compute
                compute = staged[p, tc]
            indices = col_part + row_idx_sums[p]
            if has_unit_idx:
                for j in range(c0, c1):
                    indices += unit_idx_sums[p, j]
            pass_cycles, pass_stall = _pass_cycles(compute, indices, indices_per_cycle)
            cycles += pass_cycles
            stall += pass_stall
            indices_total += indices
    return cycles, stall, indices_total, issued, waited


# -- the operand stage: a pass's compute summed over chunks of stage steps -------------------
# Each kernel returns int64 (passes, column tiles): compute cycles of each pass, the sum over
# the chunks x of the pass's steps of max over queues (r, local column) of the queue's work in
# x (W below, in cycles: one per unit and step that runs).


@njit(**INLINE)
def _dominant_pairs(a: np.ndarray, b: np.ndarray, out_a: np.ndarray,
                    out_b: np.ndarray) -> int:
    """The pairs (a[r], b[r]) that no other pair beats in both (a max over r of
    a[r] x u + b[r] x v, u, v >= 0, needs only these); writes them to out_a / out_b and
    returns how many."""
    n = 0
    for r in range(a.shape[0]):
        beaten = False
        for q in range(a.shape[0]):
            if q != r and a[q] >= a[r] and b[q] >= b[r] and (a[q] > a[r] or b[q] > b[r]
                                                             or q < r):
                beaten = True
                break
        if not beaten:
            out_a[n] = a[r]
            out_b[n] = b[r]
            n += 1
    return n


@njit(**JIT)
def staged_columns_rc(n_rows: np.ndarray, fixed_sums: np.ndarray, live_sums: np.ndarray,
                      active: np.ndarray, qcols: int) -> np.ndarray:
    """Steps whose sets belong to unit columns, activity per unit (FW): W(p, r, j, x) =
    n_rows[p, r] * fixed_sums[j, x] + active[p, j, r] * live_sums[j, x] (n_rows: units of
    pass p in queue row r; fixed_sums / live_sums: column j's always-run / gated steps in
    chunk x; active: units of (p, r) in column j whose gate is on). Consecutive chunks in
    which every column of a tile has the same sums are one run, priced once."""
    n_passes, n_queue_rows = n_rows.shape
    n_cols, n_chunks = fixed_sums.shape
    tiles = (n_cols + qcols - 1) // qcols
    out = np.zeros((n_passes, tiles), dtype=np.int64)
    pair_n = np.zeros((qcols, n_queue_rows), dtype=np.int64)
    pair_a = np.zeros((qcols, n_queue_rows), dtype=np.int64)
    pairs = np.zeros(qcols, dtype=np.int64)
    run_start = np.zeros(n_chunks + 1, dtype=np.int64)
    for tc in range(tiles):
        c0, c1 = tc * qcols, min(tc * qcols + qcols, n_cols)
        runs = 0
        for x in range(n_chunks):
            same = x > 0
            for j in range(c0, c1):
                if not same:
                    break
                if fixed_sums[j, x] != fixed_sums[j, x - 1] or \
                        live_sums[j, x] != live_sums[j, x - 1]:
                    same = False
            if not same:
                run_start[runs] = x
                runs += 1
        run_start[runs] = n_chunks
        gated = False  # no live steps: W = n x fixed, the same busiest column in every pass
        fixed_best = 0
        for run in range(runs):
            x = run_start[run]
            best = 0
            for j in range(c0, c1):
                if live_sums[j, x] != 0:
                    gated = True
                best = max(best, fixed_sums[j, x])
            fixed_best += best * (run_start[run + 1] - x)
        for p in range(n_passes):
            if not gated:
                most = 0
                for r in range(n_queue_rows):
                    most = max(most, n_rows[p, r])
                out[p, tc] = most * fixed_best
                continue
            for j in range(c0, c1):
                pairs[j - c0] = _dominant_pairs(n_rows[p], active[p, j], pair_n[j - c0],
                                                pair_a[j - c0])
            total = 0
            for run in range(runs):
                x = run_start[run]
                best = 0
                for j in range(c0, c1):
                    fs, ls = fixed_sums[j, x], live_sums[j, x]
                    if fs == 0 and ls == 0:
                        continue
                    lc = j - c0
                    for q in range(pairs[lc]):
                        w = pair_n[lc, q] * fs + pair_a[lc, q] * ls
                        if w > best:
                            best = w
                total += best * (run_start[run + 1] - x)
            out[p, tc] = total
    return out


@njit(**JIT)
def staged_columns_rt(n_rows: np.ndarray, fixed_sums: np.ndarray, live: np.ndarray,
                      step_counts: np.ndarray, classes: np.ndarray, qcols: int,
                      stage: int) -> np.ndarray:
    """Steps whose sets belong to unit columns, activity per row and step (BD): W(p, r, j, x)
    = n_rows[p, r] * fixed_sums[c, x] + sum over steps t of x of live[c, t] *
    step_counts[p, t, r], c = classes[j] (step_counts: units of (p, r) active at step t;
    chunks of ``stage`` steps; ``live`` 0 or 1)."""
    n_passes, n_queue_rows = n_rows.shape
    n_cols = classes.shape[0]
    n_steps = live.shape[1]
    n_chunks = fixed_sums.shape[1]
    tiles = (n_cols + qcols - 1) // qcols
    lanes = np.ones(n_cols, dtype=np.int64)
    no_idx = np.zeros(n_cols, dtype=np.int64)
    out = np.zeros((n_passes, tiles), dtype=np.int64)
    # One-step chunks of a pass whose queue rows hold equal units: the busiest queue of a
    # class at step t is n x fixed + live x (the most active units of any row at t).
    busiest = np.zeros((n_passes, n_steps), dtype=np.int64)
    uniform = np.zeros(n_passes, dtype=np.bool_)
    for p in range(n_passes):
        uniform[p] = stage == 1 and n_queue_rows > 0
        for r in range(n_queue_rows):
            if n_rows[p, r] != n_rows[p, 0]:
                uniform[p] = False
        if uniform[p]:
            for t in range(n_steps):
                most = 0
                for r in range(n_queue_rows):
                    if step_counts[p, t, r] > most:
                        most = step_counts[p, t, r]
                busiest[p, t] = most
    for tc in range(tiles):
        _, _, _, n_local, local_class, _, _ = _column_tile(classes, lanes, no_idx, tc, qcols)
        for p in range(n_passes):
            total = 0
            if uniform[p]:
                n = n_rows[p, 0]
                for t in range(n_steps):
                    best = 0
                    for lc in range(n_local):
                        c = local_class[lc]
                        w = n * fixed_sums[c, t] + (busiest[p, t] if live[c, t] else 0)
                        if w > best:
                            best = w
                    total += best
                out[p, tc] = total
                continue
            for x in range(n_chunks):
                t0, t1 = x * stage, min(x * stage + stage, n_steps)
                best = 0
                for lc in range(n_local):
                    c = local_class[lc]
                    for r in range(n_queue_rows):
                        w = n_rows[p, r] * fixed_sums[c, x]
                        for t in range(t0, t1):
                            if live[c, t]:
                                w += step_counts[p, t, r]
                        if w > best:
                            best = w
                total += best
            out[p, tc] = total
    return out


@njit(**JIT)
def staged_rows_jt(fixed_rows: np.ndarray, live_rows: np.ndarray, chunk_len: np.ndarray,
                   active_chunks: np.ndarray, qcols: int) -> np.ndarray:
    """Step sets that belong to units, activity per unit column and step (WG over output
    channels): W(p, r, j, x) = fixed_rows[p, j, r] * chunk_len[x] + live_rows[p, j, r] *
    active_chunks[j, x] (fixed_rows / live_rows: units of (p, r) in column j that run every
    step / the active ones; active_chunks: column j's active steps in chunk x, at most
    chunk_len[x])."""
    n_passes, n_cols, n_queue_rows = fixed_rows.shape
    n_chunks = chunk_len.shape[0]
    tiles = (n_cols + qcols - 1) // qcols
    out = np.zeros((n_passes, tiles), dtype=np.int64)
    pair_f = np.zeros((qcols, n_queue_rows), dtype=np.int64)
    pair_l = np.zeros((qcols, n_queue_rows), dtype=np.int64)
    pairs = np.zeros(qcols, dtype=np.int64)
    idle = np.zeros(qcols, dtype=np.int64)
    busy = np.zeros(qcols, dtype=np.int64)
    best_at = np.zeros(n_chunks, dtype=np.int64)
    one_step = True
    for x in range(n_chunks):
        if chunk_len[x] != 1:
            one_step = False
    for p in range(n_passes):
        for tc in range(tiles):
            c0, c1 = tc * qcols, min(tc * qcols + qcols, n_cols)
            for j in range(c0, c1):
                pairs[j - c0] = _dominant_pairs(fixed_rows[p, j], live_rows[p, j],
                                                pair_f[j - c0], pair_l[j - c0])
            total = 0
            if one_step:  # W is the pairs' best fixed (inactive) or fixed + live (active)
                for j in range(c0, c1):
                    lc = j - c0
                    idle[lc] = busy[lc] = 0
                    for q in range(pairs[lc]):
                        idle[lc] = max(idle[lc], pair_f[lc, q])
                        busy[lc] = max(busy[lc], pair_f[lc, q] + pair_l[lc, q])
                best_at[:] = 0
                for j in range(c0, c1):  # row by row: the active steps are contiguous
                    lo, hi = idle[j - c0], busy[j - c0]
                    row = active_chunks[j]
                    for x in range(n_chunks):
                        w = hi if row[x] else lo
                        if w > best_at[x]:
                            best_at[x] = w
                for x in range(n_chunks):
                    total += best_at[x]
                out[p, tc] = total
                continue
            for x in range(n_chunks):
                best = 0
                length = chunk_len[x]
                for j in range(c0, c1):
                    lc = j - c0
                    a = active_chunks[j, x]
                    for q in range(pairs[lc]):
                        w = pair_f[lc, q] * length + pair_l[lc, q] * a
                        if w > best:
                            best = w
                total += best
            out[p, tc] = total
    return out


@njit(**JIT)
def staged_rows_rt(fixed_rows: np.ndarray, live: np.ndarray, counts: np.ndarray,
                   classes: np.ndarray, rows: int, pass_len: int, chunk_len: np.ndarray,
                   qcols: int) -> np.ndarray:
    """Step sets that belong to units, activity per unit row and step (WG over input
    channels): W(p, r, j, x) = fixed_rows[p, j, r] * chunk_len[x] + sum over the rows i of
    (p, r) of live[i, c] * counts[i, x], c = classes[j] (columns of one class have equal
    fixed_rows; counts: row i's active steps in chunk x)."""
    n_passes, n_cols, n_queue_rows = fixed_rows.shape
    n_units = live.shape[0]
    n_chunks = chunk_len.shape[0]
    tiles = (n_cols + qcols - 1) // qcols
    lanes = np.ones(n_cols, dtype=np.int64)
    no_idx = np.zeros(n_cols, dtype=np.int64)
    out = np.zeros((n_passes, tiles), dtype=np.int64)
    first = np.zeros(classes.max() + 1 if n_cols else 1, dtype=np.int64)
    for j in range(n_cols - 1, -1, -1):
        first[classes[j]] = j
    for tc in range(tiles):
        _, _, _, n_local, local_class, _, _ = _column_tile(classes, lanes, no_idx, tc, qcols)
        for p in range(n_passes):
            i0, i1 = p * pass_len, min(p * pass_len + pass_len, n_units)
            total = 0
            for x in range(n_chunks):
                best = 0
                for lc in range(n_local):
                    c = local_class[lc]
                    j = first[c]
                    for r in range(n_queue_rows):
                        w = fixed_rows[p, j, r] * chunk_len[x]
                        for i in range(i0 + r, i1, rows):
                            if live[i, c]:
                                w += counts[i, x]
                        if w > best:
                            best = w
                total += best
            out[p, tc] = total
    return out


# -- compaction under the operand stage: each chunk balanced over a pass part's queues -------
# Each kernel returns int64 (parts,): the sum over the chunks x of a pass part (its whole row
# tiles, or its partial last tile) of max(ceil(W_x / Q), L_x), W_x the part's unit-steps in x,
# L_x its busiest unit's steps in x and Q its queues (occupied queue rows x unit columns).


@njit(**JIT)
def compacted_chunks(counts: np.ndarray, vectors: np.ndarray, queues: np.ndarray) -> np.ndarray:
    """Units of a few kinds: part p holds counts[p, k] units of kind k, whose steps (cycles)
    in chunk x are vectors[x, k]; queues[p] is Q. Returns each part's compute cycles."""
    n_parts, n_kinds = counts.shape
    n_chunks = vectors.shape[0]
    out = np.zeros(n_parts, dtype=np.int64)
    present = np.zeros(n_kinds, dtype=np.int64)
    for p in range(n_parts):
        n = 0
        for k in range(n_kinds):
            if counts[p, k] > 0:
                present[n] = k
                n += 1
        if n == 0:
            continue
        q = queues[p]
        total = 0
        for x in range(n_chunks):
            work = longest = 0
            for e in range(n):
                k = present[e]
                v = vectors[x, k]
                work += counts[p, k] * v
                if v > longest:
                    longest = v
            total += max((work + q - 1) // q, longest)
        out[p] = total
    return out


@njit(**JIT)
def compacted_chunks_rt(part_start: np.ndarray, queue_rows: np.ndarray, fixed_sums: np.ndarray,
                        live: np.ndarray, active: np.ndarray, active_rows: np.ndarray,
                        classes: np.ndarray, tc: int, qcols: int, stage: int) -> np.ndarray:
    """Steps whose sets belong to unit columns, activity per row and step (BD), for column
    tile ``tc`` of ``qcols`` unit columns: unit (i, j) runs fixed_sums[c, x] + sum over steps
    t of x of live[c, t] x active[t, i] steps (cycles) in chunk x, c = classes[j] (rows of
    part p: [part_start[p], part_start[p + 1]); active_rows[p, t]: rows of part p active at
    step t; ``active`` is read only where ``live`` is set). L_x is bounded by the columns'
    steps where any row of the part is active, and counted row by row only where that bound
    exceeds ceil(W_x / Q). Returns each part's compute cycles."""
    n_parts = queue_rows.shape[0]
    n_steps = live.shape[1]
    n_chunks = fixed_sums.shape[1]
    lanes = np.ones(classes.shape[0], dtype=np.int64)
    c0, c1, _, n_local, local, mult, _ = _column_tile(classes, lanes, lanes, tc, qcols)
    width = c1 - c0
    out = np.zeros(n_parts, dtype=np.int64)
    live_sum = np.zeros(n_steps, dtype=np.int64)  # the tile's columns live at each step
    for t in range(n_steps):
        for lc in range(n_local):
            live_sum[t] += mult[lc] * live[local[lc], t]
    for p in range(n_parts):
        i0, i1 = part_start[p], part_start[p + 1]
        q = queue_rows[p] * width
        total = 0
        for x in range(n_chunks):
            t0, t1 = x * stage, min(x * stage + stage, n_steps)
            work = 0
            bound = 0
            for lc in range(n_local):
                c = local[lc]
                w = fixed_sums[c, x]
                work += (i1 - i0) * mult[lc] * w
                for t in range(t0, t1):
                    if live[c, t] and active_rows[p, t] > 0:
                        w += 1
                bound = max(bound, w)
            for t in range(t0, t1):
                work += live_sum[t] * active_rows[p, t]
            balanced = (work + q - 1) // q
            if balanced < bound and t1 - t0 > 1:  # the busiest unit, row by row
                longest = 0
                for lc in range(n_local):
                    c = local[lc]
                    for i in range(i0, i1):
                        w = fixed_sums[c, x]
                        for t in range(t0, t1):
                            if live[c, t] and active[t, i]:
                                w += 1
                        if w > longest:
                            longest = w
                    if longest >= bound:
                        break
                bound = longest
            total += max(balanced, bound)
        out[p] = total
    return out


# -- the row balancer (decoder.balance_rows) ---------------------------------------------------


@njit(**JIT)
def balanced_order(row_work: np.ndarray, rows: int, pass_len: int) -> np.ndarray:
    """int64 (R,): the rows of each pass reordered so that the static mapping (position i on
    queue row i % rows) runs each pass's rows as the balancer assigns them: longest first
    (``row_work``, cycles; the lower index first on ties), each to the queue row with the
    least work so far among those with room (the lowest on ties), every queue row keeping
    its static number of rows. ``order[i]`` is the row at position i."""
    n_rows = row_work.shape[0]
    order = np.empty(n_rows, dtype=np.int64)
    load = np.zeros(rows, dtype=np.int64)
    room = np.zeros(rows, dtype=np.int64)
    placed = np.zeros(rows, dtype=np.int64)
    for r0 in range(0, n_rows, pass_len):
        r1 = min(r0 + pass_len, n_rows)
        load[:] = 0
        placed[:] = 0
        for q in range(rows):
            room[q] = max(0, (r1 - r0 - q + rows - 1) // rows)
        ranked = r0 + np.argsort(-row_work[r0:r1], kind="mergesort")
        for i in ranked:
            best = -1
            for q in range(rows):
                if room[q] > 0 and (best < 0 or load[q] < load[best]):
                    best = q
            order[r0 + best + rows * placed[best]] = i
            placed[best] += 1
            room[best] -= 1
            load[best] += row_work[i]
    return order


@njit(**JIT)
def staged_sample_columns(counts: np.ndarray, first: np.ndarray, sets: np.ndarray, stage: int,
                          qcols: int) -> np.ndarray:
    """int64 (passes, column tiles): each pass's compute under an operand stage of ``stage``
    steps when every unit column runs a step set of its own per sample (DGC's FW and BD).
    ``counts`` int64 (passes, R, width): rows of pass p in queue row r that belong to sample
    ``first[p] + s`` (R: the queue rows, or only the distinct ones: equal rows do equal work);
    ``sets`` uint8 (N, J, T): whether unit column j runs step t on a row of sample n. A chunk
    lasts as long as its busiest queue (r, c) needs, the sum over the queue's rows of the
    chunk's steps their sample runs."""
    n_passes, rows, width = counts.shape
    units, n_steps = sets.shape[1], sets.shape[2]
    tiles = (units + qcols - 1) // qcols
    out = np.zeros((n_passes, tiles), dtype=np.int64)
    for p in range(n_passes):
        for t in range(tiles):
            j0, j1 = t * qcols, min((t + 1) * qcols, units)
            total = 0
            for x0 in range(0, n_steps, stage):
                x1 = min(x0 + stage, n_steps)
                best = 0
                for r in range(rows):
                    for j in range(j0, j1):
                        work = 0
                        for s in range(width):
                            rows_of_sample = counts[p, r, s]
                            if rows_of_sample == 0:
                                continue
                            steps = 0
                            for x in range(x0, x1):
                                steps += sets[first[p] + s, j, x]
                            work += rows_of_sample * steps
                        best = max(best, work)
                total += best
            out[p, t] = total
    return out


@njit(**JIT)
def staged_sample_rows(sets: np.ndarray, rows: int, pass_len: int, pixels: int, stage: int,
                       qcols: int) -> np.ndarray:
    """int64 (passes, column tiles): DGC's WG under an operand stage of ``stage`` pixels:
    ``sets`` uint8 (N, J, K), whether unit (k, j) runs the ``pixels`` pixels of sample n; the
    rows k go to passes of ``pass_len`` and queue rows k % ``rows``, the pixels m = n x pixels
    + p are broadcast in order. A chunk lasts as long as its busiest queue needs: the sum over
    its rows and the chunk's samples of the pixels of each sample it runs."""
    n_samples, units, k_rows = sets.shape
    n_passes = (k_rows + pass_len - 1) // pass_len
    tiles = (units + qcols - 1) // qcols
    total_pixels = n_samples * pixels
    out = np.zeros((n_passes, tiles), dtype=np.int64)
    held = np.zeros((n_samples, rows, units), dtype=np.int64)  # rows of (p, r) sample n runs
    busiest = np.zeros(n_samples, dtype=np.int64)
    for p in range(n_passes):
        held[:] = 0
        for k in range(p * pass_len, min((p + 1) * pass_len, k_rows)):
            r = k % rows
            for n in range(n_samples):
                for j in range(units):
                    held[n, r, j] += sets[n, j, k]
        for t in range(tiles):
            j0, j1 = t * qcols, min((t + 1) * qcols, units)
            for n in range(n_samples):
                most = 0
                for r in range(rows):
                    for j in range(j0, j1):
                        most = max(most, held[n, r, j])
                busiest[n] = most
            total = 0
            for x0 in range(0, total_pixels, stage):
                x1 = min(x0 + stage, total_pixels)
                n0, n1 = x0 // pixels, (x1 - 1) // pixels
                if n0 == n1:  # the chunk lies inside one sample
                    total += (x1 - x0) * busiest[n0]
                    continue
                best = 0
                for r in range(rows):
                    for j in range(j0, j1):
                        work = 0
                        for n in range(n0, n1 + 1):
                            inside = min(x1, (n + 1) * pixels) - max(x0, n * pixels)
                            work += inside * held[n, r, j]
                        best = max(best, work)
                total += best
            out[p, t] = total
    return out


@njit(**INLINE)
def _scheduled_segment(bits: np.ndarray, size: np.ndarray, rows: np.ndarray, n: int,
                       lookahead: int, dts: np.ndarray, dls: np.ndarray,
                       order: np.ndarray) -> tuple[int, int]:
    """(cycles, lanes issued) of one segment of ``n`` nonempty rows (indices ``rows`` into
    ``bits``, a uint8 (S, L) copy the scheduler edits) under a lookahead / lookaside lane
    scheduler: row by row, every empty slot in ``order`` takes the first effectual value among
    the candidates (t + dts[c], lane + dls[c] mod L) inside the segment; a row emptied by
    earlier promotions is skipped for free up to ``lookahead`` rows in a row."""
    lanes = bits.shape[1]
    cycles = 0
    issued = 0
    skipped = 0
    for t in range(n):
        row = rows[t]
        empty = True
        for lane in range(lanes):
            if bits[row, lane]:
                empty = False
                break
        if empty and skipped < lookahead:
            skipped += 1
            continue
        skipped = 0
        for i in range(order.shape[0]):
            lane = order[i]
            if bits[row, lane]:
                continue
            for c in range(dts.shape[0]):
                later = t + dts[c]
                if later >= n:
                    continue
                source = rows[later]
                other = (lane + dls[c]) % lanes
                if bits[source, other]:
                    bits[row, lane] = 1
                    bits[source, other] = 0
                    break
        cycles += 1
        issued += size[row]
    return cycles, issued


@njit(**JIT)
def lane_scheduled_chunks(bits: np.ndarray, size: np.ndarray, path: np.ndarray, stage: int,
                          lookahead: int, dts: np.ndarray, dls: np.ndarray, order: np.ndarray
                          ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Cycles of every unit's stream of adder-tree steps under the lane scheduler
    (:mod:`accelsim.engine.lane_scheduler`), per chunk of ``stage`` steps and path.

    ``bits`` uint8 (U, S, L): effectual lanes of unit u's step s; ``size`` int64 (U, S): the
    step's lanes (its MACs when it runs); ``path`` int8 (U, S): 0 the fixed path, 1 the live
    (conditional) path, -1 no step. Inside each chunk the nonempty steps of each path form a
    segment the scheduler sees alone (empty steps are skipped by the index for free). Returns
    fixed and live cycles, int64 (U, chunks) each, and fixed and live lanes issued, int64 (U,)
    each."""
    units, steps, lanes = bits.shape
    chunks = (steps + stage - 1) // stage
    fixed = np.zeros((units, chunks), dtype=np.int64)
    live = np.zeros((units, chunks), dtype=np.int64)
    fixed_issued = np.zeros(units, dtype=np.int64)
    live_issued = np.zeros(units, dtype=np.int64)
    work = np.empty((steps, lanes), dtype=np.uint8)
    rows = np.empty(steps, dtype=np.int64)
    for u in range(units):
        work[:, :] = bits[u]
        for x in range(chunks):
            end = min(steps, (x + 1) * stage)
            for which in range(2):
                n = 0
                for s in range(x * stage, end):
                    if path[u, s] != which:
                        continue
                    for lane in range(lanes):
                        if work[s, lane]:
                            rows[n] = s
                            n += 1
                            break
                if n == 0:
                    continue
                cycles, issued = _scheduled_segment(work, size[u], rows, n, lookahead, dts,
                                                    dls, order)
                if which == 0:
                    fixed[u, x] += cycles
                    fixed_issued[u] += issued
                else:
                    live[u, x] += cycles
                    live_issued[u] += issued
    return fixed, live, fixed_issued, live_issued


@njit(**INLINE)
def _scheduled_words(work: np.ndarray, size: np.ndarray, rows: np.ndarray, n: int, full: int,
                     lookahead: int, dts: np.ndarray, bits: np.ndarray, near: np.ndarray,
                     order: np.ndarray) -> tuple[int, int]:
    """:func:`_scheduled_segment` on steps held as bit masks (``work`` uint64, lane l = bit l,
    ``full`` the mask of all lanes): the same schedule, one word per step. ``bits[l, c]``: the
    source bit of slot l's candidate c (step offset ``dts[c]``); ``near[h - 1, l]``: the source
    bits of all slot l's candidates h steps ahead, to pass over slots without one."""
    one = np.uint64(1)
    cycles = 0
    issued = 0
    skipped = 0
    reach = near.shape[0]
    for t in range(n):
        row = work[rows[t]]
        if row == 0 and skipped < lookahead:
            skipped += 1
            continue
        skipped = 0
        if row != full and t + 1 < n:
            for i in range(order.shape[0]):
                lane = order[i]
                if (row >> np.uint64(lane)) & one:
                    continue
                hit = np.uint64(0)
                for h in range(reach):
                    if t + 1 + h < n:
                        hit |= work[rows[t + 1 + h]] & near[h, lane]
                if hit == 0:
                    continue
                for c in range(dts.shape[0]):
                    later = t + dts[c]
                    if later >= n:
                        continue
                    source = rows[later]
                    if work[source] & bits[lane, c]:
                        work[source] ^= bits[lane, c]
                        row |= one << np.uint64(lane)
                        break
        work[rows[t]] = row
        cycles += 1
        issued += size[rows[t]]
    return cycles, issued


@njit(**INLINE)
def _gated_tree_chunks(gate: np.ndarray, m: int, kept: np.ndarray, base: np.ndarray, c: int,
                       full: int, size: np.ndarray, stage: int, lookahead: int,
                       dts: np.ndarray, bits: np.ndarray, near: np.ndarray, order: np.ndarray,
                       work: np.ndarray, rows: np.ndarray, out: np.ndarray) -> int:
    """BD on adder trees behind the lane scheduler, one output dX(m, k) of column class c:
    its tree steps' effectual lanes, ``kept[c, g] & (base[c, g] | gate[m, g])`` (uint64 words,
    lane l of step g = bit l), scheduled chunk by chunk of ``stage`` steps; cycles per chunk
    into ``out``, returns the lanes issued."""
    steps = work.shape[0]
    for g in range(steps):
        work[g] = kept[c, g] & (base[c, g] | gate[m, g])
    issued = 0
    for x in range(out.shape[0]):
        n = 0
        for s in range(x * stage, min(steps, (x + 1) * stage)):
            if work[s]:
                rows[n] = s
                n += 1
        cycles = 0
        if n:
            cycles, more = _scheduled_words(work, size, rows, n, full, lookahead, dts, bits,
                                            near, order)
            issued += more
        out[x] = cycles
    return issued


@njit(**JIT)
def gated_tree_schedule(gate: np.ndarray, kept: np.ndarray, base: np.ndarray,
                        classes: np.ndarray, order: np.ndarray, rows: int, pass_len: int,
                        qcols: int, full: np.uint64, size: np.ndarray, stage: int,
                        lookahead: int, dts: np.ndarray, bits: np.ndarray, near: np.ndarray,
                        slots: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Gated BD on adder trees behind the lane scheduler, every output (pixel m, column k)
    scheduled once: its cycles, int32 (M, C) by column class (summed over the stage's chunks);
    the lanes issued per class over all pixels, int64 (C,); and each pass's cycles under the
    operand stage, int64 (passes, column tiles): the sum over chunks of the slowest queue's.
    Output (row position i, column k) sits on queue (i mod rows, k mod qcols) of column tile
    k div qcols, in pass i div pass_len; position i holds pixel ``order[i]``. ``gate`` uint64
    (M, G): each tree step's gate bits per pixel (lane l = bit l); ``kept``, ``base`` uint64
    (C, G); ``full``: the mask of a tree's lanes; ``size`` int64 (G,): each step's lanes;
    ``classes`` int64 (K,); the scheduler's tables as in :func:`_scheduled_words`."""
    pixels, steps = gate.shape
    n_classes = kept.shape[0]
    columns = classes.shape[0]
    chunks = (steps + stage - 1) // stage
    tiles = (columns + qcols - 1) // qcols
    passes = (pixels + pass_len - 1) // pass_len
    work = np.empty(steps, dtype=np.uint64)
    held = np.empty(steps, dtype=np.int64)
    out = np.empty(chunks, dtype=np.int64)
    per_class = np.empty((n_classes, chunks), dtype=np.int64)
    cycles = np.zeros((pixels, n_classes), dtype=np.int32)
    issued = np.zeros(n_classes, dtype=np.int64)
    result = np.zeros((passes, tiles), dtype=np.int64)
    queue = np.zeros((tiles, rows, qcols, chunks), dtype=np.int64)
    for p in range(passes):
        queue[:] = 0
        for i in range(p * pass_len, min(pixels, (p + 1) * pass_len)):
            m = order[i]
            for c in range(n_classes):
                issued[c] += _gated_tree_chunks(gate, m, kept, base, c, full, size, stage,
                                                lookahead, dts, bits, near, slots, work, held,
                                                out)
                per_class[c] = out
                cycles[m, c] = out.sum()
            r = i % rows
            for k in range(columns):
                queue[k // qcols, r, k % qcols] += per_class[classes[k]]
        for t in range(tiles):
            total = 0
            for x in range(chunks):
                longest = 0
                for r in range(rows):
                    for q in range(qcols):
                        if queue[t, r, q, x] > longest:
                            longest = queue[t, r, q, x]
                total += longest
            result[p, t] = total
    return cycles, issued, result
