"""``export_victim``: a torch victim to checked ONNX forward/gradient graphs plus a manifest.

Layout of the output directory::

    manifest.json
    forward.onnx, gradient.onnx                 # one geometry (224x224 classifiers)
    forward_384x512.onnx, gradient_384x512.onnx # one pair per geometry otherwise (BRISQUE)
"""

from __future__ import annotations

from pathlib import Path

from torch import nn

from ..victims.base import Victim
from .check import check_graphs
from .examples import Geometry, example_batch, example_targets, victim_geometries
from .fold import fold_batchnorm
from .manifest import (
    GraphPair,
    Manifest,
    input_fields,
    sha256,
    tool_versions,
    victim_fields,
)
from .trace import forward_from_gradient, gradient_function, to_onnx, trace

DEFAULT_OPSET = 18
# IR 10 (onnx 1.16) opens in onnxruntime >= 1.17 and in TensorRT 10's parser.
DEFAULT_IR_VERSION = 10


def _names(geometries: list[Geometry], geometry: Geometry) -> tuple[str, str]:
    suffix = "" if len(geometries) == 1 else f"_{geometry[0]}x{geometry[1]}"
    return f"forward{suffix}.onnx", f"gradient{suffix}.onnx"


def export_victim(
    victim: Victim,
    outdir: Path,
    opset: int = DEFAULT_OPSET,
    batch_dynamic: bool = True,
    ir_version: int = DEFAULT_IR_VERSION,
    geometries: list[Geometry] | None = None,
    example_size: int = 2,
) -> Path:
    """Export, check against torch autograd (raising on failure) and return the manifest path."""
    if not isinstance(victim, nn.Module) or not victim.exportable:
        raise TypeError(f"victim {victim.name!r} is not a torch model and cannot be exported")
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    victim = victim.eval()
    folded = fold_batchnorm(victim)
    geometries = geometries or victim_geometries(victim)
    pairs, hashes, channels = [], {}, 0
    for geometry in geometries:
        batch = example_batch(victim, geometry, example_size)
        targets = example_targets(victim, batch)
        channels = batch.shape[1]
        forward_name, gradient_name = _names(geometries, geometry)
        to_onnx(
            trace(gradient_function(folded), (batch, targets)),
            (batch, targets),
            ["images", "targets"],
            ["outputs", "loss", "grad"],
            outdir / gradient_name,
            opset=opset,
            ir_version=ir_version,
            batch_dynamic=batch_dynamic,
        )
        forward_from_gradient(outdir / gradient_name, outdir / forward_name)
        result = check_graphs(victim, outdir / forward_name, outdir / gradient_name, batch, targets)
        pairs.append(GraphPair(*geometry, forward_name, gradient_name, result.as_dict()))
        hashes |= {name: sha256(outdir / name) for name in (forward_name, gradient_name)}
    manifest = Manifest(
        victim=victim_fields(victim),
        input=input_fields(victim, channels),
        graphs=pairs,
        opset=opset,
        ir_version=ir_version,
        batch_dynamic=batch_dynamic,
        versions=tool_versions(),
        sha256=hashes,
    )
    return manifest.write(outdir)
