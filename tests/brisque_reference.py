"""A plain float64 NumPy/SciPy BRISQUE, written from the paper and the ``brisque`` 0.2.0 scorer,
independent of the torch victim: 2-D convolutions, explicit index-based cubic interpolation,
a bracketing root finder for the shape parameter and SciPy distances for the SVR."""

from __future__ import annotations

import pickle
from functools import cache
from importlib.util import find_spec
from pathlib import Path

import numpy as np
from scipy import optimize, signal, special
from scipy.spatial.distance import cdist

C = 1 / 255


def rgb_to_gray(rgb: np.ndarray) -> np.ndarray:
    """skimage.color.rgb2gray of an (h, w, 3) float image in [0, 1]."""
    return rgb @ np.array([0.2125, 0.7154, 0.0721])


def gaussian_kernel(size: int = 7, sigma: float = 7 / 6) -> np.ndarray:
    y, x = np.indices((size, size)) - size // 2
    kernel = np.exp(-(x**2 + y**2) / (2 * sigma**2))
    return kernel / kernel.sum()


def mscn(gray: np.ndarray) -> np.ndarray:
    kernel = gaussian_kernel()
    mu = signal.convolve2d(gray, kernel, "same")
    second = signal.convolve2d(gray**2, kernel, "same")
    return (gray - mu) / (np.sqrt(np.abs(mu**2 - second)) + C)


def moment_ratio(alpha: float) -> float:
    return special.gamma(2 / alpha) ** 2 / (special.gamma(1 / alpha) * special.gamma(3 / alpha))


def aggd_fit(x: np.ndarray) -> tuple[float, float, float, float]:
    """(alpha, mean, sigma_l^2, sigma_r^2) by moment matching, as in the package."""
    x = x.ravel()
    left_sq = np.mean(x[x < 0] ** 2)
    right_sq = np.mean(x[x >= 0] ** 2)
    r_hat = np.mean(np.abs(x)) ** 2 / np.mean(x**2)
    g = np.sqrt(left_sq) / np.sqrt(right_sq)
    big_r = r_hat * (g**3 + 1) * (g + 1) / (g**2 + 1) ** 2
    # The shape is sought in [0.05, 20], as the victim does; a ratio beyond the bracket (a map
    # flatter than a shape-20 GGD, as attacks can make) takes the bracket's end.
    gap = lambda a: moment_ratio(a) - big_r  # noqa: E731 - increasing in a
    lo, hi = 0.05, 20.0
    alpha = lo if gap(lo) >= 0 else hi if gap(hi) <= 0 else optimize.brentq(gap, lo, hi, xtol=1e-14)
    sigma_l, sigma_r = np.sqrt(left_sq), np.sqrt(right_sq)
    constant = np.sqrt(special.gamma(1 / alpha) / special.gamma(3 / alpha))
    mean = (sigma_r - sigma_l) * constant * special.gamma(2 / alpha) / special.gamma(1 / alpha)
    return alpha, mean, left_sq, right_sq


def scale_features(gray: np.ndarray) -> list[float]:
    m = mscn(gray)
    alpha, _, left_sq, right_sq = aggd_fit(m)
    features = [alpha, (left_sq + right_sq) / 2]
    for product in (
        m[:, :-1] * m[:, 1:],
        m[:-1, :] * m[1:, :],
        m[:-1, :-1] * m[1:, 1:],
        m[1:, :-1] * m[:-1, 1:],
    ):
        features.extend(aggd_fit(product))
    return features


def cubic_weight(d: np.ndarray, a: float = -0.75) -> np.ndarray:
    """Keys' cubic convolution kernel, OpenCV's a = -0.75."""
    d = np.abs(d)
    near = (a + 2) * d**3 - (a + 3) * d**2 + 1
    far = a * d**3 - 5 * a * d**2 + 8 * a * d - 4 * a
    return np.where(d <= 1, near, np.where(d < 2, far, 0.0))


def cubic_half_1d(x: np.ndarray, axis: int) -> np.ndarray:
    """OpenCV INTER_CUBIC at scale 1/2 along one axis: pixel-centre mapping, clamped border."""
    n = x.shape[axis]
    out = round(n / 2)
    src = (np.arange(out) + 0.5) * 2 - 0.5
    base = np.floor(src).astype(int)
    taps = base[:, None] + np.arange(-1, 3)[None, :]
    weights = cubic_weight(src[:, None] - taps)
    moved = np.moveaxis(x, axis, 0)
    result = np.einsum("ot,ot...->o...", weights, moved[np.clip(taps, 0, n - 1)])
    return np.moveaxis(result, 0, axis)


def half_scale(gray: np.ndarray) -> np.ndarray:
    return cubic_half_1d(cubic_half_1d(gray, 0), 1)


@cache
def model() -> tuple[float, float, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(gamma, rho, coefficients, support vectors, feature min, feature max)."""
    # Located, not imported: the package's __init__ needs cv2 and libsvm.
    folder = Path(next(iter(find_spec("brisque").submodule_search_locations))) / "models"
    lines = (folder / "svm.txt").read_text().splitlines()
    start = lines.index("SV")
    header = dict(line.split(" ", 1) for line in lines[:start])
    coefs, vectors = [], []
    for line in lines[start + 1 :]:
        if not line.strip():
            continue
        coef, *pairs = line.split()
        vector = np.zeros(36)
        for pair in pairs:
            index, value = pair.split(":")
            vector[int(index) - 1] = float(value)
        coefs.append(float(coef))
        vectors.append(vector)
    limits = pickle.loads((folder / "normalize.pickle").read_bytes())
    return (
        float(header["gamma"]),
        float(header["rho"]),
        np.array(coefs),
        np.array(vectors),
        np.array(limits["min_"], dtype=float),
        np.array(limits["max_"], dtype=float),
    )


def features(gray: np.ndarray) -> np.ndarray:
    """The 36 raw BRISQUE features of a grey image in [0, 1]."""
    return np.array(scale_features(gray) + scale_features(half_scale(gray)))


def score_gray(gray: np.ndarray) -> float:
    gamma, rho, coefs, vectors, low, high = model()
    scaled = -1 + 2 * (features(gray) - low) / (high - low)
    kernel = np.exp(-gamma * cdist(scaled[None], vectors, "sqeuclidean")[0])
    return float(kernel @ coefs - rho)


def score(rgb: np.ndarray) -> float:
    """BRISQUE score of an (h, w, 3) float RGB image in [0, 1]; higher is worse."""
    return score_gray(rgb_to_gray(np.asarray(rgb, dtype=np.float64)))
