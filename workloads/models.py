"""CIFAR-style ResNet backbones whose convs are :class:`~workloads.gating.BranchConv2d`.

Layer names and geometry equal :mod:`accelsim.network`'s built-ins (``conv1``,
``layer{s}.{b}.conv1``, ``layer{s}.{b}.conv2``, ``layer{s}.{b}.shortcut``), so a trace recorded
from these modules replays against ``accelsim.network.resnet20`` / ``resnet18`` of the same
width, input channels and image size (:func:`layer_geometry` proves it).

- 3x3 stem (stride 1, padding 1), BN, ReLU, no max-pool;
- BasicBlocks: conv3x3(stride) - BN - ReLU - conv3x3 - BN, plus the shortcut, then ReLU; the
  shortcut is a 1x1 projection conv (``shortcut``) with its BN (``shortcut_bn``) when the stride
  or the width changes, the identity otherwise;
- ResNet-20: 3 stages x 3 blocks, widths 16/32/64 x width; ResNet-18: 4 stages x 2 blocks,
  widths 64/128/256/512 x width (``max(1, round(c * width))``, as accelsim.network);
- global average pooling: ``forward`` returns (N, feature_dim) features.

Convs use Kaiming-normal init (fan_out, ReLU) like torchvision; BN weight 1, bias 0.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn
from torch.func import functional_call

from accelsim.network import Layer, conv_output_size, resnet_post_ops
from workloads.gating import BranchConv2d, GatingConfig, branch_convs

BACKBONES: dict[str, tuple[tuple[int, ...], int]] = {
    "resnet20": ((16, 32, 64), 3),
    "resnet18": ((64, 128, 256, 512), 2),
}


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
            gating=gating if gating is not None and gating.gates(role) else None,
        )
    except ValueError as error:
        raise ValueError(f"layer {name!r}: {error}") from None


class BasicBlock(nn.Module):
    """conv3x3 - BN - ReLU - conv3x3 - BN (+ projection or identity shortcut) - ReLU."""

    def __init__(
        self, prefix: str, cin: int, cout: int, stride: int, gating: GatingConfig | None
    ) -> None:
        super().__init__()
        self.conv1 = _conv(f"{prefix}.conv1", cin, cout, 3, stride, 1, "block", gating)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = _conv(f"{prefix}.conv2", cout, cout, 3, 1, 1, "block", gating)
        self.bn2 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU()
        self.shortcut: BranchConv2d | None = None
        self.shortcut_bn: nn.BatchNorm2d | None = None
        if stride != 1 or cin != cout:
            self.shortcut = _conv(
                f"{prefix}.shortcut", cin, cout, 1, stride, 0, "downsample", gating
            )
            self.shortcut_bn = nn.BatchNorm2d(cout)

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.shortcut is not None and self.shortcut_bn is not None:
            x = self.shortcut_bn(self.shortcut(x))
        return self.relu(out + x)


class Backbone(nn.Module):
    """A CIFAR ResNet encoder: (N, in_channels, H, W) -> (N, feature_dim) pooled features.

    ``arch`` is the network name, ``widths`` the stage widths, ``in_channels`` the image channels.
    """

    def __init__(
        self,
        arch: str,
        widths: Sequence[int],
        blocks_per_stage: int,
        in_channels: int = 3,
        gating: GatingConfig | None = None,
    ) -> None:
        super().__init__()
        self.arch = arch
        self.widths = tuple(widths)
        self.in_channels = in_channels
        self.gating = gating
        self.conv1 = _conv("conv1", in_channels, widths[0], 3, 1, 1, "stem", gating)
        self.bn1 = nn.BatchNorm2d(widths[0])
        self.relu = nn.ReLU()
        cin = widths[0]
        for stage, width in enumerate(widths, start=1):
            blocks = []
            for block in range(blocks_per_stage):
                stride = 2 if (stage > 1 and block == 0) else 1
                blocks.append(BasicBlock(f"layer{stage}.{block}", cin, width, stride, gating))
                cin = width
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
        x = self.relu(self.bn1(self.conv1(x)))
        for stage in range(1, self.stages + 1):
            x = getattr(self, f"layer{stage}")(x)
        return torch.flatten(self.pool(x), 1)


def build_backbone(
    name: str, width: float = 1.0, in_channels: int = 3, gating: GatingConfig | None = None
) -> Backbone:
    """``resnet20`` or ``resnet18`` (CIFAR style) at ``width`` with ``in_channels`` inputs.

    ``gating`` gates the convs whose role is in ``gating.gated_roles`` (default: the 3x3 block
    convs); a ValueError names the layer whose channels the gating groups do not divide.
    """
    if name not in BACKBONES:
        raise ValueError(f"unknown backbone {name!r}; choose from {sorted(BACKBONES)}")
    if not width > 0:
        raise ValueError(f"width multiplier must be > 0, got {width!r}")
    if not isinstance(in_channels, int) or in_channels < 1:
        raise ValueError(f"in_channels must be a positive integer, got {in_channels!r}")
    base, blocks = BACKBONES[name]
    widths = [max(1, round(c * width)) for c in base]
    return Backbone(name, widths, blocks, in_channels=in_channels, gating=gating)


def _pair(value: int | tuple[int, ...], what: str, name: str) -> int:
    if isinstance(value, int):
        return value
    if len(set(value)) != 1:
        raise ValueError(f"layer {name!r}: non-square {what} {value} is not supported")
    return int(value[0])


def layer_geometry(backbone: nn.Module, batch: int, image_size: int) -> list[Layer]:
    """One :class:`accelsim.network.Layer` per :class:`BranchConv2d`, in execution order.

    The sizes come from a forward pass of ``batch`` images of ``image_size`` x ``image_size`` on
    the ``meta`` device (shapes only, no compute, parameters and buffers untouched, no gate
    recorded), with a hook on every conv. Each layer's ``post_ops`` (BN, ReLU, residual add,
    pooling on its output) are those of the CIFAR ResNet block structure this module builds
    (:func:`accelsim.network.resnet_post_ops`).
    """
    if batch < 1 or image_size < 1:
        raise ValueError(f"batch and image_size must be >= 1, got {batch}, {image_size}")
    convs = branch_convs(backbone)
    if not convs:
        raise ValueError("the module has no BranchConv2d")
    in_channels = convs[0][1].in_channels
    seen: list[tuple[str, BranchConv2d, tuple[int, ...], tuple[int, ...]]] = []

    def hook(name: str, conv: BranchConv2d) -> Callable[..., None]:
        def record(_: nn.Module, inputs: tuple[Tensor, ...], output: Tensor) -> None:
            seen.append((name, conv, tuple(inputs[0].shape), tuple(output.shape)))

        return record

    handles = [conv.register_forward_hook(hook(name, conv)) for name, conv in convs]
    tensors = {
        name: torch.empty_like(t, device="meta")
        for name, t in (*backbone.named_parameters(), *backbone.named_buffers())
    }
    try:
        with torch.no_grad():
            functional_call(
                backbone,
                tensors,
                (torch.empty(batch, in_channels, image_size, image_size, device="meta"),),
            )
    finally:
        for handle in handles:
            handle.remove()
    layers = []
    for name, conv, in_shape, out_shape in seen:
        k = _pair(conv.kernel_size, "kernel", name)
        stride = _pair(conv.stride, "stride", name)
        padding = _pair(conv.padding, "padding", name)  # type: ignore[arg-type]
        h_out = conv_output_size(in_shape[2], k, stride, padding)
        if (h_out, conv_output_size(in_shape[3], k, stride, padding)) != out_shape[2:]:
            raise ValueError(f"layer {name!r}: unexpected output shape {out_shape}")
        layers.append(
            Layer(
                name=name,
                kind="conv",
                cin=conv.in_channels,
                cout=conv.out_channels,
                kh=k,
                kw=k,
                stride=stride,
                padding=padding,
                groups=conv.groups,
                h_in=in_shape[2],
                w_in=in_shape[3],
                h_out=out_shape[2],
                w_out=out_shape[3],
                batch=batch,
                role=conv.role,
            )
        )
    return list(resnet_post_ops(layers))
