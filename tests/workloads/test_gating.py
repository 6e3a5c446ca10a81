"""CDG / SCDG / CGNet-style gating: base paths, exact recorded gates, gradients, FLOPs."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

import torch.nn.functional as F  # noqa: E402

from workloads.gating import (  # noqa: E402
    BranchConv2d,
    GatingConfig,
    LayerOptionError,
    base_chunks,
    gate_macs,
    gate_parameters,
    gate_regularizer,
    gate_sparsity,
    gated_convs,
    gated_macs_formula,
    set_branch,
)
from workloads.models import build_backbone  # noqa: E402

torch.set_num_threads(1)


def gated_conv(
    kind: str = "cdg", cin: int = 8, cout: int = 16, k: int = 3, stride: int = 1, **kwargs: object
) -> BranchConv2d:
    torch.manual_seed(0)
    config = GatingConfig(kind=kind, **kwargs)  # type: ignore[arg-type]
    return BranchConv2d(cin, cout, k, stride, k // 2, role="block", gating=config)


def test_config_defaults_and_validation() -> None:
    assert GatingConfig(kind="scdg").group_size == 8
    assert GatingConfig(kind="cdg").group_size == 1
    assert GatingConfig(kind="cdg").overlap == 0.0
    assert GatingConfig(kind="cgnet").overlap == 1.0
    assert GatingConfig(kind="scdg", group_size=4).group_size == 4
    for bad in (
        {"kind": "fbs", "groups": 4},
        {"kind": "fbs", "group_size": 8},
        {"kind": "fbs", "density": 0.0},
        {"kind": "dgc", "heads": 0},
        {"kind": "dgc", "density": 1.5},
        {"kind": "dgc", "groups": 2},
        {"kind": "cdg", "groups": 1},
        {"kind": "cgnet", "overlap": 0.5},
        {"kind": "cdg", "overlap": 1.5},
        {"kind": "cdg", "alpha": 0.0},
        {"kind": "cdg", "gated_roles": ("classifier",)},
        {"kind": "scdg", "group_size": 0},
    ):
        with pytest.raises(ValueError):
            GatingConfig(**bad)  # type: ignore[arg-type]


def test_base_chunks_diagonals_and_overlap() -> None:
    assert base_chunks(4, 0.0) == [[0, 1, 2, 3], [3, 2, 1, 0]]
    assert base_chunks(4, 0.5) == [[0, 1, 2, 3], [0, 1, 1, 0]]
    assert base_chunks(4, 0.75) == [[0, 1, 2, 3], [0, 1, 2, 0]]
    assert base_chunks(4, 1.0) == [[0, 1, 2, 3], [0, 1, 2, 3]]
    assert base_chunks(3, 0.0) == [[0, 1, 2], [2, 1, 0]]  # odd G: the middle chunk is shared
    assert base_chunks(2, 0.0, branches=1) == [[0, 1]]


@pytest.mark.parametrize(
    ("kind", "overlap", "same"), [("cdg", 0.0, False), ("cdg", 1.0, True), ("cgnet", None, True)]
)
def test_branch_base_paths(kind: str, overlap: float | None, same: bool) -> None:
    conv = gated_conv(kind, groups=4, overlap=overlap)
    b1, b2 = conv.base_mask(1)[:, :, 0, 0], conv.base_mask(2)[:, :, 0, 0]
    assert torch.equal(b1, b2) == same
    # output chunk g of branch 1 uses input chunk g (2 input, 4 output channels per chunk)
    assert b1[0:4, 0:2].all() and b1.sum() == 16 * 2
    x = torch.randn(2, 8, 6, 6)
    y1 = conv(x)
    set_branch(conv, 2)
    y2 = conv(x)
    assert torch.equal(y1, y2) == same
    assert set(conv.last_gate) == {1, 2}


def reference_gate(conv: BranchConv2d, x: torch.Tensor, branch: int) -> tuple[torch.Tensor, ...]:
    """The documented algorithm, written out: base and conditional outputs and the bool gate."""
    config = conv.gating
    assert config is not None
    w, base = conv.weight, conv.base_mask(branch)
    y = F.conv2d(x, torch.cat([w * base, w * ~base]), None, conv.stride, conv.padding)
    y_b, y_c = y[:, : conv.out_channels], y[:, conv.out_channels :]
    s = config.group_size
    sal = y_b.reshape(y_b.shape[0], -1, s, *y_b.shape[2:]).mean(dim=2) if s > 1 else y_b
    mean = sal.mean(dim=(2, 3), keepdim=True)
    var = ((sal - mean) ** 2).mean(dim=(2, 3), keepdim=True)
    z = (sal - mean) / torch.sqrt(var + config.norm_eps)
    gate = config.alpha * (z - conv.tau.view(1, -1, 1, 1)) > 0
    return y_b, y_c, gate


@pytest.mark.parametrize(("kind", "stride"), [("cdg", 1), ("scdg", 2), ("cgnet", 1)])
def test_recorded_gate_is_the_mask_used(kind: str, stride: int) -> None:
    conv = gated_conv(
        kind,
        cin=8,
        cout=32,
        stride=stride,
        groups=4,
        **({"group_size": 4} if kind == "scdg" else {}),
    ).double()
    with torch.no_grad():
        conv.tau.uniform_(-0.5, 1.0)
    seen = {}
    conv.register_forward_hook(lambda m, i, o: seen.update(x=i[0], y=o))
    for branch in (1, 2):
        set_branch(conv, branch)
        conv(torch.randn(3, 8, 9, 9, dtype=torch.float64))
        y_b, y_c, gate = reference_gate(conv, seen["x"], branch)
        recorded = conv.last_gate[branch]
        s = conv.gating.group_size  # type: ignore[union-attr]
        assert recorded.dtype == torch.bool
        assert recorded.shape == (3, 32 // s, *y_b.shape[2:])
        assert torch.equal(recorded, gate)  # bit for bit
        full = recorded.repeat_interleave(s, dim=1)
        assert torch.equal(seen["y"], y_b + full * y_c)  # this very mask multiplied Y_c
        assert 0.05 < recorded.float().mean() < 0.95


def test_scdg_gates_constant_over_channel_groups() -> None:
    conv = gated_conv("scdg", cin=8, cout=32, groups=2, group_size=8).double()
    x = torch.randn(2, 8, 7, 7, dtype=torch.float64)
    y = conv(x)
    y_b, y_c, _ = reference_gate(conv, x, 1)
    # which channels got their conditional path, inferred from the output alone
    used = (y - y_b - y_c).abs() < (y - y_b).abs()
    informative = y_c.abs() > 1e-6
    per_group = used.reshape(2, 4, 8, 7, 7)
    known = informative.reshape(2, 4, 8, 7, 7)
    first = per_group[:, :, :1].expand_as(per_group)
    assert torch.equal(per_group[known], first[known])
    assert conv.last_gate[1].shape == (2, 4, 7, 7)
    assert conv.tau.shape == (4,)  # one threshold per gate channel


def test_gradients_reach_tau_and_weights() -> None:
    backbone = build_backbone(
        "resnet20", 0.5, gating=GatingConfig(kind="scdg", groups=2, group_size=4)
    )
    features = backbone(torch.randn(4, 3, 8, 8))
    (features.pow(2).sum() + gate_regularizer(backbone)).backward()
    convs = gated_convs(backbone)
    assert len(gate_parameters(backbone)) == len(convs) == 18
    for _, conv in convs:
        assert conv.tau.grad is not None and conv.tau.grad.abs().sum() > 0
        assert conv.weight.grad is not None and conv.weight.grad.abs().sum() > 0


def test_regulariser_drives_sparsity_up() -> None:
    torch.manual_seed(0)
    config = GatingConfig(kind="cdg", groups=2, reg_lambda=1.0, tau_init=0.0)
    backbone = build_backbone("resnet20", 0.5, gating=config)
    x = torch.randn(4, 3, 8, 8)
    with torch.no_grad():
        backbone(x)
    before = gate_sparsity(backbone)
    optimizer = torch.optim.SGD(gate_parameters(backbone), lr=0.2)
    for _ in range(10):
        optimizer.zero_grad()
        gate_regularizer(backbone).backward()
        optimizer.step()
    with torch.no_grad():
        backbone(x)
    after = gate_sparsity(backbone)
    taus = torch.cat([t.detach() for t in gate_parameters(backbone)])
    assert 0.4 < before < 0.6
    assert after > before + 0.1
    assert (taus > 0.4).all() and (taus < config.tau_target + 1e-6).all()
    assert gate_regularizer(backbone).item() < 1e-2


def test_gate_macs_follow_the_formula() -> None:
    for kind, kwargs in (("cdg", {}), ("scdg", {"group_size": 2})):
        conv = gated_conv(kind, cin=8, cout=16, k=3, stride=2, groups=4, **kwargs)
        set_branch(conv, 2)
        y = conv(torch.randn(3, 8, 10, 10))
        rho = conv.last_gate[2].double().mean().item()
        expected = gated_macs_formula(3, 8, 16, y.shape[2], y.shape[3], 3, 4, rho)
        assert gate_macs(conv, 2) == pytest.approx(expected, rel=1e-12)
    # the seeds' SCDG table (ResNet-18, G = 4): conditional sparsity -> FLOPs reduction
    for sparsity, reduction in ((0.7164, 2.16), (0.6624, 1.98), (0.4552, 1.53)):
        dense = gated_macs_formula(1, 1, 1, 1, 1, 1, 4, 1.0)
        assert dense / gated_macs_formula(1, 1, 1, 1, 1, 1, 4, 1 - sparsity) == pytest.approx(
            reduction, abs=0.015
        )


def test_channels_last_gives_the_same_gates() -> None:
    conv = gated_conv("cdg", cin=8, cout=16, groups=2).double()
    x = torch.randn(2, 8, 6, 6, dtype=torch.float64)
    y = conv(x)
    gate = conv.last_gate[1].clone()
    conv_cl = conv.to(memory_format=torch.channels_last)
    y_cl = conv_cl(x.to(memory_format=torch.channels_last))
    torch.testing.assert_close(y_cl, y)
    assert torch.equal(conv_cl.last_gate[1], gate)


def test_weight_mask_gradient_modes() -> None:
    conv = BranchConv2d(4, 4, 3, padding=1, role="block")
    mask = torch.rand(conv.weight.shape, generator=torch.Generator().manual_seed(1)) > 0.5
    conv.weight_masks = {1: mask, 2: torch.ones_like(mask)}
    x = torch.randn(2, 4, 5, 5)
    torch.testing.assert_close(conv(x), F.conv2d(x, conv.weight * mask, padding=1))
    conv(x).sum().backward()
    assert conv.weight.grad is not None
    assert (conv.weight.grad[~mask] == 0).all() and conv.weight.grad[mask].abs().sum() > 0
    conv.weight.grad = None
    conv.mask_gradient = "dense"
    conv(x).sum().backward()
    assert conv.weight.grad[~mask].abs().sum() > 0
    set_branch(conv, 2)
    torch.testing.assert_close(conv(x), F.conv2d(x, conv.weight, padding=1))
    conv.weight_masks = None
    assert conv.weight_masks is None and not hasattr(conv, "weight_mask_1")
    with pytest.raises(ValueError):
        conv.weight_masks = {1: mask.float()}
    with pytest.raises(ValueError):
        set_branch(conv, 3)


@pytest.mark.parametrize("kind", ["cdg", "scdg"])
def test_masked_gate_gradient_sees_open_outputs_only(kind: str) -> None:
    """The forward pass is the same; with every gate closed the masked estimator gives the
    thresholds no gradient (it never looks at Y_c), the straight-through one does."""
    x = torch.randn(2, 8, 6, 6)
    outputs, grads = {}, {}
    for gradient in ("straight_through", "masked"):
        conv = gated_conv(kind, tau_init=6.0, gate_gradient=gradient, groups=2,
                          **({"group_size": 4} if kind == "scdg" else {}))
        out = conv(x)
        assert not conv.last_gate[1].any()  # every gate closed
        (out * torch.linspace(-1, 1, out.numel()).view_as(out)).sum().backward()
        outputs[gradient], grads[gradient] = out.detach(), conv.tau.grad.clone()
    assert torch.equal(outputs["straight_through"], outputs["masked"])
    assert grads["masked"].abs().sum() == 0
    assert grads["straight_through"].abs().sum() > 0


def test_the_trace_records_the_gate_gradient() -> None:
    from workloads.record import trace_layers

    gating = GatingConfig(kind="cdg", groups=2, gate_gradient="masked")
    backbone = build_backbone("resnet20", 0.5, gating=gating)
    layers = trace_layers(backbone, 2, 8, gating, None)
    gated = [item for item in layers if item.gate is not None]
    assert gated and all(item.gate.gradient == "masked" for item in gated)
    with pytest.raises(ValueError, match="gate_gradient"):
        GatingConfig(kind="cdg", gate_gradient="dense")


@pytest.mark.parametrize("density", [0.25, 0.5, 1.0])
def test_fbs_keeps_the_k_best_channels_of_each_sample(density: float) -> None:
    """FBS (Gao et al. 2019): k = ceil(d x Cout) channels per sample survive, scaled by their
    scores; the gate is that channel set at every pixel; suppressed outputs are exactly zero
    and get no gradient, so skipping them (FW, BD, WG) loses nothing."""
    conv = gated_conv("fbs", cin=8, cout=16, density=density)
    x = torch.randn(3, 8, 6, 6, requires_grad=True)
    y = conv(x)
    gate = conv.last_gate[1]
    assert gate.shape == (3, 16, 6, 6)
    per_sample = gate[:, :, 0, 0]
    assert (gate == per_sample[:, :, None, None]).all()  # constant over pixels
    assert per_sample.sum(dim=1).tolist() == [int(-(-density * 16 // 1))] * 3
    assert (y[~gate] == 0).all()
    dense = F.conv2d(x, conv.weight, padding=1)
    scores = F.relu(conv.saliency(x.abs().mean((2, 3)) / (x.abs().mean((2, 3)).mean(
        1, keepdim=True) + 1e-5)))
    kept_scores = scores.masked_fill(~per_sample, float("inf"))
    assert (kept_scores.min(dim=1).values >= scores.masked_fill(per_sample, float("-inf")).max(
        dim=1).values).all()  # winners take all
    torch.testing.assert_close(y, dense * (scores * per_sample)[:, :, None, None])
    for n in range(3):  # each sample's suppressed channels give their weights no gradient
        grad = torch.autograd.grad(y[n].sum(), conv.weight, retain_graph=True)[0]
        suppressed = ~per_sample[n]
        assert int(suppressed.sum()) == 16 - int(-(-density * 16 // 1))
        assert (grad[suppressed] == 0).all() and (grad[per_sample[n]] != 0).any()
    assert gate_macs(conv, 1) == 9 * 8 * int(gate.sum())
    assert not gate_parameters(conv) and gate_regularizer(conv) == 0


@pytest.mark.parametrize("density", [0.25, 0.5, 1.0])
def test_dgc_heads_read_only_their_selected_input_channels(density: float) -> None:
    """DGC (Su et al. 2020): each of the heads keeps k = ceil(d x Cin) input channels per
    sample, scaled by their scores, and computes its Cout/heads outputs from them alone; an
    unselected channel gives the head's weights no gradient from that sample, so FW, BD and WG
    may skip it. The recorded selection is exactly that channel set per (sample, head)."""
    conv = gated_conv("dgc", cin=8, cout=16, heads=4, density=density, reg_lambda=0.1)
    x = torch.randn(3, 8, 6, 6, requires_grad=True)
    y = conv(x)
    select = conv.last_select[1]
    keep = int(-(-density * 8 // 1))
    assert select.shape == (3, 4, 8) and conv.last_gate == {}
    assert (select.sum(dim=2) == keep).all()
    pooled = x.mean(dim=(2, 3))
    hidden = F.relu(torch.einsum("nc,hdc->nhd", pooled, conv.dgc_squeeze)
                    + conv.dgc_squeeze_bias)
    scores = F.relu(torch.einsum("nhd,hcd->nhc", hidden, conv.dgc_excite) + conv.dgc_excite_bias)
    for h in range(4):
        inputs = x * (scores[:, h] * select[:, h])[:, :, None, None]
        expected = F.conv2d(inputs, conv.weight[4 * h:4 * (h + 1)], padding=1)
        torch.testing.assert_close(y[:, 4 * h:4 * (h + 1)], expected)
    for n in range(3):  # an unselected channel gives the head's weights no gradient
        grad = torch.autograd.grad(y[n].sum(), conv.weight, retain_graph=True)[0]
        for h in range(4):
            head = grad[4 * h:4 * (h + 1)]
            assert (head[:, ~select[n, h]] == 0).all()
            assert (head[:, select[n, h]] != 0).any()
    assert gate_macs(conv, 1) == 9 * int(select.sum()) * 4 * 36
    assert gate_sparsity(conv) == pytest.approx(1 - keep / 8)
    penalty = gate_regularizer(conv)
    assert float(penalty.detach()) == pytest.approx(0.1 * float(scores.abs().mean().detach()))
    assert float(gate_regularizer(conv)) == 0  # taken once, then cleared
    assert not gate_parameters(conv)
    conv.eval()  # fine-tuning and evaluation forwards add no lasso term
    conv(x).sum().backward()
    assert float(gate_regularizer(conv)) == 0
    with pytest.raises(ValueError, match="heads=3 must divide Cout=16"):
        gated_conv("dgc", cin=8, cout=16, heads=3)
    with pytest.raises(LayerOptionError, match="heads=3 must divide") as error:
        build_backbone("resnet20", 1.0, gating=GatingConfig(kind="dgc", heads=3))
    assert error.value.option == "dgc_heads"


def test_dgc_is_recorded_as_input_selections() -> None:
    from workloads.record import trace_layers

    gating = GatingConfig(kind="dgc", heads=2)
    backbone = build_backbone("resnet20", 0.5, gating=gating)
    layers = trace_layers(backbone, 2, 8, gating, None)
    chosen = [item for item in layers if item.select is not None]
    assert chosen and all(item.gate is None and item.select.heads == 2 and
                          item.select.shape == (2, 2, item.layer.cin) for item in chosen)
    assert {item.layer.role for item in chosen} == {"block"}


def test_fbs_is_recorded_without_a_base_path() -> None:
    from workloads.record import trace_layers

    gating = GatingConfig(kind="fbs")
    backbone = build_backbone("resnet20", 0.5, gating=gating)
    gated = [item for item in trace_layers(backbone, 2, 8, gating, None) if item.gate]
    assert gated and all(item.gate.gating_groups == 1 and item.gate.base_chunks == () and
                         item.gate.group_size == 1 and item.gate.gradient == "masked"
                         for item in gated)
