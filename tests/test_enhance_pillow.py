"""The torch Pillow enhancer against Pillow's own ImageEnhance, on the sample photos."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from camo_engine.enhance import AdjustPillow, adjust_pillow
from camo_engine.io import jpeg
from PIL import Image, ImageEnhance

# The order the module documents (the 2020 paper's): colour, sharpness, brightness, contrast.
STAGES = (
    ImageEnhance.Color,
    ImageEnhance.Sharpness,
    ImageEnhance.Brightness,
    ImageEnhance.Contrast,
)


def pillow_reference(rgb: np.ndarray, factors: tuple[float, float, float, float]) -> np.ndarray:
    image = Image.fromarray(rgb)
    for stage, factor in zip(STAGES, factors, strict=True):
        image = stage(image).enhance(factor)
    return np.asarray(image)


def torch_pillow(rgb: np.ndarray, factors: tuple[float, float, float, float]) -> np.ndarray:
    with torch.no_grad():
        return jpeg.to_uint8(adjust_pillow(jpeg.to_float(rgb)[None], *factors)[0])


def assert_matches(
    photos: dict[str, np.ndarray], factors: tuple[float, float, float, float]
) -> None:
    diffs = np.concatenate(
        [
            np.abs(torch_pillow(rgb, factors).astype(int) - pillow_reference(rgb, factors)).ravel()
            for rgb in photos.values()
        ]
    )
    # The README's claim, "bit-exact with Pillow": every value equal (the straight-through
    # roundings reproduce Pillow's uint8 arithmetic stage by stage).
    assert diffs.max() == 0, f"max {diffs.max()}, exact {np.mean(diffs == 0):.6f}"


def test_paper_factors_match_pillow(photos: dict[str, np.ndarray]) -> None:
    assert_matches(photos, (1.5, 3.0, 1.0, 1.5))


@pytest.mark.parametrize("stage", range(4))
@pytest.mark.parametrize("factor", [0.0, 0.6, 1.3, 2.7])
def test_each_stage_matches_pillow(
    photos: dict[str, np.ndarray], stage: int, factor: float
) -> None:
    factors = [1.0, 1.0, 1.0, 1.0]
    factors[stage] = factor
    assert_matches({k: photos[k] for k in ("chelsea", "coffee")}, tuple(factors))


def test_other_factors_match_pillow(photos: dict[str, np.ndarray]) -> None:
    assert_matches(photos, (1.3, 2.2, 1.1, 0.8))


def test_gradient_is_straight_through(small_photos: list[np.ndarray]) -> None:
    x = jpeg.to_float(small_photos[0])[None].requires_grad_(True)
    AdjustPillow()(x).sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def test_tiny_images_are_refused() -> None:
    with pytest.raises(ValueError, match="3x3"):
        adjust_pillow(torch.rand(1, 3, 2, 8))
