"""What every enhancer shares: the batch contract, the module base class, and a value-channel edit.

An enhancer maps a batch of RGB images, (B, 3, H, W) float in [0, 1], to a batch of the same
shape and range.  ``differentiable`` says whether gradients w.r.t. the input pixels are useful
(the attack can then optimise *through* the enhancer) and whether the module exports to ONNX.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


def check_images(images: Tensor) -> None:
    """Raise a clear error unless ``images`` is a (B, 3, H, W) floating-point batch."""
    if not isinstance(images, Tensor):
        raise TypeError(f"expected a torch.Tensor, got {type(images).__name__}")
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"expected RGB images of shape (B, 3, H, W), got {tuple(images.shape)}")
    if not images.is_floating_point():
        raise TypeError(f"expected float images in [0, 1], got dtype {images.dtype}")


class Enhancer(nn.Module):
    """Base class: subclasses set ``name`` (the CLI name) and ``differentiable``."""

    name: str = ""
    differentiable: bool = False

    def __call__(self, images: Tensor) -> Tensor:
        check_images(images)
        return super().__call__(images)


def with_value(images: Tensor, value: Tensor, new_value: Tensor) -> Tensor:
    """Give each pixel the HSV value ``new_value`` while keeping its hue and saturation exactly.

    Scaling RGB by V'/V is the HSV round trip with V replaced (H and S are ratios of the
    channels), without the round trip's hue branches, whose gradients blow up near grey pixels;
    hence this rather than ``kornia.color.rgb_to_hsv``/``hsv_to_rgb``.  Black pixels (V = 0) have
    no hue and become the grey ``new_value``.
    """
    scale = new_value / value.clamp_min(1e-6)
    return torch.where(value > 1e-6, images * scale, new_value.expand_as(images))
