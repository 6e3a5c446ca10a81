"""Sparse index formats: exact storage bits, encode/decode and decoder work of a mask.

A mask is a numpy bool array of any rank >= 1 (True = kept / computed). Integer or float arrays
holding only 0 and 1 are accepted and converted. Every count here is exact (Python ints), computed
from the mask bits, never from a density.

Formats (``FORMATS``), with ``nnz`` = kept elements, ``size`` = all elements and
``clog2(n) = ceil(log2(n))`` (0 for n <= 1):

``bitmap``
    1 bit per element: ``size`` bits.
``rle``
    The mask flattened in C order. Each kept element stores the number of zeros since the
    previous kept element (or the start) in ``run_bits`` bits. A zero run longer than
    ``R = 2**run_bits - 1`` is split by filler entries: a filler has run ``R`` and stands for
    ``R`` zeros followed by one more zero element (an explicit zero in the value stream, as in
    Eyeriss/SCNN), so a gap of ``g`` zeros needs ``g // 2**run_bits`` fillers. A trailing zero
    run costs nothing (the shape is known). Bits = ``(nnz + fillers) * run_bits``.
``csr``
    The mask viewed as 2D: ``rows = shape[0]``, ``cols = prod(shape[1:])``. Bits =
    ``nnz * field(cols) + (rows + 1) * field(nnz + 1)``: a column index per kept element and
    ``rows + 1`` row pointers, each pointer holding a value in ``0..nnz``.
``coo``
    The same 2D view; bits = ``nnz * (field(rows) + field(cols))``.
``nm``
    N:M along ``nm_axis``: groups of M consecutive elements along that axis (other coordinates
    fixed). Each group stores which N of its M positions are stored in ``clog2(C(M, N))`` bits
    (the rank of the N-subset). A group keeping fewer than N elements still stores N positions,
    the extra ones holding explicit zeros. Representable only if M divides the axis length and no
    group keeps more than N elements. Bits = ``groups * clog2(C(M, N))``.
``group_bitmap``
    1 bit per group of ``group_shape`` (same rank as the mask). Representable only if the groups
    tile the mask exactly (each dim divisible) and every group is all-True or all-False.
    Bits = ``size // prod(group_shape)``.

A coordinate field (csr/coo) is ``field(n) = max(1, clog2(n))`` bits wide: ``n`` values need
``clog2(n)`` bits, and a field is never narrower than 1 bit, even for a dimension of extent 1
(so a coo entry of a 1D mask costs ``field(size) + 1`` bits, the same 1-bit column field that csr
stores).

Decoder work (``decoder_ops``) counts the index entries the decoder reads to yield the kept
coordinates: bitmap ``ceil(size / 64)`` 64-bit word scans + ``nnz`` coordinate outputs; rle its
entries (fillers included); csr ``nnz + rows + 1``; coo ``nnz``; nm one per group;
group_bitmap ``ceil(groups / 64)`` word scans + one output per kept group.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from accelsim.errors import InputError
from accelsim.kernels import nm_max_kept, rle_counts

FORMATS: tuple[str, ...] = ("bitmap", "rle", "csr", "coo", "nm", "group_bitmap")

_WORD_BITS = 64  # bitmap decoder word width (bits scanned per decoder op)
_NM_MAX_M = 64  # C(M, N) fits int64 for every M <= 64
_NM_TABLE_MAX_M = 16  # nm encode/decode via per-pattern lookup tables (2**M rows) up to this M


class SparsityError(InputError, ValueError):
    """Bad mask, format or parameter, or a mask the format cannot represent.

    A ``ValueError`` for library callers and an :class:`~accelsim.errors.InputError` for the CLI.
    """


def _clog2(n: int) -> int:
    """ceil(log2(n)) in exact integer arithmetic; 0 for n <= 1."""
    return (n - 1).bit_length() if n > 1 else 0


def _field_bits(n: int) -> int:
    """Width in bits of a field holding one of ``n`` values: ``max(1, ceil(log2(n)))``."""
    return max(1, _clog2(n))


def _is_int(value: object) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


@dataclass(frozen=True)
class IndexParams:
    """Parameters of the index formats.

    run_bits: width of an rle run field (bits), >= 1.
    nm: ``(N, M)`` for the nm format, ``0 <= N <= M <= 64``; None = nm not available.
    nm_axis: axis of the N:M groups (1 = input channels of a ``(Cout, Cin, kh, kw)`` weight
        mask); negative values count from the end.
    group_shape: group extent per mask dim for group_bitmap, e.g. ``(1, 8, 1, 1)`` for SCDG
        8x1x1 gate groups on an ``(N, C, H, W)`` mask; None = group_bitmap not available.
    """

    run_bits: int = 4
    nm: tuple[int, int] | None = None
    nm_axis: int = 1
    group_shape: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        if not _is_int(self.run_bits) or self.run_bits < 1:
            raise SparsityError(f"run_bits must be an integer >= 1, got {self.run_bits!r}")
        if not _is_int(self.nm_axis):
            raise SparsityError(f"nm_axis must be an integer, got {self.nm_axis!r}")
        if self.nm is not None:
            nm = tuple(self.nm)
            if len(nm) != 2 or not all(_is_int(v) for v in nm):
                raise SparsityError(f"nm must be a pair of integers (N, M), got {self.nm!r}")
            n, m = (int(v) for v in nm)
            if m < 1 or n < 0:
                raise SparsityError(f"nm needs M >= 1 and N >= 0, got N={n}, M={m}")
            if n > m:
                raise SparsityError(f"nm needs N <= M, got N={n} > M={m}")
            if m > _NM_MAX_M:
                raise SparsityError(f"nm supports M <= {_NM_MAX_M}, got M={m}")
            object.__setattr__(self, "nm", (n, m))
        if self.group_shape is not None:
            gs = tuple(self.group_shape)
            if not gs or not all(_is_int(v) and v >= 1 for v in gs):
                raise SparsityError(
                    f"group_shape must be a non-empty tuple of integers >= 1, got "
                    f"{self.group_shape!r}")
            object.__setattr__(self, "group_shape", tuple(int(v) for v in gs))


_DEFAULT = IndexParams()


@dataclass(frozen=True, eq=False)
class EncodedIndex:
    """The index of one mask in one format (the arrays are read-only).

    ``data`` per format:
      bitmap: ``(packed,)``: ``np.packbits`` of the C-order mask (uint8).
      rle: ``(runs, filler)``: run per entry (unsigned) and whether the entry is a filler (bool).
        The filler flags are what the value stream's explicit zeros tell the decoder: 0 index bits.
      csr: ``(col_idx, row_ptr)``.
      coo: ``(row_idx, col_idx)``.
      nm: ``(ranks, explicit_zero)``: per group the rank of its N-subset (int64, combinatorial
        number system), and ``(groups, N)`` flags marking stored positions (ascending) that hold
        explicit zeros (value-stream information: 0 index bits). Groups are ordered as the mask
        with the N:M axis split into (blocks, M) and the M axis moved last, in C order.
      group_bitmap: ``(packed,)``: ``np.packbits`` of the C-order group-level mask (uint8).
    """

    fmt: str
    shape: tuple[int, ...]
    params: IndexParams
    data: tuple[np.ndarray, ...]

    def __post_init__(self) -> None:
        _check_fmt(self.fmt)

    @property
    def bits(self) -> int:
        """Index storage in bits; equals ``index_bits(mask, fmt, params)`` of the encoded mask."""
        size = math.prod(self.shape)
        if self.fmt == "bitmap":
            return size
        if self.fmt == "rle":
            return int(self.data[0].size) * self.params.run_bits
        if self.fmt == "csr":
            rows, cols = _view_2d(self.shape)
            nnz = int(self.data[0].size)
            return nnz * _field_bits(cols) + (rows + 1) * _field_bits(nnz + 1)
        if self.fmt == "coo":
            rows, cols = _view_2d(self.shape)
            return int(self.data[0].size) * (_field_bits(rows) + _field_bits(cols))
        if self.fmt == "nm":
            n, m = _nm_of(self.params)
            return int(self.data[0].size) * _clog2(math.comb(m, n))
        return size // math.prod(_group_shape_of(self.params))  # group_bitmap


# ---------------------------------------------------------------------------------------------
# validation helpers


def _as_mask(mask: np.ndarray) -> np.ndarray:
    """The mask as a C-contiguous bool array of rank >= 1 (0/1 numbers are converted)."""
    arr = np.asarray(mask)
    if arr.ndim == 0:
        raise SparsityError("mask must have at least one dimension, got a scalar")
    if arr.dtype != np.bool_:
        if not (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)):
            raise SparsityError(f"mask must be bool or 0/1 numbers, got dtype {arr.dtype}")
        if not bool(np.all((arr == 0) | (arr == 1))):
            raise SparsityError(f"mask of dtype {arr.dtype} holds values other than 0 and 1")
        arr = arr.astype(np.bool_)
    return np.ascontiguousarray(arr)


def _check_fmt(fmt: str) -> None:
    if fmt not in FORMATS:
        raise SparsityError(f"unknown index format {fmt!r}; expected one of {', '.join(FORMATS)}")


def _nm_of(params: IndexParams) -> tuple[int, int]:
    if params.nm is None:
        raise SparsityError("format 'nm' needs IndexParams.nm = (N, M)")
    return params.nm


def _group_shape_of(params: IndexParams) -> tuple[int, ...]:
    if params.group_shape is None:
        raise SparsityError("format 'group_bitmap' needs IndexParams.group_shape")
    return params.group_shape


def _view_2d(shape: tuple[int, ...]) -> tuple[int, int]:
    """(rows, cols) of the csr/coo view: ``shape[0]`` x ``prod(shape[1:])``."""
    return shape[0], math.prod(shape[1:])


def _nm_axis(shape: tuple[int, ...], params: IndexParams) -> int:
    ndim = len(shape)
    if not -ndim <= params.nm_axis < ndim:
        raise SparsityError(f"nm_axis {params.nm_axis} is out of range for a mask of rank {ndim}")
    return params.nm_axis % ndim


def _check_group_shape(shape: tuple[int, ...], group_shape: tuple[int, ...]) -> None:
    if len(group_shape) != len(shape):
        raise SparsityError(f"group_shape {group_shape} has rank {len(group_shape)}, "
                            f"the mask {shape} has rank {len(shape)}")


def _group_view(mask: np.ndarray, group_shape: tuple[int, ...]) -> np.ndarray | None:
    """The mask reshaped to (s0/g0, g0, s1/g1, g1, ...), or None if the groups do not tile it."""
    if any(s % g for s, g in zip(mask.shape, group_shape, strict=True)):
        return None
    split = tuple(x for s, g in zip(mask.shape, group_shape, strict=True) for x in (s // g, g))
    return mask.reshape(split)


def _group_level(mask: np.ndarray, group_shape: tuple[int, ...]) -> np.ndarray | None:
    """Group-level bool mask (True = kept group), or None unless the groups tile the mask and
    each is all-True or all-False."""
    _check_group_shape(mask.shape, group_shape)
    view = _group_view(mask, group_shape)
    if view is None:
        return None
    gsize = math.prod(group_shape)
    counts = view.sum(axis=tuple(range(1, view.ndim, 2)), dtype=np.min_scalar_type(gsize))
    kept = counts == gsize
    if np.any(counts[~kept]):
        return None
    return kept


def _index_dtype(max_value: int) -> np.dtype:
    return np.min_scalar_type(max(0, max_value))


def _frozen(*arrays: np.ndarray) -> tuple[np.ndarray, ...]:
    for a in arrays:
        a.setflags(write=False)
    return arrays


# ---------------------------------------------------------------------------------------------
# rle


def _rle_counts(flat: np.ndarray, run_bits: int) -> tuple[int, int]:
    """(nnz, fillers) of the rle stream of a flat bool mask (:func:`accelsim.kernels.
    rle_counts`: one pass over the kept elements)."""
    data = np.ascontiguousarray(flat, dtype=np.bool_).view(np.uint8)
    whole = data.size // 8 * 8
    words = np.frombuffer(data[:whole].tobytes(), dtype=np.uint64) \
        if data.ctypes.data % 8 else data[:whole].view(np.uint64)
    return rle_counts(words, data[whole:], run_bits)


def _rle_encode(flat: np.ndarray, run_bits: int) -> tuple[np.ndarray, np.ndarray]:
    pos = np.flatnonzero(flat)
    gaps = np.diff(pos, prepend=-1) - 1  # zeros before each kept element
    if flat.size <= (1 << run_bits):  # no fillers (also keeps the shifts below < 63 bits)
        return gaps.astype(_index_dtype(flat.size)), np.zeros(pos.size, dtype=np.bool_)
    nfill = np.right_shift(gaps, run_bits)
    entries = int(pos.size + nfill.sum())
    kept_at = np.arange(pos.size) + np.cumsum(nfill)  # entry index of each kept element
    max_run = (1 << run_bits) - 1
    runs = np.full(entries, max_run, dtype=_index_dtype(max_run))
    runs[kept_at] = gaps - np.left_shift(nfill, run_bits)
    filler = np.ones(entries, dtype=np.bool_)
    filler[kept_at] = False
    return runs, filler


def _rle_decode(runs: np.ndarray, filler: np.ndarray, size: int) -> np.ndarray:
    at = np.cumsum(runs.astype(np.int64) + 1) - 1  # element each entry ends on
    if at.size and at[-1] >= size:
        raise SparsityError("rle index runs past the end of the mask")
    flat = np.zeros(size, dtype=np.bool_)
    flat[at[~filler]] = True
    return flat


# ---------------------------------------------------------------------------------------------
# nm


def _comb_table(m: int, n: int) -> np.ndarray:
    """``T[j, k] = C(j, k)`` for ``j < m``, ``k <= n`` (int64)."""
    return np.array([[math.comb(j, k) for k in range(n + 1)] for j in range(m)], dtype=np.int64)


def _nm_groups(mask: np.ndarray, axis: int, m: int) -> np.ndarray:
    """(groups, M) bool array of the N:M groups in canonical order (M divides the axis)."""
    view = mask.reshape((*mask.shape[:axis], mask.shape[axis] // m, m, *mask.shape[axis + 1:]))
    return np.moveaxis(view, axis + 1, -1).reshape(-1, m)


def _nm_encode_rows(groups: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Ranks (int64) and (groups, N) explicit-zero flags of (groups, M) rows keeping <= N each."""
    g, m = groups.shape
    need = n - groups.sum(axis=1, dtype=np.int64)  # explicit zeros per group (>= 0)
    # stored positions: the kept ones, padded with the lowest unkept positions
    pad = ~groups & (np.cumsum(~groups, axis=1) <= need[:, None])
    stored = groups | pad
    table = _comb_table(m, n)
    order = np.cumsum(stored, axis=1)  # 1-based order of each stored position
    ranks = np.zeros(g, dtype=np.int64)
    for j in range(m):  # combinatorial number system: rank = sum_i C(c_i, i)
        ranks += np.where(stored[:, j], table[j, np.minimum(order[:, j], n)], 0)
    return ranks, pad[stored].reshape(g, n)


def _nm_stored_rows(ranks: np.ndarray, n: int, m: int) -> np.ndarray:
    """(groups, M) bool array of the N stored positions of each rank (0 <= rank < C(M, N))."""
    table = _comb_table(m, n)
    rest = ranks.astype(np.int64, copy=True)
    left = np.full(ranks.size, n, dtype=np.int64)
    stored = np.zeros((ranks.size, m), dtype=np.bool_)
    for j in range(m - 1, -1, -1):  # greedy combinatorial-number-system decode
        c = table[j, left]
        take = (left > 0) & (rest >= c)
        stored[:, j] = take
        rest -= np.where(take, c, 0)
        left -= take
    return stored


@functools.lru_cache(maxsize=16)
def _nm_tables(n: int, m: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Lookup tables for M <= 16: per group pattern (bit j = position j kept) its rank (-1 if it
    keeps more than N) and explicit-zero flags; per rank its stored positions."""
    patterns = ((np.arange(1 << m)[:, None] >> np.arange(m)) & 1).astype(np.bool_)
    fits = patterns.sum(axis=1) <= n
    ranks = np.full(1 << m, -1, dtype=np.int64)
    zeros = np.zeros((1 << m, n), dtype=np.bool_)
    ranks[fits], zeros[fits] = _nm_encode_rows(patterns[fits], n)
    stored = _nm_stored_rows(np.arange(math.comb(m, n)), n, m)
    _frozen(ranks, zeros, stored)
    return ranks, zeros, stored


def _nm_codes(groups: np.ndarray) -> np.ndarray:
    """Pattern code of each (groups, M) row, M <= 16: bit j set = position j kept."""
    packed = np.packbits(groups, axis=1, bitorder="little")
    codes = packed[:, 0].astype(np.int64)
    if packed.shape[1] > 1:
        codes |= packed[:, 1].astype(np.int64) << 8
    return codes


def _nm_encode(groups: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    m = groups.shape[1]
    if m > _NM_TABLE_MAX_M:
        return _nm_encode_rows(groups, n)
    rank_of, zeros_of, _ = _nm_tables(n, m)
    codes = _nm_codes(groups)
    return rank_of[codes], zeros_of[codes]


def _nm_decode(ranks: np.ndarray, explicit_zero: np.ndarray, n: int, m: int) -> np.ndarray:
    """(groups, M) bool array of the kept positions."""
    if ranks.size and (int(ranks.min()) < 0 or int(ranks.max()) >= math.comb(m, n)):
        raise SparsityError(f"nm index holds a rank outside 0..C({m}, {n}) - 1")
    small = m <= _NM_TABLE_MAX_M
    stored = _nm_tables(n, m)[2][ranks] if small else _nm_stored_rows(ranks, n, m)
    kept = stored.copy()
    kept[stored] = ~explicit_zero.reshape(-1)
    return kept


def _nm_fits(mask: np.ndarray, params: IndexParams) -> bool:
    """:func:`nm_fits` with the N:M pattern and axis of ``params``."""
    return nm_fits(mask, *_nm_of(params), axis=_nm_axis(mask.shape, params))


def nm_fits(mask: np.ndarray, n: int, m: int, axis: int = 1) -> bool:
    """Whether M divides the length of ``axis`` and every group of M consecutive entries along
    it keeps <= N elements (axis 1: the input channels of a (Cout, Cin, kh, kw) weight)."""
    if mask.shape[axis] % m:
        return False
    return mask.size == 0 or nm_max_kept_along(mask, axis, m) <= n


def nm_max_kept_along(mask: np.ndarray, axis: int, m: int) -> int:
    """Most kept elements in any group of ``m`` consecutive entries along ``axis`` (M must
    divide that axis)."""
    shape = mask.shape
    view = np.ascontiguousarray(mask, dtype=np.bool_).view(np.uint8).reshape(
        math.prod(shape[:axis]), shape[axis], math.prod(shape[axis + 1:]))
    return int(nm_max_kept(view, m))


def _group_level_or_none(mask: np.ndarray, params: IndexParams) -> np.ndarray | None:
    """Group-level mask, or None if group_bitmap cannot represent the mask (or has no groups)."""
    return None if params.group_shape is None else _group_level(mask, params.group_shape)


def _representable(mask: np.ndarray, fmt: str, params: IndexParams) -> bool:
    if fmt == "nm":
        return params.nm is not None and _nm_fits(mask, params)
    if fmt == "group_bitmap":
        return _group_level_or_none(mask, params) is not None
    return True


def _not_representable(fmt: str, shape: tuple[int, ...], params: IndexParams) -> SparsityError:
    if fmt == "nm" and params.nm is not None:
        n, m = params.nm
        why = f"needs M = {m} to divide axis {params.nm_axis} and <= {n} kept per group"
    elif fmt == "group_bitmap" and params.group_shape is not None:
        why = f"needs groups {params.group_shape} that tile it and are all-True or all-False"
    else:
        why = f"IndexParams.{'nm' if fmt == 'nm' else 'group_shape'} is not set"
    return SparsityError(f"format {fmt!r} cannot represent this mask of shape {shape}: {why}")


# ---------------------------------------------------------------------------------------------
# public API


def index_bits(mask: np.ndarray, fmt: str, params: IndexParams = _DEFAULT, *,
               nm_fit: bool | None = None, nnz: int | None = None) -> int | None:
    """Exact index storage of ``mask`` in format ``fmt``, in bits.

    None when the format cannot represent this mask (nm / group_bitmap structure violated, or
    ``params.nm`` / ``params.group_shape`` not given). See the module docstring for the rules.
    ``nm_fit``: whether ``mask`` is already known to satisfy ``params.nm`` (:func:`nm_fits`;
    None: scan the mask); ``nnz``: its kept elements when already counted (None: count them).
    Raises ``SparsityError`` (a ValueError) for an unknown format, a bad mask, a ``group_shape``
    of the wrong rank or an ``nm_axis`` out of range.
    """
    _check_fmt(fmt)
    mask = _as_mask(mask)
    if fmt == "bitmap":
        return mask.size
    if fmt == "rle":
        nnz, fillers = _rle_counts(mask.reshape(-1), params.run_bits)
        return (nnz + fillers) * params.run_bits
    if fmt in ("csr", "coo"):
        return coordinate_index_bits(fmt, mask.shape,
                                     int(np.count_nonzero(mask)) if nnz is None else nnz)
    if fmt == "nm":
        if params.nm is None or not (_nm_fits(mask, params) if nm_fit is None else nm_fit):
            return None
        n, m = params.nm
        return mask.size // m * _clog2(math.comb(m, n))
    groups = _group_level_or_none(mask, params)
    return None if groups is None else groups.size


def coordinate_index_bits(fmt: str, shape: tuple[int, ...], nnz: int) -> int:
    """Bits of the csr or coo index of a mask of ``shape`` with ``nnz`` kept elements (these
    depend on the count only)."""
    rows, cols = _view_2d(tuple(shape))
    if fmt == "csr":
        return nnz * _field_bits(cols) + (rows + 1) * _field_bits(nnz + 1)
    if fmt == "coo":
        return nnz * (_field_bits(rows) + _field_bits(cols))
    raise SparsityError(f"{fmt!r} is not a coordinate format (csr, coo)")


def all_index_bits(mask: np.ndarray, params: IndexParams = _DEFAULT) -> dict[str, int | None]:
    """``index_bits`` of every format in ``FORMATS`` (None where not representable)."""
    mask = _as_mask(mask)
    return {fmt: index_bits(mask, fmt, params) for fmt in FORMATS}


def best_format(mask: np.ndarray, formats: Sequence[str] = FORMATS,
                params: IndexParams = _DEFAULT, *, nm_fit: bool | None = None,
                nnz: int | None = None) -> tuple[str, int]:
    """The cheapest representable format among ``formats`` and its bits (ties: order given;
    ``nm_fit`` and ``nnz`` as in :func:`index_bits`).

    Raises ``SparsityError`` (a ValueError) if ``formats`` is empty or none can represent the mask.
    """
    formats = (formats,) if isinstance(formats, str) else tuple(formats)
    if not formats:
        raise SparsityError("best_format needs at least one format")
    for fmt in formats:
        _check_fmt(fmt)
    mask = _as_mask(mask)
    best: tuple[str, int] | None = None
    for fmt in formats:
        bits = index_bits(mask, fmt, params, nm_fit=nm_fit, nnz=nnz)
        if bits is not None and (best is None or bits < best[1]):
            best = (fmt, bits)
    if best is None:
        raise SparsityError(f"none of the formats {', '.join(formats)} can represent this mask "
                            f"of shape {mask.shape}")
    return best


def encode(mask: np.ndarray, fmt: str, params: IndexParams = _DEFAULT) -> EncodedIndex:
    """Encode ``mask`` in format ``fmt``; ``decode`` gives the mask back exactly.

    Raises ``SparsityError`` (a ValueError) if the format cannot represent the mask.
    """
    _check_fmt(fmt)
    mask = _as_mask(mask)
    shape = tuple(int(s) for s in mask.shape)
    if fmt != "group_bitmap" and not _representable(mask, fmt, params):
        raise _not_representable(fmt, shape, params)
    data: tuple[np.ndarray, ...]
    if fmt == "bitmap":
        data = (np.packbits(mask.reshape(-1)),)
    elif fmt == "rle":
        data = _rle_encode(mask.reshape(-1), params.run_bits)
    elif fmt in ("csr", "coo"):
        rows, cols = _view_2d(shape)
        r, c = np.nonzero(mask.reshape(rows, cols))
        col_idx = c.astype(_index_dtype(cols - 1))
        if fmt == "csr":
            row_ptr = np.zeros(rows + 1, dtype=_index_dtype(c.size))
            np.cumsum(np.bincount(r, minlength=rows), out=row_ptr[1:])
            data = (col_idx, row_ptr)
        else:
            data = (r.astype(_index_dtype(rows - 1)), col_idx)
    elif fmt == "nm":
        n, m = _nm_of(params)
        data = _nm_encode(_nm_groups(mask, _nm_axis(shape, params), m), n)
    else:
        groups = _group_level_or_none(mask, params)
        if groups is None:
            raise _not_representable(fmt, shape, params)
        data = (np.packbits(groups.reshape(-1)),)
    return EncodedIndex(fmt=fmt, shape=shape, params=params, data=_frozen(*data))


def decode(encoded: EncodedIndex) -> np.ndarray:
    """The mask an ``EncodedIndex`` stands for: a new bool array of ``encoded.shape``."""
    fmt, shape, params, data = encoded.fmt, encoded.shape, encoded.params, encoded.data
    size = math.prod(shape)
    if fmt == "bitmap":
        return np.unpackbits(data[0], count=size).astype(np.bool_).reshape(shape)
    if fmt == "rle":
        return _rle_decode(data[0], data[1], size).reshape(shape)
    if fmt in ("csr", "coo"):
        rows, cols = _view_2d(shape)
        if fmt == "csr":
            col_idx, row_ptr = data
            r = np.repeat(np.arange(rows), np.diff(row_ptr.astype(np.int64)))
        else:
            r, col_idx = data
        out = np.zeros((rows, cols), dtype=np.bool_)
        out[r.astype(np.int64), col_idx.astype(np.int64)] = True
        return out.reshape(shape)
    if fmt == "nm":
        n, m = _nm_of(params)
        axis = _nm_axis(shape, params)
        kept = _nm_decode(data[0], data[1], n, m)
        moved = (*shape[:axis], shape[axis] // m, *shape[axis + 1:], m)
        return np.moveaxis(kept.reshape(moved), -1, axis + 1).reshape(shape)
    gs = _group_shape_of(params)
    gshape = tuple(s // g for s, g in zip(shape, gs, strict=True))
    groups = np.unpackbits(data[0], count=math.prod(gshape)).astype(np.bool_).reshape(gshape)
    return expand_groups(groups, gs)


def decoder_ops(mask: np.ndarray, fmt: str, params: IndexParams = _DEFAULT) -> int:
    """Index entries the decoder reads to yield the kept coordinates (see the module docstring).

    bitmap ``ceil(size/64) + nnz``; rle entries incl. fillers; csr ``nnz + rows + 1``;
    coo ``nnz``; nm groups; group_bitmap ``ceil(groups/64) + kept groups``.
    Raises ``SparsityError`` (a ValueError) if the format cannot represent the mask.
    """
    _check_fmt(fmt)
    mask = _as_mask(mask)
    if fmt == "bitmap":
        return -(-mask.size // _WORD_BITS) + int(np.count_nonzero(mask))
    if fmt == "rle":
        return sum(_rle_counts(mask.reshape(-1), params.run_bits))
    if fmt == "csr":
        return int(np.count_nonzero(mask)) + mask.shape[0] + 1
    if fmt == "coo":
        return int(np.count_nonzero(mask))
    if fmt == "nm":
        if not _representable(mask, fmt, params):
            raise _not_representable(fmt, tuple(mask.shape), params)
        return mask.size // _nm_of(params)[1]
    groups = _group_level_or_none(mask, params)
    if groups is None:
        raise _not_representable(fmt, tuple(mask.shape), params)
    return -(-groups.size // _WORD_BITS) + int(np.count_nonzero(groups))


def stored_values(mask: np.ndarray, fmt: str, params: IndexParams = _DEFAULT) -> int:
    """Values the compressed tensor stores beside its index (a count of elements, not bits).

    ``nnz`` for bitmap, csr, coo and group_bitmap; ``nnz + fillers`` for rle (a filler stores an
    explicit zero); ``groups * N`` for nm (groups keeping fewer than N store explicit zeros).
    Raises ``SparsityError`` (a ValueError) if the format cannot represent the mask.
    """
    _check_fmt(fmt)
    mask = _as_mask(mask)
    if not _representable(mask, fmt, params):
        raise _not_representable(fmt, tuple(mask.shape), params)
    if fmt == "rle":
        return sum(_rle_counts(mask.reshape(-1), params.run_bits))
    if fmt == "nm":
        n, m = _nm_of(params)
        return mask.size // m * n
    return int(np.count_nonzero(mask))


def expand_groups(mask_groups: np.ndarray, group_shape: Sequence[int]) -> np.ndarray:
    """Group-level mask -> element-level mask: each group entry repeated ``group_shape`` times.

    ``mask_groups`` of shape ``(G0, G1, ...)`` gives a new bool array of shape
    ``(G0*g0, G1*g1, ...)`` (as ``np.repeat`` along every axis).
    """
    groups = _as_mask(mask_groups)
    gs = tuple(group_shape)
    if not all(_is_int(v) and v >= 1 for v in gs):
        raise SparsityError(f"group_shape must hold integers >= 1, got {group_shape!r}")
    _check_group_shape(groups.shape, gs)
    out = np.empty(tuple(s * g for s, g in zip(groups.shape, gs, strict=True)), dtype=np.bool_)
    split = tuple(x for s, g in zip(groups.shape, gs, strict=True) for x in (s, g))
    out.reshape(split)[...] = groups.reshape(tuple(x for s in groups.shape for x in (s, 1)))
    return out


def index_reduction(reference_bits: int, bits: int) -> float:
    """Index reduction ``reference_bits / bits`` (e.g. unstructured bitmap bits / format bits).

    ``inf`` when ``bits == 0`` and ``reference_bits > 0``; 1.0 when both are 0.
    """
    if reference_bits < 0 or bits < 0:
        raise SparsityError(f"bit counts must be >= 0, got {reference_bits} and {bits}")
    if bits == 0:
        return math.inf if reference_bits > 0 else 1.0
    return reference_bits / bits
