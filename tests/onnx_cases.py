"""Shared helpers for the ONNX tests: tiny hand-built graphs and their torch equivalents."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

OPSET = 18


def single_op_model(
    nodes: Sequence[onnx.NodeProto],
    out: str,
    in_shape: Sequence[int],
    out_rank: int,
    constants: dict[str, np.ndarray] | None = None,
    weight: np.ndarray | None = None,
) -> onnx.ModelProto:
    """``x -> nodes -> out``, then a per-image score ``sum(out * weight)`` over non-batch axes."""
    inits = [numpy_helper.from_array(v, k) for k, v in (constants or {}).items()]
    body = list(nodes)
    if weight is not None:
        inits.append(numpy_helper.from_array(weight.astype(np.float32), "score_weight"))
        inits.append(numpy_helper.from_array(np.arange(1, out_rank, dtype=np.int64), "score_axes"))
        body += [
            helper.make_node("Mul", [out, "score_weight"], ["weighted"]),
            helper.make_node("ReduceSum", ["weighted", "score_axes"], ["score"], keepdims=0),
        ]
        out = "score"
    graph = helper.make_graph(
        body,
        "case",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", *in_shape[1:]])],
        [helper.make_tensor_value_info(out, TensorProto.FLOAT, None)],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = 10
    return model


def run(model: onnx.ModelProto, feeds: dict[str, torch.Tensor]) -> list[torch.Tensor]:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return [torch.from_numpy(r) for r in session.run(None, {k: v.numpy() for k, v in feeds.items()})]


def torch_regressor_step(
    fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Score ``sum(fn(x) * weight)``, loss ``(score - target)^2`` and d loss / d x by autograd."""
    x = x.clone().requires_grad_(True)
    score = (fn(x) * weight).flatten(1).sum(1)
    loss = (score - targets) ** 2
    (g,) = torch.autograd.grad(loss.sum(), x)
    return score.detach(), loss.detach(), g


# -- a tiny torch victim that exercises every backward the real ones need, in seconds ----------
from pathlib import Path  # noqa: E402

from camo_engine.export.cache import cached_export  # noqa: E402
from camo_engine.export.from_torch import export_victim  # noqa: E402
from camo_engine.victims.geometry import resize  # noqa: E402
from camo_engine.victims.objectives import Classifier  # noqa: E402
from torch import nn  # noqa: E402


class TinyClassifier(Classifier):
    """Strided, grouped, dilated convs with BatchNorm, ReLU6, ReLU, max and average pooling."""

    name = "tiny"

    def __init__(self, **objective: object) -> None:
        super().__init__([f"c{i}" for i in range(10)], **objective)
        torch.manual_seed(0)
        self.model = nn.Sequential(
            nn.Conv2d(3, 8, 3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(8),
            nn.ReLU6(),
            nn.Conv2d(8, 8, 3, padding=2, dilation=2, groups=8),
            nn.BatchNorm2d(8),
            nn.ReLU(),
            nn.MaxPool2d(3, 2, 1),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(8, 10),
        ).eval()
        for m in self.model.modules():
            if isinstance(m, nn.BatchNorm2d):  # non-trivial statistics, so folding matters
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.data.uniform_(0.5, 1.5)
        self.model.requires_grad_(False)

    def geometry(self, height: int, width: int) -> tuple[int, int]:
        return 33, 33

    def preprocess(self, image: torch.Tensor) -> torch.Tensor:
        return resize(image, (33, 33)) * 2 - 1

    def network(self, batch: torch.Tensor) -> torch.Tensor:
        return self.model(batch)


def exported(victim, cache: Path) -> Path:
    """The victim's export directory, exported once per cache (pytest's cache persists runs)."""
    return cached_export(victim, cache, lambda d: export_victim(victim, d), {})


@pytest.fixture(scope="session")
def onnx_cache(request) -> Path:
    """Exports of the real victims, kept in pytest's cache across runs (keyed by content)."""
    return Path(request.config.cache.mkdir("camo-onnx-exports"))


@pytest.fixture(scope="session")
def efficientnet():
    from camo_engine.victims.efficientnet import load_efficientnet_lite0

    return load_efficientnet_lite0()


@pytest.fixture(scope="session")
def places365():
    """The ResNet50-Places365 architecture with seeded random weights (the real ones are the user's)."""
    from camo_engine.victims.places365 import ResNet50Places365, places365_architecture

    torch.manual_seed(365)
    return ResNet50Places365(places365_architecture())


@pytest.fixture(scope="session")
def brisque():
    from camo_engine.victims.brisque import load_brisque

    # ONNX graphs need a fixed input geometry: the 512x384 view, not the native default.
    return load_brisque(long_side=512, short_side=384)
