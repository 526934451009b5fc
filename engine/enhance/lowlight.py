"""Low-light enhancement: a Zero-DCE++-style curve network with real, bundled weights.

The architecture is re-written from ``neuro_low_light/model.py`` of the PyPI package
``neuro-low-light`` 0.1.0 (MIT), whose trained weights ship with us under ``data/`` (see
``data/README.md`` for why they are vendored and how to check them).  A 7-layer CNN predicts
8 per-pixel, per-channel curve parameters ``a`` in [-1, 1]; the image is then pushed 8 times
through the quadratic curve ``x <- clip(x - a x (1 - x), 0, 1)``, which brightens where ``a`` is
negative.  The network runs at full resolution, so cost grows with the pixel count.
"""

from __future__ import annotations

import hashlib
import io
from functools import lru_cache
from importlib import resources

import torch
from torch import Tensor, nn

from .base import Enhancer, check_images

WEIGHTS = "neuro_low_light_best_model.pth"
WEIGHTS_SHA256 = "64f31f24bc6bd08c46eb5a5f8f67f36576d08337287454b6b5ed2bc4aa60a62f"
ITERATIONS = 8


class DCENet(nn.Module):
    """The curve-estimation network; attribute names match the checkpoint's keys."""

    def __init__(self, iterations: int = ITERATIONS) -> None:
        super().__init__()
        width = 32
        self.conv1 = nn.Conv2d(3, width, 3, padding=1)
        self.conv2 = nn.Conv2d(width, width, 3, padding=1)
        self.conv3 = nn.Conv2d(width, width, 3, padding=1)
        self.conv4 = nn.Conv2d(width, width, 3, padding=1)
        # conv5..7 see skip connections from the mirror-image layer (conv3, conv2, conv1).
        self.conv5 = nn.Conv2d(2 * width, width, 3, padding=1)
        self.conv6 = nn.Conv2d(2 * width, width, 3, padding=1)
        self.conv7 = nn.Conv2d(2 * width, 3 * iterations, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        x1 = torch.relu(self.conv1(x))
        x2 = torch.relu(self.conv2(x1))
        x3 = torch.relu(self.conv3(x2))
        x4 = torch.relu(self.conv4(x3))
        x5 = torch.relu(self.conv5(torch.cat([x4, x3], dim=1)))
        x6 = torch.relu(self.conv6(torch.cat([x5, x2], dim=1)))
        return torch.tanh(self.conv7(torch.cat([x6, x1], dim=1)))


def apply_quadratic_curves(images: Tensor, curves: Tensor) -> Tensor:
    """Apply the (B, 3 * n, H, W) curve parameters, n rounds of the quadratic curve."""
    for a in curves.split(3, dim=1):
        images = (images - a * images * (1.0 - images)).clamp(0.0, 1.0)
    return images


def load_weights() -> dict[str, Tensor]:
    """The bundled state dict, after checking the file is the one we vendored."""
    data = (resources.files(__package__) / "data" / WEIGHTS).read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    if digest != WEIGHTS_SHA256:
        raise RuntimeError(
            f"bundled low-light weights {WEIGHTS} have sha256 {digest}, expected {WEIGHTS_SHA256}"
            " (damaged install? see camo_engine/enhance/data/README.md)"
        )
    checkpoint = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    prefix = "dce_net."
    return {
        k.removeprefix(prefix): v
        for k, v in checkpoint["model_state_dict"].items()
        if k.startswith(prefix)
    }


def bundled_network() -> DCENet:
    """A fresh :class:`DCENet` holding the bundled weights, frozen, in eval mode."""
    net = DCENet()
    net.load_state_dict(load_weights())
    return net.eval().requires_grad_(False)


@lru_cache(maxsize=1)
def _shared_network() -> DCENet:
    return bundled_network()


def enhance_low_light(images: Tensor, net: DCENet | None = None) -> Tensor:
    """Brighten dark ``images`` with ``net`` (default: the bundled one, loaded once)."""
    check_images(images)
    images = images.clamp(0.0, 1.0)
    net = net if net is not None else _shared_network().to(images.device)
    return apply_quadratic_curves(images, net(images))


class LowLight(Enhancer):
    """Zero-DCE++-style low-light enhancement with the bundled ``neuro-low-light`` weights."""

    name = "lowlight"
    differentiable = True

    def __init__(self) -> None:
        super().__init__()
        self.net = bundled_network()

    def forward(self, images: Tensor) -> Tensor:
        return enhance_low_light(images, self.net)
