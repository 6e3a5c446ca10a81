"""The compute of a job (layer x branch x phase) from its masks: one way in, sparse_compute.

The array is rows x cols vector PEs with ``vector_width`` lanes. Work is issued in lock-step
*units* of U lanes over the GEMM's output columns: U = 1 (``decoder.skip_granularity: element``),
``vector_width`` (``vector``) or ``cols * vector_width`` (``pe_row``). Each phase's rule is in its
module (:mod:`accelsim.engine.fw`, :mod:`~accelsim.engine.bd`, :mod:`~accelsim.engine.wg`,
:mod:`~accelsim.engine.compaction`); the queues in :mod:`accelsim.engine.schedule`. Systolic
dataflows exploit only N:M weights in FW (SCALE-Sim v3); N:M multiplexers on a tensor array
shrink every unit's steps. A gated job without weight masks is planned once
(:class:`GatedPlan`): a step's compute is then the gate's counts, one sums kernel and the
schedule. All-ones masks run in dense mode and give exactly the dense result.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np

from accelsim.config import (
    SYSTOLIC_DATAFLOWS,
    DecoderConfig,
    HardwareConfig,
    SparsitySupportConfig,
)
from accelsim.engine.balance import reordered, row_order
from accelsim.engine.bd import BdPlan, bd_plan, bd_sums, bd_tree_work, bd_work
from accelsim.engine.dgc import dgc_effective_macs, dgc_problem, dgc_staged, dgc_work
from accelsim.engine.fw import (
    FwPlan,
    fw_plan,
    fw_sums,
    fw_work,
    scaled_steps,
    tree_macs_issued,
)
from accelsim.engine.masks import LayerMasks, as_bytes
from accelsim.engine.pe_array import cycles_dense_tensor, cycles_gemm, dense_cycles, phase_gemm
from accelsim.engine.schedule import (
    LaneLayout,
    PassSums,
    PhaseWork,
    Schedule,
    decoder_throughput,
    lane_layout,
    matrix_sums,
    queue_columns,
    schedule,
    schedule_pass_sums,
)
from accelsim.engine.stage import (
    StageLayout,
    stage_layout,
    staged_compute,
    staged_compute_nm,
)
from accelsim.engine.systolic import nm_reduction_length
from accelsim.engine.views import MaskViews, as_views
from accelsim.engine.wg import WgPlan, wg_plan, wg_sums, wg_transposed_work, wg_work
from accelsim.errors import InputError
from accelsim.kernels import row_ones
from accelsim.network import Gemm, Layer


def effective_macs(layer: Layer, masks: LayerMasks | MaskViews, phase: str) -> int:
    """MACs a FLOPs count gives for this job (the algorithm's view; equal in all phases,
    except WG at dense-gradient steps): sum over kept weights (f, k) of M on the base path and
    the number of active pixels of f on the conditional path."""
    views = as_views(masks)
    masks = views.masks
    if masks.select is not None:
        return views.per_job(("dgc_macs", phase == "wg" and masks.dense_weight_gradient),
                             lambda: dgc_effective_macs(layer, masks, phase))
    m, f, k = layer.output_pixels, layer.cout, layer.k_per_group
    weight = masks.weight
    if phase == "wg" and masks.dense_weight_gradient:
        weight = None
    elif weight is None and masks.nm is not None and not masks.has_gate:
        return f * nm_reduction_length(k, *masks.nm) * m  # a declared N:M pattern
    # equal in every phase that uses the same weights
    return views.per_job(("macs", weight is not None),
                         lambda: _effective_macs(m, f, k, views, weight))


def _effective_macs(m: int, f: int, k: int, views: MaskViews,
                    weight: np.ndarray | None) -> int:
    masks = views.masks
    key = ("macs_plan", m, f, k, weight is not None, masks.has_gate, masks.base is not None,
           masks.nm if masks.weight is None else None)
    fixed, conditional = views.structure(key, lambda: _macs_plan(m, f, k, views, weight))
    if conditional is None:
        return fixed
    if conditional.shape[0] == 1:  # the same for every channel: no per-channel counts
        return fixed + int(conditional[0]) * views.gate_bits.ones * masks.gate_group_size
    return fixed + int(conditional @ views.channel_counts)


def kept_per_output(masks: LayerMasks, weight: np.ndarray | None,
                    steps: np.ndarray) -> np.ndarray:
    """int64 (F,): kept reduction steps of each output channel: its weight mask's ones when
    ``weight`` is given, else of the ``steps`` it has, N of every M of them under a declared
    N:M pattern without a recorded mask."""
    if weight is not None:
        return row_ones(as_bytes(weight))
    if masks.weight is None and masks.nm is not None:
        n, m = masks.nm
        return steps // m * n + np.minimum(steps % m, n)
    return steps


def _macs_plan(m: int, f: int, k: int, views: MaskViews,
               weight: np.ndarray | None) -> tuple[int, np.ndarray | None]:
    """(MACs that do not depend on the gate, MACs per active pixel of each output channel:
    int64 (F,), or (1,) when equal for all, None without a gate) for :func:`_effective_macs`.
    A declared N:M pattern without a recorded mask keeps N of every M reduction steps (a
    recorded mask that WG ignores at a dense-gradient step declares nothing)."""
    masks = views.masks
    kept_per_f = kept_per_output(masks, weight, np.full(f, k, dtype=np.int64))
    if not masks.has_gate:
        return int(kept_per_f.sum()) * m, None
    on_base = np.zeros(f, dtype=np.int64)
    if masks.base is not None:
        on_base = (row_ones(as_bytes(weight & masks.base.mask)) if weight is not None
                   else kept_per_output(masks, None, masks.base.per_f))
    conditional = kept_per_f - on_base  # MACs per active pixel of each output channel
    if (conditional == conditional[0]).all():
        conditional = conditional[:1]
    return int(on_base.sum()) * m, conditional


@dataclass(frozen=True)
class ComputeKey:
    """Exactly the hardware a job's compute reads (and the replay's index pricing: decoder
    formats, gate group size, N:M support, and whether BD reads the weight index to
    decompress, ``dram.compress_sparse``, which decides its transposed copy): configs with
    equal keys give equal :class:`SparseCompute` and index storage for every job, whatever
    their memory bandwidth, energy, clock or precision."""

    rows: int
    cols: int
    dataflow: str
    vector_width: int
    pipeline_latency: int
    sync_tiles: int
    stage_steps: int
    fw_lanes: str
    bd_lanes: str
    wg_lanes: str
    decoder: DecoderConfig
    sparsity_support: SparsitySupportConfig
    compress_sparse: bool


def compute_key(hw: HardwareConfig) -> ComputeKey:
    """The :class:`ComputeKey` of ``hw``."""
    pe = hw.pe_array
    return ComputeKey(pe.rows, pe.cols, pe.dataflow, pe.vector_width, pe.pipeline_latency,
                      pe.sync_tiles, pe.stage_steps, pe.fw_lanes, pe.bd_lanes, pe.wg_lanes,
                      hw.decoder, hw.sparsity_support, hw.dram.compress_sparse)


@dataclass(frozen=True)
class SparseCompute:
    """Compute-side result of one sparse job."""

    cycles_compute: int
    cycles_decoder_stall: int
    decoder_indices: int
    macs_issued: int
    macs: JobMacs
    cycles_compute_dense: int
    compacted: bool = False  # its work went through the compaction network or lane scheduler
    supported: bool = True   # False: the hardware cannot skip with this job's masks here
    cycles_stage_wait: int = 0  # of cycles_compute: queues waiting at operand-stage chunks

    @property
    def macs_effective(self) -> int:
        """MACs of the FLOPs view."""
        return self.macs.effective

    @property
    def macs_required(self) -> int:
        """MACs the training algorithm needs computed (:func:`required_macs`)."""
        return self.macs.required

    @classmethod
    def of(cls, run: Schedule, macs: JobMacs, cycles_compute_dense: int) -> SparseCompute:
        """The compute of a job whose work ran as ``run``."""
        return cls(run.cycles, run.cycles_decoder_stall, run.decoder_indices, run.macs_issued,
                   macs, cycles_compute_dense, run.compacted,
                   cycles_stage_wait=run.cycles_stage_wait)

    @classmethod
    def unskipped(cls, cycles: int, macs_issued: int, macs: JobMacs,
                  cycles_compute_dense: int) -> SparseCompute:
        """A job that runs without the decoder: a systolic N:M pass."""
        return cls(cycles, 0, 0, macs_issued, macs, cycles_compute_dense)

    @classmethod
    def dense(cls, cycles_compute_dense: int, macs_dense: int, macs: JobMacs,
              supported: bool) -> SparseCompute:
        """A job run dense, skipping nothing. ``supported``: the hardware could skip with its
        masks in this phase (it runs dense because the training algorithm needs every MAC: FW
        of a straight-through gate); False: no support for them here (or no masks)."""
        return cls(cycles_compute_dense, 0, 0, macs_dense, macs, cycles_compute_dense,
                   supported=supported)


@dataclass(frozen=True)
class JobMacs:
    """The algorithm's MACs of a job: what a FLOPs count says (``effective``) and what
    training needs computed on any hardware (``required``: more in FW when a straight-through
    gate gradient needs the conditional path everywhere)."""

    effective: int
    required: int


def sparse_compute(layer: Layer, phase: str, masks: LayerMasks | MaskViews,
                   hw: HardwareConfig) -> SparseCompute:
    """Cycles and MACs of one job from its masks on ``hw`` (all dataflows). A gated job
    without weight masks goes through its :class:`GatedPlan`. ``masks`` may come with their
    views (:class:`~accelsim.engine.views.MaskViews`: the replay's, sharing structure between
    steps)."""
    views = as_views(masks)
    masks = views.masks
    if masks.select is not None:
        return _dgc_compute(layer, phase, views, hw)
    plan = gated_plan(layer, phase, views, hw)
    if plan is not None:
        return plan.compute(views)
    if layer.groups != 1 and (masks.has_gate or masks.weight is not None):
        raise InputError("masks on grouped convolutions are not supported",
                         field=f"layer {layer.name!r}")
    support = hw.sparsity_support
    use_gate = phase in support.gate and masks.skips_with_gate(phase)
    # A declared N:M pattern (no recorded mask) is exploitable only by FW's multiplexers,
    # when they select from groups of its M.
    use_weight = phase in support.weight and (
        masks.weight is not None or (phase == "fw" and masks.nm is not None
                                     and masks.nm[1] in support.nm_m))
    gemm = phase_gemm(layer, phase, hw.pe_array)
    dense_compute = dense_cycles(layer, phase, hw.pe_array)
    macs = job_macs(layer, views, phase)
    return _sparse_compute(layer, phase, views, hw, gemm, dense_compute, lane_layout(hw, phase),
                           macs, use_gate, use_weight)


def _dgc_compute(layer: Layer, phase: str, views: MaskViews,
                 hw: HardwareConfig) -> SparseCompute:
    """The compute of a job with DGC's input selection (:mod:`accelsim.engine.dgc`). Where the
    phase does not skip dynamic masks (``sparsity_support.gate``), or on a systolic array, it
    runs as its weight mask alone allows (dense without one); kept weights count only where
    the phase skips weights. The MACs are DGC's either way."""
    pe = hw.pe_array
    gemm = phase_gemm(layer, phase, pe)
    dense_compute = dense_cycles(layer, phase, pe)
    macs = job_macs(layer, views, phase)
    if pe.dataflow in SYSTOLIC_DATAFLOWS or phase not in hw.sparsity_support.gate:
        if views.masks.weight is not None:  # the phase may still skip the pruned weights
            plain = sparse_compute(layer, phase, dataclasses.replace(views.masks, select=None),
                                   hw)
            return dataclasses.replace(plain, macs=macs)
        return SparseCompute.dense(dense_compute, gemm.macs, macs, supported=False)
    problem = dgc_problem(hw, (phase,))
    if problem is not None:
        raise InputError(problem, field=f"layer {layer.name!r}")
    masks = views.masks
    if masks.weight is not None and phase not in hw.sparsity_support.weight:
        masks = dataclasses.replace(masks, weight=None)
    layout = lane_layout(hw, phase)
    pass_len = pe.rows * pe.sync_tiles
    work, sets = views.per_job(
        ("dgc", phase, layout.unit, pe.rows, pass_len, masks.weight is None),
        lambda: dgc_work(layer, masks, phase, layout.unit, pe.rows, pass_len))
    if isinstance(work, PhaseWork):
        work = matrix_sums(work, pe.rows, pass_len)
    staged = dgc_staged(layer, phase, sets, pe.rows, pass_len, pe.stage_steps, layout.qcols)
    run = schedule(work, hw, layout.qcols, staged)
    return SparseCompute.of(run, macs, dense_compute)


def job_macs(layer: Layer, views: MaskViews, phase: str) -> JobMacs:
    """The :class:`JobMacs` of a job."""
    effective = effective_macs(layer, views, phase)
    return JobMacs(effective, required_macs(layer, views.masks, phase, effective))


def required_macs(layer: Layer, masks: LayerMasks, phase: str, macs_effective: int) -> int:
    """MACs the training algorithm needs computed: the FLOPs view, plus, in FW of a gate with
    a straight-through gradient, the conditional path at every pixel (the kept weights at every
    output)."""
    if phase != "fw" or not masks.has_gate or not masks.dense_fw_conditional:
        return macs_effective
    f, k = layer.cout, layer.k_per_group
    steps = np.full(f, k, dtype=np.int64)
    return int(kept_per_output(masks, masks.weight, steps).sum()) * layer.output_pixels


def _sparse_compute(layer: Layer, phase: str, views: MaskViews, hw: HardwareConfig, gemm: Gemm,
                    dense_compute: int, layout: LaneLayout, macs: JobMacs, use_gate: bool,
                    use_weight: bool) -> SparseCompute:
    """The compute of a job that does not go through a GatedPlan (:func:`sparse_compute`)."""
    masks = views.masks
    support = hw.sparsity_support
    unit = layout.unit
    if hw.pe_array.dataflow in SYSTOLIC_DATAFLOWS:
        # Systolic arrays exploit only N:M weights, in the forward pass (SCALE-Sim v3).
        nm = masks.nm if (use_weight and phase == "fw" and masks.nm
                          and masks.nm[1] in support.nm_m) else None
        if nm is None:  # systolic arrays skip with nothing else
            return SparseCompute.dense(dense_compute, gemm.macs, macs, supported=False)
        t = nm_reduction_length(gemm.t, *nm)
        return SparseCompute.unskipped(cycles_gemm(gemm, hw.pe_array, nm=nm),
                                       gemm.sr * gemm.sc * t * gemm.count, macs, dense_compute)
    if not use_gate and not use_weight:  # supported: a gate FW must compute dense
        return SparseCompute.dense(dense_compute, gemm.macs, macs, supported=bool(
            masks.has_gate and phase in support.gate))
    compaction = hw.decoder.compaction
    rows, pass_len = hw.pe_array.rows, hw.pe_array.rows * hw.pe_array.sync_tiles
    if use_weight and phase == "fw" and masks.nm and masks.nm[1] in support.nm_m:
        # N:M multiplexers: each lane selects its N kept inputs of every M; steps shrink exactly.
        return _nm_tensor(layer, gemm, views, hw, macs, dense_compute, use_gate, unit)
    if (use_weight and phase == "bd" and masks.nm and masks.nm_transposed and not use_gate
            and masks.nm[1] in support.nm_m and not layout.tree):
        # Transposable N:M: BD's reduction over output channels is N:M too, so the same
        # multiplexers select each lane's N kept dY values of every M.
        return _nm_multiplexed(gemm, masks.nm, hw, macs, dense_compute)
    work: PhaseWork | PassSums
    matrices = compaction or hw.decoder.balance_rows  # the per-row work path
    if phase == "fw":
        work = (fw_work(layer, views, unit, use_gate=use_gate, use_weight=use_weight,
                        compaction=compaction, tree=layout.tree, scheduler=layout.scheduler)
                if matrices else
                fw_sums(layer, views, unit, rows, pass_len, use_gate=use_gate,
                        use_weight=use_weight, tree=layout.tree, scheduler=layout.scheduler))
    elif phase == "bd" and layout.tree:
        work, tree_macs = bd_tree_work(layer, views, layout.tree, use_gate=use_gate,
                                       use_weight=use_weight, scheduler=layout.scheduler,
                                       queues=(rows, pass_len, layout.qcols))
    elif phase == "bd":
        work = (bd_work(layer, views, unit, use_gate=use_gate, use_weight=use_weight)
                if matrices else
                bd_sums(layer, views, unit, rows, pass_len, use_gate=use_gate,
                        use_weight=use_weight))
    elif hw.pe_array.wg_lanes == "input_channels":
        work = wg_transposed_work(layer, views, unit, use_gate=use_gate, use_weight=use_weight)
    else:
        work = (wg_work(layer, views, unit, use_gate=use_gate, use_weight=use_weight,
                        rows=rows, pass_len=pass_len, compaction=compaction) if matrices else
                wg_sums(layer, views, unit, rows, pass_len, use_gate=use_gate,
                        use_weight=use_weight))
    order = None
    if hw.decoder.balance_rows and isinstance(work, PhaseWork):
        order = row_order(work, rows, pass_len)
        work = reordered(work, order, rows, pass_len)
    if isinstance(work, PhaseWork) and not compaction:
        work = matrix_sums(work, rows, pass_len)
    stage = stage_layout(hw, layout)
    staged = (staged_compute(layer, phase, views, stage, use_gate=use_gate,
                             use_weight=use_weight, order=order)
              if stage is not None else None)
    run = schedule(work, hw, layout.qcols, staged)
    if phase == "fw" and layout.tree:
        weight = masks.weight if use_weight else None
        run = dataclasses.replace(run, macs_issued=tree_macs_issued(
            layer, views, layout.tree, use_gate and masks.has_gate, weight, layout.scheduler))
    elif phase == "bd" and layout.tree:
        run = dataclasses.replace(run, macs_issued=tree_macs)
    if layout.scheduler is not None:  # the work went through the scheduler's multiplexers
        run = dataclasses.replace(run, compacted=True)
    return SparseCompute.of(run, macs, dense_compute)


def _nm_tensor(layer: Layer, gemm: Gemm, views: MaskViews, hw: HardwareConfig,
               macs: JobMacs, dense_compute: int, use_gate: bool,
               unit: int) -> SparseCompute:
    """FW with N:M weights on multiplexed lanes: the reduction shrinks to t' = (t//M)*N +
    min(t%M, N) steps. With a gate too, the gate's unit work is computed as usual and every unit's
    steps are scaled by t'/t (rounded up): the multiplexers shrink base and conditional paths
    alike."""
    masks = views.masks
    n, m_ = masks.nm  # type: ignore[misc]
    t = nm_reduction_length(gemm.t, n, m_)
    pe = hw.pe_array
    if not use_gate:
        return _nm_multiplexed(gemm, (n, m_), hw, macs, dense_compute)
    gated = views.without_weights()
    steps: PhaseWork | PassSums
    stage = stage_layout(hw, lane_layout(hw, "fw"))
    rows, pass_len = pe.rows, pe.rows * pe.sync_tiles
    order = None
    if hw.decoder.compaction or hw.decoder.balance_rows:
        work = fw_work(layer, gated, unit, use_gate=True, use_weight=False,
                       compaction=hw.decoder.compaction)
        scaled = scaled_steps(work.counts.astype(np.int64), (t, gemm.t)).astype(np.int32)
        metadata = np.full(work.col_idx.shape, math.ceil(gemm.t / m_), dtype=np.int64)
        steps = PhaseWork(scaled, work.classes, work.unit_idx, work.row_idx, metadata,
                          work.lanes)
        if hw.decoder.balance_rows:
            order = row_order(steps, rows, pass_len)
            steps = matrix_sums(reordered(steps, order, rows, pass_len), rows, pass_len)
    else:
        sums = fw_sums(layer, gated, unit, rows, pass_len, use_gate=True,
                       use_weight=False, scale=(t, gemm.t))
        metadata = np.full(sums.col_idx.shape, math.ceil(gemm.t / m_), dtype=np.int64)
        steps = PassSums(sums.sums, sums.classes, sums.lanes, sums.unit_idx_sums,
                         sums.row_idx_sums, metadata)
    staged = (None if stage is None
              else staged_compute_nm(layer, gated, stage, t, gemm.t, order=order))
    return SparseCompute.of(schedule(steps, hw, queue_columns(hw, unit), staged), macs,
                            dense_compute)


def _nm_multiplexed(gemm: Gemm, nm: tuple[int, int], hw: HardwareConfig, macs: JobMacs,
                    dense_compute: int) -> SparseCompute:
    """A GEMM whose reduction is N:M for every lane, on multiplexed lanes without a gate: every
    unit runs t' = (t//M)*N + min(t%M, N) steps (the groups of a grouped conv one after
    another) and the decoder reads one metadata index per group of M per output column."""
    n, m = nm
    t = nm_reduction_length(gemm.t, n, m)
    pe = hw.pe_array
    cycles = cycles_dense_tensor(gemm.sr, t, gemm.sc, pe.rows, pe.cols, pe.vector_width,
                                 pe.pipeline_latency) * gemm.count
    metadata = math.ceil(gemm.t / m) * gemm.sc * gemm.count
    return SparseCompute(cycles, 0, metadata, gemm.sr * gemm.sc * t * gemm.count, macs,
                         dense_compute)


@dataclass(frozen=True, eq=False)
class GatedPlan:
    """A gated job without weight masks, planned once for its layer, base path and hardware:
    what :func:`sparse_compute` derives from everything but the gate bits, so that a step's
    compute is the gate's counts, one sums kernel and :func:`schedule_sums`
    (:meth:`compute`). A replay keeps one per job (:class:`accelsim.engine.cache.
    ReplayCache`); ``sums`` None: the job runs dense on this hardware (the phase does not skip
    with the gate, or a systolic array)."""

    layer: Layer
    phase: str
    dense_compute: int            # cycles of the job dense
    macs_dense: int
    sums: FwPlan | BdPlan | WgPlan | None  # the phase's plan; None: runs dense
    qcols: int
    indices_per_cycle: int
    latency: int                  # pipeline latency, cycles
    tree: int = 0                 # FW on adder-tree lanes of this width (issued MACs exact)
    supported: bool = True        # the hardware skips with gates in this phase (sums None:
    #                               the gate's straight-through FW needs every MAC)
    stage: StageLayout | None = None  # the operand stage that bounds each pass, if any

    def compute(self, masks: LayerMasks | MaskViews) -> SparseCompute:
        """The job's compute with the gate of ``masks`` (same base path and group size as
        the plan's)."""
        views = as_views(masks)
        macs = job_macs(self.layer, views, self.phase)
        if self.sums is None:
            return SparseCompute.dense(self.dense_compute, self.macs_dense, macs,
                                       supported=self.supported)
        work = self.sums.gated(views)
        staged = (staged_compute(self.layer, self.phase, views, self.stage, use_gate=True,
                                 use_weight=False) if self.stage is not None else None)
        run = schedule_pass_sums(work, self.qcols, self.indices_per_cycle, self.latency,
                                 staged)
        if self.tree:
            run = dataclasses.replace(run, macs_issued=tree_macs_issued(
                self.layer, views, self.tree, True, None))
        return SparseCompute.of(run, macs, self.dense_compute)


def fw_skips_gates(hw: HardwareConfig) -> bool:
    """Whether FW on ``hw`` can skip conditional work with a gate (a tensor array that lists
    fw in ``sparsity_support.gate``)."""
    return "fw" in hw.sparsity_support.gate and hw.pe_array.dataflow not in SYSTOLIC_DATAFLOWS


def plans_gate(layer: Layer, masks: LayerMasks) -> bool:
    """Whether a job with ``masks`` goes through a :class:`GatedPlan`: a gate, no weight mask
    and no declared N:M pattern, on an ungrouped layer."""
    return (masks.has_gate and masks.weight is None and masks.nm is None
            and layer.groups == 1)


def gated_plan(layer: Layer, phase: str, masks: LayerMasks | MaskViews,
               hw: HardwareConfig) -> GatedPlan | None:
    """The :class:`GatedPlan` of a job, or None when it has none (:func:`plans_gate` fails, or
    compaction on a tensor array: the per-pixel work path)."""
    views = as_views(masks)
    masks = views.masks
    if not plans_gate(layer, masks):
        return None
    pe = hw.pe_array
    systolic = pe.dataflow in SYSTOLIC_DATAFLOWS
    skips = (phase in hw.sparsity_support.gate and not systolic
             and masks.skips_with_gate(phase))
    if skips and (hw.decoder.compaction or hw.decoder.balance_rows
                  or (phase == "wg" and pe.wg_lanes != "output_channels")
                  or (phase == "bd" and pe.adder_tree("bd"))
                  or (pe.adder_tree(phase) and hw.decoder.lane_scheduler != "none")):
        return None  # the per-pixel (or transposed WG's per-channel) work path
    gemm = phase_gemm(layer, phase, pe)
    layout = lane_layout(hw, phase)
    unit = layout.unit
    rows, pass_len = pe.rows, pe.rows * pe.sync_tiles
    sums: FwPlan | BdPlan | WgPlan | None = None
    if skips and phase == "fw":
        sums = fw_plan(layer, views, unit, rows, pass_len, True, None, None, layout.tree)
    elif skips and phase == "bd":
        sums = bd_plan(layer, views, unit, rows, pass_len, True, None)
    elif skips:
        sums = wg_plan(layer, views, unit, rows, pass_len)
    return GatedPlan(layer, phase, dense_cycles(layer, phase, pe), gemm.macs, sums,
                     layout.qcols, decoder_throughput(hw), pe.pipeline_latency,
                     layout.tree if sums is not None else 0,
                     supported=phase in hw.sparsity_support.gate and not systolic,
                     stage=stage_layout(hw, layout))
