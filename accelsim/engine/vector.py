"""Non-MAC work of a training step on the vector unit: passes over tensors, priced per job.

A layer's forward output goes through its ``post_ops`` (BN, residual add, ReLU, pooling, fanout:
:data:`accelsim.network.POST_OPS`); backward runs them in reverse; a gate with a base path is
computed from the base output in FW and differentiated in backward; the optimizer updates each
layer's parameters once per step, and a momentum encoder's parameters follow the online ones.
Each of these is a list of :class:`VectorPass` es: ``ops_per_element`` operations over
``elements`` elements, reading and writing whole tensors. The rules, with their formulas, are in
``docs/model.md`` ("Non-MAC work"):

- A pass takes ``ceil(elements x ops / vector_unit.lanes)`` cycles of arithmetic, or longer when
  its DRAM or global-buffer traffic is slower (the same rule as a MAC job:
  :func:`~accelsim.engine.memory.combine_cycles`). Passes run one after the other: each needs
  the whole result of the one before (BN's statistics before it normalises).
- Training keeps activations in DRAM between FW and backward (they do not fit on chip), so a
  pass reads and writes DRAM; DRAM data passes through the global buffer both ways. The gate's
  FW arithmetic reads the base output the buffer holds for it (``gate_extra``) while the array
  computes on: it hides under the job's MACs like streamed statistics.
- ``vector_unit.fused``: BN's statistics run on the array's output stream, so they cost no
  memory traffic and hide under the job's MAC cycles (a job whose MACs finish sooner than its
  streamed work waits for it: :meth:`NonMacWork.cycles`); normalise, add, ReLU and pooling
  share one pass; backward merges ReLU's, pooling's and a fanout's backward, and the gate's
  first gradient pass, into BN's two passes.
- What FW stores for backward (``stash_bytes``): :func:`stash_bytes`.

Non-MAC work does not depend on the masks (gated-off outputs still go through BN and ReLU),
except through the MAC cycles streamed work hides under, the weight mask's density the
optimizer updates with ``vector_unit.sparse_updates``, and the gate's open share of Y_c a
masked gate gradient stores compressed (``NonMacDuties.yc_density``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from accelsim.config import PRECISION_BITS, VECTOR_OP, HardwareConfig
from accelsim.engine.energy import EnergyRates
from accelsim.engine.memory import combine_cycles, cycles_buffer, cycles_dram
from accelsim.errors import InputError
from accelsim.network import OPTIMIZERS, Layer

DEFAULT_OPTIMIZER = "sgd"

# Operations per element (one add, multiply, fused multiply-add, compare or select each).
BN_STATISTICS_OPS = 2     # sum x and sum x^2 (a multiply-add)
BN_NORMALISE_OPS = 1      # x * a + b with a = gamma / sigma, b = beta - mean * a per channel
BN_REDUCE_OPS = 3         # backward pass 1: x_hat = (x - mean) / sigma, sum dz, sum dz * x_hat
BN_GRADIENT_OPS = 3       # backward pass 2: x_hat again, dx = a * dz - b * x_hat - c
ELEMENTWISE_OPS = 1       # ReLU (max, or select by mask backward), add, one pooling step
MAXPOOL_OPS = 8           # max-pool FW, per pooled output: 8 compares over a 3x3 window
MAXPOOL_INDEX_BYTES = 1   # the window position of each pooled maximum, kept for backward
GATE_STANDARDISE_OPS = 4  # gate FW, per gated value: mean, variance, (x - mean) / sigma, compare
GATE_GROUP_OPS = 1        # gate FW with groups (SCDG): add a group's channels (per element)
GATE_GRADIENT_OPS = 4     # gate backward, per pass of two: dd = dY * Y_c, Y_b = Y - d * Y_c,
#                           then through the sigmoid and the standardisation (as BN's backward)
# Optimizer steps per parameter: operations, and tensors read / written besides the gradient.
OPTIMIZER_OPS = {"sgd": 3, "lars": 5, "adam": 9}
OPTIMIZER_STATES = {"sgd": 1, "lars": 1, "adam": 2}  # momentum; Adam's first and second moment
EMA_OPS = 2               # theta_t = tau * theta_t + (1 - tau) * theta_online


@dataclass(frozen=True)
class VectorPass:
    """One pass of the vector unit: ``ops_per_element`` operations on ``elements`` elements,
    ``read_bytes`` / ``write_bytes`` of DRAM traffic (``on_stream``: fused into the array's
    output, no memory traffic; ``master``: its arithmetic is on master weights, priced
    ``energy.vector_op_<master_precision>`` where the table has it)."""

    what: str
    elements: int
    ops_per_element: float
    read_bytes: float = 0.0
    write_bytes: float = 0.0
    on_stream: bool = False
    master: bool = False  # arithmetic on master weights (vector_unit.master_precision)

    @property
    def ops(self) -> float:
        """Vector operations of the pass."""
        return self.elements * self.ops_per_element


@dataclass(frozen=True)
class NonMacDuties:
    """The non-MAC work one job carries besides its MACs (all off: none).

    ``forward``: the layer's post ops (its FW job); ``backward``: their backward (the layer's
    first backward job on the branch: BD, or WG where BD does not run); ``stash``: FW keeps what
    backward needs (a branch that runs backward); ``gate_group_size`` > 0: the layer's gate has a
    base path (FW computes it, backward differentiates it); ``optimizer``: the optimizer step of
    the layer's parameters (one job per layer and step), of ``update_density`` of its weights
    (``vector_unit.sparse_updates`` with a weight mask; 1: all), summing the ``gradients``
    of the branches that ran WG; ``ema``: a momentum encoder's update; ``yc_density``: the
    share of the gate's conditional output Y_c stored and read back (a masked gate gradient
    with ``dram.compress_sparse`` needs it only where the gate is open; 1: all of it)."""

    forward: bool = False
    backward: bool = False
    stash: bool = False
    gate_group_size: int = 0
    optimizer: str = ""
    ema: bool = False
    update_density: float = 1.0
    gradients: int = 1
    yc_density: float = 1.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.yc_density <= 1.0:
            raise ValueError(f"yc_density must be in [0, 1], got {self.yc_density}")
        if self.gradients < 1:
            raise ValueError(f"gradients must be >= 1, got {self.gradients}")
        if not 0.0 <= self.update_density <= 1.0:
            raise ValueError(f"update_density must be in [0, 1], got {self.update_density}")
        if self.optimizer and self.optimizer not in OPTIMIZERS:
            raise InputError(f"optimizer must be one of {list(OPTIMIZERS)}, got "
                             f"{self.optimizer!r}", field="optimizer")


NO_DUTIES = NonMacDuties()


@dataclass(frozen=True)
class NonMacWork:
    """A job's non-MAC work priced on one hardware config: ``stream_cycles`` of streamed work on the
    array's output stream, ``pass_cycles`` of passes after it, ``ops`` vector operations,
    ``dram_bytes``, its energy by component (pJ: the operations, the global buffer's accesses,
    DRAM; static energy follows the job's time and is added per row) and ``stash_bytes`` FW
    keeps in DRAM for backward."""

    stream_cycles: int = 0
    pass_cycles: int = 0
    ops: float = 0.0
    dram_bytes: float = 0.0
    energy_vector_pj: float = 0.0
    energy_buffer_pj: float = 0.0
    energy_dram_pj: float = 0.0
    stash_bytes: float = 0.0

    @property
    def energy_pj(self) -> float:
        """Energy without static energy (pJ)."""
        return self.energy_vector_pj + self.energy_buffer_pj + self.energy_dram_pj

    def cycles(self, mac_cycles: int) -> int:
        """Cycles the work adds to a job whose MACs take ``mac_cycles``: the passes, plus the
        streamed work where it outlasts the MACs."""
        return self.pass_cycles + max(0, self.stream_cycles - mac_cycles)


NO_WORK = NonMacWork()


def activation_bytes(hw: HardwareConfig) -> float:
    """Bytes of one stored activation or gradient element (``pe_array.precision``)."""
    return hw.operand_bits / 8


def forward_passes(layer: Layer, hw: HardwareConfig) -> list[VectorPass]:
    """The vector passes of the layer's post ops in FW (docs/model.md, "Non-MAC work"). A
    ``fanout`` costs nothing forward: its consumers read the output."""
    ops = tuple(op for op in layer.post_ops if op != "fanout")
    elements, b = layer.output_count, activation_bytes(hw)
    pooled = layer.batch * layer.cout * b if "pool" in ops else 0.0  # one value per channel
    maxpooled = layer.maxpooled_count if "maxpool" in ops else 0
    # the pooled map and its maxima's positions; per element of the layer's output:
    maxpool_written = maxpooled * (b + MAXPOOL_INDEX_BYTES)
    maxpool_ops = MAXPOOL_OPS * maxpooled / elements
    if not ops:
        return []
    if hw.vector_unit.fused:
        passes = []
        if "batchnorm" in ops:
            passes.append(VectorPass("BN statistics", elements, BN_STATISTICS_OPS,
                                     on_stream=True))
        count = (BN_NORMALISE_OPS if "batchnorm" in ops else 0) + maxpool_ops + \
            ELEMENTWISE_OPS * sum(op not in ("batchnorm", "maxpool") for op in ops)
        passes.append(VectorPass(" + ".join(ops), elements, count,
                                 read_bytes=elements * b * (2 if "add" in ops else 1),
                                 write_bytes=elements * b + pooled + maxpool_written))
        return passes
    passes = []
    for op in ops:
        if op == "batchnorm":
            passes.append(VectorPass("BN statistics", elements, BN_STATISTICS_OPS,
                                     read_bytes=elements * b))
            passes.append(VectorPass("BN normalise", elements, BN_NORMALISE_OPS,
                                     read_bytes=elements * b, write_bytes=elements * b))
        elif op == "pool":
            passes.append(VectorPass("pool", elements, ELEMENTWISE_OPS,
                                     read_bytes=elements * b, write_bytes=pooled))
        elif op == "maxpool":
            passes.append(VectorPass("maxpool", elements, maxpool_ops,
                                     read_bytes=elements * b, write_bytes=maxpool_written))
        else:
            passes.append(VectorPass(op, elements, ELEMENTWISE_OPS,
                                     read_bytes=elements * b * (2 if op == "add" else 1),
                                     write_bytes=elements * b))
    return passes


def backward_passes(layer: Layer, hw: HardwareConfig, gate_reduce: bool = False,
                    yc_density: float = 1.0) -> list[VectorPass]:
    """The vector passes of the layer's post ops in backward, from the gradient of their
    output to the gradient of the layer's output (dY). A ``fanout`` first sums the gradients
    of the output's two consumers; ReLU reads its mask from its saved output; pooling
    broadcasts the pooled gradient; an add passes the gradient on to both its inputs (fused,
    BN's gradient pass writes it for the shortcut too). ``gate_reduce``: the gate's first
    gradient pass runs inside BN's gradient pass (fused), reading Y_c besides."""
    ops, elements, b = layer.post_ops, layer.output_count, activation_bytes(hw)
    if not ops:
        return []
    tensor = elements * b
    pooled = layer.batch * layer.cout * b
    # a max-pool's gradient arrives at the pooled size, with the maxima's positions
    maxpooled = layer.maxpooled_count * b if "maxpool" in ops else 0.0
    maxpool_index = layer.maxpooled_count * MAXPOOL_INDEX_BYTES if "maxpool" in ops else 0.0
    fanned = maxpooled if "maxpool" in ops else tensor  # the size where a fanout meets
    if hw.vector_unit.fused:
        # the gradients that arrive (two with a fanout), and ReLU's mask
        arriving = (pooled if "pool" in ops else fanned) + (fanned if "fanout" in ops else 0.0)
        saved = arriving + (tensor if "relu" in ops else 0.0) + maxpool_index
        changing = [op for op in ops if op in ("relu", "maxpool", "pool", "fanout")]
        # one op per element of the layer's output; a fanout after a max-pool sums the pooled
        # map's gradients only
        others = ELEMENTWISE_OPS * sum(fanned / tensor if op == "fanout" else 1.0
                                       for op in changing)
        if "batchnorm" not in ops:  # an add alone hands the arriving gradient on: no pass
            return [VectorPass(" + ".join(reversed(ops)) + " backward", elements, others,
                               read_bytes=saved, write_bytes=tensor)] if changing else []
        gate_ops, gate_reads = (GATE_GRADIENT_OPS, yc_density * tensor) if gate_reduce else (
            0, 0.0)
        # after an add that ReLU, pooling or a fanout follows, the shortcut takes a gradient
        # no stored tensor holds: BN's gradient pass writes it beside dY
        shortcut = tensor if "add" in ops and changing else 0.0
        return [VectorPass("BN backward reduce", elements, BN_REDUCE_OPS + others,
                           read_bytes=saved + tensor),  # and BN's input
                VectorPass("BN backward gradient", elements,
                           BN_GRADIENT_OPS + others + gate_ops,
                           read_bytes=saved + tensor + gate_reads,
                           write_bytes=tensor + shortcut)]
    passes = []
    for op in reversed(ops):
        if op == "fanout":
            passes.append(VectorPass("fanout backward (gradients meet)", elements,
                                     ELEMENTWISE_OPS * fanned / tensor, read_bytes=2 * fanned,
                                     write_bytes=fanned))
        elif op == "maxpool":
            passes.append(VectorPass("maxpool backward", elements, ELEMENTWISE_OPS,
                                     read_bytes=maxpooled + maxpool_index, write_bytes=tensor))
        elif op == "pool":
            passes.append(VectorPass("pool backward", elements, ELEMENTWISE_OPS,
                                     read_bytes=pooled, write_bytes=tensor))
        elif op == "relu":
            passes.append(VectorPass("relu backward", elements, ELEMENTWISE_OPS,
                                     read_bytes=2 * tensor, write_bytes=tensor))
        elif op == "batchnorm":
            passes.append(VectorPass("BN backward reduce", elements, BN_REDUCE_OPS,
                                     read_bytes=2 * tensor))
            passes.append(VectorPass("BN backward gradient", elements, BN_GRADIENT_OPS,
                                     read_bytes=2 * tensor, write_bytes=tensor))
        # an add's backward hands the same gradient to both inputs: no pass
    return passes


def gate_passes(layer: Layer, group_size: int, forward: bool, hw: HardwareConfig, *,
                stash: bool = False, reduce_in_bn: bool = False,
                yc_density: float = 1.0) -> list[VectorPass]:
    """The gate's arithmetic on a layer with a base path. FW: standardise the base output per
    sample and channel and compare (SCDG: on each group's mean, one add per element, then the
    standardisation on one value per group), on the base output the buffer holds while the
    array computes on (streamed: hidden under the job's MACs, fused or not); with ``stash``
    also write the conditional output Y_c the gate's gradient needs.
    Backward: the gate's gradient dL/dd = dY x Y_c back through the sigmoid and the
    standardisation to Y_b (= Y - d x Y_c, recomputed) and tau: two passes, each reading dY, Y
    and Y_c, the second writing the base path's gradient dY_b (which BD and WG read for the
    base path in place of dY); ``reduce_in_bn``: the first runs inside BN's gradient pass
    (:func:`backward_passes`) and is not listed here. ``yc_density`` of Y_c is stored and read
    (its index is the gate's own)."""
    elements, b = layer.output_count, activation_bytes(hw)
    y_c = yc_density * elements * b
    if forward:
        ops = GATE_STANDARDISE_OPS / group_size + (GATE_GROUP_OPS if group_size > 1 else 0)
        passes = [VectorPass("gate standardise + compare", elements, ops, on_stream=True)]
        if stash:
            passes.append(VectorPass("gate: store Y_c", elements, 0.0, write_bytes=y_c))
        return passes
    reduce = [] if reduce_in_bn else [VectorPass("gate gradient reduce", elements,
                                                 GATE_GRADIENT_OPS,
                                                 read_bytes=2 * elements * b + y_c)]
    return [*reduce, VectorPass("gate gradient", elements, GATE_GRADIENT_OPS,
                                read_bytes=2 * elements * b + y_c, write_bytes=elements * b)]


def parameter_count(layer: Layer, weight_density: float = 1.0) -> int:
    """Trained parameters of the layer: its weights (``weight_density`` of them), and BN's
    scale and shift."""
    return round(layer.weight_count * weight_density) + (
        2 * layer.cout if "batchnorm" in layer.post_ops else 0)


def master_bytes(hw: HardwareConfig) -> tuple[float, float]:
    """Bytes of one master weight (``vector_unit.master_precision``) and of its copy at the
    array's precision that an update writes (0 where the two precisions are the same)."""
    master = hw.vector_unit.master_precision
    copy = activation_bytes(hw) if master != hw.pe_array.precision else 0.0
    return PRECISION_BITS[master] / 8, copy


def optimizer_passes(layer: Layer, optimizer: str, hw: HardwareConfig, density: float = 1.0,
                     gradients: int = 1) -> list[VectorPass]:
    """The optimizer step of the layer's parameters (``density`` of its weights): master
    weights and ``state`` tensors read and written in DRAM, the ``gradients`` the branches'
    WG jobs wrote (``pe_array.precision``) read and summed, and a copy of the weights at the
    array's precision written when the master precision differs. LARS first reads weights and
    gradients for the layer's two norms (writing their sum, when there are several, for its
    update, which reads it)."""
    vector, b = hw.vector_unit, activation_bytes(hw)
    params = parameter_count(layer, density)
    master, copy = master_bytes(hw)
    state = PRECISION_BITS[vector.state_precision] / 8 * OPTIMIZER_STATES[optimizer]
    summing = ELEMENTWISE_OPS * (gradients - 1)
    if optimizer == "lars":  # the norms need the summed gradient: it is written for the update
        return [VectorPass("LARS norms", params, 2 + summing,
                           read_bytes=params * (master + gradients * b),
                           write_bytes=params * b if gradients > 1 else 0.0, master=True),
                VectorPass("lars update", params, OPTIMIZER_OPS["lars"] - 2,
                           read_bytes=params * (master + state + b),
                           write_bytes=params * (master + state + copy), master=True)]
    return [VectorPass(f"{optimizer} update", params, OPTIMIZER_OPS[optimizer] + summing,
                       read_bytes=params * (master + state + gradients * b),
                       write_bytes=params * (master + state + copy), master=True)]


def ema_passes(layer: Layer, hw: HardwareConfig) -> list[VectorPass]:
    """A momentum encoder's update of the layer's parameters from the online ones."""
    params = parameter_count(layer)
    master, copy = master_bytes(hw)
    return [VectorPass("momentum encoder update", params, EMA_OPS,
                       read_bytes=2 * params * master, write_bytes=params * (master + copy),
                       master=True)]


def stash_bytes(layer: Layer, duties: NonMacDuties, hw: HardwareConfig) -> float:
    """DRAM bytes FW keeps for backward: the layer's output (BN's input, or the next layer's
    input), its post ops' output (ReLU's mask, the next layer's input; not a projection
    shortcut's, ``role`` downsample, whose BN output only enters the block's add, whose backward
    needs no operand; globally pooled values are not counted), with a max-pool its output (the
    next layer's input) and its maxima's positions, and with a gated base path Y_c."""
    if not duties.stash:
        return 0.0
    kept_output = layer.role != "downsample" and any(
        op in ("batchnorm", "add", "relu") for op in layer.post_ops)
    tensors = 1 + (1 if kept_output else 0) + (duties.yc_density if duties.gate_group_size
                                               else 0)
    maxpooled = layer.maxpooled_count * (activation_bytes(hw) + MAXPOOL_INDEX_BYTES) \
        if "maxpool" in layer.post_ops else 0.0
    return tensors * layer.output_count * activation_bytes(hw) + maxpooled


def job_passes(layer: Layer, duties: NonMacDuties, hw: HardwareConfig) -> list[VectorPass]:
    """Every vector pass a job carries under ``duties``."""
    passes = []
    gated = duties.gate_group_size > 0
    if duties.forward:
        passes += forward_passes(layer, hw)
        if gated:
            passes += gate_passes(layer, duties.gate_group_size, True, hw, stash=duties.stash,
                                  yc_density=duties.yc_density)
    if duties.backward:
        in_bn = gated and hw.vector_unit.fused and "batchnorm" in layer.post_ops
        passes += backward_passes(layer, hw, gate_reduce=in_bn, yc_density=duties.yc_density)
        if gated:
            passes += gate_passes(layer, duties.gate_group_size, False, hw, reduce_in_bn=in_bn,
                                  yc_density=duties.yc_density)
    if duties.optimizer:
        passes += optimizer_passes(layer, duties.optimizer, hw, duties.update_density,
                                   duties.gradients)
    if duties.ema:
        passes += ema_passes(layer, hw)
    return passes


def non_mac_work(layer: Layer, duties: NonMacDuties, hw: HardwareConfig) -> NonMacWork:
    """The job's non-MAC work priced on ``hw`` (none when ``vector_unit.lanes`` is 0)."""
    lanes = hw.vector_unit.lanes
    if not lanes or duties == NO_DUTIES:
        return NO_WORK
    rates = EnergyRates.of(hw)
    op_pj = hw.energy_pj(VECTOR_OP)
    master_key = f"{VECTOR_OP}_{hw.vector_unit.master_precision}"
    master_pj = hw.energy_pj(master_key) if master_key in hw.energy else op_pj
    stream = cycles = 0
    ops = dram = vector_pj = 0.0
    for p in job_passes(layer, duties, hw):
        compute = math.ceil(p.ops / lanes)
        ops += p.ops
        vector_pj += p.ops * (master_pj if p.master else op_pj)
        if p.on_stream:
            stream += compute
            continue
        moved = p.read_bytes + p.write_bytes
        dram += moved
        # The vector unit reads and writes through the buffer, which DRAM data fills and drains.
        cycles += combine_cycles(compute, cycles_buffer(8 * moved, 8 * moved, hw),
                                 cycles_dram(moved, hw), hw.dram.double_buffering)
    return NonMacWork(stream_cycles=stream, pass_cycles=cycles, ops=ops, dram_bytes=dram,
                      energy_vector_pj=vector_pj,
                      energy_buffer_pj=8 * dram * (rates.gb_read + rates.gb_write),
                      energy_dram_pj=8 * dram * rates.dram_bits,
                      stash_bytes=stash_bytes(layer, duties, hw))


def recorded_optimizer(producer: dict) -> str:
    """The optimizer a trace's producer records (``optimizer``, or the recorder's
    ``config.optimizer``), else :data:`DEFAULT_OPTIMIZER`; one accelsim does not know is an
    error."""
    config = producer.get("config")
    field, name = "producer.optimizer", producer.get("optimizer")
    if name is None and isinstance(config, dict) and config.get("optimizer") is not None:
        field, name = "producer.config.optimizer", config["optimizer"]
    if name is None:
        return DEFAULT_OPTIMIZER
    if name not in OPTIMIZERS:
        raise InputError(f"the trace's optimizer {name!r} is not one of {list(OPTIMIZERS)}",
                         field=field)
    return str(name)


def job_duties(phase: str, phases: tuple[str, ...], *, runs_backward: bool,
               gate_group_size: int = 0, optimizer: str = "", gradients: int = 1,
               ema: bool = False) -> NonMacDuties:
    """The duties of a layer's ``phase`` job on a branch that runs ``phases`` (the layer's own:
    BD of the first layer does not run): FW carries the post ops and the stash (when the branch
    runs backward) and ``ema``; the first backward phase the backward of the post ops; WG the
    ``optimizer`` step over ``gradients`` branches' weight gradients (give it on one branch
    only). ``gate_group_size``: gate with a base path."""
    backward = [p for p in phases if p != "fw"]
    first_backward = backward[0] if backward else ""
    return NonMacDuties(
        forward=phase == "fw", backward=phase == first_backward,
        stash=phase == "fw" and runs_backward,
        gate_group_size=gate_group_size if phase in ("fw", first_backward) else 0,
        optimizer=optimizer if phase == "wg" else "",
        gradients=gradients if phase == "wg" and optimizer else 1, ema=ema and phase == "fw")
