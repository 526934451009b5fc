"""Fidelity of a protected photo to its input: L-inf, PSNR and SSIM on uint8 pixels."""

from __future__ import annotations

import math

import numpy as np
from skimage.metrics import structural_similarity


def linf(a: np.ndarray, b: np.ndarray) -> int:
    """Largest per-channel difference, in 0..255 levels."""
    return int(np.abs(a.astype(np.int16) - b.astype(np.int16)).max(initial=0))


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """Peak signal-to-noise ratio in dB (``inf`` for identical images)."""
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return math.inf if mse == 0 else 10 * math.log10(255.0**2 / mse)


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    """Mean SSIM over the colour channels (skimage's Gaussian-free 7x7 default)."""
    if min(a.shape[:2]) < 7:
        return 1.0 if np.array_equal(a, b) else float("nan")
    return float(structural_similarity(a, b, channel_axis=2, data_range=255))


def fidelity(original: np.ndarray, protected: np.ndarray) -> dict[str, float]:
    """All three measures for one (H, W, 3) uint8 pair."""
    return {
        "linf": linf(original, protected),
        "psnr": round(psnr(original, protected), 3),
        "ssim": round(ssim(original, protected), 5),
    }
