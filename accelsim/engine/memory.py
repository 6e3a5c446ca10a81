"""DRAM traffic, global-buffer accesses and memory-bound cycles of one training-phase job.

Tensors of a phase (``A . B -> O`` in the GEMM view of :mod:`accelsim.network`):

======  ====================  ====================  ==========================
phase   A (streamed rows)     B                     O (written)
======  ====================  ====================  ==========================
fw      X  activations        W  weights            Y  activations
bd      dY gradients          W  weights            dX gradients
wg      X  activations (saved dY gradients          dW gradients
        in FW, re-read)
======  ====================  ====================  ==========================

DRAM holds every tensor between phases (activations written by FW are re-read by BD/WG). Sizes are
tensor sizes (``N*C*H*W`` elements), not im2col sizes: the buffer builds im2col windows on chip.

Tiling policy (documented in ``docs/model.md``): if A, B and O fit in the global buffer together,
each moves once. Otherwise half the buffer holds a stationary chunk and the other half the streamed,
double-buffered tiles, and the policy picks the cheapest of three loop orders:

- B-stationary: B split into ``nB = ceil(B / (cap/2))`` column chunks; A is re-read per chunk.
- A-stationary: A split into ``nA`` row chunks; B is re-read per chunk.
- O-stationary: O (partial sums, accumulator width) split into ``nO`` tiles arranged as
  ``r x c`` (r*c >= nO, the cheapest such split); A is re-read c times and B r times.

O is written once in every order (chunks cover whole output rows or columns, or complete
reductions in O-stationary order).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

from accelsim.config import HardwareConfig
from accelsim.engine.pe_array import phase_gemm
from accelsim.network import Layer


@dataclass(frozen=True)
class PhaseTensors:
    """Sizes (elements) and traffic classes of a phase's operands."""

    a_elems: int
    b_elems: int
    o_elems: int
    a_class: str
    b_class: str
    o_class: str


def phase_tensors(layer: Layer, phase: str) -> PhaseTensors:
    """The three tensors of ``phase`` with their element counts and traffic classes."""
    x, w, y = layer.input_count, layer.weight_count, layer.output_count
    if phase == "fw":
        return PhaseTensors(x, w, y, "activations", "weights", "activations")
    if phase == "bd":
        return PhaseTensors(y, w, x, "gradients", "weights", "gradients")
    if phase == "wg":
        return PhaseTensors(x, y, w, "activations", "gradients", "gradients")
    raise ValueError(f"unknown phase {phase!r}")


@dataclass(frozen=True)
class Tiling:
    """How many times each operand crosses the DRAM interface."""

    order: str
    a_reads: int
    b_reads: int
    o_writes: int = 1


@lru_cache(maxsize=65536)
def choose_tiling(a_bytes: float, b_bytes: float, o_bytes: float, capacity_bytes: float) -> Tiling:
    """The cheapest loop order for operands of these sizes (see the module docstring; cached:
    a replay asks for the same few sizes at every step)."""
    if a_bytes + b_bytes + o_bytes <= capacity_bytes:
        return Tiling("resident", 1, 1)
    half = capacity_bytes / 2
    n_b = max(1, math.ceil(b_bytes / half))
    n_a = max(1, math.ceil(a_bytes / half))
    n_o = max(1, math.ceil(o_bytes / half))
    candidates = [
        (b_bytes + n_b * a_bytes, Tiling("b_stationary", n_b, 1)),
        (a_bytes + n_a * b_bytes, Tiling("a_stationary", 1, n_a)),
    ]
    # Only splits (c, ceil(nO/c)) and (ceil(nO/r), r) with c, r <= sqrt(nO) can be optimal.
    for k in range(1, math.isqrt(n_o) + 2):
        for c, r in ((k, math.ceil(n_o / k)), (math.ceil(n_o / k), k)):
            candidates.append((c * a_bytes + r * b_bytes, Tiling("o_stationary", c, r)))
    return min(candidates, key=lambda item: item[0])[1]


@dataclass(frozen=True)
class MemoryResult:
    """DRAM traffic (bytes) by tensor class, global-buffer accesses (bits) and the operand bits
    the array's register files take in (``rf_fill_bits``) of one job."""

    tiling: str
    activations_bytes: float
    weights_bytes: float
    gradients_bytes: float
    indices_bytes: float
    gb_read_bits: float
    gb_write_bits: float
    rf_fill_bits: float

    @property
    def dram_bytes(self) -> float:
        """All DRAM traffic of the job."""
        return self.activations_bytes + self.weights_bytes + self.gradients_bytes + \
            self.indices_bytes


@dataclass(frozen=True)
class OperandWords:
    """Global-buffer words of one GEMM (all groups) moved to and from the array: A and B
    operand reads, partial sums read back (accumulator words) and output writes (accumulator
    words)."""

    a_reads: int
    b_reads: int
    psum_reads: int
    writes: int


def gb_operand_reads(sr: int, t: int, sc: int, count: int, hw: HardwareConfig,
                     tile_columns: int | None = None) -> OperandWords:
    """Global-buffer words moved to/from the array for one GEMM (all groups).

    - ws: B loaded once; A streamed once per column fold; psums spill per row fold.
    - is: A loaded once; B streamed once per column fold; psums spill per row fold.
    - os: A re-read per column fold, B per row fold; outputs written once.
    - tensor (staged operands, docs/sparse-model.md): A broadcast along PE rows once per column
      tile (``tile_columns`` outputs wide: cols*vector_width, or cols when a PE's lanes reduce
      one output); B broadcast down PE columns once per pass of ``sync_tiles`` row tiles, whose
      queued units all reuse it; outputs written once.
    """
    pe = hw.pe_array
    rows, cols = pe.rows, pe.cols
    if pe.dataflow == "ws":
        a, b = sr * t * math.ceil(sc / cols), t * sc
        folds = math.ceil(t / rows)
        psum_reads, writes = sr * sc * (folds - 1), sr * sc * folds
    elif pe.dataflow == "is":
        a, b = sr * t, t * sc * math.ceil(sr / cols)
        folds = math.ceil(t / rows)
        psum_reads, writes = sr * sc * (folds - 1), sr * sc * folds
    elif pe.dataflow == "os":
        a, b = sr * t * math.ceil(sc / cols), t * sc * math.ceil(sr / rows)
        psum_reads, writes = 0, sr * sc
    else:
        a = sr * t * math.ceil(sc / (tile_columns or cols * pe.vector_width))
        b = t * sc * math.ceil(sr / (rows * pe.sync_tiles))
        psum_reads, writes = 0, sr * sc
    return OperandWords(a * count, b * count, psum_reads * count, writes * count)


def memory_plan(layer: Layer, phase: str, hw: HardwareConfig, *, weight_density: float = 1.0,
                dw_density: float = 1.0, index_read_bits: float = 0.0,
                index_write_bits: float = 0.0,
                gated_forward: GatedForward | None = None) -> MemoryResult:
    """DRAM traffic, global-buffer accesses and register-file fills of one layer/phase job.

    Sparse jobs pass: ``weight_density``, the fraction of weight values stored (compressed
    weights, read in FW and BD, from DRAM and from the buffer into the array); ``dw_density``,
    the fraction of weight gradients written by WG; and index bits read and written (gate and
    weight indices, counted as ``indices`` traffic). Operands are staged into the PEs whether
    or not a unit's work is then skipped (docs/sparse-model.md, "Operand delivery"), so what a
    job's masks change here is only what is stored compressed. ``gated_forward``: FW of a gated
    layer with a base path, whose gate needs a sample's whole base output before it gates any
    output (:func:`gate_extra`). Defaults give the dense job.
    """
    tensors = phase_tensors(layer, phase)
    word_bytes = hw.operand_bits / 8
    a_bytes = tensors.a_elems * word_bytes
    b_bytes = tensors.b_elems * word_bytes
    o_bytes = tensors.o_elems * word_bytes
    b_stored = weight_density if phase in ("fw", "bd") else 1.0
    b_bytes *= b_stored
    if phase == "wg":
        o_bytes *= dw_density
    index_bytes = (index_read_bits + index_write_bits) / 8
    capacity = hw.buffers.global_kib * 1024
    tiling = choose_tiling(a_bytes, b_bytes, o_bytes * hw.accumulator_bits / hw.operand_bits,
                           capacity)
    by_class = {"activations": 0.0, "weights": 0.0, "gradients": 0.0}
    by_class[tensors.a_class] += a_bytes * tiling.a_reads
    by_class[tensors.b_class] += b_bytes * tiling.b_reads
    by_class[tensors.o_class] += o_bytes * tiling.o_writes
    dram_in = a_bytes * tiling.a_reads + b_bytes * tiling.b_reads + index_read_bits / 8
    dram_out = o_bytes * tiling.o_writes + index_write_bits / 8

    pe = hw.pe_array
    gemm = phase_gemm(layer, phase, pe)
    words = gb_operand_reads(gemm.sr, gemm.t, gemm.sc, gemm.count, hw,
                             pe.cols if pe.adder_tree(phase) else None)
    acc, op = hw.accumulator_bits, hw.operand_bits
    a_bits, b_bits = words.a_reads * op, words.b_reads * b_stored * op
    held_bits = 0.0  # outputs kept in the buffer until the gate is known (written, read back)
    if gated_forward is not None and phase == "fw":
        extra = gate_extra(layer, words.a_reads, hw, gated_forward)
        a_bits += extra.restaged_bits
        held_bits = extra.held_bits
        by_class["activations"] += extra.dram_bytes
        dram_in += extra.dram_bytes / 2
        dram_out += extra.dram_bytes / 2
    # Reads feed the array and write results back to DRAM; writes take DRAM fills and results.
    return MemoryResult(
        tiling=tiling.order,
        activations_bytes=by_class["activations"],
        weights_bytes=by_class["weights"],
        gradients_bytes=by_class["gradients"],
        indices_bytes=index_bytes,
        gb_read_bits=a_bits + b_bits + words.psum_reads * acc + held_bits + dram_out * 8,
        gb_write_bits=words.writes * acc + held_bits + dram_in * 8,
        rf_fill_bits=register_fills(a_bits, b_bits, hw),
    )


def register_fills(a_bits: float, b_bits: float, hw: HardwareConfig) -> float:
    """Operand bits written into PE register files for ``a_bits`` and ``b_bits`` read from the
    buffer: on the tensor dataflow every PE an operand is broadcast to stages it (A along a
    PE row: ``cols`` PEs, B down a PE column: ``rows`` PEs); on systolic dataflows a word
    enters the array once (its hops between PEs are the register reads of
    ``pe_array.operand_reads_per_mac``)."""
    pe = hw.pe_array
    if pe.dataflow == "tensor":
        return a_bits * pe.cols + b_bits * pe.rows
    return a_bits + b_bits


@dataclass(frozen=True)
class GatedForward:
    """FW of a gated layer with a base path: ``groups`` G chunks, the input chunk each output
    chunk takes as its base path (``base_chunks``, this branch), and whether the gate's
    straight-through gradient makes FW compute the conditional path everywhere
    (``dense_conditional``)."""

    groups: int
    base_chunks: tuple[int, ...]
    dense_conditional: bool


@dataclass(frozen=True)
class GateExtra:
    """What computing the gate adds to a gated FW: A operand bits staged again (a second pass),
    bits held in the buffer until the gate is known (written once and read once) and, when a
    sample's held outputs do not fit in half the buffer, their round trip through DRAM (bytes,
    written and read)."""

    restaged_bits: float
    held_bits: float
    dram_bytes: float


def gate_extra(layer: Layer, a_words: int, hw: HardwareConfig,
               gated: GatedForward) -> GateExtra:
    """The memory cost of FW's gate: it standardises the base output Y_b of a (sample, channel)
    over Ho x Wo, so a sample's whole Y_b must exist before any of its outputs is gated.

    A masked gate gradient lets FW skip closed conditional outputs, so FW runs two passes: the
    base pass stages the base input chunks of each output-column tile's output chunks, the
    conditional pass their conditional chunks, (|union of base| + |union of conditional| - G)
    / G of A more than one pass; Y_b is held between them. A straight-through gradient computes
    the conditional path everywhere, so one pass keeps both partial sums, Y_b and Y_c, until
    the gate is known. Held outputs are accumulator words; they go to DRAM and back when one
    sample's (Cout x Ho x Wo each) do not fit in half the global buffer.
    """
    pe, acc = hw.pe_array, hw.accumulator_bits
    held_maps = 2 if gated.dense_conditional else 1
    restaged = 0.0
    if not gated.dense_conditional:
        f, g = layer.cout, gated.groups
        tree = pe.adder_tree("fw")  # one output per PE
        width = pe.cols * pe.vector_width if pe.dataflow == "tensor" and not tree else pe.cols
        width = f if pe.dataflow == "is" else width
        tiles = range(0, f, width)
        extra = 0.0
        for start in tiles:
            chunks = set(range(start // (f // g), (min(start + width, f) - 1) // (f // g) + 1))
            bases = {gated.base_chunks[c] for c in chunks}
            conditional = set().union(*({k for k in range(g) if k != gated.base_chunks[c]}
                                        for c in chunks))
            extra += (len(bases) + len(conditional) - g) / g
        restaged = a_words * hw.operand_bits * extra / len(tiles)
    held = held_maps * layer.output_count * acc
    per_sample_bytes = held_maps * layer.cout * layer.h_out * layer.w_out * acc / 8
    spills = per_sample_bytes > hw.buffers.global_kib * 1024 / 2
    return GateExtra(restaged, held, 2 * held / 8 if spills else 0.0)


def memory_dense(layer: Layer, phase: str, hw: HardwareConfig) -> MemoryResult:
    """Dense DRAM traffic and global-buffer accesses of one layer/phase job."""
    return memory_plan(layer, phase, hw)


def cycles_dram(dram_bytes: float, hw: HardwareConfig) -> int:
    """Cycles to move ``dram_bytes`` at the DRAM bandwidth."""
    return math.ceil(dram_bytes / hw.dram_bytes_per_cycle)


def cycles_buffer(gb_read_bits: float, gb_write_bits: float, hw: HardwareConfig) -> int:
    """Cycles the global buffer needs at ``words_per_cycle`` operand words per cycle."""
    words = (gb_read_bits + gb_write_bits) / hw.operand_bits
    return math.ceil(words / hw.buffers.words_per_cycle)


def combine_cycles(compute: int, buffer: int, dram: int, double_buffering: bool) -> int:
    """Job cycles: the slowest cause with double buffering, else on-chip time plus DRAM time."""
    if double_buffering:
        return max(compute, buffer, dram)
    return max(compute, buffer) + dram
