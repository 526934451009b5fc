"""Banded PSNR and SSIM equal the whole-image formulas (they exist to bound memory at 12 MP)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from camo_engine.measure import fidelity as metrics
from skimage.metrics import structural_similarity


@pytest.mark.parametrize("band_rows", [1, 16, 128, 10_000])
def test_banded_metrics_equal_the_whole_image(photos, monkeypatch, band_rows):
    monkeypatch.setattr(metrics, "BAND_ROWS", band_rows)
    a = photos["astronaut"]
    noise = np.random.default_rng(0).integers(-6, 7, a.shape)
    b = np.clip(a.astype(int) + noise, 0, 255).astype(np.uint8)
    whole_ssim = structural_similarity(a, b, channel_axis=2, data_range=255)
    assert metrics.ssim(a, b) == pytest.approx(whole_ssim, abs=1e-9)
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    assert metrics.psnr(a, b) == pytest.approx(10 * math.log10(255**2 / mse), abs=1e-9)
    assert metrics.psnr(a, a) == math.inf
    assert metrics.ssim(a, a) == pytest.approx(1.0)
