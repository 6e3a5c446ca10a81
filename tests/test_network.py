"""Layer geometry, phase GEMMs, built-in ResNets and SCALE-Sim topology import."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from accelsim.errors import InputError
from accelsim.network import (
    PHASES,
    Layer,
    builtin_network,
    conv,
    linear,
    read_topology_csv,
    resnet18,
    resnet20,
)


@st.composite
def layers(draw: st.DrawFn) -> Layer:
    groups = draw(st.integers(1, 4))
    cin = groups * draw(st.integers(1, 8))
    cout = groups * draw(st.integers(1, 8))
    k = draw(st.integers(1, 5))
    stride = draw(st.integers(1, 3))
    padding = draw(st.integers(0, 2))
    size = draw(st.integers(max(1, k - 2 * padding), 20))
    return conv("l", cin, cout, k, stride, padding, size, size, draw(st.integers(1, 4)),
                groups=groups)


@given(layers())
def test_dense_macs_are_equal_in_all_phases(layer: Layer) -> None:
    macs = {phase: layer.gemm(phase).macs for phase in PHASES}
    expected = (layer.batch * layer.h_out * layer.w_out * layer.cout
                * (layer.cin // layer.groups) * layer.kh * layer.kw)
    assert set(macs.values()) == {expected} == {layer.macs}


def test_phase_gemm_shapes() -> None:
    layer = conv("c", 16, 32, 3, 2, 1, 8, 8, batch=2)
    assert (layer.h_out, layer.w_out) == (4, 4)
    m, k, f = 2 * 4 * 4, 16 * 9, 32
    assert layer.gemm("fw") == layer.gemm("fw").__class__(sr=m, t=k, sc=f)
    assert (layer.gemm("bd").sr, layer.gemm("bd").t, layer.gemm("bd").sc) == (m, f, k)
    assert (layer.gemm("wg").sr, layer.gemm("wg").t, layer.gemm("wg").sc) == (k, m, f)
    grouped = conv("g", 16, 32, 3, 1, 1, 8, 8, batch=1, groups=4)
    assert grouped.gemm("fw").count == 4 and grouped.gemm("fw").sc == 8
    with pytest.raises(ValueError, match="unknown phase"):
        layer.gemm("xx")


def _resnet18_cifar_macs_by_hand() -> int:
    """Per-image MACs of CIFAR ResNet-18 (3x3 stem, 1x1 projection shortcuts), by stage."""
    total = 3 * 64 * 9 * 32 * 32  # stem
    size, cin = 32, 64
    for stage, width in enumerate((64, 128, 256, 512)):
        out = size if stage == 0 else size // 2
        total += cin * width * 9 * out * out + width * width * 9 * out * out  # block 0
        if stage > 0:
            total += cin * width * out * out  # 1x1 shortcut
        total += 2 * width * width * 9 * out * out  # block 1
        size, cin = out, width
    return total


def test_resnet18_matches_hand_count() -> None:
    net = resnet18(batch=1)
    assert net.macs == _resnet18_cifar_macs_by_hand()
    assert 0.55e9 < net.macs < 0.56e9  # the well-known ~0.56 GMACs of CIFAR ResNet-18
    assert len(net.layers) == 1 + 16 + 3
    assert net.layers[0].role == "stem" and net.layer("layer2.0.shortcut").role == "downsample"
    assert resnet18(batch=4).macs == 4 * net.macs
    assert resnet18(batch=1, width=2).macs > 3.9 * net.macs


@pytest.mark.parametrize("name, published", [("resnet18-imagenet", 1.82e9),
                                             ("resnet50-imagenet", 4.1e9)])
def test_imagenet_resnets_match_the_published_macs(name: str, published: float) -> None:
    """He et al. 2016 (Table 1): 1.8 G / 3.8 G FLOPs, i.e. multiply-adds; torchvision's model
    cards give 1.82 G and 4.1 G MACs per 224x224 image (ResNet-50 v1.5: the stride on the 3x3
    conv). Ours omit the classifier (0.5 M and 2 M MACs): within 2 %."""
    net = builtin_network(name, batch=1)
    assert net.macs == pytest.approx(published, rel=0.02)
    assert builtin_network(name, batch=3).macs == 3 * net.macs
    stem = net.layers[0]
    assert (stem.kh, stem.stride, stem.h_out) == (7, 2, 112)
    assert stem.post_ops == ("batchnorm", "relu", "maxpool", "fanout")
    assert net.layer("layer1.0.conv1").h_in == 56  # after the max-pool
    assert net.layers[-1].h_out == 7 and net.layers[-1].post_ops[-1] == "pool"
    if name == "resnet50-imagenet":
        assert len(net.layers) == 1 + 16 * 3 + 4
        assert net.layer("layer1.0.shortcut").cout == 256  # a projection: 64 -> 256
        assert net.layer("layer2.0.conv2").stride == 2 and net.layer("layer2.0.conv1").stride == 1
        assert net.layers[-1].cout == 2048


def test_a_cifar_resnet_at_imagenet_size_is_refused() -> None:
    with pytest.raises(InputError, match=r"CIFAR-style.*resnet18-imagenet"):
        resnet18(batch=1, image_size=224)
    assert builtin_network("resnet18-imagenet", batch=1).layers[0].h_in == 224  # its default


def test_resnet20_shapes() -> None:
    net = resnet20(batch=2, in_channels=1, image_size=28)
    assert len(net.layers) == 1 + 18 + 2
    last = net.layers[-1]
    assert (last.cout, last.h_out) == (64, 7)
    assert net.layers[0].cin == 1
    head = resnet20(batch=2, head=True, proj_dim=32)
    assert head.layers[-1].kind == "linear" and head.layers[-1].cout == 32


def test_linear_is_a_1x1_conv() -> None:
    fc = linear("fc", 512, 10, batch=8)
    assert fc.macs == 8 * 512 * 10 and fc.gemm("wg").t == 8


def test_builtin_network_errors() -> None:
    with pytest.raises(InputError, match="unknown network 'resnet50'"):
        builtin_network("resnet50")
    with pytest.raises(InputError, match="width multiplier"):
        resnet20(width=0)
    with pytest.raises(InputError, match="groups=3 must divide"):
        conv("bad", 4, 6, 3, 1, 1, 8, 8, 1, groups=3)


def write(tmp_path: Path, text: str, name: str = "topo.csv") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


HEADER = ("Layer name, IFMAP Height, IFMAP Width, Filter Height, Filter Width, Channels, "
          "Num Filter, Strides,")


def test_topology_as_scalesim_reads_it(tmp_path: Path) -> None:
    path = write(tmp_path, HEADER + "\nconv1, 224, 224, 7, 7, 3, 64, 2,\nfc, 1, 1, 1, 1, 512, "
                 "1000, 1,\nodd, 10, 9, 3, 2, 4, 5, 3,\n")
    net = read_topology_csv(path)
    first, fc, odd = net.layers
    assert (first.h_out, first.w_out, first.padding, first.batch) == (110, 110, 0, 1)  # ceil(219/2)
    assert fc.macs == 512 * 1000
    assert (odd.h_out, odd.w_out) == (4, 4)  # ceil((10-3+3)/3), ceil((9-2+3)/3)
    assert odd.k_per_group == 3 * 2 * 4


def test_topology_sparsity_column(tmp_path: Path) -> None:
    path = write(tmp_path, HEADER + " Sparsity,\na, 8, 8, 3, 3, 16, 8, 1, 2:4,\nb, 8, 8, 3, 3, "
                 "16, 8, 1, ,\n")
    a, b = read_topology_csv(path).layers
    assert a.nm == (2, 4) and b.nm is None


@pytest.mark.parametrize(("row", "message"), [
    ("a, 8, x, 3, 3, 16, 8, 1,", "line 2: IFMAP Width must be a positive integer, got 'x'"),
    ("a, 8, 8, 3, 3, 0, 8, 1,", "line 2: Channels must be a positive integer, got 0"),
    ("a, 2, 8, 3, 3, 4, 8, 1,", "line 2: filter 3x3 larger than ifmap 2x8"),
    ("a, 8, 8, 3, 3,", "line 2: expected 8 columns"),
])
def test_topology_errors_name_file_and_line(tmp_path: Path, row: str, message: str) -> None:
    path = write(tmp_path, HEADER + "\n" + row + "\n")
    with pytest.raises(InputError) as info:
        read_topology_csv(path)
    assert str(info.value) == f"{path}: {message}"


def test_topology_bad_header_and_bad_sparsity(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="header must start with"):
        read_topology_csv(write(tmp_path, "name, h, w\n"))
    path = write(tmp_path, HEADER + " Sparsity,\na, 8, 8, 3, 3, 16, 8, 1, half,\n")
    with pytest.raises(InputError, match="line 2: Sparsity must look like N:M, got 'half'"):
        read_topology_csv(path)
    with pytest.raises(InputError, match="no such topology file"):
        read_topology_csv(tmp_path / "missing.csv")
