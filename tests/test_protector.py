"""The library API: one Protector reused across calls and threads, bad input, big photos."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from camo_engine.attack import strength_config
from camo_engine import Protector


@pytest.fixture(scope="module")
def protector() -> Protector:
    return Protector("efficientnet-lite0", config=strength_config("low", steps=10))


def test_results_in_input_order_with_fidelity(protector, small_photos):
    results = protector.protect(small_photos[:4])
    assert [r.index for r in results] == [0, 1, 2, 3]
    for r, rgb in zip(results, small_photos):
        assert r.rgb.shape == rgb.shape and r.rgb.dtype == np.uint8
        assert r.fidelity["linf"] <= 8
        assert r.fidelity["psnr"] > 30
        assert 0 < r.fidelity["ssim"] <= 1
        assert r.win == (r.protected and not r.alone and not r.already)


def test_concurrent_calls_match_sequential(protector, small_photos):
    batches = [small_photos[:3], small_photos[3:6]]
    sequential = [protector.protect(b) for b in batches]
    with ThreadPoolExecutor(max_workers=2) as pool:
        concurrent = list(pool.map(protector.protect, batches))
    for seq, con in zip(sequential, concurrent):
        assert [r.rgb.tobytes() for r in seq] == [r.rgb.tobytes() for r in con]
        assert [r.after for r in seq] == [r.after for r in con]


@pytest.mark.parametrize(
    "bad",
    [np.zeros((8, 8), np.uint8), np.zeros((8, 8, 3), np.float32), np.zeros((8, 8, 4), np.uint8), "photo.jpg"],
)
def test_bad_arrays_are_clear_errors(protector, bad):
    with pytest.raises(ValueError, match=r"image 0: expected an \(H, W, 3\) uint8 array"):
        protector.protect([bad])


@pytest.mark.slow
def test_twelve_megapixel_photo(protector, photos):
    """A 4000x3000 photo runs at full resolution; the victim sees it through its own resize."""
    from PIL import Image

    big = np.asarray(Image.fromarray(photos["china"]).resize((4000, 3000), Image.Resampling.BICUBIC))
    [r] = protector.protect([big])
    assert r.rgb.shape == (3000, 4000, 3)
    assert r.fidelity["linf"] <= 8


def test_enhance_then_attack_keeps_the_eps_ball_around_the_enhanced_photo(small_photos):
    from camo_engine.enhance import parse_enhancers
    from camo_engine.io import jpeg

    protector = Protector("efficientnet-lite0", config=strength_config("low", steps=10), enhance="pillow")
    [r] = protector.protect(small_photos[:1])
    enhanced = jpeg.to_uint8(parse_enhancers("pillow")(jpeg.to_float(small_photos[0])[None])[0])
    assert np.abs(r.unattacked.astype(int) - enhanced.astype(int)).max() <= 1
    assert np.abs(r.rgb.astype(int) - r.unattacked.astype(int)).max() <= 8


def test_attack_through_the_enhancer(small_photos):
    protector = Protector(
        "efficientnet-lite0", config=strength_config("low", steps=10), enhance="pillow", through=True
    )
    results = protector.protect(small_photos[:3])
    assert sum(r.protected for r in results) >= 2
    for r in results:
        # The output is the enhancer applied to the perturbed input: it differs from the
        # enhanced original, and the baseline verdict is that of the original photo.
        assert not np.array_equal(r.rgb, r.unattacked) or r.steps == 0


def test_through_needs_a_differentiable_enhancer():
    with pytest.raises(ValueError, match="not differentiable"):
        Protector("efficientnet-lite0", enhance="stylize", through=True)
    with pytest.raises(ValueError, match="needs an enhancer"):
        Protector("efficientnet-lite0", through=True)
