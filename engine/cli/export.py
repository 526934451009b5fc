"""``camo-engine export``: a victim's forward and input-gradient graphs to ONNX."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .console import stderr as console
from .console import stdout
from .options import (
    TargetClassOpt,
    TargetOpt,
    ThresholdOpt,
    TopKOpt,
    WeightsOpt,
    victim_options,
)


def export(
    victim: Annotated[str, typer.Argument(help="Victim to export (a name, or onnx:PATH).")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Folder for forward.onnx, gradient.onnx, manifest.json.")],
    weights: WeightsOpt = None,
    threshold: ThresholdOpt = None,
    target: TargetOpt = None,
    top_k: TopKOpt = None,
    target_class: TargetClassOpt = None,
    opset: Annotated[int, typer.Option(help="ONNX opset.")] = 18,
    ir_version: Annotated[int, typer.Option(help="ONNX IR version (onnxruntime loads <= 10).")] = 10,
) -> None:
    """Export a victim's forward and input-gradient graphs to ONNX, checked against torch."""
    from ..victims import load_victim

    try:
        loaded = load_victim(victim, **victim_options(weights, threshold, target, top_k, target_class))
        from ..export import export_victim

        # An ONNX-file victim keeps its own opset; the options apply to tracing a torch victim.
        options = {} if victim.startswith("onnx:") else {"opset": opset, "ir_version": ir_version}
        manifest = export_victim(loaded, output, **options)
    except (ValueError, OSError, TypeError) as exc:
        console.print(f"[red]camo-engine: {exc}")
        raise typer.Exit(2) from exc
    stdout.print(f"manifest: {manifest}")
