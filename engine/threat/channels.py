"""Channels: what happens to a photo after it leaves the user (re-encoding, downscaling, cropping).

A channel is a chain of steps written as text, ``"long:1080+jpeg:85"``.  Each step has two
implementations: the real one on uint8 pixels (Pillow's codecs and resizers: it defines the
verdict) and a differentiable stand-in on float tensors (kornia's differentiable JPEG,
antialiased interpolation, uint8 rounding with a straight-through gradient: only for gradients).

Steps:
    ``none``                the photo as written
    ``jpeg:Q``              JPEG re-encode at quality Q (the engine's encoder settings)
    ``webp:Q``              lossy WebP at quality Q (stand-in: JPEG at Q)
    ``scale:F[:KERNEL]``    resize by factor F (0 < F <= 1)
    ``long:L[:KERNEL]``     downscale so the long side is at most L (never upscales)
    ``crop:F``              central crop keeping fraction F of each side

KERNEL is ``lanczos`` (default, what photo sites use), ``bicubic``, ``bilinear`` or ``box``.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from kornia.enhance import jpeg_codec_differentiable
from PIL import Image
from torch import Tensor

from ..io import jpeg

PIL_KERNELS = {
    "lanczos": Image.Resampling.LANCZOS,
    "bicubic": Image.Resampling.BICUBIC,
    "bilinear": Image.Resampling.BILINEAR,
    "box": Image.Resampling.BOX,
}
# The differentiable stand-ins: torch has no Lanczos; bicubic is the closest antialiased kernel.
TORCH_KERNELS = {"lanczos": "bicubic", "bicubic": "bicubic", "bilinear": "bilinear", "box": "area"}


def round_ste(x: Tensor) -> Tensor:
    """Rounding to uint8 levels in the forward pass, the identity in the backward pass.

    Example:
        >>> round_ste(torch.tensor([0.5 / 255 + 1e-4])).mul(255).item()
        1.0
    """
    return x + ((x.clamp(0, 1) * 255).round() / 255 - x).detach()


# kornia's differentiable JPEG keeps some twenty photo-sized intermediates for its backward (4 GiB
# for a 12 MP photo).  Above this many pixels it runs in row bands under activation
# recomputation (``_BandedJpeg``), so that one band's intermediates are alive at a time.
JPEG_BAND_ABOVE = 2_000_000
JPEG_BAND_PIXELS = 500_000  # about this many pixels per band
# JPEG works on 16x16 macroblocks (8x8 blocks, chroma at half resolution).  At a cut, the
# chroma downsampling's border rule changes the whole macroblock next to it, and the chroma
# upsampling one row beyond.  A band starts and ends on macroblock edges and computes two
# macroblock rows more on each side, which it discards (one was measured to be too few).
MACROBLOCK = 16
JPEG_BAND_HALO = 2 * MACROBLOCK


def jpeg_torch(x: Tensor, quality: float, band_rows: int | None = None) -> Tensor:
    """Differentiable JPEG at ``quality`` of a (B, 3, H, W) batch in [0, 1] (kornia's stand-in),
    rounded to uint8 levels with a straight-through gradient.

    Large photos run in bands of ``band_rows`` rows (a multiple of 16; default: about
    ``JPEG_BAND_PIXELS`` pixels per band above ``JPEG_BAND_ABOVE``), each recomputed in the
    backward pass: the values are those of the whole-photo call (``tests/test_robust.py``).

    Example:
        >>> jpeg_torch(torch.rand(1, 3, 64, 64), 90).shape
        torch.Size([1, 3, 64, 64])
    """
    q = torch.tensor([float(quality)], dtype=x.dtype)
    height, width = x.shape[-2:]
    if band_rows is None:
        if height * width <= JPEG_BAND_ABOVE:
            return round_ste(jpeg_codec_differentiable(x.clamp(0, 1), q))
        band_rows = max(MACROBLOCK, JPEG_BAND_PIXELS // width // MACROBLOCK * MACROBLOCK)
    if band_rows % MACROBLOCK:
        raise ValueError(f"band_rows must be a multiple of {MACROBLOCK}, got {band_rows}")
    return round_ste(_BandedJpeg.apply(x, q, band_rows))


class _BandedJpeg(torch.autograd.Function):
    """kornia's JPEG stand-in of (B, 3, H, W) in row bands of ``band_rows``: the forward keeps
    only the input, the backward recomputes one band at a time and adds its gradient into
    one input-sized buffer.

    Activation checkpointing per band gave the same values but held 3.0 GiB above the input
    for a 12 MP photo (its slices' backward makes an input-sized gradient per band, and glibc
    kept what the bands freed), against 1.0 GiB here (benchmarks/NOTES.md, ninth session)."""

    @staticmethod
    def forward(ctx, x: Tensor, q: Tensor, band_rows: int) -> Tensor:  # type: ignore[override]
        height = x.shape[-2]
        out = torch.empty_like(x)
        for r0 in range(0, height, band_rows):
            r1 = min(r0 + band_rows, height)
            out[..., r0:r1, :] = _jpeg_band(x, q, r0, r1)
        ctx.save_for_backward(x, q)
        ctx.band_rows = band_rows
        return out

    @staticmethod
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        x, q = ctx.saved_tensors
        height = x.shape[-2]
        grad_x = torch.zeros_like(x)
        for r0 in range(0, height, ctx.band_rows):
            r1 = min(r0 + ctx.band_rows, height)
            top, bottom = max(r0 - JPEG_BAND_HALO, 0), min(r1 + JPEG_BAND_HALO, height)
            with torch.enable_grad():
                band = x[..., top:bottom, :].detach().requires_grad_(True)
                (band_grad,) = torch.autograd.grad(_jpeg_band(band, q, r0 - top, r1 - top), band, grad[..., r0:r1, :])
            grad_x[..., top:bottom, :] += band_grad
        return grad_x, None, None


def _jpeg_band(x: Tensor, q: Tensor, r0: int, r1: int) -> Tensor:
    """Rows r0..r1-1 of the JPEG of ``x``, from rows r0-32..r1+32 (clipped to the photo)."""
    top, bottom = max(r0 - JPEG_BAND_HALO, 0), min(r1 + JPEG_BAND_HALO, x.shape[-2])
    coded = jpeg_codec_differentiable(x[..., top:bottom, :].clamp(0, 1), q)
    return coded[..., r0 - top : r1 - top, :]


def resize_torch(x: Tensor, size: tuple[int, int], kernel: str = "bilinear") -> Tensor:
    """Differentiable antialiased resize of a (B, 3, H, W) batch to ``size`` = (h, w).

    Shape:
        - x: (B, 3, H, W); output (B, 3, h, w).
    """
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    mode = TORCH_KERNELS.get(kernel, kernel)
    if mode == "area":
        return F.interpolate(x, size=size, mode="area")
    out = F.interpolate(x, size=size, mode=mode, antialias=True, align_corners=False)
    return out.clamp(0, 1) if mode == "bicubic" else out


def resize_pil(rgb: np.ndarray, size: tuple[int, int], kernel: str = "lanczos") -> np.ndarray:
    """Pillow resize of (H, W, 3) uint8 pixels to ``size`` = (h, w)."""
    if rgb.shape[:2] == tuple(size):
        return rgb
    return np.asarray(Image.fromarray(rgb).resize((size[1], size[0]), PIL_KERNELS[kernel]))


def _kernel(parts: list[str], spec: str) -> str:
    kernel = parts[0] if parts else "lanczos"
    if kernel not in PIL_KERNELS:
        raise ValueError(f"channel {spec!r}: unknown kernel {kernel!r}; known: {', '.join(PIL_KERNELS)}")
    return kernel


@dataclass(frozen=True)
class Step:
    """One step of a channel (see the module docstring for the spellings)."""

    op: str
    value: float = 0.0
    kernel: str = "lanczos"

    @classmethod
    def parse(cls, spec: str) -> Step:
        op, *rest = spec.strip().lower().split(":")
        try:
            if op == "none" and not rest:
                return cls("none")
            if op in ("jpeg", "webp") and len(rest) == 1:
                quality = int(rest[0])
                if not 1 <= quality <= 100:
                    raise ValueError(f"quality must be in 1..100, got {quality}")
                return cls(op, quality)
            if op in ("scale", "long") and 1 <= len(rest) <= 2:
                value = float(rest[0])
                if op == "scale" and not 0 < value <= 1 or op == "long" and value < 1:
                    raise ValueError(f"{op} needs {'0 < F <= 1' if op == 'scale' else 'L >= 1'}, got {rest[0]}")
                return cls(op, value, _kernel(rest[1:], spec))
            if op == "crop" and len(rest) == 1:
                value = float(rest[0])
                if not 0 < value <= 1:
                    raise ValueError(f"crop needs 0 < F <= 1, got {rest[0]}")
                return cls(op, value)
        except ValueError as exc:
            raise ValueError(f"channel step {spec!r}: {exc}") from exc
        raise ValueError(
            f"channel step {spec!r} not understood; use none, jpeg:Q, webp:Q, scale:F[:kernel], "
            "long:L[:kernel] or crop:F"
        )

    def size(self, height: int, width: int) -> tuple[int, int]:
        """The (h, w) this step produces from a (height, width) photo."""
        if self.op == "scale":
            return max(1, round(height * self.value)), max(1, round(width * self.value))
        if self.op == "long":
            k = min(1.0, self.value / max(height, width))
            return max(1, round(height * k)), max(1, round(width * k))
        if self.op == "crop":
            return max(1, round(height * self.value)), max(1, round(width * self.value))
        return height, width

    def real(self, rgb: np.ndarray) -> np.ndarray:
        """The step on (H, W, 3) uint8 pixels, with the real codec or resizer."""
        if self.op == "jpeg":
            return jpeg.roundtrip(rgb, int(self.value))
        if self.op == "webp":
            buf = io.BytesIO()
            Image.fromarray(rgb).save(buf, format="WEBP", quality=int(self.value))
            with Image.open(io.BytesIO(buf.getvalue())) as im:
                return np.asarray(im.convert("RGB"))
        if self.op in ("scale", "long"):
            return resize_pil(rgb, self.size(*rgb.shape[:2]), self.kernel)
        if self.op == "crop":
            h, w = self.size(*rgb.shape[:2])
            top, left = (rgb.shape[0] - h) // 2, (rgb.shape[1] - w) // 2
            return rgb[top : top + h, left : left + w]
        return rgb

    def torch(self, x: Tensor) -> Tensor:
        """The differentiable stand-in on a (B, 3, H, W) batch in [0, 1]."""
        if self.op in ("jpeg", "webp"):
            return jpeg_torch(x, self.value)
        if self.op in ("scale", "long"):
            size = self.size(*x.shape[-2:])
            return x if size == tuple(x.shape[-2:]) else round_ste(resize_torch(x, size, self.kernel))
        if self.op == "crop":
            h, w = self.size(*x.shape[-2:])
            top, left = (x.shape[-2] - h) // 2, (x.shape[-1] - w) // 2
            return x[..., top : top + h, left : left + w]
        return x


@dataclass(frozen=True)
class Channel:
    """A chain of steps, e.g. ``Channel.parse("long:1080+jpeg:85")``.

    Example:
        >>> Channel.parse("scale:0.5+jpeg:85").size(400, 600)
        (200, 300)
    """

    name: str
    steps: tuple[Step, ...]

    @classmethod
    def parse(cls, spec: str) -> Channel:
        parts = [p for p in spec.split("+") if p.strip()]
        if not parts:
            raise ValueError("an empty channel; use 'none' for the photo as written")
        steps = tuple(s for s in map(Step.parse, parts) if s.op != "none")
        return cls(spec.strip().lower(), steps)

    def size(self, height: int, width: int) -> tuple[int, int]:
        for step in self.steps:
            height, width = step.size(height, width)
        return height, width

    def real(self, rgb: np.ndarray) -> np.ndarray:
        """What the platform delivers of (H, W, 3) uint8 pixels."""
        for step in self.steps:
            rgb = step.real(rgb)
        return rgb

    def torch(self, x: Tensor) -> Tensor:
        """The differentiable stand-in on a (B, 3, H, W) batch."""
        for step in self.steps:
            x = step.torch(x)
        return x
