"""Export a bring-your-own ONNX victim: its forward as given, its gradient by our autodiff."""

from __future__ import annotations

from pathlib import Path

import onnx
import torch

from ..victims.base import Victim
from .check import relative_error, run_onnx
from .examples import example_batch, example_targets
from .manifest import (
    GraphPair,
    Manifest,
    input_fields,
    sha256,
    tool_versions,
    victim_fields,
)
from .onnx_autodiff import Objective, gradient_model, standard_forward


def export_onnx_victim(victim: Victim, outdir: Path) -> Path:
    """Write ``forward.onnx``, ``gradient.onnx`` and ``manifest.json`` for an ONNX-file victim.

    The gradient graph's outputs are checked against the forward graph on sample photos; its
    gradient has no torch reference here (the tests compare the autodiff with torch autograd).
    """
    outdir.mkdir(parents=True, exist_ok=True)
    model = onnx.load(victim.path)
    objective = Objective(victim.kind, getattr(victim, "top_k", 1), getattr(victim, "confidence", 2.0))
    forward = standard_forward(model, victim.kind)
    onnx.save(forward, outdir / "forward.onnx")
    onnx.save(gradient_model(model, objective), outdir / "gradient.onnx")
    geometry = (victim.height, victim.width)
    batch = example_batch(victim, geometry)
    targets = example_targets(victim, batch)
    outputs, loss, _ = run_onnx(outdir / "gradient.onnx", {"images": batch, "targets": targets})
    err = relative_error(outputs, run_onnx(outdir / "forward.onnx", {"images": batch})[0])
    err_loss = relative_error(loss, victim.loss(outputs, targets))
    if max(err, err_loss) > 1e-5 or not torch.isfinite(loss).all():
        raise AssertionError(f"{victim.name}: gradient graph outputs/loss disagree with the forward ({err:.3g}, {err_loss:.3g})")
    manifest = Manifest(
        victim=victim_fields(victim),
        input=input_fields(victim, batch.shape[1]),
        graphs=[GraphPair(*geometry, "forward.onnx", "gradient.onnx", {"outputs_rel_err": err, "loss_rel_err": err_loss})],
        opset=next(o.version for o in forward.opset_import if o.domain in ("", "ai.onnx")),
        ir_version=forward.ir_version,
        batch_dynamic=True,
        versions=tool_versions(),
        sha256={name: sha256(outdir / name) for name in ("forward.onnx", "gradient.onnx")},
    )
    return manifest.write(outdir)
