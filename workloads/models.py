"""Built-in ResNet backbones whose convs are :class:`~workloads.gating.BranchConv2d`.

Layer names and geometry equal :mod:`accelsim.network`'s built-ins (:data:`RESNETS
<accelsim.network.RESNETS>`: ``conv1``, ``layer{s}.{b}.conv{1,2[,3]}``, ``layer{s}.{b}.shortcut``),
so a trace recorded from these modules replays against ``accelsim simulate --network NAME`` of
the same width, input channels and image size (:func:`layer_geometry` proves it).

- CIFAR style (``resnet20``, ``resnet18``): 3x3 stem (stride 1, padding 1), BN, ReLU, no
  max-pool; ImageNet style (``resnet18-imagenet``, ``resnet50-imagenet``): 7x7 stem (stride 2,
  padding 3), BN, ReLU, 3x3 stride-2 max-pool;
- BasicBlocks: conv3x3(stride) - BN - ReLU - conv3x3 - BN; Bottlenecks (ResNet-50):
  conv1x1 - BN - ReLU - conv3x3(stride) - BN - ReLU - conv1x1 (4x the width) - BN; plus the
  shortcut, then ReLU. The shortcut is a 1x1 projection conv (``shortcut``) with its BN
  (``shortcut_bn``) when the stride or the width changes, the identity otherwise;
- global average pooling: ``forward`` returns (N, feature_dim) features.

Convs use Kaiming-normal init (fan_out, ReLU) like torchvision; BN weight 1, bias 0.
"""

from __future__ import annotations

import copy
import dataclasses
import sys
from collections.abc import Callable, Mapping

import torch
from torch import Tensor, nn

from accelsim.errors import InputError
from accelsim.network import (
    MAXPOOL_KERNEL,
    MAXPOOL_PADDING,
    MAXPOOL_STRIDE,
    RESNETS,
    Layer,
    ResNetSpec,
    conv_output_size,
    linear,
)
from workloads.gating import (
    GATE_SHAPE_OPTIONS,
    BranchConv2d,
    BranchLinear,
    GatingConfig,
    LayerOptionError,
    branch_convs,
)

BACKBONES: tuple[str, ...] = tuple(RESNETS)


def _conv(
    name: str,
    cin: int,
    cout: int,
    kernel: int,
    stride: int,
    padding: int,
    role: str,
    gating: GatingConfig | None,
) -> BranchConv2d:
    try:
        return BranchConv2d(
            cin,
            cout,
            kernel,
            stride,
            padding,
            role=role,
            gating=gating if gating is not None and gating.gates(name, role) else None,
        )
    except ValueError as error:  # the gating's groups do not fit the layer
        option = "dgc_heads" if gating is not None and gating.kind == "dgc" else \
            GATE_SHAPE_OPTIONS
        raise LayerOptionError(f"layer {name!r}: {error}", option) from None


class ResidualBlock(nn.Module):
    """A BasicBlock (conv1, conv2) or a Bottleneck (conv1, conv2, conv3), each conv but the
    last followed by BN and ReLU, the last by BN; plus the projection or identity shortcut;
    then ReLU."""

    def __init__(self, prefix: str, cin: int, width: int, stride: int, spec: ResNetSpec,
                 gating: GatingConfig | None) -> None:
        super().__init__()
        cout = width * spec.expansion
        if spec.bottleneck:
            shapes = [(cin, width, 1, 1, 0), (width, width, 3, stride, 1), (width, cout, 1, 1, 0)]
        else:
            shapes = [(cin, cout, 3, stride, 1), (cout, cout, 3, 1, 1)]
        self.depth = len(shapes)
        for index, (a, b, k, s, p) in enumerate(shapes, start=1):
            self.add_module(f"conv{index}", _conv(f"{prefix}.conv{index}", a, b, k, s, p,
                                                  "block", gating))
            self.add_module(f"bn{index}", nn.BatchNorm2d(b))
        self.relu = nn.ReLU()
        self.shortcut: BranchConv2d | None = None
        self.shortcut_bn: nn.BatchNorm2d | None = None
        if stride != 1 or cin != cout:
            self.shortcut = _conv(
                f"{prefix}.shortcut", cin, cout, 1, stride, 0, "downsample", gating
            )
            self.shortcut_bn = nn.BatchNorm2d(cout)

    def forward(self, x: Tensor) -> Tensor:
        out = x
        for index in range(1, self.depth + 1):
            out = getattr(self, f"bn{index}")(getattr(self, f"conv{index}")(out))
            if index < self.depth:
                out = self.relu(out)
        if self.shortcut is not None and self.shortcut_bn is not None:
            x = self.shortcut_bn(self.shortcut(x))
        return self.relu(out + x)


class Backbone(nn.Module):
    """A ResNet encoder: (N, in_channels, H, W) -> (N, feature_dim) pooled features.

    ``arch`` is the network name (:data:`accelsim.network.RESNETS`), ``widths`` the stage
    widths, ``in_channels`` the image channels.
    """

    def __init__(
        self,
        arch: str,
        widths: list[int],
        in_channels: int = 3,
        gating: GatingConfig | None = None,
    ) -> None:
        super().__init__()
        spec = RESNETS[arch]
        self.arch = arch
        self.widths = tuple(widths)
        self.in_channels = in_channels
        self.gating = gating
        self.stem_maxpool = spec.imagenet_stem
        if spec.imagenet_stem:
            self.conv1 = _conv("conv1", in_channels, widths[0], 7, 2, 3, "stem", gating)
        else:
            self.conv1 = _conv("conv1", in_channels, widths[0], 3, 1, 1, "stem", gating)
        self.bn1 = nn.BatchNorm2d(widths[0])
        self.relu = nn.ReLU()
        self.maxpool = nn.MaxPool2d(MAXPOOL_KERNEL, MAXPOOL_STRIDE, MAXPOOL_PADDING) \
            if spec.imagenet_stem else nn.Identity()
        cin = widths[0]
        for stage, (width, count) in enumerate(zip(widths, spec.blocks, strict=True), start=1):
            blocks = []
            for block in range(count):
                stride = 2 if (stage > 1 and block == 0) else 1
                blocks.append(ResidualBlock(f"layer{stage}.{block}", cin, width, stride, spec,
                                            gating))
                cin = width * spec.expansion
            self.add_module(f"layer{stage}", nn.Sequential(*blocks))
        self.stages = len(widths)
        self.feature_dim = cin
        self.pool = nn.AdaptiveAvgPool2d(1)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def forward(self, x: Tensor) -> Tensor:
        """(N, in_channels, H, W) -> (N, feature_dim)."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        for stage in range(1, self.stages + 1):
            x = getattr(self, f"layer{stage}")(x)
        return torch.flatten(self.pool(x), 1)


def build_backbone(
    name: str, width: float = 1.0, in_channels: int = 3, gating: GatingConfig | None = None
) -> Backbone:
    """A built-in ResNet (:data:`BACKBONES`) at ``width`` with ``in_channels`` inputs.

    ``gating`` gates the convs whose role is in ``gating.gated_roles`` (default: the convs
    inside residual blocks); a ValueError names the layer whose channels the gating groups do
    not divide.
    """
    if name not in RESNETS:
        raise ValueError(f"unknown backbone {name!r}; choose from {list(BACKBONES)}")
    if not width > 0:
        raise ValueError(f"width multiplier must be > 0, got {width!r}")
    if not isinstance(in_channels, int) or in_channels < 1:
        raise ValueError(f"in_channels must be a positive integer, got {in_channels!r}")
    widths = [max(1, round(c * width)) for c in RESNETS[name].widths]
    return Backbone(name, widths, in_channels=in_channels, gating=gating)


def _pair(value: int | tuple[int, ...], what: str, name: str) -> int:
    if isinstance(value, int):
        return value
    if len(set(value)) != 1:
        raise ValueError(f"layer {name!r}: non-square {what} {value} is not supported")
    return int(value[0])


def meta_copy(module: nn.Module) -> nn.Module:
    """A deep copy of ``module`` whose parameters and buffers live on the ``meta`` device
    (shapes only, no data copied; shared modules stay shared)."""
    memo: dict[int, object] = {}
    for tensor in (*module.parameters(), *module.buffers()):
        empty = torch.empty_like(tensor, device="meta")
        memo[id(tensor)] = nn.Parameter(empty, tensor.requires_grad) \
            if isinstance(tensor, nn.Parameter) else empty
    return copy.deepcopy(module, memo)


def meta_forward(module: nn.Module, batch: int, in_channels: int, image_size: int,
                 hooks: Mapping[str, Callable[..., None]] | None = None) -> object:
    """The output of ``module`` for (batch, in_channels, image_size, image_size) images on the
    ``meta`` device, computed by a :func:`meta_copy` (``module`` itself is untouched; a
    ``torch.func.functional_call`` leaves a module used twice on the meta device), with
    ``hooks[name]`` as forward hooks on the copy's layers of those names."""
    clone = meta_copy(module)
    layers = dict(clone.named_modules())
    for name, hook in (hooks or {}).items():
        layers[name].register_forward_hook(hook)
    with torch.no_grad():
        return clone(torch.empty(batch, in_channels, image_size, image_size, device="meta"))


def layer_geometry(backbone: nn.Module, batch: int, image_size: int,
                   in_channels: int | None = None) -> list[Layer]:
    """One :class:`accelsim.network.Layer` per :class:`BranchConv2d` (and
    :class:`BranchLinear`), in execution order.

    The sizes come from a forward pass of ``batch`` images of ``image_size`` x ``image_size`` on
    the ``meta`` device (shapes only, no compute, parameters and buffers untouched, no gate
    recorded) of ``in_channels``-channel images (default: the stem's inputs), with a hook on
    every layer. Each layer's ``post_ops`` (BN, ReLU, residual add,
    pooling on its output) are read from the module's graph
    (:func:`workloads.post_ops.derive_post_ops`; all empty, with a warning on stderr, for a
    module torch.fx cannot trace). A layer run twice in one forward is a ValueError.
    """
    from workloads.post_ops import PostOpsUnknown, derive_post_ops

    if batch < 1 or image_size < 1:
        raise ValueError(f"batch and image_size must be >= 1, got {batch}, {image_size}")
    convs = branch_convs(backbone)
    if not convs:
        raise ValueError("the module has no BranchConv2d")
    if in_channels is None:  # the stem's inputs (else the first conv's, in module order)
        first = next((c for _, c in convs if c.role == "stem"), None) or next(
            (c for _, c in convs if not isinstance(c, BranchLinear)), convs[0][1])
        in_channels = first.in_channels
    seen: list[tuple[str, BranchConv2d, tuple[int, ...], tuple[int, ...]]] = []

    def hook(name: str) -> Callable[..., None]:
        def record(conv: nn.Module, inputs: tuple[Tensor, ...], output: Tensor) -> None:
            seen.append((name, conv, tuple(inputs[0].shape), tuple(output.shape)))  # type: ignore[arg-type]

        return record

    meta_forward(backbone, batch, in_channels, image_size, {name: hook(name) for name, _ in convs})
    names = [name for name, *_ in seen]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ValueError(f"layer {twice[0]!r} runs more than once per forward: a recorded "
                         "layer must run once (give each use its own module)")
    try:
        post_ops = derive_post_ops(backbone)
    except PostOpsUnknown as error:
        print(f"warning: the model's non-MAC operations are unknown (torch.fx: {error}); "
              "the trace records no post ops, so its BN, ReLU and pooling are not priced",
              file=sys.stderr)
        post_ops = {}
    layers = []
    for name, conv, in_shape, out_shape in seen:
        if isinstance(conv, BranchLinear):
            layers.append(linear(name, conv.in_channels, conv.out_channels, in_shape[0],
                                 role=conv.role))
        else:
            k = _pair(conv.kernel_size, "kernel", name)
            stride = _pair(conv.stride, "stride", name)
            padding = _pair(conv.padding, "padding", name)  # type: ignore[arg-type]
            h_out = conv_output_size(in_shape[2], k, stride, padding)
            if (h_out, conv_output_size(in_shape[3], k, stride, padding)) != out_shape[2:]:
                raise ValueError(f"layer {name!r}: unexpected output shape {out_shape}")
            layers.append(Layer(name=name, kind="conv", cin=conv.in_channels,
                                cout=conv.out_channels, kh=k, kw=k, stride=stride,
                                padding=padding, groups=conv.groups, h_in=in_shape[2],
                                w_in=in_shape[3], h_out=out_shape[2], w_out=out_shape[3],
                                batch=batch, role=conv.role))
        try:
            layers[-1] = dataclasses.replace(layers[-1], post_ops=post_ops.get(name, ()))
        except InputError as error:  # a maxpool on too small a map, say
            raise ValueError(str(error)) from None
    return layers
