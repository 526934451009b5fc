"""Pillow's ImageEnhance (Color, Sharpness, Brightness, Contrast) re-written in torch.

The 2020 HCMUS "Pillow" run adjusts "color balance by 1.5, sharpness by 3.0, brightness by 1.0
and contrast by 1.5"; we apply the four in that order (colour, sharpness, brightness, contrast).

Pillow's semantics, reproduced exactly (the tests compare with Pillow itself):

* every enhancer is ``Image.blend(degenerate, image, factor)``: ``d + factor * (x - d)`` in
  float32 on 0..255 values, truncated to an integer and clipped to 0..255;
* Color's degenerate is the ``L`` image, ``(19595 R + 38470 G + 7471 B + 32768) >> 16``
  (ITU-R 601-2 luma rounded to an integer), repeated over the three bands;
* Contrast's degenerate is the constant grey ``int(mean(L) + 0.5)``;
* Brightness's degenerate is black;
* Sharpness's degenerate is the SMOOTH filter (3x3 kernel [[1,1,1],[1,5,1],[1,1,1]] / 13, rounded)
  with the one-pixel border copied unchanged.

Pillow holds uint8 between stages, so every rounding and truncation here is a straight-through
estimator, ``v + (floor(v) - v).detach()``: the forward pass equals Pillow's output bit for bit
(all sample photos, default and other factors), the backward pass treats rounding as the
identity.  A variant without the roundings was measured and dropped (benchmarks/NOTES.md,
"Pillow enhancer without rounding").
"""

from __future__ import annotations

import kornia
import torch
from torch import Tensor

from .base import Enhancer, check_images

# Pillow's fixed-point L conversion weights (they sum to 65536).
_L_WEIGHTS = (19595.0, 38470.0, 7471.0)
_SMOOTH = torch.tensor([[1.0, 1.0, 1.0], [1.0, 5.0, 1.0], [1.0, 1.0, 1.0]])
_SMOOTH_SCALE = 13.0


def _floor(v: Tensor) -> Tensor:
    """Pillow's integer truncation, with the identity as its gradient (straight-through)."""
    return v + (torch.floor(v) - v).detach()


def _round(v: Tensor) -> Tensor:
    return _floor(v + 0.5)


def _blend(degenerate: Tensor, image: Tensor, factor: float) -> Tensor:
    """``Image.blend``: separate subtract, multiply and add, as Pillow's float32 code does."""
    return _floor(degenerate + factor * (image - degenerate)).clamp(0.0, 255.0)


def _luma(v: Tensor) -> Tensor:
    """Pillow's ``L`` conversion of 0..255 RGB, (B, 1, H, W).  Exact in float32: sums < 2**24."""
    r, g, b = v.unbind(dim=1)
    weighted = _L_WEIGHTS[0] * r + _L_WEIGHTS[1] * g + _L_WEIGHTS[2] * b
    return _floor((weighted + 32768.0) / 65536.0).unsqueeze(1)


def _smooth(v: Tensor) -> Tensor:
    """ImageFilter.SMOOTH: the 3x3 filter on the interior, the border copied as Pillow does."""
    kernel = _SMOOTH.to(v)[None] / _SMOOTH_SCALE
    inner = _round(kornia.filters.filter2d(v, kernel, padding="valid"))
    # Pad the change, not the result, so the border keeps the input's values.
    return v + torch.nn.functional.pad(inner - v[..., 1:-1, 1:-1], (1, 1, 1, 1))


def adjust_pillow(
    images: Tensor,
    color: float = 1.5,
    sharpness: float = 3.0,
    brightness: float = 1.0,
    contrast: float = 1.5,
) -> Tensor:
    """Pillow's Color, Sharpness, Brightness, Contrast enhancers, in that order; [0, 1] images."""
    check_images(images)
    if min(images.shape[-2:]) < 3:
        raise ValueError(
            f"the SMOOTH filter needs images of at least 3x3, got {tuple(images.shape)}"
        )
    v = _round(images.clamp(0.0, 1.0) * 255.0)  # Pillow starts from uint8 pixels
    v = _blend(_luma(v), v, color)
    v = _blend(_smooth(v), v, sharpness)
    v = _blend(torch.zeros_like(v), v, brightness)
    # ImageStat's mean is a double; float64 keeps int(mean + 0.5) right on large images.
    mean = _luma(v).double().mean(dim=(1, 2, 3), keepdim=True)
    grey = _round(mean).to(v.dtype)
    v = _blend(grey, v, contrast)
    return v / 255.0


class AdjustPillow(Enhancer):
    """Module form of :func:`adjust_pillow` (the 2020 paper's factors by default)."""

    name = "pillow"
    differentiable = True

    def __init__(
        self,
        color: float = 1.5,
        sharpness: float = 3.0,
        brightness: float = 1.0,
        contrast: float = 1.5,
    ) -> None:
        super().__init__()
        self.color, self.sharpness = color, sharpness
        self.brightness, self.contrast = brightness, contrast

    def forward(self, images: Tensor) -> Tensor:
        return adjust_pillow(images, self.color, self.sharpness, self.brightness, self.contrast)
