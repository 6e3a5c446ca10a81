"""Sparse execution of one layer x branch x phase from the recorded mask bits (tensor dataflow).

The array is rows x cols vector PEs with ``vector_width`` lanes. Work is issued in lock-step
*units* of U lanes over the GEMM's output columns: U = 1 (``decoder.skip_granularity: element``),
``vector_width`` (``vector``) or ``cols * vector_width`` (``pe_row``). A unit (i, j) is output row i
and lanes [j*U, (j+1)*U); its *work* is the number of reduction steps (cycles) it must run:

- FW (rows = pixels m, lanes = output channels f, steps = k): the unit runs its base-path steps
  always and its conditional-path steps only if ANY lane's gate bit is 1 (a lock-step unit is
  skipped only when all its lanes are inactive). Weight skipping uses the unit's static weight
  index: step k is run when any lane of the unit keeps a weight at k.
- BD (rows = pixels m, lanes = input-gradient columns k, steps = f): the reduction operand dY(m, f)
  is shared by all lanes, so step f is skipped when d(m, f) = 0 (and no lane has f on its base
  path), or when no lane keeps the weight (f, k).
- WG (rows = k, lanes = f, steps = pixels m): a unit whose lanes' weights are all pruned computes
  no gradient; otherwise it runs all M steps if any lane has k on its base path, else only the
  pixels where any lane's gate bit is 1.

The work matrix then goes through :func:`accelsim.kernels.schedule_passes` (queues, passes, load
imbalance, compaction, decoder stalls). With compaction on, FW additionally packs the active lanes
of each pixel into full units (within a CDG output chunk when U divides it, else over the row).

Without compaction a pass lasts as long as its slowest queue, so the schedule needs only each
queue's summed work per pass, and in every phase that sum is linear in the gate bits: FW's unit
(i, j) runs base_j + cond_j * any_j(i) steps, BD's class c runs |always_c & allowed_c| +
|active(i) & allowed_c & ~always_c|. The fast path (:class:`PassSums`) therefore counts gate bits
per pass and queue row straight from the trace's packed bits (:func:`accelsim.kernels.
residue_counts`) and never builds the per-pixel matrix; :func:`fw_work` / :func:`bd_work` build
the matrix for compaction, and tests require both paths to agree exactly.

A gate or weight mask that is all ones runs in dense mode: no index, no decoder, so all-ones masks
give exactly the dense result.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np

from accelsim.config import SYSTOLIC_DATAFLOWS, HardwareConfig
from accelsim.engine.pe_array import cycles_dense_tensor, cycles_gemm
from accelsim.engine.systolic import nm_reduction_length
from accelsim.errors import InputError
from accelsim.kernels import (
    as_words,
    class_sums,
    coefficient_sums,
    diagonal_sums,
    gate_views,
    masked_step_counts,
    pass_row_sums,
    residue_counts,
    row_ones,
    row_popcounts,
    schedule_passes,
    schedule_sums,
    unit_or,
)
from accelsim.network import Gemm, Layer


def _memo(cache: dict, key: Hashable, make: Callable[[], Any]) -> Any:
    """``cache[key]``, made by ``make()`` the first time."""
    if key not in cache:
        cache[key] = make()
    return cache[key]


@dataclass(frozen=True, eq=False)
class PackedGate:
    """A gate as the trace stores it: the little-endian packed bits (uint8) of a C-order bool
    (N, F/s, P) array, P = Ho*Wo pixels."""

    data: np.ndarray
    shape: tuple[int, int, int]
    ones: int  # set bits (the trace reader counted and checked them)

    @property
    def total_ones(self) -> int:
        """Set bits of the gate."""
        return self.ones

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
    """The masks of one layer and branch at one step, prepared for replay.

    ``gate``: the gate in its native layout, bool (N, F/s, P) with P = Ho*Wo (one bit per group
    of ``gate_group_size`` output channels; pixels m = n*P + p), or None (no gating, or an all-ones
    gate: dense mode). An element-level (M, F) gate is ``gate_mf[:, :, None]``. ``packed_gate``:
    the same gate bit-packed, given instead of ``gate`` (the replay passes the trace's bits).
    ``base``: for gated layers with G > 1, the dense base path (:class:`BasePath`).
    ``weight``: bool (F, K) kept weights, or None (no pruning, or all ones).
    ``nm``: (N, M) when the weight mask is N:M along input channels.
    ``dense_weight_gradient``: this step needs the full weight gradient (regrowth).
    ``weight_views``: a dict, owned by the caller, for what depends only on the weight mask, the
    base path and the hardware (unit structure, BD classes, the gate-independent halves of the
    sums): a replay shares it between the steps that use the same stored weight mask.
    """

    gate: np.ndarray | None = None
    packed_gate: PackedGate | None = None
    gate_group_size: int = 1
    base: BasePath | None = None
    gating_groups: int = 1
    weight: np.ndarray | None = None
    nm: tuple[int, int] | None = None
    dense_weight_gradient: bool = False
    weight_views: dict | None = None

    @property
    def has_gate(self) -> bool:
        """Whether the job has a (not all-ones) gate."""
        return self.gate is not None or self.packed_gate is not None

    @cached_property
    def gate_bool(self) -> np.ndarray:
        """The gate as bool (N, F/s, P)."""
        if self.gate is not None:
            return self.gate
        assert self.packed_gate is not None
        return self.packed_gate.unpack()

    @cached_property
    def gate_bits(self) -> PackedGate:
        """The gate bit-packed."""
        if self.packed_gate is not None:
            return self.packed_gate
        assert self.gate is not None
        return PackedGate.from_bool(self.gate)

    @cached_property
    def _cache(self) -> dict:
        """Derived gate views and counts, weight structure and MACs, keyed by what they are."""
        return {}

    def weight_any(self, unit: int, axis: int) -> np.ndarray:
        """:func:`unit_any` of the (F, K) weight mask (cached): axis 0 over output channels,
        1 over reduction columns."""
        assert self.weight is not None
        return _memo(self._weight_cache, ("weight", unit, axis),
                     lambda: unit_any(self.weight, unit, axis))

    @property
    def _static_cache(self) -> dict:
        """Where what depends only on the layer's shape, weight mask, base path and hardware is
        kept (keys name all of them but the masks): the weight views with a weight mask, else
        the base path's cache (both outlive a step in a replay), else this step's cache."""
        if self.weight is not None:
            return self._weight_cache
        if self.base is not None:
            return self.base._cache
        return self._cache

    @property
    def _weight_cache(self) -> dict:
        """Where weight-only structure is kept: ``weight_views`` if given, else ``_cache``."""
        return self.weight_views if self.weight_views is not None else self._cache

    def unit_counts(self, unit: int, rows: int, pass_len: int) -> np.ndarray:
        """int64 (passes, units, rows): pixels of each pass and queue row where any lane of
        the ``unit``-lane unit is active (cached). When every unit lies inside one gate group
        (s a multiple of ``unit``: SCDG on vector units, element granularity) a unit's counts
        are its group's, so the groups are counted once (:meth:`group_counts`) and shared."""
        n, groups, pixels = self.gate_bits.shape
        s = self.gate_group_size

        def count() -> np.ndarray:
            first = np.arange(0, groups * s, unit)
            if s % unit == 0:
                per_group = self.group_counts(rows, pass_len)
                return per_group if unit == s else np.ascontiguousarray(
                    per_group[:, first // s, :])
            last = np.minimum(first + unit, groups * s) - 1
            return residue_counts(self.gate_bits.words, n, groups, pixels, first // s,
                                  last // s + 1, np.arange(first.shape[0]), first.shape[0],
                                  rows, pass_len)

        return _memo(self._cache, ("units", unit, rows, pass_len), count)

    def unit_totals(self, unit: int, rows: int, pass_len: int) -> np.ndarray:
        """int64 (units,): pixels where any lane of each unit is active, over all passes
        (cached; FW's :func:`diagonal_sums` leaves them here as it computes them, else
        :meth:`unit_counts` summed one axis at a time: 3x faster than over both at once)."""
        return _memo(self._cache, ("unit_totals", unit, rows, pass_len),
                     lambda: self.unit_counts(unit, rows, pass_len).sum(axis=0).sum(axis=1))

    def group_counts(self, rows: int, pass_len: int, classes: np.ndarray | None = None,
                     n_classes: int = 0) -> np.ndarray:
        """int64 (passes, C, rows): active gate groups of each pass and queue row, summed over
        the groups of each class (``classes``: int64 (F/s,) class of every group, C =
        ``n_classes``, or its maximum + 1 when 0; None: every group its own class). Cached;
        class sums come from the per-group counts when those are already there
        (:meth:`unit_counts` made them), else from one pass over the bits."""
        per_group = ("groups", rows, pass_len, None)
        if classes is None:
            return _memo(self._cache, per_group, lambda: self._count_groups(
                rows, pass_len, None, self.gate_bits.shape[1]))

        def count() -> np.ndarray:
            n_sets = n_classes or int(classes.max()) + 1
            if per_group in self._cache:
                return class_sums(self._cache[per_group], classes, n_sets)
            return self._count_groups(rows, pass_len, classes, n_sets)

        return _memo(self._cache, ("groups", rows, pass_len, classes.tobytes()), count)

    def _count_groups(self, rows: int, pass_len: int, classes: np.ndarray | None,
                      n_classes: int) -> np.ndarray:
        """:func:`residue_counts` of every gate group into ``classes`` (None: its own)."""
        n, groups, pixels = self.gate_bits.shape
        index = np.arange(groups)
        return residue_counts(self.gate_bits.words, n, groups, pixels, index, index + 1,
                              index if classes is None else classes, n_classes, rows, pass_len)

    @cached_property
    def channel_counts(self) -> np.ndarray:
        """int64 (F,): active pixels of every output channel."""
        n, groups, pixels = self.gate_bits.shape
        return np.repeat(row_popcounts(self.gate_bits.words, n, groups, pixels),
                         self.gate_group_size)

    def gate_views(self, unit: int) -> GateViews:
        """Per-pixel views of the gate for ``unit`` lanes (cached; the work-matrix path)."""
        assert self.has_gate

        def views() -> GateViews:
            gate = self.gate_bool
            channels = gate.shape[1] * self.gate_group_size
            active, lanes, packed, per_pixel = gate_views(
                _as_bytes(gate), self.gate_group_size, unit, channels)
            return GateViews(active, lanes, packed.view(np.uint64), per_pixel)

        return _memo(self._cache, ("views", unit), views)



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
    def per_f(self) -> np.ndarray:
        """int64 (F,): reduction columns on each output channel's base path."""
        return np.bincount(self.chunk_of_k, minlength=self.groups)[self.base_of_f]

    def _members(self, chunks: np.ndarray, unit: int) -> np.ndarray:
        """bool (ceil(len/unit), G): which chunks each unit of ``unit`` consecutive entries
        touches."""
        members = np.zeros((-(-chunks.shape[0] // unit), self.groups), dtype=bool)
        members[np.arange(chunks.shape[0]) // unit, chunks] = True
        return members

    @cached_property
    def _cache(self) -> dict:
        return {}

    def members_over_f(self, unit: int) -> np.ndarray:
        """bool (ceil(F/unit), G): the base chunks of the output channels of each unit
        (cached)."""
        return _memo(self._cache, ("fm", unit), lambda: self._members(self.base_of_f, unit))

    def members_over_k(self, unit: int) -> np.ndarray:
        """bool (ceil(K/unit), G): the input chunks of the reduction columns of each unit
        (cached)."""
        return _memo(self._cache, ("km", unit), lambda: self._members(self.chunk_of_k, unit))

    def any_over_f(self, unit: int) -> np.ndarray:
        """bool (ceil(F/unit), K): some output channel of the unit has k on its base path
        (cached)."""
        return _memo(self._cache, ("f", unit), lambda: np.ascontiguousarray(
            self.members_over_f(unit)[:, self.chunk_of_k]))

    def any_over_k(self, unit: int) -> np.ndarray:
        """bool (ceil(K/unit), F): some reduction column of the unit is on f's base path
        (cached)."""
        return _memo(self._cache, ("k", unit), lambda: np.ascontiguousarray(
            self.members_over_k(unit)[:, self.base_of_f]))


def _as_bytes(mask: np.ndarray) -> np.ndarray:
    """A C-contiguous uint8 view of a bool mask (no copy when already contiguous)."""
    return np.ascontiguousarray(mask).view(np.uint8)


def unit_any(mask: np.ndarray, unit: int, axis: int) -> np.ndarray:
    """OR over groups of ``unit`` consecutive entries along ``axis`` (0 or 1) of a 2-D mask
    (the last group may be partial)."""
    if unit == 1:
        return mask
    data = _as_bytes(mask)
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


@dataclass(frozen=True)
class PhaseWork:
    """A phase's work and decoder demand, ready for :func:`schedule_passes`.

    The reduction steps of unit (i, j) are ``counts[i, classes[j]]``: units whose work depends on
    the row in the same way share a class (for a plain work matrix, classes = arange(J)).
    """

    counts: np.ndarray            # int32 (R, C): reduction steps per row and class
    classes: np.ndarray           # int64 (J,): class of each unit column
    unit_idx: np.ndarray | None   # int32 (R, J): decoder indices per unit, or None (all zero)
    row_idx: np.ndarray           # int64 (R,): decoder indices per row and column tile
    col_idx: np.ndarray           # int64 (J,): decoder indices per unit column and pass
    lanes: np.ndarray             # int64 (J,): real lanes per unit column


def matrix_work(work: np.ndarray, unit_idx: np.ndarray | None, row_idx: np.ndarray,
                col_idx: np.ndarray, lanes: np.ndarray) -> PhaseWork:
    """A PhaseWork whose every unit column is its own class."""
    return PhaseWork(np.ascontiguousarray(work, dtype=np.int32),
                     np.arange(work.shape[1], dtype=np.int64), unit_idx, row_idx, col_idx, lanes)


def unit_width(hw: HardwareConfig) -> int:
    """Lanes per lock-step unit from the skip granularity."""
    pe, granularity = hw.pe_array, hw.decoder.skip_granularity
    if granularity == "element":
        return 1
    if granularity == "vector":
        return pe.vector_width
    return pe.cols * pe.vector_width


def _zeros(rows: int, units: int) -> tuple[None, np.ndarray, np.ndarray]:
    return None, np.zeros(rows, dtype=np.int64), np.zeros(units, dtype=np.int64)


NO_UNIT_INDEX = np.zeros((1, 1), dtype=np.int32)


@dataclass(frozen=True)
class PassSums:
    """A phase's work summed per pass and queue row, for :func:`schedule_sums` (no compaction).

    ``sums[p, c, r]``: steps of class c summed over the rows of pass p in queue row r; unit
    column j has class ``classes[j]``.
    """

    sums: np.ndarray                   # int64 (passes, C, rows)
    classes: np.ndarray                # int64 (J,)
    lanes: np.ndarray                  # int64 (J,): real lanes per unit column
    unit_idx_sums: np.ndarray | None   # int64 (passes, J): decoder indices per unit, or None
    row_idx_sums: np.ndarray           # int64 (passes,): decoder indices of the pass's rows
    col_idx: np.ndarray                # int64 (J,): decoder indices per unit column and pass


def pass_rows(total: int, rows: int, pass_len: int) -> np.ndarray:
    """int64 (passes, rows): rows i < ``total`` of each pass (i // pass_len) in each queue
    row (i % rows)."""
    passes = -(-total // pass_len)
    start = np.arange(passes, dtype=np.int64)[:, None] * pass_len
    stop = np.minimum(start + pass_len, total)
    r = np.arange(rows, dtype=np.int64)[None, :]
    return np.maximum(0, (stop - r + rows - 1) // rows) - np.maximum(0, (start - r + rows - 1)
                                                                     // rows)


def schedule(work: PhaseWork | PassSums, hw: HardwareConfig,
             unit: int) -> tuple[int, int, int, int]:
    """Run a phase's work through the queues: (cycles, decoder stall cycles, indices, MACs
    issued: the lanes' MACs, idle lanes of active lock-step units included)."""
    pe, decoder = hw.pe_array, hw.decoder
    qcols, throughput = queue_columns(hw, unit), decoder_throughput(hw)
    if isinstance(work, PassSums):
        assert not decoder.compaction
        return schedule_pass_sums(work, qcols, throughput, pe.pipeline_latency)
    has_unit_idx = work.unit_idx is not None
    cycles, stall, indices, issued = schedule_passes(
        work.counts, work.classes, work.lanes, work.unit_idx if has_unit_idx else NO_UNIT_INDEX,
        has_unit_idx,
        work.row_idx, work.col_idx, pe.rows, qcols, pe.sync_tiles, decoder.compaction,
        throughput)
    return cycles + pe.pipeline_latency, stall, indices, issued


NO_UNIT_SUMS = np.zeros((1, 1), dtype=np.int64)


def schedule_pass_sums(work: PassSums, qcols: int, indices_per_cycle: int,
                       latency: int) -> tuple[int, int, int, int]:
    """:func:`schedule` of per-pass sums (no compaction) on ``qcols`` queue columns, a decoder
    of ``indices_per_cycle`` and a pipeline of ``latency`` cycles."""
    has_unit_idx = work.unit_idx_sums is not None
    cycles, stall, indices, issued = schedule_sums(
        np.ascontiguousarray(work.sums, dtype=np.int64), work.classes, work.lanes,
        work.unit_idx_sums if has_unit_idx else NO_UNIT_SUMS, has_unit_idx,
        work.row_idx_sums, work.col_idx, qcols, indices_per_cycle)
    return cycles + latency, stall, indices, issued


def queue_columns(hw: HardwareConfig, unit: int) -> int:
    """Queue columns of the array for ``unit``-lane units."""
    return max(1, hw.pe_array.cols * hw.pe_array.vector_width // unit)


def decoder_throughput(hw: HardwareConfig) -> int:
    """Indices the decoder delivers per cycle (fewer with compaction)."""
    decoder = hw.decoder
    return (decoder.compaction_indices_per_cycle if decoder.compaction
            else decoder.indices_per_cycle)


def _fw_steps(layer: Layer, masks: LayerMasks, unit: int, gated: bool,
              weight: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """FW steps per unit column: (base path steps, all steps), int64 (J,) each."""
    f, k = layer.cout, layer.k_per_group
    if weight is None:  # every unit runs all k steps
        full = np.full(-(-f // unit), k, dtype=np.int64)
    else:
        full = masks.weight_any(unit, 0).sum(axis=1, dtype=np.int64)
    if not gated:
        return full, full
    if masks.base is None:
        return np.zeros_like(full), full
    if weight is None:
        return masks.base.any_over_f(unit).sum(axis=1, dtype=np.int64), full
    on_base = weight & masks.base.mask
    return unit_any(on_base, unit, axis=0).sum(axis=1, dtype=np.int64), full


def fw_work(layer: Layer, masks: LayerMasks, unit: int, *, use_gate: bool, use_weight: bool,
            compaction: bool) -> PhaseWork:
    """Forward: rows = pixels, lanes = output channels, steps = k (see the module docstring)."""
    m, f = layer.output_pixels, layer.cout
    gated = use_gate and masks.has_gate
    weight = masks.weight if use_weight else None
    base_steps, full = _fw_steps(layer, masks, unit, gated, weight)
    units = full.shape[0]
    unit_idx, row_idx, col_idx = _zeros(m, units)
    full32, base32 = full.astype(np.int32), base_steps.astype(np.int32)
    if not gated:
        work = np.broadcast_to(full32, (m, units)).copy()
    else:
        cond = full32 - base32
        views = masks.gate_views(unit)
        if compaction:
            unit_idx = views.unit_lanes
            work = np.broadcast_to(base32, (m, units)).copy()
            work += packed_conditional_work(unit_idx, cond, unit, f, masks)
        else:
            work = base32[None, :] + views.unit_active * cond[None, :]
            unit_idx = views.unit_active.view(np.uint8).astype(np.int32)
    if weight is not None:
        col_idx = full.copy()
    return matrix_work(work, unit_idx, row_idx, col_idx, unit_lanes(f, unit))


def fw_sums(layer: Layer, masks: LayerMasks, unit: int, rows: int, pass_len: int, *,
            use_gate: bool, use_weight: bool, scale: tuple[int, int] | None = None) -> PassSums:
    """FW without compaction as per-pass sums (equal to scheduling :func:`fw_work`).
    ``scale`` = (t', t): every unit's steps become ceil(steps * t' / t) (N:M multiplexers)."""
    gated = use_gate and masks.has_gate
    weight = masks.weight if use_weight else None
    plan = _fw_plan(layer, masks, unit, rows, pass_len, gated, weight, scale)
    if not gated:
        fixed, _, classes, lanes, no_row_idx, col_idx = plan
        return PassSums(fixed, classes, lanes, None, no_row_idx, col_idx)
    return _fw_gated(masks, plan, unit, rows, pass_len)


def _fw_gated(masks: LayerMasks, plan: tuple, unit: int, rows: int,
              pass_len: int) -> PassSums:
    """FW's per-pass sums with the gate of ``masks`` from its :func:`_fw_plan` (fixed + cond x
    active pixels of each unit; the decoder's unit indices are the active units per pass);
    leaves each unit's active pixels over all passes in the masks' cache for WG."""
    fixed, cond, classes, lanes, no_row_idx, col_idx = plan
    sums, active, totals = diagonal_sums(fixed, masks.unit_counts(unit, rows, pass_len), cond)
    masks._cache.setdefault(("unit_totals", unit, rows, pass_len), totals)
    return PassSums(sums, classes, lanes, active, no_row_idx, col_idx)


def _fw_plan(layer: Layer, masks: LayerMasks, unit: int, rows: int, pass_len: int,
             gated: bool, weight: np.ndarray | None, scale: tuple[int, int] | None) -> tuple:
    """(steps per pass that do not depend on the gate (passes, J, rows), conditional steps per
    unit (J,), classes, lanes, zero row indices, column indices) for :func:`fw_sums` (cached
    with what depends on the weight mask and base path)."""
    key = ("fw_sums", layer.output_pixels, layer.cout, layer.k_per_group, unit, rows, pass_len,
           gated, weight is not None, scale)
    return _memo(masks._static_cache, key, lambda: _fw_plan_of(
        layer, masks, unit, rows, pass_len, gated, weight, scale))


def _fw_plan_of(layer: Layer, masks: LayerMasks, unit: int, rows: int, pass_len: int,
                gated: bool, weight: np.ndarray | None,
                scale: tuple[int, int] | None) -> tuple:
    m, f = layer.output_pixels, layer.cout
    base_steps, full = _fw_steps(layer, masks, unit, gated, weight)
    if scale is not None:
        base_steps = -(-base_steps * scale[0] // scale[1])
        full = -(-full * scale[0] // scale[1])
    units = full.shape[0]
    per_row = pass_rows(m, rows, pass_len)[:, None, :]
    col_idx = full.copy() if weight is not None else np.zeros(units, dtype=np.int64)
    fixed = per_row * (base_steps if gated else full)[None, :, None]
    return (fixed, full - base_steps, np.arange(units, dtype=np.int64), unit_lanes(f, unit),
            np.zeros(per_row.shape[0], dtype=np.int64), col_idx)


def packed_conditional_work(active_lanes: np.ndarray, cond: np.ndarray, unit: int, f: int,
                            masks: LayerMasks) -> np.ndarray:
    """Compaction in FW: the active lanes of each pixel are packed into full units inside a
    segment (a CDG output chunk when ``unit`` divides it, else the whole row); the first
    ceil(active / unit) units of the segment run the segment's conditional steps (its maximum).
    ``active_lanes`` is int32 (M, J): active lanes per unit."""
    m, units = active_lanes.shape
    chunk = f
    if masks.base is not None and (f // masks.gating_groups) % unit == 0:
        chunk = f // masks.gating_groups
    result = np.zeros((m, units), dtype=np.int32)
    per_segment = chunk // unit if chunk % unit == 0 else units
    for start in range(0, units, per_segment):
        stop = min(start + per_segment, units)
        lanes = active_lanes[:, start:stop].sum(axis=1, dtype=np.int64)
        packed = -(-lanes // unit)
        seg_cond = int(cond[start:stop].max())
        slots = np.arange(stop - start)[None, :] < packed[:, None]
        result[:, start:stop] = slots * seg_cond
    return result


def _bd_classes(layer: Layer, masks: LayerMasks, unit: int, gated: bool,
                weight: np.ndarray | None) -> tuple[np.ndarray, np.ndarray, np.ndarray,
                                                    np.ndarray | None]:
    """BD unit columns grouped by (always, allowed) step sets: (allowed (J, F), classes (J,),
    first unit of each class, always (J, F) or None when not gated). Cached: they depend on
    the weight mask and the base path only."""
    return _memo(masks._weight_cache if weight is not None else masks._cache,
                 ("bd_classes", unit, gated, weight is not None),
                 lambda: _bd_classes_of(layer, masks, unit, gated, weight))


def _bd_classes_of(layer: Layer, masks: LayerMasks, unit: int, gated: bool,
                   weight: np.ndarray | None) -> tuple[np.ndarray, np.ndarray, np.ndarray,
                                                       np.ndarray | None]:
    f = layer.cout
    units = unit_lanes(layer.k_per_group, unit).shape[0]
    allowed = (masks.weight_any(unit, 1).T if weight is not None
               else np.ones((units, f), dtype=bool))
    if not gated:
        steps = allowed.sum(axis=1, dtype=np.int64)
        _, first, classes = np.unique(steps, return_index=True, return_inverse=True)
        return allowed, classes.reshape(-1).astype(np.int64), first, None
    if masks.base is None:
        always = np.zeros((units, f), dtype=bool)
        if weight is None:
            return allowed, np.zeros(units, dtype=np.int64), np.zeros(1, dtype=np.int64), always
    else:
        always = masks.base.any_over_k(unit)
        if weight is None and masks.base.groups < 63:
            # a unit's always-set is fixed by the input chunks it touches
            members = masks.base.members_over_k(unit)
            code = members.astype(np.int64) @ (np.int64(1) << np.arange(members.shape[1]))
            _, first, classes = np.unique(code, return_index=True, return_inverse=True)
            return allowed, classes.astype(np.int64), first, always
    keys = np.concatenate([pack_bits(always), pack_bits(allowed)], axis=1)
    _, first, classes = np.unique(keys, axis=0, return_index=True, return_inverse=True)
    return allowed, classes.reshape(-1).astype(np.int64), first, always


def bd_work(layer: Layer, masks: LayerMasks, unit: int, *, use_gate: bool,
            use_weight: bool) -> PhaseWork:
    """Backward data: rows = pixels, lanes = input-gradient columns k, steps = f."""
    m, k = layer.output_pixels, layer.k_per_group
    gated = use_gate and masks.has_gate
    weight = masks.weight if use_weight else None
    lanes = unit_lanes(k, unit)
    unit_idx, row_idx, col_idx = _zeros(m, lanes.shape[0])
    allowed, classes, first, always = _bd_classes(layer, masks, unit, gated, weight)
    if always is None:
        steps = allowed[first].sum(axis=1, dtype=np.int32)
        counts = np.ascontiguousarray(np.broadcast_to(steps, (m, len(steps))))
    else:
        views = masks.gate_views(unit)
        counts = masked_step_counts(views.packed, pack_bits(always[first]),
                                    pack_bits(allowed[first]))
        row_idx = views.per_pixel // masks.gate_group_size  # one index per active gate group
    if weight is not None:
        col_idx = allowed.sum(axis=1, dtype=np.int64)
    return PhaseWork(counts, classes, unit_idx, row_idx, col_idx, lanes)


def bd_sums(layer: Layer, masks: LayerMasks, unit: int, rows: int, pass_len: int, *,
            use_gate: bool, use_weight: bool) -> PassSums:
    """BD as per-pass sums (equal to scheduling :func:`bd_work`): class c runs
    |always_c & allowed_c| + |active(i) & allowed_c & ~always_c| steps at pixel i."""
    gated = use_gate and masks.has_gate
    weight = masks.weight if use_weight else None
    plan = _bd_plan(layer, masks, unit, rows, pass_len, gated, weight)
    fixed, coef, _, classes, lanes, no_row_idx, col_idx = plan
    if coef is None:
        return PassSums(fixed, classes, lanes, None, no_row_idx, col_idx)
    return _bd_gated(masks, plan, unit, rows, pass_len)


def _bd_gated(masks: LayerMasks, plan: tuple, unit: int, rows: int,
              pass_len: int) -> PassSums:
    """BD's per-pass sums with the gate of ``masks`` from its gated :func:`_bd_plan` (fixed +
    coef @ active gate groups of each set; the decoder's row indices are the active gate
    groups per pass). ``unit`` is unused: the signature is FW's and WG's."""
    fixed, coef, group_set, classes, lanes, _, col_idx = plan
    sums, active = coefficient_sums(
        fixed, masks.group_counts(rows, pass_len, group_set, coef.shape[1]), coef)
    return PassSums(sums, classes, lanes, None, active, col_idx)


def _bd_plan(layer: Layer, masks: LayerMasks, unit: int, rows: int, pass_len: int,
             gated: bool, weight: np.ndarray | None) -> tuple:
    """(steps per pass that do not depend on the gate (passes, C, rows), coefficients of the
    gate group sets (C, Q) or None when not gated, the set of every gate group (F/s,), classes,
    lanes, zero row indices, column indices) for :func:`bd_sums` (cached like
    :func:`_fw_plan`)."""
    key = ("bd_sums", layer.output_pixels, layer.cout, layer.k_per_group,
           masks.gate_group_size, unit, rows, pass_len, gated, weight is not None)
    return _memo(masks._static_cache, key, lambda: _bd_plan_of(
        layer, masks, unit, rows, pass_len, gated, weight))


def _bd_plan_of(layer: Layer, masks: LayerMasks, unit: int, rows: int, pass_len: int,
                gated: bool, weight: np.ndarray | None) -> tuple:
    m, f, k = layer.output_pixels, layer.cout, layer.k_per_group
    lanes = unit_lanes(k, unit)
    allowed, classes, first, always = _bd_classes(layer, masks, unit, gated, weight)
    per_row = pass_rows(m, rows, pass_len)[:, None, :]
    no_row_idx = np.zeros(per_row.shape[0], dtype=np.int64)
    col_idx = (allowed.sum(axis=1, dtype=np.int64) if weight is not None
               else np.zeros(lanes.shape[0], dtype=np.int64))
    if always is None:
        steps = allowed[first].sum(axis=1, dtype=np.int64)
        return per_row * steps[None, :, None], None, None, classes, lanes, no_row_idx, col_idx
    fixed = (always[first] & allowed[first]).sum(axis=1, dtype=np.int64)
    s = masks.gate_group_size
    coef = (allowed[first] & ~always[first]).reshape(len(first), f // s, s).sum(
        axis=2, dtype=np.int64)
    # Gate groups with the same coefficient in every class are counted together (a CDG
    # layer without weight masks has G such sets: its output chunks).
    _, group_first, group_set = np.unique(coef.T, axis=0, return_index=True,
                                          return_inverse=True)
    return (per_row * fixed[None, :, None], np.ascontiguousarray(coef[:, group_first]),
            group_set.reshape(-1).astype(np.int64), classes, lanes, no_row_idx, col_idx)


def wg_work(layer: Layer, masks: LayerMasks, unit: int, *, use_gate: bool,
            use_weight: bool, rows: int = 1, pass_len: int = 0) -> PhaseWork:
    """Weight gradient: rows = k, lanes = output channels f, steps = pixels m. ``rows`` and
    ``pass_len`` only pick which cached gate counts to reuse (0: one pass)."""
    m, f, k = layer.output_pixels, layer.cout, layer.k_per_group
    gated = use_gate and masks.has_gate
    weight = masks.weight if (use_weight and not masks.dense_weight_gradient) else None
    lanes = unit_lanes(f, unit)
    units = lanes.shape[0]
    unit_idx, row_idx, col_idx = _zeros(k, units)
    needed = (masks.weight_any(unit, 0).T if weight is not None
              else np.ones((k, units), dtype=bool))
    if not gated:
        steps = np.full((k, units), m, dtype=np.int32)
    else:
        active_pixels = masks.unit_totals(unit, rows, pass_len or max(1, m))
        on_base = (masks.base.any_over_f(unit).T if masks.base is not None
                   else np.zeros((k, units), dtype=bool))
        steps = np.where(on_base, m, active_pixels[None, :]).astype(np.int32)
        col_idx = active_pixels
    if weight is not None:
        unit_idx = np.ascontiguousarray(needed, dtype=np.int32)
    return matrix_work(steps * needed, unit_idx, row_idx, col_idx, lanes)


def matrix_sums(work: PhaseWork, rows: int, pass_len: int) -> PassSums:
    """A work matrix as per-pass sums (scheduling them equals scheduling the matrix without
    compaction)."""
    unit_idx = (None if work.unit_idx is None
                else pass_row_sums(work.unit_idx, rows, pass_len).sum(axis=2))
    row_idx = pass_row_sums(work.row_idx.reshape(-1, 1), rows, pass_len).sum(axis=(1, 2))
    return PassSums(pass_row_sums(work.counts, rows, pass_len), work.classes, work.lanes,
                    unit_idx, row_idx, work.col_idx)


def wg_sums(layer: Layer, masks: LayerMasks, unit: int, rows: int, pass_len: int, *,
            use_gate: bool, use_weight: bool) -> PassSums:
    """WG without compaction as per-pass sums (equal to scheduling :func:`wg_work`). A gated
    layer without weight masks needs no (K, units) matrix: reduction row k of unit j runs M
    steps when k is on the unit's base path, else the unit's active pixels, so the sums follow
    from how many rows of each pass and queue row lie in each input chunk."""
    gated = use_gate and masks.has_gate
    weighted = use_weight and masks.weight is not None and not masks.dense_weight_gradient
    if weighted or not gated:
        return matrix_sums(wg_work(layer, masks, unit, use_gate=use_gate, use_weight=use_weight,
                                   rows=rows, pass_len=pass_len), rows, pass_len)
    return _wg_gated(masks, _wg_plan(layer, masks, unit, rows, pass_len), unit, rows, pass_len)


def _wg_gated(masks: LayerMasks, plan: tuple, unit: int, rows: int,
              pass_len: int) -> PassSums:
    """WG's per-pass sums with the gate of ``masks`` from its :func:`_wg_plan` (base steps +
    active pixels x rows off the base path; the decoder's column indices are each unit's
    active pixels)."""
    base_steps, off_base, classes, lanes, no_row_idx = plan
    active = masks.unit_totals(unit, rows, pass_len)
    sums, _, _ = diagonal_sums(base_steps, off_base, active)
    return PassSums(sums, classes, lanes, None, no_row_idx, active)


def _wg_plan(layer: Layer, masks: LayerMasks, unit: int, rows: int, pass_len: int) -> tuple:
    """(base-path steps per pass (passes, J, rows), rows off the base path per pass (passes,
    J, rows), classes, lanes, zero row indices) for a gated :func:`wg_sums` without weights,
    from how many rows of each pass and queue row lie in each input chunk (cached like
    :func:`_fw_plan`)."""
    key = ("wg_sums", layer.output_pixels, layer.cout, layer.k_per_group, unit, rows, pass_len)
    return _memo(masks._static_cache, key, lambda: _wg_plan_of(layer, masks, unit, rows,
                                                               pass_len))


def _wg_plan_of(layer: Layer, masks: LayerMasks, unit: int, rows: int, pass_len: int) -> tuple:
    m, k = layer.output_pixels, layer.k_per_group
    lanes = unit_lanes(layer.cout, unit)
    per_row = pass_rows(k, rows, pass_len)  # (passes, rows)
    passes = per_row.shape[0]
    if masks.base is None:
        on_base = np.zeros((passes, lanes.shape[0], rows), dtype=np.int64)
    else:
        kk = np.arange(k)
        in_chunk = np.zeros((passes * rows, masks.base.groups), dtype=np.int64)
        np.add.at(in_chunk, ((kk // pass_len) * rows + kk % rows, masks.base.chunk_of_k), 1)
        members = masks.base.members_over_f(unit).astype(np.int64)  # (J, G)
        on_base = np.einsum("prq,jq->pjr", in_chunk.reshape(passes, rows, -1), members)
    return (m * on_base, per_row[:, None, :] - on_base,
            np.arange(lanes.shape[0], dtype=np.int64), lanes, np.zeros(passes, dtype=np.int64))


def effective_macs(layer: Layer, masks: LayerMasks, phase: str) -> int:
    """MACs a FLOPs count gives for this job (the algorithm's view; equal in all phases,
    except WG at dense-gradient steps): sum over kept weights (f, k) of M on the base path and
    the number of active pixels of f on the conditional path."""
    m, f, k = layer.output_pixels, layer.cout, layer.k_per_group
    weight = masks.weight
    if phase == "wg" and masks.dense_weight_gradient:
        weight = None
    elif weight is None and masks.nm is not None and not masks.has_gate:
        return f * nm_reduction_length(k, *masks.nm) * m  # a declared N:M pattern
    # equal in every phase that uses the same weights
    return _memo(masks._cache, ("macs", weight is not None),
                 lambda: _effective_macs(m, f, k, masks, weight))


def _effective_macs(m: int, f: int, k: int, masks: LayerMasks,
                    weight: np.ndarray | None) -> int:
    key = ("macs_plan", m, f, k, weight is not None, masks.has_gate, masks.base is not None)
    fixed, conditional = _memo(masks._static_cache, key,
                               lambda: _macs_plan(m, f, k, masks, weight))
    if conditional is None:
        return fixed
    if conditional.shape[0] == 1:  # the same for every channel: no per-channel counts
        return fixed + int(conditional[0]) * masks.gate_bits.total_ones * masks.gate_group_size
    return fixed + int(conditional @ masks.channel_counts)


def _macs_plan(m: int, f: int, k: int, masks: LayerMasks,
               weight: np.ndarray | None) -> tuple[int, np.ndarray | None]:
    """(MACs that do not depend on the gate, MACs per active pixel of each output channel:
    int64 (F,), or (1,) when equal for all, None without a gate) for :func:`_effective_macs`."""
    kept_per_f = (row_ones(_as_bytes(weight)) if weight is not None
                  else np.full(f, k, dtype=np.int64))
    if not masks.has_gate:
        return int(kept_per_f.sum()) * m, None
    on_base = np.zeros(f, dtype=np.int64)
    if masks.base is not None:
        on_base = (row_ones(_as_bytes(weight & masks.base.mask)) if weight is not None
                   else masks.base.per_f)
    conditional = kept_per_f - on_base  # MACs per active pixel of each output channel
    if (conditional == conditional[0]).all():
        conditional = conditional[:1]
    return int(on_base.sum()) * m, conditional


@dataclass(frozen=True)
class SparseCompute:
    """Compute-side result of one sparse job."""

    cycles_compute: int
    cycles_decoder_stall: int
    decoder_indices: int
    macs_issued: int
    macs_effective: int
    cycles_compute_dense: int


def sparse_compute(layer: Layer, phase: str, masks: LayerMasks,
                   hw: HardwareConfig) -> SparseCompute:
    """Cycles and MACs of one job from its masks on ``hw`` (all dataflows). A gated job
    without weight masks goes through its :class:`GatedPlan`."""
    plan = gated_plan(layer, phase, masks, hw)
    if plan is not None:
        return plan.compute(masks)
    if layer.groups != 1 and (masks.has_gate or masks.weight is not None):
        raise InputError("masks on grouped convolutions are not supported",
                         field=f"layer {layer.name!r}")
    support = hw.sparsity_support
    use_gate = phase in support.gate and masks.has_gate
    # A declared N:M pattern (no recorded mask) is exploitable only by FW's multiplexers.
    use_weight = phase in support.weight and (
        masks.weight is not None or (phase == "fw" and masks.nm is not None))
    gemm = layer.gemm(phase)
    dense_compute = cycles_gemm(gemm, hw.pe_array)
    unit = unit_width(hw)
    macs_effective = effective_macs(layer, masks, phase)
    if hw.pe_array.dataflow in SYSTOLIC_DATAFLOWS:
        # Systolic arrays exploit only N:M weights, in the forward pass (SCALE-Sim v3).
        nm = masks.nm if (use_weight and phase == "fw" and masks.nm
                          and masks.nm[1] in support.nm_m) else None
        if nm is None:
            return SparseCompute(dense_compute, 0, 0, gemm.macs, macs_effective, dense_compute)
        t = nm_reduction_length(gemm.t, *nm)
        return SparseCompute(cycles_gemm(gemm, hw.pe_array, nm=nm), 0, 0,
                             gemm.sr * gemm.sc * t * gemm.count, macs_effective, dense_compute)
    if not use_gate and not use_weight:
        return SparseCompute(dense_compute, 0, 0, gemm.macs, macs_effective, dense_compute)
    compaction = hw.decoder.compaction
    rows, pass_len = hw.pe_array.rows, hw.pe_array.rows * hw.pe_array.sync_tiles
    if use_weight and phase == "fw" and masks.nm and masks.nm[1] in support.nm_m:
        # N:M multiplexers: each lane selects its N kept inputs of every M; steps shrink exactly.
        return _nm_tensor(layer, gemm, masks, hw, macs_effective, dense_compute, use_gate, unit)
    work: PhaseWork | PassSums
    if phase == "fw":
        work = (fw_work(layer, masks, unit, use_gate=use_gate, use_weight=use_weight,
                        compaction=True) if compaction else
                fw_sums(layer, masks, unit, rows, pass_len, use_gate=use_gate,
                        use_weight=use_weight))
    elif phase == "bd":
        work = (bd_work(layer, masks, unit, use_gate=use_gate, use_weight=use_weight)
                if compaction else
                bd_sums(layer, masks, unit, rows, pass_len, use_gate=use_gate,
                        use_weight=use_weight))
    else:
        work = (wg_work(layer, masks, unit, use_gate=use_gate, use_weight=use_weight,
                        rows=rows, pass_len=pass_len) if compaction else
                wg_sums(layer, masks, unit, rows, pass_len, use_gate=use_gate,
                        use_weight=use_weight))
    cycles, stall, indices, issued = schedule(work, hw, unit)
    return SparseCompute(cycles, stall, indices, issued, macs_effective, dense_compute)


def _nm_tensor(layer: Layer, gemm: Gemm, masks: LayerMasks, hw: HardwareConfig,
               macs_effective: int, dense_compute: int, use_gate: bool,
               unit: int) -> SparseCompute:
    """FW with N:M weights on multiplexed lanes: the reduction shrinks to t' = (t//M)*N +
    min(t%M, N) steps. With a gate too, the gate's unit work is computed as usual and every unit's
    steps are scaled by t'/t (rounded up): the multiplexers shrink base and conditional paths
    alike."""
    n, m_ = masks.nm  # type: ignore[misc]
    t = nm_reduction_length(gemm.t, n, m_)
    pe = hw.pe_array
    if not use_gate:  # the groups of a grouped conv run one after another
        cycles = cycles_dense_tensor(gemm.sr, t, gemm.sc, pe.rows, pe.cols, pe.vector_width,
                                     pe.pipeline_latency) * gemm.count
        metadata = math.ceil(gemm.t / m_) * gemm.sc * gemm.count
        return SparseCompute(cycles, 0, metadata, gemm.sr * gemm.sc * t * gemm.count,
                             macs_effective, dense_compute)
    gated = LayerMasks(gate=masks.gate, packed_gate=masks.packed_gate,
                       gate_group_size=masks.gate_group_size, base=masks.base,
                       gating_groups=masks.gating_groups)
    steps: PhaseWork | PassSums
    if hw.decoder.compaction:
        work = fw_work(layer, gated, unit, use_gate=True, use_weight=False, compaction=True)
        scaled = (-(-work.counts.astype(np.int64) * t // gemm.t)).astype(np.int32)
        metadata = np.full(work.col_idx.shape, math.ceil(gemm.t / m_), dtype=np.int64)
        steps = PhaseWork(scaled, work.classes, work.unit_idx, work.row_idx, metadata,
                          work.lanes)
    else:
        sums = fw_sums(layer, gated, unit, pe.rows, pe.rows * pe.sync_tiles, use_gate=True,
                       use_weight=False, scale=(t, gemm.t))
        metadata = np.full(sums.col_idx.shape, math.ceil(gemm.t / m_), dtype=np.int64)
        steps = PassSums(sums.sums, sums.classes, sums.lanes, sums.unit_idx_sums,
                         sums.row_idx_sums, metadata)
    cycles, stall, indices, issued = schedule(steps, hw, unit)
    return SparseCompute(cycles, stall, indices, issued, macs_effective, dense_compute)


@dataclass(frozen=True, eq=False)
class GatedPlan:
    """A gated job without weight masks, planned once for its layer, base path and hardware:
    what :func:`sparse_compute` derives from everything but the gate bits, so that a step's
    compute is the gate's counts, one sums kernel and :func:`schedule_sums`
    (:meth:`compute`). A replay keeps one per job (:class:`accelsim.engine.simulator.
    JobCache`); ``sums`` None: the job runs dense on this hardware (the phase does not skip
    with the gate, or a systolic array)."""

    layer: Layer
    phase: str
    dense_compute: int            # cycles of the job dense
    macs_dense: int
    unit: int
    rows: int
    pass_len: int
    sums: tuple | None            # the phase's plan: (_fw_plan, _bd_plan or _wg_plan tuple)
    qcols: int
    indices_per_cycle: int
    latency: int                  # pipeline latency, cycles

    def compute(self, masks: LayerMasks) -> SparseCompute:
        """The job's compute with the gate of ``masks`` (same base path and group size as
        the plan's)."""
        macs_effective = effective_macs(self.layer, masks, self.phase)
        if self.sums is None:
            return SparseCompute(self.dense_compute, 0, 0, self.macs_dense, macs_effective,
                                 self.dense_compute)
        work = _GATED_SUMS[self.phase](masks, self.sums, self.unit, self.rows, self.pass_len)
        cycles, stall, indices, issued = schedule_pass_sums(work, self.qcols,
                                                            self.indices_per_cycle, self.latency)
        return SparseCompute(cycles, stall, indices, issued, macs_effective, self.dense_compute)


# Each phase's per-pass sums with the gate, from its plan (fw_sums, bd_sums and wg_sums use
# them too).
_GATED_SUMS = {"fw": _fw_gated, "bd": _bd_gated, "wg": _wg_gated}


def plans_gate(layer: Layer, masks: LayerMasks) -> bool:
    """Whether a job with ``masks`` goes through a :class:`GatedPlan`: a gate, no weight mask
    and no declared N:M pattern, on an ungrouped layer."""
    return (masks.has_gate and masks.weight is None and masks.nm is None
            and layer.groups == 1)


def gated_plan(layer: Layer, phase: str, masks: LayerMasks,
               hw: HardwareConfig) -> GatedPlan | None:
    """The :class:`GatedPlan` of a job, or None when it has none (:func:`plans_gate` fails, or
    compaction on a tensor array: the per-pixel work path)."""
    if not plans_gate(layer, masks):
        return None
    pe = hw.pe_array
    systolic = pe.dataflow in SYSTOLIC_DATAFLOWS
    skips = phase in hw.sparsity_support.gate and not systolic
    if skips and hw.decoder.compaction:
        return None
    gemm = layer.gemm(phase)
    unit = unit_width(hw)
    rows, pass_len = pe.rows, pe.rows * pe.sync_tiles
    sums: tuple | None = None
    if skips and phase == "fw":
        sums = _fw_plan(layer, masks, unit, rows, pass_len, True, None, None)
    elif skips and phase == "bd":
        sums = _bd_plan(layer, masks, unit, rows, pass_len, True, None)
    elif skips:
        sums = _wg_plan(layer, masks, unit, rows, pass_len)
    return GatedPlan(layer, phase, cycles_gemm(gemm, pe), gemm.macs, unit, rows, pass_len, sums,
                     queue_columns(hw, unit), decoder_throughput(hw), pe.pipeline_latency)
