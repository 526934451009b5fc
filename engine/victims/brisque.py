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
from .objectives import QualityRegressor

NUM_FEATURES = 36  # 18 per scale, two scales
# skimage.color.rgb2gray weights, which the package applies to the RGB photo.
GRAY_WEIGHTS = (0.2125, 0.7154, 0.0721)
# The package's MSCN stabiliser, for grey levels in [0, 1].
MSCN_C = 1 / 255
GAUSS_SIZE, GAUSS_SIGMA = 7, 7 / 6
# The package's normalised 7x7 kernel is the outer product of these normalised 1-D taps.
_CENTRE = GAUSS_SIZE // 2
_GAUSS = [math.exp(-((k - _CENTRE) ** 2) / (2 * GAUSS_SIGMA**2)) for k in range(GAUSS_SIZE)]
GAUSS_TAPS = tuple(g / sum(_GAUSS) for g in _GAUSS)
# cv2.resize(fx=0.5, INTER_CUBIC) puts every output pixel half-way between two input pixels, so
# the cubic (a = -0.75) weights are fixed: distances 1.5, 0.5, 0.5, 1.5.
HALF_CUBIC = (-0.09375, 0.59375, 0.59375, -0.09375)
# Smooth |v|^(1/2) = (v^2 + eps^2)^(1/4): finite gradient where the local variance is 0 (flat
# areas); the floor sqrt(eps) = 1e-5 is 0.3% of MSCN_C, where the MSCN numerator is ~0 anyway.
VAR_EPS = 1e-10
# Guards moments of all-zero maps (flat images) against 0/0 and sqrt'(0).
MOMENT_EPS = 1e-12
# Shape parameters are solved within this range (natural photos give ~0.3 to ~4).
SHAPE_MIN, SHAPE_MAX = 0.05, 20.0
SHAPE_TABLE_SIZE = 256
NEWTON_STEPS = 2
MAPS_PER_SCALE = 5  # the MSCN map and its four neighbour products
MSCN_SPEC = MscnSpec(GAUSS_TAPS, MSCN_C, VAR_EPS, HALF_CUBIC)


def _log_moment_ratio(alpha: Tensor) -> Tensor:
    """log r(a) with r(a) = G(2/a)^2 / (G(1/a) G(3/a)), increasing from 0 to 3/4."""
    # One lgamma over the three arguments stacked: same values, a third of the graph nodes.
    g1, g2, g3 = torch.lgamma(torch.stack((1 / alpha, 2 / alpha, 3 / alpha)))
    return 2 * g2 - g1 - g3


def _log_moment_ratio_slope(alpha: Tensor) -> Tensor:
    """d log r / d log a."""
    p1, p2, p3 = torch.digamma(torch.stack((1 / alpha, 2 / alpha, 3 / alpha)))
    return (p1 + 3 * p3 - 4 * p2) / alpha


def _separable(planes: Tensor, taps: tuple[float, ...], stride: int = 1) -> Tensor:
    """Valid correlation of a (B, 1, h, w) batch with ``taps`` along rows then columns.

    A depthwise convolution (one group per image) is several times faster on CPU than a conv2d
    with a single input channel, in both directions."""
    n, _, h, w = planes.shape
    kernel = torch.tensor(taps, dtype=planes.dtype, device=planes.device)
    x = planes.reshape(1, n, h, w)
    x = F.conv2d(x, kernel.view(1, 1, -1, 1).expand(n, 1, -1, 1), stride=(stride, 1), groups=n)
    x = F.conv2d(x, kernel.view(1, 1, 1, -1).expand(n, 1, 1, -1), stride=(1, stride), groups=n)
    return x.view(n, 1, *x.shape[-2:])


def _half_scale(gray: Tensor) -> Tensor:
    """cv2.resize(gray, fx=0.5, fy=0.5, INTER_CUBIC) of a (B, 1, h, w) batch."""
    h, w = gray.shape[-2:]
    # cv2 replicates the border.
    out_h, out_w = half_size(h, w)
    padded = F.pad(gray, (1, 2 * out_w - w + 1, 1, 2 * out_h - h + 1), mode="replicate")
    return _separable(padded, HALF_CUBIC, stride=2)


def _with_neighbour_products(m: Tensor) -> tuple[Tensor, ...]:
    """A (B, h, w) MSCN map and its horizontal, vertical and two diagonal neighbour products."""
    return (
        m,
        m[:, :, :-1] * m[:, :, 1:],
        m[:, :-1, :] * m[:, 1:, :],
        m[:, :-1, :-1] * m[:, 1:, 1:],
        m[:, 1:, :-1] * m[:, :-1, 1:],
    )


def _map_sums(x: Tensor) -> Tensor:
    """(B, 4) per image of a (B, ...) map: the count of negative values, the sum of their
    squares, the sum of squares and the sum of absolute values."""
    x = x.flatten(1)
    # A mask, not boolean indexing, keeps the batch; zeros count as right, as in the package.
    is_left = x < 0
    square = x * x
    n_left = torch.count_nonzero(is_left, 1).to(x.dtype)
    return torch.stack((n_left, (square * is_left).sum(1), square.sum(1), x.abs().sum(1)), 1)


def _aggd_moments(sums: Tensor, counts: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """The moment ratio whose inverse is the asymmetric GGD shape, and the left and right
    variances sigma_l^2, sigma_r^2, from (..., 4) :func:`_map_sums` of maps of ``counts``
    values each (both broadcast)."""
    n_left, left_sum, total_sum, abs_sum = sums.unbind(-1)
    left = left_sum / n_left.clamp_min(1)
    right = (total_sum - left_sum).clamp_min(0) / (counts - n_left).clamp_min(1)
    r_hat = (abs_sum / counts) ** 2 / (total_sum / counts + MOMENT_EPS)
    gamma_hat = torch.sqrt((left + MOMENT_EPS) / (right + MOMENT_EPS))
    ratio = r_hat * (gamma_hat**3 + 1) * (gamma_hat + 1) / (gamma_hat**2 + 1) ** 2
    return ratio, left, right


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
        log_shapes = torch.linspace(
            math.log(SHAPE_MIN), math.log(SHAPE_MAX), SHAPE_TABLE_SIZE, dtype=torch.float64
        )
        self.register_buffer("table_log_shape", log_shapes)
        self.register_buffer("table_log_ratio", _log_moment_ratio(log_shapes.exp()))

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
            [torch.stack([_map_sums(x) for x in _with_neighbour_products(m)], 1) for m in scales],
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
        mean, second = _separable(torch.cat([padded, padded * padded]), GAUSS_TAPS).chunk(2)
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
        ratio, left, right = (t.flatten(1) for t in _aggd_moments(sums, counts))
        shape = self._invert_moment_ratio(ratio)
        sigma_l = torch.sqrt(left + MOMENT_EPS)
        sigma_r = torch.sqrt(right + MOMENT_EPS)
        # The package's (sr - sl) sqrt(G(1/a) / G(3/a)) G(2/a) / G(1/a) is (sr - sl) sqrt(r(a)).
        mean = (sigma_r - sigma_l) * torch.exp(_log_moment_ratio(shape) / 2)
        fits = torch.stack([shape, mean, left, right], 2)  # (B, maps, 4)
        columns = []
        for first in range(0, ratio.shape[1], MAPS_PER_SCALE):
            variance = (left[:, first] + right[:, first]) / 2
            products = fits[:, first + 1 : first + MAPS_PER_SCALE].flatten(1)
            columns += [shape[:, first, None], variance[:, None], products]
        return torch.cat(columns, 1)

    def _invert_moment_ratio(self, ratio: Tensor) -> Tensor:
        """The shape a with r(a) = ratio: table guess, Newton in log space, implicit gradient."""
        table_u = self.table_log_shape.to(ratio.dtype)
        table_r = self.table_log_ratio.to(ratio.dtype)
        log_ratio = ratio.clamp_min(MOMENT_EPS).log().clamp(table_r[0], table_r[-1])
        with torch.no_grad():
            hi = torch.searchsorted(table_r, log_ratio).clamp(1, len(table_r) - 1)
            weight = (log_ratio - table_r[hi - 1]) / (table_r[hi] - table_r[hi - 1])
            u = torch.lerp(table_u[hi - 1], table_u[hi], weight)
            for _ in range(NEWTON_STEPS):
                u = u - (_log_moment_ratio(u.exp()) - log_ratio) / _log_moment_ratio_slope(u.exp())
                u = u.clamp(table_u[0], table_u[-1])
            reached = _log_moment_ratio(u.exp())
            slope = _log_moment_ratio_slope(u.exp())
        # One more Newton step, with autograd: its value is the converged u, and its gradient is
        # the implicit-function derivative d u / d log_ratio = 1 / slope.
        return (u + (log_ratio - reached) / slope).exp()


def load_brisque(**kwargs: Any) -> Brisque:
    """The BRISQUE victim with the LIVE model from the ``brisque`` wheel."""
    return Brisque(**kwargs)
