"""Encoders to train and record: the built-in ResNets or a user's own ``nn.Module``.

:func:`sparsify` makes any module recordable. It replaces each ``nn.Conv2d`` with a
:class:`~workloads.gating.BranchConv2d` and each ``nn.Linear`` with a
:class:`~workloads.gating.BranchLinear` holding the same weights, in place, so the SSL methods
can run it per branch, SyncCP can mask it and the recorder can read its masks from outside.
Each layer gets a role, which decides whether it is gated or pruned by default:

- ``stem``: the first conv a forward pass runs (never gated or pruned by default);
- ``downsample``: a conv whose qualified name has a ``shortcut`` or ``downsample`` part;
- ``head``: every linear layer (a classifier or projection inside the encoder; never by default);
- ``block``: every other conv.

Layer patterns (globs of qualified names, ``GatingConfig.layers`` / ``SyncCPConfig.layers``)
replace the role rule: ``layer*.conv2`` gates only the second conv of every block. Grouped and
depthwise convs are left dense by the role rule; a pattern that selects one is refused with its
name (accelsim has no replay rules for masks on grouped convolutions). Gating a linear layer is
refused too (the gate standardises over an output map, and a linear layer's is one pixel).

:func:`build_encoder` gives the built-in ResNet by name or calls ``FILE.py:FACTORY``: a function
``FACTORY(in_channels: int) -> nn.Module`` whose module maps images (N, in_channels, H, W) to
features (N, D); the SSL method adds its heads on top.
"""

from __future__ import annotations

import hashlib
import importlib.util
import sys
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from accelsim.network import builtin_network
from workloads.gating import (
    GATE_SHAPE_OPTIONS,
    SALIENCY_KINDS,
    BranchConv2d,
    BranchLinear,
    GatingConfig,
    LayerOptionError,
    branch_convs,
    check_patterns,
)
from workloads.models import RESNETS, build_backbone, meta_forward
from workloads.pruning import SyncCPConfig

FACTORY_SEPARATOR = ":"


def is_model_file(model: str) -> bool:
    """Whether ``model`` names a factory in a file (``FILE.py:FACTORY``), not a built-in."""
    path, sep, name = model.rpartition(FACTORY_SEPARATOR)
    return bool(sep) and path.endswith(".py") and name.isidentifier()


def load_factory(model: str) -> Callable[..., nn.Module]:
    """The function ``FACTORY`` of ``FILE.py:FACTORY`` (the file is run as a module)."""
    path_text, _, name = model.rpartition(FACTORY_SEPARATOR)
    path = Path(path_text)
    if not path.is_file():
        raise ValueError(f"no such model file {path_text!r}")
    module_name = "accelsim_user_model_" + hashlib.sha256(
        str(path.resolve()).encode()).hexdigest()[:12]
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise ValueError(f"cannot load {path_text!r} as a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module  # dataclasses and pickling-free tools look it up
    try:
        spec.loader.exec_module(module)
    except Exception as error:
        del sys.modules[module_name]
        raise ValueError(f"{path_text}: {type(error).__name__}: {error}") from None
    factory = getattr(module, name, None)
    if not callable(factory):
        raise ValueError(f"{path_text} has no function {name!r}")
    return factory


def model_file_digest(model: str) -> str:
    """SHA-256 of the file of ``FILE.py:FACTORY`` (a run records it in its trace)."""
    return hashlib.sha256(Path(model.rpartition(FACTORY_SEPARATOR)[0]).read_bytes()).hexdigest()


def _role(name: str, first_conv: str | None, module: nn.Module) -> str:
    if isinstance(module, nn.Linear):
        return "head"
    if name == first_conv:
        return "stem"
    if {"shortcut", "downsample"} & set(name.split(".")):
        return "downsample"
    return "block"


def _square(name: str, value: object, what: str) -> int:
    values = value if isinstance(value, tuple) else (value,)
    if isinstance(value, str) or len(set(values)) != 1:
        raise ValueError(f"layer {name!r}: {what} {value!r} is not supported (square, "
                         "numeric values only)")
    return int(values[0])


def _plain(name: str, module: nn.Module, base: type[nn.Module]) -> None:
    """A subclass that computes differently (its own forward) cannot be swapped for ours."""
    if type(module) is not base and type(module).forward is not base.forward:
        raise ValueError(f"layer {name!r} is a {type(module).__name__}, a {base.__name__} with "
                         f"its own forward: accelsim records plain {base.__name__} layers only")


def _branch_conv(name: str, conv: nn.Conv2d, role: str, gating: GatingConfig | None
                 ) -> BranchConv2d:
    if conv.padding_mode != "zeros":
        raise ValueError(f"layer {name!r}: padding_mode {conv.padding_mode!r} is not supported")
    if _square(name, conv.dilation, "dilation") != 1:
        raise ValueError(f"layer {name!r}: dilated convs are not supported")
    gated = gating is not None and gating.gates(name, role, conv.groups)
    try:
        branch = BranchConv2d(conv.in_channels, conv.out_channels,
                              _square(name, conv.kernel_size, "kernel"),
                              _square(name, conv.stride, "stride"),
                              _square(name, conv.padding, "padding"), groups=conv.groups,
                              bias=conv.bias is not None, role=role,
                              gating=gating if gated else None)
    except ValueError as error:  # the gating's groups do not fit the layer
        option = "dgc_heads" if gating is not None and gating.kind == "dgc" else \
            GATE_SHAPE_OPTIONS
        raise LayerOptionError(f"layer {name!r}: {error}", option) from None
    with torch.no_grad():
        branch.weight.copy_(conv.weight)
        if conv.bias is not None:
            branch.bias.copy_(conv.bias)
    return branch.to(conv.weight.device, conv.weight.dtype)


def execution_order(module: nn.Module, in_channels: int, image_size: int
                    ) -> dict[str, tuple[int, ...]]:
    """``{qualified name: output shape}`` of the ``nn.Conv2d`` / ``nn.Linear`` layers of
    ``module`` in the order a forward pass of (2, in_channels, image_size, image_size) images
    runs them (``meta`` device: shapes only)."""
    order: dict[str, tuple[int, ...]] = {}

    def hook(name: str) -> Callable[..., None]:
        def record(layer: nn.Module, inputs: tuple[torch.Tensor, ...],
                   output: torch.Tensor) -> None:
            if isinstance(layer, nn.Linear) and inputs[0].dim() != 2:
                raise ValueError(f"layer {name!r} is a linear layer on inputs of shape "
                                 f"{tuple(inputs[0].shape)}: accelsim records linear layers "
                                 f"on (N, features) inputs only")
            order.setdefault(name, tuple(output.shape))

        return record

    meta_forward(module, 2, in_channels, image_size,
                 {n: hook(n) for n, m in module.named_modules()
                  if isinstance(m, (nn.Conv2d, nn.Linear))})
    return order


def check_gate_maps(module: nn.Module, maps: dict[str, tuple[int, int]]) -> None:
    """A :class:`LayerOptionError` for a gate with a base path on a layer whose output map
    (``maps[name]``: height, width) is one pixel: its saliency is standardised over the map,
    so the gate would be constant (an SE block's 1x1 convs, ResNet's last stage on small
    images)."""
    for name, conv in branch_convs(module):
        if conv.gating is not None and conv.gating.kind not in SALIENCY_KINDS and \
                maps.get(name, (2, 2)) == (1, 1):
            raise LayerOptionError(f"layer {name!r} has a 1x1 output map: its gate standardises "
                                   f"the base output over the map and would be constant; leave "
                                   f"it out (--gate-layers) or use larger images",
                                   "--gate-layers")


def sparsify(module: nn.Module, gating: GatingConfig | None = None,
             pruning: SyncCPConfig | None = None, *, in_channels: int | None = None,
             image_size: int | None = None) -> nn.Module:
    """``module`` with every ``nn.Conv2d`` / ``nn.Linear`` replaced, in place, by a
    BranchConv2d / BranchLinear of the same weights (under every name the module has); the
    layers ``gating`` selects are gated. With ``in_channels`` and ``image_size`` the stem is the
    first conv a forward pass of such images runs, and the layers' inputs are checked; without,
    the first conv in module order. Layers already BranchConv2d stay as they are. A ValueError
    names the layer or the pattern that cannot be honoured (a pattern that matches nothing
    included; :class:`LayerOptionError` names the setting). Returns ``module``."""
    stem = None
    if in_channels is not None and image_size is not None:
        order = execution_order(module, in_channels, image_size)
        stem = next((n for n in order if isinstance(module.get_submodule(n), nn.Conv2d)), None)
    names = dict(module.named_modules())
    targets = [(n, m) for n, m in names.items()
               if isinstance(m, (nn.Conv2d, nn.Linear)) and not isinstance(m, BranchConv2d)]
    if not targets and not branch_convs(module):
        raise ValueError("the model has no nn.Conv2d or nn.Linear layer")
    if isinstance(module, (nn.Conv2d, nn.Linear)):
        raise ValueError("the model is a single layer: wrap it in a module")
    convs = [n for n, m in names.items() if isinstance(m, nn.Conv2d)]
    first = stem if stem is not None else convs[0] if convs else None
    for name, layer in targets:
        _plain(name, layer, nn.Linear if isinstance(layer, nn.Linear) else nn.Conv2d)
        role = _role(name, first, layer)
        if isinstance(layer, nn.Linear):
            if gating is not None and gating.gates(name, role):
                raise LayerOptionError(f"layer {name!r} is a linear layer: gating needs a "
                                        "conv's output map; leave it out of the patterns",
                                        "--gate-layers")
            new: nn.Module = BranchLinear.from_linear(layer, role)
        else:
            new = _branch_conv(name, layer, role, gating)
        for alias, child in list(module.named_modules(remove_duplicate=False)):
            if child is layer:  # every name of the module (an alias runs the same layer)
                parent_name, _, attribute = alias.rpartition(".")
                setattr(module.get_submodule(parent_name) if parent_name else module,
                        attribute, new)
    layer_names = [n for n, _ in branch_convs(module)]
    if gating is not None and gating.enabled:
        check_patterns(gating.layers, layer_names, "gate")
        if not any(conv.gating is not None for _, conv in branch_convs(module)):
            raise LayerOptionError("no layer is gated: no ungrouped conv has the role 'block' "
                                   "and no gate layer pattern was given", "--gate-layers")
    if pruning is not None:
        check_patterns(pruning.layers, layer_names, "weight")
        for name, conv in branch_convs(module):
            pruning.prunes(name, conv.role, conv.groups)  # refuses selected grouped convs
    return module


def feature_dim(module: nn.Module, in_channels: int, image_size: int) -> int:
    """Features per image the module returns for (2, in_channels, image_size, image_size)
    inputs, from a forward pass on the ``meta`` device (shapes only)."""
    out = meta_forward(module, 2, in_channels, image_size)
    if not isinstance(out, torch.Tensor) or out.dim() != 2:
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ValueError(f"the model must return features of shape (N, D), got {shape}")
    return int(out.shape[1])


def build_encoder(model: str, width: float, in_channels: int, image_size: int,
                  gating: GatingConfig | None, pruning: SyncCPConfig | None
                  ) -> tuple[nn.Module, int]:
    """``(encoder, feature_dim)``: the built-in ResNet ``model`` (:data:`RESNETS`) at
    ``width``, or ``FILE.py:FACTORY(in_channels=in_channels)`` made recordable by
    :func:`sparsify`. A ValueError says what is wrong."""
    if model in RESNETS:
        backbone = build_backbone(model, width, in_channels, gating)
        check_gate_maps(backbone, {layer.name: (layer.h_out, layer.w_out) for layer in
                                   builtin_network(model, batch=1, width=width,
                                                   in_channels=in_channels,
                                                   image_size=image_size).layers})
        names = [n for n, _ in branch_convs(backbone)]
        if gating is not None:
            check_patterns(gating.layers, names, "gate")
        if pruning is not None:
            check_patterns(pruning.layers, names, "weight")
        return backbone, backbone.feature_dim
    if not is_model_file(model):
        raise ValueError(f"model must be one of {list(RESNETS)} or FILE.py:FACTORY, got "
                         f"{model!r}")
    factory = load_factory(model)
    try:
        encoder = factory(in_channels=in_channels)
    except Exception as error:
        raise ValueError(f"{model}(in_channels={in_channels}) failed: "
                         f"{type(error).__name__}: {error}") from None
    if not isinstance(encoder, nn.Module):
        raise ValueError(f"{model} returned a {type(encoder).__name__}, not an nn.Module")
    try:
        order = execution_order(encoder, in_channels, image_size)
        sparsify(encoder, gating, pruning, in_channels=in_channels, image_size=image_size)
        check_gate_maps(encoder, {name: tuple(shape[2:4]) for name, shape in order.items()
                                  if len(shape) == 4})
        dim = feature_dim(encoder, in_channels, image_size)
    except ValueError:
        raise
    except Exception as error:
        raise ValueError(f"{model}: a forward pass of {in_channels}-channel {image_size}x"
                         f"{image_size} images failed: {type(error).__name__}: "
                         f"{' '.join(str(error).split())[:200]}") from None
    return encoder, dim
