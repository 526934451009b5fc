"""A small ONNX graph builder for the reverse-mode pass: fresh names, constants, shapes.

Everything it emits is plain ONNX that TensorRT's ONNX parser accepts (no Scatter*, no
MaxPool ``Indices``, no training ops).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

Shape = list[int | None]  # None: a symbolic or unknown dimension

MIN_OPSET = 13


class AutodiffError(ValueError):
    """A graph the reverse-mode pass cannot differentiate, with the reason."""


class UnsupportedOperatorError(AutodiffError):
    """A node whose operator has no gradient rule."""

    def __init__(self, node: onnx.NodeProto, supported: Sequence[str]) -> None:
        where = f"node {node.name!r}" if node.name else f"the node producing {list(node.output)}"
        domain = f"{node.domain}::" if node.domain else ""
        super().__init__(
            f"{where}: operator {domain}{node.op_type} has no gradient rule; supported: "
            f"{', '.join(sorted(supported))}"
        )
        self.node_name = node.name
        self.op_type = node.op_type


class Builder:
    """Appends nodes and initializers to a graph, naming every new value uniquely."""

    def __init__(self, model: onnx.ModelProto, prefix: str = "grad") -> None:
        self.model = model
        self.graph = model.graph
        self.prefix = prefix
        self.opset = next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
        self._count = 0
        self.shapes = _static_shapes(model)
        self.constants = {init.name: numpy_helper.to_array(init) for init in self.graph.initializer}
        for node in self.graph.node:
            if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
                self.constants[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)

    def fresh(self, hint: str) -> str:
        self._count += 1
        return f"{self.prefix}/{hint}_{self._count}"

    def op(self, op_type: str, inputs: Sequence[str], n_out: int = 1, **attrs: object) -> str | list[str]:
        outputs = [self.fresh(op_type.lower()) for _ in range(n_out)]
        self.graph.node.append(helper.make_node(op_type, list(inputs), outputs, name=self.fresh(op_type), **attrs))
        return outputs[0] if n_out == 1 else outputs

    def const(self, value: np.ndarray | float | Sequence[int], hint: str = "const") -> str:
        """An initializer: float arrays stay float32, integer lists become int64."""
        array = np.asarray(value)
        array = array.astype(np.int64 if array.dtype.kind in "iu" else np.float32)
        name = self.fresh(hint)
        self.graph.initializer.append(numpy_helper.from_array(array, name))
        self.constants[name] = array
        return name

    def shape(self, name: str) -> Shape:
        if name not in self.shapes:
            raise AutodiffError(f"no shape known for {name!r}: the gradient rule needs its rank and sizes")
        return self.shapes[name]

    def static_dims(self, name: str, axes: Sequence[int]) -> list[int]:
        """Sizes that must be known statically (spatial sizes, concat widths...)."""
        shape = self.shape(name)
        dims = [shape[a] for a in axes]
        if any(d is None for d in dims):
            raise AutodiffError(f"{name!r} has symbolic sizes {shape} on axes {list(axes)}; they must be static")
        return dims  # type: ignore[return-value]

    def constant(self, name: str) -> np.ndarray:
        if name not in self.constants:
            raise AutodiffError(f"{name!r} must be a constant (an initializer or Constant node)")
        return self.constants[name]

    def reduce(self, op_type: str, x: str, axes: Sequence[int], keepdims: int = 1) -> str:
        """Reduce* with axes as an input or an attribute, whichever the opset wants."""
        axes_as_input = self.opset >= (13 if op_type == "ReduceSum" else 18)
        if axes_as_input:
            return self.op(op_type, [x, self.const(list(axes), "axes")], keepdims=keepdims)
        return self.op(op_type, [x], axes=list(axes), keepdims=keepdims)

    def unbroadcast(self, grad: str, operand: str, output: str) -> str:
        """Sum ``grad`` (shaped like ``output``) back to the shape of a broadcast ``operand``."""
        out_shape, in_shape = self.shape(output), self.shape(operand)
        lead = len(out_shape) - len(in_shape)
        axes = list(range(lead)) + [
            lead + i for i, d in enumerate(in_shape) if d == 1 and out_shape[lead + i] != 1
        ]
        if not axes:
            return grad
        summed = self.reduce("ReduceSum", grad, axes, keepdims=1)
        return self.op("Reshape", [summed, self.op("Shape", [operand])])


def _static_shapes(model: onnx.ModelProto) -> dict[str, Shape]:
    inferred = onnx.shape_inference.infer_shapes(model, data_prop=True)
    shapes: dict[str, Shape] = {}
    graph = inferred.graph
    for info in [*graph.input, *graph.value_info, *graph.output]:
        if not info.type.tensor_type.HasField("shape"):
            continue
        shapes[info.name] = [d.dim_value if d.HasField("dim_value") else None for d in info.type.tensor_type.shape.dim]
    for init in graph.initializer:
        shapes[init.name] = list(init.dims)
    return shapes


def prepare(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy at opset >= 13 (older models are converted), with a symbolic batch on the input."""
    model = onnx.ModelProto.FromString(model.SerializeToString())
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)
    if opset is None:
        raise AutodiffError("the model imports no default-domain opset")
    if opset < MIN_OPSET:
        model = onnx.version_converter.convert_version(model, MIN_OPSET)
    inits = {i.name for i in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in inits]
    if len(inputs) != 1 or len(model.graph.output) != 1:
        raise AutodiffError(
            f"expected one image input and one output, got inputs {[i.name for i in inputs]} "
            f"and outputs {[o.name for o in model.graph.output]}"
        )
    if inputs[0].type.tensor_type.elem_type != TensorProto.FLOAT:
        raise AutodiffError(f"input {inputs[0].name!r} must be float32")
    dims = inputs[0].type.tensor_type.shape.dim
    if len(dims) != 4:
        raise AutodiffError(f"input {inputs[0].name!r} must be NCHW (rank 4), got rank {len(dims)}")
    dims[0].Clear()
    dims[0].dim_param = "batch"
    # Stale intermediate shapes (e.g. with a fixed batch of 1) would contradict the new input.
    del model.graph.value_info[:]
    for out in model.graph.output:
        out.type.tensor_type.ClearField("shape")
    return model
