"""Replay a recorded trace: every step x layer x branch x phase, from the actual mask bits.

Per (step, layer, branch) the masks are prepared once (element-level gate, base-path structure,
flattened weights; an all-ones mask runs in dense mode) and their index storage is priced in the
cheapest format the decoder supports (:mod:`accelsim.engine.indices`). Then each phase's compute is
found once (:meth:`accelsim.engine.cache.ReplayCache.compute`) and priced into a row on each
hardware config replayed (:class:`accelsim.engine.simulator.JobFrame`): configs that differ only
in what compute never reads (:func:`accelsim.engine.sparse.compute_key`: memory, energy, clock,
precision) share one compute, so a sweep over such parameters replays the masks once. What the
replay keeps between jobs and steps is in its one :class:`~accelsim.engine.cache.ReplayCache`.

Index traffic: FW writes the gate index when a later phase (BD, WG) skips with it, and those
phases read it back; weight indices are read by every phase that reads compressed weights
(``dram.compress_sparse``) or skips with them. A momentum method's target encoder (BYOL, MoCo:
branch 2, and branch 4 of a symmetric loss) runs the forward phase only. Each job carries its
share of the vector unit's non-MAC work (:mod:`accelsim.engine.vector`): a layer's post ops in
FW and in its first backward phase, the optimizer step on branch 1's WG and a momentum
encoder's update on branch 2's FW.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from accelsim.config import HardwareConfig
from accelsim.engine.cache import ReplayCache
from accelsim.engine.dgc import refuse_dgc
from accelsim.engine.indices import (
    NO_MASK_INDEX,
    MaskIndex,
    gate_index_packed,
    parse_weight_pattern,
    select_index,
    training_weight_index,
)
from accelsim.engine.masks import BasePath, LayerMasks, PackedGate
from accelsim.engine.memory import GatedForward
from accelsim.engine.simulator import IndexCost, JobResult, phases_for
from accelsim.engine.sparse import SparseCompute, compute_key, fw_skips_gates
from accelsim.engine.vector import NonMacDuties, job_duties, recorded_optimizer
from accelsim.errors import InputError
from accelsim.kernels import popcount_words
from accelsim.network import (
    MOMENTUM_SSL,
    PHASES,
    SYMMETRIC_BRANCHES,
    encoder_branch,
    is_target_branch,
)
from accelsim.sparsity import (
    nm_fits,
)
from accelsim.trace import TraceLayer, TraceReader


@dataclass(frozen=True)
class PhaseJob:
    """What one phase of a layer on one branch reads and writes besides its masks' bits."""

    phase: str
    index: IndexCost        # the indices it uses (stored, read, written)
    weight_density: float   # density of the compressed weights it reads (1: dense)
    dw_density: float       # density of the weight gradient it writes (1: dense)
    gated_forward: GatedForward | None  # FW of a gated layer with a base path (gate_extra)
    # the gate's index is stored for BD / WG and sparse tensors are stored compressed, so a
    # masked gate gradient's Y_c can be stored where the gate is open only
    compresses_y_c: bool = False


@dataclass(frozen=True)
class PreparedWeight:
    """A stored weight mask ready for replay: flattened (F, K) bool (None: no mask or all
    ones), its index, its N:M pattern when it satisfies the declared one, and its density."""

    mask: np.ndarray | None
    index: MaskIndex
    nm: tuple[int, int] | None
    density: float
    nm_transposed: bool = False  # the N:M pattern holds along the output channels too
    bd_index: MaskIndex = NO_MASK_INDEX  # the transposed copy BD reads (training_weight_index)


NO_WEIGHT = PreparedWeight(None, NO_MASK_INDEX, None, 1.0)


class Replayer:
    """Replays one trace on one hardware config, or on several that share their compute
    (``also``: configs with the same :func:`~accelsim.engine.sparse.compute_key` as ``hw``;
    their rows come from :meth:`replay_step_all`)."""

    def __init__(self, trace_path: str | Path, hw: HardwareConfig,
                 phases: Sequence[str] = PHASES, *,
                 also: Sequence[HardwareConfig] = ()) -> None:
        self.path = Path(trace_path)
        self.reader = TraceReader(self.path, count_words=popcount_words)
        self.hw = hw
        self.hws = (hw, *also)
        key = compute_key(hw)
        if any(compute_key(other) != key for other in also):
            raise ValueError("configs replayed together must share their compute_key")
        self.phases = tuple(phases)
        self.name = self.path.name
        self.ssl = str(self.reader.manifest.producer.get("ssl", "")).lower()
        self.momentum = self.ssl in MOMENTUM_SSL
        if self.momentum and self.reader.branches not in (2, SYMMETRIC_BRANCHES):
            raise InputError(f"a {self.ssl} trace records 2 branches (online, target) or "
                             f"{SYMMETRIC_BRANCHES} (a symmetric loss), got "
                             f"{self.reader.branches}", path=str(self.path), field="branches")
        refuse_dgc(self.reader.layers, hw, self.phases, str(self.path))  # before any work
        self.cache = ReplayCache()
        # (branch, layer, phases) of every layer that runs on a branch
        self._layer_phases = [
            (branch, item, phases)
            for branch in range(1, self.reader.branches + 1)
            for index, item in enumerate(self.reader.layers)
            if (phases := tuple(self.branch_phases(branch, index)))]
        self.optimizer = recorded_optimizer(self.reader.manifest.producer)
        self._duties = {(branch, item.name, phase): self._job_duties(branch, item, phase, phases)
                        for branch, item, phases in self._layer_phases for phase in phases}
        self._phases_of = {(item.name, branch): phases
                           for branch, item, phases in self._layer_phases}

    def _job_duties(self, branch: int, item: TraceLayer, phase: str,
                    phases: tuple[str, ...]) -> NonMacDuties:
        """The non-MAC work of a job (:func:`accelsim.engine.vector.job_duties`): the optimizer
        rides on branch 1 and sums the weight gradients of every branch that ran WG (both in
        SimCLR, the online passes of a momentum method: two with a symmetric loss), a momentum
        encoder's update rides on branch 2's FW (once per step, symmetric or not)."""
        gate = item.gate
        online = [b for b in range(1, self.reader.branches + 1)
                  if not is_target_branch(b, self.ssl)]
        return job_duties(phase, phases,
                          runs_backward=not is_target_branch(branch, self.ssl)
                          and any(p != "fw" for p in self.phases),
                          gate_group_size=gate.group_size if gate is not None
                          and gate.gating_groups > 1 else 0,
                          optimizer=self.optimizer if branch == 1 else "",
                          gradients=len(online),
                          ema=self.momentum and branch == 2)

    def branch_phases(self, branch: int, layer_index: int) -> list[str]:
        phases = phases_for(layer_index, self.phases, skip_first_bd=True)
        if is_target_branch(branch, self.ssl):
            return [p for p in phases if p == "fw"]
        return phases

    def _base(self, item: TraceLayer, branch: int) -> BasePath:
        """The layer's base path on this branch (cached: fixed for the whole trace)."""
        gate = item.gate
        assert gate is not None
        return self.cache.bases.get((item.name, branch), lambda: BasePath.of_layer(
            item.layer, gate.gating_groups, gate.base_chunks[branch - 1]))

    def _weight(self, key: tuple[str, int, int] | None, item: TraceLayer, branch: int,
                mask: np.ndarray | None) -> PreparedWeight:
        """Flattened sparse weight mask (None when absent or all ones), its index, N:M pattern
        and density, kept for the layer and branch while ``key`` stays the same
        (:meth:`_weight_key`: weights are often unchanged between steps). Only the latest
        stored mask is kept per layer and branch: steps replay in order and a weight mask, once
        replaced, never comes back."""
        if key is None or mask is None:
            return NO_WEIGHT
        held = self.cache.weights.peek((item.name, branch))
        if held is not None and held[0] == key:
            return held[1]
        prepared = NO_WEIGHT
        nnz = int(np.count_nonzero(mask))  # counted once for the check, index and density
        if nnz < mask.size:
            assert item.weight is not None  # a weight key implies a weight spec
            where = f"weight mask of layer {item.name!r}, branch {branch}"
            kind, numbers = parse_weight_pattern(item.weight.pattern)
            declared_nm = kind in ("nm", "nmt") and numbers is not None
            fit = declared_nm and nm_fits(mask, *numbers)
            transposed = fit and kind == "nmt" and nm_fits(mask, *numbers, axis=0)
            flat = np.ascontiguousarray(mask.reshape(mask.shape[0], -1))
            stored = training_weight_index(
                mask, item.weight.pattern, self.hw, where,
                bd_reads="bd" in self._phases_of[(item.name, branch)]
                and reads_weight_index(self.hw, "bd", numbers if fit else None, False),
                nm_fit=fit if declared_nm else None, nnz=nnz)
            prepared = PreparedWeight(flat, stored.index, numbers if fit else None,
                                      nnz / flat.size, nm_transposed=transposed,
                                      bd_index=stored.bd)
        self.cache.weights.put((item.name, branch), (key, prepared))
        return prepared

    def _weight_key(self, step: int, item: TraceLayer, branch: int) -> tuple[str, int, int]:
        """(layer, branch, the step that stores the weight mask used at ``step``)."""
        stored = self.reader.weight_step(step, item.name, branch)
        return item.name, branch, stored if stored is not None else step

    def _phase_jobs(self, hw: HardwareConfig, item: TraceLayer, branch: int,
                    phases: tuple[str, ...], gidx: MaskIndex, gated: bool,
                    prepared: PreparedWeight, dense_gradient: bool) -> list[PhaseJob]:
        """The :class:`PhaseJob` of each phase the layer runs on this branch on ``hw``."""
        support, dram = hw.sparsity_support, hw.dram
        weight, widx = prepared.mask, prepared.index
        gate_later = any(p in support.gate for p in ("bd", "wg") if p in phases)
        compressed = weight is not None and dram.compress_sparse
        writes_sparse_dw = weight is not None and "wg" in support.weight and not dense_gradient
        jobs = []
        for phase in phases:
            uses_gate = gated and (phase in support.gate or (phase == "fw" and gate_later))
            reads_weight = weight is not None and reads_weight_index(hw, phase, prepared.nm,
                                                                     dense_gradient)
            # BD reads W^T: the transposed copy when the stored format needs one
            read = prepared.bd_index if phase == "bd" and prepared.bd_index.bits else widx
            index = IndexCost(
                bits=(gidx.bits if uses_gate else 0) + (read.bits if reads_weight else 0),
                bits_bitmap=(gidx.bits_bitmap if uses_gate else 0)
                + (widx.bits_bitmap if reads_weight else 0),
                read_bits=(gidx.bits if uses_gate and phase != "fw" else 0)
                + (read.bits if reads_weight else 0),
                write_bits=gidx.bits if (uses_gate and phase == "fw" and gate_later) else 0,
            )
            jobs.append(PhaseJob(phase, index, prepared.density if compressed else 1.0,
                                 prepared.density if writes_sparse_dw else 1.0,
                                 gated_forward=_gated_forward(item, branch, hw)
                                 if phase == "fw" else None,
                                 compresses_y_c=gated and item.gate is not None and gate_later
                                 and dram.compress_sparse))
        return jobs

    def replay_step(self, step: int) -> tuple[list[JobResult], dict[str, int]]:
        """All jobs of one recorded step on ``hw``, and its index storage (bits used, bitmap
        bits)."""
        rows, storage = self.replay_step_all(step)
        return rows[0], storage

    def replay_step_all(self, step: int) -> tuple[list[list[JobResult]], dict[str, int]]:
        """All jobs of one recorded step on each config of :attr:`hws` (one row list each,
        every job's compute found once), and its index storage (bits used, bitmap bits: the
        same on every config, whose decoders are equal)."""
        masks_of_step = self.reader.step_packed(step)
        dense_gradient = bool(masks_of_step.stats.get("dense_weight_gradient", False))
        rows: list[list[JobResult]] = [[] for _ in self.hws]
        storage = {"bits": 0, "bits_bitmap": 0}
        for branch, item, phases in self._layer_phases:
            gate_el, base, gidx, groups = None, None, NO_MASK_INDEX, 1
            yc_density = 1.0  # the share of Y_c a masked gate gradient needs stored
            if item.gate is not None:
                gate = masks_of_step.gates[(item.name, branch)]
                if item.gate.gradient == "masked":
                    yc_density = gate.ones / gate.size
                if gate.ones < gate.size:  # an all-ones gate runs in dense mode
                    n, per_group, ho, wo = gate.shape
                    gate_el = PackedGate(gate.data, (n, per_group, ho * wo), gate.ones)
                    gidx = gate_index_packed(
                        gate, item.gate.group_size, self.hw,
                        f"gate mask of layer {item.name!r}, branch {branch}")
                    groups = item.gate.gating_groups
                    if groups > 1:
                        base = self._base(item, branch)
            select = None  # DGC's input selection (a layer with one has no gate)
            if item.select is not None:
                chosen = masks_of_step.selects[(item.name, branch)]
                if not chosen.all():  # an all-ones selection runs in dense mode
                    select = chosen
                    gidx = select_index(select, self.hw, f"input selection of layer "
                                                         f"{item.name!r}, branch {branch}")
            dynamic = gate_el is not None or select is not None  # masks that change every step
            weight_key = (self._weight_key(step, item, branch) if item.weight is not None
                          else None)
            prepared = self._weight(weight_key, item, branch,
                                    masks_of_step.weights.get((item.name, branch)))
            storage["bits"] += gidx.bits
            storage["bits_bitmap"] += gidx.bits_bitmap
            if branch == encoder_branch(branch):  # 3 and 4 reuse their encoders' weights
                storage["bits"] += prepared.index.bits + prepared.bd_index.bits
                storage["bits_bitmap"] += prepared.index.bits_bitmap
            # A job without a gate or selection depends only on its layer, phase, weight mask
            # and the step's dense-gradient flag: its row is kept and reused with the step
            # number.
            job_key = None if dynamic else (
                weight_key or (item.name, branch, None), dense_gradient)
            held = [self.cache.rows.peek((i, item.name, branch)) for i in range(len(self.hws))]
            if job_key is not None and all(h is not None and h[0] == job_key for h in held):
                for i, (_, kept) in enumerate(held):  # type: ignore[misc]
                    rows[i].extend(_at_step(kept[phase], step) for phase in phases)
                continue
            weight = prepared.mask
            masks = LayerMasks(packed_gate=gate_el, gate_group_size=item.gate.group_size
                               if item.gate is not None else 1, base=base, weight=weight,
                               nm=prepared.nm, nm_transposed=prepared.nm_transposed,
                               gating_groups=groups,
                               dense_weight_gradient=dense_gradient,
                               dense_fw_conditional=item.gate is not None
                               and item.gate.gradient == "straight_through",
                               select=select)
            # what the masks' views derive from the weight mask and base path is kept with
            # them: by the step that stored the weights, else by the layer's base path
            views = self.cache.views(
                masks, (item.name, branch) if weight is not None or base is not None else None,
                weight_key if weight is not None else "base path")
            computes: dict[str, SparseCompute] = {}
            for i, hw in enumerate(self.hws):
                jobs_key = (i, item.name, branch, gidx, dynamic, weight_key, dense_gradient)
                jobs = self.cache.phase_jobs.peek(jobs_key)
                if jobs is None:
                    jobs = self._phase_jobs(hw, item, branch, phases, gidx, dynamic,
                                            prepared, dense_gradient)
                    self.cache.phase_jobs.put(jobs_key, jobs)
                layer_rows = {}
                for job in jobs:
                    compute = computes.get(job.phase)
                    if compute is None:
                        compute = computes[job.phase] = self.cache.compute(
                            item.layer, job.phase, views, self.hw)
                    duties = self._duties[(branch, item.name, job.phase)]
                    if duties.optimizer and weight is not None and not dense_gradient and \
                            hw.vector_unit.sparse_updates:  # only the kept weights change
                        duties = dataclasses.replace(duties, update_density=prepared.density)
                    frame = self.cache.frame(
                        item.layer, job.phase, hw, job.weight_density, job.dw_density,
                        job.index, branch, self.name, compute.cycles_compute_dense,
                        job.gated_forward, duties)
                    stored_yc = yc_density if duties.gate_group_size and \
                        job.compresses_y_c else 1.0
                    layer_rows[job.phase] = frame.result(
                        compute, step, None if stored_yc == 1.0 else self.cache.non_mac(
                            item.layer, dataclasses.replace(duties, yc_density=stored_yc), hw))
                rows[i].extend(layer_rows.values())
                if job_key is not None:  # kept for this layer and branch until its key changes
                    self.cache.rows.put((i, item.name, branch), (job_key, layer_rows))
        return rows, storage


def reads_weight_index(hw: HardwareConfig, phase: str, nm: tuple[int, int] | None,
                       dense_gradient: bool) -> bool:
    """Whether ``phase`` on ``hw`` reads a weight mask's index: to decompress compressed
    weights (FW, BD: ``dram.compress_sparse``), or to skip with them (a phase in
    ``sparsity_support.weight`` on a tensor array, or with N:M multiplexers for the mask's
    ``nm``; systolic arrays skip only N:M weights), except WG at a step that needs the dense
    weight gradient."""
    support = hw.sparsity_support
    skips_weights = hw.pe_array.dataflow == "tensor" or (nm is not None and nm[1] in
                                                         support.nm_m)
    return (phase in ("fw", "bd") and hw.dram.compress_sparse) or (
        phase in support.weight and skips_weights and not (phase == "wg" and dense_gradient))


def _gated_forward(item: TraceLayer, branch: int, hw: HardwareConfig) -> GatedForward | None:
    """What computing the gate costs FW of a layer with a gate spec and a base path on ``hw``
    (at every step, all-ones gates included: the gate had to be computed to find it so), or
    None. FW computes the conditional path everywhere with a straight-through gradient, and on
    hardware whose FW does not skip with the gate."""
    gate = item.gate
    if gate is None or gate.gating_groups <= 1:
        return None
    return GatedForward(gate.gating_groups, tuple(gate.base_chunks[branch - 1]),
                        gate.gradient == "straight_through" or not fw_skips_gates(hw))


def _at_step(row: JobResult, step: int) -> JobResult:
    """A copy of ``row`` for ``step``: what dataclasses.replace gives, without its field
    checks and ``__init__``."""
    result = JobResult.of(row.__dict__)
    result.__dict__["step"] = step
    return result


def _replay_steps(args: tuple[str, HardwareConfig, tuple[str, ...], list[int]]) -> list:
    path, hw, phases, steps = args
    replayer = Replayer(path, hw, phases)
    return [replayer.replay_step(step) for step in steps]


def replay_trace(trace_path: str | Path, hw: HardwareConfig, *, phases: Sequence[str] = PHASES,
                 workers: int = 1) -> tuple[list[JobResult], dict[str, int]]:
    """Replay every recorded step; results are in step order whatever ``workers`` is."""
    replayer = Replayer(trace_path, hw, phases)
    steps = replayer.reader.steps
    if not steps:
        raise InputError("the trace has no complete step to replay", path=str(trace_path))
    if workers <= 1 or len(steps) == 1:
        results = [replayer.replay_step(step) for step in steps]
    else:
        workers = min(workers, len(steps), os.cpu_count() or 1)
        chunks = [steps[i::workers] for i in range(workers)]
        with ProcessPoolExecutor(max_workers=workers) as pool:
            parts = list(pool.map(_replay_steps, [(str(trace_path), hw, tuple(phases), c)
                                                  for c in chunks]))
        by_step = {}
        for chunk, part in zip(chunks, parts, strict=True):
            by_step.update(dict(zip(chunk, part, strict=True)))
        results = [by_step[step] for step in steps]
    return [row for step_rows, _ in results for row in step_rows], _total_storage(results)


def _total_storage(per_step: Sequence[tuple[object, dict[str, int]]]) -> dict[str, int]:
    """The index storage (bits used, bitmap bits) of a replay from its steps'."""
    return {"bits": sum(s["bits"] for _, s in per_step),
            "bits_bitmap": sum(s["bits_bitmap"] for _, s in per_step)}


def replay_trace_on(trace_path: str | Path, hws: Sequence[HardwareConfig], *,
                    phases: Sequence[str] = PHASES) -> list[tuple[list[JobResult],
                                                                  dict[str, int]]]:
    """:func:`replay_trace` on each config of ``hws`` (results in the same order): configs that
    share their :func:`~accelsim.engine.sparse.compute_key` are replayed together, each job's
    compute found once for all of them."""
    groups: dict[object, list[int]] = {}
    for index, hw in enumerate(hws):
        groups.setdefault(compute_key(hw), []).append(index)
    results: list[tuple[list[JobResult], dict[str, int]]] = [([], {})] * len(hws)
    for indices in groups.values():
        replayer = Replayer(trace_path, hws[indices[0]], phases,
                            also=[hws[i] for i in indices[1:]])
        if not replayer.reader.steps:
            raise InputError("the trace has no complete step to replay", path=str(trace_path))
        per_step = [replayer.replay_step_all(step) for step in replayer.reader.steps]
        storage = _total_storage(per_step)
        for position, index in enumerate(indices):
            results[index] = ([row for step_rows, _ in per_step for row in step_rows[position]],
                              storage)
    return results
