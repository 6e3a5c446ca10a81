"""The non-MAC operations on each recorded layer's output, read from the model's own graph.

:func:`derive_post_ops` traces a module symbolically (``torch.fx``, the recorded layers kept as
leaves) and follows each layer's output through the operations that consume it alone, naming
them as :data:`accelsim.network.POST_OPS` does:

- ``batchnorm``: an ``nn.BatchNorm1d`` / ``nn.BatchNorm2d`` module;
- ``add``: ``+`` / ``+=`` / ``torch.add`` (a residual add). Both of its inputs may come from
  recorded layers (a block's last conv and a projection shortcut): the add, and what follows
  it, go to the main path, as :func:`accelsim.network.resnet_post_ops` assigns them: chains of
  layers whose role is ``downsample`` are followed last, the others in graph order;
- ``relu``: ``nn.ReLU``, ``F.relu``, ``torch.relu`` or ``.relu()``;
- ``maxpool``: a 3x3 stride-2 padding-1 ``nn.MaxPool2d`` / ``F.max_pool2d`` without dilation or
  ceil mode (the ImageNet stem's);
- ``pool``: global average pooling (``nn.AdaptiveAvgPool2d(1)``, ``F.adaptive_avg_pool2d(x, 1)``,
  ``x.mean((2, 3))``, ``torch.mean(x, (2, 3))``); nothing is followed after it;
- ``fanout``: the value reached feeds two or more consumers (a residual block's two paths; the
  vector unit prices two).

``nn.Identity`` and ``nn.Dropout`` are passed through. The chain stops at any other operation,
at one out of the order of POST_OPS (a pre-activation network's BN before its conv), and at a
value used more than once; operations it does not name are not priced (docs/workloads.md).
A model torch.fx cannot trace (data-dependent control flow) gives a :class:`PostOpsUnknown`.
"""

from __future__ import annotations

import operator
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import fx, nn

from accelsim.network import MAXPOOL_KERNEL, MAXPOOL_PADDING, MAXPOOL_STRIDE, POST_OPS
from workloads.gating import BranchConv2d


class PostOpsUnknown(Exception):
    """torch.fx could not trace the model: its layers' post ops are unknown."""


class _LeafTracer(fx.Tracer):
    """Keeps recorded layers (and torch.nn's own modules) as single nodes."""

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        return isinstance(m, BranchConv2d) or super().is_leaf_module(m, module_qualified_name)


_PASS_THROUGH = (nn.Identity, nn.Dropout, nn.Dropout2d)
_ADDS = (operator.add, operator.iadd, torch.add)
_RELUS: tuple[Callable[..., object], ...] = (F.relu, torch.relu, torch.relu_)


def _is_int_one(value: object) -> bool:
    return value == 1 or value == (1, 1)


def _spatial(dims: object) -> bool:
    """Whether ``dims`` (an int or a sequence) are exactly the two spatial dims of NCHW."""
    values = (dims,) if isinstance(dims, int) else tuple(dims or ())  # type: ignore[arg-type]
    return set(values) in ({2, 3}, {-2, -1}, {2, -1}, {-2, 3}) and len(values) == 2


def _op_of(node: fx.Node, modules: dict[str, nn.Module]) -> str | None:
    """The POST_OPS name of ``node``, ``"pass"`` for a pass-through, or None."""
    if node.op == "call_module":
        module = modules[str(node.target)]
        if isinstance(module, _PASS_THROUGH):
            return "pass"
        if isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d)):
            return "batchnorm"
        if isinstance(module, nn.ReLU):
            return "relu"
        if isinstance(module, nn.MaxPool2d):
            standard = (module.kernel_size in (MAXPOOL_KERNEL, (MAXPOOL_KERNEL,) * 2)
                        and module.stride in (MAXPOOL_STRIDE, (MAXPOOL_STRIDE,) * 2)
                        and module.padding in (MAXPOOL_PADDING, (MAXPOOL_PADDING,) * 2)
                        and module.dilation in (1, (1, 1)) and not module.ceil_mode)
            return "maxpool" if standard else None
        if isinstance(module, nn.AdaptiveAvgPool2d):
            return "pool" if _is_int_one(module.output_size) else None
        return None
    if node.op == "call_function":
        if node.target in _ADDS:
            return "add"
        if node.target in _RELUS:
            return "relu"
        if node.target is F.adaptive_avg_pool2d:
            size = node.args[1] if len(node.args) > 1 else node.kwargs.get("output_size")
            return "pool" if _is_int_one(size) else None
        if node.target is F.max_pool2d:
            names = ("kernel_size", "stride", "padding", "dilation", "ceil_mode")
            given = dict(zip(names, node.args[1:], strict=False)) | dict(node.kwargs)
            standard = (given.get("kernel_size") in (MAXPOOL_KERNEL, (MAXPOOL_KERNEL,) * 2)
                        and given.get("stride") in (MAXPOOL_STRIDE, (MAXPOOL_STRIDE,) * 2)
                        and given.get("padding", 0) in (MAXPOOL_PADDING, (MAXPOOL_PADDING,) * 2)
                        and given.get("dilation", 1) in (1, (1, 1))
                        and not given.get("ceil_mode", False)
                        and not given.get("return_indices", False))
            return "maxpool" if standard else None
        if node.target is torch.mean:
            dims = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim")
            return "pool" if _spatial(dims) else None
        return None
    if node.op == "call_method":
        if node.target in ("relu", "relu_"):
            return "relu"
        if node.target in ("add", "add_"):
            return "add"
        if node.target == "mean":
            dims = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim")
            return "pool" if _spatial(dims) else None
    return None


def derive_post_ops(module: nn.Module) -> dict[str, tuple[str, ...]]:
    """``{qualified name: post ops}`` of every :class:`BranchConv2d` in ``module`` (a layer
    whose output no named operation consumes gets ``()``). Raises :class:`PostOpsUnknown` when
    torch.fx cannot trace the module."""
    try:
        graph = _LeafTracer().trace(module)
    except Exception as error:  # torch.fx raises many kinds (TraceError, TypeError, ...)
        raise PostOpsUnknown(f"{type(error).__name__}: {' '.join(str(error).split())[:160]}"
                             ) from None
    modules = dict(module.named_modules())
    claimed: set[fx.Node] = set()
    result: dict[str, tuple[str, ...]] = {}
    layers = [node for node in graph.nodes if node.op == "call_module"
              and isinstance(modules[str(node.target)], BranchConv2d)]
    # a projection shortcut's chain last: an add both reach belongs to the main path
    layers.sort(key=lambda node: modules[str(node.target)].role == "downsample")
    for node in layers:
        ops: list[str] = []
        current = node
        while True:
            users = list(current.users)
            if len(users) != 1:
                if len(users) > 1 and ops[-1:] != ["pool"]:
                    ops.append("fanout")
                break
            nxt = users[0]
            op = _op_of(nxt, modules)
            if op is None or nxt in claimed:
                break
            if op != "pass":
                order = [POST_OPS.index(o) for o in ops]
                if (order and POST_OPS.index(op) <= order[-1]) or (
                        op == "pool" and "maxpool" in ops):
                    break
                ops.append(op)
                claimed.add(nxt)
            current = nxt
            if op == "pool":
                break
        result[str(node.target)] = tuple(ops)
    return result
