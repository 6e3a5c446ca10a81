"""SyncCP: schedule, nested masks, N:M and block structure, thresholds, encoders, regrow."""

from __future__ import annotations

import copy

import pytest

torch = pytest.importorskip("torch")

import torch.nn.functional as F  # noqa: E402

from workloads.gating import set_branch  # noqa: E402
from workloads.models import build_backbone  # noqa: E402
from workloads.pruning import SyncCP, SyncCPConfig  # noqa: E402

torch.set_num_threads(1)


def model(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return build_backbone("resnet20", 0.5)  # 8/16/32 channels


def jiggle(net: torch.nn.Module, seed: int) -> None:
    """Stand-in for an optimizer step: perturb every weight."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=generator))


def run(pruner: SyncCP, net: torch.nn.Module, steps: range) -> None:
    for t in steps:
        pruner.step(t)
        jiggle(net, t)


def test_cubic_schedule() -> None:
    pruner = SyncCP(
        {1: model(), 2: model()},
        SyncCPConfig(
            t0=100, tf=300, update_every=50, initial_sparsity=0.3, final_sparsity=0.8, delta=0.3
        ),
    )
    assert pruner.sparsity_at(0) == pytest.approx((0.3, 0.0))
    assert pruner.sparsity_at(100) == pytest.approx((0.3, 0.0))
    mid = 0.3 + 0.5 * (1 - 0.5**3)
    assert pruner.sparsity_at(200) == pytest.approx((mid, mid - 0.3))
    assert pruner.sparsity_at(300) == pytest.approx((0.8, 0.5))
    assert pruner.sparsity_at(10_000) == pytest.approx((0.8, 0.5))
    updates = [t for t in range(400) if pruner.is_update_step(t)]
    assert updates == [100, 150, 200, 250, 300]
    off_grid = SyncCP({1: model(), 2: model()}, SyncCPConfig(t0=0, tf=250, update_every=100))
    assert [t for t in range(400) if off_grid.is_update_step(t)] == [0, 100, 200, 250]


@pytest.mark.parametrize("threshold", ["global", "layer"])
@pytest.mark.parametrize("pattern", ["element", "block:4x4"])
def test_masks_are_nested_and_reach_the_schedule(pattern: str, threshold: str) -> None:
    net = model()
    config = SyncCPConfig(pattern=pattern, threshold=threshold, t0=0, tf=40, update_every=10)
    pruner = SyncCP({1: net, 2: net}, config)
    for t in range(41):
        changed = pruner.step(t)
        assert changed == (t % 10 == 0)  # the weights move between updates
        for name, masks in pruner.masks().items():
            assert masks[1].dtype == torch.bool
            assert not (masks[1] & ~masks[2]).any(), name  # branch 2 is a superset
        if t % 10 == 0:
            s1, s2 = pruner.sparsity_at(t)
            got = pruner.weight_sparsity()
            tol = 1e-3 if pattern == "element" else 0.02
            assert got[1] == pytest.approx(s1, abs=tol)
            assert got[2] == pytest.approx(s2, abs=tol)
        jiggle(net, t)
    assert pruner.weight_sparsity()[1] == pytest.approx(0.8, abs=0.02)


def test_block_masks_are_constant_over_blocks() -> None:
    net = model()
    pruner = SyncCP({1: net, 2: net}, SyncCPConfig(pattern="block:4x2", threshold="layer"))
    pruner.step(0)
    for masks in pruner.masks().values():
        for mask in masks.values():
            cout, cin, kh, kw = mask.shape
            blocks = mask.reshape(cout // 4, 4, cin // 2, 2, kh * kw)
            assert torch.equal(blocks.all(dim=(1, 3, 4)), blocks.any(dim=(1, 3, 4)))


@pytest.mark.parametrize(("pattern", "n2"), [("nm:2:4", 3), ("nm:1:4", 2), ("nm:2:8", 4)])
def test_nm_masks_are_exact_on_every_layer(pattern: str, n2: int) -> None:
    net = model()
    config = SyncCPConfig(pattern=pattern, t0=0, tf=20, update_every=10)
    assert config.nm_branch2 == n2
    pruner = SyncCP({1: net, 2: net}, config)
    n, m = config.nm  # type: ignore[misc]
    run(pruner, net, range(20))
    pruner.step(20)  # the last update: the weights are those the masks were chosen from
    assert len(pruner.masks()) == 20  # resnet20: 18 block convs + 2 projection shortcuts
    for name, masks in pruner.masks().items():
        for branch, keep in ((1, n), (2, n2)):
            groups = masks[branch].permute(0, 2, 3, 1).reshape(-1, m)
            assert (groups.sum(dim=1) == keep).all(), (name, branch)
        assert not (masks[1] & ~masks[2]).any()
    assert pruner.weight_sparsity() == pytest.approx({1: 1 - n / m, 2: 1 - n2 / m})
    # branch 1 keeps the N largest |W| of each group
    conv = dict(net.named_modules())["layer2.0.conv1"]
    w = conv.weight.detach().abs().permute(0, 2, 3, 1).reshape(-1, m)
    kept = pruner.masks()["layer2.0.conv1"][1].permute(0, 2, 3, 1).reshape(-1, m)
    assert (
        w[kept].reshape(-1, n).min(dim=1).values >= w[~kept].reshape(-1, m - n).max(dim=1).values
    ).all()


def test_global_and_layer_thresholds_differ() -> None:
    per_layer = {}
    for threshold in ("global", "layer"):
        net = model()
        pruner = SyncCP({1: net, 2: net}, SyncCPConfig(threshold=threshold, initial_sparsity=0.6))
        pruner.step(0)
        per_layer[threshold] = {
            n: 1 - m[1].float().mean().item() for n, m in pruner.masks().items()
        }
        assert pruner.weight_sparsity()[1] == pytest.approx(0.6, abs=1e-3)
    layer = torch.tensor(list(per_layer["layer"].values()))
    global_ = torch.tensor(list(per_layer["global"].values()))
    assert (layer - 0.6).abs().max() < 0.01  # every layer at the target
    assert global_.max() - global_.min() > 0.1  # one ranking: layers differ


def test_shared_encoder_masks_per_branch() -> None:
    net = model()
    pruner = SyncCP({1: net, 2: net}, SyncCPConfig(initial_sparsity=0.5))
    pruner.step(0)
    conv = dict(net.named_modules())["layer1.0.conv1"]
    masks = pruner.masks()["layer1.0.conv1"]
    assert set(conv.weight_masks) == {1, 2}
    assert torch.equal(conv.weight_masks[1], masks[1])
    assert torch.equal(conv.weight_masks[2], masks[2])
    x = torch.randn(2, 8, 6, 6)
    for branch in (1, 2):
        set_branch(conv, branch)
        torch.testing.assert_close(conv(x), F.conv2d(x, conv.weight * masks[branch], padding=1))
    # masked gradient: weights pruned in both branches get none
    set_branch(net, 1)
    loss = net(torch.randn(2, 3, 8, 8)).pow(2).sum()
    set_branch(net, 2)
    (loss + net(torch.randn(2, 3, 8, 8)).pow(2).sum()).backward()
    assert conv.weight.grad is not None
    assert (conv.weight.grad[~masks[2]] == 0).all()
    assert conv.weight.grad[masks[2] & ~masks[1]].abs().sum() > 0


def test_momentum_encoder_masks_come_from_online_scores() -> None:
    online = model(0)
    target = copy.deepcopy(online)
    jiggle(target, 123)  # a target that drifted: its own magnitudes must not matter
    pruner = SyncCP({1: online, 2: target}, SyncCPConfig(initial_sparsity=0.5))
    assert not pruner.shared
    pruner.step(0)
    reference_net = model(0)
    reference = SyncCP({1: reference_net, 2: reference_net}, SyncCPConfig(initial_sparsity=0.5))
    reference.step(0)
    online_convs, target_convs = dict(online.named_modules()), dict(target.named_modules())
    for name, masks in pruner.masks().items():
        ref = reference.masks()[name]
        assert torch.equal(masks[1], ref[1]) and torch.equal(masks[2], ref[2])
        for branch in (1, 2):  # online carries mask 1, target mask 2, whatever the view
            assert torch.equal(online_convs[name].weight_masks[branch], masks[1])
            assert torch.equal(target_convs[name].weight_masks[branch], masks[2])


def test_deterministic_with_a_fixed_seed() -> None:
    results = []
    for _ in range(2):
        net = model(7)
        pruner = SyncCP({1: net, 2: net}, SyncCPConfig(score="ema", t0=0, tf=20, update_every=5))
        run(pruner, net, range(21))
        results.append(pruner.masks())
    for name in results[0]:
        for branch in (1, 2):
            assert torch.equal(results[0][name][branch], results[1][name][branch])


def test_ema_scores() -> None:
    net = model()
    config = SyncCPConfig(score="ema", ema_momentum=0.9, t0=0, tf=10, update_every=10)
    pruner = SyncCP({1: net, 2: net}, config)
    conv = dict(net.named_modules())["layer3.1.conv2"]
    w0 = conv.weight.detach().abs().clone()
    pruner.step(0)
    jiggle(net, 0)
    w1 = conv.weight.detach().abs().clone()
    pruner.step(1)
    torch.testing.assert_close(pruner.state_dict()["ema"]["layer3.1.conv2"], 0.9 * w0 + 0.1 * w1)


def test_regrow_uses_the_dense_gradient() -> None:
    torch.manual_seed(0)
    net = build_backbone("resnet20", 0.5)
    config = SyncCPConfig(
        regrow=True,
        t0=0,
        tf=4,
        update_every=2,
        initial_sparsity=0.5,
        final_sparsity=0.7,
        threshold="layer",
    )
    pruner = SyncCP({1: net, 2: net}, config)
    assert [t for t in range(6) if pruner.needs_dense_gradient(t)] == [1]  # rate 0 at tf
    optimizer = torch.optim.SGD(net.parameters(), lr=0.05)
    conv = dict(net.named_modules())["layer2.1.conv1"]
    for t in range(3):
        if t == 2:  # what magnitude selection alone would give at this update
            twin = copy.deepcopy(net)
            magnitude = SyncCP(
                {1: twin, 2: twin}, SyncCPConfig(**{**config.__dict__, "regrow": False})
            )
            magnitude.step(2)
        pruner.step(t)
        assert conv.capture_dense_grad == (t == 1)
        optimizer.zero_grad()
        for branch in (1, 2):
            set_branch(net, branch)
            net(torch.randn(4, 3, 8, 8)).pow(2).sum().backward()
        if t == 1:
            assert conv.dense_grad is not None and conv.dense_grad[~conv.weight_masks[2]].any()
        optimizer.step()
    assert conv.dense_grad is None and not conv.capture_dense_grad
    regrown = 0
    for name, m in pruner.masks().items():
        plain = magnitude.masks()[name]
        assert not (m[1] & ~m[2]).any(), name
        assert m[1].sum() == plain[1].sum()  # per layer: as many grown as dropped
        regrown += int((m[1] & ~plain[1]).sum())
    assert regrown > 0


def test_regrow_without_a_captured_gradient_fails() -> None:
    net = model()
    pruner = SyncCP({1: net, 2: net}, SyncCPConfig(regrow=True, t0=0, tf=10, update_every=5))
    pruner.step(0)
    with pytest.raises(RuntimeError, match="dense weight gradient"):
        pruner.step(5)


def test_config_and_layer_validation() -> None:
    for bad in (
        {"pattern": "nm:4:4"},
        {"pattern": "block:0x4"},
        {"pattern": "csr"},
        {"final_sparsity": 1.0},
        {"initial_sparsity": 0.9},
        {"score": "grad"},
        {"threshold": "row"},
        {"t0": 10, "tf": 5},
        {"update_every": 0},
        {"regrow": True, "pattern": "nm:2:4"},
        {"weight_gradient": "none"},
    ):
        with pytest.raises(ValueError):
            SyncCPConfig(**bad)  # type: ignore[arg-type]
    net = model()
    with pytest.raises(ValueError, match=r"layer1\.0\.conv1"):  # Cin = 8 is not a multiple of 16
        SyncCP({1: net, 2: net}, SyncCPConfig(pattern="nm:2:16"))
    with pytest.raises(ValueError, match="branches 1 and 2"):
        SyncCP({1: net}, SyncCPConfig())


def test_transposable_nm_masks_hold_along_both_axes_and_keep_each_blocks_best() -> None:
    """nmt:2:4: at most 2 of every 4 input channels and of every 4 output channels at each
    (kh, kw), branch 2 (3:4) nested over branch 1, the greedy selection close to exact N, and
    each 4 x 4 block keeps its largest weight and never a weight whose row and column both
    hold a larger unkept one with room for it."""
    from accelsim.sparsity import nm_fits

    net = model()
    config = SyncCPConfig(pattern="nmt:2:4", t0=0, tf=20, update_every=10)
    assert config.nm == (2, 4) and config.transposable and config.nm_branch2 == 3
    pruner = SyncCP({1: net, 2: net}, config)
    run(pruner, net, range(20))
    pruner.step(20)
    for name, masks in pruner.masks().items():
        one, two = masks[1].numpy(), masks[2].numpy()
        for mask, cap in ((one, 2), (two, 3)):
            assert nm_fits(mask, cap, 4, axis=1) and nm_fits(mask, cap, 4, axis=0), name
        assert not (one & ~two).any(), name
        assert one.mean() >= 0.9 * 2 / 4 and two.mean() >= 0.9 * 3 / 4, name
    conv = dict(net.named_modules())["layer2.0.conv1"]
    w = conv.weight.detach().abs()
    kept = pruner.masks()["layer2.0.conv1"][1]
    cout, cin, kh, kw = w.shape
    blocks = w.reshape(cout // 4, 4, cin // 4, 4, kh, kw).permute(0, 2, 4, 5, 1, 3).reshape(-1, 16)
    keep = kept.reshape(cout // 4, 4, cin // 4, 4, kh, kw).permute(0, 2, 4, 5, 1, 3).reshape(-1, 16)
    best = blocks.argmax(dim=1)
    assert keep[torch.arange(len(best)), best].all()
    rows = keep.reshape(-1, 4, 4).sum(dim=2)
    cols = keep.reshape(-1, 4, 4).sum(dim=1)
    # greedy is maximal: an unkept weight has a full row or a full column
    for b in range(0, len(keep), 97):
        for position in torch.nonzero(~keep[b]).flatten().tolist():
            r, c = divmod(position, 4)
            assert rows[b, r] == 2 or cols[b, c] == 2


def test_transposable_nm_needs_m_to_divide_the_output_channels() -> None:
    from workloads.gating import BranchConv2d

    net = torch.nn.Sequential(BranchConv2d(8, 4, 3, role="block"))
    SyncCP({1: net, 2: net}, SyncCPConfig(pattern="nm:2:8"))  # plain N:M: Cin only
    with pytest.raises(ValueError, match="transposable N:M group size M=8 must divide Cout=4"):
        SyncCP({1: net, 2: net}, SyncCPConfig(pattern="nmt:2:8"))
