"""Hardware configuration: typed frozen dataclasses loaded from YAML, with dotted overrides.

One loader (:func:`load_hardware`) turns a YAML file plus ``--set key=value`` overrides into a
:class:`HardwareConfig`. Every error (unknown key with a did-you-mean, wrong type, out-of-range
value, missing required key, impossible combination) is collected with its dotted key and the
source that set it (file or ``--set``) into one :class:`~accelsim.errors.InputError` whose message
is one line.

Each field's metadata holds its unit, its allowed range or choices and a one-line description; the
same metadata drives validation, ``accelsim config keys`` and ``docs/config.md``.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import math
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from accelsim.errors import InputError
from accelsim.inputs import load_yaml_mapping, parse_yaml
from accelsim.schema import (
    FrozenMap,
    Problems,
    abbreviate,
    build,
    param,
    plain,
    unknown_key_message,
)

CONFIG_KIND = "hardware"
CONFIG_MAJOR_VERSION = 1

PRECISION_BITS: dict[str, int] = {"int8": 8, "fp8": 8, "bf16": 16, "fp16": 16, "fp32": 32}
DATAFLOWS = ("ws", "os", "is", "tensor")
SYSTOLIC_DATAFLOWS = ("ws", "os", "is")
WG_LANES: tuple[str, ...] = ("output_channels", "input_channels")  # pe_array.wg_lanes
FW_LANES: tuple[str, ...] = ("output_channels", "reduction")  # pe_array.fw_lanes
INDEX_FORMATS = ("bitmap", "rle", "csr", "coo", "nm", "group_bitmap")
PHASE_NAMES = ("fw", "bd", "wg")
SKIP_GRANULARITIES = ("element", "vector", "pe_row")
BD_WEIGHT_INDEX = ("copy", "free")  # decoder.bd_weight_index
LANE_SCHEDULERS = ("none", "tensordash")  # decoder.lane_scheduler
ENERGY_MAC_PREFIX = "mac_"
REQUIRED_ENERGY_ACTIONS = ("rf_read_per_bit", "rf_write_per_bit", "gb_read_per_bit",
                           "gb_write_per_bit", "index_decode")
COMPACTION_NETWORK = "compaction_network_per_mac"  # energy action needed with decoder.compaction
LANE_SCHEDULER = "lane_scheduler_per_mac"  # energy action needed with decoder.lane_scheduler
VECTOR_OP = "vector_op"  # energy action needed with vector_unit.lanes > 0


@dataclass(frozen=True)
class PEArrayConfig:
    """The MAC array: rows x cols PEs, each with ``vector_width`` MAC lanes."""

    rows: int = param(ge=1, le=4096, unit="PEs", doc="PE rows of the array")
    cols: int = param(ge=1, le=4096, unit="PEs", doc="PE columns of the array")
    dataflow: str = param(choices=DATAFLOWS, doc="ws/os/is systolic (SCALE-Sim timing) or "
                          "tensor (vector PEs, lanes over output columns)")
    precision: str = param(choices=tuple(PRECISION_BITS), doc="operand precision of MACs, "
                           "activations, weights and gradients")
    clock_mhz: float = param(gt=0, le=10000, unit="MHz", doc="clock frequency")
    vector_width: int = param(ge=1, le=256, unit="MAC lanes", default=1,
                              doc="MAC lanes per PE computing in lock-step (1 = classic systolic "
                              "PE); lanes hold consecutive output columns of one output row")
    accumulator_precision: str = param(choices=tuple(PRECISION_BITS), default="fp32",
                                       doc="precision of partial sums")
    pipeline_latency: int = param(ge=0, le=1024, unit="cycles", default=4,
                                  doc="tensor dataflow only: operand broadcast plus accumulate "
                                  "latency paid once per GEMM")
    sync_tiles: int = param(ge=1, le=1 << 20, default=16, unit="tiles",
                            doc="tensor dataflow: PEs work through private queues of sync_tiles "
                            "units and synchronise after each pass (1 = lock-step tiles); each "
                            "PE keeps the pass's partial sums (buffers.register_file_words), B "
                            "operands are broadcast once per pass, and how far queues drift "
                            "inside a pass is pe_array.stage_steps")
    stage_steps: int = param(ge=1, le=1 << 20, default=1, unit="reduction steps",
                             doc="tensor dataflow: reduction steps of operands each PE's "
                             "register file stages, double-buffered; the array broadcasts "
                             "stage_steps steps at a time and refills once every PE has used "
                             "them, so queues drift apart by at most that many steps (a pass "
                             "lasts the sum over its chunks of stage_steps steps of the slowest "
                             "queue in each; with decoder.compaction each chunk is balanced "
                             "over the queues)")
    fw_lanes: str = param(choices=FW_LANES, default="output_channels",
                          doc="tensor dataflow: what FW's lanes hold. output_channels: "
                          "vector_width output channels of one pixel per PE; reduction: one "
                          "output per PE, its lanes an adder tree over vector_width reduction "
                          "steps (a fused multiply-add tree), so a closed gate skips that "
                          "output alone")
    bd_lanes: str = param(choices=FW_LANES, default="output_channels",
                          doc="tensor dataflow: what BD's lanes hold. output_channels: "
                          "vector_width input-gradient columns of one pixel per PE (dY "
                          "broadcast to them); reduction: one output dX(m, k) per PE, its lanes "
                          "an adder tree over vector_width output channels f (a step runs if "
                          "one of its f's gate bits is on)")
    wg_lanes: str = param(choices=WG_LANES, default="output_channels",
                          doc="tensor dataflow: what WG's lanes hold. output_channels: dW = X^T "
                          "dY, rows over k, the gated dY on the lanes (a step runs if any lane's "
                          "gate is on); input_channels: dW^T = dY^T X, rows over output "
                          "channels, the gated dY broadcast to lanes over k (a step runs where "
                          "that channel's gate is on)")
    operand_reads_per_mac: float = param(ge=0, le=16, default=2.0, unit="words/MAC",
                                         doc="register-file operand reads per MAC (2 = both "
                                         "operands; less where an operand is broadcast to lanes)")
    psum_accesses_per_mac: float = param(ge=0, le=16, default=2.0, unit="words/MAC",
                                         doc="register-file partial-sum accesses per MAC, half "
                                         "reads, half writes (accumulator width)")

    @property
    def macs_per_cycle(self) -> int:
        """Peak MACs per cycle of the whole array."""
        return self.rows * self.cols * self.vector_width

    def adder_tree(self, phase: str) -> bool:
        """Whether ``phase``'s lanes are an adder tree over its reduction (one output per PE:
        ``fw_lanes`` / ``bd_lanes: reduction`` on the tensor dataflow)."""
        lanes = {"fw": self.fw_lanes, "bd": self.bd_lanes}.get(phase)
        return lanes == "reduction" and self.dataflow == "tensor"


@dataclass(frozen=True)
class DecoderConfig:
    """The sparse index decoder that turns stored indices into active work for the array."""

    formats: tuple[str, ...] = param(default=("bitmap",), doc="index formats the decoder reads",
                               choices=INDEX_FORMATS)
    indices_per_cycle: int = param(ge=1, le=65536, unit="indices/cycle", default=64,
                                   doc="active coordinates the decoder yields per cycle")
    skip_granularity: str = param(choices=SKIP_GRANULARITIES, default="vector",
                                  doc="smallest lock-step unit of work that can be skipped: one "
                                  "MAC lane, one PE's vector, or a whole PE row")
    compaction: bool = param(default=False, doc="pack active work units across lanes and "
                             "queues (load balancing) at a decoder throughput and energy price")
    compaction_indices_per_cycle: int = param(ge=1, le=65536, unit="indices/cycle", default=16,
                                              doc="decoder throughput when compaction is on")
    balance_rows: bool = param(default=False, doc="a load balancer without a distribution "
                               "network (tensor dataflow, without compaction): before each "
                               "pass the decoder assigns the pass's output rows to PE rows by "
                               "their work, longest first, each to the least-loaded PE row with "
                               "room (every PE row keeps its static number of rows); it decodes "
                               "one row index per row and pass")
    bd_weight_index: str = param(choices=BD_WEIGHT_INDEX, default="copy",
                                 doc="how BD reads the index of W^T when the weights' format "
                                 "cannot be read by column (csr, coo, rle, nm): copy stores a "
                                 "second, transposed index and BD reads it (priced in storage "
                                 "and DRAM traffic); free assumes the decoder reads the stored "
                                 "one transposed at no cost")
    lane_scheduler: str = param(choices=LANE_SCHEDULERS, default="none",
                                doc="tensordash: a multiplexer in front of each multiplier "
                                "input of adder-tree lanes (pe_array.fw_lanes / bd_lanes: "
                                "reduction) fills a step's empty slots with effectual pairs "
                                "from later steps of the lane (lookahead) and of nearby lanes "
                                "(lookaside), inside the staged steps (TensorDash, MICRO "
                                "2020); priced per MAC it issues by "
                                "energy.lane_scheduler_per_mac; none: steps run as the index "
                                "gives them")
    scheduler_lookahead: int = param(ge=1, le=8, default=2, unit="steps",
                                     doc="lane_scheduler: later steps of its own lane a slot "
                                     "may take a pair from (TensorDash: 2); needs "
                                     "pe_array.stage_steps >= lookahead + 1")
    scheduler_lookaside: int = param(ge=0, le=16, default=5, unit="positions",
                                     doc="lane_scheduler: positions in nearby lanes a slot may "
                                     "take a pair from (TensorDash: 5; each multiplier input's "
                                     "multiplexer has 1 + lookahead + lookaside inputs)")


@dataclass(frozen=True)
class BuffersConfig:
    """On-chip storage: one global buffer and a register file per PE."""

    global_kib: float = param(gt=0, le=1048576, unit="KiB", doc="global buffer capacity")
    banks: int = param(ge=1, le=1024, default=8, unit="banks",
                       doc="global buffer banks; words_per_cycle is spread evenly over them and "
                       "energy.gb_*_per_bit are per-bank access energies (a bank is "
                       "global_kib / banks)")
    words_per_cycle: int = param(ge=1, le=65536, default=64, unit="words/cycle",
                                 doc="global buffer bandwidth to the array, in operand words")
    register_file_words: int = param(ge=1, le=65536, default=16, unit="words/PE",
                                     doc="register file per PE, in operand words; must hold "
                                     "what its dataflow keeps (tensor: 2 x stage_steps x "
                                     "(sync_tiles + vector_width) staged operands + "
                                     "sync_tiles x vector_width partial sums at accumulator "
                                     "width; with fw_lanes or bd_lanes reduction also 2 x "
                                     "stage_steps x vector_width x (sync_tiles + 1) + "
                                     "sync_tiles partial sums)")


@dataclass(frozen=True)
class DramConfig:
    """Off-chip memory."""

    bandwidth_gbps: float = param(gt=0, le=100000, unit="GB/s", doc="DRAM bandwidth")
    energy_pj_per_bit: float = param(ge=0, le=1000, unit="pJ/bit", doc="DRAM access energy")
    double_buffering: bool = param(default=True, doc="overlap DRAM transfers with compute "
                                   "(job cycles = max of causes; else their sum)")
    compress_sparse: bool = param(default=True, doc="store sparse tensors as values + index "
                                  "(used by sparse replay)")


@dataclass(frozen=True)
class VectorUnitConfig:
    """The vector unit that runs a training step's non-MAC work (docs/model.md, "Non-MAC
    work"): BN, ReLU, residual adds, pooling, the gate's arithmetic, the optimizer step and a
    momentum encoder's update. ``lanes: 0`` leaves non-MAC work out (MAC-only results)."""

    lanes: int = param(ge=0, le=65536, default=0, unit="ops/cycle",
                       doc="element-wise operations per cycle (one lane does one add, multiply, "
                       "fused multiply-add, compare or select per cycle); 0: non-MAC work not "
                       "modelled")
    fused: bool = param(default=True, doc="FW: BN statistics run on the array's output stream "
                        "and normalise, residual add, ReLU and pooling in one pass; backward: "
                        "ReLU's, pooling's and a fanout's backward and the gate's first "
                        "gradient pass merge into BN's two passes (false: one pass per "
                        "operation)")
    master_precision: str = param(choices=tuple(PRECISION_BITS), default="fp32",
                                  doc="precision of the master weights the optimizer updates "
                                  "(a copy at pe_array.precision is written when they differ)")
    state_precision: str = param(choices=tuple(PRECISION_BITS), default="fp32",
                                 doc="precision of the optimizer's state tensors (momentum; "
                                 "Adam's first and second moments)")
    sparse_updates: bool = param(default=False, doc="the optimizer updates only the weights a "
                                 "layer's weight mask keeps (pruned weights keep their value and "
                                 "state until regrown); false: every parameter, every step")


@dataclass(frozen=True)
class EnergyEntry:
    """One action's energy with where the number comes from."""

    pj: float = param(ge=0, le=1e6, unit="pJ", doc="energy per action")
    source: str = param(doc="paper, node and bit width the number comes from")


@dataclass(frozen=True)
class SparsitySupportConfig:
    """Which sparsity each phase can exploit (a design may not support it)."""

    gate: tuple[str, ...] = param(default=(), choices=PHASE_NAMES,
                            doc="phases that skip work of gated-off outputs (CDG/SCDG masks)")
    weight: tuple[str, ...] = param(default=(), choices=PHASE_NAMES,
                              doc="phases that skip pruned weights (SyncCP masks)")
    gate_group_size: int = param(ge=1, le=1024, default=1, unit="channels",
                                 doc="gate group size the hardware is built to exploit "
                                 "(1 = unstructured; SCDG uses 8)")
    nm_m: tuple[int, ...] = param(default=(), doc="M values of N:M weight sparsity the "
                                  "multiplexers support (empty: no N:M support)")


@dataclass(frozen=True)
class HardwareConfig:
    """A complete hardware description: frozen and hashable all the way down (tuples and
    :class:`FrozenMap`), so that a config, or any part of it, can key a cache."""

    name: str = param(doc="short name of the design")
    pe_array: PEArrayConfig = param(doc="PE array")
    buffers: BuffersConfig = param(doc="on-chip buffers")
    dram: DramConfig = param(doc="off-chip memory")
    energy: FrozenMap[str, EnergyEntry] = param(doc="energy per action: mac_<precision> (pJ/MAC), "
                                           "rf/gb read and write (pJ/bit), index_decode "
                                           "(pJ/index), compaction_network_per_mac (pJ/MAC, "
                                           "needed with decoder.compaction), "
                                           "lane_scheduler_per_mac (pJ/MAC, needed with "
                                           "decoder.lane_scheduler), vector_op "
                                           "(pJ/operation, needed with vector_unit.lanes), "
                                           "vector_op_<precision> (pJ/operation of the "
                                           "optimizer's arithmetic on master weights of that "
                                           "precision; absent: vector_op), each with its "
                                           "source")
    description: str = param(default="", doc="free text")
    version: int = param(default=1, ge=1, le=1, doc="config format major version")
    kind: str = param(default=CONFIG_KIND, choices=(CONFIG_KIND,), doc="file kind")
    decoder: DecoderConfig = param(factory=DecoderConfig, doc="sparse index decoder")
    sparsity_support: SparsitySupportConfig = param(factory=SparsitySupportConfig,
                                                   doc="which sparsity each phase exploits")
    static_power_mw: float = param(default=0.0, ge=0, le=1e6, unit="mW",
                                   doc="static (leakage + clock) power of the whole chip")
    vector_unit: VectorUnitConfig = param(factory=VectorUnitConfig,
                                          doc="vector unit for non-MAC work")

    def energy_pj(self, action: str) -> float:
        """Energy of one action from the table (pJ)."""
        return self.energy[action].pj

    @property
    def mac_energy_pj(self) -> float:
        """Energy of one MAC at the configured precision (pJ)."""
        return self.energy_pj(ENERGY_MAC_PREFIX + self.pe_array.precision)

    @property
    def operand_bits(self) -> int:
        """Bits of one operand word."""
        return PRECISION_BITS[self.pe_array.precision]

    @property
    def accumulator_bits(self) -> int:
        """Bits of one partial sum."""
        return PRECISION_BITS[self.pe_array.accumulator_precision]

    @property
    def dram_bytes_per_cycle(self) -> float:
        """DRAM bandwidth in bytes per clock cycle."""
        return self.dram.bandwidth_gbps * 1e9 / (self.pe_array.clock_mhz * 1e6)

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (YAML/JSON-ready: lists, not tuples) with every value, defaults
        included."""
        return plain(self)

    def digest(self) -> str:
        """Short SHA-256 of the canonical JSON form: identifies a hardware point."""
        text = json.dumps(self.to_dict(), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


# ---------------------------------------------------------------------------------------------
# Loading and validation
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RegisterFileNeed:
    """The register-file words (operand width) one PE of ``pe`` needs, and why."""

    total: int
    explain: str


def register_file_need(pe: PEArrayConfig) -> RegisterFileNeed:
    """Words per PE the dataflow keeps (docs/sparse-model.md, "Operand delivery").

    A tensor-dataflow PE works through a private queue of ``sync_tiles`` units per pass: it
    stages, double-buffered, ``stage_steps`` reduction steps of one streamed operand word per
    queued unit and one word per lane of the operand its units share (2 x stage_steps x
    (sync_tiles + vector_width)), and keeps the partial sums of
    every queued unit's lanes until the pass ends (sync_tiles x vector_width accumulator words,
    counted in operand words); with ``fw_lanes`` or ``bd_lanes: reduction`` the phase stages
    vector_width reduction steps of each queued output and of its weights and keeps one partial
    sum per queued output.
    A systolic PE keeps an operand, its lanes' partial sums and a
    forwarded operand (vector_width + 2).
    """
    if pe.dataflow != "tensor":
        return RegisterFileNeed(pe.vector_width + 2, f"two operands plus {pe.vector_width} "
                                f"partial sums (vector_width {pe.vector_width})")
    s, vw, d = pe.sync_tiles, pe.vector_width, pe.stage_steps
    ratio = PRECISION_BITS[pe.accumulator_precision] / PRECISION_BITS[pe.precision]
    staging, psums = 2 * d * (s + vw), math.ceil(s * vw * ratio)
    steps = f"{d} reduction step{'s' if d > 1 else ''} (pe_array.stage_steps)"
    need = RegisterFileNeed(staging + psums, (
        f"with pe_array.sync_tiles {s} each PE stages {steps} of operands for {s} queued "
        f"units and {vw} lanes, double-buffered ({staging}), and keeps {s} x {vw} partial "
        f"sums at {pe.accumulator_precision} ({psums})"))
    if pe.adder_tree("fw") or pe.adder_tree("bd"):  # vw reduction steps of one output per unit
        tree_staging, tree_psums = 2 * d * vw * (s + 1), math.ceil(s * ratio)
        if tree_staging + tree_psums > need.total:
            need = RegisterFileNeed(tree_staging + tree_psums, (
                f"with reduction lanes and sync_tiles {s} each PE stages {steps} of "
                f"{vw} operands for {s} queued outputs and their weights, double-buffered "
                f"({tree_staging}), and keeps {s} partial sums at "
                f"{pe.accumulator_precision} ({tree_psums})"))
    return need


def _check_lane_scheduler(config: HardwareConfig, errors: Problems) -> None:
    """decoder.lane_scheduler needs adder-tree lanes, operands staged for its lookahead, no
    compaction (the two are alternatives) and its energy entry."""
    pe, decoder = config.pe_array, config.decoder
    key = "decoder.lane_scheduler"
    if not (pe.adder_tree("fw") or pe.adder_tree("bd")):
        errors.add(key, f"{decoder.lane_scheduler} schedules adder-tree lanes: needs the tensor "
                   "dataflow with pe_array.fw_lanes or pe_array.bd_lanes: reduction")
    if pe.vector_width > 64:
        errors.add(key, f"schedules trees of at most 64 lanes, got pe_array.vector_width "
                   f"{pe.vector_width}")
    if decoder.compaction:
        errors.add(key, "applies without decoder.compaction (the scheduler is the alternative "
                   "that keeps each pair in its PE)")
    if pe.stage_steps < decoder.scheduler_lookahead + 1:
        errors.add("pe_array.stage_steps", f"must be >= decoder.scheduler_lookahead + 1 = "
                   f"{decoder.scheduler_lookahead + 1} with decoder.lane_scheduler "
                   f"{decoder.lane_scheduler} (it looks ahead only into staged steps), got "
                   f"{pe.stage_steps}")
    if LANE_SCHEDULER not in config.energy:
        errors.add(f"energy.{LANE_SCHEDULER}", "missing required key (needed for "
                   "decoder.lane_scheduler: the energy per MAC of its multiplexers and "
                   "scheduler)")


def _check_combinations(config: HardwareConfig, errors: Problems) -> None:
    """Cross-field rules: combinations that no hardware can have."""
    pe, support, decoder = config.pe_array, config.sparsity_support, config.decoder
    mac_key = ENERGY_MAC_PREFIX + pe.precision
    for action in (mac_key, *REQUIRED_ENERGY_ACTIONS):
        if action not in config.energy:
            errors.add(f"energy.{action}", f"missing required key (needed for precision "
                       f"{pe.precision})" if action == mac_key else "missing required key")
    if decoder.compaction and COMPACTION_NETWORK not in config.energy:
        errors.add(f"energy.{COMPACTION_NETWORK}", "missing required key (needed for "
                   "decoder.compaction: the energy per MAC of the network that packs work "
                   "onto lanes)")
    if decoder.lane_scheduler != "none":
        _check_lane_scheduler(config, errors)
    if config.vector_unit.lanes and VECTOR_OP not in config.energy:
        errors.add(f"energy.{VECTOR_OP}", "missing required key (needed for vector_unit.lanes > "
                   "0: the energy of one vector operation)")
    for action in config.energy:
        known = action in (*REQUIRED_ENERGY_ACTIONS, COMPACTION_NETWORK, LANE_SCHEDULER,
                           VECTOR_OP) or any(
            action.startswith(prefix) and action[len(prefix):] in PRECISION_BITS
            for prefix in (ENERGY_MAC_PREFIX, VECTOR_OP + "_"))
        if not known:
            options = [*REQUIRED_ENERGY_ACTIONS, COMPACTION_NETWORK, LANE_SCHEDULER, VECTOR_OP,
                       *(ENERGY_MAC_PREFIX + p for p in PRECISION_BITS),
                       *(f"{VECTOR_OP}_{p}" for p in PRECISION_BITS)]
            errors.add(f"energy.{action}", unknown_key_message(action, options))
    if pe.dataflow in SYSTOLIC_DATAFLOWS and pe.vector_width != 1:
        errors.add("pe_array.vector_width", f"must be 1 for the systolic dataflow "
                   f"{pe.dataflow!r} (use dataflow: tensor for vector PEs), got {pe.vector_width}")
    for phase, lanes in (("fw", pe.fw_lanes), ("bd", pe.bd_lanes)):
        if lanes != "reduction":
            continue
        key = f"pe_array.{phase}_lanes"
        if pe.dataflow in SYSTOLIC_DATAFLOWS:
            errors.add(key, f"applies to the tensor dataflow only, got {lanes!r} with "
                       f"{pe.dataflow!r}")
        if decoder.skip_granularity != "vector":
            errors.add("decoder.skip_granularity", f"must be vector with {key}: reduction (a "
                       f"PE's lanes reduce one output, the unit {phase.upper()} skips), got "
                       f"{decoder.skip_granularity!r}")
        if support.nm_m and phase == "fw":
            errors.add("sparsity_support.nm_m", f"must be empty with {key}: reduction (N:M "
                       "multiplexers feed output-channel lanes)")
    if pe.dataflow in SYSTOLIC_DATAFLOWS and pe.wg_lanes != "output_channels":
        errors.add("pe_array.wg_lanes", f"applies to the tensor dataflow only (a systolic "
                   f"{pe.dataflow!r} array computes WG as SCALE-Sim does), got {pe.wg_lanes!r}")
    if pe.dataflow in SYSTOLIC_DATAFLOWS and support.gate:
        errors.add("sparsity_support.gate", f"the systolic dataflow {pe.dataflow!r} cannot skip "
                   "gated outputs (only N:M weights, as SCALE-Sim v3); use dataflow: tensor")
    buffers = config.buffers
    if buffers.words_per_cycle % buffers.banks:
        errors.add("buffers.words_per_cycle", f"{buffers.words_per_cycle} words/cycle cannot be "
                   f"spread evenly over {buffers.banks} banks")
    need = register_file_need(pe)
    if buffers.register_file_words < need.total:
        errors.add("buffers.register_file_words", f"{buffers.register_file_words} words cannot "
                   f"hold {need.total}: {need.explain}")
    if PRECISION_BITS[pe.accumulator_precision] < PRECISION_BITS[pe.precision]:
        errors.add("pe_array.accumulator_precision", f"{pe.accumulator_precision} is narrower "
                   f"than the operand precision {pe.precision}")
    if support.gate and support.gate_group_size > 1:
        if support.gate_group_size % pe.vector_width:
            errors.add("sparsity_support.gate_group_size", f"vector_width {pe.vector_width} does "
                       f"not divide the gate group size {support.gate_group_size} it claims to "
                       "exploit")
        if "group_bitmap" not in decoder.formats:
            errors.add("decoder.formats", "must include group_bitmap to exploit gate groups of "
                       f"size {support.gate_group_size}")
    for i, m in enumerate(support.nm_m):
        if m < 2:
            errors.add(f"sparsity_support.nm_m[{i}]", f"{m} is out of range (must be >= 2)")
    if support.nm_m and "nm" not in decoder.formats:
        errors.add("decoder.formats", "must include nm when sparsity_support.nm_m is set")
    if (support.gate or support.weight) and not decoder.formats:
        errors.add("decoder.formats", "must name at least one index format when any phase "
                   "exploits sparsity")
    for name in ("gate", "weight"):
        phases = getattr(support, name)
        if len(set(phases)) != len(phases):
            errors.add(f"sparsity_support.{name}", f"phases listed twice: {phases}")
    if decoder.balance_rows and decoder.compaction:
        errors.add("decoder.balance_rows", "applies without decoder.compaction (compaction "
                   "already balances every chunk of work over the queues)")
    if decoder.balance_rows and pe.dataflow in SYSTOLIC_DATAFLOWS:
        errors.add("decoder.balance_rows", f"applies to the tensor dataflow only, got "
                   f"{pe.dataflow!r}")
    if decoder.compaction and decoder.compaction_indices_per_cycle > decoder.indices_per_cycle:
        errors.add("decoder.compaction_indices_per_cycle", "must not exceed "
                   f"decoder.indices_per_cycle ({decoder.indices_per_cycle})")


# ---------------------------------------------------------------------------------------------
# Overrides
# ---------------------------------------------------------------------------------------------


def _schema_children(tp: Any) -> dict[str, Any] | None:
    """Field name -> type for a dataclass type, or None for a leaf."""
    if dataclasses.is_dataclass(tp):
        return typing.get_type_hints(tp)
    return None


def resolve_key_type(dotted: str) -> Any:
    """Walk the schema along ``dotted``; raise KeyError(message) for an unknown part."""
    tp: Any = HardwareConfig
    walked = []
    for part in dotted.split("."):
        children = _schema_children(tp)
        if typing.get_origin(tp) is FrozenMap:
            tp = typing.get_args(tp)[1]
        elif children is not None:
            if part not in children:
                where = ".".join([*walked, part])
                raise KeyError(f"{where}: {unknown_key_message(part, list(children))}")
            tp = children[part]
        else:
            raise KeyError(f"{'.'.join(walked)}: is a value, it has no key {part!r}")
        walked.append(part)
    return tp


def parse_override(text: str) -> tuple[str, Any]:
    """Split ``key=value``; the value is parsed as a YAML scalar or flow list (safe loader)."""
    if "=" not in text:
        raise InputError(f"expected KEY=VALUE, got {text!r}", field="--set")
    key, _, raw_value = text.partition("=")
    key = key.strip()
    if not key:
        raise InputError(f"expected KEY=VALUE, got {text!r}", field="--set")
    try:
        value = parse_yaml(raw_value, "--set") if raw_value.strip() else ""
    except InputError as error:
        raise InputError(f"cannot parse value {abbreviate(raw_value)} ({error.message})",
                         field=f"--set {key}") from None
    try:
        resolve_key_type(key)
    except KeyError as error:
        raise InputError(str(error.args[0]), field="--set") from None
    return key, value


def apply_overrides(raw: dict[str, Any], overrides: list[tuple[str, Any]]) -> dict[str, Any]:
    """A deep copy of ``raw`` with each dotted override set (creating sections as needed)."""
    result = copy.deepcopy(raw)
    for key, value in overrides:
        node = result
        parts = key.split(".")
        for part in parts[:-1]:
            if not isinstance(node.get(part), dict):
                node[part] = {}
            node = node[part]
        node[parts[-1]] = value
    return result


# ---------------------------------------------------------------------------------------------
# Public entry points
# ---------------------------------------------------------------------------------------------


def build_hardware(raw: dict[str, Any], *, source: str = "<config>",
                   overridden: set[str] | None = None) -> HardwareConfig:
    """Validate a raw mapping and build the config; one InputError listing every problem."""
    errors = Problems(source, overridden or set())
    config = build(HardwareConfig, raw, errors)
    errors.raise_if_any()
    assert config is not None  # build returns None only after recording a problem
    _check_combinations(config, errors)
    errors.raise_if_any()
    return config


def load_hardware(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> HardwareConfig:
    """Load, override (``["pe_array.rows=16", ...]``) and validate a hardware YAML file."""
    raw = load_yaml_mapping(path)
    parsed = [parse_override(text) for text in overrides]
    overridden = set()
    for key, _ in parsed:
        overridden.add(key)
    return build_hardware(apply_overrides(raw, parsed), source=str(path), overridden=overridden)


def with_overrides(config: HardwareConfig, overrides: dict[str, Any]) -> HardwareConfig:
    """A new validated config with dotted keys replaced (used by sweeps)."""
    parsed = []
    for key, value in overrides.items():
        try:
            resolve_key_type(key)
        except KeyError as error:
            raise InputError(str(error.args[0]), field="--set") from None
        parsed.append((key, value))
    return build_hardware(apply_overrides(config.to_dict(), parsed), source=config.name,
                          overridden=set(overrides))


def iter_keys(tp: Any = HardwareConfig, prefix: str = "") -> list[tuple[str, dict[str, Any], Any]]:
    """Every leaf key as (dotted key, metadata, type), for docs and ``accelsim config keys``."""
    rows = []
    hints = typing.get_type_hints(tp)
    for f in dataclasses.fields(tp):
        key = f"{prefix}{f.name}"
        field_tp = hints[f.name]
        if dataclasses.is_dataclass(field_tp):
            rows.extend(iter_keys(field_tp, key + "."))
        elif typing.get_origin(field_tp) is FrozenMap:
            rows.append((key + ".<action>.pj", {"unit": "pJ", "doc": f.metadata["doc"]}, float))
            rows.append((key + ".<action>.source", {"doc": "where the number comes from"}, str))
        else:
            meta = dict(f.metadata)
            if f.default is not dataclasses.MISSING:
                meta["default_repr"] = repr(plain(f.default))
            elif f.default_factory is not dataclasses.MISSING:
                meta["default_repr"] = repr(f.default_factory())
            else:
                meta["default_repr"] = "required"
            rows.append((key, meta, field_tp))
    return rows


def describe_bounds(meta: dict[str, Any], choice_separator: str = ", ",
                    space: str = " ") -> list[str]:
    """Allowed values of a key from its metadata: choices, then > / >= / <= bounds."""
    bounds = []
    if meta.get("choices"):
        bounds.append(choice_separator.join(meta["choices"]))
    for name, symbol in (("gt", ">"), ("ge", ">="), ("lt", "<"), ("le", "<=")):
        if meta.get(name) is not None:
            bounds.append(f"{symbol}{space}{meta[name]:g}")
    return bounds


def type_label(tp: Any) -> str:
    """Readable type name for docs."""
    if typing.get_origin(tp) is tuple:
        return f"list of {type_label(typing.get_args(tp)[0])}"
    return getattr(tp, "__name__", str(tp))
