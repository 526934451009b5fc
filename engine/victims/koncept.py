"""KonCept512 (Hosu et al. 2020, KonIQ-10k), the 2020 task's victim, from the user's weights.

The accepted layout is the Pixel Privacy 2020 organisers' PyTorch port
(``ZhengyuZhao/koniq-PyTorch``), whose ``KonCept512.pth`` is the ``state_dict()`` of::

    base = nn.Sequential(*list(inceptionresnetv2(num_classes=1000).children())[:-1])
    fc = nn.Sequential(Linear(1536, 2048), ReLU, BatchNorm1d(2048), Dropout(0.25),
                       Linear(2048, 1024), ReLU, BatchNorm1d(1024), Dropout(0.25),
                       Linear(1024, 256), ReLU, BatchNorm1d(256), Dropout(0.5), Linear(256, 1))

with Cadene's ``pretrainedmodels`` InceptionResNetV2: ``base.0`` ... ``base.14`` are its
conv2d_1a ... conv2d_7b (BatchNorm2d eps 0.001), and ``base.15`` is its ``avgpool_1a``,
``AvgPool2d(8, count_include_pad=False)``.  That is *not* a global pool: at 384x512 the last
feature map is 10x14 and only its top-left 8x8 window is averaged; the scores of this checkpoint
depend on it.  A whole-model ``module.`` prefix (DataParallel) and a ``{"state_dict": ...}``
wrapper load too.

The backbone is timm's ``inception_resnet_v2`` (the same module names), built without
pretrained weights: the user's file supplies every weight and nothing is downloaded.
"""

from __future__ import annotations

from pathlib import Path

from timm.layers import ConvNormAct
from timm.models.inception_resnet_v2 import InceptionResnetV2
from torch import Tensor, nn

from .checkpoint import load_into, required_weights
from .geometry import cover_crop
from .objectives import NetworkRegressor

INPUT_SIZE = (384, 512)  # (h, w): KonIQ-10k's 512x384 landscape photos
# Cadene's InceptionResNetV2 children before its avgpool_1a, in order: base.0 ... base.14.
BACKBONE_LAYERS = (
    "conv2d_1a", "conv2d_2a", "conv2d_2b", "maxpool_3a", "conv2d_3b", "conv2d_4a", "maxpool_5a",
    "mixed_5b", "repeat", "mixed_6a", "repeat_1", "mixed_7a", "repeat_2", "block8", "conv2d_7b",
)  # fmt: skip
FEATURES = 1536


class BasicConv2d(nn.Module):
    """Cadene's unit, conv -> BatchNorm2d -> ReLU, holding a timm ``ConvNormAct``'s conv.

    timm fuses the norm and the activation into one ``BatchNormAct2d``; as separate layers the
    parameter names stay the same (``conv.*``, ``bn.*``) and the exporter folds the batch norm
    into the convolution as it does for every other victim.
    """

    def __init__(self, unit: ConvNormAct) -> None:
        super().__init__()
        if not isinstance(unit.bn.act, nn.ReLU) or getattr(unit, "aa", None) is not None:
            raise TypeError(f"unexpected timm unit {unit}: expected conv, batch norm, ReLU")
        self.conv = unit.conv
        self.bn = nn.BatchNorm2d(unit.bn.num_features, eps=unit.bn.eps)
        self.relu = nn.ReLU()

    def forward(self, x: Tensor) -> Tensor:
        return self.relu(self.bn(self.conv(x)))


def _as_basic_convs(module: nn.Module) -> nn.Module:
    """Replace every timm ``ConvNormAct`` below ``module`` by a :class:`BasicConv2d`."""
    for name, child in module.named_children():
        if isinstance(child, ConvNormAct):
            setattr(module, name, BasicConv2d(child))
        else:
            _as_basic_convs(child)
    return module


def _head() -> nn.Sequential:
    """``fc``: keys fc.0, fc.2, fc.4, fc.6, fc.8, fc.10, fc.12."""
    layers: list[nn.Module] = []
    for width_in, width, drop in ((FEATURES, 2048, 0.25), (2048, 1024, 0.25), (1024, 256, 0.5)):
        layers += [nn.Linear(width_in, width), nn.ReLU(), nn.BatchNorm1d(width), nn.Dropout(drop)]
    return nn.Sequential(*layers, nn.Linear(256, 1))


class KonCept512(nn.Module):
    """The port's ``model_qa``: (B, 3, 384, 512) in [-1, 1] -> (B,) MOS on 0-100."""

    def __init__(self) -> None:
        super().__init__()
        backbone = _as_basic_convs(InceptionResnetV2(num_classes=0))
        self.base = nn.Sequential(
            *(getattr(backbone, name) for name in BACKBONE_LAYERS),
            nn.AvgPool2d(8, count_include_pad=False),
        )
        self.fc = _head()

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.base(x).flatten(1))[:, 0]


class KonCept512Victim(NetworkRegressor):
    """KonCept512's MOS (0-100, higher = better) pushed below ``threshold``.

    Defaults are the 2020 task's: its test photos all scored above 50 and a protected photo
    had to score below 50 after JPEG 90; the HCMUS paper attacked towards 30 (20 points into
    the low side, so that the drop survives the re-encoding).

    View: the network was trained and tested on KonIQ-10k's 512x384 landscape photos with
    ``CenterCrop((384, 512))``, which leaves a 512x384 photo as it is.  A photo of any other
    size is resized until it covers 512x384 and centre-cropped to it (:func:`cover_crop`): the
    largest central 4:3 landscape region, scaled.  So a 4:3 landscape photo is seen whole, and
    a portrait photo by its central landscape band (the network never saw portrait input).
    """

    name = "koncept512"
    preprocessing = {
        "resize": "largest central 4:3 region (cover 512x384, centre crop), antialiased bilinear resize to 384x512",
        "mean": [0.5, 0.5, 0.5],
        "std": [0.5, 0.5, 0.5],
        "formula": "x * 2 - 1",
    }

    input_size = INPUT_SIZE

    def __init__(self, model: KonCept512, threshold: float = 50.0, target: float = 30.0) -> None:
        super().__init__(model, threshold, target, higher_is_worse=False)

    def preprocess(self, image: Tensor) -> Tensor:
        return self.normalise(cover_crop(image, INPUT_SIZE))

    def normalise(self, view: Tensor) -> Tensor:
        return view * 2 - 1


def load_koncept512(weights: Path | str | None = None, **objective: float) -> KonCept512Victim:
    """KonCept512 with the user's checkpoint (required); a ``CheckpointError`` names a wrong file."""
    port = "the Pixel Privacy 2020 PyTorch port (ZhengyuZhao/koniq-PyTorch)"
    path = required_weights(weights, "koncept512", f"KonCept512.pth of {port}")
    return KonCept512Victim(load_into(KonCept512(), path), **objective)
