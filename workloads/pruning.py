"""SyncCP: synchronized contrastive pruning (weight sparsity learned during SSL training).

ALGORITHMS.md section 4. Two masks per prunable conv, one per branch, updated at the same steps
from one importance ranking: branch 1 (online / first view) keeps the best ``1 - s_t`` of the
weights, branch 2 (target / second view) the best ``1 - (s_t - delta)``, so the denser mask is a
superset of the sparser one. For a shared encoder (SimCLR: ``{1: model, 2: model}``) both masks
apply to the one weight tensor, selected by the conv's ``branch``; for a momentum encoder
(BYOL, MoCo: ``{1: online, 2: target}``) the online convs carry mask 1 and the target convs
mask 2 (for both views), and both come from the online weights' scores.

Choices (ours, each a parameter of :class:`SyncCPConfig` unless stated):

- Ranking units: single weights (``element``), ``b_out x b_in`` channel blocks shared across the
  k x k kernel (``block:BOxBI``, score = L2 norm of the block's scores divided by
  sqrt(block size), i.e. the RMS: the same order as the L2 norm inside a layer, comparable between
  3x3 and 1x1 layers under a global threshold), or weights inside N:M groups (``nm:N:M``).
- Keep counts: ``round((1 - s) * weights)`` over the ranking domain (all prunable layers for
  ``global``, each layer for ``layer``); units are taken best first while the middle of each
  unit's run of weights stays within it (the nearest whole number of blocks). Ties are broken by
  position (stable sort), so masks are deterministic.
- N:M: groups of M consecutive input channels at a fixed (output channel, kh, kw). Branch 1 keeps
  exactly N per group, branch 2 ``N2 = min(M, N + floor(delta * M + 0.5))`` (2:4, delta 0.3 ->
  3:4), both from the same in-group ranking, so branch 2 is a superset. The sparsity is fixed by
  N:M: ``initial_sparsity``, ``final_sparsity`` and ``threshold`` do not apply; masks are
  re-selected at every update step.
- Transposable N:M (``nmt:N:M``, Hubara et al. 2021): at most N of every M consecutive input
  channels and of every M consecutive output channels, at every (kh, kw), so BD's reduction over
  output channels is N:M too. Each M x M block of channels is selected greedily (Hubara et al.'s
  2-approximation of the best mask): weights by descending score, each kept while its row and
  its column hold fewer than N; branch 2 continues the same order with N2. A row can end with
  fewer than N (its block's columns filled first), so the sparsity is at least 1 - N/M.
- Schedule: ``s_t = s_i + (s_f - s_i) * (1 - (1 - (t - t0) / (tf - t0))^3)`` for t0 <= t <= tf,
  s_i before t0, s_f after tf; branch 2 at ``max(0, s_t - delta)``. Update steps: the first call
  of :meth:`SyncCP.step` (initial masks from the initial weights), then t0, t0 + update_every, ...
  up to tf, and tf itself (so the final sparsity is reached).
- Scores: ``magnitude`` = |W| of the online weights; ``ema`` = EMA of |W| advanced on every call
  of :meth:`SyncCP.step` (every training step), initialised to |W| at the first call.
- Masks multiply the weights in the forward pass and are never written into them: pruned weights
  keep their values and can come back when their score ranks again. Their gradient is zero
  (``weight_gradient="masked"``) or straight-through (``"dense"``).
- Prune-and-regrow (``regrow``, element and block patterns): at every update step after the first,
  after magnitude selection, each layer of branch 1 drops its ``floor(r_t * active)`` lowest-score
  active units and grows as many inactive units with the largest dense |gradient| (RigL; a just
  dropped unit may come back), ``r_t = death_rate * (1 + cos(pi * (t - t0) / (tf - t0))) / 2``.
  Branch 2 is then branch 1 plus the best remaining units. Regrown weights keep their old values.

Call protocol: ``step(t)`` at the start of training step t, before its forward passes (the masks
it sets are the ones step t uses). With ``regrow`` it arms ``capture_dense_grad`` on the online
convs during the steps whose backward must produce the dense weight gradient
(:meth:`SyncCP.needs_dense_gradient`), and the next update consumes it.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from workloads.gating import (
    CONV_ROLES,
    MASK_GRADIENTS,
    BranchConv2d,
    LayerOptionError,
    branch_convs,
    selects,
)

_NM = re.compile(r"^nmt?:(\d+):(\d+)$")
_BLOCK = re.compile(r"^block:(\d+)x(\d+)$")
SCORES: tuple[str, ...] = ("magnitude", "ema")
THRESHOLDS: tuple[str, ...] = ("global", "layer")


@dataclass(frozen=True)
class SyncCPConfig:
    """SyncCP parameters (see the module docstring for what each choice means).

    ``pattern``: ``element``, ``nm:N:M``, ``nmt:N:M`` (transposable) or ``block:BOxBI``.
    ``final_sparsity`` and ``initial_sparsity``: branch-1 sparsity at tf and before t0;
    ``delta``: branch 2 is that much denser. ``score``: ``magnitude`` or ``ema``
    (``ema_momentum``). ``threshold``: ``global`` (one ranking over all prunable layers) or
    ``layer``. ``t0``, ``tf``, ``update_every``: schedule in
    training steps. ``regrow``, ``death_rate``: prune-and-regrow on branch 1.
    ``prunable_roles``: roles of the pruned convs; ``layers``: glob patterns of the qualified
    names of the pruned layers in their place (empty: by role;
    :func:`workloads.gating.selects`). ``weight_gradient``: ``masked`` or ``dense``.
    """

    pattern: str = "element"
    final_sparsity: float = 0.8
    initial_sparsity: float = 0.3
    delta: float = 0.3
    score: str = "magnitude"
    ema_momentum: float = 0.99
    threshold: str = "global"
    t0: int = 0
    tf: int = 1000
    update_every: int = 100
    regrow: bool = False
    death_rate: float = 0.5
    prunable_roles: tuple[str, ...] = ("block", "downsample")
    weight_gradient: str = "masked"
    layers: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "prunable_roles", tuple(self.prunable_roles))
        object.__setattr__(self, "layers", tuple(self.layers))
        nm, block = _NM.match(self.pattern), _BLOCK.match(self.pattern)
        if not (self.pattern == "element" or nm or block):
            raise ValueError(
                f"pattern must be 'element', 'nm:N:M', 'nmt:N:M' or 'block:BOxBI', got "
                f"{self.pattern!r}"
            )
        if nm and not 1 <= int(nm[1]) < int(nm[2]):
            raise ValueError(f"N:M pattern needs 1 <= N < M, got {self.pattern!r}")
        if block and not (int(block[1]) >= 1 and int(block[2]) >= 1):
            raise ValueError(f"block sizes must be positive, got {self.pattern!r}")
        if not 0.0 <= self.initial_sparsity <= self.final_sparsity < 1.0:
            raise ValueError(
                f"need 0 <= initial_sparsity <= final_sparsity < 1, got "
                f"{self.initial_sparsity}, {self.final_sparsity}"
            )
        if not 0.0 <= self.delta < 1.0:
            raise ValueError(f"delta must be in [0, 1), got {self.delta!r}")
        if self.score not in SCORES:
            raise ValueError(f"score must be one of {SCORES}, got {self.score!r}")
        if not 0.0 <= self.ema_momentum < 1.0:
            raise ValueError(f"ema_momentum must be in [0, 1), got {self.ema_momentum!r}")
        if self.threshold not in THRESHOLDS:
            raise ValueError(f"threshold must be one of {THRESHOLDS}, got {self.threshold!r}")
        for key in ("t0", "tf", "update_every"):
            value = getattr(self, key)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ValueError(f"{key} must be a non-negative integer, got {value!r}")
        if self.tf < self.t0 or self.update_every < 1:
            raise ValueError(
                f"need t0 <= tf and update_every >= 1, got t0={self.t0}, "
                f"tf={self.tf}, update_every={self.update_every}"
            )
        if not 0.0 <= self.death_rate <= 1.0:
            raise ValueError(f"death_rate must be in [0, 1], got {self.death_rate!r}")
        if self.regrow and nm:
            raise ValueError("regrow supports the element and block patterns, not N:M")
        bad = [role for role in self.prunable_roles if role not in CONV_ROLES]
        if bad:
            raise ValueError(f"prunable_roles must be among {CONV_ROLES}, got {bad}")
        if self.weight_gradient not in MASK_GRADIENTS:
            raise ValueError(
                f"weight_gradient must be one of {MASK_GRADIENTS}, got {self.weight_gradient!r}"
            )

    def prunes(self, name: str, role: str, groups: int = 1) -> bool:
        """Whether the layer ``name`` with ``role`` and ``groups`` is pruned
        (:func:`workloads.gating.selects`)."""
        return selects(self.layers, self.prunable_roles, name, role, groups, "weight")

    @property
    def transposable(self) -> bool:
        """Whether the pattern is ``nmt:N:M`` (N:M along output channels too)."""
        return self.pattern.startswith("nmt:")

    @property
    def nm(self) -> tuple[int, int] | None:
        """(N, M) of an ``nm:N:M`` or ``nmt:N:M`` pattern, else None."""
        match = _NM.match(self.pattern)
        return None if match is None else (int(match[1]), int(match[2]))

    @property
    def nm_branch2(self) -> int | None:
        """N kept per group by branch 2: ``min(M, N + floor(delta * M + 0.5))`` (nm only)."""
        nm = self.nm
        if nm is None:
            return None
        n, m = nm
        return min(m, n + math.floor(self.delta * m + 0.5))

    @property
    def block(self) -> tuple[int, int] | None:
        """(b_out, b_in) of a ``block:BOxBI`` pattern, else None."""
        match = _BLOCK.match(self.pattern)
        return None if match is None else (int(match[1]), int(match[2]))


@dataclass(frozen=True)
class _Prunable:
    name: str
    online: BranchConv2d
    target: BranchConv2d


def _select(scores: Tensor, sizes: Tensor, n_keep: int, forced: Tensor | None = None) -> Tensor:
    """Bool over units: the best-scored units (forced ones first) holding ~n_keep weights."""
    key = scores.clone()
    if forced is not None:
        key[forced] = math.inf
    order = torch.argsort(key, descending=True, stable=True)
    ordered = sizes[order]
    # a unit is kept when the middle of its run of weights falls within n_keep (nearest count)
    keep_sorted = 2 * torch.cumsum(ordered, dim=0) - ordered <= 2 * n_keep
    keep = torch.zeros_like(keep_sorted)
    keep[order] = keep_sorted
    if forced is not None:
        keep |= forced
    return keep


class SyncCP:
    """Synchronized contrastive pruning of the prunable convs of ``encoders``.

    ``encoders``: ``{1: online, 2: target}``; the same module under both keys means a shared
    encoder. Masks appear in each conv's ``weight_masks`` after the first :meth:`step`.
    """

    def __init__(self, encoders: dict[int, nn.Module], config: SyncCPConfig) -> None:
        if sorted(encoders) != [1, 2]:
            raise ValueError(f"encoders must map branches 1 and 2, got keys {sorted(encoders)}")
        self.config = config
        self.shared = encoders[1] is encoders[2]
        online = [(n, c) for n, c in branch_convs(encoders[1])
                  if config.prunes(n, c.role, c.groups)]
        if not online:
            raise LayerOptionError("no layer to prune: " + (
                f"no BranchConv2d matches {list(config.layers)}" if config.layers else
                f"no ungrouped BranchConv2d with a role in {list(config.prunable_roles)}"),
                "--prune-layers")
        targets = dict(branch_convs(encoders[2]))
        self.layers: list[_Prunable] = []
        for name, conv in online:
            target = targets.get(name)
            if target is None or target.weight.shape != conv.weight.shape:
                raise ValueError(
                    f"layer {name!r}: the target encoder has no conv of shape "
                    f"{tuple(conv.weight.shape)}"
                )
            self._check_pattern(name, conv)
            self.layers.append(_Prunable(name, conv, target))
        for item in self.layers:
            item.online.mask_gradient = config.weight_gradient
            item.target.mask_gradient = config.weight_gradient
        self._masks: dict[str, dict[int, Tensor]] = {}
        self._ema: dict[str, Tensor] = {}
        self._initialized = False

    def _check_pattern(self, name: str, conv: BranchConv2d) -> None:
        cout, cin = conv.weight.shape[:2]
        nm, block = self.config.nm, self.config.block
        if nm is not None and cin % nm[1]:
            raise ValueError(
                f"layer {name!r}: N:M group size M={nm[1]} must divide Cin/groups={cin}"
            )
        if nm is not None and self.config.transposable and cout % nm[1]:
            raise ValueError(
                f"layer {name!r}: transposable N:M group size M={nm[1]} must divide Cout={cout}"
            )
        if block is not None and (cout % block[0] or cin % block[1]):
            raise ValueError(
                f"layer {name!r}: block {block[0]}x{block[1]} must divide "
                f"Cout={cout} x Cin/groups={cin}"
            )

    # -- schedule ----------------------------------------------------------------------------

    def _progress(self, step: int) -> float:
        c = self.config
        if step < c.t0:
            return 0.0
        if step >= c.tf:
            return 1.0
        return (step - c.t0) / (c.tf - c.t0)

    def sparsity_at(self, step: int) -> tuple[float, float]:
        """(branch 1, branch 2) target sparsity of the masks an update at ``step`` sets."""
        c = self.config
        if c.nm is not None:
            n, m = c.nm
            return 1.0 - n / m, 1.0 - (c.nm_branch2 or n) / m
        s1 = c.initial_sparsity + (c.final_sparsity - c.initial_sparsity) * (
            1.0 - (1.0 - self._progress(step)) ** 3
        )
        return s1, max(0.0, s1 - c.delta)

    def death_rate_at(self, step: int) -> float:
        """Regrow fraction at ``step``: death_rate * (1 + cos(pi * progress)) / 2."""
        return self.config.death_rate * 0.5 * (1.0 + math.cos(math.pi * self._progress(step)))

    def is_update_step(self, step: int) -> bool:
        """Whether ``step`` is on the update grid (t0, t0 + update_every, ..., and tf)."""
        c = self.config
        return c.t0 <= step <= c.tf and ((step - c.t0) % c.update_every == 0 or step == c.tf)

    def needs_dense_gradient(self, step: int) -> bool:
        """Whether the backward of training step ``step`` must produce the dense weight gradient
        (the regrow update at ``step + 1`` reads it)."""
        return (
            self.config.regrow
            and self.is_update_step(step + 1)
            and self.death_rate_at(step + 1) > 0
        )

    # -- the update --------------------------------------------------------------------------

    def step(self, step: int) -> bool:
        """Advance the scores and, at an update step (or the first call), set new masks.

        Call at the start of training step ``step``, before its forward passes. Returns True if
        any mask changed.
        """
        self._update_ema()
        first = not self._initialized
        changed = False
        if first or self.is_update_step(step):
            regrow = self.config.regrow and not first and self.death_rate_at(step) > 0
            new = self._compute_masks(step, regrow)
            changed = first or any(
                not torch.equal(new[n][b], self._masks[n][b]) for n in new for b in (1, 2)
            )
            self._masks = new
            self._apply()
            self._initialized = True
        capture = self.needs_dense_gradient(step)
        for item in self.layers:
            item.online.capture_dense_grad = capture
            item.online.dense_grad = None
        return changed

    def _update_ema(self) -> None:
        if self.config.score != "ema":
            return
        m = self.config.ema_momentum
        for item in self.layers:
            magnitude = item.online.weight.detach().abs()
            ema = self._ema.get(item.name)
            self._ema[item.name] = (
                magnitude.clone() if ema is None else ema * m + magnitude * (1 - m)
            )

    def _score(self, item: _Prunable) -> Tensor:
        if self.config.score == "ema":
            return self._ema[item.name]
        return item.online.weight.detach().abs()

    def _units(self, values: Tensor) -> tuple[Tensor, int]:
        """Flat unit scores of a weight-shaped score tensor and the unit size in weights."""
        block = self.config.block
        if block is None:
            return values.flatten(), 1
        bo, bi = block
        cout, cin, kh, kw = values.shape
        size = bo * bi * kh * kw
        grouped = values.reshape(cout // bo, bo, cin // bi, bi, kh, kw)
        rms = grouped.pow(2).sum(dim=(1, 3, 4, 5)).div(size).sqrt()
        return rms.flatten(), size

    def _expand(self, units: Tensor, shape: torch.Size) -> Tensor:
        block = self.config.block
        if block is None:
            return units.reshape(shape)
        bo, bi = block
        cout, cin, kh, kw = shape
        grid = units.reshape(cout // bo, cin // bi)
        full = grid.repeat_interleave(bo, dim=0).repeat_interleave(bi, dim=1)
        return full[:, :, None, None].expand(cout, cin, kh, kw).contiguous()

    def _nm_masks(self, score: Tensor) -> tuple[Tensor, Tensor]:
        n, m = self.config.nm or (0, 1)
        n2 = self.config.nm_branch2 or n
        if self.config.transposable:
            return transposable_nm_masks(score, n, n2, m)
        cout, cin, kh, kw = score.shape
        groups = score.permute(0, 2, 3, 1).reshape(-1, m)
        order = torch.argsort(groups, dim=1, descending=True, stable=True)
        ranks = torch.empty_like(order)
        ranks.scatter_(1, order, torch.arange(m, device=score.device).expand_as(order))

        def back(keep: Tensor) -> Tensor:
            return keep.reshape(cout, kh, kw, cin).permute(0, 3, 1, 2).contiguous()

        return back(ranks < n), back(ranks < n2)

    def _compute_masks(self, step: int, regrow: bool) -> dict[str, dict[int, Tensor]]:
        scores = {item.name: self._score(item) for item in self.layers}
        if self.config.nm is not None:
            out = {}
            for name, score in scores.items():
                m1, m2 = self._nm_masks(score)
                out[name] = {1: m1, 2: m2}
            return out
        s1, s2 = self.sparsity_at(step)
        units = {name: self._units(score) for name, score in scores.items()}
        names = [item.name for item in self.layers]
        domains = [names] if self.config.threshold == "global" else [[n] for n in names]
        keep1: dict[str, Tensor] = {}
        keep2: dict[str, Tensor] = {}
        for domain in domains:
            flat = torch.cat([units[n][0] for n in domain])
            sizes = torch.cat(
                [
                    torch.full(
                        (units[n][0].numel(),), units[n][1], dtype=torch.long, device=flat.device
                    )
                    for n in domain
                ]
            )
            total = sum(scores[n].numel() for n in domain)
            first = _select(flat, sizes, round((1.0 - s1) * total))
            parts = dict(
                zip(domain, first.split([units[n][0].numel() for n in domain]), strict=True)
            )
            if regrow:
                rate = self.death_rate_at(step)
                parts = {n: self._regrow(n, parts[n], units[n][0], rate) for n in domain}
                first = torch.cat([parts[n] for n in domain])
            second = _select(flat, sizes, round((1.0 - s2) * total), forced=first)
            keep1.update(parts)
            keep2.update(
                zip(domain, second.split([units[n][0].numel() for n in domain]), strict=True)
            )
        return {
            n: {
                1: self._expand(keep1[n], scores[n].shape),
                2: self._expand(keep2[n], scores[n].shape),
            }
            for n in names
        }

    def _regrow(self, name: str, active: Tensor, score: Tensor, rate: float) -> Tensor:
        item = next(i for i in self.layers if i.name == name)
        grad = item.online.dense_grad
        if grad is None:
            raise RuntimeError(
                f"regrow at this update needs the dense weight gradient of layer "
                f"{name!r} from the previous step's backward; call step(t - 1) "
                f"before that backward"
            )
        k = math.floor(rate * int(active.sum()))
        if k == 0:
            return active
        drop_key = torch.where(active, score, torch.full_like(score, math.inf))
        kept = active.clone()
        kept[torch.argsort(drop_key, stable=True)[:k]] = False
        grad_units, _ = self._units(grad.abs())
        grow_key = torch.where(kept, torch.full_like(grad_units, -math.inf), grad_units)
        kept[torch.argsort(grow_key, descending=True, stable=True)[:k]] = True
        return kept

    def _apply(self) -> None:
        for item in self.layers:
            masks = self._masks[item.name]
            if self.shared:
                item.online.weight_masks = {1: masks[1], 2: masks[2]}
            else:
                item.online.weight_masks = {1: masks[1], 2: masks[1]}
                item.target.weight_masks = {1: masks[2], 2: masks[2]}

    # -- views -------------------------------------------------------------------------------

    def masks(self) -> dict[str, dict[int, Tensor]]:
        """layer name -> branch -> bool (Cout, Cin/groups, kh, kw); empty before the first step."""
        return {name: dict(masks) for name, masks in self._masks.items()}

    def weight_sparsity(self) -> dict[int, float]:
        """Per branch, the fraction of pruned weights over all prunable layers (0 before step)."""
        if not self._masks:
            return {1: 0.0, 2: 0.0}
        total = sum(m[1].numel() for m in self._masks.values())
        return {b: 1.0 - sum(int(m[b].sum()) for m in self._masks.values()) / total for b in (1, 2)}

    def state_dict(self) -> dict[str, Any]:
        """Masks, EMA scores and whether the initial masks are set (for checkpoints)."""
        return {"masks": self.masks(), "ema": dict(self._ema), "initialized": self._initialized}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` and put the masks back on the convs."""
        self._masks = {n: dict(m) for n, m in state["masks"].items()}
        self._ema = dict(state["ema"])
        self._initialized = bool(state["initialized"])
        if self._masks:
            self._apply()


def transposable_nm_masks(score: Tensor, n: int, n2: int, m: int) -> tuple[Tensor, Tensor]:
    """Nested masks (Cout, Cin, kh, kw) keeping at most ``n`` (and ``n2`` >= n) of every ``m``
    consecutive input channels and of every ``m`` consecutive output channels at each (kh, kw):
    every M x M channel block greedily, weights by descending ``score`` (ties by position), a
    weight kept while its row and its column hold fewer than the cap; the second mask continues
    the first's order with ``n2``, so it contains the first."""
    cout, cin, kh, kw = score.shape
    blocks = (score.reshape(cout // m, m, cin // m, m, kh, kw).permute(0, 2, 4, 5, 1, 3)
              .reshape(-1, m * m))  # (B, rows x cols): row = output channel in the block
    order = torch.argsort(blocks, dim=1, descending=True, stable=True)
    count = blocks.shape[0]
    picked = torch.arange(count, device=score.device)
    keep = torch.zeros_like(blocks, dtype=torch.bool)
    rows = torch.zeros((count, m), dtype=torch.long, device=score.device)
    cols = torch.zeros_like(rows)
    masks = []
    for cap in (n, n2):
        for j in range(m * m):
            position = order[:, j]
            r, c = position // m, position % m
            take = (~keep[picked, position]) & (rows[picked, r] < cap) & (cols[picked, c] < cap)
            keep[picked, position] |= take
            rows[picked, r] += take.long()
            cols[picked, c] += take.long()
        masks.append(keep.clone().reshape(cout // m, cin // m, kh, kw, m, m)
                     .permute(0, 4, 1, 5, 2, 3).reshape(cout, cin, kh, kw).contiguous())
    return masks[0], masks[1]
