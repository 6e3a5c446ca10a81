"""SSL methods: pure losses against hand computations, EMA, MoCo queue, training, registry."""

from __future__ import annotations

import math

import pytest

torch = pytest.importorskip("torch")

from torch import nn  # noqa: E402

from accelsim.errors import InputError  # noqa: E402
from workloads import ssl  # noqa: E402
from workloads.augment import SSLAugment  # noqa: E402
from workloads.data import synthetic_dataset  # noqa: E402
from workloads.ssl import (  # noqa: E402
    BYOL,
    METHODS,
    MoCoV2,
    SimCLR,
    build_method,
    byol_loss,
    infonce,
    momentum_tau,
    nt_xent,
)

FEAT = 16




class BranchProbe(nn.Module):
    """Records the branch it is told before each forward (the gating modules' contract)."""

    def __init__(self) -> None:
        super().__init__()
        self.branch = 0
        self.seen: list[int] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append(self.branch)
        return x


def tiny_encoder(channels: int = 3) -> nn.Module:
    """A 2-conv net: (N, C, H, W) -> (N, 16)."""
    return nn.Sequential(
        BranchProbe(),
        nn.Conv2d(channels, 8, 3, padding=1),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.Conv2d(8, FEAT, 3, stride=2, padding=1),
        nn.BatchNorm2d(FEAT),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
    )


@pytest.fixture()
def no_gating_hook(monkeypatch: pytest.MonkeyPatch) -> None:
    """Use the attribute fallback of _set_branch whatever workloads.gating provides."""
    monkeypatch.setattr(ssl, "_gating_checked", True)
    monkeypatch.setattr(ssl, "_gating_set_branch", None)


# ----------------------------------------------------------------------------------- losses


def test_nt_xent_hand_computed() -> None:
    z = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    # each anchor: positive cos 1, two negatives cos 0 -> -log(e / (e + 2))
    expected = math.log(math.e + 2) - 1
    assert math.isclose(float(nt_xent(z, z.clone(), temperature=1.0)), expected, rel_tol=1e-6)
    # scale invariance (embeddings are normalised) and temperature
    t = 0.5
    expected_t = -math.log(math.exp(1 / t) / (math.exp(1 / t) + 2))
    assert math.isclose(float(nt_xent(3 * z, z, temperature=t)), expected_t, rel_tol=1e-6)


def test_byol_loss_hand_computed() -> None:
    p = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    z = torch.tensor([[0.0, 2.0], [1.0, 1.0]])
    expected = ((2 - 0) + (2 - 2 / math.sqrt(2))) / 2
    assert math.isclose(float(byol_loss(p, z)), expected, rel_tol=1e-6)
    assert float(byol_loss(z, 5 * z)) == pytest.approx(0.0, abs=1e-6)


def test_infonce_hand_computed() -> None:
    q = torch.tensor([[1.0, 0.0]])
    k = torch.tensor([[2.0, 0.0]])
    queue = torch.tensor([[0.0, 1.0], [-1.0, 0.0]])
    expected = -math.log(math.e / (math.e + 1 + math.exp(-1)))
    assert math.isclose(float(infonce(q, k, queue, temperature=1.0)), expected, rel_tol=1e-6)


def test_momentum_schedule() -> None:
    assert momentum_tau(0, 100, 0.99, 1.0) == pytest.approx(0.99)
    assert momentum_tau(50, 100, 0.99, 1.0) == pytest.approx(0.995)
    assert momentum_tau(100, 100, 0.99, 1.0) == pytest.approx(1.0)
    assert momentum_tau(7, 100, 0.99, 0.99) == pytest.approx(0.99)


# ------------------------------------------------------------------------------- structure


def test_encoders_and_branches(no_gating_hook: None) -> None:
    x = torch.rand(4, 3, 8, 8)
    simclr = SimCLR(tiny_encoder(), FEAT)
    assert simclr.encoders()[1] is simclr.encoders()[2] is simclr.encoder
    assert simclr.momentum_pairs() == []
    simclr.training_step(x, x, 0)
    assert simclr.encoder[0].seen == [1, 2]

    byol = BYOL(tiny_encoder(), FEAT, ssl.BYOLConfig(symmetric=True))
    assert byol.encoders()[2] is byol.target_encoder is not byol.encoder
    byol.training_step(x, x, 0)
    assert byol.encoder[0].seen == [1, 1] and byol.target_encoder[0].seen == [2, 2]
    assert all(not p.requires_grad for p in byol.target_encoder.parameters())
    trainable = {id(p) for p in byol.trainable_parameters()}
    assert all(id(p) not in trainable for p in byol.target_projector.parameters())
    assert {id(p) for p in byol.predictor.parameters()} <= trainable


def test_target_branch_has_no_grad() -> None:
    x = torch.rand(4, 3, 8, 8)
    m = MoCoV2(tiny_encoder(), FEAT, ssl.MoCoV2Config(queue_size=8))
    loss, logs = m.training_step(x, x.flip(3), 0)
    loss.backward()
    assert all(p.grad is None for p in m.target_encoder.parameters())
    assert all(p.grad is not None for p in m.encoder.parameters())
    assert set(logs) == {"loss", "tau"}


def test_ema_update_math() -> None:
    m = BYOL(tiny_encoder(), FEAT)
    with torch.no_grad():
        for p in m.encoder.parameters():
            p.fill_(1.0)
        for p in m.target_encoder.parameters():
            p.fill_(0.0)
        before = [p.clone() for p in m.target_projector.parameters()]
        for p in m.projector.parameters():
            p.add_(1.0)
    m.on_step_end(0, 10)  # tau = tau_base = 0.99
    assert m.tau == pytest.approx(0.99)
    for p in m.target_encoder.parameters():
        torch.testing.assert_close(p, torch.full_like(p, 0.01))
    for b, p, o in zip(
        before, m.target_projector.parameters(), m.projector.parameters(), strict=True
    ):
        torch.testing.assert_close(p, 0.99 * b + 0.01 * o)
    m.on_step_end(10, 10)  # tau = 1: target frozen
    for p in m.target_encoder.parameters():
        torch.testing.assert_close(p, torch.full_like(p, 0.01))


def test_moco_queue_ring_buffer() -> None:
    m = MoCoV2(tiny_encoder(), FEAT, ssl.MoCoV2Config(queue_size=8, proj_output_dim=4))
    keys = torch.eye(4)[:3] * 2
    m.enqueue(keys)
    assert int(m.queue_ptr) == 3
    torch.testing.assert_close(m.queue[:3], torch.eye(4)[:3])
    more = torch.eye(4)[[3, 2, 1, 0, 3, 2]]
    m.enqueue(more)  # rows 3..7 then wraps to row 0
    assert int(m.queue_ptr) == 1
    torch.testing.assert_close(m.queue[3:8], more[:5])
    torch.testing.assert_close(m.queue[0], more[5])
    x = torch.rand(5, 3, 8, 8)
    m.training_step(x, x, 0)
    assert int(m.queue_ptr) == 6
    assert torch.allclose(m.queue.norm(dim=1), torch.ones(8))


# --------------------------------------------------------------------------------- training


def train(name: str, steps: int = 20, seed: int = 0, **overrides) -> list[float]:
    torch.manual_seed(seed)
    ds = synthetic_dataset(n=256, num_classes=4, size=16, seed=0)
    method = build_method(
        name, tiny_encoder(), FEAT, proj_hidden_dim=32, proj_output_dim=16, **overrides
    )
    aug = SSLAugment.for_dataset(ds)
    opt = torch.optim.SGD(method.trainable_parameters(), lr=0.1, momentum=0.9)
    g = torch.Generator().manual_seed(seed)
    losses: list[float] = []
    while len(losses) < steps:
        for x, _ in ds.batches(64, g):
            step = len(losses)
            loss, logs = method.training_step(aug(x, g), aug(x, g), step)
            opt.zero_grad()
            loss.backward()
            opt.step()
            method.on_step_end(step, steps)
            losses.append(logs["loss"])
            if len(losses) == steps:
                break
    return losses


def mean(xs: list[float]) -> float:
    return sum(xs) / len(xs)


@pytest.mark.parametrize(
    ("name", "overrides", "first", "steps"),
    [
        ("simclr", {}, slice(0, 3), 20),
        ("byol", {}, slice(0, 3), 20),
        # MoCo's loss rises while the random initial queue fills with real keys: compare after
        ("moco", {"queue_size": 64}, slice(1, 4), 30),
    ],
)
def test_loss_goes_down(name: str, overrides: dict, first: slice, steps: int) -> None:
    losses = train(name, steps=steps, **overrides)
    assert all(math.isfinite(v) for v in losses)
    assert mean(losses[-5:]) < mean(losses[first]) - 0.1, losses


def test_training_is_deterministic() -> None:
    assert train("simclr", steps=4, seed=3) == train("simclr", steps=4, seed=3)
    assert train("byol", steps=3, seed=3) == train("byol", steps=3, seed=3)


# --------------------------------------------------------------------------------- registry


def test_registry_and_factory() -> None:
    assert set(METHODS) == {"simclr", "byol", "moco"}
    m = build_method("MoCo", tiny_encoder(), FEAT, queue_size=32, temperature=0.1)
    assert isinstance(m, MoCoV2) and m.queue.shape == (32, 128) and m.config.temperature == 0.1
    with pytest.raises(InputError, match="did you mean 'simclr'"):
        build_method("simclar", tiny_encoder(), FEAT)
    with pytest.raises(InputError, match="did you mean 'queue_size'"):
        build_method("moco", tiny_encoder(), FEAT, queue_sise=8)
    with pytest.raises(InputError, match="unknown simclr option 'queue_size'"):
        build_method("simclr", tiny_encoder(), FEAT, queue_size=8)
    with pytest.raises(InputError, match="temperature: must be > 0"):
        build_method("simclr", tiny_encoder(), FEAT, temperature=0)
    with pytest.raises(InputError, match="proj_hidden_dim: expected an integer"):
        build_method("byol", tiny_encoder(), FEAT, proj_hidden_dim="big")
    with pytest.raises(ValueError, match="feature_dim"):
        SimCLR(tiny_encoder(), FEAT + 1).training_step(
            torch.rand(2, 3, 8, 8), torch.rand(2, 3, 8, 8), 0
        )
