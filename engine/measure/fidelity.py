"""Fidelity of a protected photo to its input: L-inf, PSNR and SSIM on uint8 pixels.

PSNR and SSIM work in float64 on bands of rows, so that a 12-megapixel photo never has a
whole-image float64 copy (skimage's whole-image SSIM: benchmarks/NOTES.md, "memory").
"""

from __future__ import annotations

import math

import numpy as np
from skimage.metrics import structural_similarity

# Rows per band: ~4 MB of float64 per channel at 4000 px wide.
BAND_ROWS = 128
SSIM_WINDOW = 7  # skimage's default window; SSIM's mean skips (window - 1) / 2 border pixels


def linf(a: np.ndarray, b: np.ndarray) -> int:
    """Largest per-channel difference, in 0..255 levels."""
    return int(np.abs(a.astype(np.int16) - b.astype(np.int16)).max(initial=0))


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """Peak signal-to-noise ratio in dB (``inf`` for identical images)."""
    squared = sum(
        float(np.sum((a[r : r + BAND_ROWS].astype(np.float64) - b[r : r + BAND_ROWS]) ** 2))
        for r in range(0, a.shape[0], BAND_ROWS)
    )
    mse = squared / a.size
    return math.inf if mse == 0 else 10 * math.log10(255.0**2 / mse)


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    """Mean SSIM over the colour channels (skimage's Gaussian-free 7x7 default).

    Computed band by band: each band of output rows is given its window's context rows above
    and below, so its SSIM map equals the whole image's on those rows, and the row-weighted
    mean of the bands is the whole image's mean SSIM (to float rounding).
    """
    if min(a.shape[:2]) < SSIM_WINDOW:
        return 1.0 if np.array_equal(a, b) else float("nan")
    pad = (SSIM_WINDOW - 1) // 2
    total, rows = 0.0, 0
    for top in range(pad, a.shape[0] - pad, BAND_ROWS):
        bottom = min(top + BAND_ROWS, a.shape[0] - pad)
        band = slice(top - pad, bottom + pad)
        value = structural_similarity(a[band], b[band], channel_axis=2, data_range=255)
        total += float(value) * (bottom - top)
        rows += bottom - top
    return total / rows


def fidelity(original: np.ndarray, protected: np.ndarray) -> dict[str, float]:
    """All three measures for one (H, W, 3) uint8 pair."""
    return {
        "linf": linf(original, protected),
        "psnr": round(psnr(original, protected), 3),
        "ssim": round(ssim(original, protected), 5),
    }
