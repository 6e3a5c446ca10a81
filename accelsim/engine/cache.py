"""The one cache of a replay: every value a replay keeps between its jobs and steps, wrapped
around pure functions that know nothing of it.

:class:`ReplayCache` holds named stores (:class:`accelsim.store.Store`, each bounded, least
recently used out first). Each store's key names exactly the inputs of the function whose
results it keeps:

- ``plans``: a gated job's :class:`~accelsim.engine.sparse.GatedPlan`, by the hardware the
  compute reads (:func:`~accelsim.engine.sparse.compute_key`), layer, phase, base path, gate
  group size and gate gradient; configs that share their compute share the plans;
- ``structure``: per layer and branch, what a job's :class:`~accelsim.engine.views.MaskViews`
  derive from its latest weight mask and its base path (unit structure, BD classes, the phases'
  plans), shared by the steps that use those masks and replaced with the weights;
- ``dense``, ``frames``, ``non_mac``: each job's dense half, its frame (memory, energy rates,
  non-MAC work: :class:`~accelsim.engine.simulator.JobFrame`) and step-dependent non-MAC work,
  by the hardware config and the job's step-independent inputs;
- ``weights``, ``bases``, ``rows``, ``phase_jobs``: the replay's prepared weight masks and base
  paths, the rows of ungated jobs (reused while their masks stay the same) and each job's
  phase list on each config (:mod:`accelsim.engine.replay`).

Keys name the hardware by a token per config (:meth:`ReplayCache.tokens`; the plans' by a token
per :func:`~accelsim.engine.sparse.compute_key`) and layers by name (a cache serves one trace).
Nothing outside this module keeps a result between jobs. A store forgets its least recently
used entries beyond ``limit``; a forgotten value is computed again, never wrong.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Hashable

from accelsim.config import HardwareConfig
from accelsim.engine.energy import EnergyRates
from accelsim.engine.masks import LayerMasks
from accelsim.engine.memory import GatedForward, cycles_buffer, cycles_dram, memory_plan
from accelsim.engine.simulator import IndexCost, JobFrame, dense_job
from accelsim.engine.sparse import (
    ComputeKey,
    SparseCompute,
    compute_key,
    gated_plan,
    plans_gate,
    sparse_compute,
)
from accelsim.engine.vector import NO_DUTIES, NonMacDuties, NonMacWork, non_mac_work
from accelsim.engine.views import MaskViews, as_views
from accelsim.network import Layer
from accelsim.store import Store

STORE_LIMIT = 4096  # entries per store: a long trace's step-dependent keys do not pile up


class ReplayCache:
    """Every store of a replay (see the module docstring) and the cached ways into the
    functions they keep results of: :meth:`compute`, :meth:`frame`, :meth:`non_mac`,
    :meth:`views`."""

    def __init__(self, limit: int = STORE_LIMIT) -> None:
        # each config seen: (the config, its token, the token of its compute_key); tokens key
        # the stores (a config's hash walks all its fields: too slow for every lookup)
        self._configs: dict[int, tuple[HardwareConfig, int, int]] = {}
        self._compute_tokens: dict[ComputeKey, int] = {}
        self.plans = Store(limit)
        self.structure = Store(limit)
        self.dense = Store(limit)
        self.frames = Store(limit)
        self.non_macs = Store(limit)
        self.weights = Store(limit)
        self.bases = Store(limit)
        self.rows = Store(limit)
        self.phase_jobs = Store(limit)

    def views(self, masks: LayerMasks, slot: Hashable | None,
              source: Hashable = None) -> MaskViews:
        """Views of a job's ``masks`` whose structure is kept for ``slot`` (a layer and branch;
        None: with this job alone) while its ``source`` (what its weight mask and base path
        come from: the step that stored the weights) stays the same: a new source replaces
        the slot's structure, so a trace that stores new weights at every step keeps one."""
        if slot is None:
            return MaskViews(masks)
        held = self.structure.peek(slot)
        if held is None or held[0] != source:
            held = (source, {})
            self.structure.put(slot, held)
        return MaskViews(masks, held[1])

    def tokens(self, hw: HardwareConfig) -> tuple[int, int]:
        """(a token of the config ``hw``, a token of its
        :func:`~accelsim.engine.sparse.compute_key`: equal for configs that share their
        compute), what the stores' keys name the hardware by."""
        held = self._configs.get(id(hw))
        if held is None or held[0] is not hw:
            compute = self._compute_tokens.setdefault(compute_key(hw),
                                                      len(self._compute_tokens))
            held = self._configs[id(hw)] = (hw, len(self._configs) + 1, compute)
        return held[1], held[2]

    def compute(self, layer: Layer, phase: str, masks: LayerMasks | MaskViews,
                hw: HardwareConfig) -> SparseCompute:
        """:func:`~accelsim.engine.sparse.sparse_compute` of the job, through its kept
        :class:`~accelsim.engine.sparse.GatedPlan` when it has one (layers by name: a cache
        serves one trace, whose layers are named uniquely)."""
        views = as_views(masks)
        plain = views.masks
        if plans_gate(layer, plain):
            key = (self.tokens(hw)[1], layer.name, phase, plain.base, plain.gate_group_size,
                   plain.dense_fw_conditional)
            plan = self.plans.get(key, lambda: gated_plan(layer, phase, views, hw))
            if plan is not None:
                return plan.compute(views)
        return sparse_compute(layer, phase, views, hw)

    def non_mac(self, layer: Layer, duties: NonMacDuties, hw: HardwareConfig) -> NonMacWork:
        """:func:`~accelsim.engine.vector.non_mac_work` of a job whose duties change from step
        to step."""
        return self.non_macs.get((self.tokens(hw)[0], layer.name, duties),
                                 lambda: non_mac_work(layer, duties, hw))

    def frame(self, layer: Layer, phase: str, hw: HardwareConfig, weight_density: float,
              dw_density: float, index: IndexCost, branch: int, trace: str,
              cycles_compute_dense: int, gated_forward: GatedForward | None = None,
              duties: NonMacDuties = NO_DUTIES) -> JobFrame:
        """The job's :class:`~accelsim.engine.simulator.JobFrame` on ``hw``
        (``cycles_compute_dense``: its dense compute cycles, for the dense half;
        ``gated_forward``: FW of a gated layer with a base path,
        :func:`accelsim.engine.memory.gate_extra`; ``duties``: the non-MAC work it carries)."""
        key = (self.tokens(hw)[0], layer.name, phase, weight_density, dw_density, index,
               branch, trace, gated_forward, duties)
        return self.frames.get(key, lambda: self._frame(
            layer, phase, hw, weight_density, dw_density, index, branch, trace,
            cycles_compute_dense, gated_forward, duties))

    def _frame(self, layer: Layer, phase: str, hw: HardwareConfig, weight_density: float,
               dw_density: float, index: IndexCost, branch: int, trace: str,
               cycles_compute_dense: int, gated_forward: GatedForward | None,
               duties: NonMacDuties) -> JobFrame:
        dense = self.dense.get((self.tokens(hw)[0], layer.name, phase),
                               lambda: dense_job(layer, phase, hw, cycles_compute_dense))
        memory = memory_plan(layer, phase, hw, weight_density=weight_density,
                             dw_density=dw_density, index_read_bits=index.read_bits,
                             index_write_bits=index.write_bits, gated_forward=gated_forward)
        return JobFrame(trace, layer.name, branch, phase, dense, index, memory,
                        cycles_buffer(memory.gb_read_bits, memory.gb_write_bits, hw),
                        cycles_dram(memory.dram_bytes, hw), hw, EnergyRates.of(hw),
                        non_mac_work(layer, duties, hw),
                        non_mac_work(layer, dataclasses.replace(
                            duties, gate_group_size=0, update_density=1.0), hw))
