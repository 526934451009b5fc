"""The engine's own reverse-mode pass over ONNX graphs against torch autograd."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
import torch.nn.functional as F
from camo_engine.export.check import compare, exact_reference, torch_reference
from camo_engine.export.onnx_autodiff import Objective, gradient_model
from camo_engine.export.onnx_graph import UnsupportedOperatorError
from onnx import helper
from onnx_cases import (  # noqa: F401
    TinyClassifier,
    efficientnet,
    exported,
    onnx_cache,
    places365,
    run,
    single_op_model,
    torch_regressor_step,
)

rng = np.random.default_rng(0)


def randn(*shape: int) -> np.ndarray:
    return rng.standard_normal(shape).astype(np.float32)


X = torch.from_numpy(randn(2, 4, 9, 10))
W33 = randn(6, 4, 3, 3)
W_DW = randn(4, 1, 3, 3)
BIAS = randn(6)
ROW = randn(1, 4, 1, 10)  # broadcast partner
CHAN = randn(4, 1, 1)
BN = [np.abs(randn(4)) + 0.5, randn(4), randn(4), np.abs(randn(4)) + 0.5]
G = randn(360, 7)
GB = randn(7)
MM = randn(90, 5)


def node(op: str, inputs: list[str], **attrs: object) -> onnx.NodeProto:
    return helper.make_node(op, inputs, ["y"], name=f"the_{op.lower()}", **attrs)


t = torch.from_numpy
# (id, nodes, constants, torch function of x, x)
CASES = [
    ("conv", [node("Conv", ["x", "w", "b"], pads=[1, 0, 1, 2], strides=[2, 1])], {"w": W33, "b": BIAS},
     lambda x: F.conv2d(F.pad(x, (0, 2, 1, 1)), t(W33), t(BIAS), stride=(2, 1)), X),
    ("conv_depthwise_dilated", [node("Conv", ["x", "w"], group=4, dilations=[2, 2], pads=[2, 2, 2, 2], strides=[2, 2])], {"w": W_DW},
     lambda x: F.conv2d(x, t(W_DW), groups=4, dilation=2, padding=2, stride=2), X),
    ("conv_same_upper", [node("Conv", ["x", "w"], auto_pad="SAME_UPPER", strides=[2, 2])], {"w": W33},
     lambda x: F.conv2d(F.pad(x, (0, 1, 1, 1)), t(W33), stride=2), X),
    ("relu", [node("Relu", ["x"])], {}, torch.relu, X),
    ("clip_relu6", [node("Clip", ["x", "lo", "hi"])], {"lo": np.float32(0), "hi": np.float32(0.5)},
     lambda x: F.hardtanh(x, 0, 0.5), X),
    ("sigmoid", [node("Sigmoid", ["x"])], {}, torch.sigmoid, X),
    ("hardswish", [node("HardSwish", ["x"])], {}, F.hardswish, X * 3),
    ("add_broadcast", [node("Add", ["x", "r"])], {"r": ROW}, lambda x: x + t(ROW), X),
    ("sub_broadcast", [node("Sub", ["r", "x"])], {"r": CHAN}, lambda x: t(CHAN) - x, X),
    ("mul_self", [node("Mul", ["x", "x"])], {}, lambda x: x * x, X),
    ("div_broadcast", [node("Div", ["r", "x"])], {"r": ROW}, lambda x: t(ROW) / x, X.abs() + 0.5),
    ("maxpool_ties", [node("MaxPool", ["x"], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])], {},
     lambda x: F.max_pool2d(x, 3, 2, 1), torch.relu(X).round()),
    ("avgpool_exclude_pad", [node("AveragePool", ["x"], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])], {},
     lambda x: F.avg_pool2d(x, 3, 2, 1, count_include_pad=False), X),
    ("avgpool_include_pad", [node("AveragePool", ["x"], kernel_shape=[2, 3], strides=[2, 2], pads=[0, 1, 0, 1], count_include_pad=1)], {},
     lambda x: F.avg_pool2d(x, (2, 3), 2, (0, 1), count_include_pad=True), X),
    ("global_average_pool", [node("GlobalAveragePool", ["x"])], {}, lambda x: x.mean((2, 3), keepdim=True), X),
    ("batchnorm", [node("BatchNormalization", ["x", "s", "bb", "m", "v"], epsilon=1e-3)], dict(zip("s bb m v".split(), BN)),
     lambda x: F.batch_norm(x, t(BN[2]), t(BN[3]), t(BN[0]), t(BN[1]), False, 0.0, 1e-3), X),
    ("pad", [node("Pad", ["x", "p"])], {"p": np.array([0, 0, 1, 2, 0, 0, 3, 0])}, lambda x: F.pad(x, (2, 0, 1, 3)), X),
    ("softmax", [node("Softmax", ["x"], axis=1)], {}, lambda x: torch.softmax(x, 1), X),
    ("resize_nearest", [node("Resize", ["x", "", "s"], mode="nearest", coordinate_transformation_mode="asymmetric", nearest_mode="floor")],
     {"s": np.array([1, 1, 2, 1.5], np.float32)}, lambda x: F.interpolate(x, scale_factor=(2, 1.5), mode="nearest"), X),
    ("resize_linear_down", [node("Resize", ["x", "", "s"], mode="linear", coordinate_transformation_mode="half_pixel")],
     {"s": np.array([1, 1, 0.5, 0.5], np.float32)}, lambda x: F.interpolate(x, scale_factor=0.5, mode="bilinear"), X),
    ("resize_linear_sizes", [node("Resize", ["x", "", "", "z"], mode="linear", coordinate_transformation_mode="align_corners")],
     {"z": np.array([2, 4, 13, 7])}, lambda x: F.interpolate(x, size=(13, 7), mode="bilinear", align_corners=True), X),
    ("flatten_gemm", [helper.make_node("Flatten", ["x"], ["f"]), node("Gemm", ["f", "g", "gb"], alpha=0.5, beta=2.0)],
     {"g": G, "gb": GB}, lambda x: 0.5 * x.flatten(1) @ t(G) + 2 * t(GB), X),
    ("gemm_trans_b", [helper.make_node("Flatten", ["x"], ["f"]), node("Gemm", ["f", "g"], transB=1)],
     {"g": G.T.copy()}, lambda x: x.flatten(1) @ t(G), X),
    ("reshape_matmul_concat", [
        helper.make_node("Reshape", ["x", "shape"], ["r"]),
        helper.make_node("MatMul", ["r", "mm"], ["m"]),
        helper.make_node("Concat", ["m", "r"], ["y"], axis=2)],
     {"shape": np.array([0, 4, 90]), "mm": MM},
     lambda x: torch.cat([x.reshape(2, 4, 90) @ t(MM), x.reshape(2, 4, 90)], 2), X),
]


@pytest.mark.parametrize("nodes, constants, fn, x", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_operator_gradient_matches_torch(nodes, constants, fn, x) -> None:
    expected = fn(x)
    weight = torch.from_numpy(randn(1, *expected.shape[1:]))
    model = single_op_model(nodes, "y", x.shape, expected.ndim, constants, weight.numpy())
    targets = torch.tensor([1.0, -2.0])
    graph = gradient_model(model, Objective("regressor"))
    actual = run(graph, {"images": x, "targets": targets})
    result = compare(tuple(actual), torch_regressor_step(fn, x, weight, targets))
    assert max(result.outputs_rel_err, result.loss_rel_err, result.grad_rel_err) <= 1e-5, result
    assert result.grad_sign_agreement == 1.0


def test_classifier_loss_matches_victim_loss() -> None:
    """Margin, clamp and top-k of the appended loss are those of ``Classifier.loss``."""
    victim = TinyClassifier(top_k=2, confidence=0.5)
    w = randn(7, 10)
    model = single_op_model(
        [helper.make_node("Flatten", ["x"], ["f"]), helper.make_node("Gemm", ["f", "w"], ["y"])],
        "y", (3, 7, 1, 1), 2, {"w": w},
    )
    x = torch.from_numpy(randn(3, 7, 1, 1))
    logits = x.flatten(1) @ torch.from_numpy(w)
    targets = victim.reference(logits, logits)
    targets[0, logits[0].argsort()[-3]] = 1.0  # two pushed classes in one row
    graph = gradient_model(model, Objective("classifier", top_k=2, confidence=0.5))
    actual = run(graph, {"images": x, "targets": targets})

    class Linear(TinyClassifier):
        def network(self, batch: torch.Tensor) -> torch.Tensor:
            return batch.flatten(1) @ torch.from_numpy(w)

    result = compare(tuple(actual), torch_reference(Linear(top_k=2, confidence=0.5), x, targets))
    assert max(result.outputs_rel_err, result.loss_rel_err, result.grad_rel_err) <= 1e-5, result


def test_unsupported_operator_names_node_and_op() -> None:
    model = single_op_model([helper.make_node("Erf", ["x"], ["y"], name="my_erf")], "y", (2, 4, 9, 10), 4, weight=randn(1, 4, 9, 10))
    with pytest.raises(UnsupportedOperatorError, match=r"node 'my_erf': operator Erf has no gradient rule"):
        gradient_model(model, Objective("regressor"))


def test_maxpool_backward_uses_no_indices_or_scatter() -> None:
    nodes = [node("MaxPool", ["x"], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])]
    model = single_op_model(nodes, "y", X.shape, 4, weight=randn(1, 4, 5, 5))
    graph = gradient_model(model, Objective("regressor"))
    ops = {n.op_type for n in graph.graph.node}
    assert not ops & {"ScatterElements", "ScatterND", "Scatter", "MaxUnpool", "GatherElements"}
    assert all(len([o for o in n.output if o]) == 1 for n in graph.graph.node if n.op_type == "MaxPool")


@pytest.mark.slow
def test_tiny_forward_graph_autodiff_matches_torch(onnx_cache) -> None:
    victim = TinyClassifier()
    directory = exported(victim, onnx_cache)
    _check_forward_file(victim, directory / "forward.onnx", (33, 33))


def _check_forward_file(victim, forward, geometry) -> None:
    """Treat an exported forward graph as a user file: autodiff it and compare with torch."""
    from camo_engine.export.examples import example_batch, example_targets

    graph = gradient_model(onnx.load(forward), Objective("classifier", victim.top_k, victim.confidence))
    batch = example_batch(victim, geometry, 2)
    targets = example_targets(victim, batch)
    reference = torch_reference(victim, batch, targets)
    exact = exact_reference(victim, batch, targets)
    result = compare(tuple(run(graph, {"images": batch, "targets": targets})), reference, exact)
    assert result.ok, result


@pytest.mark.slow
def test_efficientnet_forward_graph_autodiff(efficientnet, onnx_cache) -> None:
    _check_forward_file(efficientnet, exported(efficientnet, onnx_cache) / "forward.onnx", (224, 224))


@pytest.mark.slow
def test_places365_forward_graph_autodiff(places365, onnx_cache) -> None:
    _check_forward_file(places365, exported(places365, onnx_cache) / "forward.onnx", (224, 224))
