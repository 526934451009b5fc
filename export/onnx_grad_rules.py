"""Input-gradient rules, one per ONNX operator: ``rule(b, node, gy) -> [grad per input]``.

``gy`` is the name of d(loss)/d(the node's first output); a rule returns a gradient name for
each input that needs one (``None`` where no gradient flows, e.g. weights or shapes).  The
forward values a rule needs are read from the forward graph, which the gradient graph keeps.

Covered, with these limits (anything else raises with the node and the reason):

* Conv / ConvTranspose-free backward of Conv: any groups, strides, dilations, explicit pads or
  ``auto_pad`` VALID/SAME_*; the input gradient is a ConvTranspose with the same weights.
* Gemm, MatMul (rank >= 2), with broadcasting.
* Relu, Clip (ReLU6), Sigmoid, HardSigmoid, HardSwish, Tanh, Exp, Neg: gates are strict
  (``min < x < max``) as in torch.
* Add, Sub, Mul, Div with numpy broadcasting (gradients summed back with ReduceSum).
* MaxPool without ``ceil_mode`` and without an ``Indices`` output: each window's gradient goes
  to the first position (row-major in the window) equal to its maximum, as torch does.  Ties
  are common on photos (flat regions give equal activations), so splitting them would not do.
  Built from Slice/Equal/And/Where and a one-hot ConvTranspose: no indices, no scatter.
* AveragePool (``count_include_pad`` either way, no ``ceil_mode``), GlobalAveragePool,
  ReduceMean, ReduceSum.
* BatchNormalization in inference mode.
* Flatten, Reshape, Squeeze, Unsqueeze, Identity, Dropout (inference), Transpose, Cast
  (float to float), Concat, Pad (constant mode), Softmax.
* Resize of the last two axes with ``scales`` or ``sizes``: ``nearest`` (all nearest modes) and
  ``linear``, coordinate modes half_pixel, pytorch_half_pixel, asymmetric, align_corners; no
  antialias.  The backward is the transposed linear map ``A_h^T gy A_w``.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import onnx
from onnx import helper

from .onnx_graph import AutodiffError, Builder

Rule = Callable[[Builder, onnx.NodeProto, str], list[str | None]]
RULES: dict[str, Rule] = {}


def rule(*op_types: str) -> Callable[[Rule], Rule]:
    def register(fn: Rule) -> Rule:
        for op_type in op_types:
            RULES[op_type] = fn
        return fn

    return register


def attrs(node: onnx.NodeProto) -> dict[str, object]:
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _text(value: object, default: str) -> str:
    if value is None:
        return default
    return value.decode() if isinstance(value, bytes) else str(value)


# -- element-wise -------------------------------------------------------------------------------
@rule("Identity", "Dropout")
def _identity(b: Builder, node: onnx.NodeProto, gy: str) -> list[str | None]:
    return [gy] + [None] * (len(node.input) - 1)


@rule("Cast")
def _cast(b: Builder, node: onnx.NodeProto, gy: str) -> list[str | None]:
    if attrs(node)["to"] not in (onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16, onnx.TensorProto.DOUBLE):
        raise AutodiffError(f"node {node.name!r}: Cast to a non-float type cuts the gradient")
    return [gy]


@rule("Neg")
def _neg(b: Builder, node: onnx.NodeProto, gy: str) -> list[str | None]:
    return [b.op("Neg", [gy])]


def _gate(b: Builder, condition: str, gy: str) -> str:
    return b.op("Where", [condition, gy, b.const(0.0, "zero")])


@rule("Relu")
def _relu(b: Builder, node: onnx.NodeProto, gy: str) -> list[str | None]:
    return [_gate(b, b.op("Greater", [node.output[0], b.const(0.0, "zero")]), gy)]


@rule("Clip")
def _clip(b: Builder, node: onnx.NodeProto, gy: str) -> list[str | None]:
    x = node.input[0]
    conditions = []
    if len(node.input) > 1 and node.input[1]:
        conditions.append(b.op("Greater", [x, node.input[1]]))
    if len(node.input) > 2 and node.input[2]:
        conditions.append(b.op("Less", [x, node.input[2]]))
    if not conditions:
        return [gy, None, None]
    inside = conditions[0] if len(conditions) == 1 else b.op("And", conditions)
    return [_gate(b, inside, gy)] + [None] * (len(node.input) - 1)


@rule("Sigmoid")
def _sigmoid(b: Builder, node: onnx.NodeProto, gy: str) -> list[str | None]:
    y = node.output[0]
    return [b.op("Mul", [gy, b.op("Mul", [y, b.op("Sub", [b.const(1.0, "one"), y])])])]


@rule("Tanh")
def _tanh(b: Builder, node: onnx.NodeProto, gy: str) -> list[str | None]:
    y = node.output[0]
    return [b.op("Mul", [gy, b.op("Sub", [b.const(1.0, "one"), b.op("Mul", [y, y])])])]


@rule("Exp")
def _exp(b: Builder, node: onnx.NodeProto, gy: str) -> list[str | None]:
    return [b.op("Mul", [gy, node.output[0]])]


@rule("HardSigmoid")
def _hard_sigmoid(b: Builder, node: onnx.NodeProto, gy: str) -> list[str | None]:
    a = attrs(node)
    alpha, beta = float(a.get("alpha", 0.2)), float(a.get("beta", 0.5))
    # y = clip(alpha x + beta, 0, 1): slope alpha strictly inside.
    z = b.op("Add", [b.op("Mul", [node.input[0], b.const(alpha)]), b.const(beta)])
    inside = b.op("And", [b.op("Greater", [z, b.const(0.0)]), b.op("Less", [z, b.const(1.0)])])
    return [_gate(b, inside, b.op("Mul", [gy, b.const(alpha)]))]


@rule("HardSwish")
def _hard_swish(b: Builder, node: onnx.NodeProto, gy: str) -> list[str | None]:
    # torch: 0 below -3, x/3 + 1/2 up to 3 (inclusive), 1 above.
    x = node.input[0]
    slope = b.op("Add", [b.op("Div", [x, b.const(3.0)]), b.const(0.5)])
    slope = b.op("Where", [b.op("Greater", [x, b.const(3.0)]), b.const(1.0), slope])
    slope = b.op("Where", [b.op("Less", [x, b.const(-3.0)]), b.const(0.0), slope])
    return [b.op("Mul", [gy, slope])]


@rule("Add")
def _add(b: Builder, node: onnx.NodeProto, gy: str) -> list[str | None]:
    y = node.output[0]
    return [b.unbroadcast(gy, x, y) for x in node.input]


@rule("Sub")
def _sub(b: Builder, node: onnx.NodeProto, gy: str) -> list[str | None]:
    y = node.output[0]
    return [b.unbroadcast(gy, node.input[0], y), b.unbroadcast(b.op("Neg", [gy]), node.input[1], y)]


@rule("Mul")
def _mul(b: Builder, node: onnx.NodeProto, gy: str) -> list[str | None]:
    a, c = node.input
    y = node.output[0]
    return [b.unbroadcast(b.op("Mul", [gy, c]), a, y), b.unbroadcast(b.op("Mul", [gy, a]), c, y)]


@rule("Div")
def _div(b: Builder, node: onnx.NodeProto, gy: str) -> list[str | None]:
    a, c = node.input
    y = node.output[0]
    ga = b.op("Div", [gy, c])
    gc = b.op("Neg", [b.op("Div", [b.op("Mul", [gy, y]), c])])
    return [b.unbroadcast(ga, a, y), b.unbroadcast(gc, c, y)]


# -- linear algebra -----------------------------------------------------------------------------
@rule("Gemm")
def _gemm(b: Builder, node: onnx.NodeProto, gy: str) -> list[str | None]:
    a = attrs(node)
    alpha, beta = float(a.get("alpha", 1.0)), float(a.get("beta", 1.0))
    ta, tb = int(a.get("transA", 0)), int(a.get("transB", 0))
    x, w = node.input[0], node.input[1]
    # Y = alpha A' B' + beta C with A' = A^T if transA, B' likewise.
    if ta:
        gx = b.op("Gemm", [w, gy], alpha=alpha, transA=tb, transB=1)
    else:
        gx = b.op("Gemm", [gy, w], alpha=alpha, transA=0, transB=1 - tb)
    if tb:
        gw = b.op("Gemm", [gy, x], alpha=alpha, transA=1, transB=ta)
    else:
        gw = b.op("Gemm", [x, gy], alpha=alpha, transA=1 - ta, transB=0)
    grads: list[str | None] = [gx, gw]
    if len(node.input) > 2 and node.input[2]:
        grads.append(b.unbroadcast(b.op("Mul", [gy, b.const(beta)]), node.input[2], node.output[0]))
    return grads


def _swap_last(b: Builder, x: str) -> str:
    rank = len(b.shape(x))
    if rank < 2:
        raise AutodiffError(f"MatMul operand {x!r} has rank {rank}; rank >= 2 is supported")
    return b.op("Transpose", [x], perm=[*range(rank - 2), rank - 1, rank - 2])


@rule("MatMul")
def _matmul(b: Builder, node: onnx.NodeProto, gy: str) -> list[str | None]:
    a, c = node.input
    y = node.output[0]
    ga = b.op("MatMul", [gy, _swap_last(b, c)])
    gc = b.op("MatMul", [_swap_last(b, a), gy])
    return [b.unbroadcast(ga, a, y), b.unbroadcast(gc, c, y)]


# -- convolution and pooling --------------------------------------------------------------------
def _conv_pads(b: Builder, node: onnx.NodeProto, x: str, kernel: list[int], strides: list[int], dilations: list[int]) -> list[int]:
    a = attrs(node)
    auto_pad = _text(a.get("auto_pad"), "NOTSET")
    n = len(kernel)
    if auto_pad == "NOTSET":
        return list(a.get("pads", [0] * 2 * n))
    if auto_pad == "VALID":
        return [0] * 2 * n
    sizes = b.static_dims(x, range(2, 2 + n))
    begin, end = [], []
    for size, k, s, d in zip(sizes, kernel, strides, dilations):
        total = max(0, (math.ceil(size / s) - 1) * s + d * (k - 1) + 1 - size)
        small, large = total // 2, total - total // 2
        begin.append(small if auto_pad == "SAME_UPPER" else large)
        end.append(large if auto_pad == "SAME_UPPER" else small)
    return begin + end


def _transpose_conv(
    b: Builder, gy: str, weight: str, x: str, y: str, kernel: list[int], strides: list[int],
    dilations: list[int], pads: list[int], group: int,
) -> str:
    """The adjoint of a convolution: ConvTranspose, with output_padding restoring the input size."""
    n = len(kernel)
    in_sizes = b.static_dims(x, range(2, 2 + n))
    out_sizes = b.static_dims(y, range(2, 2 + n))
    extra = [
        i - ((o - 1) * s - pads[a] - pads[a + n] + d * (k - 1) + 1)
        for a, (i, o, s, d, k) in enumerate(zip(in_sizes, out_sizes, strides, dilations, kernel))
    ]
    return b.op(
        "ConvTranspose", [gy, weight], group=group, strides=strides, dilations=dilations,
        pads=pads, kernel_shape=kernel, output_padding=extra,
    )


@rule("Conv")
def _conv(b: Builder, node: onnx.NodeProto, gy: str) -> list[str | None]:
    a = attrs(node)
    x, w = node.input[0], node.input[1]
    kernel = list(a.get("kernel_shape") or b.shape(w)[2:])
    n = len(kernel)
    strides = list(a.get("strides", [1] * n))
    dilations = list(a.get("dilations", [1] * n))
    pads = _conv_pads(b, node, x, kernel, strides, dilations)
    gx = _transpose_conv(b, gy, w, x, node.output[0], kernel, strides, dilations, pads, int(a.get("group", 1)))
    return [gx] + [None] * (len(node.input) - 1)


def _pool_geometry(b: Builder, node: onnx.NodeProto) -> tuple[list[int], list[int], list[int], list[int]]:
    a = attrs(node)
    if int(a.get("ceil_mode", 0)):
        raise AutodiffError(f"node {node.name!r}: {node.op_type} with ceil_mode=1 is not supported")
    kernel = list(a["kernel_shape"])
    n = len(kernel)
    strides = list(a.get("strides", [1] * n))
    dilations = list(a.get("dilations", [1] * n))
    return kernel, strides, dilations, _conv_pads(b, node, node.input[0], kernel, strides, dilations)


def _place(b: Builder, stacked: str, x: str, y: str, weight: np.ndarray, geometry: tuple) -> str:
    """Sum window-shaped contributions back onto the input positions they came from."""
    kernel, strides, dilations, pads = geometry
    planes = _transpose_conv(b, stacked, b.const(weight, "window"), x, y, kernel, strides, dilations, pads, 1)
    return b.op("Reshape", [planes, b.op("Shape", [x])])


@rule("MaxPool")
def _max_pool(b: Builder, node: onnx.NodeProto, gy: str) -> list[str | None]:
    if len(node.output) > 1 and node.output[1]:
        raise AutodiffError(f"node {node.name!r}: MaxPool with an Indices output is not supported")
    kernel, strides, dilations, pads = _pool_geometry(b, node)
    x, y = node.input[0], node.output[0]
    n = len(kernel)
    out_sizes = b.static_dims(y, range(2, 2 + n))
    # Pad with the lowest float so that padding never equals a window maximum.
    padded = b.op("Pad", [x, b.const([0, 0, *pads[:n], 0, 0, *pads[n:]], "pads"), b.const(np.float32(-3.4e38))])
    offsets = list(np.ndindex(*kernel))
    # Torch sends a window's gradient to its first maximum in row-major order.  Without
    # indices: walk the offsets in that order, keeping a mask of windows already served.
    firsts, served = [], None
    for offset in offsets:
        starts = [o * d for o, d in zip(offset, dilations)]
        ends = [s + (size - 1) * st + 1 for s, size, st in zip(starts, out_sizes, strides)]
        taken = b.op("Slice", [padded, b.const(starts), b.const(ends), b.const(list(range(2, 2 + n))), b.const(strides)])
        hit = b.op("Equal", [taken, y])
        first = hit if served is None else b.op("And", [hit, b.op("Not", [served])])
        served = hit if served is None else b.op("Or", [served, hit])
        firsts.append(b.op("Where", [first, gy, b.const(0.0, "zero")]))
    stacked = b.op("Concat", firsts, axis=1)
    # (N, K*C, ...) with K outer -> planes of K offsets per channel.
    channels = b.static_dims(x, [1])[0]
    stacked = b.op("Reshape", [stacked, b.const([-1, len(offsets), channels, *out_sizes], "shape")])
    stacked = b.op("Transpose", [stacked], perm=[0, 2, 1, *range(3, 3 + n)])
    stacked = b.op("Reshape", [stacked, b.const([-1, len(offsets), *out_sizes], "shape")])
    onehot = np.zeros((len(offsets), 1, *kernel), np.float32)
    for k, offset in enumerate(offsets):
        onehot[(k, 0, *offset)] = 1
    return [_place(b, stacked, x, y, onehot, (kernel, strides, dilations, pads))]


@rule("AveragePool")
def _average_pool(b: Builder, node: onnx.NodeProto, gy: str) -> list[str | None]:
    geometry = kernel, strides, dilations, pads = _pool_geometry(b, node)
    x, y = node.input[0], node.output[0]
    n = len(kernel)
    if int(attrs(node).get("count_include_pad", 0)) or not any(pads):
        share = b.op("Div", [gy, b.const(float(np.prod(kernel)))])
    else:
        # Divisor per window: the number of real (non-pad) inputs it covers.
        in_sizes = b.static_dims(x, range(2, 2 + n))
        out_sizes = b.static_dims(y, range(2, 2 + n))
        counts = np.ones(out_sizes, np.float32)
        for axis, (size, out, k, s, d, p) in enumerate(zip(in_sizes, out_sizes, kernel, strides, dilations, pads)):
            starts = np.arange(out) * s - p
            taps = starts[:, None] + np.arange(k)[None, :] * d
            real = ((taps >= 0) & (taps < size)).sum(1).astype(np.float32)
            counts *= real.reshape([-1 if i == axis else 1 for i in range(n)])
        share = b.op("Div", [gy, b.const(counts, "counts")])
    # One plane per (image, channel): the window is then a single-channel ConvTranspose.
    planes = b.op("Reshape", [share, b.const([-1, 1, *b.static_dims(y, range(2, 2 + n))], "shape")])
    return [_place(b, planes, x, y, np.ones((1, 1, *kernel), np.float32), geometry)]


@rule("GlobalAveragePool")
def _global_average_pool(b: Builder, node: onnx.NodeProto, gy: str) -> list[str | None]:
    x = node.input[0]
    area = float(np.prod(b.static_dims(x, range(2, len(b.shape(x))))))
    return [b.op("Div", [b.op("Expand", [gy, b.op("Shape", [x])]), b.const(area)])]


def _reduce_axes(b: Builder, node: onnx.NodeProto) -> list[int]:
    a = attrs(node)
    rank = len(b.shape(node.input[0]))
    if len(node.input) > 1 and node.input[1]:
        axes = b.constant(node.input[1]).tolist()
    else:
        axes = a.get("axes")
    if not axes:
        if int(a.get("noop_with_empty_axes", 0)):
            return []
        axes = list(range(rank))
    return sorted(int(ax) % rank for ax in axes)


def _reduce_back(b: Builder, node: onnx.NodeProto, gy: str, divide: bool) -> list[str | None]:
    x = node.input[0]
    axes = _reduce_axes(b, node)
    if not int(attrs(node).get("keepdims", 1)) and axes:
        gy = b.op("Unsqueeze", [gy, b.const(axes, "axes")])
    g = b.op("Expand", [gy, b.op("Shape", [x])])
    if divide and axes:
        g = b.op("Div", [g, b.const(float(np.prod(b.static_dims(x, axes))))])
    return [g] + [None] * (len(node.input) - 1)


@rule("ReduceMean")
def _reduce_mean(b: Builder, node: onnx.NodeProto, gy: str) -> list[str | None]:
    return _reduce_back(b, node, gy, divide=True)


@rule("ReduceSum")
def _reduce_sum(b: Builder, node: onnx.NodeProto, gy: str) -> list[str | None]:
    return _reduce_back(b, node, gy, divide=False)


@rule("BatchNormalization")
def _batch_norm(b: Builder, node: onnx.NodeProto, gy: str) -> list[str | None]:
    if int(attrs(node).get("training_mode", 0)) or len(node.output) > 1:
        raise AutodiffError(f"node {node.name!r}: only inference-mode BatchNormalization is supported")
    x, scale, _, _, var = node.input
    eps = float(attrs(node).get("epsilon", 1e-5))
    factor = b.op("Div", [scale, b.op("Sqrt", [b.op("Add", [var, b.const(eps)])])])
    spatial = len(b.shape(x)) - 2
    factor = b.op("Reshape", [factor, b.const([-1] + [1] * spatial, "shape")])
    return [b.op("Mul", [gy, factor]), None, None, None, None]


# -- shape and layout ---------------------------------------------------------------------------
@rule("Flatten", "Reshape", "Squeeze", "Unsqueeze")
def _reshape(b: Builder, node: onnx.NodeProto, gy: str) -> list[str | None]:
    x = node.input[0]
    return [b.op("Reshape", [gy, b.op("Shape", [x])])] + [None] * (len(node.input) - 1)


@rule("Transpose")
def _transpose(b: Builder, node: onnx.NodeProto, gy: str) -> list[str | None]:
    perm = attrs(node).get("perm") or list(reversed(range(len(b.shape(node.input[0])))))
    return [b.op("Transpose", [gy], perm=[int(i) for i in np.argsort(perm)])]


@rule("Concat")
def _concat(b: Builder, node: onnx.NodeProto, gy: str) -> list[str | None]:
    axis = int(attrs(node)["axis"])
    axis %= len(b.shape(node.output[0]))
    grads: list[str | None] = []
    start = 0
    for x in node.input:
        (size,) = b.static_dims(x, [axis])
        grads.append(b.op("Slice", [gy, b.const([start]), b.const([start + size]), b.const([axis])]))
        start += size
    return grads


@rule("Pad")
def _pad(b: Builder, node: onnx.NodeProto, gy: str) -> list[str | None]:
    mode = _text(attrs(node).get("mode"), "constant")
    if mode != "constant":
        raise AutodiffError(f"node {node.name!r}: Pad mode {mode!r} is not supported (only constant)")
    pads = b.constant(node.input[1]).tolist()
    rank = len(b.shape(node.input[0]))
    axes = list(range(rank))
    if len(node.input) > 3 and node.input[3]:
        axes = [int(a) % rank for a in b.constant(node.input[3]).tolist()]
    n = len(axes)
    if any(p < 0 for p in pads):
        raise AutodiffError(f"node {node.name!r}: negative pads (cropping) are not supported")
    starts = pads[:n]
    # Unpadded ends run to the end of the axis, so a symbolic batch axis needs no size.
    ends = [b.static_dims(node.output[0], [a])[0] - p if p else np.iinfo(np.int64).max for a, p in zip(axes, pads[n:])]
    return [b.op("Slice", [gy, b.const(starts), b.const(ends), b.const(axes)])] + [None] * (len(node.input) - 1)


@rule("Softmax")
def _softmax(b: Builder, node: onnx.NodeProto, gy: str) -> list[str | None]:
    y = node.output[0]
    axis = int(attrs(node).get("axis", -1)) % len(b.shape(y))
    if b.opset < 13:
        raise AutodiffError(f"node {node.name!r}: Softmax before opset 13 flattens axes; not supported")
    dot = b.reduce("ReduceSum", b.op("Mul", [gy, y]), [axis], keepdims=1)
    return [b.op("Mul", [y, b.op("Sub", [gy, dot])])]


def _source_coordinates(out: int, size: int, scale: float, mode: str) -> np.ndarray:
    """Where each output sample of a 1-D Resize reads the input (ONNX's coordinate modes)."""
    i = np.arange(out, dtype=np.float64)
    if mode == "asymmetric":
        return i / scale
    if mode == "align_corners":
        return i * (size - 1) / (out - 1) if out > 1 else np.zeros(out)
    if mode == "pytorch_half_pixel":
        return (i + 0.5) / scale - 0.5 if out > 1 else np.zeros(out)
    if mode == "half_pixel":
        return (i + 0.5) / scale - 0.5
    raise AutodiffError(f"Resize coordinate_transformation_mode {mode!r} is not supported")


def _nearest_index(coords: np.ndarray, rounding: str) -> np.ndarray:
    if rounding == "floor":
        return np.floor(coords)
    if rounding == "ceil":
        return np.ceil(coords)
    if rounding == "round_prefer_ceil":
        return np.floor(coords + 0.5)
    if rounding == "round_prefer_floor":
        return np.ceil(coords - 0.5)
    raise AutodiffError(f"Resize nearest_mode {rounding!r} is not supported")


def resize_matrix(size: int, out: int, scale: float, a: dict[str, object]) -> np.ndarray:
    """The (out, size) matrix of a 1-D ONNX Resize along one axis."""
    mode = _text(a.get("mode"), "nearest")
    coords = _source_coordinates(out, size, scale, _text(a.get("coordinate_transformation_mode"), "half_pixel"))
    matrix = np.zeros((out, size), np.float64)
    rows = np.arange(out)
    if mode == "nearest":
        index = _nearest_index(coords, _text(a.get("nearest_mode"), "round_prefer_floor"))
        matrix[rows, np.clip(index, 0, size - 1).astype(int)] = 1
    elif mode == "linear":
        coords = np.clip(coords, 0, size - 1)
        low = np.floor(coords).astype(int)
        high = np.minimum(low + 1, size - 1)
        frac = coords - low
        np.add.at(matrix, (rows, low), 1 - frac)
        np.add.at(matrix, (rows, high), frac)
    else:
        raise AutodiffError(f"Resize mode {mode!r} is not supported (nearest, linear)")
    return matrix.astype(np.float32)


@rule("Resize")
def _resize(b: Builder, node: onnx.NodeProto, gy: str) -> list[str | None]:
    a = attrs(node)
    if int(a.get("antialias", 0)) or (a.get("axes") is not None):
        raise AutodiffError(f"node {node.name!r}: Resize with antialias or axes is not supported")
    x, y = node.input[0], node.output[0]
    if len(b.shape(x)) != 4:
        raise AutodiffError(f"node {node.name!r}: Resize is supported on NCHW inputs only")
    in_sizes = b.static_dims(x, [2, 3])
    out_sizes = b.static_dims(y, [2, 3])
    if len(node.input) > 2 and node.input[2] and b.constant(node.input[2]).size:
        scales = b.constant(node.input[2]).tolist()
        if scales[:2] != [1.0, 1.0]:
            raise AutodiffError(f"node {node.name!r}: Resize may only scale the last two axes")
        scales = scales[2:]
    else:
        scales = [o / i for o, i in zip(out_sizes, in_sizes)]
    rows = resize_matrix(in_sizes[0], out_sizes[0], scales[0], a)
    cols = resize_matrix(in_sizes[1], out_sizes[1], scales[1], a)
    # y = R x C^T  =>  gx = R^T gy C
    gx = b.op("MatMul", [b.op("MatMul", [b.const(rows.T, "resize_rows"), gy]), b.const(cols, "resize_cols")])
    return [gx] + [None] * (len(node.input) - 1)
