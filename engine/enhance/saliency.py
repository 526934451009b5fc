"""Saliency-driven saturation, the 2019 HCMUS "natural enhancement" run.

The paper takes a saliency map (theirs from a Cascaded Partial Decoder, which needs downloaded
weights; here spectral-residual saliency, Hou & Zhang CVPR 2007, which needs none), blurs it
with a Gaussian, and sets each pixel's saturation factor from the blurred saliency x:

    y = (x - alpha) / beta + gamma   if x >= alpha
    y = x / omega                    otherwise

S (of HSV) is multiplied by y and clipped to [0, 1].  The defaults (alpha 0, beta 2, gamma 0.85)
keep every pixel on the upper branch: the least salient pixels keep 85% of their saturation,
the most salient get 135%.  The lower branch sends zero-saliency pixels to grey; spectral
residual gives smooth areas (skies) near-zero saliency, so with alpha > 0 they turned into grey
blotches on the sample photos.  It is there for alpha > 0 (omega then sets its slope).
"""

from __future__ import annotations

import kornia
import torch
from torch import Tensor

from .base import Enhancer, check_images

SR_SIZE = 64  # Hou & Zhang work on a 64x64 thumbnail, as OpenCV's StaticSaliencySpectralResidual
NORMALISE_MEANS = 4.0


def spectral_residual(images: Tensor) -> Tensor:
    """Spectral-residual saliency (B, 1, H, W): the map over 4x its mean, clipped at 1."""
    check_images(images)
    grey = kornia.color.rgb_to_grayscale(images)
    small = torch.nn.functional.interpolate(
        grey, size=(SR_SIZE, SR_SIZE), mode="bilinear", align_corners=False, antialias=True
    )
    # The spectrum is handled as (real, imaginary) pairs: the ONNX exporter has no complex exp,
    # and exp(R + iP) is the unit phasor spectrum / |spectrum| scaled by exp(R).
    spectrum = torch.view_as_real(torch.fft.fft2(small))
    amplitude = spectrum.norm(dim=-1).clamp_min(1e-8)
    log_amplitude = torch.log(amplitude)
    residual = log_amplitude - kornia.filters.box_blur(
        log_amplitude, (3, 3), border_type="replicate"
    )
    scaled = spectrum * (torch.exp(residual) / amplitude).unsqueeze(-1)
    saliency = torch.view_as_real(torch.fft.ifft2(torch.view_as_complex(scaled))).square().sum(-1)
    # Hou & Zhang's own code smooths with a sigma-2.5 Gaussian at 64x64.
    saliency = kornia.filters.gaussian_blur2d(saliency, (9, 9), (2.5, 2.5))
    full = torch.nn.functional.interpolate(
        saliency, size=images.shape[-2:], mode="bilinear", align_corners=False
    )
    # Scaled by a multiple of the mean, not the maximum: one glint (a lamp, a sun) would
    # otherwise push the rest of the map, and so the whole image's saturation, towards zero.
    scale = NORMALISE_MEANS * full.mean(dim=(2, 3), keepdim=True)
    return (full / scale.clamp_min(1e-12)).clamp(max=1.0)


def saturation_factor(
    saliency: Tensor, alpha: float, beta: float, gamma: float, omega: float
) -> Tensor:
    """The paper's piecewise mapping from (blurred) saliency to a saturation factor."""
    return torch.where(saliency >= alpha, (saliency - alpha) / beta + gamma, saliency / omega)


def adjust_saliency_saturation(
    images: Tensor,
    alpha: float = 0.0,
    beta: float = 2.0,
    gamma: float = 0.85,
    omega: float = 1.0,
    blur: float = 0.04,
) -> Tensor:
    """Scale HSV saturation by the saliency mapping; ``blur`` is the Gaussian sigma / image side."""
    check_images(images)
    images = images.clamp(0.0, 1.0)
    saliency = spectral_residual(images)
    sigma = max(blur * max(images.shape[-2:]), 0.5)
    size = 2 * int(3 * sigma) + 1
    saliency = kornia.filters.gaussian_blur2d(saliency, (size, size), (sigma, sigma))
    hsv = kornia.color.rgb_to_hsv(images)
    factor = saturation_factor(saliency, alpha, beta, gamma, omega)
    saturation = (hsv[:, 1:2] * factor).clamp(0.0, 1.0)
    return kornia.color.hsv_to_rgb(torch.cat([hsv[:, :1], saturation, hsv[:, 2:]], dim=1))


class AdjustSaliencySaturation(Enhancer):
    """Module form of :func:`adjust_saliency_saturation`."""

    name = "saliency-saturation"
    differentiable = True

    def __init__(
        self,
        alpha: float = 0.0,
        beta: float = 2.0,
        gamma: float = 0.85,
        omega: float = 1.0,
        blur: float = 0.04,
    ) -> None:
        super().__init__()
        self.alpha, self.beta, self.gamma, self.omega, self.blur = alpha, beta, gamma, omega, blur

    def forward(self, images: Tensor) -> Tensor:
        return adjust_saliency_saturation(
            images, self.alpha, self.beta, self.gamma, self.omega, self.blur
        )
