"""The index storage of a job's masks: each mask priced in the cheapest format the decoder reads.

Gates are priced at element level from the trace's packed bits without unpacking them where the
counts suffice (bitmap, csr, coo, group bitmap); weight masks with their declared structure
(N:M, blocks). Exact bits come from :mod:`accelsim.sparsity`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from accelsim.config import HardwareConfig
from accelsim.errors import InputError
from accelsim.kernels import as_words, uniform_group_ones
from accelsim.sparsity import IndexParams, best_format, coordinate_index_bits
from accelsim.trace import PackedMask


@dataclass(frozen=True)
class MaskIndex:
    """Stored index of one mask: bits in the format used, and as an element bitmap."""

    fmt: str
    bits: int
    bits_bitmap: int


NO_MASK_INDEX = MaskIndex("none", 0, 0)


def parse_weight_pattern(pattern: str) -> tuple[str, tuple[int, int] | None]:
    """``element`` | ``nm:N:M`` | ``nmt:N:M`` | ``block:BOxBI`` -> (kind, (N, M) or (BO, BI) or
    None)."""
    parts = pattern.split(":")
    try:
        if parts[0] in ("nm", "nmt") and len(parts) == 3:
            return parts[0], (int(parts[1]), int(parts[2]))
        if parts[0] == "block" and len(parts) == 2:
            bo, bi = parts[1].lower().split("x")
            return "block", (int(bo), int(bi))
    except ValueError:
        pass
    return "element", None


def candidate_formats(hw: HardwareConfig, nnz: int, size: int, run_bits: int) -> list[str]:
    """The decoder's formats worth pricing for a mask of ``size`` elements, ``nnz`` kept: rle
    is dropped when the bitmap is there and every kept element's ``run_bits`` already exceed
    it (rle cannot win)."""
    formats = list(hw.decoder.formats)
    if "bitmap" in formats and "rle" in formats and nnz * run_bits > size:
        formats.remove("rle")
    return formats


def _no_format(hw: HardwareConfig, what: str) -> InputError:
    formats = list(hw.decoder.formats)
    return InputError(f"no format in decoder.formats {formats} can store the {what}; add bitmap",
                      field="decoder.formats")


def price_index(mask: np.ndarray, hw: HardwareConfig, params: IndexParams, what: str, *,
                nm_fit: bool | None = None, nnz: int | None = None) -> MaskIndex:
    """The cheapest format the decoder supports for ``mask`` (element level; ``nm_fit``: whether
    it is known to satisfy ``params.nm``, None: check; ``nnz``: its kept elements when already
    counted, None: count)."""
    nnz = int(np.count_nonzero(mask)) if nnz is None else nnz
    formats = candidate_formats(hw, nnz, mask.size, params.run_bits)
    try:
        fmt, bits = best_format(mask, formats, params, nm_fit=nm_fit, nnz=nnz)
    except ValueError:
        raise _no_format(hw, what) from None
    return MaskIndex(fmt, int(bits), int(mask.size))


def gate_index(gate: np.ndarray, group_size: int, hw: HardwareConfig, what: str) -> MaskIndex:
    """Index of a group-level gate (N, F/s, Ho, Wo) priced at element level (N, F, Ho, Wo)."""
    elements = np.repeat(gate, group_size, axis=1) if group_size > 1 else gate
    hw_group = hw.sparsity_support.gate_group_size
    params = IndexParams(group_shape=(1, hw_group, 1, 1))
    if elements.shape[1] % hw_group:
        params = IndexParams()
    return price_index(elements, hw, params, what)


def select_index(select: np.ndarray, hw: HardwareConfig, what: str) -> MaskIndex:
    """Index of DGC's input selection, bool (N, heads, Cin), priced at element level."""
    return price_index(select, hw, IndexParams(), what)


def gate_index_packed(gate: PackedMask, group_size: int, hw: HardwareConfig,
                      what: str) -> MaskIndex:
    """:func:`gate_index` from the trace's packed bits, without unpacking them: bitmap, csr,
    coo and group_bitmap bits follow from the counts and the group structure. Unpacks only when
    rle could win (a very sparse gate) or the recorded groups straddle the decoder's groups."""
    n, groups, ho, wo = gate.shape
    shape = (n, groups * group_size, ho, wo)
    size, nnz = gate.size * group_size, gate.ones * group_size
    hw_group = hw.sparsity_support.gate_group_size
    formats = candidate_formats(hw, nnz, size, IndexParams().run_bits)
    group_ok: bool | None = None  # None: decided by the bits
    if shape[1] % hw_group:
        group_ok = False  # gate_index prices without a group shape
    elif group_size % hw_group == 0:
        group_ok = True
    elif hw_group % group_size == 0 and "group_bitmap" in formats:
        group_ok = uniform_group_ones(as_words(gate.data), n, groups, ho * wo,
                                      hw_group // group_size) >= 0
    if "rle" in formats or ("group_bitmap" in formats and group_ok is None):
        return gate_index(gate.unpack(), group_size, hw, what)
    best: tuple[str, int] | None = None
    for fmt in formats:
        bits: int | None = None
        if fmt == "bitmap":
            bits = size
        elif fmt in ("csr", "coo"):
            bits = coordinate_index_bits(fmt, shape, nnz)
        elif fmt == "group_bitmap" and group_ok:
            bits = size // hw_group
        if bits is not None and (best is None or bits < best[1]):
            best = (fmt, bits)
    if best is None:
        raise _no_format(hw, what)
    return MaskIndex(best[0], best[1], size)


def weight_index(weight: np.ndarray, pattern: str, hw: HardwareConfig, what: str, *,
                 nm_fit: bool | None = None, nnz: int | None = None) -> MaskIndex:
    """Index of a weight mask (Cout, Cin, kh, kw) with its declared structure (``nm_fit``:
    whether it is known to satisfy a declared N:M pattern, None: check; ``nnz`` as in
    :func:`price_index`)."""
    return price_index(weight, hw, _weight_params(weight, pattern, hw), what, nm_fit=nm_fit,
                       nnz=nnz)


def _weight_params(weight: np.ndarray, pattern: str, hw: HardwareConfig, *,
                   transposed: bool = False) -> IndexParams:
    """The index parameters of a weight mask's declared structure: N:M metadata where the
    multiplexers support its M, group bitmaps of whole blocks. ``transposed``: of W^T as a
    (K, F) mask, whose N:M metadata runs along the output channels (transposable ``nmt``
    patterns only)."""
    kind, numbers = parse_weight_pattern(pattern)
    kinds = ("nmt",) if transposed else ("nm", "nmt")
    nm = (numbers if kind in kinds and numbers and numbers[1] in hw.sparsity_support.nm_m
          else None)
    if transposed:
        return IndexParams(nm=nm)
    group = None
    if kind == "block" and numbers:
        bo, bi = numbers
        if weight.shape[0] % bo == 0 and weight.shape[1] % bi == 0:
            group = (bo, bi, weight.shape[2], weight.shape[3])
    return IndexParams(nm=nm, group_shape=group)


# Grids of bits, which a decoder reads by column as well as by row.
COLUMN_READABLE_FORMATS: tuple[str, ...] = ("bitmap", "group_bitmap")


@dataclass(frozen=True)
class TrainingWeightIndex:
    """The stored index of a weight mask in a training step: ``index`` (what FW and WG read)
    and ``bd`` (the transposed copy BD reads; NO_MASK_INDEX when BD reads ``index``)."""

    index: MaskIndex
    bd: MaskIndex = NO_MASK_INDEX

    @property
    def bits(self) -> int:
        """Stored bits of both."""
        return self.index.bits + self.bd.bits


def training_weight_index(weight: np.ndarray, pattern: str, hw: HardwareConfig, what: str, *,
                          bd_reads: bool, nm_fit: bool | None = None,
                          nnz: int) -> TrainingWeightIndex:
    """The cheapest storage of a weight mask (Cout, Cin, kh, kw) for the phases that read it.
    BD reduces over the output channels, so it reads W^T (K x F, rows over the reduction
    columns): a grid format (bitmap, group bitmap) serves both orientations as stored, while
    csr, coo, rle and nm are laid out along W's rows. With ``decoder.bd_weight_index: copy``
    and a layer whose BD reads the weight index (``bd_reads``: it runs BD, and BD skips with the
    weights or reads them compressed), a row format therefore needs a transposed copy, W^T in the
    cheapest format the decoder supports (csr of W^T is W's csc; nm along the output channels
    when the trace declares ``nmt:N:M`` and the mask fits it), and the cheaper of the best grid
    alone and the best format plus its copy is stored. ``free``: the decoder reads any stored
    index transposed at no cost (the cheapest single format, no copy)."""
    best = weight_index(weight, pattern, hw, what, nm_fit=nm_fit, nnz=nnz)
    if not bd_reads or best.fmt in COLUMN_READABLE_FORMATS or \
            hw.decoder.bd_weight_index == "free":
        return TrainingWeightIndex(best)
    cout = weight.shape[0]
    transposed = np.ascontiguousarray(weight.reshape(cout, -1).T)  # (K, F)
    grids = [fmt for fmt in hw.decoder.formats if fmt in COLUMN_READABLE_FORMATS]
    options: list[TrainingWeightIndex] = []
    try:
        fmt, bits = best_format(weight, grids, _weight_params(weight, pattern, hw), nnz=nnz)
        options.append(TrainingWeightIndex(MaskIndex(fmt, int(bits), best.bits_bitmap)))
    except ValueError:  # no grid format, or only group bitmaps the mask does not fit
        pass
    try:
        fmt, bits = best_format(transposed, list(hw.decoder.formats),
                                _weight_params(weight, pattern, hw, transposed=True), nnz=nnz)
        options.append(TrainingWeightIndex(best, MaskIndex(fmt, int(bits), best.bits_bitmap)))
    except ValueError:  # no format stores W^T (N:M metadata that does not fit it)
        pass
    if not options:
        raise InputError(f"no format in decoder.formats {list(hw.decoder.formats)} stores the "
                         f"{what} transposed for BD (it is {best.fmt}); add bitmap, or set "
                         "decoder.bd_weight_index: free", field="decoder.formats")
    return min(options, key=lambda option: option.bits)  # ties: the grid
