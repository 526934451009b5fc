"""``camo-engine evaluate ORIGINALS PROTECTED``: protection, transfer, fidelity and appeal.

Registered by :mod:`camo_engine.cli` as ``app.command("evaluate")(evaluate_command)``.
"""

from __future__ import annotations

import math
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
from rich.console import Console
from rich.table import Table

from ..measure.evaluate import (
    DEFAULT_VICTIMS,
    Evaluation,
    channels,
    evaluate,
    write_outputs,
    write_plots,
)
from ..victims import Victim, load_victim, needs_weights
from .console import stderr as console
from .console import stdout
from .options import WeightsOpt, parse_list
from .tables import fitted


def load_victims(names: list[str], weights: Path | None) -> tuple[dict[str, Victim], list[str]]:
    """The victims that load, and a message for each that does not (the others still run); an
    ensemble ``a+b`` brings its members ``a`` and ``b`` as victims of their own."""
    loaded: dict[str, Victim] = {}
    failed: list[str] = []
    for name in names:
        # Only victims that need a file take --weights (the others would reject the option).
        try:
            loaded[name] = load_victim(name, **({"weights": weights} if needs_weights(name) else {}))
        except Exception as exc:  # noqa: BLE001 - any victim failure is reported, the rest go on
            failed.append(f"victim {name} skipped: {type(exc).__name__}: {exc}")
            continue
        # An ensemble's members are judged alone too: how far fooling all of them transfers to
        # each one read by itself (with its own deployments' readings).
        for member in getattr(loaded[name], "members", ()):
            loaded.setdefault(member.name, member)
    return loaded, failed


def _rate(rate: float, alone: float) -> str:
    return "n/a" if math.isnan(rate) else f"{rate:.0%} ({alone:.0%})"


def summary_table(evaluation: Evaluation) -> Table:
    """Per victim, then per view: the protected share, and beside it the shares the channel
    alone and the original as it was account for (readable at 80 columns)."""
    table = Table(title=f"camo-engine evaluate: {len(evaluation.images)} pairs")
    for column, justify in (("victim: channel | reading", "left"), ("protected", "right"), ("alone", "right"), ("already", "right")):
        table.add_column(column, justify=justify)
    victim = None
    for row in evaluation.summary():
        if row["victim"] != victim:
            victim = row["victim"]
            mark = {True: " (attacked)", False: " (transfer)", None: ""}[row["attacked"]]
            table.add_row(f"[bold]{victim}{mark}", "", "", "")
        rates = [row["protection_rate"], row["alone_rate"], row["already_rate"]]
        table.add_row("  " + row["label"], *("n/a" if math.isnan(r) else f"{r:.0%}" for r in rates))
    return table


def quality_table(evaluation: Evaluation, console: Console) -> Table:
    """Fidelity (PSNR, SSIM, L-inf) and the appeal measures before and after."""
    fid = evaluation.fidelity_summary()
    rows = [
        ["PSNR (median)", "", f"{fid['psnr_median']:.2f} dB", ""],
        ["SSIM (median)", "", f"{fid['ssim_median']:.4f}", ""],
        ["L-inf (max / mean)", "", f"{fid['linf_max']:g} / {fid['linf_mean']:.1f}", ""],
    ]
    for name, values in evaluation.appeal_summary().items():
        rows.append([name, *(f"{values[k]:.3f}" for k in ("original_mean", "protected_mean", "change_mean"))])
    return fitted(console, "fidelity and appeal", ["measure", "original", "protected", "change"], rows)


def evaluate_command(
    originals: Annotated[Path, typer.Argument(help="Folder of the original photos.", exists=True, file_okay=False)],
    protected: Annotated[Path, typer.Argument(help="Folder of the protected photos (paired by relative path without extension).", exists=True, file_okay=False)],
    victim: Annotated[Optional[list[str]], typer.Option("--victim", "-v", help="Victim to evaluate (repeatable); default: brisque and efficientnet-lite0.")] = None,
    weights: WeightsOpt = None,
    jpeg_qualities: Annotated[str, typer.Option("--jpeg", help="JPEG qualities to re-encode at, comma-separated.")] = "95,90,75",
    resize: Annotated[str, typer.Option(help="Downscale factors, comma-separated (empty for none).")] = "0.5",
    panel: Annotated[Optional[str], typer.Option(help="Judge under a panel instead (low, medium, high, or a .toml/.json file), with each victim's deployment readings.")] = None,
    out: Annotated[Optional[Path], typer.Option("--out", help="Write evaluation.json, evaluation.csv, verdicts.csv, images.csv here.")] = None,
    plots: Annotated[Optional[Path], typer.Option("--plots", help="Write PNG plots here.")] = None,
    nima: Annotated[Optional[Path], typer.Option("--nima", help="NIMA weights (yunxiaoshi/Neural-IMage-Assessment layout): its mean rating joins the appeal measures.")] = None,
) -> None:
    """Judge protected photos against their originals under JPEG re-encoding and downscaling."""
    try:
        views = panel or channels(parse_list(jpeg_qualities, int, "--jpeg"), parse_list(resize, float, "--resize"))
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc
    from ..victims.nima import load_nima

    try:
        nima_measure = load_nima(nima) if nima else None
    except ValueError as exc:  # a CheckpointError names the file and what is wrong with it
        console.print(f"[red]camo-engine: --nima: {exc}", soft_wrap=True)
        raise typer.Exit(2) from exc
    victims, failed = load_victims(list(victim or DEFAULT_VICTIMS), weights)
    for message in failed:
        console.print(f"[yellow]camo-engine: {message}")
    if not victims:
        console.print("[red]camo-engine: no victim could be loaded")
        raise typer.Exit(2)
    with Progress(
        TextColumn("[bold]evaluating"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=console
    ) as progress:
        task = progress.add_task("evaluate", total=None)
        try:
            result = evaluate(
                originals, protected, victims, views, on_pair=lambda pair: progress.advance(task), nima=nima_measure
            )
        except ValueError as exc:  # a panel that does not exist or does not parse
            console.print(f"[red]camo-engine: {exc}")
            raise typer.Exit(2) from exc
    result.notes += failed
    if not result.images:
        console.print(f"[red]camo-engine: no image pairs between {originals} and {protected}")
        raise typer.Exit(2)
    for line in result.notes + [f"{e['image']}: {e['error']}" for e in result.errors]:
        console.print(f"[yellow]camo-engine: {line}")
    for key in result.pairing.only_original + result.pairing.only_protected + result.pairing.ambiguous:
        console.print(f"[yellow]camo-engine: not paired: {key}")
    stdout.print(summary_table(result))
    stdout.print(quality_table(result, stdout))
    written = write_outputs(result, out) if out else []
    if plots:
        try:
            written += write_plots(result, plots)
        except ImportError as exc:
            console.print(f"[red]camo-engine: --plots needs matplotlib ({exc})")
            raise typer.Exit(2) from exc
    for path in written:
        stdout.print(f"wrote {path}")


if __name__ == "__main__":
    typer.run(evaluate_command)
