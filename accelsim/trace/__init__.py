"""The trace contract: per-layer gate and weight masks recorded during contrastive training.

This is the only part of accelsim that ``workloads/`` imports; it re-exports the layer geometry
(:class:`Layer`) the manifest is made of.

A trace is a directory (``manifest.json`` plus ``steps/step-XXXXXXXX.{bin,json}``) that the
recorder in ``workloads/`` writes with :class:`TraceWriter` and the simulator reads with
:class:`TraceReader`. Only numpy is needed. The format is specified in ``docs/trace-format.md``.

Example::

    from accelsim.trace import open_trace
    trace = open_trace("runs/simclr-cdg")
    gate = trace.gate(trace.steps[-1], "layer1.0.conv1", branch=1)  # bool (N, Cout/s, Ho, Wo)
"""

from accelsim.network import Layer
from accelsim.trace.format import FORMAT_VERSION, TraceError
from accelsim.trace.manifest import (
    GateSpec,
    Manifest,
    SelectSpec,
    TraceLayer,
    WeightSpec,
    gate_spec_for,
    select_spec_for,
    weight_spec_for,
)
from accelsim.trace.reader import (
    PackedMask,
    PackedStepMasks,
    StepMasks,
    TraceReader,
    open_trace,
    resolve_trace_dir,
)
from accelsim.trace.writer import MIN_SAVING, TraceWriter

__all__ = [
    "FORMAT_VERSION",
    "MIN_SAVING",
    "GateSpec",
    "Layer",
    "Manifest",
    "PackedMask",
    "PackedStepMasks",
    "SelectSpec",
    "StepMasks",
    "TraceError",
    "TraceLayer",
    "TraceReader",
    "TraceWriter",
    "WeightSpec",
    "gate_spec_for",
    "open_trace",
    "resolve_trace_dir",
    "select_spec_for",
    "weight_spec_for",
]
