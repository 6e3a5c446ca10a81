"""Record the masks training actually used into an accelsim trace (via accelsim.trace's writer).

The recorder hooks in from outside: gating and pruning modules do not know about it. At a recorded
step it takes, for every gated conv, the exact gate tensor each branch's forward multiplied into
its conditional path (``BranchConv2d.last_gate[branch]``, or DGC's input selection
``last_select[branch]``, read from that branch's encoder: the shared encoder for SimCLR, the
online / momentum encoder for BYOL and MoCo), and the weight masks
SyncCP applied in that step's forwards. Unchanged weight masks are stored as references. A
symmetric BYOL / MoCo loss records four branches: 3 and 4 are the online and target encoders'
passes on the other view (:func:`accelsim.network.encoder_branch`), with their encoder's weight
masks and base paths.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from accelsim.network import encoder_branch
from accelsim.trace import (
    MIN_SAVING,
    TraceLayer,
    TraceReader,
    TraceWriter,
    gate_spec_for,
    select_spec_for,
    weight_spec_for,
)
from workloads.gating import SALIENCY_KINDS, GatingConfig, base_chunks, branch_convs
from workloads.models import layer_geometry
from workloads.pruning import SyncCPConfig


def trace_layers(backbone: nn.Module, batch: int, image_size: int,
                 gating: GatingConfig | None, pruning: SyncCPConfig | None,
                 branches: int = 2, in_channels: int | None = None) -> list[TraceLayer]:
    """The manifest's layers: geometry of every conv (:func:`layer_geometry`), and which
    masks each records."""
    convs = dict(branch_convs(backbone))
    chunks = None
    if gating is not None and gating.enabled and gating.kind not in SALIENCY_KINDS:
        chunks = base_chunks(gating.groups, gating.overlap, branches)
    result = []
    for layer in layer_geometry(backbone, batch, image_size, in_channels):
        conv = convs[layer.name]
        gate = weight = select = None
        if gating is not None and conv.gating is not None and gating.kind == "dgc":
            select = select_spec_for(layer, gating.heads)  # per (sample, head, input channel)
        elif gating is not None and conv.gating is not None and conv.gating.enabled:
            # FBS: one gate bit per output element, no base path (every input skipped)
            gate = gate_spec_for(layer, gating.group_size, gating.groups, chunks or (),
                                 gating.gate_gradient)
        if pruning is not None and pruning.prunes(layer.name, layer.role, layer.groups):
            weight = weight_spec_for(layer, pruning.pattern)
        result.append(TraceLayer(layer=layer, gate=gate, weight=weight, select=select))
    return result


class TraceRecorder:
    """Writes one trace step per recorded training step; resumable after a crash."""

    def __init__(self, out: Path, layers: list[TraceLayer], producer: Mapping[str, Any],
                 branches: int = 2, resume: bool = False, compression_level: int = 6,
                 min_saving: float = MIN_SAVING, overwrite: bool = False,
                 samples: int | None = None) -> None:
        """``resume``: continue the trace in ``out``; ``overwrite``: replace what is there (a
        run restarted before its first checkpoint); ``samples``: record the gates of the first
        ``samples`` images of each batch only (the layers' batch must say so)."""
        self.samples = samples
        self.out = Path(out)
        if resume and (self.out / "manifest.json").exists():
            self.writer = TraceWriter.resume(self.out, compression_level=compression_level,
                                             min_saving=min_saving)
        else:
            self.writer = TraceWriter.create(self.out, producer, layers, branches=branches,
                                             overwrite=resume or overwrite,
                                             compression_level=compression_level,
                                             min_saving=min_saving)
        self.layers = {item.name: item for item in self.writer.manifest.layers}
        self.branches = branches

    @property
    def last_step(self) -> int | None:
        """The last step already in the trace (None when empty)."""
        return self.writer.last_step

    def record(self, step: int, encoders: Mapping[int, nn.Module],
               weight_masks: Mapping[str, Mapping[int, torch.Tensor]] | None,
               stats: Mapping[str, Any]) -> None:
        """Write step ``step``: gates of trace branch ``b`` from its encoder
        ``encoders[encoder_branch(b)]`` (its convs' ``last_gate[b]``) and the weight masks of
        both encoders (``weight_masks[layer][encoder branch]``)."""
        gates: dict[tuple[str, int], np.ndarray] = {}
        selects: dict[tuple[str, int], np.ndarray] = {}
        for branch in range(1, self.branches + 1):
            for name, conv in branch_convs(encoders[encoder_branch(branch)]):
                item = self.layers.get(name)
                if item is None:
                    continue
                for spec, kept, found in ((item.gate, conv.last_gate, gates),
                                          (item.select, conv.last_select, selects)):
                    if spec is None:
                        continue
                    mask = kept.get(branch)
                    if mask is None:
                        raise RuntimeError(f"layer {name!r} has no mask for branch {branch}: "
                                           "record right after every branch's forward pass")
                    mask = mask if self.samples is None else mask[:self.samples]
                    found[(name, branch)] = mask.detach().to("cpu").numpy().astype(bool,
                                                                                   copy=False)
        weights: dict[tuple[str, int], np.ndarray | None] = {}
        for name, item in self.layers.items():
            if item.weight is None:
                continue
            if weight_masks is None or name not in weight_masks:
                raise RuntimeError(f"layer {name!r} records weight masks but none were given")
            for branch in range(1, self.branches + 1):
                mask = weight_masks[name][encoder_branch(branch)]
                weights[(name, branch)] = mask.detach().to("cpu").numpy().astype(bool,
                                                                                 copy=False)
        self.writer.write_step(step, gates, weights, dict(stats), selects=selects)

    def close(self) -> None:
        """Finish the trace."""
        self.writer.close()


def step_bytes(layers: list[TraceLayer], branches: int = 2) -> int:
    """Bytes of one recorded step's masks as packed bits, before compression (weight masks
    unchanged since the last recorded step are stored as references and cost nothing)."""
    bits = 0
    for item in layers:
        for spec in (item.gate, item.weight, item.select):
            if spec is not None:
                bits += int(np.prod(spec.shape)) * branches
    return (bits + 7) // 8


def trace_steps(path: Path) -> list[int]:
    """Steps already recorded in the trace at ``path`` ([] when there is none)."""
    if not (Path(path) / "manifest.json").exists():
        return []
    return TraceReader(path).steps
