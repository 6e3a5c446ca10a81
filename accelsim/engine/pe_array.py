"""Dense compute cycles of one GEMM on the PE array, for every dataflow.

Systolic dataflows (ws, os, is) use SCALE-Sim v3's timing (:mod:`accelsim.engine.systolic`).

The ``tensor`` dataflow models vector PEs (tensor cores): each of the rows x cols PEs owns one
output row (an output pixel in FW/BD, a reduction-side row in WG) and ``vector_width``
consecutive output columns, computed by ``vector_width`` MAC lanes in lock-step from one broadcast
operand per cycle. A tile of ``rows`` output rows x ``cols * vector_width`` output columns
accumulates over the whole reduction length ``t``, one step per cycle; tiles run back to back
(accumulators are double buffered), and the pipeline latency (operand broadcast + adder tree +
writeback) is paid once per GEMM:

    cycles = ceil(sr / rows) * ceil(sc / (cols * vector_width)) * t + pipeline_latency

Lane mappings change that (:func:`phase_gemm`, :func:`dense_cycles`): WG with ``wg_lanes:
input_channels`` runs transposed, and FW or BD with ``fw_lanes`` / ``bd_lanes: reduction``
has one output per PE reduced vector_width steps a cycle.
"""

from __future__ import annotations

import math

from accelsim.config import SYSTOLIC_DATAFLOWS, PEArrayConfig
from accelsim.engine.systolic import (
    cycles_dense_systolic,
    cycles_nm_systolic,
    nm_reduction_length,
)
from accelsim.network import Gemm, Layer


def phase_gemm(layer: Layer, phase: str, pe: PEArrayConfig) -> Gemm:
    """The GEMM ``pe`` computes for ``phase`` of ``layer``: the layer's (``Layer.gemm``), except
    WG with ``wg_lanes: input_channels``, computed transposed as dW^T = dY^T X (rows over output
    channels, lanes over the reduction columns k)."""
    gemm = layer.gemm(phase)
    if phase == "wg" and pe.wg_lanes == "input_channels":
        return Gemm(sr=gemm.sc, t=gemm.t, sc=gemm.sr, count=gemm.count)
    return gemm


def tensor_tiles(sr: int, sc: int, rows: int, cols: int, vector_width: int) -> int:
    """Number of output tiles of the tensor dataflow."""
    return math.ceil(sr / rows) * math.ceil(sc / (cols * vector_width))


def cycles_dense_tensor(sr: int, t: int, sc: int, rows: int, cols: int, vector_width: int,
                        pipeline_latency: int) -> int:
    """Cycles of one GEMM [sr x t].[t x sc] on the tensor dataflow (see module docstring)."""
    return tensor_tiles(sr, sc, rows, cols, vector_width) * t + pipeline_latency


def cycles_gemm(gemm: Gemm, pe: PEArrayConfig, nm: tuple[int, int] | None = None) -> int:
    """Compute cycles of ``gemm`` (all ``count`` groups, run one after another).

    ``nm`` = (N, M) applies SCALE-Sim v3's N:M weight-sparse timing (systolic dataflows only; the
    caller checks that the array supports it).
    """
    if pe.dataflow in SYSTOLIC_DATAFLOWS:
        if nm is not None:
            one = cycles_nm_systolic(gemm.sr, gemm.t, gemm.sc, pe.rows, pe.cols, pe.dataflow,
                                     n=nm[0], m=nm[1])
        else:
            one = cycles_dense_systolic(gemm.sr, gemm.t, gemm.sc, pe.rows, pe.cols, pe.dataflow)
    else:
        t = gemm.t if nm is None else nm_reduction_length(gemm.t, *nm)
        one = cycles_dense_tensor(gemm.sr, t, gemm.sc, pe.rows, pe.cols, pe.vector_width,
                                  pe.pipeline_latency)
    return one * gemm.count


def dense_cycles(layer: Layer, phase: str, pe: PEArrayConfig) -> int:
    """Dense compute cycles of ``phase`` of ``layer`` on ``pe`` in its lane mapping: FW or BD
    with reduction lanes has one output per PE (tiles of rows x cols outputs) and takes
    ceil(t / vector_width) steps per tile; otherwise :func:`cycles_gemm` of :func:`phase_gemm`."""
    gemm = phase_gemm(layer, phase, pe)
    if pe.adder_tree(phase):
        steps = -(-gemm.t // pe.vector_width)
        return cycles_dense_tensor(gemm.sr, steps, gemm.sc, pe.rows, pe.cols, 1,
                                   pe.pipeline_latency) * gemm.count
    return cycles_gemm(gemm, pe)
