"""The enhancer registry and the CLI syntax that chains enhancers.

A spec is a comma-separated chain applied left to right, e.g. ``pillow,dhe`` or
``texture:alpha=0.08:noise=fractal,pillow``.  Options follow the name as ``:key=value`` and take
the type of the option's default.  ``onnx:PATH`` runs the user's ONNX model at PATH (everything
after ``onnx:`` is the path).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from torch import Tensor, nn

from .base import Enhancer
from .dhe import AdjustDHE
from .external import OnnxEnhancer
from .lowlight import LowLight
from .pillow import AdjustPillow
from .saliency import AdjustSaliencySaturation
from .stylize import Stylize
from .texture import AdjustTexture


@dataclass(frozen=True)
class EnhancerInfo:
    """One registered enhancer: its CLI name, what it does, and how to build it."""

    name: str
    description: str
    differentiable: bool
    factory: Callable[..., Enhancer]


def _info(cls: type[Enhancer], description: str) -> EnhancerInfo:
    return EnhancerInfo(cls.name, description, cls.differentiable, cls)


REGISTRY: dict[str, EnhancerInfo] = {
    info.name: info
    for info in (
        _info(AdjustPillow, "Pillow colour 1.5, sharpness 3, brightness 1, contrast 1.5 (2020)"),
        _info(AdjustDHE, "dynamic histogram equalisation of the HSV value (2019)"),
        _info(AdjustSaliencySaturation, "saturation raised on salient regions (2019)"),
        _info(AdjustTexture, "blends seeded noise: gaussian, fractal or film-grain (2019)"),
        _info(LowLight, "Zero-DCE++ curve network for dark photos (bundled weights)"),
        _info(Stylize, "cartoon look, OpenCV edge-aware stylisation"),
        _info(OnnxEnhancer, "onnx:PATH, your own image-to-image ONNX model"),
    )
}


class Chain(Enhancer):
    """Enhancers applied in order; differentiable iff every part is."""

    def __init__(self, parts: Sequence[Enhancer]) -> None:
        super().__init__()
        self.parts = nn.ModuleList(parts)
        self.differentiable = all(part.differentiable for part in parts)
        self.name = ",".join(part.name for part in parts)

    def forward(self, images: Tensor) -> Tensor:
        for part in self.parts:
            images = part(images)
        return images


def _convert(raw: str, default: object, key: str) -> object:
    """Give an option the type of its default."""
    if isinstance(default, bool):
        if raw.lower() not in ("true", "false", "1", "0"):
            raise ValueError(f"option {key} takes true or false, got {raw!r}")
        return raw.lower() in ("true", "1")
    if isinstance(default, (int, float)):
        try:
            return type(default)(raw)
        except ValueError:
            raise ValueError(
                f"option {key} takes a {type(default).__name__}, got {raw!r}"
            ) from None
    return raw


def build_enhancer(item: str) -> Enhancer:
    """One enhancer from ``name[:key=value...]`` or ``onnx:PATH``."""
    name, _, rest = item.strip().partition(":")
    if name == OnnxEnhancer.name:
        if not rest:
            raise ValueError("onnx needs a model path: onnx:PATH")
        return OnnxEnhancer(rest)
    if name not in REGISTRY:
        raise ValueError(f"unknown enhancer {name!r}; available: {', '.join(REGISTRY)}")
    defaults = {
        key: p.default for key, p in inspect.signature(REGISTRY[name].factory).parameters.items()
    }
    options = {}
    for pair in filter(None, rest.split(":")):
        key, eq, raw = pair.partition("=")
        if not eq or key not in defaults:
            raise ValueError(
                f"bad option {pair!r} for {name}; it takes key=value with key in "
                f"{', '.join(defaults) or '(none)'}"
            )
        options[key] = _convert(raw, defaults[key], key)
    return REGISTRY[name].factory(**options)


def parse_enhancers(spec: str) -> Chain:
    """Build the chain a CLI spec such as ``pillow,dhe`` names."""
    items = [item for item in spec.split(",") if item.strip()]
    if not items:
        raise ValueError(f"no enhancer named in {spec!r}; available: {', '.join(REGISTRY)}")
    return Chain([build_enhancer(item) for item in items])
