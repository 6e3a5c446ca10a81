"""Synthetic traces: random gate and weight masks with exact sparsity, written by TraceWriter.

A synthetic trace has the same format as a recorded one (``docs/trace-format.md``), so the
simulator can be exercised without PyTorch. Every mask is drawn from a seeded random score field
and thresholded to an **exact** number of ones; the structures follow ``ALGORITHMS.md``:

- gate masks (CDG, SCDG): one bit per output element, or per group of ``s`` consecutive output
  channels, shape ``(N, Cout/s, Ho, Wo)``; optional spatial correlation of the bits over
  ``Ho x Wo``; G gating groups with base paths on the diagonal (branch 1) and the inverse diagonal
  (branch 2), an ``overlap`` fraction of output chunks sharing branch 1's base chunk;
- weight masks (SyncCP), shape ``(Cout, Cin/groups, kh, kw)``: element-wise, N:M or blocks of
  output x input channels shared across the kernel; branch 2 denser by ``weight_delta`` and a
  superset of branch 1 (both masks from the same scores), re-drawn every ``weight_update_every``
  steps.

The rules are documented in ``docs/synthetic-traces.md``. Only numpy is used.

Example::

    from accelsim.network import resnet20
    from accelsim.trace.synth import SynthConfig, synthesize
    synthesize(resnet20(batch=8), Path("runs/synth"), SynthConfig(gate_sparsity=0.7))
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from accelsim.errors import InputError
from accelsim.layer_patterns import grouped_conv_problem, matches, unmatched_pattern
from accelsim.network import (
    MOMENTUM_SSL,
    OPTIMIZERS,
    SSL_METHODS,
    SYMMETRIC_BRANCHES,
    Layer,
    Network,
    encoder_branch,
)
from accelsim.trace.manifest import (
    GATE_GRADIENTS,
    TraceLayer,
    gate_spec_for,
    weight_spec_for,
)
from accelsim.trace.writer import MIN_SAVING, TraceWriter

GENERATOR = "accelsim.trace.synth"
WEIGHT_KINDS: tuple[str, ...] = ("element", "nm", "nmt", "block")
NM_KINDS: tuple[str, ...] = ("nm", "nmt")  # N of every M (nmt: transposable, both axes)

_NM = re.compile(r"^(nmt?):(\d+):(\d+)$")
_BLOCK = re.compile(r"^block:(\d+)x(\d+)$")
_KIND_CODE = {"gate": 0, "weight": 1}  # part of every generator's spawn key
_SPARSITY_TOLERANCE = 1e-9


def round_half_up(value: float) -> int:
    """``value`` rounded to the nearest integer, halves up (2.5 -> 3); every count uses it."""
    return math.floor(value + 0.5)


@dataclass(frozen=True)
class WeightPattern:
    """A parsed weight sparsity pattern: ``element``, ``nm:N:M``, ``nmt:N:M`` or ``block:BOxBI``.

    ``n``, ``m`` are set for ``nm`` (N kept in every M consecutive input channels, 1 <= N <= M)
    and ``nmt`` (transposable: also N kept in every M consecutive output channels, at every
    kernel position); ``block_out``, ``block_in`` for ``block`` (BO output x BI input channels,
    whole kernel).
    """

    kind: str
    n: int = 0
    m: int = 0
    block_out: int = 0
    block_in: int = 0

    @classmethod
    def parse(cls, text: str) -> WeightPattern:
        """Parse ``element``, ``nm:N:M``, ``nmt:N:M`` or ``block:BOxBI``; InputError
        (``--weight-pattern``)."""
        if not isinstance(text, str):
            raise InputError(f"expected a string, got {text!r}", field="--weight-pattern")
        if text == "element":
            return cls("element")
        nm = _NM.match(text)
        if nm:
            n, m = int(nm[2]), int(nm[3])
            if not 1 <= n <= m:
                raise InputError(f"{nm[1]}:N:M needs 1 <= N <= M, got {text!r}",
                                 field="--weight-pattern")
            return cls(nm[1], n=n, m=m)
        block = _BLOCK.match(text)
        if block:
            bo, bi = int(block[1]), int(block[2])
            if bo < 1 or bi < 1:
                raise InputError(f"block:BOxBI needs positive sizes, got {text!r}",
                                 field="--weight-pattern")
            return cls("block", block_out=bo, block_in=bi)
        raise InputError(f"expected element, nm:N:M (e.g. nm:2:4), nmt:N:M (transposable) or "
                         f"block:BOxBI (e.g. block:4x4), got {text!r}", field="--weight-pattern")

    def __str__(self) -> str:
        if self.kind in NM_KINDS:
            return f"{self.kind}:{self.n}:{self.m}"
        if self.kind == "block":
            return f"block:{self.block_out}x{self.block_in}"
        return "element"

    @property
    def implied_sparsity(self) -> float | None:
        """``1 - N/M`` for an N:M pattern, else None."""
        return 1 - self.n / self.m if self.kind in NM_KINDS else None


@dataclass(frozen=True)
class SynthConfig:
    """Parameters of a synthetic trace; every field is recorded in the manifest's producer.

    Sparsities are fractions of 0 bits in [0, 1). ``gate_sparsity`` None: no gate masks;
    ``weight_sparsity`` None: no weight masks unless ``weight_pattern`` is ``nm:N:M`` (whose
    sparsity is ``1 - N/M``). The gate and weight options other than the sparsity must keep their
    defaults while that kind of mask is off. Errors are :class:`InputError` naming the option as
    the CLI spells it (``--gate-groups``).
    """

    steps: int = 2
    seed: int = 0
    branches: int = 2
    gate_sparsity: float | None = None
    gate_groups: int = 4
    gate_group_size: int = 1
    overlap: float = 0.0
    spatial_correlation: float = 0.0
    channel_block: int = 1
    gate_gradient: str = "straight_through"
    weight_sparsity: float | None = None
    weight_pattern: str = "element"
    weight_delta: float = 0.0
    weight_update_every: int = 0
    ssl: str = "simclr"
    symmetric: bool = False
    optimizer: str = "sgd"
    gate_layers: tuple[str, ...] = ()
    prune_layers: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "gate_layers", tuple(self.gate_layers))
        object.__setattr__(self, "prune_layers", tuple(self.prune_layers))
        _check_int(self.steps, "--steps", 1)
        _check_int(self.seed, "--seed", 0)
        _check_int(self.branches, "--branches", 1, 2)
        _check_int(self.gate_groups, "--gate-groups", 1)
        _check_int(self.gate_group_size, "--gate-group-size", 1)
        _check_int(self.channel_block, "--channel-block", 1)
        if self.ssl not in SSL_METHODS:
            raise InputError(f"must be one of {list(SSL_METHODS)}, got {self.ssl!r}",
                             field="--ssl")
        if self.ssl in MOMENTUM_SSL and self.branches != 2:
            raise InputError(f"{self.ssl} needs --branches 2 (branch 2 is its momentum "
                             f"encoder), got {self.branches}", field="--ssl")
        if self.symmetric and self.ssl not in MOMENTUM_SSL:
            raise InputError(f"a symmetric loss is BYOL's or MoCo's (--ssl "
                             f"{'/'.join(MOMENTUM_SSL)}), got --ssl {self.ssl}",
                             field="--symmetric")
        if self.optimizer not in OPTIMIZERS:
            raise InputError(f"must be one of {list(OPTIMIZERS)}, got {self.optimizer!r}",
                             field="--optimizer")
        if self.gate_gradient not in GATE_GRADIENTS:
            raise InputError(f"expected one of {', '.join(GATE_GRADIENTS)}, got "
                             f"{self.gate_gradient!r}", field="--gate-gradient")
        _check_int(self.weight_update_every, "--weight-update-every", 0)
        if self.gate_sparsity is not None:
            _check_float(self.gate_sparsity, "--gate-sparsity", 0.0, 1.0, high_open=True)
        if self.weight_sparsity is not None:
            _check_float(self.weight_sparsity, "--weight-sparsity", 0.0, 1.0, high_open=True)
        _check_float(self.overlap, "--overlap", 0.0, 1.0)
        _check_float(self.spatial_correlation, "--spatial-correlation", 0.0, math.inf)
        _check_float(self.weight_delta, "--weight-delta", 0.0, 1.0, high_open=True)
        pattern = WeightPattern.parse(self.weight_pattern)
        defaults = {f.name: f.default for f in dataclasses.fields(self)}
        if self.gate_sparsity is None:
            for name in ("gate_groups", "gate_group_size", "overlap", "spatial_correlation",
                         "channel_block", "gate_gradient"):
                if getattr(self, name) != defaults[name]:
                    raise InputError("applies to gate masks only: give --gate-sparsity too",
                                     field=_option(name))
        if pattern.kind in NM_KINDS:
            implied = pattern.implied_sparsity
            assert implied is not None
            if self.weight_sparsity is not None and \
                    abs(self.weight_sparsity - implied) > _SPARSITY_TOLERANCE:
                raise InputError(f"{self.weight_sparsity:g} contradicts --weight-pattern "
                                 f"{pattern} (which implies 1 - N/M = {implied:g}); give one "
                                 f"or the other", field="--weight-sparsity")
            if self.weight_delta > 0:
                raise InputError(f"must be 0 with --weight-pattern {pattern}: a trace records "
                                 f"one N:M pattern per layer, so both branches keep N of every "
                                 f"M", field="--weight-delta")
        elif self.weight_sparsity is None:
            for name in ("weight_pattern", "weight_delta", "weight_update_every"):
                if getattr(self, name) != defaults[name]:
                    raise InputError("applies to weight masks only: give --weight-sparsity (or "
                                     "--weight-pattern nm:N:M) too", field=_option(name))
        if self.weight_sparsity is not None and self.weight_delta > self.weight_sparsity \
                + _SPARSITY_TOLERANCE:
            raise InputError(f"{self.weight_delta:g} exceeds --weight-sparsity "
                             f"{self.weight_sparsity:g} (branch 2's sparsity is "
                             f"weight_sparsity - weight_delta)", field="--weight-delta")
        if self.branches == 1:
            for name in ("overlap", "weight_delta"):
                if getattr(self, name) != defaults[name]:
                    raise InputError("relates the two branches: needs --branches 2",
                                     field=_option(name))

    @property
    def pattern(self) -> WeightPattern:
        """The parsed :attr:`weight_pattern`."""
        return WeightPattern.parse(self.weight_pattern)

    @property
    def has_gates(self) -> bool:
        """Whether gated layers get gate masks."""
        return self.gate_sparsity is not None

    @property
    def has_weights(self) -> bool:
        """Whether pruned layers get weight masks (a sparsity, or an N:M pattern)."""
        return self.weight_sparsity is not None or self.pattern.kind in NM_KINDS

    @property
    def recorded_branches(self) -> int:
        """Branches the trace records: ``branches``, or four passes with a symmetric loss
        (branches 3 and 4 are the encoders of 1 and 2 on the other view)."""
        return SYMMETRIC_BRANCHES if self.symmetric else self.branches

    def weight_sparsities(self) -> tuple[float, float]:
        """Target weight sparsity of branch 1 and branch 2 (``S`` and ``S - delta``)."""
        implied = self.pattern.implied_sparsity
        first = implied if implied is not None else self.weight_sparsity
        if first is None:
            raise ValueError("no weight masks in this config")
        return first, max(0.0, first - self.weight_delta)


def _option(name: str) -> str:
    return "--" + name.replace("_", "-")


def _check_int(value: Any, field: str, low: int, high: int | None = None) -> None:
    ok = isinstance(value, int | np.integer) and not isinstance(value, bool) and value >= low \
        and (high is None or value <= high)
    if not ok:
        span = f">= {low}" if high is None else f"in {low}..{high}"
        raise InputError(f"expected an integer {span}, got {value!r}", field=field)


def _check_float(value: Any, field: str, low: float, high: float, *,
                 high_open: bool = False) -> None:
    ok = isinstance(value, int | float | np.floating) and not isinstance(value, bool) \
        and math.isfinite(value) and low <= value and (value < high if high_open
                                                       else value <= high)
    if not ok:
        upper = ("" if math.isinf(high) else f", {'<' if high_open else '<='} {high:g}")
        raise InputError(f"expected a number >= {low:g}{upper}, got {value!r}", field=field)


# ---------------------------------------------------------------------------------------------
# Which layers, and with which structure
# ---------------------------------------------------------------------------------------------


def _has_roles(network: Network) -> bool:
    """Built-in networks name each layer's role; a topology CSV leaves all of them "other"."""
    return any(layer.role != "other" for layer in network.layers)


def _is_fully_connected(layer: Layer) -> bool:
    """A linear layer, or a topology row that is one (a 1x1 filter on a 1x1 input map)."""
    return layer.kind == "linear" or (layer.h_in == layer.w_in == layer.kh == layer.kw == 1)


def _by_patterns(network: Network, patterns: tuple[str, ...], what: str,
                 option: str) -> list[Layer]:
    names = [layer.name for layer in network.layers]
    problem = unmatched_pattern(patterns, names)
    if problem:
        raise InputError(problem, field=option)
    chosen = [layer for layer in network.layers if matches(layer.name, patterns)]
    for layer in chosen:
        if layer.groups != 1:
            raise InputError(grouped_conv_problem(layer.name, layer.groups, what), field=option)
    return chosen


def gated_layers(network: Network, patterns: tuple[str, ...] = ()) -> list[Layer]:
    """Layers that get gate masks: those whose names match ``patterns`` (globs); without
    patterns role ``block`` when the network has roles (built-in nets), else (a SCALE-Sim
    topology) every layer except the first and the fully connected ones (a 1x1 filter on a 1x1
    input map: the classifier). Never a grouped conv."""
    if patterns:
        return _by_patterns(network, patterns, "gate", "--gate-layers")
    if _has_roles(network):
        return [layer for layer in network.layers if layer.role == "block"
                and layer.groups == 1]
    return [layer for layer in network.layers[1:]
            if not _is_fully_connected(layer) and layer.groups == 1]


def pruned_layers(network: Network, patterns: tuple[str, ...] = ()) -> list[Layer]:
    """Layers that get weight masks: those whose names match ``patterns``; without patterns
    every conv except role ``stem`` when the network has roles (so not the linear head), else
    every layer except the first and the fully connected ones. Never a grouped conv."""
    if patterns:
        return _by_patterns(network, patterns, "weight", "--prune-layers")
    if _has_roles(network):
        return [layer for layer in network.layers
                if layer.kind == "conv" and layer.role != "stem" and layer.groups == 1]
    return [layer for layer in network.layers[1:]
            if not _is_fully_connected(layer) and layer.groups == 1]


def base_chunks(gate_groups: int, overlap: float, branches: int) -> list[list[int]]:
    """Per branch, the input chunk each output chunk uses as its base path.

    Branch 1: the diagonal ``[0, .., G-1]``; branch 2: the inverse diagonal ``[G-1-g]``, except
    that its first ``round(overlap * G)`` output chunks use branch 1's chunk; branches 3 and 4
    (a symmetric loss) repeat their encoder's (:func:`accelsim.network.encoder_branch`). ``[]``
    for G = 1.
    """
    if gate_groups == 1:
        return []
    diagonal = list(range(gate_groups))
    shared = round_half_up(overlap * gate_groups)
    inverse = [g if g < shared else gate_groups - 1 - g for g in diagonal]
    return [[diagonal, inverse][encoder_branch(b) - 1] for b in range(1, branches + 1)]


def _gate_problem(layer: Layer, groups: int, size: int, block: int) -> str | None:
    cin = layer.cin // layer.groups
    if cin % groups or layer.cout % groups:
        return (f"--gate-groups {groups} must divide cin/groups={cin} and cout={layer.cout}")
    if (layer.cout // groups) % size:
        return (f"--gate-group-size {size} must divide cout/gate-groups = {layer.cout}/{groups} "
                f"= {layer.cout // groups}")
    if (layer.cout // groups) % (size * block):
        return (f"--channel-block {block} x --gate-group-size {size} must divide "
                f"cout/gate-groups = {layer.cout}/{groups} = {layer.cout // groups}")
    return None


def _weight_problem(layer: Layer, pattern: WeightPattern) -> str | None:
    cin = layer.cin // layer.groups
    if pattern.kind in NM_KINDS and cin % pattern.m:
        return f"--weight-pattern {pattern}: M={pattern.m} must divide cin/groups={cin}"
    if pattern.kind == "nmt" and layer.cout % pattern.m:
        return f"--weight-pattern {pattern}: M={pattern.m} must divide cout={layer.cout}"
    if pattern.kind == "block" and (layer.cout % pattern.block_out or cin % pattern.block_in):
        return (f"--weight-pattern {pattern}: BO={pattern.block_out} must divide "
                f"cout={layer.cout} and BI={pattern.block_in} must divide cin/groups={cin}")
    return None


def trace_layers(network: Network, config: SynthConfig) -> list[TraceLayer]:
    """The manifest layers of a synthetic trace: every layer of ``network``, with a gate spec on
    the gated layers and a weight spec on the pruned ones (when the config asks for them).

    Raises InputError naming the first layer whose channels do not fit the structure.
    """
    for given, option, needs in ((config.gate_layers, "--gate-layers", config.has_gates),
                                 (config.prune_layers, "--prune-layers", config.has_weights)):
        if given and not needs:
            raise InputError("applies to " + ("gate" if option == "--gate-layers" else "weight")
                             + " masks only: give " + ("--gate-sparsity" if option ==
                                                        "--gate-layers" else
                                                        "--weight-sparsity or an N:M pattern"),
                             field=option)
    gated = {layer.name for layer in gated_layers(network, config.gate_layers)} \
        if config.has_gates else set()
    pruned = {layer.name for layer in pruned_layers(network, config.prune_layers)} \
        if config.has_weights else set()
    if config.has_gates and not gated:
        raise InputError(f"network {network.name!r} has no gated layer (built-in nets gate "
                         f"role 'block' convs, topologies every layer but the first and the "
                         f"fully connected ones; --gate-layers chooses by name)",
                         field="--gate-sparsity")
    if config.has_weights and not pruned:
        raise InputError(f"network {network.name!r} has no prunable layer (built-in nets prune "
                         f"every conv but the stem, topologies every layer but the first and "
                         f"the fully connected ones; --prune-layers chooses by name)",
                         field="--weight-sparsity" if config.weight_sparsity is not None
                         else "--weight-pattern")
    pattern = config.pattern
    chunks = base_chunks(config.gate_groups, config.overlap, config.recorded_branches)
    problems: list[tuple[str, str]] = []
    for layer in network.layers:
        if layer.name in gated:
            problem = _gate_problem(layer, config.gate_groups, config.gate_group_size,
                                    config.channel_block)
            if problem:
                problems.append((layer.name, problem))
        if layer.name in pruned:
            problem = _weight_problem(layer, pattern)
            if problem:
                problems.append((layer.name, problem))
    if problems:
        name, message = problems[0]
        others = len({n for n, _ in problems} - {name})
        more = f" (and {others} more layer{'s' if others > 1 else ''})" if others else ""
        raise InputError(message + more, field=f"layer {name!r}")
    out = []
    for layer in network.layers:
        gate = (gate_spec_for(layer, config.gate_group_size, config.gate_groups, chunks,
                              config.gate_gradient)
                if layer.name in gated else None)
        weight = weight_spec_for(layer, str(pattern)) if layer.name in pruned else None
        out.append(TraceLayer(layer, gate, weight))
    return out


# ---------------------------------------------------------------------------------------------
# Masks
# ---------------------------------------------------------------------------------------------


def generator(seed: int, step: int, layer_index: int, branch: int, kind: str
              ) -> np.random.Generator:
    """The random generator of one mask: ``SeedSequence(seed, spawn_key=(step, layer_index,
    branch, kind code))`` with kind code 0 gate, 1 weight. Weight scores use branch 0: both
    branches rank the same scores."""
    sequence = np.random.SeedSequence(seed, spawn_key=(step, layer_index, branch,
                                                       _KIND_CODE[kind]))
    return np.random.default_rng(sequence)


def top_k_mask(scores: np.ndarray, k: int) -> np.ndarray:
    """Bool mask of ``scores``'s shape with exactly ``k`` True: the ``k`` highest scores.

    Ties at the threshold go to the lowest C-order indices, so for ``k1 <= k2`` the mask of
    ``k1`` is inside the mask of ``k2`` (same scores).
    """
    flat = np.ascontiguousarray(scores).ravel()
    size = flat.size
    k = min(max(int(k), 0), size)
    if k == 0:
        return np.zeros(scores.shape, dtype=bool)
    if k == size:
        return np.ones(scores.shape, dtype=bool)
    threshold = np.partition(flat, size - k)[size - k]
    mask = flat > threshold
    need = k - int(np.count_nonzero(mask))
    if need:
        ties = np.flatnonzero(flat == threshold)
        mask[ties[:need]] = True
    return mask.reshape(scores.shape)


def kept_count(sparsity: float, count: int) -> int:
    """Ones in a mask of ``count`` bits at ``sparsity``: ``round((1 - sparsity) * count)``."""
    return min(count, max(0, round_half_up((1.0 - sparsity) * count)))


def smoothing_matrix(size: int, sigma: float) -> np.ndarray:
    """``(size, size)`` gaussian smoothing operator along one axis: row i holds
    ``exp(-(i - j)^2 / (2 sigma^2))`` over j, scaled to unit L2 norm so that smoothing white
    noise keeps unit variance at every position (borders included)."""
    index = np.arange(size, dtype=np.float64)
    weights = np.exp(-((index[:, None] - index[None, :]) ** 2) / (2.0 * sigma * sigma))
    return weights / np.sqrt((weights * weights).sum(axis=1, keepdims=True))


def gate_scores(rng: np.random.Generator, shape: Sequence[int], correlation: float
                ) -> np.ndarray:
    """Score field of a gate mask ``(N, C, Ho, Wo)``: iid uniform for ``correlation`` 0, else
    standard gaussian noise smoothed over Ho x Wo by a separable gaussian kernel of sigma
    ``correlation`` output pixels."""
    if correlation <= 0:
        return rng.random(tuple(shape))
    noise = rng.standard_normal(tuple(shape))
    rows = smoothing_matrix(shape[-2], correlation)
    cols = smoothing_matrix(shape[-1], correlation)
    return np.matmul(np.matmul(rows, noise), cols.T)


def gate_mask(rng: np.random.Generator, shape: Sequence[int], sparsity: float,
              correlation: float, channel_block: int = 1) -> np.ndarray:
    """A gate mask of ``shape`` (N, C, Ho, Wo), equal over each block of ``channel_block``
    consecutive channels: exactly ``round((1 - sparsity) * blocks)`` of the (N, C /
    channel_block, Ho, Wo) blocks are set and repeated along C (exact at block granularity)."""
    n, c, *pixels = shape
    blocks = (n, c // channel_block, *pixels)
    scores = gate_scores(rng, blocks, correlation)
    drawn = top_k_mask(scores, kept_count(sparsity, scores.size))
    return np.repeat(drawn, channel_block, axis=1) if channel_block > 1 else drawn


def transposable_nm_mask(rng: np.random.Generator, shape: tuple[int, int, int, int], n: int,
                         m: int) -> np.ndarray:
    """A (Cout, Cin, kh, kw) mask keeping exactly N of every M consecutive input channels of
    each output channel and N of every M consecutive output channels of each input channel, at
    every kernel position: each M x M block is the circulant pattern (row r keeps columns
    r .. r+N-1 mod M) under a random row order and a random column order per block."""
    cout, cin, kh, kw = shape
    rows, cols = cout // m, cin // m
    index = np.arange(m)
    circulant = (index[None, :] - index[:, None]) % m < n  # (M, M), N ones per row and column
    row_order = np.argsort(rng.random((rows, cols, kh, kw, m)), axis=-1)
    col_order = np.argsort(rng.random((rows, cols, kh, kw, m)), axis=-1)
    blocks = circulant[row_order[..., :, None], col_order[..., None, :]]  # (R, C, kh, kw, M, M)
    return np.ascontiguousarray(blocks.transpose(0, 4, 1, 5, 2, 3)).reshape(cout, cin, kh, kw)


def weight_masks(rng: np.random.Generator, shape: Sequence[int], pattern: WeightPattern,
                 sparsities: Sequence[float]) -> list[np.ndarray]:
    """Weight masks ``(Cout, Cin/groups, kh, kw)`` at each of ``sparsities``, from one score
    draw, so a denser mask contains every sparser one.

    element: exactly ``round((1 - S) * weights)`` kept. nm: in every group of M consecutive input
    channels at fixed (cout, kh, kw), the N highest scores (``sparsities`` ignored: N/M kept).
    nmt: :func:`transposable_nm_mask`.
    block: BO x BI channel blocks shared across kh x kw, exactly ``round((1 - S) * blocks)`` kept.
    """
    cout, cin, kh, kw = (int(d) for d in shape)
    if pattern.kind == "element":
        scores = rng.random((cout, cin, kh, kw))
        return [top_k_mask(scores, kept_count(s, scores.size)) for s in sparsities]
    if pattern.kind == "nmt":
        mask = transposable_nm_mask(rng, (cout, cin, kh, kw), pattern.n, pattern.m)
        return [mask.copy() for _ in sparsities]
    if pattern.kind == "nm":
        scores = rng.random((cout, cin // pattern.m, pattern.m, kh, kw))
        order = np.argsort(-scores, axis=2, kind="stable")
        grouped = np.zeros(scores.shape, dtype=bool)
        np.put_along_axis(grouped, order[:, :, :pattern.n], True, axis=2)
        mask = grouped.reshape(cout, cin, kh, kw)
        return [mask.copy() for _ in sparsities]
    blocks = rng.random((cout // pattern.block_out, cin // pattern.block_in))
    out = []
    for s in sparsities:
        kept = top_k_mask(blocks, kept_count(s, blocks.size))
        kept = np.repeat(np.repeat(kept, pattern.block_out, axis=0), pattern.block_in, axis=1)
        out.append(np.ascontiguousarray(np.broadcast_to(kept[:, :, None, None],
                                                        (cout, cin, kh, kw))))
    return out


def _weights_update(config: SynthConfig, step: int) -> bool:
    every = config.weight_update_every
    return step == 0 if every == 0 else step % every == 0


# ---------------------------------------------------------------------------------------------
# The trace
# ---------------------------------------------------------------------------------------------


def producer(network: Network, config: SynthConfig) -> dict[str, Any]:
    """The manifest's producer object of a synthetic trace."""
    return {"algorithm": "synthetic", "generator": GENERATOR, "network": network.name,
            "ssl": config.ssl, "optimizer": config.optimizer,
            "config": dataclasses.asdict(config), "seed": config.seed}


def synthesize(network: Network, out: Path, config: SynthConfig,
               overwrite: bool = False, compression_level: int = 6,
               min_saving: float = MIN_SAVING) -> Path:
    """Write a synthetic trace of ``config.steps`` steps (numbered 0, 1, ...) for ``network``.

    Every layer of ``network`` is in the manifest; gated layers carry gate masks
    ``(N, Cout/s, Ho, Wo)`` and pruned layers weight masks ``(Cout, Cin/groups, kh, kw)`` for
    each branch. Masks are byte-identical for the same network and config. Step statistics add
    ``gate_sparsity_target``, ``weight_sparsity_target`` (per branch) and ``weight_update``
    (whether weight masks were re-drawn); ``loss`` is null. ``out`` must be absent or empty
    (``overwrite`` replaces a trace there). ``compression_level``: zlib level of the masks, 0
    stores the packed bits as they are (larger, fastest to replay); ``min_saving``: a mask is
    stored compressed only when zlib saves at least this share (:class:`TraceWriter`). Returns
    ``out``.
    """
    if not isinstance(config, SynthConfig):
        raise TypeError(f"config must be a SynthConfig, got {type(config).__name__}")
    layers = trace_layers(network, config)
    index = {layer.name: i for i, layer in enumerate(network.layers)}
    branches = range(1, config.recorded_branches + 1)
    pattern = config.pattern
    sparsities = config.weight_sparsities() if config.has_weights else (0.0, 0.0)
    with TraceWriter.create(out, producer(network, config), layers,
                            branches=config.recorded_branches,
                            overwrite=overwrite, compression_level=compression_level,
                            min_saving=min_saving) as writer:
        for step in range(config.steps):
            gates: dict[tuple[str, int], np.ndarray] = {}
            weights: dict[tuple[str, int], np.ndarray | None] = {}
            update = _weights_update(config, step)
            for item in layers:
                i = index[item.name]
                if item.gate is not None:
                    assert config.gate_sparsity is not None
                    for branch in branches:
                        rng = generator(config.seed, step, i, branch, "gate")
                        gates[(item.name, branch)] = gate_mask(
                            rng, item.gate.shape, config.gate_sparsity,
                            config.spatial_correlation, config.channel_block)
                if item.weight is not None:
                    if update:
                        rng = generator(config.seed, step, i, 0, "weight")
                        masks = weight_masks(rng, item.weight.shape, pattern,
                                             sparsities[:config.branches])
                        for branch in branches:  # an encoder's weights in all its passes
                            weights[(item.name, branch)] = masks[encoder_branch(branch) - 1]
                    else:
                        for branch in branches:
                            weights[(item.name, branch)] = None
            stats: dict[str, Any] = {"loss": None}
            if config.has_gates:
                stats["gate_sparsity_target"] = config.gate_sparsity
            if config.has_weights:
                stats["weight_sparsity_target"] = {str(b): sparsities[encoder_branch(b) - 1]
                                                   for b in branches}
                stats["weight_update"] = update
            writer.write_step(step, gates, weights, stats)
    return Path(out)


SEED_SCHEMES: dict[str, SynthConfig] = {
    "CDG (unstructured gates)": SynthConfig(steps=1, gate_sparsity=0.7164, gate_groups=4),
    "SCDG 8x1x1": SynthConfig(steps=1, gate_sparsity=0.7164, gate_groups=4, gate_group_size=8),
    "CDG, masked gate gradient": SynthConfig(steps=1, gate_sparsity=0.7164, gate_groups=4,
                                             gate_gradient="masked"),
    "SCDG 8x1x1, masked gate gradient": SynthConfig(steps=1, gate_sparsity=0.7164,
                                                    gate_groups=4, gate_group_size=8,
                                                    gate_gradient="masked"),
    "SyncCP element 80 %": SynthConfig(steps=1, weight_sparsity=0.8, weight_delta=0.3),
    "SyncCP 2:4": SynthConfig(steps=1, weight_pattern="nm:2:4"),
    "SyncCP 2:4 transposable": SynthConfig(steps=1, weight_pattern="nmt:2:4"),
    "SyncCP block 8x8 80 %": SynthConfig(steps=1, weight_sparsity=0.8, weight_delta=0.3,
                                         weight_pattern="block:8x8"),
}
"""One-step synthetic configurations of each scheme at the seeds' sparsities (CDG/SCDG: the
71.64 % conditional sparsity of the SCDG table; SyncCP: 80 % online, 50 % target), used by the
benchmarks and the structured-vs-unstructured table of docs/sparse-model.md."""
