"""The masks of one job as the replay holds them: packed gates, base paths, weight masks.

:class:`LayerMasks` holds one layer and branch's masks at one step and the per-unit views and
gate counts the phases derive from them; :class:`BasePath` is CDG's dense base path as two chunk
maps; :class:`PackedGate` a gate as the trace stores it. A gate or weight mask that is all ones is
passed as None (dense mode: no index, no decoder).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

from accelsim.kernels import (
    as_words,
    unit_or,
)
from accelsim.network import Layer


@dataclass(frozen=True, eq=False)
class PackedGate:
    """A gate as the trace stores it: the little-endian packed bits (uint8) of a C-order bool
    (N, F/s, P) array, P = Ho*Wo pixels."""

    data: np.ndarray
    shape: tuple[int, int, int]
    ones: int  # set bits (the trace reader counted and checked them)

    @cached_property
    def words(self) -> np.ndarray:
        """The bits as uint64 words (:func:`accelsim.kernels.as_words`)."""
        return as_words(self.data)

    @classmethod
    def from_bool(cls, gate: np.ndarray) -> PackedGate:
        """Pack a bool (N, F/s, P) gate."""
        flat = np.ascontiguousarray(gate, dtype=bool).ravel()
        bits = np.packbits(flat, bitorder="little")
        return cls(bits, tuple(int(x) for x in gate.shape),  # type: ignore[arg-type]
                   int(np.count_nonzero(flat)))

    def unpack(self) -> np.ndarray:
        """The gate as a bool (N, F/s, P) array."""
        count = self.shape[0] * self.shape[1] * self.shape[2]
        bits = np.unpackbits(self.data, count=count, bitorder="little")
        return bits.view(np.bool_).reshape(self.shape)


@dataclass(frozen=True)
class LayerMasks:
    """The masks of one layer and branch at one step, prepared for replay: a plain value (what
    the phases derive from it is :class:`accelsim.engine.views.MaskViews`).

    ``gate``: the gate in its native layout, bool (N, F/s, P) with P = Ho*Wo (one bit per group
    of ``gate_group_size`` output channels; pixels m = n*P + p), or None (no gating, or an all-ones
    gate: dense mode). An element-level (M, F) gate is ``gate_mf[:, :, None]``. ``packed_gate``:
    the same gate bit-packed, given instead of ``gate`` (the replay passes the trace's bits).
    ``base``: for gated layers with G > 1, the dense base path (:class:`BasePath`).
    ``weight``: bool (F, K) kept weights, or None (no pruning, or all ones).
    ``nm``: (N, M) when the weight mask is N:M along input channels; ``nm_transposed``: and
    along output channels too (transposable N:M, which BD's multiplexers exploit).
    ``dense_weight_gradient``: this step needs the full weight gradient (regrowth).
    ``dense_fw_conditional``: the gate was trained with a straight-through gradient, which
    needs the conditional output at every pixel: FW computes its conditional path everywhere
    (BD and WG still skip with the gate).
    ``select``: DGC's input-channel selection, bool (N, heads, Cin), or None (none, or all
    ones); a layer with one has no gate (:mod:`accelsim.engine.dgc`).
    """

    gate: np.ndarray | None = None
    packed_gate: PackedGate | None = None
    gate_group_size: int = 1
    base: BasePath | None = None
    gating_groups: int = 1
    weight: np.ndarray | None = None
    nm: tuple[int, int] | None = None
    nm_transposed: bool = False
    dense_weight_gradient: bool = False
    dense_fw_conditional: bool = False
    select: np.ndarray | None = None

    @property
    def has_gate(self) -> bool:
        """Whether the job has a (not all-ones) gate."""
        return self.gate is not None or self.packed_gate is not None

    def skips_with_gate(self, phase: str) -> bool:
        """Whether ``phase`` may skip work with the gate: it has one, and it is not FW of a
        gate whose straight-through gradient needs the conditional output everywhere."""
        return self.has_gate and not (phase == "fw" and self.dense_fw_conditional)


@dataclass(frozen=True)
class GateViews:
    """Derived views of one gate (see :func:`accelsim.kernels.gate_views`)."""

    unit_active: np.ndarray   # bool (M, J): any lane of the unit is on
    unit_lanes: np.ndarray    # int32 (M, J): active lanes of the unit
    packed: np.ndarray        # uint64 (M, words): active channels per pixel, bit-packed
    per_pixel: np.ndarray     # int64 (M,): active channels


@dataclass(frozen=True, eq=False)
class BasePath:
    """CDG's dense base path of a gated layer with G > 1 gating groups: weight (f, k) is on it
    when the input chunk of reduction column k is the base chunk of f's output chunk (G chunks
    of output channels, G of reduction columns). Structure comes from the two chunk maps, so
    per-unit views cost (units x K) or (units x F), never (F x K)."""

    base_of_f: np.ndarray   # int64 (F,): the base input chunk of every output channel
    chunk_of_k: np.ndarray  # int64 (K,): the input chunk of every reduction column
    groups: int

    @classmethod
    def of_layer(cls, layer: Layer, gating_groups: int,
                 base_chunks: tuple[int, ...]) -> BasePath:
        """The base path of ``layer`` with chunk i of the outputs reading input chunk
        ``base_chunks[i]``; K is ordered (cin, kh, kw) like a flattened (Cout, Cin, kh, kw)
        weight."""
        f_chunk = np.arange(layer.cout) // (layer.cout // gating_groups)
        k_chunk = np.arange(layer.k_per_group) // (layer.k_per_group // gating_groups)
        return cls(np.asarray(base_chunks, dtype=np.int64)[f_chunk], k_chunk.astype(np.int64),
                   gating_groups)

    @cached_property
    def mask(self) -> np.ndarray:
        """bool (F, K): True where weight (f, k) is on the base path."""
        return self.base_of_f[:, None] == self.chunk_of_k[None, :]

    @cached_property
    def base_chunks(self) -> tuple[int, ...]:
        """The input chunk each of the G output chunks takes as its base path."""
        assert self.base_of_f.shape[0] % self.groups == 0, "G must divide the output channels"
        per_chunk = self.base_of_f.shape[0] // self.groups
        return tuple(int(c) for c in self.base_of_f[::per_chunk])

    @cached_property
    def per_f(self) -> np.ndarray:
        """int64 (F,): reduction columns on each output channel's base path."""
        return np.bincount(self.chunk_of_k, minlength=self.groups)[self.base_of_f]

    def _members(self, chunks: np.ndarray, unit: int) -> np.ndarray:
        """bool (ceil(len/unit), G): which chunks each unit of ``unit`` consecutive entries
        touches."""
        members = np.zeros((-(-chunks.shape[0] // unit), self.groups), dtype=bool)
        members[np.arange(chunks.shape[0]) // unit, chunks] = True
        return members

    def members_over_f(self, unit: int) -> np.ndarray:
        """bool (ceil(F/unit), G): the base chunks of the output channels of each unit."""
        return self._members(self.base_of_f, unit)

    def members_over_k(self, unit: int) -> np.ndarray:
        """bool (ceil(K/unit), G): the input chunks of the reduction columns of each unit."""
        return self._members(self.chunk_of_k, unit)

    def any_over_f(self, unit: int) -> np.ndarray:
        """bool (ceil(F/unit), K): some output channel of the unit has k on its base path."""
        return np.ascontiguousarray(self.members_over_f(unit)[:, self.chunk_of_k])

    def any_over_k(self, unit: int) -> np.ndarray:
        """bool (ceil(K/unit), F): some reduction column of the unit is on f's base path."""
        return np.ascontiguousarray(self.members_over_k(unit)[:, self.base_of_f])


def as_bytes(mask: np.ndarray) -> np.ndarray:
    """A C-contiguous uint8 view of a bool mask (no copy when already contiguous)."""
    return np.ascontiguousarray(mask).view(np.uint8)


def unit_any(mask: np.ndarray, unit: int, axis: int) -> np.ndarray:
    """OR over groups of ``unit`` consecutive entries along ``axis`` (0 or 1) of a 2-D mask
    (the last group may be partial)."""
    if unit == 1:
        return mask
    data = as_bytes(mask)
    rows, length = data.shape
    if axis == 1 and unit % 8 == 0 and length % unit == 0:
        # eight 0/1 bytes per uint64 word: a unit is any of unit/8 non-zero words
        words = data.reshape(rows, length // 8, 8).view(np.uint64).reshape(rows, length // 8)
        if unit == 8:
            return words != 0
        return (words.reshape(rows, length // unit, unit // 8) != 0).any(axis=2)
    return unit_or(data, unit, axis)


def unit_lanes(length: int, unit: int) -> np.ndarray:
    """Real lanes of each unit (the last unit may be partial), int64."""
    units = -(-length // unit)
    lanes = np.full(units, unit, dtype=np.int64)
    lanes[-1] = length - (units - 1) * unit
    return lanes


def pack_bits(mask: np.ndarray) -> np.ndarray:
    """bool (R, L) -> uint64 (R, ceil(L/64)) little-endian bit words."""
    rows, length = mask.shape
    words = -(-length // 64)
    padded = np.zeros((rows, words * 64), dtype=bool)
    padded[:, :length] = mask
    packed = np.packbits(padded, axis=1, bitorder="little")
    return np.ascontiguousarray(packed).view(np.uint64).reshape(rows, words)
