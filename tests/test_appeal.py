"""Appeal measures: NIQE against scikit-video's code, the rest on known cases, NIMA loading."""

from __future__ import annotations

import sys
import types
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import scipy.io
import scipy.linalg
import scipy.ndimage
import torch
import torchvision
from camo_engine.enhance import adjust_pillow
from camo_engine.io.jpeg import to_float, to_uint8
from camo_engine.measure import appeal
from camo_engine.victims.checkpoint import CheckpointError
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
    mu, cov = appeal.niqe_model()
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


# --- NIMA ------------------------------------------------------------------------------------


def random_nima_checkpoint(path: Path, wrap: bool = False) -> Path:
    """A checkpoint of the accepted layout: torchvision mobilenet_v2(num_classes=10), random."""
    torch.manual_seed(0)
    state = torchvision.models.mobilenet_v2(num_classes=10).state_dict()
    if wrap:  # as DataParallel training scripts save it
        state = {"state_dict": {f"module.{k}": v for k, v in state.items()}}
    torch.save(state, path)
    return path


@pytest.mark.parametrize("wrap", [False, True])
def test_load_nima_reads_the_accepted_layout(tmp_path: Path, wrap: bool) -> None:
    path = random_nima_checkpoint(tmp_path / "nima.pth", wrap)
    saved = torch.load(path, weights_only=True)
    key = "classifier.1.weight"
    weight = saved["state_dict"][f"module.{key}"] if wrap else saved[key]
    torch.testing.assert_close(appeal.load_nima(path).classifier[1].weight, weight)


@pytest.mark.slow  # MobileNetV2's first forward passes take seconds on 2 busy cores
def test_nima_scores_are_distribution_means(photos: dict[str, np.ndarray], tmp_path: Path) -> None:
    model = appeal.load_nima(random_nima_checkpoint(tmp_path / "nima.pth"))
    images = torch.stack([to_float(photos[n][:224, :224]) for n in ("coffee", "chelsea")])
    with torch.no_grad():
        distribution = model(images)
        score = model.score(images)
    torch.testing.assert_close(distribution.sum(dim=1), torch.ones(2))
    torch.testing.assert_close(score, distribution @ torch.arange(1.0, 11.0))
    assert 1 <= appeal.appeal_scores(photos["coffee"], nima=model)["nima"] <= 10


def test_load_nima_refuses_wrong_files(tmp_path: Path) -> None:
    empty = tmp_path / "empty.pth"
    empty.write_bytes(b"")
    with pytest.raises(CheckpointError, match="empty"):
        appeal.load_nima(empty)
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"\x00" * 64)
    with pytest.raises(CheckpointError, match="not a readable torch checkpoint"):
        appeal.load_nima(junk)
    imagenet_head = tmp_path / "imagenet.pth"
    torch.save(torchvision.models.mobilenet_v2().state_dict(), imagenet_head)
    with pytest.raises(CheckpointError, match=r"wrong shape.*classifier\.1\."):
        appeal.load_nima(imagenet_head)
    other_layout = tmp_path / "resnet.pth"
    torch.save(torchvision.models.resnet18(num_classes=10).state_dict(), other_layout)
    with pytest.raises(CheckpointError, match="missing keys"):
        appeal.load_nima(other_layout)
    with pytest.raises(CheckpointError, match="no such file"):
        appeal.load_nima(tmp_path / "absent.pth")
