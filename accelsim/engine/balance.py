"""The row balancer (``decoder.balance_rows``): a coarse load balancer without a network.

Before each pass the decoder, which knows every row's work from the indices it decodes, assigns
the pass's output rows to PE rows: longest first, each to the PE row with the least work so far
that has room, every PE row keeping the number of rows the static mapping gives it
(:func:`accelsim.kernels.balanced_order`). Operands still arrive by broadcast (a row's A
operand goes down the PE row it was assigned to), so nothing but the order changes, and the
price is one decoded row index per row of every pass in which it moves a row to another PE
row. It is the workload allocation that sparse
training chips do without a distribution network (TSUNAMI, Kim et al., TCAS-I 2022: a random
channel allocator and a weight sparsity balancer; PNPU, Kim et al., SSC-L 2021), here at the
granularity of output rows. The engine reorders the rows of the phase's work matrix, so the
static mapping (position i on queue row i % rows) and every stage rule apply unchanged.
"""

from __future__ import annotations

import numpy as np

from accelsim.engine.schedule import PhaseWork
from accelsim.kernels import balanced_order


def row_order(work: PhaseWork, rows: int, pass_len: int) -> np.ndarray:
    """int64 (R,): the balancer's order of the rows of ``work`` (its rows' work summed over
    the unit columns, in cycles)."""
    per_class = np.bincount(work.classes, minlength=work.counts.shape[1]).astype(np.int64)
    return balanced_order(work.counts.astype(np.int64) @ per_class, rows, pass_len)


def reordered(work: PhaseWork, order: np.ndarray, rows: int, pass_len: int) -> PhaseWork:
    """``work`` with its rows in ``order``; every row of a pass in which some row leaves its
    static PE row decodes one more index (its place)."""
    unit_idx = None if work.unit_idx is None else np.ascontiguousarray(work.unit_idx[order])
    position = np.arange(order.shape[0])
    moved = np.add.reduceat(order % rows != position % rows,
                            np.arange(0, order.shape[0], pass_len)) > 0
    placed = np.repeat(moved, pass_len)[:order.shape[0]]
    return PhaseWork(np.ascontiguousarray(work.counts[order]), work.classes, unit_idx,
                     work.row_idx[order] + placed, work.col_idx, work.lanes)
