"""Reverse-mode differentiation of a user's inference ONNX graph, with no torch model.

``gradient_model`` appends to the user's graph the attack loss (the formula of
``victim.loss``) and, walking the graph backwards, the gradient nodes of every operator on the
path from the image input to the output (rules in :mod:`.onnx_grad_rules`).  The result has the
exported-victim contract: inputs ``images`` (B, C, h, w) and ``targets`` ((B,) or (B, classes)),
outputs ``outputs``, ``loss`` (B,) and ``grad`` (B, C, h, w).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Literal

import numpy as np
import onnx
from onnx import TensorProto, helper

from .onnx_grad_rules import RULES
from .onnx_graph import AutodiffError, Builder, UnsupportedOperatorError, prepare

IMAGES, TARGETS, OUTPUTS, LOSS, GRAD = "images", "targets", "outputs", "loss", "grad"
MAX_IR_VERSION = 10  # what older onnxruntime and TensorRT parsers open
LOWEST = float(np.finfo(np.float32).min)


@dataclass(frozen=True)
class Objective:
    """The loss baked into the gradient graph; the same formulas as ``victims.objectives``."""

    kind: Literal["classifier", "regressor"]
    top_k: int = 1
    confidence: float = 2.0


def _rename(graph: onnx.GraphProto, old: str, new: str) -> None:
    for node in graph.node:
        node.input[:] = [new if name == old else name for name in node.input]
        node.output[:] = [new if name == old else name for name in node.output]


def standard_forward(model: onnx.ModelProto, kind: str) -> onnx.ModelProto:
    """The user's graph with input ``images`` and output ``outputs``: (B,) or (B, classes)."""
    model = prepare(model)
    graph = model.graph
    inits = {i.name for i in graph.initializer}
    image = next(i for i in graph.input if i.name not in inits)
    result = "camo/result"
    # The user's names may already be ours: move the output first, then the input.
    _rename(graph, graph.output[0].name, result)
    _rename(graph, image.name, IMAGES)
    image.name = IMAGES
    if kind == "classifier":
        graph.node.append(helper.make_node("Flatten", [result], [OUTPUTS], axis=1, name="camo/outputs"))
        shape = ["batch", None]
    else:
        minus_one = helper.make_tensor("camo/flat", TensorProto.INT64, [1], [-1])
        graph.initializer.append(minus_one)
        graph.node.append(helper.make_node("Reshape", [result, "camo/flat"], [OUTPUTS], name="camo/outputs"))
        shape = ["batch"]
    del graph.output[:]
    graph.output.append(helper.make_tensor_value_info(OUTPUTS, TensorProto.FLOAT, shape))
    model.ir_version = min(model.ir_version, MAX_IR_VERSION)
    onnx.checker.check_model(model)
    return model


def _active(graph: onnx.GraphProto) -> set[str]:
    """Values that depend on the image input."""
    active = {IMAGES}
    for node in graph.node:
        if any(name in active for name in node.input):
            active.update(o for o in node.output if o)
    return active


def _classifier_loss(b: Builder, objective: Objective) -> tuple[str, str]:
    """``max(z[mask]) - kth_largest(z[~mask])`` clamped at ``-confidence``, and d loss / d z."""
    z = OUTPUTS
    classes = b.static_dims(z, [1])[0]
    k = objective.top_k
    mask = b.op("Greater", [TARGETS, b.const(0.5)])
    low = b.const(LOWEST, "lowest")
    pushed = b.op("Where", [mask, z, low])
    top = b.reduce("ReduceMax", pushed, [1], keepdims=1)
    values, indices = b.op("TopK", [b.op("Where", [mask, low, z]), b.const([k])], n_out=2, axis=1)
    kth = b.op("Slice", [values, b.const([k - 1]), b.const([k]), b.const([1])])
    kth_index = b.op("Slice", [indices, b.const([k - 1]), b.const([k]), b.const([1])])
    margin = b.op("Sub", [top, kth])
    floor = b.const(-objective.confidence, "floor")
    loss = b.op("Reshape", [b.op("Max", [margin, floor]), b.const([-1])])
    # clamp_min passes the gradient where margin >= floor; amax splits it over tied maxima;
    # topk sends it to the k-th index (a one-hot built by comparison, not a scatter).
    gate = b.op("Cast", [b.op("GreaterOrEqual", [margin, floor])], to=TensorProto.FLOAT)
    at_max = b.op("Cast", [b.op("Equal", [pushed, top])], to=TensorProto.FLOAT)
    at_max = b.op("Div", [at_max, b.reduce("ReduceSum", at_max, [1], keepdims=1)])
    at_kth = b.op("Cast", [b.op("Equal", [b.const(np.arange(classes)[None, :], "classes"), kth_index])], to=TensorProto.FLOAT)
    return loss, b.op("Mul", [gate, b.op("Sub", [at_max, at_kth])])


def _regressor_loss(b: Builder) -> tuple[str, str]:
    """``(score - target)^2`` and its derivative."""
    diff = b.op("Sub", [OUTPUTS, TARGETS])
    return b.op("Mul", [diff, diff]), b.op("Mul", [diff, b.const(2.0)])


def _backward(b: Builder, forward: list[onnx.NodeProto], seed: str) -> str:
    """d loss / d images, by reverse accumulation over the forward nodes."""
    active = _active(b.graph)
    grads = {OUTPUTS: seed}
    for node in reversed(forward):
        if node.output[0] not in grads or not any(name in active for name in node.input):
            continue
        if any(o in grads for o in node.output[1:]):
            raise AutodiffError(f"node {node.name!r} ({node.op_type}): gradients through secondary outputs are not supported")
        if node.domain not in ("", "ai.onnx") or node.op_type not in RULES:
            raise UnsupportedOperatorError(node, list(RULES))
        for name, g in zip(node.input, RULES[node.op_type](b, node, grads[node.output[0]])):
            if g is None or name not in active:
                continue
            grads[name] = b.op("Add", [grads[name], g]) if name in grads else g
    if IMAGES not in grads:
        raise AutodiffError("the output does not depend on the image input")
    return grads[IMAGES]


def _prune(graph: onnx.GraphProto) -> None:
    """Drop nodes and initializers that no graph output needs (e.g. weight gradients)."""
    needed = {o.name for o in graph.output}
    kept = []
    for node in reversed(graph.node):
        if any(o in needed for o in node.output):
            kept.append(node)
            needed.update(node.input)
    del graph.node[:]
    graph.node.extend(reversed(kept))
    inits = [i for i in graph.initializer if i.name in needed]
    del graph.initializer[:]
    graph.initializer.extend(inits)


def gradient_model(model: onnx.ModelProto, objective: Objective) -> onnx.ModelProto:
    """The gradient graph of a user's inference model (see the module docstring)."""
    model = standard_forward(model, objective.kind)
    forward = [copy.deepcopy(n) for n in model.graph.node]
    b = Builder(model)
    out_shape = b.shape(OUTPUTS)
    model.graph.input.append(helper.make_tensor_value_info(TARGETS, TensorProto.FLOAT, ["batch", *out_shape[1:]]))
    if objective.kind == "classifier":
        loss, seed = _classifier_loss(b, objective)
    else:
        loss, seed = _regressor_loss(b)
    grad = _backward(b, forward, seed)
    model.graph.node.append(helper.make_node("Identity", [loss], [LOSS], name="camo/loss"))
    model.graph.node.append(helper.make_node("Identity", [grad], [GRAD], name="camo/grad"))
    image_shape = ["batch", *b.shape(IMAGES)[1:]]
    model.graph.output.extend(
        [
            helper.make_tensor_value_info(LOSS, TensorProto.FLOAT, ["batch"]),
            helper.make_tensor_value_info(GRAD, TensorProto.FLOAT, image_shape),
        ]
    )
    _prune(model.graph)
    onnx.checker.check_model(model)
    return model
