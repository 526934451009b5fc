"""BRISQUE (Mittal, Moorthy & Bovik 2012) as a differentiable, batched torch victim.

It reproduces the scorer of the ``brisque`` 0.2.0 package with the LIVE model shipped in its
wheel (``svm.txt``, ``normalize.pickle``, Apache-2.0), quirks included: MSCN with zero-padded
'same' 7x7 Gaussian convolutions and ``sqrt(|mu^2 - E[x^2]|)`` as local deviation; an
*asymmetric* GGD fit for the MSCN map too (its variance feature is ``(sl^2 + sr^2) / 2``); the
shape parameter solved from the moment ratio (here by Newton steps, not a root finder); the half
scale from cv2's cubic resize.  Only the package's model files are read; its code is not imported.

The package's left/right variances are means over the *count* of negative and non-negative
values, so the score jumps whenever a coefficient crosses zero.  Autograd sees the smooth part;
float32 rounding moves near-zero coefficients across zero, which costs ~0.01 points on photos
(0.2 on a bright, smooth microscopy image) against a float64 run.
"""

from __future__ import annotations

import math
import pickle
from importlib.util import find_spec
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from ..kernels.brisque import (
    MscnSpec,
    half_size,
    map_counts,
    mscn_moment_sums,
    runs_eagerly,
    weighted_channels,
)
from .geometry import orientation_geometry, resize
from .nss import (
    GAUSS_SIZE,
    GAUSS_TAPS,
    MOMENT_EPS,
    aggd_moments,
    invert_moment_ratio,
    log_moment_ratio,
    map_sums,
    separable,
    shape_table,
)
from .objectives import QualityRegressor

NUM_FEATURES = 36  # 18 per scale, two scales
# skimage.color.rgb2gray weights, which the package applies to the RGB photo.
GRAY_WEIGHTS = (0.2125, 0.7154, 0.0721)
# The package's MSCN stabiliser, for grey levels in [0, 1].
MSCN_C = 1 / 255
# cv2.resize(fx=0.5, INTER_CUBIC) puts every output pixel half-way between two input pixels, so
# the cubic (a = -0.75) weights are fixed: distances 1.5, 0.5, 0.5, 1.5.
HALF_CUBIC = (-0.09375, 0.59375, 0.59375, -0.09375)
# Smooth |v|^(1/2) = (v^2 + eps^2)^(1/4): finite gradient where the local variance is 0 (flat
# areas); the floor sqrt(eps) = 1e-5 is 0.3% of MSCN_C, where the MSCN numerator is ~0 anyway.
VAR_EPS = 1e-10
MAPS_PER_SCALE = 5  # the MSCN map and its four neighbour products
MSCN_SPEC = MscnSpec(GAUSS_TAPS, MSCN_C, VAR_EPS, HALF_CUBIC)


def _half_scale(gray: Tensor) -> Tensor:
    """cv2.resize(gray, fx=0.5, fy=0.5, INTER_CUBIC) of a (B, 1, h, w) batch."""
    h, w = gray.shape[-2:]
    # cv2 replicates the border.
    out_h, out_w = half_size(h, w)
    padded = F.pad(gray, (1, 2 * out_w - w + 1, 1, 2 * out_h - h + 1), mode="replicate")
    return separable(padded, HALF_CUBIC, stride=2)


def _with_neighbour_products(m: Tensor) -> tuple[Tensor, ...]:
    """A (B, h, w) MSCN map and its horizontal, vertical and two diagonal neighbour products."""
    return (
        m,
        m[:, :, :-1] * m[:, :, 1:],
        m[:, :-1, :] * m[:, 1:, :],
        m[:, :-1, :-1] * m[:, 1:, 1:],
        m[:, 1:, :-1] * m[:, :-1, 1:],
    )


def _map_counts(like: Tensor, size: tuple[int, int]) -> Tensor:
    """(2, 5): values per map of an (h, w) image at both scales, as a tensor like ``like``."""
    return like.new_tensor([map_counts(*size), map_counts(*half_size(*size))])


def _model_dir() -> Path:
    """The ``brisque`` wheel's model folder, found without importing the package: its
    ``__init__`` imports cv2 and libsvm, which the engine does not need."""
    spec = find_spec("brisque")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError("the brisque package (for its model files) is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / "models"


def _read_svr(text: str) -> tuple[float, float, Tensor, Tensor]:
    """(gamma, rho, coefficients (n,), support vectors (n, 36)) of a libsvm RBF epsilon-SVR."""
    header, _, body = text.partition("\nSV\n")
    fields = dict(line.split(maxsplit=1) for line in header.splitlines())
    if fields.get("svm_type") != "epsilon_svr" or fields.get("kernel_type") != "rbf":
        raise ValueError("expected a libsvm epsilon_svr model with an rbf kernel")
    rows = [line.split() for line in body.splitlines() if line.strip()]
    if len(rows) != int(fields["total_sv"]):
        raise ValueError(f"{len(rows)} support vectors, the header says {fields['total_sv']}")
    coef = torch.tensor([float(row[0]) for row in rows], dtype=torch.float64)
    support = torch.zeros(len(rows), NUM_FEATURES, dtype=torch.float64)
    for i, row in enumerate(rows):
        # Sparse "index:value" pairs, 1-based; absent features are 0.
        for pair in row[1:]:
            index, value = pair.split(":")
            support[i, int(index) - 1] = float(value)
    return float(fields["gamma"]), float(fields["rho"]), coef, support


class Brisque(QualityRegressor):
    """BRISQUE on the grey photo at its own resolution (or, with ``long_side`` and
    ``short_side``, resized to that size per orientation); higher = worse.

    With ``long_side`` and ``short_side`` unset (the default) every photo is read at its own
    resolution, as standard BRISQUE implementations do.  ``fused`` (default) computes the
    per-pixel part with the streaming kernel of :mod:`camo_engine.kernels.brisque`, whose memory
    stays bounded for 12-megapixel photos; tracing and export (``torch.export``, ``make_fx``,
    dispatch modes) see the plain torch formulation, which gives the same values (``fused=False``
    forces it).

    Default calibration, like the paper's KonCept 50 / target 30 on a 0-100 scale: a photo
    counts as low quality from ``threshold=50``, well above where real photos score after JPEG
    90, and the attack aims at ``target=70``, 20 points into the low side so that the effect
    survives re-encoding (the scores behind it: benchmarks/NOTES.md, "BRISQUE calibration").
    """

    name = "brisque"
    # Every standard BRISQUE (the paper, OpenCV, MATLAB, the brisque package) reads the photo at
    # its own resolution; OpenCV's rounds the grey to uint8; the engine's former view was a
    # fixed 512x384 downscale.
    deployment_readings = ("own", "fixed:512x384", "gray8")

    def __init__(
        self,
        threshold: float = 50.0,
        target: float = 70.0,
        long_side: int | None = None,
        short_side: int | None = None,
        fused: bool = True,
    ) -> None:
        super().__init__(threshold, target, higher_is_worse=True)
        if (long_side is None) != (short_side is None):
            raise ValueError(
                "brisque: give both long_side and short_side, or neither for native resolution"
            )
        self.long_side = long_side
        self.short_side = short_side
        self.fused = fused
        models = _model_dir()
        self.gamma, self.rho, coef, support = _read_svr((models / "svm.txt").read_text())
        limits = pickle.loads((models / "normalize.pickle").read_bytes())
        low = torch.tensor(limits["min_"], dtype=torch.float64)
        high = torch.tensor(limits["max_"], dtype=torch.float64)
        if low.shape != (NUM_FEATURES,) or high.shape != (NUM_FEATURES,):
            raise ValueError("normalize.pickle must hold 36 'min_' and 36 'max_' values")

        self.register_buffer("coef", coef)
        self.register_buffer("support", support)
        self.register_buffer("feature_min", low)
        self.register_buffer("feature_scale", 2 / (high - low))

        # log r on a log-spaced grid of shapes: the initial guess of the Newton inversion.
        table_u, table_r = shape_table()
        self.register_buffer("table_log_shape", table_u)
        self.register_buffer("table_log_ratio", table_r)

    @property
    def native(self) -> bool:
        """Whether photos are read at their own resolution."""
        return self.long_side is None

    def geometry(self, height: int, width: int) -> tuple[int, int]:
        if self.long_side is None or self.short_side is None:
            return height, width
        return orientation_geometry(height, width, self.long_side, self.short_side)

    def preprocess(self, image: Tensor) -> Tensor:
        return self.normalise(resize(image, self.geometry(image.shape[1], image.shape[2])))

    def normalise(self, view: Tensor) -> Tensor:
        return weighted_channels(view, GRAY_WEIGHTS)

    def network(self, batch: Tensor) -> Tensor:
        # Runs in the batch's precision, at least float32: bf16 (autocast or input) would turn
        # the local variances into noise.
        with torch.autocast(batch.device.type, enabled=False):
            gray = batch.to(torch.promote_types(batch.dtype, torch.float32))
            if self.fused and runs_eagerly(gray):
                sums = mscn_moment_sums(gray.flatten(0, 1), MSCN_SPEC)
            else:
                sums = self._moment_sums(gray)
            return self._svr(self._features(sums, _map_counts(gray, gray.shape[-2:]))).to(gray.dtype)

    def network_mixed(self, inputs: Sequence[Tensor]) -> Tensor:
        """``network`` for preprocessed (1, h_i, w_i) inputs of different sizes, in one call: the
        fused kernel shares all their bands out to its threads together.

        Shape:
            - Output: (B,) scores, in input order.
        """
        grays = [x.to(torch.promote_types(x.dtype, torch.float32)) for x in inputs]
        if not (self.fused and all(runs_eagerly(g) for g in grays)):
            return torch.cat([self.network(x[None]) for x in inputs])
        with torch.autocast(grays[0].device.type, enabled=False):
            sums = mscn_moment_sums([g.flatten(0, 1) for g in grays], MSCN_SPEC)
            counts = torch.stack([_map_counts(sums, g.shape[-2:]) for g in grays])
            return self._svr(self._features(sums, counts)).to(sums.dtype)

    def _moment_sums(self, gray: Tensor) -> Tensor:
        """The plain-op formulation of :func:`mscn_moment_sums` for a (B, 1, h, w) batch."""
        scales = (self._mscn(gray), self._mscn(_half_scale(gray)))
        return torch.stack(
            [torch.stack([map_sums(x) for x in _with_neighbour_products(m)], 1) for m in scales],
            1,
        )

    def _svr(self, features: Tensor) -> Tensor:
        """Scale the (B, 36) features to [-1, 1] and apply the RBF epsilon-SVR."""
        # It adds 770 terms of up to +-1024 into a score of ~0-100: float32 would leave ~0.005
        # points of rounding noise that even depends on the batch size.  In float64 this
        # (B, 36) x (36, 770) head costs nothing.
        low, scale = self.feature_min.double(), self.feature_scale.double()
        support, coef = self.support.double(), self.coef.double()
        scaled = (features.double() - low) * scale - 1
        dist2 = (scaled**2).sum(1, keepdim=True) + (support**2).sum(1) - 2 * scaled @ support.T
        return torch.exp(-self.gamma * dist2.clamp_min(0)) @ coef - self.rho

    def _mscn(self, gray: Tensor) -> Tensor:
        """Mean-subtracted contrast-normalised coefficients (B, h, w) of a (B, 1, h, w) batch."""
        pad = GAUSS_SIZE // 2
        # Zero padding, as convolve2d 'same' does.
        padded = F.pad(gray, (pad, pad, pad, pad))
        mean, second = separable(torch.cat([padded, padded * padded]), GAUSS_TAPS).chunk(2)
        var = second - mean * mean
        # sqrt(|var|), smoothed so that its gradient stays finite where var = 0.
        deviation = torch.sqrt(torch.sqrt(var * var + VAR_EPS**2))
        return ((gray - mean) / (deviation + MSCN_C))[:, 0]

    def _features(self, sums: Tensor, counts: Tensor) -> Tensor:
        """The (B, 36) features from the (B, 2, 5, 4) moment sums of maps of ``counts``
        values ((2, 5), or (B, 2, 5) for images of different sizes).  Per scale's MSCN map: its
        shape and variance, then shape, mean, left and right variance of the horizontal,
        vertical and two diagonal neighbour products.

        The shapes of all maps are solved in one batched call, so the special functions appear
        once in the graph rather than once per map.
        """
        ratio, left, right = (t.flatten(1) for t in aggd_moments(sums, counts))
        shape = invert_moment_ratio(ratio, self.table_log_shape, self.table_log_ratio)
        sigma_l = torch.sqrt(left + MOMENT_EPS)
        sigma_r = torch.sqrt(right + MOMENT_EPS)
        # The package's (sr - sl) sqrt(G(1/a) / G(3/a)) G(2/a) / G(1/a) is (sr - sl) sqrt(r(a)).
        mean = (sigma_r - sigma_l) * torch.exp(log_moment_ratio(shape) / 2)
        fits = torch.stack([shape, mean, left, right], 2)  # (B, maps, 4)
        columns = []
        for first in range(0, ratio.shape[1], MAPS_PER_SCALE):
            variance = (left[:, first] + right[:, first]) / 2
            products = fits[:, first + 1 : first + MAPS_PER_SCALE].flatten(1)
            columns += [shape[:, first, None], variance[:, None], products]
        return torch.cat(columns, 1)

def load_brisque(**kwargs: Any) -> Brisque:
    """The BRISQUE victim with the LIVE model from the ``brisque`` wheel."""
    return Brisque(**kwargs)
