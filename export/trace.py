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
import onnx.utils
import onnxscript.optimizer
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
            # Not the exporter's optimiser: its pattern rewriter takes constants within 1e-8 of
            # zero for zero and deletes e.g. BRISQUE's ``var * var + 1e-20`` guard, which turns
            # the gradient of flat image areas into 0/0.  Constant folding alone is safe, and
            # onnxruntime and TensorRT fuse operators themselves when they load the graph.
            optimize=False,
            verbose=False,
        )
    model = onnx_program.model_proto
    onnxscript.optimizer.fold_constants(model)
    onnxscript.optimizer.remove_unused_nodes(model)
    # onnx 1.23 stamps its newest IR version, which older runtimes refuse to open.
    model.ir_version = ir_version
    onnx.checker.check_model(model)
    onnx.save_model(model, path)


def forward_from_gradient(gradient: Path, forward: Path) -> None:
    """Write the part of a gradient graph that computes ``outputs`` from ``images`` alone.

    That is the forward pass the gradient graph already contains, so the forward file costs no
    second trace and export (minutes for BRISQUE), and both files give the same outputs.
    MaxPool's ``Indices`` output, which only the backward pass read, is dropped: a forward graph
    is then what a plain inference export would give (and what our own autodiff accepts).
    """
    model = onnx.load(gradient)
    sub = onnx.utils.Extractor(model).extract_model(["images"], ["outputs"])
    read = {name for node in sub.graph.node for name in node.input} | {o.name for o in sub.graph.output}
    for node in sub.graph.node:
        if node.op_type == "MaxPool" and len(node.output) == 2 and node.output[1] not in read:
            del node.output[1]
    produced = {name for node in sub.graph.node for name in node.output}
    kept = [info for info in sub.graph.value_info if info.name in produced]
    del sub.graph.value_info[:]
    sub.graph.value_info.extend(kept)
    onnx.checker.check_model(sub)
    onnx.save_model(sub, forward)
