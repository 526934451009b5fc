"""Appeal measures: NIQE against scikit-video's code, the rest on known cases (NIMA: test_victims_user.py)."""

from __future__ import annotations

import sys
import types
from collections.abc import Callable

import numpy as np
import pytest
import scipy.io
import scipy.linalg
import scipy.ndimage
import torch
from camo_engine.enhance import adjust_pillow
from camo_engine.io.jpeg import to_float, to_uint8
from camo_engine.measure import appeal
from camo_engine.victims.niqe import pristine_model
from PIL import Image


@pytest.fixture
def skvideo_niqe(monkeypatch: pytest.MonkeyPatch) -> Callable[[np.ndarray], float]:
    """scikit-video's own niqe, with what current NumPy/SciPy removed put back for the test."""
    import skvideo.measure  # noqa: F401  (loads the submodule, whose name the function shadows)

    module = sys.modules["skvideo.measure.niqe"]

    def imresize(arr: np.ndarray, size: float, interp: str, mode: str) -> np.ndarray:
        assert (interp, mode) == ("bicubic", "F")
        image = Image.fromarray(arr.astype(np.float32))
        return np.asarray(
            image.resize(tuple((np.array(image.size) * size).astype(int)), Image.BICUBIC)
        )

    numpy_with_int = types.SimpleNamespace(
        **{k: getattr(np, k) for k in dir(np) if not k.startswith("__")}
    )
    numpy_with_int.int = int
    monkeypatch.setattr(module, "np", numpy_with_int)
    monkeypatch.setattr(
        module,
        "scipy",
        types.SimpleNamespace(
            misc=types.SimpleNamespace(imresize=imresize), io=scipy.io, linalg=scipy.linalg
        ),
    )
    return lambda grey: float(module.niqe(grey)[0])


@pytest.mark.filterwarnings("ignore:scipy.misc is deprecated:DeprecationWarning")
@pytest.mark.parametrize("name", ["astronaut", "coffee", "china"])
def test_niqe_matches_skvideo(
    photos: dict[str, np.ndarray], name: str, skvideo_niqe: Callable[[np.ndarray], float]
) -> None:
    grey = appeal.luminance(photos[name])
    assert appeal.niqe(grey) == pytest.approx(skvideo_niqe(grey), rel=1e-4)


def test_niqe_prefers_the_pristine_photo(photos: dict[str, np.ndarray]) -> None:
    rng = np.random.default_rng(0)
    for name in ("astronaut", "coffee", "china", "flower"):
        grey = appeal.luminance(photos[name])
        pristine = appeal.niqe(grey)
        blurred = appeal.niqe(scipy.ndimage.gaussian_filter(grey, 2.0))
        noisy = appeal.niqe(np.clip(grey + rng.normal(0, 20, grey.shape), 0, 255))
        assert pristine < blurred and pristine < noisy, name


def test_niqe_model_is_skvideos() -> None:
    mu, cov = pristine_model()
    assert mu.shape == (36,) and cov.shape == (36, 36)
    # The diagonal-product quirk the module docstring describes shows in the model itself.
    assert mu[12] == mu[13] and mu[16] == mu[17]


def test_niqe_needs_a_large_enough_image() -> None:
    with pytest.raises(ValueError, match="192x192"):
        appeal.niqe(np.zeros((150, 400)))
    scores = appeal.appeal_scores(np.zeros((100, 100, 3), np.uint8))
    assert np.isnan(scores["niqe"])


def test_colourfulness() -> None:
    grey = np.full((8, 8, 3), 128, np.uint8)
    assert appeal.colourfulness(grey) == 0
    red = np.zeros((8, 8, 3), np.uint8)
    red[..., 0] = 200
    # rg = 200, yb = 100 everywhere: no spread, M3 = 0.3 * hypot(200, 100).
    assert appeal.colourfulness(red) == pytest.approx(0.3 * np.hypot(200, 100))


def test_pillow_enhancement_is_more_colourful_and_contrasty(photos: dict[str, np.ndarray]) -> None:
    for name in ("chelsea", "rocket", "flower"):
        rgb = photos[name]
        with torch.no_grad():
            enhanced = to_uint8(adjust_pillow(to_float(rgb)[None])[0])
        before, after = appeal.appeal_scores(rgb), appeal.appeal_scores(enhanced)
        assert after["colourfulness"] > before["colourfulness"], name
        assert after["rms_contrast"] > before["rms_contrast"], name
        assert after["laplacian_variance"] > before["laplacian_variance"], name


def test_contrast_and_sharpness_on_known_images() -> None:
    halves = np.zeros((10, 10))
    halves[:, 5:] = 255
    assert appeal.rms_contrast(halves) == pytest.approx(0.5)
    assert appeal.rms_contrast(np.full((10, 10), 77.0)) == pytest.approx(0, abs=1e-12)
    ramp = np.tile(np.arange(10.0) * 25.5, (10, 1))  # 0.1 per pixel on the [0, 1] scale
    assert appeal.gradient_magnitude(ramp) == pytest.approx(0.1)
    assert appeal.laplacian_variance(np.full((10, 10), 9.0)) == 0


def test_sharpness_drops_with_blur(photos: dict[str, np.ndarray]) -> None:
    grey = appeal.luminance(photos["astronaut"])
    blurred = scipy.ndimage.gaussian_filter(grey, 1.5)
    assert appeal.laplacian_variance(blurred) < appeal.laplacian_variance(grey) / 2
    assert appeal.gradient_magnitude(blurred) < appeal.gradient_magnitude(grey)


def test_appeal_scores_has_every_measure(photos: dict[str, np.ndarray]) -> None:
    scores = appeal.appeal_scores(photos["coffee"])
    assert set(scores) == {
        "niqe",
        "colourfulness",
        "rms_contrast",
        "laplacian_variance",
        "gradient_magnitude",
    }
    assert all(np.isfinite(v) for v in scores.values())
    with pytest.raises(ValueError, match="uint8"):
        appeal.appeal_scores(photos["coffee"].astype(np.float32))
