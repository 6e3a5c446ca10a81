"""Evaluation of SSL encoders: weighted k-NN (fast monitor) and a linear probe on frozen
features, and fine-tuning on a labelled fraction of the training set (the seeds' protocol).

Accuracies are fractions in [0, 1] (multiply by 100 for the percentages the papers quote).
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from accelsim.errors import InputError
from workloads.augment import normalize
from workloads.data import ImageDataset
from workloads.ssl import _set_branch

__all__ = ["extract_features", "fine_tune", "knn_accuracy", "linear_probe"]


@torch.no_grad()
def extract_features(
    encoder: nn.Module,
    dataset: ImageDataset,
    batch_size: int = 256,
    device: str | torch.device = "cpu",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Features of every image, in dataset order, through branch 1 in eval mode.

    The encoder must already live on ``device``; batches are moved there.

    Inputs are the un-augmented images normalised with the dataset's mean / std. The encoder
    (an encoder or an :class:`~workloads.ssl.SSLMethod`) is put back in its previous train/eval
    mode afterwards.

    Returns:
        float32 features (N, D) and int64 labels (N,), both on the CPU.
    """
    was_training = encoder.training
    encoder.eval()
    _set_branch(encoder, 1)
    feats = []
    try:
        for images, _ in dataset.batches(batch_size, generator=None, drop_last=False):
            x = normalize(images.to(device), dataset.mean, dataset.std)
            feats.append(encoder(x).flatten(1).float().cpu())
    finally:
        encoder.train(was_training)
    return torch.cat(feats), dataset.labels.clone()


def _check_features(
    train_feats: torch.Tensor,
    train_labels: torch.Tensor,
    test_feats: torch.Tensor,
    test_labels: torch.Tensor,
) -> None:
    if train_feats.dim() != 2 or test_feats.dim() != 2:
        raise ValueError("features must be (N, D) tensors")
    if train_feats.shape[1] != test_feats.shape[1]:
        raise ValueError(
            f"train features have {train_feats.shape[1]} dims, test features {test_feats.shape[1]}"
        )
    if train_labels.shape != (train_feats.shape[0],) or test_labels.shape != (test_feats.shape[0],):
        raise ValueError("labels must be (N,) with one label per feature row")
    if train_feats.shape[0] == 0 or test_feats.shape[0] == 0:
        raise InputError("cannot evaluate with an empty train or test set")


def knn_accuracy(
    train_feats: torch.Tensor,
    train_labels: torch.Tensor,
    test_feats: torch.Tensor,
    test_labels: torch.Tensor,
    k: int = 200,
    temperature: float = 0.1,
    chunk_size: int | None = None,
) -> float:
    """Weighted cosine k-NN accuracy (InstDisc / solo-learn), a fraction in [0, 1].

    Each test feature votes with its ``k`` most cosine-similar training features (k capped at the
    training-set size), each weighted by ``exp(similarity / temperature)``; the class with the
    largest total weight wins (ties: the lowest class index). Test features are processed in
    chunks of ``chunk_size`` rows (default: about 2**24 similarities per chunk).
    """
    _check_features(train_feats, train_labels, test_feats, test_labels)
    if k < 1 or temperature <= 0:
        raise InputError(f"k-NN needs k >= 1 and temperature > 0, got k={k}, T={temperature}")
    train = F.normalize(train_feats.float(), dim=1)
    test = F.normalize(test_feats.float(), dim=1)
    num_classes = int(max(train_labels.max(), test_labels.max())) + 1
    k = min(k, train.shape[0])
    chunk = chunk_size or max(1, 2**24 // train.shape[0])
    correct = 0
    for start in range(0, test.shape[0], chunk):
        sim = test[start : start + chunk] @ train.t()
        top_sim, top_idx = sim.topk(k, dim=1)
        weights = (top_sim / temperature).exp()
        votes = torch.zeros(sim.shape[0], num_classes, dtype=weights.dtype, device=weights.device)
        votes.scatter_add_(1, train_labels.to(top_idx.device)[top_idx], weights)
        pred = votes.argmax(dim=1)
        correct += int((pred == test_labels[start : start + chunk].to(pred.device)).sum())
    return correct / test.shape[0]


def linear_probe(
    train_feats: torch.Tensor,
    train_labels: torch.Tensor,
    test_feats: torch.Tensor,
    test_labels: torch.Tensor,
    epochs: int = 50,
    lr: float = 0.01,
    seed: int = 0,
    batch_size: int | None = 1024,
    weight_decay: float = 0.0,
) -> float:
    """Test accuracy (fraction in [0, 1]) of logistic regression on frozen features.

    Features are standardised with the training set's per-dimension mean / std; the linear layer
    starts at zero and is trained with Adam (``lr``, ``weight_decay``) on the cross-entropy for
    ``epochs`` passes over mini-batches of ``batch_size`` rows, shuffled by a generator seeded
    with ``seed`` (``batch_size=None``: full batch). Deterministic for a given seed on the CPU.
    """
    _check_features(train_feats, train_labels, test_feats, test_labels)
    if epochs < 1 or lr <= 0:
        raise InputError(f"linear probe needs epochs >= 1 and lr > 0, got {epochs}, {lr}")
    x_train = train_feats.float()
    mean = x_train.mean(dim=0, keepdim=True)
    std = x_train.std(dim=0, keepdim=True).clamp_min(1e-6) if x_train.shape[0] > 1 else 1.0
    x_train = (x_train - mean) / std
    x_test = (test_feats.float() - mean) / std
    num_classes = int(max(train_labels.max(), test_labels.max())) + 1
    n, dim = x_train.shape
    device = x_train.device
    weight = torch.zeros(num_classes, dim, device=device, requires_grad=True)
    bias = torch.zeros(num_classes, device=device, requires_grad=True)
    opt = torch.optim.Adam([weight, bias], lr=lr, weight_decay=weight_decay)
    g = torch.Generator().manual_seed(seed)
    bs = n if batch_size is None else max(1, min(batch_size, n))
    y_train = train_labels.long().to(device)
    for _ in range(epochs):
        order = torch.randperm(n, generator=g).to(device)
        for start in range(0, n, bs):
            idx = order[start : start + bs]
            loss = F.cross_entropy(F.linear(x_train[idx], weight, bias), y_train[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    with torch.no_grad():
        pred = F.linear(x_test, weight, bias).argmax(dim=1)
    return float((pred == test_labels.long().to(device)).float().mean())


def fine_tune(
    encoder: nn.Module,
    feature_dim: int,
    train: ImageDataset,
    test: ImageDataset,
    fraction: float = 0.1,
    epochs: int = 5,
    lr: float = 1e-3,
    batch_size: int = 64,
    seed: int = 0,
    device: str | torch.device = "cpu",
) -> tuple[float, int]:
    """``(test accuracy, labelled images)`` of a copy of ``encoder`` fine-tuned with a linear
    classifier on a labelled ``fraction`` of ``train`` (at least as many images as classes).

    The copy keeps the encoder's sparsity as it is (its gates run, pruned weights stay
    pruned) and computes branch 1. The labelled images are a seeded random subset; each epoch
    visits them in a seeded order, horizontally flipped with probability 1/2 and normalised
    with the dataset's mean / std. The classifier starts as torch initialises a linear layer
    (from the seeded generator), its bias at zero; encoder and classifier are trained together
    with Adam (``lr``) on the cross-entropy. BN's running statistics are first re-estimated on
    the labelled images through branch 1 (SSL training averages them over both branches, whose
    weight masks may differ), then kept (eval mode) while BN's scale and shift train with the
    rest: letting the steps move them made the accuracy of one encoder swing by tens of points
    between fine-tuning seeds (0.35 and 0.72, a 100-step ResNet-20 with SGD). The encoder
    itself is not changed; dropout layers, if any, are off (eval mode). Deterministic for a given
    seed on the CPU.
    """
    if not 0.0 < fraction <= 1.0 or epochs < 1 or lr <= 0:
        raise InputError(f"fine-tuning needs 0 < fraction <= 1, epochs >= 1 and lr > 0, got "
                         f"{fraction}, {epochs}, {lr}")
    model = copy.deepcopy(encoder).to(device)
    for module in model.modules():  # a pruner's dense-gradient capture does not carry over
        if getattr(module, "capture_dense_grad", False):
            module.capture_dense_grad = False
    _set_branch(model, 1)
    classes = train.num_classes
    generator = torch.Generator().manual_seed(seed)
    head = nn.Linear(feature_dim, classes)
    nn.init.kaiming_uniform_(head.weight, a=5 ** 0.5, generator=generator)  # torch's default
    nn.init.zeros_(head.bias)
    head = head.to(device)
    count = min(len(train), max(classes, round(fraction * len(train))))
    labelled = train.subset(torch.randperm(len(train), generator=generator)[:count])
    _recalibrate_batchnorm(model, labelled, batch_size, device)
    optimizer = torch.optim.Adam([*model.parameters(), *head.parameters()], lr=lr)
    model.eval()  # BN's statistics stay; every parameter trains
    # Every batch the same size: with torch 2.13 on the CPU, channels_last inputs and two or
    # more threads, a backward pass at a new, smaller batch size corrupts the heap (seen
    # here: 6 batches of 8, then one of 3). The rest of the labelled images change with the
    # seeded order from epoch to epoch.
    size = min(batch_size, count)
    for _ in range(epochs):
        for images, labels in labelled.batches(size, generator=generator, drop_last=True):
            x = normalize(images.to(device), labelled.mean, labelled.std)
            flip = torch.rand(x.shape[0], generator=generator) < 0.5
            x = torch.where(flip.to(device)[:, None, None, None], x.flip(3), x)
            loss = F.cross_entropy(head(model(x).flatten(1)), labels.to(device))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    correct = 0
    with torch.no_grad():
        for images, labels in test.batches(256, generator=None, drop_last=False):
            x = normalize(images.to(device), test.mean, test.std)
            correct += int((head(model(x).flatten(1)).argmax(1).cpu() == labels).sum())
    return correct / len(test), count


@torch.no_grad()
def _recalibrate_batchnorm(model: nn.Module, dataset: ImageDataset, batch_size: int,
                           device: str | torch.device) -> None:
    """Re-estimate every BN's running statistics as the average over ``dataset`` of the
    encoder as it is (branch 1's masks): SSL training averages them over both branches,
    whose weight masks may differ."""
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return
    saved = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # a cumulative average
    model.train()
    size = min(batch_size, len(dataset))  # whole batches: never a batch of one image
    for images, _ in dataset.batches(size, generator=None, drop_last=True):
        model(normalize(images.to(device), dataset.mean, dataset.std))
    for m, momentum in zip(norms, saved, strict=True):
        m.momentum = momentum
