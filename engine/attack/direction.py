"""What each sign step follows: the input gradient, blurred (TI-FGSM) and summed into momentum
(MI-FGSM).  Why each is on by default is measured in benchmarks/NOTES.md."""

from __future__ import annotations

import math

import torch
from kornia.filters import gaussian_blur2d
from torch import Tensor


def blur_gradient(grad: Tensor, sigma: float) -> Tensor:
    """Gaussian blur of a (3, H, W) gradient, as in TI-FGSM (sigma in pixels; 0: unchanged).

    A smoother perturbation is less of what JPEG removes.  Borders are replicated: a reflected
    pad needs the photo wider than the kernel, and a 1x1 photo must work.
    """
    if sigma <= 0:
        return grad
    size = 2 * math.ceil(2 * sigma) + 1
    return gaussian_blur2d(grad[None], (size, size), (sigma, sigma), border_type="replicate")[0].contiguous()


def step_direction(grad: Tensor, velocity: Tensor | None, sigma: float, momentum: float) -> Tensor:
    """The direction of the next sign step for one photo; with momentum it is also the new
    velocity (the decaying sum of L1-normalised gradients), which the caller keeps.

    Args:
        grad: d loss / d input, (3, H, W); may be overwritten.
        velocity: the previous direction, or None before the first step.
        sigma: gradient blur in pixels (0: none).
        momentum: MI-FGSM decay (0: plain I-FGSM).

    An all-zero gradient leaves the previous direction: without momentum a photo whose loss sat
    on its floor while JPEG still undid the effect had a zero gradient and stalled.
    """
    grad = blur_gradient(grad, sigma)
    if momentum == 0:
        return grad
    # In place and without full-size temporaries: at 12 MP each one is 144 MB.
    l1 = float(torch.linalg.vector_norm(grad, 1)) / grad.numel()
    weight = 1 / max(l1, torch.finfo(grad.dtype).tiny)
    if velocity is None:
        return grad.mul_(weight)  # this step's gradient is not needed again
    return velocity.mul_(momentum).add_(grad, alpha=weight)


def rms_step(direction: Tensor, alpha: float) -> Tensor:
    """The change of an ``rms`` step: ``direction`` scaled to a root-mean-square of ``alpha``
    per pixel and clipped at ``2 alpha``.  A sign step spends ``alpha`` on every pixel alike;
    this spends the same energy where the gradient is, which costs less PSNR for the same
    effect (docs/robust-lab.md).

    Example:
        >>> rms_step(torch.tensor([3.0, -4.0]), 0.1).square().mean().sqrt().item()  # doctest: +ELLIPSIS
        0.1...
    """
    rms = float(direction.square().mean().sqrt())
    return (direction * (alpha / max(rms, torch.finfo(direction.dtype).tiny))).clamp_(-2 * alpha, 2 * alpha)
