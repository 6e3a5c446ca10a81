"""Batched SSL augmentations: shapes, determinism, each op against a readable reference."""

from __future__ import annotations

import math

import pytest

torch = pytest.importorskip("torch")

from accelsim.errors import InputError  # noqa: E402
from workloads.augment import (  # noqa: E402
    SSLAugment,
    adjust_hue,
    normalize,
    random_resized_crop_boxes,
    rgb_to_gray,
)
from workloads.data import synthetic_dataset  # noqa: E402

MEAN3, STD3 = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)




def images(n: int = 16, c: int = 3, size: int = 12, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, c, size, size), generator=g, dtype=torch.uint8)


def denorm(x: torch.Tensor, mean, std) -> torch.Tensor:
    return x * torch.tensor(std).view(1, -1, 1, 1) + torch.tensor(mean).view(1, -1, 1, 1)


def test_view_shape_dtype_layout() -> None:
    ds = synthetic_dataset(n=32, size=16)
    aug = SSLAugment.for_dataset(ds, size=8)
    v = aug(ds.images, torch.Generator().manual_seed(0))
    assert v.shape == (32, 3, 8, 8) and v.dtype == torch.float32
    assert v.is_contiguous(memory_format=torch.channels_last)
    assert torch.isfinite(v).all()


def test_same_seed_same_views_bit_for_bit() -> None:
    x = images(32)
    aug = SSLAugment(size=12, mean=MEAN3, std=STD3)
    g1, g2 = torch.Generator().manual_seed(11), torch.Generator().manual_seed(11)
    a1, a2 = aug(x, g1), aug(x, g1)
    b1, b2 = aug(x, g2), aug(x, g2)
    assert torch.equal(a1, b1) and torch.equal(a2, b2)
    assert not torch.equal(a1, a2)  # the two views of a pair differ
    assert not torch.equal(a1, aug(x, torch.Generator().manual_seed(12)))


def test_identity_settings_reproduce_normalisation() -> None:
    x = images(8)
    for flip_p, expected in ((0.0, x), (1.0, x.flip(3))):
        aug = SSLAugment(
            size=12,
            mean=MEAN3,
            std=STD3,
            scale=(1.0, 1.0),
            ratio=(1.0, 1.0),
            jitter_p=0.0,
            gray_p=0.0,
            flip_p=flip_p,
        )
        v = aug(x, torch.Generator().manual_seed(0))
        torch.testing.assert_close(v, normalize(expected, MEAN3, STD3), atol=1e-5, rtol=0)


def test_crop_boxes_follow_torchvision_rules() -> None:
    g = torch.Generator().manual_seed(0)
    boxes = random_resized_crop_boxes(2000, 32, 24, (0.08, 1.0), (3 / 4, 4 / 3), g)
    x0, y0, w, h = boxes.unbind(1)
    assert (x0 >= 0).all() and (y0 >= 0).all() and (x0 + w <= 24).all() and (y0 + h <= 32).all()
    assert torch.equal(boxes, boxes.round())
    area = w * h / (32 * 24)
    assert area.min() > 0.05 and area.max() <= 1.0
    ratio = w / h
    # rounding to whole pixels can push the aspect ratio slightly outside [3/4, 4/3]
    assert ratio.min() > 0.6 and ratio.max() < 1.6
    # impossible draws fall back to the centre crop with the ratio clamped
    fb = random_resized_crop_boxes(3, 10, 40, (1.0, 1.0), (1.0, 2.0), g)
    assert fb.tolist() == [[10.0, 0.0, 20.0, 10.0]] * 3


def test_grayscale_always() -> None:
    x = images(8)
    aug = SSLAugment(size=12, mean=MEAN3, std=STD3, jitter_p=0.0, gray_p=1.0)
    v = denorm(aug(x, torch.Generator().manual_seed(0)), MEAN3, STD3)
    torch.testing.assert_close(v[:, 0], v[:, 1], atol=1e-5, rtol=0)
    torch.testing.assert_close(v[:, 1], v[:, 2], atol=1e-5, rtol=0)


def test_one_channel_images() -> None:
    x = images(8, c=1)
    aug = SSLAugment(size=10, mean=(0.3,), std=(0.3,), jitter_p=1.0, gray_p=1.0)
    v = aug(x, torch.Generator().manual_seed(0))
    assert v.shape == (8, 1, 10, 10)
    v01 = denorm(v, (0.3,), (0.3,))
    assert v01.min() >= -1e-5 and v01.max() <= 1 + 1e-5
    with pytest.raises(ValueError, match="channels"):
        aug(images(2, c=3), torch.Generator())


def _hue_reference(x: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """Per pixel with colorsys (slow, readable)."""
    import colorsys

    out = torch.empty_like(x)
    for n in range(x.shape[0]):
        for i in range(x.shape[2]):
            for j in range(x.shape[3]):
                h, s, v = colorsys.rgb_to_hsv(*x[n, :, i, j].tolist())
                out[n, :, i, j] = torch.tensor(
                    colorsys.hsv_to_rgb((h + float(shift[n])) % 1.0, s, v)
                )
    return out


def test_hue_matches_colorsys() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.rand(4, 3, 5, 5, generator=g)
    x[0, :, 0, 0] = 0.5  # gray pixel: hue undefined, must stay gray
    x[1, :, 0, 0] = torch.tensor([0.8, 0.8, 0.1])  # tie between red and green
    shift = torch.tensor([0.1, -0.1, 0.05, 0.5])
    torch.testing.assert_close(adjust_hue(x, shift), _hue_reference(x, shift), atol=1e-5, rtol=0)


def test_color_jitter_ranges() -> None:
    # brightness only: output / input ratio is one factor in [0.6, 1.4] per sample
    x = torch.full((64, 3, 4, 4), 100, dtype=torch.uint8)
    aug = SSLAugment(
        size=4,
        mean=(0.0,) * 3,
        std=(1.0,) * 3,
        scale=(1.0, 1.0),
        ratio=(1.0, 1.0),
        jitter=(0.4, 0.0, 0.0, 0.0),
        jitter_p=1.0,
        gray_p=0.0,
        flip_p=0.0,
    )
    v = aug(x, torch.Generator().manual_seed(0))
    factor = v[:, 0, 0, 0] / (100 / 255)
    assert factor.min() >= 0.6 - 1e-5 and factor.max() <= 1.4 + 1e-5
    assert factor.std() > 0.1
    assert torch.allclose(v, v[:, :1, :1, :1].expand_as(v))


def test_gray_weights() -> None:
    x = torch.tensor([1.0, 0.0, 0.0]).view(1, 3, 1, 1)
    assert math.isclose(float(rgb_to_gray(x)), 0.299, rel_tol=1e-6)


def test_bad_parameters() -> None:
    with pytest.raises(InputError, match="scale"):
        SSLAugment(size=8, mean=MEAN3, std=STD3, scale=(0.5, 0.1))
    with pytest.raises(InputError, match="flip_p"):
        SSLAugment(size=8, mean=MEAN3, std=STD3, flip_p=2.0)
