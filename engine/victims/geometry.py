"""Differentiable resizes from a full-resolution photo to a victim's fixed input geometry."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from .base import check_image

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


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


def imagenet_view(image: Tensor, size: int = 224) -> Tensor:
    """The :func:`resize_center_crop` view normalised with the ImageNet mean and std, as the
    torchvision-trained backbones (ResNet50-Places365, NIMA's VGG16) expect it."""
    return imagenet_normalise(resize_center_crop(image, size))


def imagenet_normalise(view: Tensor) -> Tensor:
    """A (3, h, w) view in [0, 1] normalised with the ImageNet mean and std."""
    mean = view.new_tensor(IMAGENET_MEAN).view(3, 1, 1)
    std = view.new_tensor(IMAGENET_STD).view(3, 1, 1)
    return (view - mean) / std


def cover_crop(image: Tensor, size: tuple[int, int]) -> Tensor:
    """Resize a (3, H, W) image until it covers ``size`` = (h, w), then centre-crop ``size``.

    It crops first (the largest central region of ``size``'s aspect ratio), then resizes that
    region, so a 12-megapixel photo is never resized whole.  A photo of exactly ``size`` is
    passed through untouched.
    """
    check_image(image)
    height, width = image.shape[1:]
    # The side that limits the cover keeps its full length; the other is cut to the aspect.
    crop_h = min(height, max(1, round(width * size[0] / size[1])))
    crop_w = min(width, max(1, round(height * size[1] / size[0])))
    top, left = (height - crop_h) // 2, (width - crop_w) // 2
    return resize(image[:, top : top + crop_h, left : left + crop_w], size)


def orientation_geometry(height: int, width: int, long: int, short: int) -> tuple[int, int]:
    """A fixed (h, w) per orientation: landscape and square photos get (short, long)."""
    return (long, short) if height > width else (short, long)
