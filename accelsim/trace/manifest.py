"""The manifest of a trace: format version, producer, branches and per layer its geometry and masks.

Typed frozen dataclasses; :meth:`Manifest.from_json` is the only place that turns the JSON of
``manifest.json`` into them and reports every problem as a :class:`TraceError` naming the field.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from accelsim.errors import InputError
from accelsim.network import Layer, resnet_post_ops
from accelsim.schema import abbreviate, did_you_mean, short_key
from accelsim.trace.format import (
    FORMAT_NAME,
    MANIFEST_NAME,
    READER_VERSION,
    TraceError,
    load_json,
    parse_version,
)

_NM_PATTERN = re.compile(r"^nmt?:(\d+):(\d+)$")
_BLOCK_PATTERN = re.compile(r"^block:(\d+)x(\d+)$")
_LAYER_FIELDS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(Layer))
_OPTIONAL_LAYER_FIELDS = ("post_ops",)  # format 1.3; absent in older traces
_PRE_1_3_NETWORKS = ("resnet20", "resnet18")  # the built-ins traces older than 1.3 could name
_REQUIRED_LAYER_FIELDS = tuple(f for f in _LAYER_FIELDS if f not in _OPTIONAL_LAYER_FIELDS)
_MANIFEST_KEYS = ("format", "version", "created_by", "producer", "branches", "layers")
GATE_GRADIENTS: tuple[str, ...] = ("straight_through", "masked")


def _positive_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


@dataclass(frozen=True)
class GateSpec:
    """A gate mask: one bit per output element (CDG, ``group_size`` 1) or per group of
    ``group_size`` consecutive output channels (SCDG).

    ``shape`` is ``(N, Cout // group_size, Ho, Wo)``; a bit is True where the output is computed.

    CDG structure: input and output channels are cut into ``gating_groups`` (G) equal chunks;
    ``base_chunks[b - 1][g]`` is the input chunk that output chunk ``g`` uses as its dense base
    path in branch ``b`` (diagonal ``g`` for branch 1 and inverse diagonal ``G-1-g`` for branch 2 in
    CDG; equal in both branches for CGNet-style gating). The other G-1 input chunks form the
    conditional path, computed only where the gate bit is 1. G = 1 means no base path: the whole
    output element is computed or skipped by the gate.

    ``gradient`` (format 1.2; absent in older traces means ``straight_through``): how training
    took the gate's gradient. ``straight_through``: dL/dd = dL/dY x Y_c at every output, so the
    forward pass needs the conditional output everywhere, skipped or not; ``masked``: only where
    the gate is open, so the forward pass may skip the conditional path where it is closed.
    """

    group_size: int
    shape: tuple[int, ...]
    gating_groups: int = 1
    base_chunks: tuple[tuple[int, ...], ...] = ()
    gradient: str = "straight_through"

    def __post_init__(self) -> None:
        object.__setattr__(self, "shape", tuple(self.shape))
        object.__setattr__(self, "base_chunks", tuple(tuple(c) for c in self.base_chunks))
        groups = self.gating_groups
        if not _positive_int(groups):
            raise TraceError(f"gating_groups must be a positive integer, got {abbreviate(groups)}")
        for chunks in self.base_chunks:
            if len(chunks) != groups or not all(
                    isinstance(c, int) and not isinstance(c, bool) and 0 <= c < groups
                    for c in chunks):
                raise TraceError(f"base_chunks entries must list {groups} input chunks in "
                                 f"0..{groups - 1}, got {list(chunks)}")
        if not _positive_int(self.group_size):
            raise TraceError(f"gate group_size must be a positive integer, got "
                             f"{abbreviate(self.group_size)}")
        if not self.shape or not all(_positive_int(d) for d in self.shape):
            raise TraceError(f"gate shape must be positive integers, got {list(self.shape)}")
        if self.gradient not in GATE_GRADIENTS:
            raise TraceError(f"gate gradient must be one of {list(GATE_GRADIENTS)}, got "
                             f"{abbreviate(self.gradient)}")


@dataclass(frozen=True)
class WeightSpec:
    """A weight mask of ``shape`` ``(Cout, Cin // groups, kh, kw)``; True keeps the weight.

    ``pattern`` names the sparsity structure: ``"element"`` (unstructured), ``"nm:N:M"`` (N kept
    in every M consecutive input channels), ``"nmt:N:M"`` (transposable: also N kept in every M
    consecutive output channels, at every kernel position; format 1.2), ``"block:BOxBI"`` (BO x
    BI blocks of output x input channels), or any other non-empty string for structures
    accelsim does not know.
    """

    shape: tuple[int, ...]
    pattern: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "shape", tuple(self.shape))
        if not self.shape or not all(_positive_int(d) for d in self.shape):
            raise TraceError(f"weight shape must be positive integers, got {list(self.shape)}")
        if not isinstance(self.pattern, str) or not self.pattern:
            raise TraceError("weight pattern must be a non-empty string, got "
                             f"{abbreviate(self.pattern)}")
        nm = _NM_PATTERN.match(self.pattern)
        kind = self.pattern.split(":", 1)[0]
        if kind in ("nm", "nmt") and not (nm and 1 <= int(nm[1]) <= int(nm[2])):
            raise TraceError(f"weight pattern {abbreviate(self.pattern)} must be {kind}:N:M with "
                             f"1 <= N <= M")
        block = _BLOCK_PATTERN.match(self.pattern)
        if self.pattern.startswith("block:") and not (block and int(block[1]) >= 1
                                                      and int(block[2]) >= 1):
            raise TraceError(f"weight pattern {abbreviate(self.pattern)} must be block:BOxBI with "
                             f"positive sizes")


@dataclass(frozen=True)
class SelectSpec:
    """An input-channel selection (format 1.5; DGC, dynamic group convolution): the output
    channels are cut into ``heads`` equal groups, and each head keeps, per sample, a subset of
    the input channels. ``shape`` is ``(N, heads, Cin)``; a bit is True where head h of sample n
    reads input channel c (its output channels use no other input of that sample)."""

    heads: int
    shape: tuple[int, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "shape", tuple(self.shape))
        if not _positive_int(self.heads):
            raise TraceError(f"select heads must be a positive integer, got "
                             f"{abbreviate(self.heads)}")
        if len(self.shape) != 3 or not all(_positive_int(d) for d in self.shape):
            raise TraceError(f"select shape must be 3 positive integers, got "
                             f"{list(self.shape)}")


def gate_shape(layer: Layer, group_size: int) -> tuple[int, int, int, int]:
    """``(N, Cout // group_size, Ho, Wo)``."""
    return (layer.batch, layer.cout // group_size, layer.h_out, layer.w_out)


def weight_shape(layer: Layer) -> tuple[int, int, int, int]:
    """``(Cout, Cin // groups, kh, kw)``."""
    return (layer.cout, layer.cin // layer.groups, layer.kh, layer.kw)


def select_shape(layer: Layer, heads: int) -> tuple[int, int, int]:
    """``(N, heads, Cin)``."""
    return (layer.batch, heads, layer.cin)


def select_spec_for(layer: Layer, heads: int) -> SelectSpec:
    """The input-selection spec of ``layer`` with ``heads`` heads (see :class:`SelectSpec`)."""
    return SelectSpec(heads=heads, shape=select_shape(layer, heads))


def gate_spec_for(layer: Layer, group_size: int = 1, gating_groups: int = 1,
                  base_chunks: Sequence[Sequence[int]] = (),
                  gradient: str = "straight_through") -> GateSpec:
    """The gate spec of ``layer``: per output element (1) or per ``group_size`` channels (SCDG),
    with ``gating_groups`` CDG chunks, per-branch ``base_chunks`` and the gate's ``gradient``
    (see :class:`GateSpec`).

    ``group_size`` must divide Cout.
    """
    if not _positive_int(group_size) or layer.cout % group_size:
        raise TraceError(f"gate group_size {abbreviate(group_size)} must be a positive divisor of "
                         f"cout={layer.cout}", field=f"layer {layer.name!r}")
    return GateSpec(group_size=group_size, shape=gate_shape(layer, group_size),
                    gating_groups=gating_groups,
                    base_chunks=tuple(tuple(c) for c in base_chunks), gradient=gradient)


def weight_spec_for(layer: Layer, pattern: str = "element") -> WeightSpec:
    """The weight spec of ``layer`` with sparsity ``pattern`` (see :class:`WeightSpec`)."""
    return WeightSpec(shape=weight_shape(layer), pattern=pattern)


@dataclass(frozen=True)
class TraceLayer:
    """One layer of a trace: its geometry and which masks each step records (None: no mask)."""

    layer: Layer
    gate: GateSpec | None = None
    weight: WeightSpec | None = None
    select: SelectSpec | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.layer, Layer):
            raise TraceError(f"expected an accelsim.network.Layer, got {type(self.layer).__name__}")
        where = f"layer {self.layer.name!r}"
        if self.gate is not None:
            size = self.gate.group_size
            if self.layer.cout % size:
                raise TraceError(f"gate group_size {size} does not divide cout="
                                 f"{self.layer.cout}", field=where)
            groups = self.gate.gating_groups
            if self.layer.cout % groups or (self.layer.cin // self.layer.groups) % groups:
                raise TraceError(f"gating_groups {groups} must divide cout={self.layer.cout} "
                                 f"and cin/groups={self.layer.cin // self.layer.groups}",
                                 field=where)
            if groups > 1 and (self.layer.cout // groups) % size:
                raise TraceError(f"gate group_size {size} must divide the output chunk "
                                 f"cout/gating_groups={self.layer.cout // groups}", field=where)
            expected = gate_shape(self.layer, size)
            if self.gate.shape != expected:
                raise TraceError(f"gate shape {list(self.gate.shape)} does not match the layer "
                                 f"(N, Cout/{size}, Ho, Wo) = {list(expected)}", field=where)
        if self.select is not None:
            self._check_select(where)
        if self.weight is not None and self.weight.shape != weight_shape(self.layer):
            raise TraceError(f"weight shape {list(self.weight.shape)} does not match the layer "
                             f"(Cout, Cin/groups, kh, kw) = {list(weight_shape(self.layer))}",
                             field=where)

    def _check_select(self, where: str) -> None:
        layer, select = self.layer, self.select
        assert select is not None
        if self.gate is not None:
            raise TraceError("a layer records a gate or an input selection, not both",
                             field=where)
        if layer.groups != 1:
            raise TraceError(f"an input selection needs groups=1, got groups={layer.groups}",
                             field=where)
        if layer.cout % select.heads:
            raise TraceError(f"select heads {select.heads} must divide cout={layer.cout}",
                             field=where)
        expected = select_shape(layer, select.heads)
        if select.shape != expected:
            raise TraceError(f"select shape {list(select.shape)} does not match the layer "
                             f"(N, heads, Cin) = {list(expected)}", field=where)

    @property
    def name(self) -> str:
        """The layer name."""
        return self.layer.name

    @property
    def gated(self) -> bool:
        """Whether the layer records a dynamic mask: a gate or a DGC input selection."""
        return self.gate is not None or self.select is not None

    def to_json(self) -> dict[str, Any]:
        """The manifest entry: every Layer field (``nm`` as ``[n, m]`` or null), gate, weight."""
        data: dict[str, Any] = {}
        for key in _LAYER_FIELDS:
            value = getattr(self.layer, key)
            data[key] = list(value) if isinstance(value, tuple) else value
        data["gate"] = (None if self.gate is None else
                        {"group_size": self.gate.group_size, "shape": list(self.gate.shape),
                         "gating_groups": self.gate.gating_groups,
                         "base_chunks": [list(c) for c in self.gate.base_chunks],
                         "gradient": self.gate.gradient})
        data["weight"] = (None if self.weight is None else
                          {"shape": list(self.weight.shape), "pattern": self.weight.pattern})
        if self.select is not None:  # format 1.5; absent means none
            data["select"] = {"heads": self.select.heads, "shape": list(self.select.shape)}
        return data


@dataclass(frozen=True)
class Manifest:
    """Content of ``manifest.json``.

    ``producer`` is free-form JSON (algorithm and its parameters, SSL method, model, dataset,
    seed, steps); ``branches`` is the number of branches (augmented views), numbered 1..branches.
    """

    version: str
    created_by: str
    producer: dict[str, Any]
    branches: int
    layers: tuple[TraceLayer, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "layers", tuple(self.layers))
        if not _positive_int(self.branches):
            raise TraceError("branches must be a positive integer, got "
                             f"{abbreviate(self.branches)}")
        if not self.layers:
            raise TraceError("a trace needs at least one layer")
        for item in self.layers:
            if not isinstance(item, TraceLayer):
                raise TraceError(f"layers must be TraceLayer objects, got {type(item).__name__}")
            gate = item.gate
            if gate is not None and gate.gating_groups > 1 and \
                    len(gate.base_chunks) != self.branches:
                raise TraceError(f"gate base_chunks must list one entry per branch "
                                 f"({self.branches}), got {len(gate.base_chunks)}",
                                 field=f"layer {item.name!r}")
        names = [item.name for item in self.layers]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise TraceError(f"duplicate layer names {duplicates}")
        if not isinstance(self.producer, dict):
            raise TraceError(f"producer must be a dict, got {type(self.producer).__name__}")

    def layer(self, name: str) -> TraceLayer:
        """The layer called ``name`` (KeyError if absent)."""
        for item in self.layers:
            if item.name == name:
                return item
        raise KeyError(name)

    def to_json(self) -> dict[str, Any]:
        """The JSON object written to ``manifest.json``."""
        return {"format": FORMAT_NAME, "version": self.version, "created_by": self.created_by,
                "producer": self.producer, "branches": self.branches,
                "layers": [item.to_json() for item in self.layers]}

    @classmethod
    def from_json(cls, data: Mapping[str, Any], path: str | Path | None = None) -> Manifest:
        """Validate a parsed ``manifest.json``; ``path`` (the trace directory) goes in messages.

        Refuses a wrong ``format`` and another major version. Unknown keys are errors, except in
        a manifest of a newer minor version (minor versions only add fields).
        """
        return _ManifestParser(path).parse(data)


def load_manifest(root: Path) -> Manifest:
    """Read and validate ``root/manifest.json``."""
    if not root.is_dir():
        raise TraceError(_not_a_trace_directory(root), path=root)
    return Manifest.from_json(load_json(root / MANIFEST_NAME, root, MANIFEST_NAME), root)


def _not_a_trace_directory(root: Path) -> str:
    """Why ``root``, which is not a directory, cannot be a trace."""
    try:
        root.stat()
    except FileNotFoundError:
        return "no such trace directory" if not root.is_symlink() else (
            "a symbolic link to nothing (no such trace directory)")
    except OSError as error:  # a symbolic link loop, a permission refused on the way
        return f"cannot open ({error.strerror or error})"
    return "not a directory (a trace is a directory holding manifest.json and steps/)"


def is_strict(version: str) -> bool:
    """Whether unknown keys are errors in a trace of ``version`` (not newer than this reader)."""
    parsed = parse_version(version)
    return parsed is not None and parsed <= READER_VERSION


class _ManifestParser:
    """Turns manifest JSON into a :class:`Manifest`, naming the dotted field of every error."""

    def __init__(self, path: str | Path | None) -> None:
        self.path = path
        self.strict = True
        self.context = ""  # " (layer 'name')" while parsing a layer entry

    def error(self, field: str, message: str) -> TraceError:
        return TraceError(message + self.context, path=self.path,
                          field=f"{MANIFEST_NAME}: {field}")

    def get(self, obj: Mapping[str, Any], key: str, where: str) -> Any:
        if key not in obj:
            raise self.error(f"{where}{key}", "missing field")
        return obj[key]

    def check_keys(self, obj: Mapping[str, Any], known: tuple[str, ...], where: str) -> None:
        unknown = [key for key in obj if key not in known]
        if unknown and self.strict:
            raise self.error(f"{where}{short_key(unknown[0])}",
                             f"unknown field{did_you_mean(unknown[0], known)}")

    def parse(self, data: Mapping[str, Any]) -> Manifest:
        if not isinstance(data, Mapping):
            raise self.error("(top level)", "expected a JSON object")
        fmt = self.get(data, "format", "")
        if fmt != FORMAT_NAME:
            raise self.error("format", f"expected {FORMAT_NAME!r}, got {abbreviate(fmt)} (not an "
                             "accelsim trace)")
        version = self.get(data, "version", "")
        parsed = parse_version(version)
        if parsed is None:
            raise self.error("version", f"expected 'MAJOR.MINOR', got {abbreviate(version)}")
        if parsed[0] != READER_VERSION[0]:
            raise TraceError(f"format version {version} is not supported by this accelsim "
                             f"(reads {READER_VERSION[0]}.x)", path=self.path)
        self.strict = is_strict(version)
        self.check_keys(data, _MANIFEST_KEYS, "")
        created_by = self.get(data, "created_by", "")
        if not isinstance(created_by, str):
            raise self.error("created_by", f"expected a string, got {abbreviate(created_by)}")
        producer = self.get(data, "producer", "")
        if not isinstance(producer, dict):
            raise self.error("producer", f"expected an object, got {type(producer).__name__}")
        branches = self.get(data, "branches", "")
        if not _positive_int(branches):
            raise self.error("branches", f"expected a positive integer, got {abbreviate(branches)}")
        raw_layers = self.get(data, "layers", "")
        if not isinstance(raw_layers, list) or not raw_layers:
            raise self.error("layers", "expected a non-empty list")
        layers = tuple(self.layer(item, i) for i, item in enumerate(raw_layers))
        if parsed < (1, 3) and \
                (producer.get("model") or producer.get("network")) in _PRE_1_3_NETWORKS:
            # A trace older than 1.3 of a built-in ResNet: its non-MAC ops are the network's.
            derived = resnet_post_ops([item.layer for item in layers])
            layers = tuple(dataclasses.replace(item, layer=layer)
                           for item, layer in zip(layers, derived, strict=True))
        try:
            return Manifest(version=version, created_by=created_by, producer=producer,
                            branches=branches, layers=layers)
        except TraceError as error:
            raise self.error("layers", error.message) from None

    def layer(self, item: Any, index: int) -> TraceLayer:
        where = f"layers[{index}]."
        if not isinstance(item, Mapping):
            raise self.error(where[:-1], "expected an object")
        name = self.get(item, "name", where)
        if not isinstance(name, str) or not name:
            raise self.error(f"{where}name", f"expected a non-empty string, got {abbreviate(name)}")
        self.context = f" (layer {abbreviate(name)})"
        self.check_keys(item, (*_LAYER_FIELDS, "gate", "weight", "select"), where)
        values = {key: self.get(item, key, where) for key in _REQUIRED_LAYER_FIELDS}
        post_ops = item.get("post_ops", [])
        if not (isinstance(post_ops, list) and all(isinstance(op, str) for op in post_ops)):
            raise self.error(f"{where}post_ops",
                             f"expected a list of strings, got {abbreviate(post_ops)}")
        values["post_ops"] = tuple(post_ops)
        nm = values["nm"]
        if nm is not None:
            if not (isinstance(nm, list) and len(nm) == 2 and all(_positive_int(v) for v in nm)):
                raise self.error(f"{where}nm", f"expected null or [n, m], got {abbreviate(nm)}")
            values["nm"] = (nm[0], nm[1])
        gate = self.spec(item, "gate", where, ("group_size", "shape", "gating_groups",
                                               "base_chunks"),
                         optional={"gradient": "straight_through"})
        weight = self.spec(item, "weight", where, ("shape", "pattern"))
        select = (self.spec(item, "select", where, ("heads", "shape"))
                  if item.get("select") is not None else None)
        self.context = ""
        try:
            layer = Layer(**values)
        except InputError as error:
            raise self.error(where[:-1], str(error)) from None
        try:
            return TraceLayer(
                layer=layer,
                gate=None if gate is None else GateSpec(
                    group_size=gate["group_size"], shape=gate["shape"],
                    gating_groups=gate["gating_groups"],
                    base_chunks=self.base_chunks(gate["base_chunks"],
                                                 f"{where}gate.base_chunks"),
                    gradient=gate["gradient"]),
                weight=None if weight is None else WeightSpec(weight["shape"], weight["pattern"]),
                select=None if select is None else SelectSpec(select["heads"], select["shape"]),
            )
        except TraceError as error:
            field = where[:-1] if error.field is None else f"{where[:-1]}: {error.field}"
            raise self.error(field, error.message) from None

    def base_chunks(self, value: Any, where: str) -> tuple[tuple[int, ...], ...]:
        if not (isinstance(value, list) and all(isinstance(v, list) for v in value)):
            raise self.error(where, f"expected a list of lists, got {abbreviate(value)}")
        return tuple(tuple(v) for v in value)

    def spec(self, item: Mapping[str, Any], kind: str, where: str, keys: tuple[str, ...],
             optional: Mapping[str, Any] | None = None) -> dict[str, Any] | None:
        """A gate or weight spec with ``keys`` and the ``optional`` keys (absent: the given
        default; fields a later minor version added)."""
        spec = self.get(item, kind, where)
        if spec is None:
            return None
        if not isinstance(spec, Mapping):
            raise self.error(f"{where}{kind}", "expected null or an object")
        optional = optional or {}
        self.check_keys(spec, (*keys, *optional), f"{where}{kind}.")
        values = {key: self.get(spec, key, f"{where}{kind}.") for key in keys}
        values.update({key: spec.get(key, default) for key, default in optional.items()})
        shape = values.get("shape")
        if not isinstance(shape, list) or not all(_positive_int(v) for v in shape):
            raise self.error(f"{where}{kind}.shape", f"expected a list of positive integers, "
                             f"got {abbreviate(shape)}")
        return values

