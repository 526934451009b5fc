"""``camo-engine protect``: files or folders in, protected photos and a report out."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
)

from .console import stderr as console
from .console import stdout
from .options import (
    AlphaOpt,
    AlphaStartOpt,
    BackendOpt,
    BatchOpt,
    BlurSigmaOpt,
    DeviceOpt,
    EnhanceOpt,
    EpsOpt,
    FallbackOpt,
    JpegOpt,
    MomentumOpt,
    OnnxCacheOpt,
    PanelOpt,
    PrecisionOpt,
    ProvidersOpt,
    SeedOpt,
    StepsOpt,
    StrengthOpt,
    TargetClassOpt,
    TargetOpt,
    ThresholdOpt,
    ThroughOpt,
    TopKOpt,
    VictimOpt,
    ViewsPerStepOpt,
    WeightsOpt,
    allow_pixels,
    attack_config,
    backend_for,
    backend_options,
    victim_options,
)


def protect(
    ctx: typer.Context,
    inputs: Annotated[Optional[list[Path]], typer.Argument(help="Photo files or folders.")] = None,
    output: Annotated[Path, typer.Option("--output", "-o", help="Output folder (inputs are never overwritten).")] = Path("protected"),
    samples: Annotated[bool, typer.Option("--samples", help="Protect the bundled sample photos.")] = False,
    victim: VictimOpt = "brisque",
    weights: WeightsOpt = None,
    threshold: ThresholdOpt = None,
    target: TargetOpt = None,
    top_k: TopKOpt = None,
    target_class: TargetClassOpt = None,
    strength: StrengthOpt = "medium",
    panel: PanelOpt = None,
    views_per_step: ViewsPerStepOpt = None,
    eps: EpsOpt = None,
    alpha: AlphaOpt = None,
    alpha_start: AlphaStartOpt = None,
    momentum: MomentumOpt = None,
    blur_sigma: BlurSigmaOpt = None,
    steps: StepsOpt = None,
    jpeg_quality: JpegOpt = 90,
    batch_size: BatchOpt = 8,
    fmt: Annotated[str, typer.Option("--format", help="Output format: jpeg (at --jpeg-quality) or png.")] = "jpeg",
    seed: SeedOpt = 0,
    backend: BackendOpt = "torch",
    precision: PrecisionOpt = "fp32",
    providers: ProvidersOpt = None,
    provider_fallback: FallbackOpt = False,
    onnx_cache: OnnxCacheOpt = None,
    device: DeviceOpt = "cpu",
    enhance: EnhanceOpt = None,
    through: ThroughOpt = False,
    resume: Annotated[bool, typer.Option(help="Skip inputs whose output and report row are complete.")] = False,
    keep_metadata: Annotated[bool, typer.Option(help="Keep EXIF/XMP/IPTC except GPS.")] = False,
    keep_gps: Annotated[bool, typer.Option(help="With --keep-metadata, keep GPS too.")] = False,
    max_pixels: Annotated[Optional[int], typer.Option(help="Refuse images larger than this many pixels (decompression bombs).")] = None,
    contact_sheet: Annotated[Optional[Path], typer.Option(help="Write a PNG: original | enhanced | protected | amplified difference (first 24 photos).")] = None,
    protector_file: Annotated[Optional[Path], typer.Option("--protector", help="Amortised protector checkpoint (.pt from `camo-engine train-protector`, trained against --victim): one forward pass per photo.")] = None,
    finish_steps: Annotated[Optional[int], typer.Option("--finish-steps", help="With --protector: up to this many I-FGSM steps on the photos it did not protect (default 0: the protector alone).")] = None,
    ray: Annotated[Optional[str], typer.Option("--ray", help="Protect on Ray workers: 'local' (a Ray instance on this machine) or a cluster ADDRESS (the ray extra).")] = None,
) -> None:
    """Protect photos and write them with a report (report.jsonl, report.csv, summary.json)."""
    from ..io.discover import discover
    from ..io.load import DEFAULT_MAX_PIXELS
    from ..io.write import MetadataPolicy
    from ..pipeline import OutputOptions, protect_files
    from ..protector import Protector
    from ..samples import sample_paths

    if device != "cpu":
        raise typer.BadParameter(f"device {device!r} is not supported: this build runs on the CPU only")
    if fmt not in ("jpeg", "png"):
        raise typer.BadParameter(f"--format must be jpeg or png, got {fmt!r}")
    paths = list(inputs or []) + (sample_paths() if samples else [])
    if not paths:
        raise typer.BadParameter("give photo files or folders, or --samples")
    if protector_file is None and finish_steps is not None:
        raise typer.BadParameter("--finish-steps needs --protector")
    if protector_file is not None and ctx.get_parameter_source("steps").name != "DEFAULT":
        raise typer.BadParameter("with --protector the I-FGSM budget is --finish-steps, not --steps")
    backend = backend_for(victim, backend, given=ctx.get_parameter_source("backend").name != "DEFAULT")
    if ray and contact_sheet:
        raise typer.BadParameter("--contact-sheet is not available with --ray")
    allow_pixels(max_pixels)
    try:
        metadata = MetadataPolicy(keep=keep_metadata, keep_gps=keep_gps)
        jobs = discover(paths)
        config = attack_config(
            strength,
            eps,
            alpha,
            alpha_start,
            panel=panel,
            views_per_step=views_per_step,
            written_jpeg=fmt == "jpeg",
            momentum=momentum,
            blur_sigma=blur_sigma,
            steps=steps,
            jpeg_quality=jpeg_quality,
            batch_size=batch_size,
            seed=seed,
        )
        protector_options = dict(
            victim=victim,
            config=config,
            backend=backend,
            backend_options=backend_options(backend, precision, providers, provider_fallback, onnx_cache),
            enhance=enhance,
            through=through,
            amortised=protector_file,
            strength=strength,
            finish_steps=finish_steps or 0,
            **victim_options(weights, threshold, target, top_k, target_class),
        )
        # With --ray too: every option is checked here, before any work is sent out.
        protector = Protector(**protector_options)
    except (ValueError, OSError, TypeError) as exc:
        console.print(f"[red]camo-engine: {exc}")
        raise typer.Exit(2) from exc
    options = OutputOptions(
        fmt=fmt,
        metadata=metadata,
        max_pixels=max_pixels or DEFAULT_MAX_PIXELS,
        resume=resume,
        contact_sheet=contact_sheet,
    )
    with Progress(
        TextColumn("[bold]protecting"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.fields[last]}"),
        console=console,
    ) as progress:
        task = progress.add_task("protect", total=len(jobs), last="")

        def on_done(row: dict) -> None:
            progress.update(task, advance=1, last=Path(row["input"]).name)

        try:
            if ray:
                from ..distributed import protect_files_ray

                summary = protect_files_ray(jobs, output, options, protector_options, ray, on_done)
            else:
                summary = protect_files(protector, jobs, output, options, on_done)
        except (ValueError, OSError, ImportError) as exc:
            console.print(f"[red]camo-engine: {exc}")
            raise typer.Exit(2) from exc
    print_summary(summary, victim, output)
    if summary.failed:
        raise typer.Exit(1)


def print_summary(summary, victim: str, output: Path) -> None:
    """The closing tables, readable at 80 columns: the batch (the protected share beside the
    shares the original or the channels alone account for), then each view of the panel."""
    table = Table(title=f"camo-engine protect: {victim}, strength {summary.strength} (panel {summary.panel})")
    table.add_column("measure")
    table.add_column("value", justify="right")
    for name, value in (
        ("photos (failed)", f"{summary.processed} ({summary.failed})"),
        ("protected under every view", f"{summary.success_rate:.1%}"),
        ("  already so before anything", f"{summary.already_rate:.1%}"),
        ("  by the channels alone", f"{summary.alone_rate:.1%}"),
        ("  by the attack (wins)", f"{summary.win_rate:.1%}"),
        ("median steps", f"{summary.median_steps:g}"),
        ("median PSNR", f"{summary.median_psnr:.1f} dB"),
        ("images/s", f"{summary.images_per_second:.2f}"),
    ):
        table.add_row(name, value)
    stdout.print(table)
    if summary.views:
        views = Table(title="per view: protected (channel alone)")
        views.add_column("channel | reading")
        views.add_column("protected (alone)", justify="right")
        for v in summary.views:
            views.add_row(v.view, f"{summary.rate(v.protected):.0%} ({summary.rate(v.alone):.0%})")
        stdout.print(views)
    stdout.print(f"report: {output / 'report.jsonl'}, {output / 'report.csv'}, {output / 'summary.json'}")
