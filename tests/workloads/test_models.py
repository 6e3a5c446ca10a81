"""Backbones: layer names, roles and geometry equal accelsim.network; forward shapes."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from accelsim.network import resnet18, resnet20  # noqa: E402
from workloads.gating import BranchConv2d, GatingConfig, branch_convs, gated_convs  # noqa: E402
from workloads.models import Backbone, build_backbone, layer_geometry  # noqa: E402

torch.set_num_threads(1)
NETWORKS = {"resnet20": resnet20, "resnet18": resnet18}


@pytest.mark.parametrize("name", ["resnet20", "resnet18"])
@pytest.mark.parametrize("width", [0.5, 1.0, 2.0])
@pytest.mark.parametrize("in_channels", [1, 3])
@pytest.mark.parametrize("image_size", [28, 32])
def test_layer_geometry_equals_accelsim_network(
    name: str, width: float, in_channels: int, image_size: int
) -> None:
    with torch.device("meta"):  # shapes only: no weight initialisation cost
        backbone = build_backbone(name, width, in_channels)
    layers = layer_geometry(backbone, batch=8, image_size=image_size)
    expected = NETWORKS[name](8, width, in_channels, image_size).layers
    assert layers == list(expected)
    assert backbone.feature_dim == expected[-1].cout


def test_every_conv_is_a_branch_conv_with_its_role() -> None:
    backbone = build_backbone("resnet18", 0.25)
    convs = [(n, m) for n, m in backbone.named_modules() if isinstance(m, torch.nn.Conv2d)]
    assert all(isinstance(m, BranchConv2d) for _, m in convs)
    roles = {n: m.role for n, m in convs}
    assert roles["conv1"] == "stem"
    assert roles["layer1.0.conv1"] == roles["layer4.1.conv2"] == "block"
    assert roles["layer2.0.shortcut"] == "downsample"
    assert "layer1.0.shortcut" not in roles  # identity shortcut: same width, stride 1
    assert [n for n, _ in branch_convs(backbone)] == [n for n, _ in convs]


def test_forward_shape_and_channels_last() -> None:
    torch.manual_seed(0)
    backbone = build_backbone("resnet20", 0.5, in_channels=1).eval()
    x = torch.randn(2, 1, 12, 12)
    out = backbone(x)
    assert isinstance(backbone, Backbone)
    assert out.shape == (2, backbone.feature_dim) == (2, 32)
    backbone_cl = backbone.to(memory_format=torch.channels_last)
    out_cl = backbone_cl(x.to(memory_format=torch.channels_last))
    torch.testing.assert_close(out_cl, out, rtol=1e-4, atol=1e-5)


def test_gated_backbone_gates_block_convs_only() -> None:
    backbone = build_backbone("resnet20", 0.5, gating=GatingConfig(kind="cdg", groups=2))
    gated = [n for n, _ in gated_convs(backbone)]
    blocks = [n for n, m in branch_convs(backbone) if m.role == "block"]
    assert gated == blocks and len(gated) == 18
    layer_geometry(backbone, 4, 16)  # a meta forward records no gate
    assert all(not m.last_gate for _, m in gated_convs(backbone))
    backbone(torch.randn(2, 3, 8, 8))
    assert all(set(m.last_gate) == {1} for _, m in gated_convs(backbone))


def test_gated_roles_and_errors() -> None:
    config = GatingConfig(kind="cdg", groups=2, gated_roles=("block", "downsample"))
    backbone = build_backbone("resnet20", 0.5, gating=config)
    assert {m.role for _, m in gated_convs(backbone)} == {"block", "downsample"}
    with pytest.raises(ValueError, match=r"layer1\.0\.conv1"):  # 16 channels: 16/4 = 4 < s = 8
        build_backbone("resnet20", 1.0, gating=GatingConfig(kind="scdg", groups=4))
    with pytest.raises(ValueError, match="conv1"):  # Cin = 3 is not divisible by G = 2
        build_backbone(
            "resnet20", 0.5, gating=GatingConfig(kind="cdg", groups=2, gated_roles=("stem",))
        )
    with pytest.raises(ValueError, match="unknown backbone"):
        build_backbone("resnet50")
    with pytest.raises(ValueError, match="width"):
        build_backbone("resnet20", 0.0)
