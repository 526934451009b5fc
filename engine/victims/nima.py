"""NIMA (Talebi & Milanfar 2018) from the user's weights: a victim, and an appeal measure.

The accepted layout is the most used PyTorch one, ``yunxiaoshi/Neural-IMage-Assessment``
(``epoch-*.pth``): ``features`` is torchvision VGG16's ``features`` (keys
``features.{0,2,5,7,10,12,14,17,19,21,24,26,28}.*``) and ``classifier`` is
``Sequential(Dropout(0.75), Linear(25088, 10), Softmax)`` (keys ``classifier.1.*``).  That
repository's multi-GPU training wraps only ``features`` in DataParallel
(``features.module.0.weight``); a whole-model ``module.`` prefix and a ``{"state_dict": ...}``
wrapper load too.

Input: the photo's central square (0.875 of the short side) resized to 224x224, i.e. its
"resize 256, centre crop 224" view, ImageNet mean/std.  The model gives a distribution over the
ratings 1..10; the score is its mean.  This module is the one home of NIMA: the victim
(``--victim nima``) and the appeal measure of ``camo-engine evaluate --nima`` both load it here.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor, nn
from torchvision.models.vgg import cfgs, make_layers

from .checkpoint import load_into, required_weights
from .geometry import imagenet_normalise, imagenet_view
from .objectives import NetworkRegressor

INPUT_SIZE = 224
RATINGS = 10
VGG16_FEATURES = 512 * 7 * 7  # VGG16's last feature map at 224x224, flattened


class NIMA(nn.Module):
    """The ``yunxiaoshi/Neural-IMage-Assessment`` model: (B, 3, 224, 224) -> (B, 10) rating
    probabilities."""

    def __init__(self) -> None:
        super().__init__()
        # vgg16().features, without building (and initialising) VGG16's 120M-weight classifier.
        self.features = make_layers(cfgs["D"])
        self.classifier = nn.Sequential(
            nn.Dropout(0.75), nn.Linear(VGG16_FEATURES, RATINGS), nn.Softmax(dim=1)
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.features(x).flatten(1))


class NimaVictim(NetworkRegressor):
    """NIMA's mean rating (1..10, higher = more appealing) pushed below ``threshold``.

    Defaults: AVA's own split, used by the NIMA paper for its two-class accuracy, calls a photo
    of mean rating 5 or more a high-aesthetic one; so 5 is the threshold.  The attack aims a
    full rating below it (``target=4``): AVA's ratings crowd into the middle of the scale, so
    that is well inside the low side and leaves room for JPEG re-encoding, as BRISQUE's and
    KonCept512's targets sit 20 points past their thresholds on a 0-100 scale
    (docs/victims-user.md).
    """

    name = "nima"
    # Its published inference: Resize(256) + CenterCrop(224) on a PIL image.
    deployment_readings = ("own", "crop:224:bilinear")
    preprocessing = {
        "resize": "central square of 0.875 x the short side, antialiased bilinear resize to 224x224",
        "mean": [0.485, 0.456, 0.406],
        "std": [0.229, 0.224, 0.225],
        "formula": "(x - mean) / std",
    }

    input_size = (INPUT_SIZE, INPUT_SIZE)

    def __init__(self, model: NIMA, threshold: float = 5.0, target: float = 4.0) -> None:
        super().__init__(model, threshold, target, higher_is_worse=False)
        self.register_buffer("ratings", torch.arange(1.0, RATINGS + 1), persistent=False)

    def preprocess(self, image: Tensor) -> Tensor:
        return imagenet_view(image, INPUT_SIZE)

    def normalise(self, view: Tensor) -> Tensor:
        return imagenet_normalise(view)

    def network(self, batch: Tensor) -> Tensor:
        return self.model(batch) @ self.ratings.to(batch.dtype)


def load_nima(weights: Path | str | None = None, **objective: float) -> NimaVictim:
    """NIMA with the user's checkpoint (required); a ``CheckpointError`` names a wrong file."""
    layout = "yunxiaoshi/Neural-IMage-Assessment (VGG16 features + Linear(25088, 10))"
    path = required_weights(weights, "nima", f"a checkpoint of the {layout} layout")
    return NimaVictim(load_into(NIMA(), path), **objective)
