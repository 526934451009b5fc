"""Bring-your-own victim: a user's inference ONNX file (``--victim onnx:PATH``).

The file is a classifier (logits) or a regressor (one score).  How a photo reaches its input
comes from options or from a JSON file next to it (``PATH.json``, or ``config=``)::

    {"kind": "classifier", "height": 224, "width": 224, "scale": 255,
     "mean": [123.7, 116.3, 103.5], "std": [58.4, 57.1, 57.4], "crop_fraction": 0.875,
     "categories": ["cat", "dog", ...], "top_k": 1}
    {"kind": "regressor", "height": 384, "width": 512, "threshold": 40, "target": 60,
     "higher_is_worse": true}

Input = ``(resize(photo) * scale - mean) / std``.  The forward runs in onnxruntime; gradients
come from the engine's own reverse-mode pass over the graph (:mod:`camo_engine.export.onnx_autodiff`),
so only the onnxruntime backend can attack it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import torch
from torch import Tensor

from .geometry import resize, resize_center_crop
from .objectives import Classifier, QualityRegressor

PREPROCESSING_KEYS = ("height", "width", "scale", "mean", "std", "crop_fraction")


def read_options(path: Path, config: Path | str | None = None, **options: Any) -> dict[str, Any]:
    """Options from ``config`` (default ``PATH.json`` if present), overridden by non-None ``options``."""
    config_path = Path(config) if config else path.with_name(path.name + ".json")
    merged: dict[str, Any] = {}
    if config_path.is_file():
        merged = json.loads(config_path.read_text())
    elif config:
        raise FileNotFoundError(f"{config_path}: no such victim config")
    merged.update({k: v for k, v in options.items() if v is not None})
    return merged


class OnnxModel:
    """What both ONNX victim kinds share: the file, its preprocessing and an ORT forward."""

    exportable = False  # no torch graph: the torch backend cannot differentiate it

    def _setup(self, path: Path, height: int, width: int, scale: float, mean: Any, std: Any, crop_fraction: float | None) -> None:
        from ..export.manifest import sha256

        self.path = Path(path)
        self.source_sha256 = sha256(self.path)
        self.height, self.width = int(height), int(width)
        self.scale = float(scale)
        self.crop_fraction = crop_fraction
        mean_t = torch.as_tensor(mean, dtype=torch.float32).reshape(-1, 1, 1)
        std_t = torch.as_tensor(std, dtype=torch.float32).reshape(-1, 1, 1)
        self.register_buffer("mean", mean_t)
        self.register_buffer("std", std_t)
        self.preprocessing = {
            "resize": (
                f"central square of {crop_fraction} x the short side, antialiased bilinear to {height}x{width}"
                if crop_fraction
                else f"antialiased bilinear resize to {height}x{width}"
            ),
            "mean": [m / self.scale for m in mean_t.flatten().tolist()],
            "std": [s / self.scale for s in std_t.flatten().tolist()],
            "formula": f"(x * {self.scale:g} - mean) / std",
        }
        self._session: ort.InferenceSession | None = None

    def geometry(self, height: int, width: int) -> tuple[int, int]:
        return self.height, self.width

    def preprocess(self, image: Tensor) -> Tensor:
        if self.crop_fraction:
            view = resize_center_crop(image, self.height, self.crop_fraction)
        else:
            view = resize(image, (self.height, self.width))
        return self.normalise(view)

    def normalise(self, view: Tensor) -> Tensor:
        return (view * self.scale - self.mean) / self.std

    def network(self, batch: Tensor) -> Tensor:
        """Outputs by onnxruntime (not differentiable in torch)."""
        if self._session is None:
            from ..export.onnx_autodiff import standard_forward

            model = standard_forward(onnx.load(self.path), self.kind)
            self._session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
        images = np.ascontiguousarray(batch.detach().float().numpy())
        (outputs,) = self._session.run(["outputs"], {"images": images})
        return torch.from_numpy(outputs)


class OnnxClassifier(OnnxModel, Classifier):
    def __init__(self, path: Path, categories: list[str], preprocessing: dict[str, Any], **objective: Any) -> None:
        Classifier.__init__(self, categories, **objective)
        self.name = f"onnx:{Path(path).name}"
        self._setup(path, **preprocessing)


class OnnxRegressor(OnnxModel, QualityRegressor):
    def __init__(self, path: Path, preprocessing: dict[str, Any], threshold: float, target: float, higher_is_worse: bool = True) -> None:
        QualityRegressor.__init__(self, threshold, target, higher_is_worse)
        self.name = f"onnx:{Path(path).name}"
        self._setup(path, **preprocessing)


def _input_size(model: onnx.ModelProto) -> tuple[int | None, int | None]:
    inits = {i.name for i in model.graph.initializer}
    image = next(i for i in model.graph.input if i.name not in inits)
    dims = [d.dim_value or None for d in image.type.tensor_type.shape.dim]
    return (dims[2], dims[3]) if len(dims) == 4 else (None, None)


def _output_width(model: onnx.ModelProto) -> int | None:
    dims = model.graph.output[0].type.tensor_type.shape.dim
    sizes = [d.dim_value or None for d in dims[1:]]
    return int(np.prod(sizes)) if sizes and None not in sizes else (1 if not sizes else None)


def load_onnx_victim(path: Path | str, config: Path | str | None = None, **options: Any) -> OnnxClassifier | OnnxRegressor:
    """The victim for ``onnx:PATH``; see the module docstring for the options."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such ONNX file")
    opts = read_options(path, config, **options)
    model = onnx.load(path, load_external_data=False)
    height, width = _input_size(model)
    width_out = _output_width(model)
    kind = opts.pop("kind", None) or ("regressor" if width_out == 1 else "classifier" if width_out else None)
    if kind not in ("classifier", "regressor"):
        raise ValueError(f"{path}: say kind=classifier or kind=regressor (could not tell from its output)")
    preprocessing = {
        "height": opts.pop("height", height),
        "width": opts.pop("width", width),
        "scale": opts.pop("scale", 1.0),
        "mean": opts.pop("mean", [0.0]),
        "std": opts.pop("std", [1.0]),
        "crop_fraction": opts.pop("crop_fraction", None),
    }
    if preprocessing["height"] is None or preprocessing["width"] is None:
        raise ValueError(f"{path}: its input size is not fixed; give height and width")
    if kind == "regressor":
        missing = [k for k in ("threshold", "target") if k not in opts]
        if missing:
            raise ValueError(f"{path}: a regressor needs {' and '.join(missing)}")
        return OnnxRegressor(path, preprocessing, **opts)
    categories = opts.pop("categories", None) or [f"class_{i}" for i in range(width_out or 0)]
    return OnnxClassifier(path, list(categories), preprocessing, **opts)
