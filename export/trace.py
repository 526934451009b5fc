"""Trace a victim's forward and input-gradient functions to ONNX files.

Route: ``torch.func.grad`` (of ``loss.sum()`` with the outputs as aux) traced by ``make_fx``
with symbolic shapes and :mod:`.decompositions`, then ``torch.export`` with a dynamic batch,
then the dynamo ONNX exporter.  The spatial size is static: it is the victim's geometry.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path

import onnx
import torch
from torch import Tensor
from torch.export import Dim
from torch.func import grad
from torch.fx import GraphModule
from torch.fx.experimental.proxy_tensor import make_fx

from ..victims.base import Victim
from .decompositions import gradient_decompositions

MAX_BATCH = 4096


def forward_function(victim: Victim) -> Callable[[Tensor], Tensor]:
    """images -> outputs."""

    def forward(images: Tensor) -> Tensor:
        return victim.network(images).float()

    return forward


def gradient_function(victim: Victim) -> Callable[[Tensor, Tensor], tuple[Tensor, Tensor, Tensor]]:
    """(images, targets) -> (outputs, per-image loss, d loss.sum() / d images)."""

    def objective(images: Tensor, targets: Tensor) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        outputs = victim.network(images).float()
        loss = victim.loss(outputs, targets)
        return loss.sum(), (outputs, loss)

    input_grad = grad(objective, has_aux=True)

    def gradient(images: Tensor, targets: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        g, (outputs, loss) = input_grad(images, targets)
        return outputs, loss, g

    return gradient


def trace(fn: Callable[..., object], example: tuple[Tensor, ...]) -> GraphModule:
    """An ATen graph of ``fn`` with symbolic shapes and the export decompositions applied."""
    # Weights are real tensors closed over by ``fn``: they become graph constants.
    return make_fx(
        fn, tracing_mode="symbolic", decomposition_table=gradient_decompositions(), _allow_non_fake_inputs=True
    )(*example)


def to_onnx(
    graph: GraphModule,
    example: tuple[Tensor, ...],
    input_names: list[str],
    output_names: list[str],
    path: Path,
    opset: int,
    ir_version: int,
    batch_dynamic: bool = True,
) -> None:
    """Export a traced graph to ``path`` with a dynamic (or fixed) leading batch dimension."""
    batch = Dim("batch", min=1, max=MAX_BATCH)
    shapes = tuple({0: batch} if batch_dynamic else None for _ in example)
    with warnings.catch_warnings():
        # The exporter warns about its own internals (e.g. deprecated pytree helpers).
        warnings.simplefilter("ignore")
        program = torch.export.export(graph, example, dynamic_shapes=shapes)
        onnx_program = torch.onnx.export(
            program,
            example,
            input_names=input_names,
            output_names=output_names,
            opset_version=opset,
            dynamo=True,
            optimize=True,
            verbose=False,
        )
    model = onnx_program.model_proto
    # onnx 1.23 stamps its newest IR version, which older runtimes refuse to open.
    model.ir_version = ir_version
    onnx.checker.check_model(model)
    onnx.save_model(model, path)
