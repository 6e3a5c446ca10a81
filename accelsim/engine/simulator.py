"""Compose the PE-array, memory and energy models into per-job results and network summaries.

A job is one layer x one branch x one training phase (x one recorded step when replaying a trace).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass

from accelsim.config import HardwareConfig
from accelsim.engine.energy import ENERGY_COMPONENTS, energy_of, tflops_per_watt
from accelsim.engine.memory import (
    combine_cycles,
    cycles_buffer,
    cycles_dram,
    memory_dense,
)
from accelsim.engine.pe_array import cycles_gemm
from accelsim.engine.systolic import nm_reduction_length
from accelsim.network import PHASES, Layer, Network


@dataclass(frozen=True)
class JobResult:
    """One result row. Units are in the names: cycles, bytes, pJ; MACs are counts."""

    workload: str
    step: int
    layer: str
    branch: int
    phase: str
    macs_dense: int
    macs_effective: int
    macs_issued: int
    cycles_compute: int
    cycles_buffer: int
    cycles_dram: int
    cycles: int
    cycles_dense: int
    utilization: float
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
    energy_static_pj: float
    energy_dense_pj: float

    def row(self) -> dict[str, object]:
        """The result as a flat dict (one tidy-table row)."""
        return asdict(self)


def nm_applies(layer: Layer, phase: str, hw: HardwareConfig) -> tuple[int, int] | None:
    """The N:M pattern to time ``layer``'s ``phase`` with, if the layer declares one and the
    hardware supports that M in that phase (SCALE-Sim v3 semantics: forward pass only)."""
    if layer.nm is None or phase != "fw":
        return None
    support = hw.sparsity_support
    if phase not in support.weight or layer.nm[1] not in support.nm_m:
        return None
    return layer.nm


def simulate_layer_phase(layer: Layer, phase: str, hw: HardwareConfig, *, branch: int = 1,
                         step: int = 0, workload: str = "") -> JobResult:
    """Simulate one dense job (N:M-declared topology layers use N:M timing where supported)."""
    gemm = layer.gemm(phase)
    macs_dense = gemm.macs
    cycles_dense_compute = cycles_gemm(gemm, hw.pe_array)
    nm = nm_applies(layer, phase, hw)
    if nm is None:
        cycles_compute, macs_issued, macs_effective = cycles_dense_compute, macs_dense, macs_dense
    else:
        cycles_compute = cycles_gemm(gemm, hw.pe_array, nm=nm)
        macs_issued = gemm.sr * gemm.sc * nm_reduction_length(gemm.t, *nm) * gemm.count
        macs_effective = macs_issued
    memory = memory_dense(layer, phase, hw)
    buffer = cycles_buffer(memory.gb_read_bits, memory.gb_write_bits, hw)
    dram = cycles_dram(memory.dram_bytes, hw)
    double = hw.dram.double_buffering
    cycles = combine_cycles(cycles_compute, buffer, dram, double)
    cycles_dense = combine_cycles(cycles_dense_compute, buffer, dram, double)
    energy = energy_of(macs_issued=macs_issued, gb_read_bits=memory.gb_read_bits,
                       gb_write_bits=memory.gb_write_bits, dram_bytes=memory.dram_bytes,
                       indices_decoded=0, cycles=cycles, hw=hw)
    energy_dense = energy_of(macs_issued=macs_dense, gb_read_bits=memory.gb_read_bits,
                             gb_write_bits=memory.gb_write_bits, dram_bytes=memory.dram_bytes,
                             indices_decoded=0, cycles=cycles_dense, hw=hw)
    return JobResult(
        workload=workload, step=step, layer=layer.name, branch=branch, phase=phase,
        macs_dense=macs_dense, macs_effective=macs_effective, macs_issued=macs_issued,
        cycles_compute=cycles_compute, cycles_buffer=buffer, cycles_dram=dram, cycles=cycles,
        cycles_dense=cycles_dense,
        utilization=macs_effective / (cycles * hw.pe_array.macs_per_cycle) if cycles else 0.0,
        dram_bytes=memory.dram_bytes,
        traffic_activations_bytes=memory.activations_bytes,
        traffic_weights_bytes=memory.weights_bytes,
        traffic_gradients_bytes=memory.gradients_bytes,
        traffic_indices_bytes=memory.indices_bytes,
        tiling=memory.tiling,
        energy_pj=energy.total, energy_mac_pj=energy.mac, energy_rf_pj=energy.rf,
        energy_buffer_pj=energy.buffer, energy_dram_pj=energy.dram,
        energy_index_pj=energy.index, energy_static_pj=energy.static,
        energy_dense_pj=energy_dense.total,
    )


def phases_for(layer_index: int, phases: Sequence[str], skip_first_bd: bool) -> list[str]:
    """Phases a layer runs: BD of the first layer is skipped by default (no input gradient)."""
    return [p for p in phases if not (p == "bd" and layer_index == 0 and skip_first_bd)]


def simulate_network_dense(network: Network, hw: HardwareConfig, *,
                           phases: Sequence[str] = PHASES, branches: Iterable[int] = (1, 2),
                           skip_first_bd: bool = True) -> list[JobResult]:
    """Dense training step of ``network``: every layer x branch x phase."""
    unknown = [p for p in phases if p not in PHASES]
    if unknown:
        raise ValueError(f"unknown phases {unknown}; expected a subset of {PHASES}")
    results = []
    for branch in branches:
        for index, layer in enumerate(network.layers):
            for phase in phases_for(index, phases, skip_first_bd):
                results.append(simulate_layer_phase(layer, phase, hw, branch=branch,
                                                    workload=network.name))
    return results


def _totals(rows: Sequence[JobResult], hw: HardwareConfig) -> dict[str, float]:
    macs_dense = sum(r.macs_dense for r in rows)
    macs_effective = sum(r.macs_effective for r in rows)
    cycles = sum(r.cycles for r in rows)
    cycles_dense = sum(r.cycles_dense for r in rows)
    energy = sum(r.energy_pj for r in rows)
    energy_dense = sum(r.energy_dense_pj for r in rows)
    seconds = cycles / (hw.pe_array.clock_mhz * 1e6)
    totals: dict[str, float] = {
        "jobs": len(rows),
        "macs_dense": macs_dense,
        "macs_effective": macs_effective,
        "macs_issued": sum(r.macs_issued for r in rows),
        "cycles": cycles,
        "cycles_dense": cycles_dense,
        "cycles_compute": sum(r.cycles_compute for r in rows),
        "cycles_dram": sum(r.cycles_dram for r in rows),
        "cycles_buffer": sum(r.cycles_buffer for r in rows),
        "seconds": seconds,
        "dram_bytes": sum(r.dram_bytes for r in rows),
        "energy_pj": energy,
        "energy_dense_pj": energy_dense,
        "utilization": macs_effective / (cycles * hw.pe_array.macs_per_cycle) if cycles else 0.0,
        "tflops_per_watt": tflops_per_watt(macs_effective, energy),
        "effective_tflops": 2 * macs_effective / seconds / 1e12 if seconds else 0.0,
        "flops_reduction": macs_dense / macs_effective if macs_effective else math.inf,
        "speedup": cycles_dense / cycles if cycles else math.inf,
        "energy_reduction": energy_dense / energy if energy else math.inf,
    }
    for component in ENERGY_COMPONENTS:
        totals[f"energy_{component}_pj"] = sum(getattr(r, f"energy_{component}_pj") for r in rows)
    return totals


def summarize(rows: Sequence[JobResult], hw: HardwareConfig) -> dict[str, object]:
    """Network totals, overall and per phase and per branch."""
    return {
        "hardware": hw.name,
        "hardware_digest": hw.digest(),
        "clock_mhz": hw.pe_array.clock_mhz,
        "total": _totals(rows, hw),
        "per_phase": {p: _totals([r for r in rows if r.phase == p], hw)
                      for p in PHASES if any(r.phase == p for r in rows)},
        "per_branch": {str(b): _totals([r for r in rows if r.branch == b], hw)
                       for b in sorted({r.branch for r in rows})},
    }
