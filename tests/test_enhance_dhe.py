"""DHE against a direct, recursive NumPy reading of Abdullah-Al-Wadud et al. (2007)."""

from __future__ import annotations

from itertools import pairwise

import numpy as np
import torch
from camo_engine.enhance import AdjustDHE, adjust_dhe
from camo_engine.enhance.dhe import dhe_curves
from camo_engine.io import jpeg


def reference_curve(levels: np.ndarray, emphasis: float = 1.0, depth: int = 12) -> np.ndarray:
    """The DHE tone curve (256 values in [0, 1]) of integer levels, one part at a time."""
    hist = np.bincount(levels.ravel(), minlength=256).astype(np.float64)
    smooth = np.convolve(hist, np.ones(3), mode="same")
    minima = [i for i in range(1, 255) if smooth[i - 1] > smooth[i] <= smooth[i + 1]]
    bounds = [0, *(m + 1 for m in minima), 256]

    def split(lo: int, hi: int, rounds: int) -> list[tuple[int, int]]:
        """Parts of levels lo..hi-1: split at mean -+ sd until normal-like (or out of rounds)."""
        h, k = hist[lo:hi], np.arange(lo, hi)
        n = h.sum()
        if n == 0 or rounds == 0:
            return [(lo, hi)]
        mean = (h * k).sum() / n
        sd = np.sqrt((h * (k - mean) ** 2).sum() / n)
        if h[np.abs(k - mean) <= sd].sum() > 0.683 * n:
            return [(lo, hi)]
        cuts = sorted(
            {lo, hi}
            | {c for c in (int(np.ceil(mean - sd)), int(np.floor(mean + sd)) + 1) if lo < c < hi}
        )
        return [p for a, b in pairwise(cuts) for p in split(a, b, rounds - 1)]

    parts = [p for a, b in pairwise(bounds) for p in split(a, b, depth)]
    counts = np.array([hist[a:b].sum() for a, b in parts])
    factors = np.array([b - a for a, b in parts]) * np.log(np.maximum(counts, 1)) ** emphasis
    ranges = 255 * factors / factors.sum()
    curve, start = np.zeros(256), 0.0
    for (a, b), n, r in zip(parts, counts, ranges, strict=True):
        curve[a:b] = start + r * np.cumsum(hist[a:b]) / max(n, 1)
        start += r
    return curve / 255


def value_levels(rgb: np.ndarray) -> np.ndarray:
    return rgb.max(axis=2).astype(np.int64)


def test_curves_match_the_reference(photos: dict[str, np.ndarray]) -> None:
    for name, rgb in photos.items():
        levels = value_levels(rgb)
        ours = dhe_curves(torch.from_numpy(levels.reshape(1, -1)))[0].numpy()
        np.testing.assert_allclose(ours, reference_curve(levels), atol=1e-5, err_msg=name)


def test_emphasis_matches_the_reference(photos: dict[str, np.ndarray]) -> None:
    levels = value_levels(photos["coffee"])
    ours = dhe_curves(torch.from_numpy(levels.reshape(1, -1)), emphasis=2.0)[0].numpy()
    np.testing.assert_allclose(ours, reference_curve(levels, emphasis=2.0), atol=1e-5)


def test_output_is_the_curve_applied_to_value(photos: dict[str, np.ndarray]) -> None:
    rgb = photos["chelsea"]
    with torch.no_grad():
        out = adjust_dhe(jpeg.to_float(rgb)[None])[0].permute(1, 2, 0).numpy()
    value = value_levels(rgb)
    new_value = reference_curve(value)[value]
    expected = np.where(
        value[..., None] > 0,
        rgb / np.maximum(value, 1)[..., None] * new_value[..., None],
        new_value[..., None],
    )
    np.testing.assert_allclose(out, expected, atol=1e-5)
    assert out.min() >= 0 and out.max() <= 1


def test_batch_gives_each_image_its_own_curve(small_photos: list[np.ndarray]) -> None:
    a, b = (jpeg.to_float(p[:100, :100])[None] for p in small_photos[:2])
    with torch.no_grad():
        together = adjust_dhe(torch.cat([a, b]))
        torch.testing.assert_close(together, torch.cat([adjust_dhe(a), adjust_dhe(b)]))


def test_gradient_flows_through_the_curve(small_photos: list[np.ndarray]) -> None:
    x = jpeg.to_float(small_photos[2])[None].requires_grad_(True)
    AdjustDHE()(x).mean().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
