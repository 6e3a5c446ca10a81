"""DGC (dynamic group convolution, Su et al., ECCV 2020): a job whose weights depend on the sample.

The output channels are cut into H heads; for each sample n, head h reads only the input
channels its saliency generator selected, ``select[n, h, c]``. To the array this is a weight
mask per sample, W_n(f, k) = W(f, k) and select[n, h(f), c(k)] (k = (c, kh, kw), W the kept
weights or all ones), and each phase skips with it as it skips with a weight mask (tensor
dataflow, lanes over output columns):

- FW (rows = pixels m of sample n, lanes = output channels): unit column j runs step k where a
  lane keeps W_n(f, k): its step set ``S_fw[n, j]``.
- BD (rows = pixels, lanes = reduction columns k, steps = output channels f): unit column j
  runs step f where a lane k keeps W_n(f, k): ``S_bd[n, j]``.
- WG (rows = k, lanes = output channels, steps = pixels): unit (k, j) runs the pixels of the
  samples n with k in ``S_fw[n, j]``, and none of the others.

The decoder reads, per pass, sample and unit column, that sample's step list (FW, BD: one index
per step; the rows of one sample in one pass share it), and in WG one index per sample a unit
runs. The selection itself is stored as an index of N x H x Cin bits
(:func:`accelsim.engine.indices.select_index`). Queues, passes and the operand stage are those of
every other job (:mod:`accelsim.engine.schedule`, :mod:`accelsim.engine.stage`): a pass spans
samples when a sample has fewer pixels than a pass has rows, and its rows then run different
step sets. Not modelled: the saliency generators' own work (a global pool and two small linear
layers per head and sample), compaction and the row balancer, adder-tree lanes and WG's
transposed lane mapping (refused before any work: :func:`refuse_dgc`), and N:M multiplexers
(the kept weights of an N:M mask count as an element-wise mask).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from accelsim.config import SYSTOLIC_DATAFLOWS, HardwareConfig
from accelsim.engine.masks import LayerMasks, unit_any, unit_lanes
from accelsim.engine.schedule import PassSums, PhaseWork, matrix_work
from accelsim.errors import InputError
from accelsim.kernels import staged_sample_columns, staged_sample_rows
from accelsim.network import PHASES, Layer
from accelsim.trace import TraceLayer


def dgc_problem(hw: HardwareConfig, phases: Sequence[str] = PHASES) -> str | None:
    """Why ``hw`` cannot replay DGC's input selection in ``phases`` (the field to change), or
    None: the model covers tensor arrays with lanes over output columns, without compaction or
    the row balancer; a phase that does not skip dynamic masks (not in
    ``sparsity_support.gate``), and every phase on a systolic array, runs DGC layers dense."""
    pe, decoder = hw.pe_array, hw.decoder
    skipping = [p for p in phases if p in hw.sparsity_support.gate]
    if pe.dataflow in SYSTOLIC_DATAFLOWS or not skipping:
        return None
    for field, on in (("decoder.compaction", decoder.compaction),
                      ("decoder.balance_rows", decoder.balance_rows),
                      ("pe_array.fw_lanes", "fw" in skipping and pe.fw_lanes == "reduction"),
                      ("pe_array.bd_lanes", "bd" in skipping and pe.bd_lanes == "reduction"),
                      ("pe_array.wg_lanes",
                       "wg" in skipping and pe.wg_lanes == "input_channels")):
        if on:
            return (f"{field}: not modelled with DGC's input selection, which is replayed on "
                    "lanes over output columns without compaction or the row balancer (the "
                    "defaults)")
    return None


def refuse_dgc(layers: Sequence[TraceLayer], hw: HardwareConfig, phases: Sequence[str],
               trace: str) -> None:
    """An InputError, before any work, when a layer of ``trace`` records a DGC selection that
    ``hw`` cannot replay in ``phases`` (:func:`dgc_problem`)."""
    selecting = [item.name for item in layers if item.select is not None]
    problem = dgc_problem(hw, phases) if selecting else None
    if problem is not None:
        raise InputError(f"{problem}; trace {trace}, layer {selecting[0]!r}, records one",
                         path=hw.name)


def _kept(layer: Layer, masks: LayerMasks, phase: str) -> np.ndarray:
    """bool (F, K): the kept weights the phase skips with (all ones without a weight mask, and
    in WG at a dense-gradient step)."""
    if masks.weight is None or (phase == "wg" and masks.dense_weight_gradient):
        return np.ones((layer.cout, layer.k_per_group), dtype=bool)
    return masks.weight


def _head_of(layer: Layer, heads: int) -> np.ndarray:
    """int64 (F,): the head of every output channel."""
    return np.arange(layer.cout) // (layer.cout // heads)


def output_lane_sets(layer: Layer, masks: LayerMasks, phase: str, unit: int) -> np.ndarray:
    """bool (N, J, K): ``S_fw``, whether unit column j (``unit`` consecutive output channels)
    keeps a weight at reduction column k for sample n (FW's steps; WG's rows)."""
    select = masks.select
    assert select is not None
    n, heads, cin = select.shape
    kept = _kept(layer, masks, phase)
    spread = layer.k_per_group // cin  # kernel positions per input channel
    head_of = _head_of(layer, heads)
    sets = np.zeros((n, -(-layer.cout // unit), layer.k_per_group), dtype=bool)
    for head in range(heads):
        lanes = unit_any(kept & (head_of == head)[:, None], unit, axis=0)  # (J, K)
        touched = np.flatnonzero(lanes.any(axis=1))
        chosen = np.repeat(select[:, head, :], spread, axis=1)  # (N, K)
        sets[:, touched, :] |= lanes[touched][None, :, :] & chosen[:, None, :]
    return sets


def reduction_lane_sets(layer: Layer, masks: LayerMasks, unit: int) -> np.ndarray:
    """bool (N, J, F): ``S_bd``, whether unit column j (``unit`` consecutive reduction columns
    k) keeps a weight of output channel f for sample n (BD's steps). A unit's lanes span a few
    input channels; each is taken in turn (its offset from the unit's first)."""
    select = masks.select
    assert select is not None
    n, heads, cin = select.shape
    f, k = layer.cout, layer.k_per_group
    kept = _kept(layer, masks, "bd")
    spread = k // cin
    channel_of_k = np.arange(k) // spread
    units = -(-k // unit)
    first_channel = channel_of_k[np.arange(units) * unit]  # (J,)
    offset_of_k = channel_of_k - first_channel[np.arange(k) // unit]
    sets = np.zeros((n, units, f), dtype=bool)
    for offset in range(int(offset_of_k.max()) + 1):
        lanes = unit_any((kept & (offset_of_k == offset)[None, :]).T, unit, axis=0)  # (J, F)
        channel = np.minimum(first_channel + offset, cin - 1)
        by_head = select[:, :, channel].transpose(0, 2, 1)  # (N, J, H)
        sets |= lanes[None, :, :] & np.repeat(by_head, f // heads, axis=2)  # heads in order
    return sets


def dgc_work(layer: Layer, masks: LayerMasks, phase: str, unit: int, rows: int,
             pass_len: int) -> tuple[PassSums | PhaseWork, np.ndarray]:
    """The phase's work (decoder indices included) and its step sets, uint8 (N, J, T) (FW, BD:
    T the phase's steps; WG: the rows k, T = K). FW's and BD's rows are pixels, so their work
    is summed per pass and queue row from each sample's steps (:func:`_pass_samples`); WG's
    rows are reduction columns k, a (K, J) work matrix."""
    pixels = layer.h_out * layer.w_out
    if phase == "wg":
        sets = output_lane_sets(layer, masks, phase, unit)
        samples = sets.sum(axis=0, dtype=np.int32).T  # (K, J): samples each unit runs
        work = matrix_work(samples * pixels, np.ascontiguousarray(samples),
                           np.zeros(layer.k_per_group, dtype=np.int64),
                           np.zeros(samples.shape[1], dtype=np.int64),
                           unit_lanes(layer.cout, unit))
        return work, sets.view(np.uint8)
    if phase == "fw":
        sets, lanes = output_lane_sets(layer, masks, phase, unit), unit_lanes(layer.cout, unit)
    else:
        sets, lanes = reduction_lane_sets(layer, masks, unit), unit_lanes(layer.k_per_group,
                                                                          unit)
    steps = sets.sum(axis=2, dtype=np.int64)  # (N, J)
    counts, first = _pass_samples(layer.output_pixels, pixels, rows, pass_len)
    width = counts.shape[2]
    sample = np.minimum(first[:, None] + np.arange(width)[None, :], steps.shape[0] - 1)
    per_pass = steps[sample]  # (passes, width, J): each pass's s-th sample's steps
    sums = np.einsum("prs,psj->pjr", counts, per_pass)
    present = counts.sum(axis=1) > 0  # (passes, width): the samples each pass holds
    unit_idx = np.einsum("ps,psj->pj", present.astype(np.int64), per_pass)  # a list each
    units = steps.shape[1]
    work = PassSums(sums, np.arange(units, dtype=np.int64), lanes, unit_idx,
                    np.zeros(counts.shape[0], dtype=np.int64), np.zeros(units, dtype=np.int64))
    return work, sets.view(np.uint8)


def dgc_staged(layer: Layer, phase: str, sets: np.ndarray, rows: int, pass_len: int,
               stage_steps: int, qcols: int) -> np.ndarray | None:
    """int64 (passes, column tiles): each pass's compute under the operand stage, or None when
    the stage holds the whole reduction (the pass model is then exact)."""
    pixels = layer.h_out * layer.w_out
    if phase == "wg":
        if stage_steps >= layer.output_pixels:
            return None
        return staged_sample_rows(np.ascontiguousarray(sets), rows, pass_len, pixels,
                                  stage_steps, qcols)
    if stage_steps >= sets.shape[2]:
        return None
    counts, first = _pass_samples(layer.output_pixels, pixels, rows, pass_len)
    return staged_sample_columns(_distinct_rows(counts), first, np.ascontiguousarray(sets),
                                 stage_steps, qcols)


def _pass_samples(total: int, pixels: int, rows: int,
                  pass_len: int) -> tuple[np.ndarray, np.ndarray]:
    """(int64 (passes, rows, width): how many rows of the pass's s-th sample each queue row of
    a pass holds, int64 (passes,): each pass's first sample)."""
    i = np.arange(total)
    passes = -(-total // pass_len)
    first = np.arange(passes) * pass_len // pixels
    last = (np.minimum(np.arange(1, passes + 1) * pass_len, total) - 1) // pixels
    counts = np.zeros((passes, rows, int((last - first).max()) + 1), dtype=np.int64)
    p = i // pass_len
    np.add.at(counts, (p, i % rows, i // pixels - first[p]), 1)
    return counts, first


def _distinct_rows(counts: np.ndarray) -> np.ndarray:
    """``counts`` (passes, rows, width) with only each pass's distinct queue rows (queue rows
    holding the same rows of the same samples do the same work), padded with all-zero rows,
    which never set a chunk's length."""
    distinct = [np.unique(per_pass, axis=0) for per_pass in counts]
    patterns = np.zeros((counts.shape[0], max(d.shape[0] for d in distinct), counts.shape[2]),
                        dtype=np.int64)
    for index, found in enumerate(distinct):
        patterns[index, :found.shape[0]] = found
    return patterns


def dgc_effective_macs(layer: Layer, masks: LayerMasks, phase: str) -> int:
    """MACs of the FLOPs view: every pixel of sample n, for every kept weight (f, k) whose
    input channel head h(f) selected for n."""
    select = masks.select
    assert select is not None
    _, heads, cin = select.shape
    kept = _kept(layer, masks, phase)
    per_channel = kept.reshape(layer.cout, cin, -1).sum(axis=2)  # (F, Cin)
    per_head = np.add.reduceat(per_channel, np.arange(0, layer.cout, layer.cout // heads),
                               axis=0)  # (H, Cin): kept weights of each head per input channel
    selected = int((select.astype(np.int64) * per_head[None, :, :]).sum())
    return selected * layer.h_out * layer.w_out
