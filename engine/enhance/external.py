"""A user's own image-to-image ONNX enhancer, run with onnxruntime (``onnx:PATH`` on the CLI).

The model must take one float32 input, an RGB batch (N, 3, H, W) in [0, 1], and return its
first output as the same; inputs whose batch axis is fixed at 1 are fed one image at a time.
Its output is clipped to [0, 1].  ``multiple`` reflect-pads the sides to a multiple of it
(for nets that downsample) and crops the result back.

Not differentiable in torch: the pixels leave torch for onnxruntime, so the result carries no
gradient.  Gradients through such a model are to come from the ONNX autodiff route.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from .base import Enhancer


class OnnxEnhancer(Enhancer):
    """Runs an image-to-image ONNX model on each batch (see the module docstring)."""

    name = "onnx"
    differentiable = False

    def __init__(self, path: str | Path, multiple: int = 1) -> None:
        super().__init__()
        import onnxruntime as ort  # only users of ONNX enhancers pay for the import

        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"ONNX enhancer {self.path}: no such file")
        try:
            self.session = ort.InferenceSession(str(self.path), providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own classes for bad files
            raise ValueError(f"ONNX enhancer {self.path}: cannot load ({exc})") from exc
        inputs = self.session.get_inputs()
        if len(inputs) != 1 or len(inputs[0].shape) != 4 or inputs[0].shape[1] not in (3, "3"):
            shapes = [(i.name, i.shape) for i in inputs]
            raise ValueError(
                f"ONNX enhancer {self.path}: expected one (N, 3, H, W) input, got {shapes}"
            )
        self.input_name = inputs[0].name
        self.one_at_a_time = inputs[0].shape[0] == 1
        self.multiple = multiple

    def _run(self, batch: np.ndarray) -> np.ndarray:
        if self.one_at_a_time:
            images = [self.session.run(None, {self.input_name: image[None]})[0] for image in batch]
            return np.concatenate(images)
        return self.session.run(None, {self.input_name: batch})[0]

    def forward(self, images: Tensor) -> Tensor:
        height, width = images.shape[-2:]
        pad_h, pad_w = -height % self.multiple, -width % self.multiple
        padded = images.detach().clamp(0.0, 1.0)
        if pad_h or pad_w:
            padded = torch.nn.functional.pad(padded, (0, pad_w, 0, pad_h), mode="reflect")
        out = self._run(padded.cpu().numpy().astype(np.float32))
        if out.shape != tuple(padded.shape):
            raise ValueError(
                f"ONNX enhancer {self.path}: output shape {out.shape} differs from the input "
                f"{tuple(padded.shape)}; only same-size image-to-image models are supported"
            )
        result = torch.from_numpy(np.clip(out, 0.0, 1.0))[..., :height, :width]
        return result.to(device=images.device, dtype=images.dtype)
