"""Contrastive / self-distillation SSL methods, solo-learn style.

Losses are pure tensor functions; each method is a small subclass of :class:`SSLMethod` (or
:class:`MomentumMethod`) that declares its heads, its momentum pairs and its training step;
:data:`METHODS` is the registry and :func:`build_method` the factory.

Branch convention (the trace records gate masks per branch; the simulator runs branch 2 of a
momentum method forward only):

- SimCLR: branch 1 = view 1 through the shared encoder, branch 2 = view 2 through the same
  encoder; both forward and backward.
- BYOL, MoCo v2: branch 1 = the online encoder (forward + backward), branch 2 = the target /
  momentum encoder (forward only, under ``no_grad``). The branch follows the encoder, not the view:
  with the default asymmetric loss (``symmetric=False``) a step runs online(view 1) and
  target(view 2), one forward per branch, which is what the two-branch trace models. With
  ``symmetric=True`` (the BYOL paper's symmetrised loss) it also runs online(view 2), encoder
  branch 1 recorded as trace branch 3, and target(view 1), encoder branch 2 recorded as trace
  branch 4: twice the work per step, all of it in the trace (:attr:`SSLMethod.trace_branches`).

Before every encoder forward the branch is written into the encoder's gating modules by
:func:`_set_branch` (``workloads.gating.set_branch`` when that module provides it).
"""

from __future__ import annotations

import copy
import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from accelsim.errors import InputError
from accelsim.schema import did_you_mean

__all__ = [
    "BYOL",
    "METHODS",
    "BYOLConfig",
    "MoCoV2",
    "MoCoV2Config",
    "MomentumMethod",
    "SSLConfig",
    "SSLMethod",
    "SimCLR",
    "SimCLRConfig",
    "build_method",
    "byol_loss",
    "infonce",
    "momentum_tau",
    "nt_xent",
]

# ---------------------------------------------------------------------------------- losses


def nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float = 0.2) -> torch.Tensor:
    """SimCLR's NT-Xent loss of two batches of projections (N, D) -> scalar.

    Each of the 2N embeddings (L2-normalised) has its other view as the positive and the
    2N - 2 other embeddings as negatives; cosine similarities are divided by ``temperature``
    and the cross-entropy is averaged over all 2N anchors.
    """
    n = z1.shape[0]
    z = F.normalize(torch.cat([z1, z2]), dim=1)
    logits = z @ z.t() / temperature
    logits.fill_diagonal_(float("-inf"))
    targets = torch.cat([torch.arange(n, 2 * n), torch.arange(n)]).to(z.device)
    return F.cross_entropy(logits, targets)


def byol_loss(p: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """BYOL's regression loss ``2 - 2 cos(p, z)``, averaged over the batch (N, D) -> scalar.

    Pure: gradients flow into both arguments; callers pass a target ``z`` computed without grad.
    """
    return 2.0 - 2.0 * F.cosine_similarity(p, z, dim=-1).mean()


def infonce(
    q: torch.Tensor, k: torch.Tensor, queue: torch.Tensor, temperature: float = 0.2
) -> torch.Tensor:
    """MoCo's InfoNCE loss: queries q (N, D), positive keys k (N, D), negatives queue (K, D).

    All three are L2-normalised here. Logits are ``[q.k, q.queue^T] / temperature`` with the
    positive at index 0; returns the mean cross-entropy (scalar).
    """
    q = F.normalize(q, dim=1)
    k = F.normalize(k, dim=1)
    queue = F.normalize(queue, dim=1)
    pos = (q * k).sum(dim=1, keepdim=True)
    neg = q @ queue.t()
    logits = torch.cat([pos, neg], dim=1) / temperature
    return F.cross_entropy(logits, torch.zeros(q.shape[0], dtype=torch.long, device=q.device))


def momentum_tau(step: int, total_steps: int, base: float, final: float) -> float:
    """Cosine momentum schedule: ``final - (final - base) * (cos(pi * step / total) + 1) / 2``.

    ``base`` at step 0, ``final`` at ``total_steps`` (BYOL's 0.99 -> 1.0).
    """
    if total_steps <= 0:
        return final
    progress = min(max(step / total_steps, 0.0), 1.0)
    return final - (final - base) * (math.cos(math.pi * progress) + 1.0) / 2.0


# ----------------------------------------------------------------------------- branch hook

_gating_set_branch: Callable[..., None] | None = None
_gating_checked = False


def _set_branch(module: nn.Module, branch: int, record_as: int | None = None) -> None:
    """Tell every gating/pruning module inside ``module`` which branch (1 or 2) runs next, and
    the trace branch its gates are kept for (``record_as``, default ``branch``).

    Uses ``workloads.gating.set_branch`` when that module exists and provides it (looked up on
    first use, not at import), else sets ``m.branch = branch`` on every submodule that has a
    ``branch`` attribute.
    """
    global _gating_set_branch, _gating_checked
    if not _gating_checked:
        try:
            from workloads.gating import set_branch  # type: ignore[attr-defined]
        except ImportError:
            set_branch = None
        _gating_set_branch = set_branch
        _gating_checked = True
    if _gating_set_branch is not None:
        _gating_set_branch(module, branch, record_as)
        return
    for m in module.modules():
        if hasattr(m, "branch"):
            m.branch = branch


# ----------------------------------------------------------------------------------- config


@dataclass(frozen=True)
class SSLConfig:
    """Hyper-parameters shared by all methods.

    Defaults are small for CPU runs (solo-learn's CIFAR configs use 2048-4096 hidden units):
    a 512-unit hidden layer and 128-d projections (SimCLR paper's output size).

    Attributes:
        proj_hidden_dim: hidden units of the projector MLP.
        proj_output_dim: projection size (the loss space).
        temperature: softmax temperature of contrastive losses.
    """

    proj_hidden_dim: int = 512
    proj_output_dim: int = 128
    temperature: float = 0.2

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            kind = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", "")
            if kind == "bool" and not isinstance(value, bool):
                raise InputError(f"expected true or false, got {value!r}", field=f.name)
            if kind == "int" and (not isinstance(value, int) or isinstance(value, bool)):
                raise InputError(f"expected an integer, got {value!r}", field=f.name)
            if kind == "float" and (not isinstance(value, (int, float)) or isinstance(value, bool)):
                raise InputError(f"expected a number, got {value!r}", field=f.name)
            if kind == "int" and value < 1:
                raise InputError(f"must be >= 1, got {value}", field=f.name)
        if not self.temperature > 0:
            raise InputError(f"must be > 0, got {self.temperature}", field="temperature")


@dataclass(frozen=True)
class SimCLRConfig(SSLConfig):
    """SimCLR: the shared defaults (temperature 0.2)."""


@dataclass(frozen=True)
class _MomentumConfig(SSLConfig):
    """Momentum methods: EMA coefficient ``tau`` from ``tau_base`` to ``tau_final`` (cosine).

    Attributes:
        symmetric: also run online(view 2) and target(view 1) and average the two losses.
    """

    tau_base: float = 0.99
    tau_final: float = 1.0
    symmetric: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("tau_base", "tau_final"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise InputError(f"must be in [0, 1], got {getattr(self, name)}", field=name)


@dataclass(frozen=True)
class BYOLConfig(_MomentumConfig):
    """BYOL: tau 0.99 -> 1.0 cosine; predictor MLP hidden size ``pred_hidden_dim``."""

    pred_hidden_dim: int = 512


@dataclass(frozen=True)
class MoCoV2Config(_MomentumConfig):
    """MoCo v2: constant momentum 0.99, a queue of ``queue_size`` negatives, temperature 0.2."""

    tau_final: float = 0.99
    queue_size: int = 4096


# ----------------------------------------------------------------------------------- heads


def mlp(in_dim: int, hidden_dim: int, out_dim: int, batch_norm: bool = True) -> nn.Sequential:
    """Linear -> [BatchNorm1d] -> ReLU -> Linear (projector / predictor heads)."""
    layers: list[nn.Module] = [nn.Linear(in_dim, hidden_dim)]
    if batch_norm:
        layers.append(nn.BatchNorm1d(hidden_dim))
    layers += [nn.ReLU(inplace=True), nn.Linear(hidden_dim, out_dim)]
    return nn.Sequential(*layers)


# ---------------------------------------------------------------------------------- methods


class SSLMethod(nn.Module):
    """Base class: an encoder (images (N, C, H, W) -> features (N, feature_dim)) and heads.

    Subclasses set ``config_class``, build their heads in ``__init__`` and implement
    :meth:`training_step`. The optimiser should get :meth:`trainable_parameters` (target networks
    of momentum methods have ``requires_grad=False``).
    """

    config_class: ClassVar[type[SSLConfig]] = SSLConfig

    def __init__(self, encoder: nn.Module, feature_dim: int, config: SSLConfig | None = None):
        super().__init__()
        if config is None:
            config = self.config_class()
        if not isinstance(config, self.config_class):
            raise TypeError(
                f"{type(self).__name__} needs a {self.config_class.__name__}, "
                f"got {type(config).__name__}"
            )
        self.config = config
        self.encoder = encoder
        self.feature_dim = feature_dim

    # -- encoders and branches
    def encoders(self) -> dict[int, nn.Module]:
        """Encoder per branch: {1: online, 2: target}; the same module twice for SimCLR."""
        return {1: self.encoder, 2: self.encoder}

    def momentum_pairs(self) -> list[tuple[nn.Module, nn.Module]]:
        """(online, target) module pairs updated by EMA in :meth:`on_step_end`; none here."""
        return []

    @property
    def trace_branches(self) -> int:
        """Encoder passes per step, each a trace branch: 2, or 4 with a symmetric loss."""
        return 2

    def encode(self, x: torch.Tensor, branch: int, record_as: int | None = None) -> torch.Tensor:
        """Features (N, feature_dim) of images x through branch ``branch``'s encoder, its gates
        kept for trace branch ``record_as`` (default ``branch``).

        The target encoder of a momentum method (branch 2) runs under ``no_grad``.
        """
        encoder = self.encoders()[branch]
        _set_branch(encoder, branch, record_as)
        if encoder is not self.encoder:  # the target / momentum encoder: forward only
            with torch.no_grad():
                feats = encoder(x)
        else:
            feats = encoder(x)
        feats = feats.flatten(1)
        if feats.shape[1] != self.feature_dim:
            raise ValueError(
                f"encoder returned {feats.shape[1]} features, expected feature_dim = "
                f"{self.feature_dim}"
            )
        return feats

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Branch-1 features (N, feature_dim): what evaluation uses."""
        return self.encode(x, 1)

    def trainable_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.parameters() if p.requires_grad]

    # -- training
    def training_step(
        self, view1: torch.Tensor, view2: torch.Tensor, step: int
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """Loss (scalar, with grad) and logs for one batch of two views (N, C, H, W)."""
        raise NotImplementedError

    def on_step_end(self, step: int, total_steps: int) -> None:
        """Called after each optimiser step; momentum methods update their targets here."""


class SimCLR(SSLMethod):
    """SimCLR: shared encoder, projector Linear-BN-ReLU-Linear (solo-learn's), NT-Xent loss."""

    config_class = SimCLRConfig

    def __init__(self, encoder: nn.Module, feature_dim: int, config: SSLConfig | None = None):
        super().__init__(encoder, feature_dim, config)
        c = self.config
        self.projector = mlp(feature_dim, c.proj_hidden_dim, c.proj_output_dim)

    def training_step(
        self, view1: torch.Tensor, view2: torch.Tensor, step: int
    ) -> tuple[torch.Tensor, dict[str, float]]:
        z1 = self.projector(self.encode(view1, 1))
        z2 = self.projector(self.encode(view2, 2))
        loss = nt_xent(z1, z2, self.config.temperature)
        return loss, {"loss": loss.item()}


class MomentumMethod(SSLMethod):
    """Base of methods with a target network: an EMA copy of the encoder and projector.

    ``tau`` follows :func:`momentum_tau`; :meth:`on_step_end` sets it for ``step`` and then
    updates every target parameter ``t <- tau * t + (1 - tau) * o``. Buffers (BN running stats)
    are the target's own, as in solo-learn.
    """

    config_class = _MomentumConfig
    config: _MomentumConfig
    projector: nn.Module

    def _build_target(self) -> None:
        self.target_encoder = copy.deepcopy(self.encoder)
        self.target_projector = copy.deepcopy(self.projector)
        for p in (*self.target_encoder.parameters(), *self.target_projector.parameters()):
            p.requires_grad_(False)
        self.tau = self.config.tau_base

    def encoders(self) -> dict[int, nn.Module]:
        return {1: self.encoder, 2: self.target_encoder}

    def momentum_pairs(self) -> list[tuple[nn.Module, nn.Module]]:
        return [(self.encoder, self.target_encoder), (self.projector, self.target_projector)]

    @property
    def trace_branches(self) -> int:
        return 4 if self.config.symmetric else 2

    def target_projection(self, x: torch.Tensor, record_as: int = 2) -> torch.Tensor:
        """Branch 2: target encoder + target projector, no grad -> (N, proj_output_dim)."""
        feats = self.encode(x, 2, record_as)
        with torch.no_grad():
            return self.target_projector(feats)

    @torch.no_grad()
    def on_step_end(self, step: int, total_steps: int) -> None:
        self.tau = momentum_tau(step, total_steps, self.config.tau_base, self.config.tau_final)
        for online, target in self.momentum_pairs():
            for po, pt in zip(online.parameters(), target.parameters(), strict=True):
                pt.mul_(self.tau).add_(po.detach(), alpha=1.0 - self.tau)


class BYOL(MomentumMethod):
    """BYOL: online encoder + projector + predictor; target = EMA of encoder + projector.

    Loss :func:`byol_loss` of predictor(online(view 1)) against target(view 2); with
    ``symmetric=True`` the mirrored term is added (and the sum halved, so the scale is the same).
    Projector and predictor are Linear-BN-ReLU-Linear (BYOL paper).
    """

    config_class = BYOLConfig

    def __init__(self, encoder: nn.Module, feature_dim: int, config: SSLConfig | None = None):
        super().__init__(encoder, feature_dim, config)
        c = self.config
        self.projector = mlp(feature_dim, c.proj_hidden_dim, c.proj_output_dim)
        self.predictor = mlp(c.proj_output_dim, c.pred_hidden_dim, c.proj_output_dim)
        self._build_target()

    def training_step(
        self, view1: torch.Tensor, view2: torch.Tensor, step: int
    ) -> tuple[torch.Tensor, dict[str, float]]:
        p1 = self.predictor(self.projector(self.encode(view1, 1)))
        z2 = self.target_projection(view2)
        loss = byol_loss(p1, z2)
        if self.config.symmetric:
            p2 = self.predictor(self.projector(self.encode(view2, 1, record_as=3)))
            z1 = self.target_projection(view1, record_as=4)
            loss = 0.5 * (loss + byol_loss(p2, z1))
        return loss, {"loss": loss.item(), "tau": self.tau}


class MoCoV2(MomentumMethod):
    """MoCo v2: momentum encoder + projector (Linear-ReLU-Linear), queue of negatives, InfoNCE.

    Keys of each step are enqueued after the loss (FIFO ring buffer ``queue`` (K, D) of unit
    vectors, write pointer ``queue_ptr``). No shuffled BN (single device).
    """

    config_class = MoCoV2Config

    def __init__(self, encoder: nn.Module, feature_dim: int, config: SSLConfig | None = None):
        super().__init__(encoder, feature_dim, config)
        c = self.config
        self.projector = mlp(feature_dim, c.proj_hidden_dim, c.proj_output_dim, batch_norm=False)
        self._build_target()
        self.register_buffer(
            "queue", F.normalize(torch.randn(c.queue_size, c.proj_output_dim), dim=1)
        )
        self.register_buffer("queue_ptr", torch.zeros((), dtype=torch.long))

    @torch.no_grad()
    def enqueue(self, keys: torch.Tensor) -> None:
        """Write L2-normalised keys (B, D) at the pointer (wrapping around) and advance it."""
        keys = F.normalize(keys.detach(), dim=1)
        size = self.queue.shape[0]
        if keys.shape[0] > size:
            keys = keys[-size:]
        b = keys.shape[0]
        ptr = int(self.queue_ptr)
        idx = (ptr + torch.arange(b, device=self.queue.device)) % size
        self.queue[idx] = keys.to(self.queue.dtype)
        self.queue_ptr.fill_((ptr + b) % size)

    def training_step(
        self, view1: torch.Tensor, view2: torch.Tensor, step: int
    ) -> tuple[torch.Tensor, dict[str, float]]:
        t = self.config.temperature
        q1 = self.projector(self.encode(view1, 1))
        k2 = self.target_projection(view2)
        queue = self.queue.clone()
        loss = infonce(q1, k2, queue, t)
        keys = [k2]
        if self.config.symmetric:
            q2 = self.projector(self.encode(view2, 1, record_as=3))
            k1 = self.target_projection(view1, record_as=4)
            loss = 0.5 * (loss + infonce(q2, k1, queue, t))
            keys.append(k1)
        for k in keys:
            self.enqueue(k)
        return loss, {"loss": loss.item(), "tau": self.tau}


# --------------------------------------------------------------------------------- registry

METHODS: dict[str, type[SSLMethod]] = {"simclr": SimCLR, "byol": BYOL, "moco": MoCoV2}


def build_method(name: str, encoder: nn.Module, feature_dim: int, **overrides: Any) -> SSLMethod:
    """Build method ``name`` (a key of :data:`METHODS`) with config ``overrides``.

    Raises:
        InputError: unknown method or unknown / invalid config field (with a did-you-mean hint).
    """
    key = name.strip().lower()
    if key not in METHODS:
        hint = did_you_mean(key, METHODS, cutoff=0.5)
        raise InputError(
            f"unknown SSL method {name!r}{hint}; expected one of {sorted(METHODS)}",
            field="method",
        )
    cls = METHODS[key]
    fields = [f.name for f in dataclasses.fields(cls.config_class)]
    for k in overrides:
        if k not in fields:
            hint = did_you_mean(k, fields) or f"; expected one of {fields}"
            raise InputError(f"unknown {key} option {k!r}{hint}")
    return cls(encoder, feature_dim, cls.config_class(**overrides))
