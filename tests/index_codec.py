"""Reference codec of the index formats of :mod:`accelsim.sparsity` (tests only).

``encode`` stores a mask in one format, ``decode`` gives it back and ``EncodedIndex.bits`` counts
the bits of the stored index from its fields (its own arithmetic, not ``index_bits``). The round
trips ``decode(encode(mask)) == mask`` with ``bits == index_bits(mask)`` prove the product's
counts. Written to be read, not to be fast.

Counted from the encoding as well:

``decoder_ops``
    Index entries the decoder reads to yield the kept coordinates: bitmap ``ceil(size / 64)``
    64-bit word scans + ``nnz`` coordinate outputs; rle its entries (fillers included); csr
    ``nnz + rows + 1``; coo ``nnz``; nm one per group; group_bitmap ``ceil(groups / 64)`` word
    scans + one output per kept group.
``stored_values``
    Values the compressed tensor stores beside its index (elements, not bits): ``nnz``, except
    rle ``nnz + fillers`` (a filler stores an explicit zero) and nm ``groups * N`` (a group keeping
    fewer than N stores explicit zeros).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from accelsim.sparsity import FORMATS, IndexParams, SparsityError, _as_mask

_WORD_BITS = 64  # bitmap decoder word width (bits scanned per decoder op)
_DEFAULT = IndexParams()


def _clog2(n: int) -> int:
    """ceil(log2(n)) in exact integer arithmetic; 0 for n <= 1."""
    return (n - 1).bit_length() if n > 1 else 0


def _field_bits(n: int) -> int:
    """Width in bits of a csr/coo field holding one of ``n`` values (at least 1)."""
    return max(1, _clog2(n))


def _check_fmt(fmt: str) -> None:
    if fmt not in FORMATS:
        raise SparsityError(f"unknown index format {fmt!r}; expected one of {', '.join(FORMATS)}")


def _not_representable(fmt: str, shape: tuple[int, ...], why: str) -> SparsityError:
    return SparsityError(f"format {fmt!r} cannot represent this mask of shape {shape}: {why}")


@dataclass(frozen=True, eq=False)
class EncodedIndex:
    """The index of one mask in one format (the arrays are read-only, integers are int64).

    ``data`` per format:
      bitmap: ``(packed,)``: ``np.packbits`` of the C-order mask (uint8).
      rle: ``(runs, filler)``: run per entry and whether the entry is a filler (bool). The filler
        flags are what the value stream's explicit zeros tell the decoder: 0 index bits.
      csr: ``(col_idx, row_ptr)``.
      coo: ``(row_idx, col_idx)``.
      nm: ``(ranks, explicit_zero)``: per group the colexicographic rank of its N stored
        positions, and ``(groups, N)`` flags marking stored positions (ascending) that hold
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
        """Index storage in bits, counted from the stored fields."""
        size = math.prod(self.shape)
        rows, cols = self.shape[0], math.prod(self.shape[1:])
        entries = int(self.data[0].size)
        if self.fmt == "bitmap":
            return size
        if self.fmt == "rle":
            return entries * self.params.run_bits
        if self.fmt == "csr":
            return entries * _field_bits(cols) + int(self.data[1].size) * _field_bits(entries + 1)
        if self.fmt == "coo":
            return entries * (_field_bits(rows) + _field_bits(cols))
        if self.fmt == "nm":
            n, m = self.params.nm
            return entries * _clog2(math.comb(m, n))
        return size // math.prod(self.params.group_shape)  # group_bitmap


# ---------------------------------------------------------------------------------------------
# rle


def _rle_encode(flat: np.ndarray, run_bits: int) -> tuple[np.ndarray, np.ndarray]:
    """(runs, filler) of a flat bool mask; a gap of g zeros takes ``g >> run_bits`` fillers."""
    pos = np.flatnonzero(flat)
    gaps = np.diff(pos, prepend=-1) - 1  # zeros before each kept element
    if flat.size <= 1 << run_bits:  # no fillers (also keeps the shifts below 63 bits)
        return gaps, np.zeros(pos.size, dtype=np.bool_)
    fillers = gaps >> run_bits
    kept_at = np.arange(pos.size) + np.cumsum(fillers)  # entry of each kept element
    runs = np.full(pos.size + int(fillers.sum()), (1 << run_bits) - 1, dtype=np.int64)
    runs[kept_at] = gaps - (fillers << run_bits)
    filler = np.ones(runs.size, dtype=np.bool_)
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


def _nm_rank(positions: list[int]) -> int:
    """Colexicographic rank of an ascending N-subset (combinatorial number system)."""
    return sum(math.comb(p, i + 1) for i, p in enumerate(positions))


def _nm_unrank(rank: int, n: int, m: int) -> list[int]:
    """The ascending N-subset of range(M) of colexicographic rank ``rank``."""
    positions: list[int] = []
    for p in range(m - 1, -1, -1):  # greedy: the largest position first
        left = n - len(positions)
        if left and rank >= math.comb(p, left):
            positions.append(p)
            rank -= math.comb(p, left)
    return positions[::-1]


def _nm_groups(mask: np.ndarray, params: IndexParams) -> np.ndarray:
    """(groups, M) bool array of the N:M groups in canonical order."""
    shape, ndim = mask.shape, mask.ndim
    if params.nm is None:
        raise _not_representable("nm", shape, "IndexParams.nm is not set")
    n, m = params.nm
    if not -ndim <= params.nm_axis < ndim:
        raise SparsityError(f"nm_axis {params.nm_axis} is out of range for a mask of rank {ndim}")
    axis = params.nm_axis % ndim
    if shape[axis] % m:
        raise _not_representable("nm", shape, f"M = {m} does not divide axis {params.nm_axis}")
    view = mask.reshape((*shape[:axis], shape[axis] // m, m, *shape[axis + 1:]))
    groups = np.moveaxis(view, axis + 1, -1).reshape(-1, m)
    if groups.size and int(groups.sum(axis=1).max()) > n:
        raise _not_representable("nm", shape, f"a group keeps more than N = {n}")
    return groups


def _nm_encode(groups: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Ranks and explicit-zero flags; a group keeping k < N pads with its N - k lowest free
    positions."""
    ranks: list[int] = []
    zeros: list[list[bool]] = []
    for row in groups.tolist():
        kept = [p for p, k in enumerate(row) if k]
        pad = [p for p, k in enumerate(row) if not k][:n - len(kept)]
        stored = sorted(kept + pad)
        ranks.append(_nm_rank(stored))
        zeros.append([p in pad for p in stored])
    return np.array(ranks, dtype=np.int64), np.array(zeros, dtype=np.bool_).reshape(len(ranks), n)


def _nm_decode(ranks: np.ndarray, explicit_zero: np.ndarray, n: int, m: int) -> np.ndarray:
    """(groups, M) bool array of the kept positions."""
    kept = np.zeros((ranks.size, m), dtype=np.bool_)
    for g, (rank, zeros) in enumerate(zip(ranks.tolist(), explicit_zero.tolist(), strict=True)):
        if not 0 <= rank < math.comb(m, n):
            raise SparsityError(f"nm index holds a rank outside 0..C({m}, {n}) - 1")
        for p, zero in zip(_nm_unrank(rank, n, m), zeros, strict=True):
            kept[g, p] = not zero
    return kept


# ---------------------------------------------------------------------------------------------
# group_bitmap


def _group_level(mask: np.ndarray, params: IndexParams) -> np.ndarray:
    """Group-level bool mask (True = kept group)."""
    shape, gs = mask.shape, params.group_shape
    if gs is None:
        raise _not_representable("group_bitmap", shape, "IndexParams.group_shape is not set")
    if len(gs) != len(shape):
        raise SparsityError(f"group_shape {gs} has rank {len(gs)}, the mask {shape} has rank "
                            f"{len(shape)}")
    if any(s % g for s, g in zip(shape, gs, strict=True)):
        raise _not_representable("group_bitmap", shape, f"groups {gs} do not tile it")
    view = mask.reshape(tuple(x for s, g in zip(shape, gs, strict=True) for x in (s // g, g)))
    inner = tuple(range(1, view.ndim, 2))
    kept = view.all(axis=inner)
    if np.any(kept != view.any(axis=inner)):
        raise _not_representable("group_bitmap", shape, f"a group of {gs} is mixed")
    return kept


# ---------------------------------------------------------------------------------------------
# codec


def encode(mask: np.ndarray, fmt: str, params: IndexParams = _DEFAULT) -> EncodedIndex:
    """Encode ``mask`` in format ``fmt``; ``decode`` gives the mask back exactly.

    Raises ``SparsityError`` (a ValueError) if the format cannot represent the mask.
    """
    _check_fmt(fmt)
    mask = _as_mask(mask)
    shape = tuple(int(s) for s in mask.shape)
    data: tuple[np.ndarray, ...]
    if fmt == "bitmap":
        data = (np.packbits(mask.reshape(-1)),)
    elif fmt == "rle":
        data = _rle_encode(mask.reshape(-1), params.run_bits)
    elif fmt in ("csr", "coo"):
        rows, cols = shape[0], math.prod(shape[1:])
        r, c = np.nonzero(mask.reshape(rows, cols))
        if fmt == "csr":
            data = (c, np.concatenate(([0], np.cumsum(np.bincount(r, minlength=rows)))))
        else:
            data = (r, c)
    elif fmt == "nm":
        data = _nm_encode(_nm_groups(mask, params), params.nm[0])
    else:
        data = (np.packbits(_group_level(mask, params).reshape(-1)),)
    for a in data:
        a.setflags(write=False)
    return EncodedIndex(fmt=fmt, shape=shape, params=params, data=data)


def decode(encoded: EncodedIndex) -> np.ndarray:
    """The mask an ``EncodedIndex`` stands for: a new bool array of ``encoded.shape``."""
    fmt, shape, params, data = encoded.fmt, encoded.shape, encoded.params, encoded.data
    size = math.prod(shape)
    if fmt == "bitmap":
        return np.unpackbits(data[0], count=size).astype(np.bool_).reshape(shape)
    if fmt == "rle":
        return _rle_decode(data[0], data[1], size).reshape(shape)
    if fmt in ("csr", "coo"):
        rows, cols = shape[0], math.prod(shape[1:])
        if fmt == "csr":
            col_idx, row_ptr = data
            r = np.repeat(np.arange(rows), np.diff(row_ptr))
        else:
            r, col_idx = data
        out = np.zeros((rows, cols), dtype=np.bool_)
        out[r, col_idx] = True
        return out.reshape(shape)
    if fmt == "nm":
        n, m = params.nm
        axis = params.nm_axis % len(shape)
        kept = _nm_decode(data[0], data[1], n, m)
        moved = (*shape[:axis], shape[axis] // m, *shape[axis + 1:], m)
        return np.moveaxis(kept.reshape(moved), -1, axis + 1).reshape(shape)
    gs = params.group_shape
    gshape = tuple(s // g for s, g in zip(shape, gs, strict=True))
    out = np.unpackbits(data[0], count=math.prod(gshape)).astype(np.bool_).reshape(gshape)
    for axis, g in enumerate(gs):
        out = np.repeat(out, g, axis=axis)
    return out


def decoder_ops(mask: np.ndarray, fmt: str, params: IndexParams = _DEFAULT) -> int:
    """Index entries the decoder reads to yield the kept coordinates (see the module docstring).

    Raises ``SparsityError`` (a ValueError) if the format cannot represent the mask.
    """
    enc = encode(mask, fmt, params)
    if fmt in ("bitmap", "group_bitmap"):  # word scans + one output per set bit
        return -(-enc.bits // _WORD_BITS) + int(np.unpackbits(enc.data[0]).sum())
    if fmt == "csr":
        return int(enc.data[0].size + enc.data[1].size)
    return int(enc.data[0].size)  # rle entries, coo entries, nm groups


def stored_values(mask: np.ndarray, fmt: str, params: IndexParams = _DEFAULT) -> int:
    """Values stored beside the index, explicit zeros included (elements, not bits).

    Raises ``SparsityError`` (a ValueError) if the format cannot represent the mask.
    """
    enc = encode(mask, fmt, params)
    if fmt == "rle":
        return int(enc.data[0].size)  # kept elements + fillers
    if fmt == "nm":
        return int(enc.data[1].size)  # N per group
    return int(np.count_nonzero(decode(enc)))
