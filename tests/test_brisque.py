"""The differentiable BRISQUE victim against a float64 NumPy reference and the ``brisque``
package's own scorer, plus its gradients, batching and calibration."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from brisque_reference import score as reference_score
from camo_engine.io import jpeg
from camo_engine.samples import sample_paths
from camo_engine.victims import load_victim
from camo_engine.victims.brisque import Brisque, _half_scale, load_brisque
from camo_engine.victims.geometry import resize
from skimage import data

# The shared sample photos (keyed by file stem, as the ``photos`` fixture does), skimage's grey
# photos, and a microscopy image whose bright smooth background is the hardest case for float32.
GREY = ("camera", "coins")
PHOTO_NAMES = [path.stem for path in sample_paths()] + [*GREY, "immunohistochemistry"]


def to_tensor(rgb: np.ndarray) -> torch.Tensor:
    """(H, W, 3) uint8 -> (3, H, W) float32 in [0, 1]."""
    return torch.tensor(rgb).permute(2, 0, 1).float() / 255


def to_array(image: torch.Tensor) -> np.ndarray:
    """(3, h, w) tensor -> (h, w, 3) float64 array, as the NumPy scorers take it."""
    return image.permute(1, 2, 0).double().numpy()


@pytest.fixture(scope="module")
def victim() -> Brisque:
    # The fixed 512x384 view (one of BRISQUE's deployment readings): these checks batch and
    # compare at one geometry; the native default is checked in test_robust and test_brisque_fast.
    return load_brisque(long_side=512, short_side=384)


@pytest.fixture(scope="module")
def brisque_photos(photos: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    grey = {name: np.repeat(getattr(data, name)()[..., None], 3, axis=2) for name in GREY}
    return {**photos, **grey, "immunohistochemistry": data.immunohistochemistry()}


@pytest.fixture(scope="module")
def views(victim: Brisque, brisque_photos: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    """Each photo's RGB at the victim geometry: exactly what ``preprocess`` turns grey."""
    out = {}
    for name, rgb in brisque_photos.items():
        image = to_tensor(rgb)
        out[name] = resize(image, victim.geometry(image.shape[1], image.shape[2]))
    return out


@pytest.fixture(scope="module")
def package_scorer():
    """The brisque package's own scorer (cv2 + libsvm), repaired for NumPy 2."""
    pytest.importorskip("cv2")
    pytest.importorskip("libsvm")
    from brisque import brisque as package

    class Scorer(package.BRISQUE):
        def scale_features(self, features):
            # Its AGGD fit returns one-element arrays, and NumPy 2 refuses float() on them.
            return super().scale_features([np.ravel(f)[0] for f in features])

    return Scorer(url=False)


def scores(victim: Brisque, images: list[torch.Tensor]) -> torch.Tensor:
    with torch.no_grad():
        return victim(torch.stack(images))


def test_at_least_ten_photos() -> None:
    assert len(PHOTO_NAMES) >= 10


@pytest.mark.parametrize("name", PHOTO_NAMES)
def test_score_matches_float64_reference(
    name: str,
    victim: Brisque,
    brisque_photos: dict[str, np.ndarray],
    views: dict[str, torch.Tensor],
) -> None:
    # The victim resizes the full photo itself; the reference gets the resized RGB.
    ours = float(scores(victim, [to_tensor(brisque_photos[name])])[0])
    assert ours == pytest.approx(reference_score(to_array(views[name])), abs=0.5)


@pytest.mark.parametrize("name", PHOTO_NAMES)
def test_score_matches_brisque_package(
    name: str, victim: Brisque, views: dict[str, torch.Tensor], package_scorer
) -> None:
    # Float RGB in [0, 1]: rgb2gray keeps it as is, so the package sees our grey levels exactly
    # (uint8 would re-quantise them).
    ours = float(scores(victim, [views[name]])[0])
    assert ours == pytest.approx(float(package_scorer.score(to_array(views[name]))), abs=1.0)


@pytest.mark.parametrize("size", [(384, 512), (9, 11), (7, 8), (3, 3)])
def test_half_scale_is_cv2_cubic(size: tuple[int, int]) -> None:
    cv2 = pytest.importorskip("cv2")
    gray = np.random.default_rng(0).random(size)
    expected = cv2.resize(gray, None, fx=0.5, fy=0.5, interpolation=cv2.INTER_CUBIC)
    ours = _half_scale(torch.from_numpy(gray)[None, None])[0, 0].numpy()
    np.testing.assert_allclose(ours, expected, rtol=0, atol=1e-12)


def test_gradient_matches_finite_differences(brisque_photos: dict[str, np.ndarray]) -> None:
    # A small geometry keeps the float64 copy fast; the crop is downscaled, as photos are.
    victim = Brisque(long_side=128, short_side=96).double()
    image = torch.from_numpy(brisque_photos["china"][100:220, 200:360] / 255.0).permute(2, 0, 1)

    x = image.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(victim(x[None])[0], x)
    rng = np.random.default_rng(0)
    pixels = [tuple(int(rng.integers(n)) for n in image.shape) for _ in range(6)]
    pixels += [np.unravel_index(int(i), image.shape) for i in grad.abs().flatten().topk(4).indices]
    eps = 1e-5
    steps = torch.zeros(len(pixels), *image.shape, dtype=image.dtype)
    for step, pixel in zip(steps, pixels):
        step[pixel] = eps
    with torch.no_grad():
        up, down = victim(image + steps), victim(image - steps)
    numeric = (up - down) / (2 * eps)
    analytic = torch.stack([grad[pixel] for pixel in pixels])
    torch.testing.assert_close(analytic, numeric, rtol=0, atol=1e-3 * float(grad.abs().max()))


@pytest.mark.parametrize(
    "image",
    [
        torch.full((3, 96, 128), 0.5),
        torch.rand(3, 8, 8, generator=torch.Generator().manual_seed(0)),
    ],
    ids=["flat-grey", "tiny-8x8"],
)
def test_gradient_is_finite_and_nonzero(victim: Brisque, image: torch.Tensor) -> None:
    x = image.clone().requires_grad_(True)
    outputs = victim(x[None])
    loss = victim.loss(outputs, victim.reference(outputs, outputs))
    (grad,) = torch.autograd.grad(loss.sum(), x)
    assert torch.isfinite(outputs).all()
    assert torch.isfinite(grad).all()
    assert grad.abs().max() > 0


def test_batch_matches_one_at_a_time(victim: Brisque, views: dict[str, torch.Tensor]) -> None:
    batch = [views[name] for name in ("astronaut", "chelsea", "coffee")]
    together = scores(victim, batch)
    alone = torch.cat([scores(victim, [view]) for view in batch])
    # Only float32 summation order may differ (measured 5e-5); mixing images up moves points.
    torch.testing.assert_close(together, alone, rtol=0, atol=1e-3)


def test_bf16_autocast_does_not_reach_the_model(
    victim: Brisque, views: dict[str, torch.Tensor]
) -> None:
    batch = victim.preprocess(views["coffee"])[None]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        autocast = victim.network(batch)
    assert autocast.dtype == torch.float32
    torch.testing.assert_close(autocast, victim.network(batch))


def test_sample_photos_stay_well_below_threshold_after_jpeg90(
    victim: Brisque, photos: dict[str, np.ndarray]
) -> None:
    # The defaults' premise, as the README states it: every bundled photo re-encoded at JPEG 90
    # (the engine's own re-encode, which every verdict goes through) scores <= 35, well below 50.
    worst = max(float(scores(victim, [to_tensor(jpeg.roundtrip(rgb, 90))])[0]) for rgb in photos.values())
    assert worst <= 35 < victim.threshold


def test_registry_and_objective() -> None:
    victim = load_victim("brisque", threshold=45.0, target=65.0)
    assert isinstance(victim, Brisque) and victim.name == "brisque"
    # Native resolution by default, as every standard BRISQUE reads a photo.
    assert victim.geometry(600, 400) == (600, 400) and victim.preprocess(torch.rand(3, 40, 30)).shape == (1, 40, 30)
    fixed = load_victim("brisque", long_side=512, short_side=384)
    assert fixed.geometry(600, 400) == (512, 384) and fixed.geometry(400, 600) == (384, 512)
    assert fixed.preprocess(torch.rand(3, 40, 30)).shape == (1, 512, 384)
    outputs = torch.tensor([44.9, 45.0, 80.0])
    protected = victim.is_protected(outputs, victim.reference(outputs, outputs))
    assert protected.tolist() == [False, True, True]
