"""A TensorDash-style lane scheduler in front of adder-tree lanes (``decoder.lane_scheduler``).

TensorDash (Mahmoud et al., MICRO 2020) puts a multiplexer in front of each multiplier input
of a PE whose lanes reduce one output (an adder tree): an empty slot of the current step (a
lane whose operand pair is ineffectual) takes an effectual pair from a later step of its own
lane (*lookahead*, up to ``scheduler_lookahead`` steps) or of a nearby lane (*lookaside*). The
candidates, nearest step first, are (t + h, lane) for h = 1..H and ``scheduler_lookaside``
positions (t + h, lane +- d), d = 1, 2, ... alternating sign, h cycling 1..H (the paper's
H = 2, D = 5: (1, -1), (1, 0), (1, 1), (1, 3), (2, -2), (2, 0), (2, 2), an 8-input
multiplexer); lanes wrap inside the PE. The empty slots of a step are filled in rounds of
lanes D apart (their candidates do not overlap), and a step the promotions emptied costs no
cycle, up to H such steps in a row (the scheduler's window advances at most H + 1 steps a
cycle).

In accelsim the scheduler sees a unit's steps (an output's path of tree steps) after the
index has dropped the empty ones, one segment per path and operand-stage chunk: it cannot look
into operands not yet staged, or across the base / conditional boundary of a gated output,
whose conditional path runs only where the gate is on. So it never costs a step more than the
index alone.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from accelsim.config import HardwareConfig
from accelsim.kernels import lane_scheduled_chunks


@dataclass(frozen=True)
class LaneScheduler:
    """The scheduler's reach: ``lookahead`` steps of its own lane, ``lookaside`` positions in
    nearby lanes, inside ``window`` staged steps at a time (``pe_array.stage_steps``)."""

    lookahead: int
    lookaside: int
    window: int

    @classmethod
    def of(cls, hw: HardwareConfig) -> LaneScheduler | None:
        """``hw``'s scheduler, or None without one."""
        decoder = hw.decoder
        if decoder.lane_scheduler == "none":
            return None
        return cls(decoder.scheduler_lookahead, decoder.scheduler_lookaside,
                   hw.pe_array.stage_steps)

    @property
    def mux_inputs(self) -> int:
        """Inputs of each multiplier input's multiplexer: the slot's own pair and the
        candidates."""
        return 1 + len(self.candidates())

    def candidates(self) -> tuple[tuple[int, int], ...]:
        """(step offset, lane offset) of each candidate, in the order they are tried."""
        ahead = [(h, 0) for h in range(1, self.lookahead + 1)]
        aside = [((pair % self.lookahead) + 1, (pair + 1) * (1 if i % 2 == 0 else -1))
                 for i, pair in ((i, i // 2) for i in range(self.lookaside))]
        return tuple(sorted(ahead + aside))

    def arrays(self, lanes: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The kernels' view: candidates' step and lane offsets, and the slot order, int64
        each."""
        candidates = self.candidates()
        return (np.array([c[0] for c in candidates], dtype=np.int64),
                np.array([c[1] for c in candidates], dtype=np.int64),
                np.array(self.slot_order(lanes), dtype=np.int64))

    def word_tables(self, lanes: int) -> tuple[np.uint64, np.ndarray, np.ndarray]:
        """The bit-mask kernels' view (``lanes`` <= 64): the mask of all lanes; the source bit
        of each slot's candidates, uint64 (lanes, candidates); the source bits of each slot's
        candidates h steps ahead, uint64 (lookahead, lanes)."""
        dts, dls, _ = self.arrays(lanes)
        source = (np.arange(lanes)[:, None] + dls[None, :]) % lanes
        bits = np.left_shift(np.uint64(1), source.astype(np.uint64))
        near = np.zeros((self.lookahead, lanes), dtype=np.uint64)
        for c, h in enumerate(dts):
            near[h - 1] |= bits[:, c]
        full = np.uint64((1 << lanes) - 1) if lanes < 64 else np.uint64(2**64 - 1)
        return full, np.ascontiguousarray(bits), near

    def slot_order(self, lanes: int) -> tuple[int, ...]:
        """The order the empty slots of a step are filled: rounds of lanes ``lookaside``
        apart, so that one round's candidates do not overlap."""
        stride = max(self.lookaside, 1)
        order: list[int] = []
        for start in range(lanes):
            if start in order:
                continue
            lane = start
            while lane < lanes and (lane == start or lane < lanes - stride + start):
                order.append(lane)
                lane += stride
        return tuple(order)


@dataclass(frozen=True)
class ScheduledSteps:
    """Cycles of each unit's fixed and live paths, per stage chunk (int64 (U, chunks)), and
    the lanes (MACs) they issue (int64 (U,))."""

    fixed: np.ndarray
    live: np.ndarray
    fixed_issued: np.ndarray
    live_issued: np.ndarray


def scheduled_steps(scheduler: LaneScheduler, bits: np.ndarray, size: np.ndarray,
                    path: np.ndarray) -> ScheduledSteps:
    """:class:`ScheduledSteps` of units whose steps s have effectual lanes ``bits[u, s]``
    (bool (U, S, L)), ``size[u, s]`` lanes and ``path[u, s]`` (0 fixed, 1 live, -1 none), the
    scheduler seeing its window of steps at a time."""
    dts, dls, order = scheduler.arrays(bits.shape[2])
    fixed, live, fixed_issued, live_issued = lane_scheduled_chunks(
        np.ascontiguousarray(bits, dtype=np.uint8), np.ascontiguousarray(size, dtype=np.int64),
        np.ascontiguousarray(path, dtype=np.int8), scheduler.window, scheduler.lookahead, dts,
        dls, order)
    return ScheduledSteps(fixed, live, fixed_issued, live_issued)

