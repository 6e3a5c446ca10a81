"""Layer geometry, training phases as GEMMs, built-in networks and SCALE-Sim topology import.

A conv layer (input N x Cin x H x W, weight Cout x Cin/groups x kh x kw, output N x Cout x Ho x Wo)
runs three training phases, each an implicit GEMM per group (M = N*Ho*Wo, K = Cin/groups*kh*kw,
F = Cout/groups):

- ``fw``  forward:          Y[M x F]  = X^[M x K] . W[K x F]
- ``bd``  backward data:    dX^[M x K] = dY[M x F] . W^T[F x K]
- ``wg``  weight gradient:  dW[K x F] = X^^T[K x M] . dY[M x F]

Each phase is described as a :class:`Gemm` ``out[sr x sc] = A[sr x t] . B[t x sc]`` (SCALE-Sim's
names: ``sr`` output rows, ``t`` reduction length, ``sc`` output columns), repeated ``count`` times
(once per group). Dense MACs are the same in all three phases.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from accelsim.errors import InputError
from accelsim.inputs import read_text_file
from accelsim.schema import abbreviate

PHASES: tuple[str, ...] = ("fw", "bd", "wg")


def parse_phases(phases: str | Sequence[str]) -> tuple[str, ...]:
    """``"wg,fw"`` or ``["wg", "fw"]`` -> a non-empty subset of fw, bd, wg, always in that
    order (``simulate`` and ``sweep`` agree)."""
    items = phases.split(",") if isinstance(phases, str) else list(phases)
    names = [str(p).strip() for p in items if str(p).strip()]
    bad = [p for p in names if p not in PHASES]
    if bad or not names:
        raise InputError(f"expected a comma-separated subset of {','.join(PHASES)}, got "
                         f"{abbreviate(phases)}", field="--phases")
    return tuple(p for p in PHASES if p in names)
LAYER_KINDS: tuple[str, ...] = ("conv", "linear")
LAYER_ROLES: tuple[str, ...] = ("stem", "block", "downsample", "head", "other")
# Non-MAC operations on a layer's forward output, in the order they run (docs/model.md,
# "Non-MAC work"): batch normalisation, a residual add, ReLU, a 3x3 stride-2 max-pool (the
# ImageNet ResNet stem's: MAXPOOL_* below), global average pooling, and a fanout (the output
# feeds two consumers, a residual block's two paths: backward sums their gradients). A layer's
# post_ops are a subsequence of this order.
POST_OPS: tuple[str, ...] = ("batchnorm", "add", "relu", "maxpool", "pool", "fanout")
MAXPOOL_KERNEL, MAXPOOL_STRIDE, MAXPOOL_PADDING = 3, 2, 1
# The training recipe a workload declares: its SSL method (BYOL and MoCo keep a momentum
# encoder, branch 2, that runs forward only) and its optimizer.
SSL_METHODS: tuple[str, ...] = ("simclr", "byol", "moco")
MOMENTUM_SSL: tuple[str, ...] = ("byol", "moco")
# A momentum method's symmetric loss (the BYOL paper's) also runs online(view 2) and
# target(view 1): a trace records these passes as branches 3 and 4 (encoder_branch).
SYMMETRIC_BRANCHES = 4
OPTIMIZERS: tuple[str, ...] = ("sgd", "lars", "adam")


def encoder_branch(branch: int) -> int:
    """The encoder branch (1 or 2) whose weights, weight masks and base paths a recorded branch
    uses: branches 3 and 4 of a symmetric momentum loss are branches 1 (online) and 2 (target)
    again, on the other view."""
    return (branch - 1) % 2 + 1


def is_target_branch(branch: int, ssl: str) -> bool:
    """Whether ``branch`` runs a momentum method's target encoder (forward only): the even
    branches of BYOL and MoCo."""
    return ssl in MOMENTUM_SSL and encoder_branch(branch) == 2


@dataclass(frozen=True)
class Gemm:
    """One GEMM ``out[sr x sc] = A[sr x t] . B[t x sc]``, repeated ``count`` times (groups)."""

    sr: int
    t: int
    sc: int
    count: int = 1

    @property
    def macs(self) -> int:
        """Multiply-accumulates of all ``count`` GEMMs."""
        return self.sr * self.t * self.sc * self.count


@dataclass(frozen=True)
class Layer:
    """Geometry of one conv or linear layer (a linear layer is a 1x1 conv on a 1x1 map).

    Output sizes are stored, not derived, because conventions differ: PyTorch floors
    ``(H + 2p - k) / s + 1`` while SCALE-Sim topology files use their own rule.
    ``nm`` is an N:M weight-sparsity declaration (from a topology ``Sparsity`` column), or None.
    ``role`` says where the layer sits (stem, block, downsample, head), which decides whether
    gating and pruning apply by default. ``post_ops`` are the non-MAC operations (of
    :data:`POST_OPS`) applied to the layer's output in the forward pass, in order: the work the
    vector unit does for this layer (empty: none known).
    """

    name: str
    kind: str
    cin: int
    cout: int
    kh: int
    kw: int
    stride: int
    padding: int
    groups: int
    h_in: int
    w_in: int
    h_out: int
    w_out: int
    batch: int
    role: str = "other"
    nm: tuple[int, int] | None = None
    post_ops: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        where = f"layer {self.name!r}"
        if self.kind not in LAYER_KINDS:
            raise InputError(f"kind must be one of {LAYER_KINDS}, got {self.kind!r}", field=where)
        if self.role not in LAYER_ROLES:
            raise InputError(f"role must be one of {LAYER_ROLES}, got {self.role!r}", field=where)
        for key in ("cin", "cout", "kh", "kw", "stride", "groups", "h_in", "w_in", "h_out",
                    "w_out", "batch"):
            value = getattr(self, key)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise InputError(f"{key} must be a positive integer, got {value!r}", field=where)
        if not isinstance(self.padding, int) or self.padding < 0:
            raise InputError(f"padding must be >= 0, got {self.padding!r}", field=where)
        if self.cin % self.groups or self.cout % self.groups:
            raise InputError(
                f"groups={self.groups} must divide cin={self.cin} and cout={self.cout}", field=where
            )
        if self.nm is not None:
            n, m = self.nm
            if not (1 <= n <= m):
                raise InputError(f"N:M sparsity needs 1 <= N <= M, got {n}:{m}", field=where)
        if isinstance(self.post_ops, str) or not isinstance(self.post_ops, (tuple, list)):
            raise InputError(f"post_ops must be a list of operations, got {self.post_ops!r}",
                             field=where)
        object.__setattr__(self, "post_ops", tuple(self.post_ops))
        unknown = [op for op in self.post_ops if op not in POST_OPS]
        if unknown:
            raise InputError(f"post_ops must be drawn from {list(POST_OPS)}, got {unknown[0]!r}",
                             field=where)
        order = [POST_OPS.index(op) for op in self.post_ops]
        if order != sorted(set(order)):
            raise InputError(f"post_ops {list(self.post_ops)} are out of order or repeated: "
                             f"expected a subsequence of {', '.join(POST_OPS)}", field=where)
        if "pool" in self.post_ops and "fanout" in self.post_ops:
            raise InputError("post_ops cannot hold both pool and fanout (a pooled output feeds "
                             "one consumer)", field=where)
        if "pool" in self.post_ops and "maxpool" in self.post_ops:
            raise InputError("post_ops cannot hold both maxpool and pool", field=where)
        if "maxpool" in self.post_ops and min(self.h_out, self.w_out) < MAXPOOL_KERNEL - \
                MAXPOOL_PADDING:
            raise InputError(f"a {MAXPOOL_KERNEL}x{MAXPOOL_KERNEL} maxpool needs an output of at "
                             f"least {MAXPOOL_KERNEL - MAXPOOL_PADDING} pixels, got "
                             f"{self.h_out}x{self.w_out}", field=where)

    @property
    def k_per_group(self) -> int:
        """Reduction length of the forward GEMM: Cin/groups * kh * kw."""
        return self.cin // self.groups * self.kh * self.kw

    @property
    def output_pixels(self) -> int:
        """M = N * Ho * Wo."""
        return self.batch * self.h_out * self.w_out

    @property
    def weight_count(self) -> int:
        """Number of weights: Cout * Cin/groups * kh * kw."""
        return self.cout * self.k_per_group

    @property
    def input_count(self) -> int:
        """Elements of the input activation N * Cin * H * W."""
        return self.batch * self.cin * self.h_in * self.w_in

    @property
    def output_count(self) -> int:
        """Elements of the output activation N * Cout * Ho * Wo."""
        return self.batch * self.cout * self.h_out * self.w_out

    @property
    def maxpooled_count(self) -> int:
        """Elements of the output after a ``maxpool`` post op (N * Cout * Hp * Wp)."""
        pooled = [conv_output_size(size, MAXPOOL_KERNEL, MAXPOOL_STRIDE, MAXPOOL_PADDING)
                  for size in (self.h_out, self.w_out)]
        return self.batch * self.cout * pooled[0] * pooled[1]

    @property
    def macs(self) -> int:
        """Dense MACs of one phase (equal for fw, bd and wg)."""
        return self.output_pixels * self.k_per_group * self.cout

    def gemm(self, phase: str) -> Gemm:
        """The GEMM view of a training phase (``fw``, ``bd`` or ``wg``)."""
        m, k, f = self.output_pixels, self.k_per_group, self.cout // self.groups
        if phase == "fw":
            return Gemm(sr=m, t=k, sc=f, count=self.groups)
        if phase == "bd":
            return Gemm(sr=m, t=f, sc=k, count=self.groups)
        if phase == "wg":
            return Gemm(sr=k, t=m, sc=f, count=self.groups)
        raise ValueError(f"unknown phase {phase!r}; expected one of {PHASES}")


def conv_output_size(size: int, kernel: int, stride: int, padding: int) -> int:
    """PyTorch's output size: floor((size + 2*padding - kernel) / stride) + 1."""
    return (size + 2 * padding - kernel) // stride + 1


def conv(name: str, cin: int, cout: int, k: int, stride: int, padding: int, h_in: int,
         w_in: int, batch: int, *, groups: int = 1, role: str = "other") -> Layer:
    """A square-kernel conv layer with PyTorch's output-size convention."""
    return Layer(
        name=name, kind="conv", cin=cin, cout=cout, kh=k, kw=k, stride=stride, padding=padding,
        groups=groups, h_in=h_in, w_in=w_in,
        h_out=conv_output_size(h_in, k, stride, padding),
        w_out=conv_output_size(w_in, k, stride, padding), batch=batch, role=role,
    )


def linear(name: str, in_features: int, out_features: int, batch: int, *,
           role: str = "head") -> Layer:
    """A fully connected layer as a 1x1 conv on a 1x1 map."""
    return Layer(
        name=name, kind="linear", cin=in_features, cout=out_features, kh=1, kw=1, stride=1,
        padding=0, groups=1, h_in=1, w_in=1, h_out=1, w_out=1, batch=batch, role=role,
    )


@dataclass(frozen=True)
class Network:
    """An ordered list of MAC layers. ``layers[0]`` is the first layer (no BD phase by default)."""

    name: str
    layers: tuple[Layer, ...]

    def __post_init__(self) -> None:
        names = [layer.name for layer in self.layers]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise InputError(f"duplicate layer names {duplicates}", field=f"network {self.name!r}")
        if not self.layers:
            raise InputError("a network needs at least one layer", field=f"network {self.name!r}")

    def layer(self, name: str) -> Layer:
        """The layer called ``name``."""
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise KeyError(name)

    @property
    def macs(self) -> int:
        """Dense MACs of one phase over all layers."""
        return sum(layer.macs for layer in self.layers)


# ---------------------------------------------------------------------------------------------
# Built-in ResNets: CIFAR style (3x3 stem, no max-pool, as SimCLR uses on 32x32 images) and
# ImageNet style (7x7 stride-2 stem and a 3x3 stride-2 max-pool, 224x224; He et al. 2016, as
# torchvision builds them: BasicBlocks for ResNet-18, Bottlenecks with the stride on the 3x3
# conv for ResNet-50). Layer names: ``conv1`` (stem), ``layer{s}.{b}.conv{1,2[,3]}``,
# ``layer{s}.{b}.shortcut`` (the 1x1 projection), ``head.0`` / ``head.2`` (the projection MLP).
# The classifier is not part of an SSL encoder and is not included.
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ResNetSpec:
    """A ResNet family member: stage widths, blocks per stage, ``bottleneck`` blocks (1x1 -
    3x3 - 1x1 with ``expansion`` 4, else BasicBlocks: 3x3 - 3x3), ``imagenet_stem`` (7x7/2 conv
    and a 3x3/2 max-pool, else a 3x3/1 conv) and the ``default_image_size`` (pixels)."""

    widths: tuple[int, ...]
    blocks: tuple[int, ...]
    bottleneck: bool = False
    imagenet_stem: bool = False
    default_image_size: int = 32

    @property
    def expansion(self) -> int:
        """Output channels of a block per unit of its width."""
        return 4 if self.bottleneck else 1


RESNETS: dict[str, ResNetSpec] = {
    "resnet20": ResNetSpec((16, 32, 64), (3, 3, 3)),
    "resnet18": ResNetSpec((64, 128, 256, 512), (2, 2, 2, 2)),
    "resnet18-imagenet": ResNetSpec((64, 128, 256, 512), (2, 2, 2, 2), imagenet_stem=True,
                                    default_image_size=224),
    "resnet50-imagenet": ResNetSpec((64, 128, 256, 512), (3, 4, 6, 3), bottleneck=True,
                                    imagenet_stem=True, default_image_size=224),
}
# A CIFAR-style network from this image size on is almost surely a mistake (ResNet-18 at 224
# pixels without the ImageNet stem runs about 15x the MACs of ImageNet ResNet-18).
CIFAR_STEM_MAX_IMAGE = 96


def _block(layers: list[Layer], prefix: str, cin: int, width: int, stride: int, h: int,
           batch: int, spec: ResNetSpec) -> int:
    """Append one block's convs (and its 1x1 projection shortcut); return the output size."""
    cout = width * spec.expansion
    if spec.bottleneck:
        convs = [conv(f"{prefix}.conv1", cin, width, 1, 1, 0, h, h, batch, role="block")]
        convs.append(conv(f"{prefix}.conv2", width, width, 3, stride, 1, h, h, batch,
                          role="block"))
        out = convs[-1].h_out
        convs.append(conv(f"{prefix}.conv3", width, cout, 1, 1, 0, out, out, batch,
                          role="block"))
    else:
        convs = [conv(f"{prefix}.conv1", cin, cout, 3, stride, 1, h, h, batch, role="block")]
        out = convs[0].h_out
        convs.append(conv(f"{prefix}.conv2", cout, cout, 3, 1, 1, out, out, batch,
                          role="block"))
    layers += convs
    if stride != 1 or cin != cout:
        layers.append(conv(f"{prefix}.shortcut", cin, cout, 1, stride, 0, h, h, batch,
                           role="downsample"))
    return convs[-1].h_out


def resnet(name: str, batch: int = 64, width: float = 1.0, in_channels: int = 3,
           image_size: int | None = None, head: bool = False, proj_dim: int = 128) -> Network:
    """The built-in ResNet ``name`` (:data:`RESNETS`): stage widths x ``width``
    (``max(1, round(c * width))``), ``image_size`` pixels (default: the network's, 32 or 224).
    ``head`` appends SimCLR's 2-layer projection MLP (``proj_dim`` outputs)."""
    spec = RESNETS[name]
    where = f"network {name!r}"
    if width <= 0:
        raise InputError(f"width multiplier must be > 0, got {width}", field="--width")
    size = spec.default_image_size if image_size is None else image_size
    if batch < 1 or in_channels < 1 or size < 4:
        raise InputError(f"needs batch >= 1, in_channels >= 1 and image_size >= 4 (got {batch}, "
                         f"{in_channels}, {size})", field=where)
    if not spec.imagenet_stem and size > CIFAR_STEM_MAX_IMAGE:
        raise InputError(f"{name} is the CIFAR-style network (3x3 stem, no max-pool); at "
                         f"{size} pixels use {name}-imagenet (7x7 stem and max-pool) or an "
                         f"image size <= {CIFAR_STEM_MAX_IMAGE}", field="--image-size")
    widths = [max(1, round(c * width)) for c in spec.widths]
    if spec.imagenet_stem:
        stem = conv("conv1", in_channels, widths[0], 7, 2, 3, size, size, batch, role="stem")
        h = conv_output_size(stem.h_out, MAXPOOL_KERNEL, MAXPOOL_STRIDE, MAXPOOL_PADDING)
    else:
        stem = conv("conv1", in_channels, widths[0], 3, 1, 1, size, size, batch, role="stem")
        h = stem.h_out
    layers: list[Layer] = [stem]
    cin = widths[0]
    for stage, (w, count) in enumerate(zip(widths, spec.blocks, strict=True), start=1):
        for block in range(count):
            stride = 2 if (stage > 1 and block == 0) else 1
            h = _block(layers, f"layer{stage}.{block}", cin, w, stride, h, batch, spec)
            cin = w * spec.expansion
    if head:
        layers.append(linear("head.0", cin, cin, batch))
        layers.append(linear("head.2", cin, proj_dim, batch))
    return Network(name=name, layers=resnet_post_ops(layers, spec.imagenet_stem))


def resnet_post_ops(layers: Sequence[Layer], stem_maxpool: bool = False) -> tuple[Layer, ...]:
    """``layers`` of a built-in ResNet (:data:`RESNETS`, or the same network recorded by
    ``workloads``) with the non-MAC operations each layer's output goes through, as the ResNet
    runs them: the stem BN + ReLU (+ the ImageNet stem's max-pool, ``stem_maxpool``), feeding
    the first block's two paths (fanout); inside a block every conv but the last BN + ReLU; a
    block's last conv (``conv2`` of a BasicBlock, ``conv3`` of a Bottleneck) BN + residual add
    + ReLU, then a fanout into the next block, except the network's last block, which pools; a
    projection shortcut BN; the projection head's first linear layer BN + ReLU (SimCLR's MLP),
    its last none."""
    def block_of(layer: Layer) -> str:
        return layer.name.rsplit(".", 1)[0]

    last_conv = {}  # block prefix -> name of its last conv
    for layer in layers:
        if layer.role == "block":
            last_conv[block_of(layer)] = layer.name
    final = max((i for i, layer in enumerate(layers)
                 if layer.role == "block" and last_conv[block_of(layer)] == layer.name),
                default=-1)
    result = []
    for index, layer in enumerate(layers):
        if layer.role == "stem":
            ops: tuple[str, ...] = ("batchnorm", "relu", "maxpool", "fanout") if stem_maxpool \
                else ("batchnorm", "relu", "fanout")
        elif layer.role == "block" and last_conv[block_of(layer)] == layer.name:
            ops = ("batchnorm", "add", "relu", "pool") if index == final else (
                "batchnorm", "add", "relu", "fanout")
        elif layer.role == "block" or layer.name == "head.0":
            ops = ("batchnorm", "relu")
        elif layer.role == "downsample":
            ops = ("batchnorm",)
        else:
            ops = ()
        result.append(dataclasses.replace(layer, post_ops=ops))
    return tuple(result)


def resnet20(batch: int = 64, width: float = 1.0, in_channels: int = 3, image_size: int = 32,
             head: bool = False, proj_dim: int = 128) -> Network:
    """CIFAR ResNet-20 (He et al. 2016): 3 stages of 3 BasicBlocks, widths 16/32/64 x width.

    Downsampling blocks use a 1x1 projection shortcut. ``head`` appends a 2-layer projection MLP.
    """
    return resnet("resnet20", batch, width, in_channels, image_size, head, proj_dim)


def resnet18(batch: int = 64, width: float = 1.0, in_channels: int = 3, image_size: int = 32,
             head: bool = False, proj_dim: int = 128) -> Network:
    """CIFAR ResNet-18: 3x3 stem, 4 stages of 2 BasicBlocks, widths 64..512 x width."""
    return resnet("resnet18", batch, width, in_channels, image_size, head, proj_dim)


BUILTIN_NETWORKS: tuple[str, ...] = tuple(RESNETS)


def builtin_network(name: str, **kwargs: object) -> Network:
    """A built-in network by name (:data:`BUILTIN_NETWORKS`); ``image_size`` None or absent
    means the network's own (32 for the CIFAR ResNets, 224 for the ImageNet ones)."""
    if name not in RESNETS:
        raise InputError(f"unknown network {name!r}; choose from {list(RESNETS)}",
                         field="--network")
    return resnet(name, **kwargs)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------
# SCALE-Sim topology CSV import
# ---------------------------------------------------------------------------------------------

TOPOLOGY_COLUMNS = ("Layer name", "IFMAP Height", "IFMAP Width", "Filter Height", "Filter Width",
                    "Channels", "Num Filter", "Strides")
_NM_PATTERN = re.compile(r"^\s*(\d+)\s*:\s*(\d+)\s*$")


def scalesim_output_size(ifmap: int, filt: int, stride: int) -> int:
    """SCALE-Sim's output size: ceil((ifmap - filt + stride) / stride).

    No padding is added, but when ``stride`` does not divide ``ifmap - filt`` SCALE-Sim keeps a
    last window that overhangs the bottom/right edge (unlike PyTorch's floor).
    """
    return math.ceil((ifmap - filt + stride) / stride)


def read_topology_csv(path: str | Path, batch: int = 1) -> Network:
    """Read a SCALE-Sim topology CSV exactly as SCALE-Sim interprets it (no padding, batch 1).

    Columns: ``Layer name, IFMAP Height, IFMAP Width, Filter Height, Filter Width, Channels,
    Num Filter, Strides,`` and an optional ``Sparsity`` column ``N:M``. SCALE-Sim drops the last
    field of every line, so its files end each line with a comma; we accept lines with or without.
    """
    path = Path(path)
    if not path.exists():
        raise InputError("no such topology file", path=str(path))
    text = read_text_file(path, "CSV")
    try:
        rows = [row for row in csv.reader(io.StringIO(text, newline=""))
                if any(cell.strip() for cell in row)]
    except csv.Error as error:
        raise InputError(f"not a CSV file ({error})", path=str(path)) from None
    if not rows:
        raise InputError("empty topology file", path=str(path))
    header = [cell.strip() for cell in rows[0]]
    while header and header[-1] == "":
        header.pop()
    if tuple(header[: len(TOPOLOGY_COLUMNS)]) != TOPOLOGY_COLUMNS:
        raise InputError(f"header must start with {', '.join(TOPOLOGY_COLUMNS)}; got "
                         f"{abbreviate(', '.join(header))}", path=str(path), field="header")
    has_sparsity = len(header) > len(TOPOLOGY_COLUMNS) and header[8] == "Sparsity"
    layers = []
    for line_no, row in enumerate(rows[1:], start=2):
        cells = [cell.strip() for cell in row]
        where = f"line {line_no}"
        if len(cells) < len(TOPOLOGY_COLUMNS) or not cells[0]:
            raise InputError(f"expected {len(TOPOLOGY_COLUMNS)} columns", path=str(path),
                             field=where)
        values = []
        for column, cell in zip(TOPOLOGY_COLUMNS[1:], cells[1:8], strict=True):
            try:
                value = int(cell)
            except ValueError:
                raise InputError(f"{column} must be a positive integer, got {abbreviate(cell)}",
                                 path=str(path), field=where) from None
            if value < 1:
                raise InputError(f"{column} must be a positive integer, got {value}",
                                 path=str(path), field=where)
            values.append(value)
        ih, iw, fh, fw, channels, filters, stride = values
        if fh > ih or fw > iw:
            raise InputError(f"filter {fh}x{fw} larger than ifmap {ih}x{iw}", path=str(path),
                             field=where)
        nm = None
        if has_sparsity and len(cells) > 8 and cells[8]:
            match = _NM_PATTERN.match(cells[8])
            if not match:
                raise InputError(f"Sparsity must look like N:M, got {abbreviate(cells[8])}",
                                 path=str(path), field=where)
            nm = (int(match.group(1)), int(match.group(2)))
        try:
            layers.append(Layer(
                name=cells[0], kind="conv", cin=channels, cout=filters, kh=fh, kw=fw,
                stride=stride, padding=0, groups=1, h_in=ih, w_in=iw,
                h_out=scalesim_output_size(ih, fh, stride),
                w_out=scalesim_output_size(iw, fw, stride), batch=batch, nm=nm,
            ))
        except InputError as error:
            raise InputError(str(error), path=str(path), field=where) from None
    return Network(name=path.stem, layers=tuple(layers))
