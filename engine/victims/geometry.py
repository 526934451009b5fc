"""Differentiable resizes from a full-resolution photo to a victim's fixed input geometry."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from .base import check_image


def resize(image: Tensor, size: tuple[int, int]) -> Tensor:
    """Antialiased bilinear resize of a (3, H, W) image to ``size`` = (h, w).

    Antialiasing matters twice: it matches how photo libraries downscale, and it spreads the
    gradient over every full-resolution pixel instead of a sparse grid of them.
    """
    check_image(image)
    if tuple(image.shape[-2:]) == tuple(size):
        return image
    return F.interpolate(
        image[None], size=size, mode="bilinear", antialias=True, align_corners=False
    )[0]


def center_crop_box(height: int, width: int, crop_fraction: float) -> tuple[int, int, int]:
    """(top, left, side) of the central square covering ``crop_fraction`` of the short side."""
    side = max(1, round(min(height, width) * crop_fraction))
    return (height - side) // 2, (width - side) // 2, side


def resize_center_crop(image: Tensor, size: int, crop_fraction: float = 0.875) -> Tensor:
    """ImageNet-style evaluation view: central square (short side x ``crop_fraction``), resized.

    Equivalent to "resize short side to size/crop_fraction, then centre-crop size", but it crops
    first so that a 12-megapixel photo is never resized whole.
    """
    check_image(image)
    top, left, side = center_crop_box(image.shape[1], image.shape[2], crop_fraction)
    return resize(image[:, top : top + side, left : left + side], (size, size))


def orientation_geometry(height: int, width: int, long: int, short: int) -> tuple[int, int]:
    """A fixed (h, w) per orientation: landscape and square photos get (short, long)."""
    return (long, short) if height > width else (short, long)
