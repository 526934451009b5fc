"""Enhancers: make a photo more appealing before (or while) it is camouflaged.

Each works on (B, 3, H, W) RGB float batches in [0, 1], as a function and as an
:class:`Enhancer` module with a CLI name and a ``differentiable`` flag.  Differentiable ones
export to ONNX.  ``parse_enhancers("pillow,dhe")`` builds a :class:`Chain`; ``REGISTRY`` lists
the names, descriptions and differentiability.
"""

from .base import Enhancer, check_images
from .dhe import AdjustDHE, adjust_dhe
from .external import OnnxEnhancer
from .lowlight import LowLight, enhance_low_light
from .pillow import AdjustPillow, adjust_pillow
from .registry import REGISTRY, Chain, EnhancerInfo, build_enhancer, parse_enhancers
from .saliency import (
    AdjustSaliencySaturation,
    adjust_saliency_saturation,
    spectral_residual,
)
from .stylize import Stylize, stylize
from .texture import AdjustTexture, adjust_texture, noise_image

__all__ = [
    "REGISTRY",
    "AdjustDHE",
    "AdjustPillow",
    "AdjustSaliencySaturation",
    "AdjustTexture",
    "Chain",
    "Enhancer",
    "EnhancerInfo",
    "LowLight",
    "OnnxEnhancer",
    "Stylize",
    "adjust_dhe",
    "adjust_pillow",
    "adjust_saliency_saturation",
    "adjust_texture",
    "build_enhancer",
    "check_images",
    "enhance_low_light",
    "noise_image",
    "parse_enhancers",
    "spectral_residual",
    "stylize",
]
