"""A phase's work and its run through the queues of the PE array.

The work of a phase is either the per-pixel matrix (:class:`PhaseWork`, needed with compaction)
or its sums per pass and queue row (:class:`PassSums`); :func:`schedule` runs either through
:func:`accelsim.kernels.schedule_passes` / :func:`accelsim.kernels.schedule_sums`: units work
through private queues of ``rows`` rows for ``sync_tiles`` tiles, a pass lasts as long as its
slowest queue (or as its operand stage allows: ``staged``, :mod:`accelsim.engine.stage`, with
compaction balanced chunk by chunk, :mod:`accelsim.engine.stage_compaction`) or as the
decoder needs for its indices (the stall rule,
``kernels._pass_cycles``), and issued MACs count idle lanes of active units.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from accelsim.config import HardwareConfig
from accelsim.engine.lane_scheduler import LaneScheduler
from accelsim.kernels import (
    pass_row_sums,
    schedule_passes,
    schedule_sums,
)


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


def no_indices(rows: int, units: int) -> tuple[None, np.ndarray, np.ndarray]:
    return None, np.zeros(rows, dtype=np.int64), np.zeros(units, dtype=np.int64)


NO_UNIT_INDEX = np.zeros((1, 1), dtype=np.int32)
NO_STAGE = np.zeros((1, 1), dtype=np.int64)


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


@dataclass(frozen=True)
class Schedule:
    """A phase's work run through the queues."""

    cycles: int                 # compute cycles, decoder stalls and pipeline latency included
    cycles_decoder_stall: int   # cycles the decoder held the array
    decoder_indices: int        # indices decoded
    macs_issued: int            # the lanes' MACs, idle lanes of active lock-step units included
    compacted: bool = False     # the work went through the compaction network or lane scheduler
    cycles_stage_wait: int = 0  # compute cycles the operand stage added to the slowest queues


@dataclass(frozen=True)
class LaneLayout:
    """How a phase's units sit on the array: output columns per unit (``unit``), queue
    columns (``qcols``) and, when a PE's lanes are an adder tree over the reduction, its width
    (``tree``: steps reduced per cycle; 0 otherwise)."""

    unit: int
    qcols: int
    tree: int
    scheduler: LaneScheduler | None = None  # a lane scheduler in front of the tree


def lane_layout(hw: HardwareConfig, phase: str) -> LaneLayout:
    """The :class:`LaneLayout` of ``phase`` on ``hw``: FW or BD with reduction lanes
    (``pe_array.fw_lanes`` / ``bd_lanes``) has one output per PE (cols queue columns, a
    vector_width-wide tree); otherwise units of :func:`unit_width` output columns."""
    pe = hw.pe_array
    if pe.adder_tree(phase):
        return LaneLayout(1, pe.cols, pe.vector_width, LaneScheduler.of(hw))
    unit = unit_width(hw)
    return LaneLayout(unit, queue_columns(hw, unit), 0)


def schedule(work: PhaseWork | PassSums, hw: HardwareConfig, qcols: int,
             staged: np.ndarray | None = None) -> Schedule:
    """Run a phase's work through the queues of ``hw`` (``qcols`` queue columns); ``staged``:
    each pass's compute under the operand stage (:mod:`accelsim.engine.stage`), or None where
    the pass model holds."""
    pe, decoder = hw.pe_array, hw.decoder
    throughput = decoder_throughput(hw)
    if isinstance(work, PassSums):
        assert not decoder.compaction
        return schedule_pass_sums(work, qcols, throughput, pe.pipeline_latency, staged)
    has_unit_idx = work.unit_idx is not None
    has_staged = staged is not None
    cycles, stall, indices, issued, waited = schedule_passes(
        work.counts, work.classes, work.lanes, work.unit_idx if has_unit_idx else NO_UNIT_INDEX,
        has_unit_idx,
        work.row_idx, work.col_idx, pe.rows, qcols, pe.sync_tiles, decoder.compaction,
        throughput, staged if has_staged else NO_STAGE, has_staged)
    return Schedule(cycles + pe.pipeline_latency, stall, indices, issued, decoder.compaction,
                    waited)


NO_UNIT_SUMS = np.zeros((1, 1), dtype=np.int64)


def schedule_pass_sums(work: PassSums, qcols: int, indices_per_cycle: int,
                       latency: int, staged: np.ndarray | None = None) -> Schedule:
    """:func:`schedule` of per-pass sums (no compaction) on ``qcols`` queue columns, a decoder
    of ``indices_per_cycle`` and a pipeline of ``latency`` cycles; ``staged``: int64 (passes,
    column tiles) compute under the operand stage, or None (the slowest queue's sum)."""
    has_unit_idx = work.unit_idx_sums is not None
    has_staged = staged is not None
    cycles, stall, indices, issued, waited = schedule_sums(
        np.ascontiguousarray(work.sums, dtype=np.int64), work.classes, work.lanes,
        work.unit_idx_sums if has_unit_idx else NO_UNIT_SUMS, has_unit_idx,
        work.row_idx_sums, work.col_idx, qcols, indices_per_cycle,
        staged if has_staged else NO_STAGE, has_staged)
    return Schedule(cycles + latency, stall, indices, issued, cycles_stage_wait=waited)


def queue_columns(hw: HardwareConfig, unit: int) -> int:
    """Queue columns of the array for ``unit``-lane units."""
    return max(1, hw.pe_array.cols * hw.pe_array.vector_width // unit)


def decoder_throughput(hw: HardwareConfig) -> int:
    """Indices the decoder delivers per cycle (fewer with compaction)."""
    decoder = hw.decoder
    return (decoder.compaction_indices_per_cycle if decoder.compaction
            else decoder.indices_per_cycle)


def matrix_sums(work: PhaseWork, rows: int, pass_len: int) -> PassSums:
    """A work matrix as per-pass sums (scheduling them equals scheduling the matrix without
    compaction)."""
    unit_idx = (None if work.unit_idx is None
                else pass_row_sums(work.unit_idx, rows, pass_len).sum(axis=2))
    row_idx = pass_row_sums(work.row_idx.reshape(-1, 1), rows, pass_len).sum(axis=(1, 2))
    return PassSums(pass_row_sums(work.counts, rows, pass_len), work.classes, work.lanes,
                    unit_idx, row_idx, work.col_idx)
