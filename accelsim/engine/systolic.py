"""Closed-form compute cycles of a systolic array, matching SCALE-Sim v3.0.0.

All cycle counts are in clock cycles of the array; all sizes are element counts.

Notation for one GEMM ``out[sr x sc] = a[sr x t] . w[t x sc]``:

* ``sr``: output rows (for a conv: output pixels Ho * Wo of one image),
* ``t``: reduction length (for a conv: Kh * Kw * Cin),
* ``sc``: output columns (for a conv: number of filters Cout),
* ``rows`` x ``cols``: PE array height x width (SCALE-Sim ``ArrayHeight`` x ``ArrayWidth``).

How SCALE-Sim counts cycles (derived from reading its v3.0.0 code, re-expressed here)
-------------------------------------------------------------------------------------
Each dataflow pins two GEMM dimensions to the array (one to the PE rows, one to the PE
columns) and streams the third through it in time:

==========  ===============  ===============  =================
dataflow    on PE rows       on PE columns    streamed (time)
==========  ===============  ===============  =================
``ws``      t                sc               sr
``os``      sr               sc               t
``is``      t                sr               sc
==========  ===============  ===============  =================

A pinned dimension longer than the array is cut into folds: the GEMM needs
``ceil(on_rows / rows) * ceil(on_cols / cols)`` folds, run one after another with no
overlap. Every fold costs the same whatever part of the array it uses:

* ``os``: ``stream - 1`` cycles until the first product is complete, then the ``rows``
  finished output rows leave the array, plus ``cols - 1`` cycles of skew across the
  columns: ``rows + cols + stream - 2``.
* ``ws`` and ``is``: ``rows`` cycles to load the stationary operand, ``rows - 1`` more
  for the first input to reach the bottom row, ``stream`` cycles of streaming and
  ``cols - 1`` of skew across the columns: ``2 * rows + cols + stream - 2``.

SCALE-Sim walks these per-cycle demand lines and reports as ``Total Cycles`` the index of
the last one (counted from 0), so with no memory stalls::

    total = folds * cycles_per_fold - 1

(The one case where this is 0, an os GEMM of 1 x 1 x 1 on a 1 x 1 array, makes SCALE-Sim
divide by zero; here it simply returns 0.)

N:M weight sparsity (``[sparsity] SparsitySupport = true``; the topology's ``Sparsity``
column gives N:M per layer) shortens only the reduction dimension ``t``:

* layer-wise mode (``OptimizedMapping = false``): the weights of every column keep the
  first ``n`` of each group of ``m`` reduction elements, and the matching input columns
  are dropped, so ``t`` becomes ``(t // m) * n + min(t % m, n)``. Works with ws, os and is.
* row-wise mode (``OptimizedMapping = true``, ws only): the topology's N:M is ignored for
  timing; the weights are padded to a multiple of ``2 * block_size`` rows and packed to
  half, so ``t`` becomes ``ceil(t / (2 * block_size)) * block_size``. SCALE-Sim requires
  ``2 <= block_size <= rows`` and ``2 * rows`` divisible by ``block_size``.
* ``SparseRep`` (csr, csc, ellpack_block) and ``RandomNumberGeneratorSeed`` change only
  SCALE-Sim's storage report, never its cycles.
"""

from __future__ import annotations

DATAFLOWS: tuple[str, ...] = ("ws", "os", "is")
"""Dataflows SCALE-Sim models: weight-, output- and input-stationary."""


def _check_positive(**values: int) -> None:
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")


def _check_dataflow(dataflow: str) -> None:
    if dataflow not in DATAFLOWS:
        raise ValueError(f"dataflow must be one of {DATAFLOWS}, got {dataflow!r}")


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def folds(sr: int, t: int, sc: int, rows: int, cols: int, dataflow: str) -> tuple[int, int]:
    """Number of folds along the PE rows and along the PE columns.

    Args:
        sr, t, sc: GEMM sizes (see module docstring), elements.
        rows, cols: PE array height and width.
        dataflow: ``'ws'``, ``'os'`` or ``'is'``.

    Returns:
        ``(row_folds, col_folds)``; the GEMM runs ``row_folds * col_folds`` folds.
    """
    _check_positive(sr=sr, t=t, sc=sc, rows=rows, cols=cols)
    _check_dataflow(dataflow)
    on_rows, on_cols = {"ws": (t, sc), "os": (sr, sc), "is": (t, sr)}[dataflow]
    return _ceil_div(on_rows, rows), _ceil_div(on_cols, cols)


def cycles_per_fold(sr: int, t: int, sc: int, rows: int, cols: int, dataflow: str) -> int:
    """Cycles one fold occupies the array (fill, stream and drain), in cycles."""
    _check_positive(sr=sr, t=t, sc=sc, rows=rows, cols=cols)
    _check_dataflow(dataflow)
    if dataflow == "os":
        return rows + cols + t - 2
    stream = sr if dataflow == "ws" else sc
    return 2 * rows + cols + stream - 2


def cycles_dense_systolic(sr: int, t: int, sc: int, rows: int, cols: int, dataflow: str) -> int:
    """Compute cycles of a dense GEMM ``[sr x t] . [t x sc]`` on a ``rows x cols`` array.

    Equals SCALE-Sim v3.0.0's ``Total Cycles`` with no memory stalls:
    ``row_folds * col_folds * cycles_per_fold - 1`` (see module docstring).

    Args:
        sr: output rows (output pixels), elements.
        t: reduction length (Kh * Kw * Cin), elements.
        sc: output columns (filters), elements.
        rows, cols: PE array height and width, PEs.
        dataflow: ``'ws'``, ``'os'`` or ``'is'``.

    Returns:
        Compute cycles.
    """
    row_folds, col_folds = folds(sr, t, sc, rows, cols, dataflow)
    return row_folds * col_folds * cycles_per_fold(sr, t, sc, rows, cols, dataflow) - 1


def nm_reduction_length(t: int, n: int, m: int) -> int:
    """Reduction length left after SCALE-Sim's layer-wise N:M packing, in elements.

    Of each group of ``m`` consecutive reduction elements the first ``n`` stay; a last,
    partial group keeps at most ``n``: ``(t // m) * n + min(t % m, n)``.
    """
    _check_positive(t=t, n=n, m=m)
    if n > m:
        raise ValueError(f"N:M sparsity needs n <= m, got {n}:{m}")
    return (t // m) * n + min(t % m, n)


def rowwise_reduction_length(t: int, block_size: int) -> int:
    """Reduction length after SCALE-Sim's row-wise (optimized mapping) packing, in elements.

    The weight rows are padded to a multiple of ``2 * block_size`` and packed to half:
    ``ceil(t / (2 * block_size)) * block_size``.
    """
    _check_positive(t=t, block_size=block_size)
    return _ceil_div(t, 2 * block_size) * block_size


def cycles_nm_systolic(
    sr: int,
    t: int,
    sc: int,
    rows: int,
    cols: int,
    dataflow: str,
    n: int,
    m: int,
    optimized_mapping: bool = False,
    block_size: int = 4,
) -> int:
    """Compute cycles of a GEMM with N:M sparse weights, as SCALE-Sim v3.0.0 models it.

    Models ``[sparsity] SparsitySupport = true``. The fold structure and per-fold cost are
    those of :func:`cycles_dense_systolic`; only the reduction length shrinks.

    Args:
        sr, t, sc: dense GEMM sizes (see :func:`cycles_dense_systolic`), elements.
        rows, cols: PE array height and width, PEs.
        dataflow: ``'ws'``, ``'os'`` or ``'is'`` (only ``'ws'`` with ``optimized_mapping``).
        n, m: the layer's N:M ratio (``n`` kept of every ``m``); ``1:1`` is dense.
        optimized_mapping: SCALE-Sim's ``OptimizedMapping`` (row-wise sparsity). SCALE-Sim's
            default is False. When True, ``n`` and ``m`` do not affect the cycles.
        block_size: SCALE-Sim's ``BlockSize`` (default 4), used only with
            ``optimized_mapping``.

    Returns:
        Compute cycles.

    Raises:
        ValueError: bad sizes, ``n > m``, a dataflow SCALE-Sim cannot run in this sparse
            mode (os/is with ``optimized_mapping``), or a ``block_size`` it cannot run.
    """
    _check_positive(sr=sr, t=t, sc=sc, rows=rows, cols=cols, n=n, m=m, block_size=block_size)
    _check_dataflow(dataflow)
    if n > m:
        raise ValueError(f"N:M sparsity needs n <= m, got {n}:{m}")
    if optimized_mapping:
        if dataflow != "ws":
            raise ValueError(
                f"SCALE-Sim v3 supports row-wise sparsity (optimized mapping) only with the "
                f"'ws' dataflow, got {dataflow!r}"
            )
        if not 2 <= block_size <= rows or (2 * rows) % block_size != 0:
            raise ValueError(
                f"SCALE-Sim needs 2 <= block_size <= rows and 2 * rows divisible by block_size, "
                f"got block_size={block_size}, rows={rows}"
            )
        t_packed = rowwise_reduction_length(t, block_size)
    else:
        t_packed = nm_reduction_length(t, n, m)
    return cycles_dense_systolic(sr, t_packed, sc, rows, cols, dataflow)
