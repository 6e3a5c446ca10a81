"""Batched SSL augmentations in plain torch, every random number drawn from a ``torch.Generator``.

The CIFAR-style SimCLR pipeline (ALGORITHMS.md section 5), applied to a whole uint8 batch at once
with per-sample random parameters:

1. RandomResizedCrop (scale 0.08-1, aspect ratio 3/4-4/3, torchvision's 10-try sampling with a
   centre-crop fallback) to ``size`` x ``size``, bilinear, and horizontal flip (p = 0.5), both
   folded into one ``grid_sample`` call;
2. ColorJitter(brightness 0.4, contrast 0.4, saturation 0.4, hue 0.1) with p = 0.8, the four
   operations in a random order per sample as in torchvision; 1-channel images get brightness and
   contrast only;
3. RandomGrayscale p = 0.2 (3-channel images only);
4. normalisation with the dataset's per-channel mean / std.

kornia's random augmentations draw from the global RNG, so the ops are written here instead: the
same generator state gives bit-identical views. Crops do not anti-alias when they shrink an image
(at CIFAR resolution crops only enlarge).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from accelsim.errors import InputError
from workloads.data import ImageDataset

__all__ = ["SSLAugment", "adjust_hue", "normalize", "random_resized_crop_boxes", "rgb_to_gray"]

_GRAY_WEIGHTS = (0.299, 0.587, 0.114)  # ITU-R 601-2 luma, as torchvision's rgb_to_grayscale


def normalize(images: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """uint8 (N, C, H, W) -> float32 (N, C, H, W) channels_last, ``(x / 255 - mean) / std``."""
    x = images.to(torch.float32).div_(255.0)
    m = torch.tensor(mean, dtype=torch.float32, device=x.device).view(1, -1, 1, 1)
    s = torch.tensor(std, dtype=torch.float32, device=x.device).view(1, -1, 1, 1)
    return x.sub_(m).div_(s).contiguous(memory_format=torch.channels_last)


def rgb_to_gray(x: torch.Tensor) -> torch.Tensor:
    """Luma of float RGB images (N, 3, H, W) -> (N, 1, H, W)."""
    r, g, b = x.unbind(dim=1)
    w0, w1, w2 = _GRAY_WEIGHTS
    return (w0 * r + w1 * g + w2 * b).unsqueeze(1)


def adjust_hue(x: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """Rotate the hue of float RGB images in [0, 1] (N, 3, H, W) by ``shift`` (N,) turns.

    HSV hue rotation with saturation and value kept, computed without a full HSV round trip:
    channel n of the result is ``v - (v - min) * clamp(min(k, 4 - k), 0, 1)`` with
    ``k = (n' + 6 h) mod 6``, n' = 5, 3, 1 for R, G, B.
    """
    maxc = x.amax(dim=1)
    minc = x.amin(dim=1)
    chroma = maxc - minc
    safe = torch.where(chroma > 0, chroma, torch.ones_like(chroma))
    r, g, b = x.unbind(dim=1)
    # hue in sextants [0, 6), as torchvision's _rgb2hsv (red wins ties, then green; the hue is
    # continuous across ties anyway)
    hue6 = torch.where(
        r == maxc,
        (g - b) / safe,
        torch.where(g == maxc, 2.0 + (b - r) / safe, 4.0 + (r - g) / safe),
    )
    hue6 = torch.remainder(hue6 + 6.0 * shift.view(-1, 1, 1), 6.0)
    offsets = torch.tensor([5.0, 3.0, 1.0], dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    k = torch.remainder(offsets + hue6.unsqueeze(1), 6.0)
    ramp = torch.minimum(k, 4.0 - k).clamp_(0.0, 1.0)
    return maxc.unsqueeze(1) - chroma.unsqueeze(1) * ramp


def random_resized_crop_boxes(
    n: int,
    height: int,
    width: int,
    scale: tuple[float, float],
    ratio: tuple[float, float],
    generator: torch.Generator,
    attempts: int = 10,
) -> torch.Tensor:
    """Sample crop boxes as torchvision's RandomResizedCrop.get_params, for ``n`` samples at once.

    Returns float32 (n, 4) boxes ``(x0, y0, w, h)`` in pixels (integer-valued). Each sample takes
    its first of ``attempts`` draws that fits inside the image, else the centre crop with the
    aspect ratio clamped to ``ratio``.
    """
    area = float(height * width)
    u = torch.rand(n, attempts, 4, generator=generator)
    target_area = area * (scale[0] + (scale[1] - scale[0]) * u[..., 0])
    log_lo, log_hi = math.log(ratio[0]), math.log(ratio[1])
    aspect = torch.exp(log_lo + (log_hi - log_lo) * u[..., 1])
    w = torch.sqrt(target_area * aspect).round()
    h = torch.sqrt(target_area / aspect).round()
    ok = (w > 0) & (h > 0) & (w <= width) & (h <= height)
    x0 = torch.floor(u[..., 2] * (width - w + 1))
    y0 = torch.floor(u[..., 3] * (height - h + 1))
    first = torch.where(ok.any(dim=1), ok.to(torch.int8).argmax(dim=1), -1)
    # fallback: centre crop
    in_ratio = width / height
    if in_ratio < ratio[0]:
        fw, fh = width, round(width / ratio[0])
    elif in_ratio > ratio[1]:
        fw, fh = round(height * ratio[1]), height
    else:
        fw, fh = width, height
    fallback = torch.tensor(
        [(width - fw) // 2, (height - fh) // 2, fw, fh], dtype=torch.float32
    ).expand(n, 4)
    idx = first.clamp_min(0).view(n, 1)
    picked = torch.stack([t.gather(1, idx).squeeze(1) for t in (x0, y0, w, h)], dim=1)
    return torch.where((first >= 0).view(n, 1), picked, fallback)


@dataclass
class SSLAugment:
    """One augmented view of a uint8 batch; call it twice (same generator) for a pair.

    Args:
        size: output side in pixels.
        mean, std: per-channel normalisation constants in [0, 1] units (length = channels).
        scale, ratio: RandomResizedCrop area fraction and aspect-ratio ranges.
        jitter: ColorJitter (brightness, contrast, saturation, hue) strengths.
        jitter_p, gray_p, flip_p: probabilities of colour jitter, grayscale and horizontal flip.
    """

    size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    scale: tuple[float, float] = (0.08, 1.0)
    ratio: tuple[float, float] = (3 / 4, 4 / 3)
    jitter: tuple[float, float, float, float] = (0.4, 0.4, 0.4, 0.1)
    jitter_p: float = 0.8
    gray_p: float = 0.2
    flip_p: float = 0.5

    def __post_init__(self) -> None:
        if self.size < 1:
            raise InputError(f"crop size must be >= 1, got {self.size}", field="size")
        if len(self.mean) != len(self.std) or len(self.mean) not in (1, 3):
            raise InputError(
                f"mean and std need 1 or 3 values each, got {len(self.mean)} and {len(self.std)}"
            )
        if not 0 < self.scale[0] <= self.scale[1] <= 1:
            raise InputError(f"scale must satisfy 0 < lo <= hi <= 1, got {self.scale}")
        if not 0 < self.ratio[0] <= self.ratio[1]:
            raise InputError(f"ratio must satisfy 0 < lo <= hi, got {self.ratio}")
        if self.jitter[3] > 0.5 or min(self.jitter) < 0:
            raise InputError(f"jitter strengths must be >= 0 and hue <= 0.5, got {self.jitter}")
        for name in ("jitter_p", "gray_p", "flip_p"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise InputError(f"{name} must be in [0, 1]", field=name)
        self._mean = torch.tensor(self.mean, dtype=torch.float32).view(1, -1, 1, 1)
        self._std = torch.tensor(self.std, dtype=torch.float32).view(1, -1, 1, 1)

    @classmethod
    def for_dataset(
        cls, dataset: ImageDataset, size: int | None = None, **kwargs: Any
    ) -> SSLAugment:
        """The default pipeline for ``dataset`` (output size = its image height unless given)."""
        return cls(
            size=dataset.image_size[0] if size is None else size,
            mean=dataset.mean,
            std=dataset.std,
            **kwargs,
        )

    def __call__(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """uint8 (N, C, H, W) -> float32 (N, C, size, size), channels_last, normalised.

        The generator must live on the CPU; the images may live on any device.
        """
        if images.dtype != torch.uint8 or images.dim() != 4:
            raise ValueError(
                f"expected uint8 (N, C, H, W) images, got {images.dtype} {tuple(images.shape)}"
            )
        n, c, height, width = images.shape
        if c != len(self.mean):
            raise ValueError(f"images have {c} channels, mean/std have {len(self.mean)}")
        device = images.device
        # every random number is drawn here, in a fixed order and shape
        boxes = random_resized_crop_boxes(n, height, width, self.scale, self.ratio, generator)
        flip = torch.rand(n, generator=generator) < self.flip_p
        apply_jitter = torch.rand(n, generator=generator) < self.jitter_p
        factors = torch.rand(n, 4, generator=generator)
        order = torch.rand(n, 4, generator=generator).argsort(dim=1)
        gray = torch.rand(n, generator=generator) < self.gray_p

        x = self._crop_flip(images.to(torch.float32).div_(255.0), boxes, flip)
        b, co, s, h = self.jitter
        lo_hi = torch.tensor([[1 - b, 1 + b], [1 - co, 1 + co], [1 - s, 1 + s], [-h, h]])
        lo_hi[:3, 0].clamp_(min=0.0)
        params = lo_hi[:, 0] + (lo_hi[:, 1] - lo_hi[:, 0]) * factors  # (n, 4)
        ops = (0, 1, 2, 3) if c == 3 else (0, 1)
        strengths = (b, co, s, h)
        for k in range(4):
            for op in ops:
                if strengths[op] == 0:
                    continue
                sel = torch.nonzero(apply_jitter & (order[:, k] == op)).squeeze(1)
                if sel.numel() == 0:
                    continue
                p = params[sel, op].to(device)
                sel = sel.to(device)
                x[sel] = _color_op(x[sel], op, p)
        if c == 3 and self.gray_p > 0:
            g = gray.to(device).view(n, 1, 1, 1)
            x = torch.where(g, rgb_to_gray(x).expand_as(x), x)
        x = (x - self._mean.to(device)) / self._std.to(device)
        return x.contiguous(memory_format=torch.channels_last)

    def _crop_flip(self, x: torch.Tensor, boxes: torch.Tensor, flip: torch.Tensor) -> torch.Tensor:
        """Crop ``boxes`` (x0, y0, w, h in pixels) out of ``x`` to size x size, mirrored if flip."""
        n, _, height, width = x.shape
        x0, y0, w, h = boxes.unbind(dim=1)
        sx = w / width
        sy = h / height
        tx = (2 * x0 + w) / width - 1
        ty = (2 * y0 + h) / height - 1
        sx = torch.where(flip, -sx, sx)
        # the crop is axis-aligned, so the sampling grid is separable: no affine_grid bmm
        u = (2.0 * torch.arange(self.size, dtype=torch.float32) + 1.0) / self.size - 1.0
        gx = (sx.view(n, 1) * u + tx.view(n, 1)).to(x.device)  # (n, size) x coordinates
        gy = (sy.view(n, 1) * u + ty.view(n, 1)).to(x.device)  # (n, size) y coordinates
        s = self.size
        grid = torch.stack([gx.view(n, 1, s).expand(n, s, s), gy.view(n, s, 1).expand(n, s, s)], -1)
        out = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
        return out.clamp_(0.0, 1.0)


def _blend(x: torch.Tensor, other: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """``clamp(factor * x + (1 - factor) * other, 0, 1)`` with one factor per sample."""
    f = factor.view(-1, 1, 1, 1)
    return (f * x + (1.0 - f) * other).clamp_(0.0, 1.0)


def _color_op(x: torch.Tensor, op: int, p: torch.Tensor) -> torch.Tensor:
    """Apply colour op ``op`` (0 brightness, 1 contrast, 2 saturation, 3 hue) with per-sample p."""
    if op == 0:
        return (x * p.view(-1, 1, 1, 1)).clamp_(0.0, 1.0)
    if op == 1:
        gray = rgb_to_gray(x) if x.shape[1] == 3 else x
        mean = gray.mean(dim=(1, 2, 3), keepdim=True)
        return _blend(x, mean, p)
    if op == 2:
        return _blend(x, rgb_to_gray(x), p)
    return adjust_hue(x, p)
