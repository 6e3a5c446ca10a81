"""Compose the PE-array, memory and energy models into per-job results and the job table.

A job is one layer x one branch x one training phase (x one recorded step when replaying a trace).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import pandas as pd

from accelsim.config import HardwareConfig
from accelsim.engine.energy import EnergyRates, energy_of
from accelsim.engine.masks import LayerMasks
from accelsim.engine.memory import (
    GatedForward,
    MemoryResult,
    combine_cycles,
    cycles_buffer,
    cycles_dram,
    memory_dense,
)
from accelsim.engine.sparse import (
    SparseCompute,
    fw_skips_gates,
)
from accelsim.engine.vector import (
    DEFAULT_OPTIMIZER,
    NO_DUTIES,
    NonMacDuties,
    NonMacWork,
    job_duties,
)
from accelsim.network import PHASES, Layer, Network

if TYPE_CHECKING:
    from accelsim.engine.cache import ReplayCache


@dataclass(frozen=True)
class JobResult:
    """One result row. Units are in the names: cycles, bytes, bits, pJ; MACs are counts.

    ``macs_effective`` is what a FLOPs count says (the algorithm's view); ``macs_required`` what
    the training algorithm needs computed (more in FW when a straight-through gate gradient needs
    the conditional output everywhere); ``macs_issued`` what the hardware spends, idle lanes of
    active lock-step units included; ``sparsity_supported`` is 1 where the hardware can skip
    with the job's masks in its phase (whether or not the training algorithm lets it; with
    a gate and a weight mask, with either), 0 where it has no support for them there (or the
    job has no masks). ``cycles_dense``,
    ``cycles_compute_dense`` and
    ``energy_dense_pj`` are the same job without any skipping on the same hardware.
    ``index_bits`` are the stored indices this job uses, in the format the hardware uses;
    ``index_bits_bitmap`` the same masks as unstructured element bitmaps.

    The ``*_non_mac*`` fields are the vector unit's work this job carries
    (:mod:`accelsim.engine.vector`): the cycles it adds after the job's MACs (``_dense``: the
    dense network's, after the dense job's MACs, without the gate's arithmetic and with every
    weight updated), its operations, DRAM bytes and energy (static energy over its cycles included);
    ``stash_bytes`` is what FW keeps in DRAM for backward. ``cycles`` and
    ``energy_pj`` are the MAC job's alone: a whole step adds both.
    """

    trace: str
    step: int
    layer: str
    branch: int
    phase: str
    macs_dense: int
    macs_effective: int
    macs_required: int
    macs_issued: int
    cycles_compute: int
    cycles_decoder_stall: int
    cycles_stage_wait: int
    cycles_buffer: int
    cycles_dram: int
    cycles: int
    cycles_dense: int
    cycles_compute_dense: int
    sparsity_supported: int  # 1: the hardware can skip with this job's masks in its phase
    speedup: float
    utilization: float
    decoder_indices: int
    index_bits: int
    index_bits_bitmap: int
    dram_bytes: float
    traffic_activations_bytes: float
    traffic_weights_bytes: float
    traffic_gradients_bytes: float
    traffic_indices_bytes: float
    tiling: str
    energy_pj: float
    energy_mac_pj: float
    energy_rf_pj: float
    energy_buffer_pj: float
    energy_dram_pj: float
    energy_index_pj: float
    energy_network_pj: float
    energy_static_pj: float
    energy_dense_pj: float
    cycles_non_mac: int
    cycles_non_mac_dense: int
    non_mac_ops: float
    dram_bytes_non_mac: float
    energy_non_mac_pj: float
    energy_non_mac_vector_pj: float
    energy_non_mac_buffer_pj: float
    energy_non_mac_dram_pj: float
    energy_non_mac_static_pj: float
    energy_non_mac_dense_pj: float
    stash_bytes: float

    def row(self) -> dict[str, object]:
        """The result as a flat dict (one tidy-table row, in the declared field order). Every
        field is a number or a string, so this is what ``dataclasses.asdict`` gives, without
        its recursive deep copy."""
        values = self.__dict__
        return {name: values[name] for name in ROW_FIELDS}

    @classmethod
    def of(cls, fields: dict[str, object]) -> JobResult:
        """A result holding ``fields`` (all of them, by name): what ``JobResult(**fields)``
        gives, without the frozen dataclass's ``__init__`` (which sets each of its 33 fields
        through ``object.__setattr__``; the row is new, so filling its ``__dict__`` is safe).
        Tests require the rows made this way to hold exactly the declared fields."""
        result = object.__new__(cls)
        result.__dict__.update(fields)
        return result


ROW_FIELDS: tuple[str, ...] = tuple(JobResult.__dataclass_fields__)  # the job table's columns


def results_frame(rows: Sequence[JobResult], hw: HardwareConfig | None = None,
                  varied: Mapping[str, object] | None = None) -> pd.DataFrame:
    """The tidy job table: one row per job, snake_case columns with units in their names;
    with ``hw``, the hardware columns ``hw.name``, ``hw.digest`` and ``hw.<key>`` for each
    varied key (``varied``: dotted key -> this config's value), so that the job tables of a
    sweep's points concatenate into one table."""
    frame = pd.DataFrame([r.row() for r in rows], columns=list(ROW_FIELDS))
    if hw is not None:
        frame["hw.name"] = hw.name
        frame["hw.digest"] = hw.digest()
        for key, value in (varied or {}).items():
            frame[f"hw.{key}"] = [value] * len(frame) if isinstance(value, list) else value
    return frame


@dataclass(frozen=True)
class IndexCost:
    """Indices one job uses (bits): stored size in the hardware's format and as element bitmaps,
    and what the job reads and writes in DRAM."""

    bits: int = 0
    bits_bitmap: int = 0
    read_bits: int = 0
    write_bits: int = 0


NO_INDEX = IndexCost()


def declared_masks(layer: Layer) -> LayerMasks:
    """Masks of a layer without recorded bits: a topology row's declared N:M, or nothing."""
    return LayerMasks(nm=layer.nm)


@dataclass(frozen=True)
class DenseJob:
    """The mask-independent half of a job: the same job without any skipping (cycles, pJ)."""

    macs: int
    cycles: int
    energy_pj: float


def dense_job(layer: Layer, phase: str, hw: HardwareConfig, cycles_compute: int) -> DenseJob:
    """The job dense on ``hw`` (``cycles_compute``: its dense compute cycles)."""
    memory = memory_dense(layer, phase, hw)
    buffer = cycles_buffer(memory.gb_read_bits, memory.gb_write_bits, hw)
    cycles = combine_cycles(cycles_compute, buffer, cycles_dram(memory.dram_bytes, hw),
                            hw.dram.double_buffering)
    macs = layer.gemm(phase).macs
    energy = energy_of(macs_issued=macs, gb_read_bits=memory.gb_read_bits,
                       gb_write_bits=memory.gb_write_bits, rf_fill_bits=memory.rf_fill_bits,
                       dram_bytes=memory.dram_bytes,
                       indices_decoded=0, cycles=cycles, hw=hw)
    return DenseJob(macs, cycles, energy.total)


@dataclass(frozen=True)
class JobFrame:
    """Everything of one job's result that its compute does not change: names, dense half,
    index bits, memory traffic, buffer and DRAM cycles and the energy rates of ``hw``. A replay
    keeps one per job and step-independent inputs; :meth:`result` adds a step's compute."""

    trace: str
    layer: str
    branch: int
    phase: str
    dense: DenseJob
    index: IndexCost
    memory: MemoryResult
    cycles_buffer: int
    cycles_dram: int
    hw: HardwareConfig
    rates: EnergyRates
    non_mac: NonMacWork
    non_mac_dense: NonMacWork  # the same job's in the dense network: no gate to compute

    def result(self, compute: SparseCompute, step: int,
               non_mac: NonMacWork | None = None) -> JobResult:
        """The job's row at ``step`` with ``compute`` (``non_mac``: this step's non-MAC work
        where it differs from the frame's, :meth:`accelsim.engine.cache.ReplayCache.non_mac`)."""
        hw, dense, index, memory = self.hw, self.dense, self.index, self.memory
        macs_dense = dense.macs
        buffer, dram = self.cycles_buffer, self.cycles_dram
        cycles = combine_cycles(compute.cycles_compute, buffer, dram, hw.dram.double_buffering)
        cycles_dense = dense.cycles
        non_mac = self.non_mac if non_mac is None else non_mac
        cycles_non_mac = non_mac.cycles(cycles)
        cycles_non_mac_dense = self.non_mac_dense.cycles(cycles_dense)
        energy = self.rates.breakdown(
            macs_issued=compute.macs_issued, gb_read_bits=memory.gb_read_bits,
            gb_write_bits=memory.gb_write_bits, rf_fill_bits=memory.rf_fill_bits,
            dram_bytes=memory.dram_bytes, indices_decoded=compute.decoder_indices,
            cycles=cycles, network_macs=compute.macs_issued if compute.compacted else 0)
        return JobResult.of(dict(
            trace=self.trace, step=step, layer=self.layer, branch=self.branch,
            phase=self.phase, macs_dense=macs_dense, macs_effective=compute.macs_effective,
            macs_required=compute.macs_required, macs_issued=compute.macs_issued,
            cycles_compute=compute.cycles_compute,
            cycles_decoder_stall=compute.cycles_decoder_stall,
            cycles_stage_wait=compute.cycles_stage_wait, cycles_buffer=buffer,
            cycles_dram=dram, cycles=cycles, cycles_dense=cycles_dense,
            cycles_compute_dense=compute.cycles_compute_dense,
            sparsity_supported=int(compute.supported),
            speedup=cycles_dense / cycles if cycles else 1.0,
            utilization=compute.macs_effective / (cycles * hw.pe_array.macs_per_cycle)
            if cycles else 0.0,
            decoder_indices=compute.decoder_indices, index_bits=index.bits,
            index_bits_bitmap=index.bits_bitmap, dram_bytes=memory.dram_bytes,
            traffic_activations_bytes=memory.activations_bytes,
            traffic_weights_bytes=memory.weights_bytes,
            traffic_gradients_bytes=memory.gradients_bytes,
            traffic_indices_bytes=memory.indices_bytes,
            tiling=memory.tiling,
            energy_pj=energy.total, energy_mac_pj=energy.mac, energy_rf_pj=energy.rf,
            energy_buffer_pj=energy.buffer, energy_dram_pj=energy.dram,
            energy_index_pj=energy.index, energy_network_pj=energy.network,
            energy_static_pj=energy.static,
            energy_dense_pj=dense.energy_pj,
            cycles_non_mac=cycles_non_mac, cycles_non_mac_dense=cycles_non_mac_dense,
            non_mac_ops=non_mac.ops, dram_bytes_non_mac=non_mac.dram_bytes,
            energy_non_mac_pj=non_mac.energy_pj + self.rates.static(cycles_non_mac),
            energy_non_mac_vector_pj=non_mac.energy_vector_pj,
            energy_non_mac_buffer_pj=non_mac.energy_buffer_pj,
            energy_non_mac_dram_pj=non_mac.energy_dram_pj,
            energy_non_mac_static_pj=self.rates.static(cycles_non_mac),
            energy_non_mac_dense_pj=self.non_mac_dense.energy_pj
            + self.rates.static(cycles_non_mac_dense),
            stash_bytes=non_mac.stash_bytes,
        ))


def simulate_job(layer: Layer, phase: str, hw: HardwareConfig, *,
                 masks: LayerMasks | None = None, index: IndexCost = NO_INDEX,
                 weight_density: float = 1.0, dw_density: float = 1.0, branch: int = 1,
                 step: int = 0, trace: str = "", cache: ReplayCache | None = None,
                 duties: NonMacDuties = NO_DUTIES) -> JobResult:
    """Simulate one job: compute (from the masks), memory, energy, and the same job dense.
    ``cache``: kept by the caller (:class:`accelsim.engine.cache.ReplayCache`: a replay
    computes each job's frame once per trace, not once per step); None: a fresh one for this
    job. A gate with a base path
    pays for computing the gate in FW (:func:`accelsim.engine.memory.gate_extra`).
    ``duties``: the non-MAC work the job carries (:func:`accelsim.engine.vector.job_duties`)."""
    from accelsim.engine.cache import ReplayCache  # the cache wraps this module's functions

    masks = masks if masks is not None else declared_masks(layer)
    cache = cache if cache is not None else ReplayCache()
    compute = cache.compute(layer, phase, masks, hw)
    gated = None
    if phase == "fw" and masks.base is not None:
        gated = GatedForward(masks.base.groups, masks.base.base_chunks,
                             masks.dense_fw_conditional or not fw_skips_gates(hw))
    frame = cache.frame(layer, phase, hw, weight_density, dw_density, index, branch, trace,
                        compute.cycles_compute_dense, gated, duties)
    return frame.result(compute, step)


def simulate_layer_phase(layer: Layer, phase: str, hw: HardwareConfig, *, branch: int = 1,
                         step: int = 0, workload: str = "",
                         duties: NonMacDuties = NO_DUTIES) -> JobResult:
    """Simulate one job without recorded masks (topology N:M declarations apply)."""
    return simulate_job(layer, phase, hw, branch=branch, step=step, trace=workload,
                        duties=duties)


def phases_for(layer_index: int, phases: Sequence[str], skip_first_bd: bool) -> list[str]:
    """Phases a layer runs: BD of the first layer is skipped by default (no input gradient)."""
    return [p for p in phases if not (p == "bd" and layer_index == 0 and skip_first_bd)]


def simulate_network_dense(network: Network, hw: HardwareConfig, *,
                           phases: Sequence[str] = PHASES, branches: Iterable[int] = (1, 2),
                           skip_first_bd: bool = True,
                           optimizer: str = DEFAULT_OPTIMIZER) -> list[JobResult]:
    """Dense training step of ``network``: every layer x branch x phase, each branch running
    forward and backward (SimCLR's two views); the ``optimizer`` step rides on the first
    branch's WG jobs."""
    unknown = [p for p in phases if p not in PHASES]
    if unknown:
        raise ValueError(f"unknown phases {unknown}; expected a subset of {PHASES}")
    results = []
    branches = tuple(branches)
    for position, branch in enumerate(branches):
        for index, layer in enumerate(network.layers):
            layer_phases = tuple(phases_for(index, phases, skip_first_bd))
            for phase in layer_phases:
                duties = job_duties(phase, layer_phases,
                                    runs_backward=any(p != "fw" for p in phases),
                                    optimizer=optimizer if position == 0 else "",
                                    gradients=len(branches))
                results.append(simulate_layer_phase(layer, phase, hw, branch=branch,
                                                    workload=network.name, duties=duties))
    return results
