"""Texture: blending a crafted noise image into the photo, the 2019 HCMUS best-NIMA run.

The paper blends noise two ways: "x' = x (.) (alpha eps)" and, on the V channel of HSV,
"V' = V + alpha eps".  Read literally, the first scales the photo by the noise itself, which is
a gain of alpha * mean(eps) plus grain.  We read it as the grain part, ``x' = x (1 + alpha eps)``
with eps zero-mean: alpha = 0 is then the identity and alpha the grain strength, the same
family of images.  The second is kept as written: ``V' = V + alpha eps`` with hue and
saturation kept.

Noise images (one channel, zero mean, unit standard deviation, at the image's resolution, the
same for every image of a batch) are deterministic given ``seed``:

* ``gaussian``: white Gaussian noise;
* ``fractal``: value noise summed over octaves (Perlin-like blobs from coarse to fine);
* ``film-grain``: Gaussian noise blurred at sub-pixel scale, the clumped look of film grain.

The noise is made in NumPy from the image size alone, so under ONNX export (static height and
width, dynamic batch) it becomes a constant of the graph, and the module stays differentiable
w.r.t. the pixels.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import scipy.ndimage
import torch
from torch import Tensor

from .base import Enhancer, check_images, with_value

MODES = ("multiply", "value")
FRACTAL_OCTAVES = 5
FRACTAL_CELLS = 8  # the coarsest octave has this many cells along the longer side
GRAIN_SIGMA = 0.8  # pixels


def _gaussian(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    return rng.standard_normal((height, width))


def _fractal(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    total = np.zeros((height, width))
    for octave in range(FRACTAL_OCTAVES):
        cell = max(max(height, width) / (FRACTAL_CELLS * 2**octave), 1.0)
        grid = rng.random((int(np.ceil(height / cell)) + 2, int(np.ceil(width / cell)) + 2))
        smooth = scipy.ndimage.zoom(grid, cell, order=3, mode="nearest")  # cubic between cells
        total += smooth[:height, :width] * 0.5**octave
    return total


def _film_grain(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    return scipy.ndimage.gaussian_filter(rng.standard_normal((height, width)), GRAIN_SIGMA)


NOISES = {"gaussian": _gaussian, "fractal": _fractal, "film-grain": _film_grain}


def _check(noise: str, mode: str = MODES[0]) -> None:
    if noise not in NOISES:
        raise ValueError(f"unknown noise {noise!r}; choose one of {', '.join(NOISES)}")
    if mode not in MODES:
        raise ValueError(f"unknown texture mode {mode!r}; choose one of {', '.join(MODES)}")


@lru_cache(maxsize=8)  # an attack calls the enhancer every step at the same size
def noise_image(kind: str, height: int, width: int, seed: int = 0) -> np.ndarray:
    """A (height, width) float32 noise image with zero mean and unit standard deviation."""
    _check(kind)
    noise = NOISES[kind](np.random.default_rng(seed), height, width)
    noise = (noise - noise.mean()) / max(float(noise.std()), 1e-12)
    noise = noise.astype(np.float32)
    noise.flags.writeable = False
    return noise


def adjust_texture(
    images: Tensor,
    alpha: float = 0.05,
    noise: str = "film-grain",
    mode: str = "multiply",
    seed: int = 0,
) -> Tensor:
    """Blend seeded noise into ``images``: ``mode`` is ``multiply`` (RGB) or ``value`` (HSV V)."""
    check_images(images)
    _check(noise, mode)
    height, width = images.shape[-2:]
    eps = torch.tensor(noise_image(noise, int(height), int(width), seed), dtype=images.dtype)
    eps = eps.to(images.device)[None, None]
    images = images.clamp(0.0, 1.0)
    if mode == "multiply":
        return (images * (1.0 + alpha * eps)).clamp(0.0, 1.0)
    value = images.amax(dim=1, keepdim=True)
    return with_value(images, value, (value + alpha * eps).clamp(0.0, 1.0))


class AdjustTexture(Enhancer):
    """Module form of :func:`adjust_texture`."""

    name = "texture"
    differentiable = True

    def __init__(
        self, alpha: float = 0.05, noise: str = "film-grain", mode: str = "multiply", seed: int = 0
    ) -> None:
        super().__init__()
        _check(noise, mode)
        self.alpha, self.noise, self.mode, self.seed = alpha, noise, mode, seed

    def forward(self, images: Tensor) -> Tensor:
        return adjust_texture(images, self.alpha, self.noise, self.mode, self.seed)
