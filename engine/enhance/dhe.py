"""Dynamic histogram equalisation (Abdullah-Al-Wadud et al., IEEE TCE 2007) of the HSV value.

DHE equalises each part of the histogram separately so that no dominant part swallows the
others: (1) cut the 256-level histogram at the local minima of its 1x3-smoothed version;
(2) split any part whose levels within one standard deviation of its mean hold no more than
68.3% of its pixels (not normal-like) at mean - sd and mean + sd, and repeat; (3) give part i
the output span ``255 * f_i / sum(f)`` with ``f_i = span_i * log(M_i) ** x`` (``span_i`` its
number of levels, ``M_i`` its pixels); (4) equalise each part within its span,
``y = start_i + range_i * cdf_i(level)``.

It works on V = max(R, G, B) and scales RGB by V'/V, so hue and saturation are kept exactly and
no channel clips (V' <= 1).  Only the HSV-value histogram is used; DHE itself names none.

Gradients: the curve is a function of the histogram, whose gradient w.r.t. the pixels is zero
almost everywhere, so it is computed from detached pixels.  The curve is then applied by linear
interpolation between its 256 points, which is differentiable: the attack sees each image's
own fixed tone curve.  All of it is fixed-shape tensor work (the parts live in a mask over the
256 levels, the splitting runs a fixed number of rounds), so it exports to ONNX; no library
offers DHE, hence our own.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .base import Enhancer, check_images, with_value

LEVELS = 256
NORMAL_SHARE = 0.683  # share of a normal distribution's mass within one standard deviation


def _histograms(levels: Tensor) -> Tensor:
    """(B, N) int64 levels to (B, 256) float64 counts."""
    counts = torch.zeros(levels.shape[0], LEVELS, dtype=torch.float64, device=levels.device)
    return counts.scatter_add(1, levels, torch.ones_like(levels, dtype=torch.float64))


def _minima_starts(hist: Tensor) -> Tensor:
    """Part starts: level 0 and the level after each local minimum of the smoothed histogram."""
    padded = torch.nn.functional.pad(hist, (1, 1))
    smooth = padded[:, :-2] + padded[:, 1:-1] + padded[:, 2:]  # a 1x3 box filter, unscaled
    # A minimum is strictly below its left neighbour, so a flat valley gives one cut.
    minimum = (smooth[:, :-2] > smooth[:, 1:-1]) & (smooth[:, 1:-1] <= smooth[:, 2:])
    first = (torch.arange(2, device=hist.device) == 0).expand(hist.shape[0], 2)
    return torch.cat([first, minimum], dim=1)  # a minimum at level i (1..254) starts i + 1


def _parts(starts: Tensor) -> Tensor:
    """Each level's part index, (B, 256): parts are numbered from 0 in level order."""
    return torch.cumsum(starts.long(), dim=1) - 1


def _part_sums(values: Tensor, part: Tensor) -> Tensor:
    """Per-part sums (B, 256) of per-level ``values`` (B, 256); unused part slots stay 0."""
    return torch.zeros_like(values).scatter_add(1, part, values)


def _split_round(hist: Tensor, starts: Tensor, levels: Tensor) -> Tensor:
    """Split every part that is not normal-like at mean - sd and mean + sd, all parts at once."""
    part = _parts(starts)
    count = _part_sums(hist, part)
    level_mean = torch.gather(_part_sums(hist * levels, part) / count.clamp_min(1), 1, part)
    offset = levels - level_mean
    var = _part_sums(hist * offset**2, part) / count.clamp_min(1)
    level_sd = torch.gather(var.sqrt(), 1, part)
    within = _part_sums(hist * (offset.abs() <= level_sd), part)
    spread = torch.gather((within <= NORMAL_SHARE * count) & (count > 0), 1, part)
    # Each level is tested against its own part's cut points, so cuts never leave their part.
    cut = (levels == torch.ceil(level_mean - level_sd)) | (
        levels == torch.floor(level_mean + level_sd) + 1
    )
    return starts | (spread & cut)


def dhe_curves(levels: Tensor, emphasis: float = 1.0, rounds: int = 12) -> Tensor:
    """DHE tone curves, (B, 256) in [0, 1], for (B, N) int64 levels in 0..255.

    ``emphasis`` is the paper's x; ``rounds`` caps the repeated splitting (real photos settle
    in fewer).
    """
    hist = _histograms(levels)
    grey = torch.arange(LEVELS, dtype=torch.float64, device=levels.device)
    starts = _minima_starts(hist)
    for _ in range(rounds):
        starts = _split_round(hist, starts, grey)
    part = _parts(starts)
    count = _part_sums(hist, part)
    span = _part_sums(torch.ones_like(hist), part)
    factor = span * torch.log(count.clamp_min(1)) ** emphasis
    out_range = (LEVELS - 1) * factor / factor.sum(dim=1, keepdim=True).clamp_min(1e-12)
    out_start = torch.cumsum(out_range, dim=1) - out_range
    before = torch.cumsum(count, dim=1) - count  # pixels in earlier parts
    cdf = (torch.cumsum(hist, dim=1) - torch.gather(before, 1, part)) / torch.gather(
        count.clamp_min(1), 1, part
    )
    curve = torch.gather(out_start, 1, part) + torch.gather(out_range, 1, part) * cdf
    return (curve / (LEVELS - 1)).to(torch.float32)


def apply_curves(values: Tensor, curves: Tensor) -> Tensor:
    """Map (B, 1, H, W) values in [0, 1] through (B, 256) curves, linearly between the points."""
    flat = values.flatten(1) * (LEVELS - 1)
    low = flat.detach().floor().clamp(0, LEVELS - 2).long()
    frac = flat - low
    y0, y1 = torch.gather(curves, 1, low), torch.gather(curves, 1, low + 1)
    return (y0 + frac * (y1 - y0)).view_as(values)


def adjust_dhe(images: Tensor, emphasis: float = 1.0) -> Tensor:
    """DHE of the HSV value of each image, differentiable through its fixed tone curve."""
    check_images(images)
    images = images.clamp(0.0, 1.0)
    value = images.amax(dim=1, keepdim=True)
    levels = torch.round(value.detach().flatten(1) * (LEVELS - 1)).long()
    curves = dhe_curves(levels, emphasis).to(images.dtype)
    return with_value(images, value, apply_curves(value, curves))


class AdjustDHE(Enhancer):
    """Module form of :func:`adjust_dhe`."""

    name = "dhe"
    differentiable = True

    def __init__(self, emphasis: float = 1.0) -> None:
        super().__init__()
        self.emphasis = emphasis

    def forward(self, images: Tensor) -> Tensor:
        return adjust_dhe(images, self.emphasis)
