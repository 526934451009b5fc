"""ResNet50 trained on Places365 (the 2019 task's victim), from the user's own weights file.

The published checkpoint (``resnet50_places365.pth.tar``) is a dict with ``state_dict`` whose
keys carry DataParallel's ``module.`` prefix, with a 365-way ``fc``.  Preprocessing is the one
it was trained with: 224 px centre view, ImageNet mean/std.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import torch
from torch import Tensor
from torchvision.models import resnet50

from .checkpoint import load_into, required_weights
from .geometry import imagenet_normalise, imagenet_view
from .objectives import CLASSIFIER_READINGS, Classifier

INPUT_SIZE = 224


def places365_categories() -> list[str]:
    """The 365 scene names, shipped with camo-engine."""
    text = resources.files(__package__).joinpath("data/places365_categories.txt").read_text()
    return text.split()


class ResNet50Places365(Classifier):
    """Scene classifier; its verdict must leave the true scene."""

    name = "resnet50-places365"
    deployment_readings = CLASSIFIER_READINGS

    def __init__(self, model: torch.nn.Module, **objective: object) -> None:
        super().__init__(places365_categories(), **objective)
        self.model = model.eval().requires_grad_(False)

    def geometry(self, height: int, width: int) -> tuple[int, int]:
        return INPUT_SIZE, INPUT_SIZE

    def preprocess(self, image: Tensor) -> Tensor:
        return imagenet_view(image, INPUT_SIZE)

    def normalise(self, view: Tensor) -> Tensor:
        return imagenet_normalise(view)

    def network(self, batch: Tensor) -> Tensor:
        return self.model(batch)


def places365_architecture() -> torch.nn.Module:
    """torchvision ResNet50 with a 365-way head: the layout of the published checkpoint."""
    return resnet50(weights=None, num_classes=365)


def load_resnet50_places365(weights: Path | str | None = None, **objective: object) -> ResNet50Places365:
    """The victim with the user's checkpoint; ``weights`` is required (nothing is downloaded)."""
    path = required_weights(weights, "resnet50-places365", "the published resnet50_places365.pth.tar")
    return ResNet50Places365(load_into(places365_architecture(), path), **objective)
