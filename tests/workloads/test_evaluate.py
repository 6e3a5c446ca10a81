"""Frozen-feature evaluation: feature extraction, weighted k-NN, linear probe."""

from __future__ import annotations

import math

import pytest

torch = pytest.importorskip("torch")

from torch import nn  # noqa: E402

from accelsim.errors import InputError  # noqa: E402
from workloads import ssl  # noqa: E402
from workloads.augment import normalize  # noqa: E402
from workloads.data import synthetic_dataset  # noqa: E402
from workloads.evaluate import extract_features, knn_accuracy, linear_probe  # noqa: E402


def separable(n: int, classes: int = 5, dim: int = 16, seed: int = 0):
    """Features = one-hot class centre * 3 + N(0, 0.3) noise: linearly and k-NN separable."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % classes
    feats = 3.0 * nn.functional.one_hot(labels, dim).float()
    return feats + 0.3 * torch.randn(n, dim, generator=g), labels


def random_features(n: int, classes: int = 10, dim: int = 32, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, dim, generator=g), torch.randint(0, classes, (n,), generator=g)


def test_separable_features_are_perfect() -> None:
    xtr, ytr = separable(500)
    xte, yte = separable(200, seed=1)
    assert knn_accuracy(xtr, ytr, xte, yte, k=20) == 1.0
    assert linear_probe(xtr, ytr, xte, yte, epochs=20, lr=0.05, batch_size=128) == 1.0


def test_random_features_are_at_chance() -> None:
    xtr, ytr = random_features(1000)
    xte, yte = random_features(1000, seed=1)
    assert abs(knn_accuracy(xtr, ytr, xte, yte, k=50) - 0.1) < 0.04
    assert abs(linear_probe(xtr, ytr, xte, yte, epochs=10) - 0.1) < 0.04


def test_knn_hand_computed_and_chunked() -> None:
    train = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9], [0.7, 0.7]])
    labels = torch.tensor([0, 0, 1, 1, 2])
    test = torch.tensor([[1.0, 0.05], [0.05, 1.0], [0.6, 0.62]])
    expected = torch.tensor([0, 1, 2])
    assert knn_accuracy(train, labels, test, expected, k=1) == 1.0
    # with k = all and a large temperature the vote is nearly unweighted: class 0 and 1 (two
    # neighbours each) beat class 2 for the third test point
    acc = knn_accuracy(train, labels, test, expected, k=5, temperature=100.0)
    assert math.isclose(acc, 2 / 3)
    xtr, ytr = random_features(300)
    xte, yte = random_features(97, seed=2)
    assert knn_accuracy(xtr, ytr, xte, yte, chunk_size=10) == knn_accuracy(xtr, ytr, xte, yte)


def test_linear_probe_is_deterministic() -> None:
    xtr, ytr = random_features(400, dim=8)
    xte, yte = random_features(200, dim=8, seed=1)
    runs = [linear_probe(xtr, ytr, xte, yte, epochs=5, seed=s) for s in (4, 4, 4)]
    assert runs[0] == runs[1] == runs[2]
    full = linear_probe(xtr, ytr, xte, yte, epochs=5, batch_size=None)
    assert 0.0 <= full <= 1.0


def test_bad_inputs() -> None:
    x, y = separable(10)
    with pytest.raises(ValueError, match="dims"):
        knn_accuracy(x, y, x[:, :3], y)
    with pytest.raises(InputError, match="empty"):
        linear_probe(x, y, x[:0], y[:0])
    with pytest.raises(InputError, match="k >= 1"):
        knn_accuracy(x, y, x, y, k=0)


class Probe(nn.Module):
    """Mean of each channel after a conv, and a record of mode and branch per forward."""

    def __init__(self) -> None:
        super().__init__()
        self.branch = 0
        self.calls: list[tuple[bool, int]] = []
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls.append((self.training, self.branch))
        return self.bn(self.conv(x)).mean(dim=(2, 3))


def test_extract_features(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ssl, "_gating_checked", True)
    monkeypatch.setattr(ssl, "_gating_set_branch", None)
    ds = synthetic_dataset(n=37, num_classes=3, size=8)
    enc = Probe()
    enc.branch = 2
    feats, labels = extract_features(enc, ds, batch_size=16)
    assert feats.shape == (37, 4) and feats.dtype == torch.float32
    assert torch.equal(labels, ds.labels)
    assert enc.calls == [(False, 1)] * 3 and enc.training  # eval inside, mode restored
    with torch.no_grad():
        enc.eval()
        expected = enc(normalize(ds.images, ds.mean, ds.std))
    torch.testing.assert_close(feats, expected)
    # an SSL method evaluates through its branch-1 encoder
    method = ssl.BYOL(Probe(), 4)
    feats_m, _ = extract_features(method, ds, batch_size=64)
    assert feats_m.shape == (37, 4) and method.encoder.calls == [(False, 1)]
    assert method.target_encoder.calls == []


def test_fine_tuning_learns_leaves_the_encoder_alone_and_is_deterministic() -> None:
    from workloads.evaluate import fine_tune
    from workloads.gating import GatingConfig, gated_convs
    from workloads.models import build_backbone

    train = synthetic_dataset(n=96, num_classes=4, size=16, channels=1, seed=3)
    test = synthetic_dataset(split="test", n=64, num_classes=4, size=16, channels=1, seed=3)
    torch.manual_seed(0)
    encoder = build_backbone("resnet20", 0.5, 1, GatingConfig(kind="cdg", groups=2))
    before = {k: v.clone() for k, v in encoder.state_dict().items()}
    accuracy, count = fine_tune(encoder, encoder.feature_dim, train, test, fraction=0.5,
                                epochs=10, lr=3e-3, batch_size=16, seed=1)
    assert count == 48
    assert accuracy > 0.5  # chance is 0.25: the labels were learnt through the gated encoder
    assert all(torch.equal(v, encoder.state_dict()[k]) for k, v in before.items())
    again, _ = fine_tune(encoder, encoder.feature_dim, train, test, fraction=0.5, epochs=10,
                         lr=3e-3, batch_size=16, seed=1)
    assert again == accuracy
    assert all(not conv.last_gate for _, conv in gated_convs(encoder))  # ran on a copy
    with pytest.raises(InputError, match="fraction"):
        fine_tune(encoder, encoder.feature_dim, train, test, fraction=0.0)


def test_fine_tuning_runs_whole_batches_only() -> None:
    """51 labelled images in batches of 8 through a channels_last encoder on two threads:
    a last batch of 3 crashed torch 2.13's CPU backward (heap corruption); fine-tuning now
    runs whole batches only, and finishes."""
    from workloads.evaluate import fine_tune
    from workloads.models import build_backbone

    train = synthetic_dataset(n=102, num_classes=4, size=16, channels=3, seed=3)
    test = synthetic_dataset(split="test", n=16, num_classes=4, size=16, channels=3, seed=3)
    torch.manual_seed(0)
    encoder = build_backbone("resnet20", 0.5, 3).to(memory_format=torch.channels_last)
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        accuracy, count = fine_tune(encoder, encoder.feature_dim, train, test, fraction=0.5,
                                    epochs=1, batch_size=8)
    finally:
        torch.set_num_threads(threads)
    assert count == 51 and 0 <= accuracy <= 1
