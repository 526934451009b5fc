"""Natural-scene statistics that BRISQUE and NIQE share: the 7x7 Gaussian of their local
moments, per-map moment sums of MSCN coefficients, and the asymmetric generalised Gaussian (AGGD)
fit whose shape is solved from a moment ratio.  Everything here is differentiable torch."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

GAUSS_SIZE, GAUSS_SIGMA = 7, 7 / 6
# The normalised 7x7 kernel of both models is the outer product of these normalised 1-D taps.
_CENTRE = GAUSS_SIZE // 2
_GAUSS = [math.exp(-((k - _CENTRE) ** 2) / (2 * GAUSS_SIGMA**2)) for k in range(GAUSS_SIZE)]
GAUSS_TAPS = tuple(g / sum(_GAUSS) for g in _GAUSS)
# Guards moments of all-zero maps (flat images) against 0/0 and sqrt'(0).
MOMENT_EPS = 1e-12
# Shape parameters are solved within this range (natural photos give ~0.3 to ~4).
SHAPE_MIN, SHAPE_MAX = 0.05, 20.0
SHAPE_TABLE_SIZE = 256
NEWTON_STEPS = 2


def log_moment_ratio(alpha: Tensor) -> Tensor:
    """log r(a) with r(a) = G(2/a)^2 / (G(1/a) G(3/a)), increasing from 0 to 3/4."""
    # One lgamma over the three arguments stacked: same values, a third of the graph nodes.
    g1, g2, g3 = torch.lgamma(torch.stack((1 / alpha, 2 / alpha, 3 / alpha)))
    return 2 * g2 - g1 - g3


def log_moment_ratio_slope(alpha: Tensor) -> Tensor:
    """d log r / d log a."""
    p1, p2, p3 = torch.digamma(torch.stack((1 / alpha, 2 / alpha, 3 / alpha)))
    return (p1 + 3 * p3 - 4 * p2) / alpha


def separable(planes: Tensor, taps: tuple[float, ...], stride: int = 1) -> Tensor:
    """Valid correlation of a (B, 1, h, w) batch with ``taps`` along rows then columns.

    A depthwise convolution (one group per image) is several times faster on CPU than a conv2d
    with a single input channel, in both directions."""
    n, _, h, w = planes.shape
    kernel = torch.tensor(taps, dtype=planes.dtype, device=planes.device)
    x = planes.reshape(1, n, h, w)
    x = F.conv2d(x, kernel.view(1, 1, -1, 1).expand(n, 1, -1, 1), stride=(stride, 1), groups=n)
    x = F.conv2d(x, kernel.view(1, 1, 1, -1).expand(n, 1, 1, -1), stride=(1, stride), groups=n)
    return x.view(n, 1, *x.shape[-2:])


def map_sums(x: Tensor) -> Tensor:
    """(B, 4) per image of a (B, ...) map: the count of negative values, the sum of their
    squares, the sum of squares and the sum of absolute values."""
    x = x.flatten(1)
    # A mask, not boolean indexing, keeps the batch; zeros count as right, as in the package.
    is_left = x < 0
    square = x * x
    n_left = torch.count_nonzero(is_left, 1).to(x.dtype)
    return torch.stack((n_left, (square * is_left).sum(1), square.sum(1), x.abs().sum(1)), 1)


def aggd_moments(sums: Tensor, counts: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """The moment ratio whose inverse is the asymmetric GGD shape, and the left and right
    variances sigma_l^2, sigma_r^2, from (..., 4) :func:`map_sums` of maps of ``counts``
    values each (both broadcast)."""
    n_left, left_sum, total_sum, abs_sum = sums.unbind(-1)
    left = left_sum / n_left.clamp_min(1)
    right = (total_sum - left_sum).clamp_min(0) / (counts - n_left).clamp_min(1)
    r_hat = (abs_sum / counts) ** 2 / (total_sum / counts + MOMENT_EPS)
    gamma_hat = torch.sqrt((left + MOMENT_EPS) / (right + MOMENT_EPS))
    ratio = r_hat * (gamma_hat**3 + 1) * (gamma_hat + 1) / (gamma_hat**2 + 1) ** 2
    return ratio, left, right


def shape_table() -> tuple[Tensor, Tensor]:
    """(log shapes, log r) on a log-spaced float64 grid: the Newton inversion's first guess.
    Victims keep it as buffers, so that it follows their device and exported graphs."""
    log_shapes = torch.linspace(math.log(SHAPE_MIN), math.log(SHAPE_MAX), SHAPE_TABLE_SIZE, dtype=torch.float64)
    return log_shapes, log_moment_ratio(log_shapes.exp())


def invert_moment_ratio(ratio: Tensor, table_log_shape: Tensor, table_log_ratio: Tensor) -> Tensor:
    """The shape a with r(a) = ratio: table guess, Newton in log space, implicit gradient."""
    table_u = table_log_shape.to(ratio.dtype)
    table_r = table_log_ratio.to(ratio.dtype)
    log_ratio = ratio.clamp_min(MOMENT_EPS).log().clamp(table_r[0], table_r[-1])
    with torch.no_grad():
        hi = torch.searchsorted(table_r, log_ratio).clamp(1, len(table_r) - 1)
        weight = (log_ratio - table_r[hi - 1]) / (table_r[hi] - table_r[hi - 1])
        u = torch.lerp(table_u[hi - 1], table_u[hi], weight)
        for _ in range(NEWTON_STEPS):
            u = u - (log_moment_ratio(u.exp()) - log_ratio) / log_moment_ratio_slope(u.exp())
            u = u.clamp(table_u[0], table_u[-1])
        reached = log_moment_ratio(u.exp())
        slope = log_moment_ratio_slope(u.exp())
    # One more Newton step, with autograd: its value is the converged u, and its gradient is
    # the implicit-function derivative d u / d log_ratio = 1 / slope.
    return (u + (log_ratio - reached) / slope).exp()
