"""``camo-engine train-protector``: train the amortised protector against one victim.

Registered by :mod:`camo_engine.cli` as ``app.command("train-protector")(train_protector_command)``.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
)

from ..amortised import export_amortised_onnx, save_amortised
from ..io import jpeg
from .console import stderr as console
from .options import (
    EnhanceOpt,
    EpsOpt,
    JpegOpt,
    SeedOpt,
    TargetClassOpt,
    TargetOpt,
    ThresholdOpt,
    TopKOpt,
    VictimOpt,
    WeightsOpt,
    parse_level,
    victim_options,
)


def train_protector_command(
    output: Annotated[Path, typer.Option("--output", "-o", help="Checkpoint to write (.pt); the ONNX export goes next to it (.onnx).")],
    inputs: Annotated[Optional[list[Path]], typer.Argument(help="Training photos (files or folders); default: the bundled sample photos.")] = None,
    victim: VictimOpt = "brisque",
    weights: WeightsOpt = None,
    threshold: ThresholdOpt = None,
    target: TargetOpt = None,
    top_k: TopKOpt = None,
    target_class: TargetClassOpt = None,
    eps: EpsOpt = "8/255",
    steps: Annotated[int, typer.Option(help="Optimiser steps, each on a fresh batch of random crops.")] = 300,
    batch_size: Annotated[int, typer.Option("--batch-size", help="Crops per optimiser step.")] = 8,
    crop: Annotated[Optional[int], typer.Option(help="Side of the training crops and the net's working side; default: the victim's input short side.")] = None,
    lr: Annotated[float, typer.Option(help="Adam learning rate.")] = 1e-3,
    seed: SeedOpt = 0,
    recon_weight: Annotated[float, typer.Option("--recon-weight", help="Weight of the L1 term to the input (or to the enhanced input with --enhance).")] = 0.0,
    jpeg_quality: JpegOpt = 90,
    diff_jpeg: Annotated[bool, typer.Option("--diff-jpeg/--no-diff-jpeg", help="Differentiable JPEG (at --jpeg-quality) between the net and the victim while training.")] = True,
    enhance: EnhanceOpt = None,
) -> None:
    """Train an amortised protector (a small U-Net) and write it as .pt and .onnx."""
    from ..amortised.train import TrainConfig, train_protector
    from ..enhance import parse_enhancers
    from ..io.discover import discover
    from ..io.load import ImageLoadError, load_image
    from ..samples import sample_paths
    from ..victims import load_victim

    options = {k: v for k, v in victim_options(weights, threshold, target, top_k, target_class).items() if v is not None}
    try:
        loaded = load_victim(victim, **options)
        photos = [jpeg.to_float(load_image(job.source).rgb) for job in discover(inputs or sample_paths())]
        config = TrainConfig(
            eps=parse_level(eps),
            steps=steps,
            batch_size=batch_size,
            crop=crop or min(loaded.geometry(4096, 4096)),
            lr=lr,
            seed=seed,
            recon_weight=recon_weight,
            jpeg_quality=jpeg_quality if diff_jpeg else None,
        )
        enhancer = parse_enhancers(enhance) if enhance else None
    except (ValueError, OSError, TypeError, ImageLoadError) as exc:
        console.print(f"[red]camo-engine: {exc}")
        raise typer.Exit(2) from exc
    with Progress(
        TextColumn("[bold]training"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.fields[losses]}"),
        console=console,
    ) as progress:
        task = progress.add_task("train", total=config.steps, losses="")

        def show(step: int, losses: dict[str, float]) -> None:
            text = "  ".join(f"{name} {value:.4g}" for name, value in losses.items())
            progress.update(task, completed=step + 1, losses=text)

        try:
            model = train_protector(loaded, photos, config, enhance=enhancer, on_step=show)
        except ValueError as exc:
            console.print(f"[red]camo-engine: {exc}")
            raise typer.Exit(2) from exc
    meta = {
        "victim": victim,
        "victim_options": {k: (str(v) if isinstance(v, Path) else v) for k, v in options.items()},
        "enhance": enhance,
        "photos": len(photos),
        "training": dataclasses.asdict(config),
    }
    save_amortised(model, output, meta)
    onnx_path = output.with_suffix(".onnx")
    deviation = export_amortised_onnx(model, onnx_path)
    console.print(f"wrote {output} and {onnx_path} (onnxruntime within {deviation:.1e} of torch)")
