"""Readings: how a deployment of a model prepares the photo it is given.

A reading maps RGB pixels to the RGB the model's own normalisation starts from.  Like channels
it has a real implementation on uint8 pixels (Pillow's resizers, as torchvision's transforms run
on PIL images; it defines the verdict) and a differentiable stand-in (for gradients).

Spellings:
    ``own``                   the engine's own view of the victim (``victim.preprocess``)
    ``native``                the photo at its own resolution
    ``gray8``                 native, grey rounded to uint8 first (Pillow's ``L``, as OpenCV does)
    ``fixed:WxH[:KERNEL]``    resize to W x H (H x W for portrait photos)
    ``squash:S[:KERNEL]``     the whole frame resized to S x S
    ``crop:S[:KERNEL]``       short side to round(S / 0.875), then the central S x S
                              (torchvision's ImageNet evaluation transform)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image
from torch import Tensor

from ..io import jpeg
from .channels import PIL_KERNELS, resize_pil, resize_torch, round_ste

CROP_FRACTION = 0.875
KINDS = ("own", "native", "gray8", "fixed", "squash", "crop")


@dataclass(frozen=True)
class Reading:
    """One way a model deployment reads a photo (see the module docstring)."""

    name: str
    kind: str
    width: int = 0
    height: int = 0
    kernel: str = "bilinear"

    @classmethod
    def parse(cls, spec: str) -> Reading:
        kind, *rest = spec.strip().lower().split(":")
        try:
            if kind in ("own", "native", "gray8") and not rest:
                return cls(spec.strip().lower(), kind)
            if kind in ("fixed", "squash", "crop") and 1 <= len(rest) <= 2:
                kernel = rest[1] if len(rest) == 2 else "bilinear"
                if kernel not in PIL_KERNELS:
                    raise ValueError(f"unknown kernel {kernel!r}")
                if kind == "fixed":
                    w, h = (int(v) for v in rest[0].split("x"))
                else:
                    w = h = int(rest[0])
                if w < 1 or h < 1:
                    raise ValueError("sizes must be positive")
                return cls(spec.strip().lower(), kind, w, h, kernel)
        except ValueError as exc:
            raise ValueError(f"reading {spec!r}: {exc}") from exc
        raise ValueError(
            f"reading {spec!r} not understood; use own, native, gray8, fixed:WxH[:kernel], "
            "squash:S[:kernel] or crop:S[:kernel]"
        )

    def _resize_to(self, height: int, width: int) -> tuple[int, int]:
        """The size the photo is resized to before any crop."""
        if self.kind == "fixed":
            long, short = max(self.width, self.height), min(self.width, self.height)
            return (long, short) if height > width else (short, long)
        if self.kind == "squash":
            return self.height, self.width
        if self.kind == "crop":
            side = round(self.width / CROP_FRACTION)
            k = side / min(height, width)
            return max(side, round(height * k)), max(side, round(width * k))
        return height, width

    def _crop(self, height: int, width: int) -> tuple[int, int, int, int]:
        """(top, left, h, w) of the final crop from the resized photo."""
        if self.kind != "crop":
            return 0, 0, height, width
        # torchvision's CenterCrop rounds the offsets.
        return round((height - self.height) / 2), round((width - self.width) / 2), self.height, self.width

    def real(self, rgb: np.ndarray) -> Tensor:
        """(3, h, w) float in [0, 1] from (H, W, 3) uint8 pixels, as the deployment prepares them."""
        if self.kind == "gray8":
            grey = np.asarray(Image.fromarray(rgb).convert("L"))
            return jpeg.to_float(np.repeat(grey[..., None], 3, axis=2))
        resized = resize_pil(rgb, self._resize_to(*rgb.shape[:2]), self.kernel)
        top, left, h, w = self._crop(*resized.shape[:2])
        return jpeg.to_float(resized[top : top + h, left : left + w])

    def torch(self, x: Tensor) -> Tensor:
        """The differentiable stand-in on a (B, 3, H, W) batch in [0, 1]."""
        if self.kind == "gray8":
            r, g, b = x.unbind(-3)
            # Pillow's L: ITU-R 601-2 luma, rounded.
            return round_ste(0.299 * r + 0.587 * g + 0.114 * b)[:, None].expand_as(x)
        size = self._resize_to(*x.shape[-2:])
        if size != tuple(x.shape[-2:]):
            x = round_ste(resize_torch(x, size, self.kernel))
        top, left, h, w = self._crop(*x.shape[-2:])
        return x[..., top : top + h, left : left + w]
