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

A gate or weight mask that is all ones runs in dense mode: no index, no decoder, so all-ones masks
give exactly the dense result.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from accelsim.config import SYSTOLIC_DATAFLOWS, HardwareConfig
from accelsim.engine.pe_array import cycles_dense_tensor, cycles_gemm
from accelsim.engine.systolic import nm_reduction_length
from accelsim.errors import InputError
from accelsim.kernels import (
    gate_views,
    group_any,
    masked_step_counts,
    schedule_passes,
)
from accelsim.network import Gemm, Layer


@dataclass(frozen=True)
class LayerMasks:
    """The masks of one layer and branch at one step, prepared for replay.

    ``gate``: the gate in its native layout, bool (N, F/s, P) with P = Ho*Wo (one bit per group
    of ``gate_group_size`` output channels; pixels m = n*P + p), or None (no gating, or an all-ones
    gate: dense mode). An element-level (M, F) gate is ``gate_mf[:, :, None]``. ``base``: for
    gated layers with G > 1, bool
    (F, K): True where weight (f, k) is on output f's dense base path. ``weight``: bool (F, K) kept
    weights, or None (no pruning, or all ones). ``nm``: (N, M) when the weight mask is N:M along
    input channels. ``dense_weight_gradient``: this step needs the full weight gradient (regrowth).
    """

    gate: np.ndarray | None = None
    gate_group_size: int = 1
    base: np.ndarray | None = None
    gating_groups: int = 1
    weight: np.ndarray | None = None
    nm: tuple[int, int] | None = None
    dense_weight_gradient: bool = False

    @cached_property
    def _gate_view_cache(self) -> dict[int, GateViews]:
        return {}

    def gate_views(self, unit: int) -> GateViews:
        """Per-unit, per-pixel and per-channel views of the gate for ``unit`` lanes (cached)."""
        assert self.gate is not None
        if unit not in self._gate_view_cache:
            channels = self.gate.shape[1] * self.gate_group_size
            active, lanes, packed, per_pixel, per_channel, per_unit = gate_views(
                _as_bytes(self.gate), self.gate_group_size, unit, channels)
            self._gate_view_cache[unit] = GateViews(active, lanes, packed.view(np.uint64),
                                                    per_pixel, per_channel, per_unit)
        return self._gate_view_cache[unit]



@dataclass(frozen=True)
class GateViews:
    """Derived views of one gate (see :func:`accelsim.kernels.gate_views`)."""

    unit_active: np.ndarray   # bool (M, J): any lane of the unit is on
    unit_lanes: np.ndarray    # int32 (M, J): active lanes of the unit
    packed: np.ndarray        # uint64 (M, words): active channels per pixel, bit-packed
    per_pixel: np.ndarray     # int64 (M,)
    per_channel: np.ndarray   # int64 (F,)
    per_unit: np.ndarray      # int64 (J,): pixels where any lane of the unit is on


def native_gate(gate: np.ndarray) -> np.ndarray:
    """A recorded (N, F/s, Ho, Wo) gate as the (N, F/s, Ho*Wo) layout the replay uses (a view)."""
    n, groups, ho, wo = gate.shape
    return gate.reshape(n, groups, ho * wo)


def base_path_mask(layer: Layer, gating_groups: int, base_chunks: tuple[int, ...]) -> np.ndarray:
    """bool (F, K): weight (f, k) is on f's base path (input chunk of k == base chunk of f's
    output chunk). K is ordered (cin, kh, kw) like a flattened (Cout, Cin, kh, kw) weight."""
    f_chunk = np.arange(layer.cout) // (layer.cout // gating_groups)
    k_chunk = np.arange(layer.k_per_group) // (layer.k_per_group // gating_groups)
    base_of_f = np.asarray(base_chunks, dtype=np.int64)[f_chunk]
    return base_of_f[:, None] == k_chunk[None, :]


def _as_bytes(mask: np.ndarray) -> np.ndarray:
    """A C-contiguous uint8 view of a bool mask (no copy when already contiguous)."""
    return np.ascontiguousarray(mask).view(np.uint8)


_WORD_TYPES = {1: np.uint8, 2: np.uint16, 4: np.uint32, 8: np.uint64}


def unit_any(mask: np.ndarray, unit: int, axis: int) -> np.ndarray:
    """OR over groups of ``unit`` consecutive entries along ``axis`` (0 or 1) of a 2-D mask."""
    if axis == 0:
        return unit_any(mask.T, unit, 1).T
    data = _as_bytes(mask)
    if unit in _WORD_TYPES and data.shape[1] % unit == 0:
        return data.view(_WORD_TYPES[unit]) != 0  # bool bytes: a group is one machine word
    return group_any(data, unit)


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


def schedule(work: PhaseWork, hw: HardwareConfig, unit: int) -> tuple[int, int, int, int]:
    """Run a phase's work through the queues: (cycles, decoder stall cycles, indices, MACs
    issued: the lanes' MACs, idle lanes of active lock-step units included)."""
    pe, decoder = hw.pe_array, hw.decoder
    qcols = max(1, pe.cols * pe.vector_width // unit)
    throughput = (decoder.compaction_indices_per_cycle if decoder.compaction
                  else decoder.indices_per_cycle)
    has_unit_idx = work.unit_idx is not None
    cycles, stall, indices, issued = schedule_passes(
        work.counts, work.classes, work.lanes, work.unit_idx if has_unit_idx else NO_UNIT_INDEX,
        has_unit_idx,
        work.row_idx, work.col_idx, pe.rows, qcols, pe.sync_tiles, decoder.compaction,
        throughput)
    return cycles + pe.pipeline_latency, stall, indices, issued


def fw_work(layer: Layer, masks: LayerMasks, unit: int, *, use_gate: bool, use_weight: bool,
            compaction: bool) -> PhaseWork:
    """Forward: rows = pixels, lanes = output channels, steps = k (see the module docstring)."""
    m, f, k = layer.output_pixels, layer.cout, layer.k_per_group
    gate = masks.gate if use_gate else None
    weight = masks.weight if use_weight else None
    kept = weight if weight is not None else np.ones((f, k), dtype=bool)
    base = masks.base if (gate is not None and masks.base is not None) else None
    if gate is None:
        full = unit_any(kept, unit, axis=0).sum(axis=1, dtype=np.int64)
        base_steps = full
    else:
        on_base = kept & base if base is not None else np.zeros_like(kept)
        base_steps = unit_any(on_base, unit, axis=0).sum(axis=1, dtype=np.int64)
        full = unit_any(kept, unit, axis=0).sum(axis=1, dtype=np.int64)
    units = full.shape[0]
    unit_idx, row_idx, col_idx = _zeros(m, units)
    full32, base32 = full.astype(np.int32), base_steps.astype(np.int32)
    if gate is None:
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


def bd_work(layer: Layer, masks: LayerMasks, unit: int, *, use_gate: bool,
            use_weight: bool) -> PhaseWork:
    """Backward data: rows = pixels, lanes = input-gradient columns k, steps = f."""
    m, f, k = layer.output_pixels, layer.cout, layer.k_per_group
    gate = masks.gate if use_gate else None
    weight = masks.weight if use_weight else None
    lanes = unit_lanes(k, unit)
    units = lanes.shape[0]
    unit_idx, row_idx, col_idx = _zeros(m, units)
    if gate is None and weight is None:
        return PhaseWork(np.full((m, 1), f, dtype=np.int32), np.zeros(units, dtype=np.int64),
                         unit_idx, row_idx, col_idx, lanes)
    allowed = (unit_any(weight.T, unit, axis=0) if weight is not None
               else np.ones((units, f), dtype=bool))
    if gate is None:
        steps = allowed.sum(axis=1, dtype=np.int32)
        values, classes = np.unique(steps, return_inverse=True)
        counts = np.ascontiguousarray(np.broadcast_to(values.astype(np.int32), (m, len(values))))
        work = PhaseWork(counts, classes.reshape(-1).astype(np.int64), unit_idx, row_idx,
                         col_idx, lanes)
    else:
        always = (unit_any(masks.base.T, unit, axis=0) if masks.base is not None
                  else np.zeros((units, f), dtype=bool))
        # Units sharing (always, allowed) get the same counts: popcount once per class.
        keys = np.concatenate([pack_bits(always), pack_bits(allowed)], axis=1)
        classes, inverse = np.unique(keys, axis=0, return_inverse=True)
        words = keys.shape[1] // 2
        views = masks.gate_views(unit)
        counts = masked_step_counts(views.packed, np.ascontiguousarray(classes[:, :words]),
                                    np.ascontiguousarray(classes[:, words:]))
        row_idx = views.per_pixel // masks.gate_group_size  # one index per active gate group
        work = PhaseWork(counts, inverse.reshape(-1).astype(np.int64), unit_idx, row_idx,
                         col_idx, lanes)
    if weight is not None:
        col_idx = allowed.sum(axis=1, dtype=np.int64)
        work = PhaseWork(work.counts, work.classes, unit_idx, work.row_idx, col_idx, lanes)
    return work


def wg_work(layer: Layer, masks: LayerMasks, unit: int, *, use_gate: bool,
            use_weight: bool) -> PhaseWork:
    """Weight gradient: rows = k, lanes = output channels f, steps = pixels m."""
    m, f, k = layer.output_pixels, layer.cout, layer.k_per_group
    gate = masks.gate if use_gate else None
    weight = masks.weight if (use_weight and not masks.dense_weight_gradient) else None
    lanes = unit_lanes(f, unit)
    units = lanes.shape[0]
    unit_idx, row_idx, col_idx = _zeros(k, units)
    needed = (unit_any(weight, unit, axis=0).T if weight is not None
              else np.ones((k, units), dtype=bool))
    if gate is None:
        steps = np.full((k, units), m, dtype=np.int32)
    else:
        active_pixels = masks.gate_views(unit).per_unit
        on_base = (unit_any(masks.base, unit, axis=0).T if masks.base is not None
                   else np.zeros((k, units), dtype=bool))
        steps = np.where(on_base, m, active_pixels[None, :]).astype(np.int32)
        col_idx = active_pixels
    if weight is not None:
        unit_idx = np.ascontiguousarray(needed, dtype=np.int32)
    return matrix_work(steps * needed, unit_idx, row_idx, col_idx, lanes)


def effective_macs(layer: Layer, masks: LayerMasks, phase: str, unit: int = 1) -> int:
    """MACs a FLOPs count gives for this job (the algorithm's view; equal in all phases,
    except WG at dense-gradient steps): sum over kept weights (f, k) of M on the base path and
    the number of active pixels of f on the conditional path."""
    m, f, k = layer.output_pixels, layer.cout, layer.k_per_group
    weight = masks.weight
    if phase == "wg" and masks.dense_weight_gradient:
        weight = None
    elif weight is None and masks.nm is not None and masks.gate is None:
        return f * nm_reduction_length(k, *masks.nm) * m  # a declared N:M pattern
    kept = weight if weight is not None else np.ones((f, k), dtype=bool)
    if masks.gate is None:
        return int(kept.sum(dtype=np.int64)) * m
    active = masks.gate_views(unit).per_channel  # any unit width: per-channel counts agree
    if masks.base is None:
        return int(kept.sum(axis=1, dtype=np.int64) @ active)
    on_base = (kept & masks.base).sum(axis=1, dtype=np.int64)
    conditional = (kept & ~masks.base).sum(axis=1, dtype=np.int64)
    return int(on_base.sum() * m + conditional @ active)


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
    """Cycles and MACs of one job from its masks on ``hw`` (all dataflows)."""
    if layer.groups != 1 and (masks.gate is not None or masks.weight is not None):
        raise InputError("masks on grouped convolutions are not supported",
                         field=f"layer {layer.name!r}")
    support = hw.sparsity_support
    use_gate = phase in support.gate and masks.gate is not None
    # A declared N:M pattern (no recorded mask) is exploitable only by FW's multiplexers.
    use_weight = phase in support.weight and (
        masks.weight is not None or (phase == "fw" and masks.nm is not None))
    gemm = layer.gemm(phase)
    dense_compute = cycles_gemm(gemm, hw.pe_array)
    unit = unit_width(hw)
    macs_effective = effective_macs(layer, masks, phase, unit)
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
    decoder = hw.decoder
    if use_weight and phase == "fw" and masks.nm and masks.nm[1] in support.nm_m:
        # N:M multiplexers: each lane selects its N kept inputs of every M; steps shrink exactly.
        return _nm_tensor(layer, gemm, masks, hw, macs_effective, dense_compute, use_gate, unit)
    if phase == "fw":
        work = fw_work(layer, masks, unit, use_gate=use_gate, use_weight=use_weight,
                       compaction=decoder.compaction)
    elif phase == "bd":
        work = bd_work(layer, masks, unit, use_gate=use_gate, use_weight=use_weight)
    else:
        work = wg_work(layer, masks, unit, use_gate=use_gate, use_weight=use_weight)
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
    gated = LayerMasks(gate=masks.gate, gate_group_size=masks.gate_group_size, base=masks.base,
                       gating_groups=masks.gating_groups)
    work = fw_work(layer, gated, unit, use_gate=True, use_weight=False,
                   compaction=hw.decoder.compaction)
    scaled = (-(-work.counts.astype(np.int64) * t // gemm.t)).astype(np.int32)
    metadata = np.full(work.col_idx.shape, math.ceil(gemm.t / m_), dtype=np.int64)
    steps = PhaseWork(scaled, work.classes, work.unit_idx, work.row_idx, metadata, work.lanes)
    cycles, stall, indices, issued = schedule(steps, hw, unit)
    return SparseCompute(cycles, stall, indices, issued, macs_effective, dense_compute)
