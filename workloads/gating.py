"""Dynamic output-activation gating (CDG, SCDG, CGNet-style) and the conv every layer uses.

:class:`BranchConv2d` is an ``nn.Conv2d`` that knows its role in the backbone, which contrastive
branch (augmented view) it is computing, its optional per-branch weight masks (set by
:mod:`workloads.pruning`) and its optional gate (this module). It knows nothing about recording:
a recorder reads ``last_gate`` and ``weight_masks`` from outside.

CDG (ALGORITHMS.md sections 1-3). Input and output channels are cut into G equal chunks. In branch
``b`` output chunk ``g`` takes input chunk ``base_chunks(G, overlap)[b - 1][g]`` as its dense base
path (W_b); the other G-1 input chunks form the conditional path (W_c)::

    Y_b = conv(X, W_b)                   Y_c = conv(X, W_c)
    z   = normalize(AvgPool_s(Y_b))      per sample and channel over Ho x Wo, no affine
    d   = step(alpha * (z - tau))        backward: straight-through via sigmoid(alpha * (z - tau))
    Y   = Y_b + repeat_s(d) * Y_c

``s`` (``group_size``) is 1 for CDG (one gate bit per output element) and 8 by default for SCDG
(one bit per ``s`` consecutive output channels at a pixel). CGNet-style gating is overlap 1 (the
same base chunks in both branches). G must be >= 2: with G = 1 there is no base path and the
saliency would have to come from the output it decides to skip.

Choices (ours, each a parameter of :class:`GatingConfig`): the gate is open where
``alpha * (z - tau) > 0`` (closed at exactly 0); tau is one learnable threshold per gate channel
(``Cout // s``: per output channel for CDG, per channel group for SCDG); ``normalize`` uses the
biased variance and ``norm_eps``; gradients flow through the normalisation (no detach).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from accelsim.layer_patterns import grouped_conv_problem, matches, unmatched_pattern
from accelsim.network import SYMMETRIC_BRANCHES, encoder_branch
from accelsim.trace.manifest import GATE_GRADIENTS  # how a trace records the estimator
from accelsim.trace.synth import base_chunks as trace_base_chunks

GATING_KINDS: tuple[str, ...] = ("none", "cdg", "scdg", "cgnet", "fbs", "dgc")
SALIENCY_KINDS: tuple[str, ...] = ("fbs", "dgc")  # predictor gating: no base path, no tau
CONV_ROLES: tuple[str, ...] = ("stem", "block", "downsample", "head", "other")
MASK_GRADIENTS: tuple[str, ...] = ("masked", "dense")
SCDG_DEFAULT_GROUP_SIZE = 8

#: tau_target default. normalize() makes the saliency of every gate channel zero-mean and
#: unit-variance over Ho x Wo, so the open fraction of the gates is P(z > tau): for a Gaussian z,
#: tau = 0.52 leaves 30 % open. Measured on a random-init ResNet-18 (CDG and SCDG, G = 4,
#: smoothed-noise images): 71 % conditional sparsity at tau = 0.52 (70 % at 0.5, 74 % at 0.6),
#: the seeds' operating point (71-72 %).
DEFAULT_TAU_TARGET = 0.52


@dataclass(frozen=True)
class GatingConfig:
    """Which layers are gated and how (ALGORITHMS.md sections 1-3).

    ``kind``: ``none`` (dense), ``cdg``, ``scdg`` or ``cgnet`` (= CDG with ``overlap`` 1).
    ``groups``: G gating groups (>= 2); must divide Cin and Cout of every gated layer.
    ``group_size``: s output channels per gate bit; None means the kind's default (8 for scdg,
    1 otherwise); s must divide Cout / G.
    ``overlap``: fraction of output chunks whose base chunk is the same in both branches; None
    means the kind's default (1.0 for cgnet, 0.0 = CDG's disjoint base paths otherwise).
    ``alpha``: slope of the sigmoid in the straight-through backward pass (the forward step does
    not depend on it). ``tau_init``: initial thresholds. ``tau_target``, ``reg_lambda``: the
    regulariser ``reg_lambda * sum (tau - tau_target)^2`` (see :func:`gate_regularizer`).
    ``norm_eps``: epsilon of the standardisation. ``gated_roles``: roles of the gated convs
    (``block`` = the 3x3 convs inside residual blocks). ``gate_gradient``: ``straight_through``
    (dL/dd = sum dL/dY x Y_c at every output, so the forward pass needs Y_c everywhere; the
    seeds' estimator) or ``masked`` (dL/dd only where the gate is open, so closed conditional
    outputs need not be computed; a biased estimator that hardware skipping in FW can run). The
    trace records it. ``layers``: glob patterns (``fnmatch``) of the qualified names of the
    gated layers, in place of ``gated_roles`` (empty: by role; see :func:`selects`).

    ``fbs`` (Feature Boosting and Suppression, Gao et al., ICLR 2019) has no base path: a
    small predictor (global average pool of |X|, then a linear layer Cin -> Cout and ReLU)
    scores every output channel of a sample, and the k-winners-take-all keeps the best
    ``density`` x Cout of them, scaled by their scores (:meth:`BranchConv2d._fbs_forward`).
    ``groups`` is 1 (None: the kind's default, 4 otherwise); the CDG settings do not apply.

    ``dgc`` (dynamic group convolution, Su et al., ECCV 2020) cuts the output channels into
    ``heads`` groups; per sample each head's saliency generator (a global average pool of X,
    then Cin -> max(4, Cin/16) -> Cin linear layers with ReLUs) scores the input channels, and
    the head reads only the best ``density`` x Cin of them, scaled by their scores
    (:meth:`BranchConv2d._dgc_forward`). ``reg_lambda`` weighs the lasso on the scores (their
    mean |score| over the training forwards since the last step's regulariser: both views).
    """

    kind: str = "none"
    groups: int | None = None
    group_size: int | None = None
    overlap: float | None = None
    alpha: float = 2.0
    tau_init: float = 0.0
    tau_target: float = DEFAULT_TAU_TARGET
    reg_lambda: float = 1e-4
    norm_eps: float = 1e-5
    gated_roles: tuple[str, ...] = ("block",)
    gate_gradient: str = "straight_through"
    layers: tuple[str, ...] = ()
    density: float = 0.5
    heads: int = 4

    def __post_init__(self) -> None:
        object.__setattr__(self, "layers", tuple(self.layers))
        if self.kind not in GATING_KINDS:
            raise ValueError(f"gating kind must be one of {GATING_KINDS}, got {self.kind!r}")
        if self.groups is None:
            object.__setattr__(self, "groups", 1 if self.kind in SALIENCY_KINDS else 4)
        if self.kind in SALIENCY_KINDS:
            if self.groups != 1 or self.group_size not in (None, 1) or self.overlap not in (
                    None, 0.0) or self.gate_gradient not in ("straight_through", "masked"):
                raise ValueError(f"{self.kind} gating has no gating groups, channel groups, "
                                 "base-path overlap or gate gradient setting (it records a "
                                 "masked gradient: what is not selected gets none)")
            object.__setattr__(self, "gate_gradient", "masked")
            if not 0.0 < self.density <= 1.0:
                raise ValueError(f"{self.kind} density must be in (0, 1], got "
                                 f"{self.density!r}")
        if not _is_int(self.heads) or self.heads < 1:
            raise ValueError(f"dgc heads must be a positive integer, got {self.heads!r}")
        if self.group_size is None:
            object.__setattr__(
                self, "group_size", SCDG_DEFAULT_GROUP_SIZE if self.kind == "scdg" else 1
            )
        if self.overlap is None:
            object.__setattr__(self, "overlap", 1.0 if self.kind == "cgnet" else 0.0)
        object.__setattr__(self, "gated_roles", tuple(self.gated_roles))
        if not _is_int(self.groups) or (self.kind not in ("none", *SALIENCY_KINDS)
                                        and self.groups < 2):
            raise ValueError(
                f"gating groups must be an integer >= 2 (the base path is one of G "
                f"input chunks), got {self.groups!r}"
            )
        if not _is_int(self.group_size) or self.group_size < 1:
            raise ValueError(f"group_size must be a positive integer, got {self.group_size!r}")
        if not 0.0 <= self.overlap <= 1.0:
            raise ValueError(f"overlap must be in [0, 1], got {self.overlap!r}")
        if self.kind == "cgnet" and self.overlap != 1.0:
            raise ValueError(
                f"cgnet gating shares its base path between branches (overlap 1.0); "
                f"got overlap={self.overlap}: use algo cdg for a partial overlap"
            )
        if not self.alpha > 0:
            raise ValueError(f"alpha must be > 0, got {self.alpha!r}")
        if not self.reg_lambda >= 0:
            raise ValueError(f"reg_lambda must be >= 0, got {self.reg_lambda!r}")
        if not self.norm_eps > 0:
            raise ValueError(f"norm_eps must be > 0, got {self.norm_eps!r}")
        if self.gate_gradient not in GATE_GRADIENTS:
            raise ValueError(f"gate_gradient must be one of {GATE_GRADIENTS}, got "
                             f"{self.gate_gradient!r}")
        bad = [role for role in self.gated_roles if role not in CONV_ROLES]
        if bad:
            raise ValueError(f"gated_roles must be among {CONV_ROLES}, got {bad}")

    @property
    def enabled(self) -> bool:
        """Whether any layer is gated."""
        return self.kind != "none"

    def gates(self, name: str, role: str, groups: int = 1) -> bool:
        """Whether the conv ``name`` with ``role`` and ``groups`` is gated (:func:`selects`)."""
        return self.enabled and selects(self.layers, self.gated_roles, name, role, groups,
                                        "gate")


class LayerOptionError(ValueError):
    """A layer, or a layer pattern, that a setting cannot be applied to; ``option`` names the
    setting (``--gate-layers``, ``--gate-groups/--gate-group-size``, ...)."""

    def __init__(self, message: str, option: str) -> None:
        super().__init__(message)
        self.option = option


PATTERN_OPTIONS = {"gate": "--gate-layers", "weight": "--prune-layers"}
GATE_SHAPE_OPTIONS = "--gate-groups/--gate-group-size"  # what a gate that does not fit names


def selects(patterns: Sequence[str], roles: Sequence[str], name: str, role: str, groups: int,
            what: str) -> bool:
    """Whether a layer ``name`` with ``role`` and ``groups`` gets masks of kind ``what``.

    With ``patterns`` (globs of qualified names): the layers that match one; a grouped conv
    that matches is a ValueError naming it (the replay has no rules for masks on grouped
    convolutions). Without: the layers whose role is in ``roles``, grouped convs left dense.
    """
    if patterns:
        chosen = matches(name, patterns)
        if chosen and groups != 1:
            raise LayerOptionError(grouped_conv_problem(name, groups, what),
                                    PATTERN_OPTIONS[what])
        return chosen
    return role in roles and groups == 1


def check_patterns(patterns: Sequence[str], names: Sequence[str], what: str) -> None:
    """A :class:`LayerOptionError` for the first of ``patterns`` (of ``what``: gating or
    weight masks) that matches none of ``names``."""
    problem = unmatched_pattern(patterns, names)
    if problem:
        raise LayerOptionError(problem, PATTERN_OPTIONS[what])


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def base_chunks(groups: int, overlap: float, branches: int = 2) -> list[list[int]]:
    """Per branch, the input chunk each output chunk uses as its base path: the trace's rule,
    :func:`accelsim.trace.synth.base_chunks` (branch 1 the diagonal ``[0, 1, ..., G-1]``,
    branch 2 the inverse diagonal ``G-1-g`` except that its first ``floor(overlap * G + 0.5)``
    chunks equal branch 1's; branches 3 and 4 of a symmetric loss repeat their encoder's). With
    odd G the middle chunk lies on both diagonals, so even overlap 0 shares that one chunk.
    """
    if not _is_int(groups) or groups < 1:
        raise ValueError(f"groups must be a positive integer, got {groups!r}")
    if not 0.0 <= overlap <= 1.0:
        raise ValueError(f"overlap must be in [0, 1], got {overlap!r}")
    if branches not in range(1, SYMMETRIC_BRANCHES + 1):
        raise ValueError(f"branches must be 1 to {SYMMETRIC_BRANCHES}, got {branches!r}")
    if groups == 1:  # one chunk: it is every output chunk's base
        return [[0] for _ in range(branches)]
    return trace_base_chunks(groups, overlap, branches)


class _StraightThroughStep(torch.autograd.Function):
    """Forward: the given hard 0/1 gate (exactly). Backward: d sigmoid(u) / du."""

    @staticmethod
    def forward(ctx: torch.autograd.function.FunctionCtx, u: Tensor, hard: Tensor) -> Tensor:
        ctx.save_for_backward(u)
        return hard.to(u.dtype)

    @staticmethod
    def backward(ctx: torch.autograd.function.FunctionCtx, grad: Tensor) -> tuple[Tensor, None]:
        (u,) = ctx.saved_tensors  # type: ignore[attr-defined]
        sig = torch.sigmoid(u)
        return grad * sig * (1 - sig), None


class _DenseGradMask(torch.autograd.Function):
    """Forward ``weight * mask``; backward: the gradient reaches every weight (straight-through)."""

    @staticmethod
    def forward(ctx: torch.autograd.function.FunctionCtx, weight: Tensor, mask: Tensor) -> Tensor:
        return weight * mask

    @staticmethod
    def backward(ctx: torch.autograd.function.FunctionCtx, grad: Tensor) -> tuple[Tensor, None]:
        return grad, None


def standardize(x: Tensor, eps: float) -> Tensor:
    """Per-sample, per-channel standardisation of ``x`` (N, C, H, W) over H x W, no affine:
    (x - mean) / sqrt(biased var + eps), computed by the fused instance-norm kernel."""
    return F.instance_norm(x, eps=eps)


class BranchConv2d(nn.Conv2d):
    """A conv with a role, a current branch, optional per-branch weight masks and an optional gate.

    ``role``: stem / block / downsample / other. ``branch``: 1 or 2, the contrastive branch the
    next forward computes (see :func:`set_branch`). ``weight_masks``: None (dense) or
    ``{branch: bool (Cout, Cin/groups, kh, kw)}``, stored as non-persistent buffers
    ``weight_mask_<b>`` (they follow ``.to(device)``; :class:`workloads.pruning.SyncCP` saves
    them). ``mask_gradient``: ``masked`` (pruned weights get zero gradient from that branch) or
    ``dense`` (straight-through: every weight gets the gradient of the effective weight).

    ``gating``: None or the :class:`GatingConfig` of a gated layer; then ``tau`` holds one
    threshold per gate channel (``Cout // s``) and ``last_gate[b]`` is the bool gate (N, Cout//s,
    Ho, Wo) the last forward of branch ``b`` multiplied the conditional path with (the very
    tensor, detached; True = computed). ``record_as``: the trace branch ``b`` a forward's gate
    is kept under, ``branch`` unless :func:`set_branch` says otherwise (a symmetric loss's
    second pass of an encoder: branches 3 and 4, :func:`accelsim.network.encoder_branch`).

    ``capture_dense_grad``: while True, every backward adds dL/d(effective weight) (dense, before
    masking) into ``dense_grad`` (used by prune-and-regrow; the pruner arms and clears it).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        padding: int = 0,
        *,
        groups: int = 1,
        bias: bool = False,
        role: str = "other",
        gating: GatingConfig | None = None,
    ) -> None:
        super().__init__(
            in_channels,
            out_channels,
            kernel_size,
            stride=stride,
            padding=padding,
            groups=groups,
            bias=bias,
        )
        if role not in CONV_ROLES:
            raise ValueError(f"role must be one of {CONV_ROLES}, got {role!r}")
        self.role = role
        self.branch = 1
        self.record_as = 1  # the trace branch the next forward's gate is kept for
        self.mask_gradient = "masked"
        self.capture_dense_grad = False
        self.dense_grad: Tensor | None = None
        self.last_gate: dict[int, Tensor] = {}
        self.last_select: dict[int, Tensor] = {}  # DGC: bool (N, heads, Cin) per trace branch
        self._lasso: list[Tensor] = []  # DGC: mean |saliency| of the forwards since the last
        #                                 regulariser (gate_regularizer takes their mean)
        self._mask_branches: tuple[int, ...] = ()
        self.gating: GatingConfig | None = None
        if gating is not None and gating.enabled:
            self._init_gating(gating)

    def _init_gating(self, gating: GatingConfig) -> None:
        cin, cout, g, s = self.in_channels, self.out_channels, gating.groups, gating.group_size
        if self.groups != 1:
            raise ValueError(f"gated convs must have groups=1, got groups={self.groups}")
        if gating.kind == "fbs":
            self.gating = gating
            # the channel-saliency predictor; scores start near 1 (bias 1, small weights), so
            # the boost starts near 1 and the first winners are nearly random
            self.saliency = nn.Linear(cin, cout)
            nn.init.normal_(self.saliency.weight, std=0.01)
            nn.init.ones_(self.saliency.bias)
            return
        if gating.kind == "dgc":
            if cout % gating.heads:
                raise ValueError(f"dgc heads={gating.heads} must divide Cout={cout}")
            self.gating = gating
            hidden = max(4, cin // 16)  # the squeeze ratio of the paper's generators
            self.dgc_squeeze = nn.Parameter(torch.randn(gating.heads, hidden, cin) / cin ** 0.5)
            self.dgc_squeeze_bias = nn.Parameter(torch.zeros(gating.heads, hidden))
            # scores start near 1 (bias 1, small weights): the first selections nearly random
            self.dgc_excite = nn.Parameter(torch.randn(gating.heads, cin, hidden) * 0.01)
            self.dgc_excite_bias = nn.Parameter(torch.ones(gating.heads, cin))
            self.last_map = (0, 0)  # the output map (Ho, Wo) of the last forward
            return
        if cin % g or cout % g:
            raise ValueError(f"gating groups G={g} must divide Cin={cin} and Cout={cout}")
        if (cout // g) % s:
            raise ValueError(
                f"gate group_size s={s} must divide the output chunk Cout/G="
                f"{cout // g} (Cout={cout}, G={g})"
            )
        self.gating = gating
        self.tau = nn.Parameter(torch.full((cout // s,), float(gating.tau_init)))
        for branch, chunks in enumerate(base_chunks(g, gating.overlap), start=1):
            mask = torch.zeros(cout, cin, 1, 1, dtype=torch.bool)
            ci, co = cin // g, cout // g
            for out_chunk, in_chunk in enumerate(chunks):
                mask[out_chunk * co : (out_chunk + 1) * co, in_chunk * ci : (in_chunk + 1) * ci] = (
                    True
                )
            self.register_buffer(f"base_mask_{branch}", mask, persistent=False)

    # -- weight masks ------------------------------------------------------------------------

    @property
    def weight_masks(self) -> dict[int, Tensor] | None:
        """``{branch: bool mask (Cout, Cin/groups, kh, kw)}`` or None (dense)."""
        if not self._mask_branches:
            return None
        return {b: getattr(self, f"weight_mask_{b}") for b in self._mask_branches}

    @weight_masks.setter
    def weight_masks(self, masks: dict[int, Tensor] | None) -> None:
        for b in self._mask_branches:
            del self._buffers[f"weight_mask_{b}"]
        self._mask_branches = ()
        if masks is None:
            return
        for b, mask in sorted(masks.items()):
            if b not in (1, 2):
                raise ValueError(f"weight mask branch must be 1 or 2, got {b!r}")
            if mask.dtype != torch.bool or tuple(mask.shape) != tuple(self.weight.shape):
                raise ValueError(
                    f"weight mask of branch {b} must be bool "
                    f"{tuple(self.weight.shape)}, got {mask.dtype} "
                    f"{tuple(mask.shape)}"
                )
            self.register_buffer(f"weight_mask_{b}", mask.to(self.weight.device), persistent=False)
        self._mask_branches = tuple(sorted(masks))

    def effective_weight(self, branch: int) -> Tensor:
        """``weight * weight_masks[branch]`` (the weight itself when dense).

        Pruned weights keep their values (masks are never written into the weights); their
        gradient is zero (``mask_gradient`` ``masked``) or straight-through (``dense``).
        """
        masks = self.weight_masks
        if masks is None:
            return self.weight
        if branch not in masks:
            raise KeyError(f"no weight mask for branch {branch} (masks for {sorted(masks)})")
        if self.mask_gradient == "dense":
            return _DenseGradMask.apply(self.weight, masks[branch])
        return self.weight * masks[branch]

    def base_mask(self, branch: int) -> Tensor:
        """Bool (Cout, Cin, 1, 1): True on the base-path blocks of ``branch`` (gated convs)."""
        if self.gating is None:
            raise ValueError("not a gated conv")
        return getattr(self, f"base_mask_{branch}")

    # -- forward -----------------------------------------------------------------------------

    def _accumulate_dense_grad(self, grad: Tensor) -> None:
        grad = grad.detach()
        self.dense_grad = grad.clone() if self.dense_grad is None else self.dense_grad + grad

    def forward(self, x: Tensor) -> Tensor:
        """(N, Cin, H, W) -> (N, Cout, Ho, Wo) for the current ``branch``."""
        if self.branch not in (1, 2):
            raise ValueError(f"branch must be 1 or 2, got {self.branch!r}")
        weight = self.effective_weight(self.branch)
        if self.capture_dense_grad and weight.requires_grad and torch.is_grad_enabled():
            if weight is self.weight:
                weight = weight.view_as(weight)  # a non-leaf to hook without a persistent hook
            weight.register_hook(self._accumulate_dense_grad)
        if self.gating is None:
            return self._conv_forward(x, weight, self.bias)
        if self.gating.kind == "fbs":
            return self._fbs_forward(x, weight, self.gating)
        if self.gating.kind == "dgc":
            return self._dgc_forward(x, weight, self.gating)
        return self._gated_forward(x, weight, self.gating)

    def _dgc_forward(self, x: Tensor, weight: Tensor, gating: GatingConfig) -> Tensor:
        """DGC: head h computes its Cout/heads output channels from ``X * g_h`` only, ``g_h =
        wta_k(relu(excite_h(relu(squeeze_h(mean X)))))``, the k = ceil(density x Cin) best
        input channels of each sample kept with their scores, the rest 0. Its selection,
        ``g_h > 0`` per (sample, head, input channel), is recorded (``last_select``): an
        unselected channel is neither read nor differentiated by the head."""
        heads, cin = gating.heads, self.in_channels
        pooled = x.mean(dim=(2, 3))  # (N, Cin)
        hidden = F.relu(torch.einsum("nc,hdc->nhd", pooled, self.dgc_squeeze)
                        + self.dgc_squeeze_bias)
        scores = F.relu(torch.einsum("nhd,hcd->nhc", hidden, self.dgc_excite)
                        + self.dgc_excite_bias)  # (N, heads, Cin)
        keep = max(1, math.ceil(gating.density * cin - 1e-9))
        top = scores.topk(keep, dim=2).indices
        winners = torch.zeros_like(scores).scatter(2, top, scores.gather(2, top))
        per_head = self.out_channels // heads
        outputs = [self._conv_forward(x * winners[:, h, :, None, None],
                                      weight[h * per_head:(h + 1) * per_head],
                                      None if self.bias is None else
                                      self.bias[h * per_head:(h + 1) * per_head])
                   for h in range(heads)]
        if self.training and torch.is_grad_enabled() and not x.is_meta:  # not fine-tuning
            self._lasso.append(scores.abs().mean())
        if not x.is_meta:
            self.last_select[self.record_as] = (winners > 0).detach()
            self.last_map = (outputs[0].shape[2], outputs[0].shape[3])
        return torch.cat(outputs, dim=1)

    def _fbs_forward(self, x: Tensor, weight: Tensor, gating: GatingConfig) -> Tensor:
        """FBS: ``Y = conv(X) * pi``, ``pi = wta_k(relu(saliency(v)))``, ``v`` the mean |X|
        of each input channel over H x W divided by its mean over the channels (ours: the
        boost then does not grow with the input's scale, which would compound from layer to
        layer before BN's running statistics settle); the k = ceil(density x Cout) best scores
        of each sample kept, the rest 0. Its gate, ``pi > 0`` per (sample, channel), is
        recorded over every output pixel: a suppressed channel is neither computed nor
        differentiated (its output and gradient are 0)."""
        pooled = x.abs().mean(dim=(2, 3))  # (N, Cin)
        pooled = pooled / (pooled.mean(dim=1, keepdim=True) + gating.norm_eps)
        scores = F.relu(self.saliency(pooled))  # (N, Cout)
        keep = max(1, math.ceil(gating.density * self.out_channels - 1e-9))
        top = scores.topk(keep, dim=1).indices
        winners = torch.zeros_like(scores).scatter(1, top, scores.gather(1, top))
        y = self._conv_forward(x, weight, self.bias) * winners[:, :, None, None]
        if not x.is_meta:
            hard = (winners > 0).detach()
            self.last_gate[self.record_as] = hard[:, :, None, None].expand(
                -1, -1, y.shape[2], y.shape[3])
        return y

    def _gated_forward(self, x: Tensor, weight: Tensor, gating: GatingConfig) -> Tensor:
        cout, s = self.out_channels, gating.group_size
        base = self.base_mask(self.branch)
        # Two convs (same MACs as one over both paths) keep each output contiguous.
        y_base = self._conv_forward(x, weight * base, None)
        y_cond = self._conv_forward(x, weight * ~base, None)
        if self.bias is not None:
            y_base = y_base + self.bias.view(1, -1, 1, 1)
        saliency = y_base if s == 1 else y_base.unflatten(1, (cout // s, s)).mean(dim=2)
        u = gating.alpha * (standardize(saliency, gating.norm_eps) - self.tau.view(1, -1, 1, 1))
        hard = (u > 0).detach()
        gate = _StraightThroughStep.apply(u, hard)
        if s > 1:
            gate = gate.repeat_interleave(s, dim=1)
        if not x.is_meta:
            self.last_gate[self.record_as] = hard
        if gating.gate_gradient == "masked":
            # the same forward (gate = hard); dL/dd sees Y_c only where the gate is open
            open_ = hard if s == 1 else hard.repeat_interleave(s, dim=1)
            y_cond = y_cond * open_.to(y_cond.dtype)
        return y_base + gate * y_cond


class BranchLinear(BranchConv2d):
    """A fully connected layer as a :class:`BranchConv2d` 1x1 conv: (N, in) -> (N, out).

    Everything a BranchConv2d has (role, branch, per-branch weight masks of shape
    (out, in, 1, 1)) applies; gating does not (its saliency is standardised over the output map,
    and a linear layer's map is one pixel). :func:`from_linear` takes an ``nn.Linear``'s weights.
    """

    def __init__(self, in_features: int, out_features: int, *, bias: bool = True,
                 role: str = "head") -> None:
        super().__init__(in_features, out_features, 1, bias=bias, role=role)

    @classmethod
    def from_linear(cls, linear: nn.Linear, role: str = "head") -> BranchLinear:
        """A BranchLinear holding ``linear``'s weight and bias (copied)."""
        layer = cls(linear.in_features, linear.out_features, bias=linear.bias is not None,
                    role=role)
        with torch.no_grad():
            layer.weight.copy_(linear.weight.view_as(layer.weight))
            if linear.bias is not None:
                layer.bias.copy_(linear.bias)
        return layer.to(linear.weight.device, linear.weight.dtype)

    def forward(self, x: Tensor) -> Tensor:
        """(N, in) -> (N, out) for the current ``branch``."""
        if x.dim() != 2:
            raise ValueError(f"a recorded linear layer takes (N, features) inputs, got shape "
                             f"{tuple(x.shape)}")
        return super().forward(x[:, :, None, None]).flatten(1)


def branch_convs(module: nn.Module) -> list[tuple[str, BranchConv2d]]:
    """``(qualified name, conv)`` of every :class:`BranchConv2d` in ``module``, in module order."""
    return [(name, m) for name, m in module.named_modules() if isinstance(m, BranchConv2d)]


def set_branch(module: nn.Module, branch: int, record_as: int | None = None) -> None:
    """Make every :class:`BranchConv2d` in ``module`` compute ``branch`` (1 or 2) from now on,
    keeping its gates for trace branch ``record_as`` (default ``branch``; 3 or 4 for the
    second pass of a symmetric loss, whose encoder branch it must be)."""
    if branch not in (1, 2):
        raise ValueError(f"branch must be 1 or 2, got {branch!r}")
    record_as = branch if record_as is None else record_as
    if record_as not in range(1, SYMMETRIC_BRANCHES + 1) or encoder_branch(record_as) != branch:
        raise ValueError(f"trace branch {record_as!r} is not a pass of encoder branch {branch}")
    for _, conv in branch_convs(module):
        conv.branch = branch
        conv.record_as = record_as


def set_mask_gradient(module: nn.Module, mode: str) -> None:
    """``masked`` or ``dense`` weight-mask gradient on every :class:`BranchConv2d`."""
    if mode not in MASK_GRADIENTS:
        raise ValueError(f"mask gradient must be one of {MASK_GRADIENTS}, got {mode!r}")
    for _, conv in branch_convs(module):
        conv.mask_gradient = mode


def gated_convs(module: nn.Module) -> list[tuple[str, BranchConv2d]]:
    """``(qualified name, conv)`` of the gated convs of ``module``."""
    return [(name, m) for name, m in branch_convs(module) if m.gating is not None]


def gate_parameters(module: nn.Module) -> list[nn.Parameter]:
    """The thresholds tau of all gated convs (keep them out of weight decay; FBS has none)."""
    return [conv.tau for _, conv in gated_convs(module) if hasattr(conv, "tau")]


def gate_regularizer(module: nn.Module) -> Tensor:
    """``sum over gated convs of reg_lambda * sum_c (tau_c - tau_target)^2`` (a scalar tensor),
    plus for every DGC conv ``reg_lambda`` x its mean |score| over the training forwards since
    the last call (which takes them)."""
    terms = []
    for _, conv in gated_convs(module):
        gating = conv.gating
        assert gating is not None
        if gating.kind not in SALIENCY_KINDS:
            terms.append(gating.reg_lambda * (conv.tau - gating.tau_target).pow(2).sum())
        elif gating.kind == "dgc" and conv._lasso:  # the lasso on the last forwards' scores
            terms.append(gating.reg_lambda * torch.stack(conv._lasso).mean())
            conv._lasso = []
    if not terms:
        param = next(module.parameters(), None)
        return torch.zeros((), device=None if param is None else param.device)
    return torch.stack(terms).sum()


def gate_sparsity(module: nn.Module) -> float:
    """``1 - (open gate bits / gate bits)`` over the last gates of every gated conv and branch.

    Counted per gate bit (= per output element for CDG, per s elements for SCDG, the same
    weighting within a network). 0.0 when no gate has been recorded.
    """
    ones = total = 0
    for _, conv in gated_convs(module):
        for gate in (*conv.last_gate.values(), *conv.last_select.values()):
            ones += int(gate.sum())
            total += gate.numel()
    return 0.0 if total == 0 else 1.0 - ones / total


def gate_macs(conv: BranchConv2d, branch: int) -> int:
    """MACs of the last forward of gated ``conv`` in ``branch``, counted from its masks.

    Dense base path: k^2 * (base inputs of each output channel) * N*Ho*Wo; conditional path:
    k^2 * (conditional inputs of that channel) for every output element whose gate bit is 1.
    Weight sparsity is not counted. Equals k^2*Cin*Cout*Ho*Wo*N*(1/G + (1 - 1/G)*rho). FBS (no
    base path): k^2 * Cin for every kept output element (the predictor's Cin x Cout MACs per
    sample are not counted). DGC: k^2 x Cout/heads x Ho x Wo per selected (sample, head, input
    channel), its saliency generators not counted either.
    """
    if conv.gating is not None and conv.gating.kind == "dgc" and branch in conv.last_select:
        select = conv.last_select[branch]  # (N, heads, Cin): each head's outputs read these
        ho, wo = conv.last_map
        k2 = conv.kernel_size[0] * conv.kernel_size[1]
        return k2 * int(select.sum()) * (conv.out_channels // select.shape[1]) * ho * wo
    if conv.gating is None or branch not in conv.last_gate:
        raise ValueError("gate_macs needs a gated conv with a recorded gate for that branch")
    # ``branch`` is a trace branch: 3 and 4 are passes of encoder branches 1 and 2
    gate = conv.last_gate[branch]
    s = conv.gating.group_size
    k2 = conv.kernel_size[0] * conv.kernel_size[1]
    if conv.gating.kind == "fbs":
        return k2 * conv.in_channels * int(gate.sum())
    base_inputs = conv.base_mask(encoder_branch(branch))[:, :, 0, 0].sum(dim=1)  # (Cout,)
    cond_inputs = conv.in_channels - base_inputs
    n, _, ho, wo = gate.shape
    open_per_channel = gate.sum(dim=(0, 2, 3)).repeat_interleave(s)  # (Cout,)
    base = int(base_inputs.sum()) * n * ho * wo
    cond = int((open_per_channel * cond_inputs).sum())
    return k2 * (base + cond)


def gated_macs_formula(
    kernel: int, cin: int, cout: int, ho: int, wo: int, batch: int, groups: int, density: float
) -> float:
    """ALGORITHMS.md: MACs = k^2*Cin*Cout*Ho*Wo*N*(1/G + (1 - 1/G)*rho), rho = open fraction."""
    return (
        kernel * kernel * cin * cout * ho * wo * batch * (1 / groups + (1 - 1 / groups) * density)
    )
