"""Sparse index formats: the exact storage bits of a mask in each index format.

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

``tests/index_codec.py`` holds the reference codec of every format; its round trips prove these
counts.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from accelsim.errors import InputError
from accelsim.kernels import nm_max_kept, rle_counts

FORMATS: tuple[str, ...] = ("bitmap", "rle", "csr", "coo", "nm", "group_bitmap")

_NM_MAX_M = 64  # C(M, N) fits int64 for every M <= 64


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


# ---------------------------------------------------------------------------------------------
# nm


def _nm_fits(mask: np.ndarray, nm: tuple[int, int], params: IndexParams) -> bool:
    """:func:`nm_fits` with the N:M pattern ``nm`` and the axis of ``params``."""
    return nm_fits(mask, *nm, axis=_nm_axis(mask.shape, params))


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
        nm = params.nm
        if nm is None or not (_nm_fits(mask, nm, params) if nm_fit is None else nm_fit):
            return None
        n, m = nm
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
