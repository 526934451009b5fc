"""``camo-engine bench``: attack throughput over a grid of settings, and ``--compare`` against the
tools a user would pick instead.

Registered by :mod:`camo_engine.cli` as ``app.command("bench")(bench_command)``.
"""

from __future__ import annotations

import datetime
import itertools
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import torch
import typer
from rich.table import Table

from ..benchmarks.harness import (
    DEFAULT_IMAGES,
    DEFAULT_SIZE,
    OURS,
    PAPER_LOSS,
    TOOLS,
    VERDICT,
    GridPoint,
    Timing,
    bench_images,
    run_bench,
    success_text,
    write_results,
)
from ..victims import REGISTRY
from .console import stderr as console
from .console import stdout
from .options import (
    AlphaOpt,
    AlphaStartOpt,
    EpsOpt,
    JpegOpt,
    PanelOpt,
    SeedOpt,
    StepsOpt,
    StrengthOpt,
    attack_config,
    parse_list,
)
from .tables import fitted

Row = dict[str, Any]
Column = tuple[str, Callable[[Row], str]]


def _cell(key: str, fmt: str = "{:.3f}") -> Callable[[Row], str]:
    return lambda row: fmt.format(row[key])


VICTIM: Column = ("victim", _cell("victim", "{}"))
TOOL: Column = ("tool @ setting", lambda r: f"{r['tool']} @ {r['setting']}")
SUCCESS: Column = ("success after JPEG", success_text)
PROTECTIONS: Column = ("protections/s", _cell("protections_per_s"))
IMAGES: Column = ("images/s", _cell("images_per_s"))

GRID_COLUMNS: tuple[Column, ...] = (
    VICTIM,
    ("backend precision batch threads", lambda r: f"{r['backend']} {r['precision']} b{r['batch_size']} t{r['threads']}"
     + (" channels-last" if r["channels_last"] else "")),
    IMAGES, SUCCESS, PROTECTIONS,
    ("mean steps", _cell("mean_steps", "{:.1f}")),
    ("s/row | s/batch step", lambda r: f"{r['s_per_row']:.3f} | {r['s_per_batch_step']:.3f}"),
    ("peak RSS", _cell("peak_rss_mib", "{:.0f} MiB")),
    ("GFLOP/s matmul+conv | all ops", lambda r: f"{r['achieved_gflops_matmul_conv']:.2f} | {r['achieved_gflops_total']:.2f}"),
    ("matmul peak (matmul+conv share)", lambda r: f"{r['matmul_peak_gflops']:.0f} ({r['peak_fraction_matmul_conv']:.1%})"),
)
COMPARE_COLUMNS: tuple[Column, ...] = (
    VICTIM, TOOL,
    ("objective", _cell("objective", "{}")),
    ("eps, alpha (/255), steps", lambda r: f"{r['eps'] * 255:.3g}, {r['alpha'] * 255:.3g}, {r['steps']}"),
    ("batch", _cell("batch_size", "{}")),
    SUCCESS,
    ("protections/s (min-max)", lambda r: f"{r['protections_per_s']:.3f} ({r['protections_per_s_min']:.3f}-{r['protections_per_s_max']:.3f})"),
    IMAGES,
    ("PSNR | L-inf", lambda r: f"{r['psnr_median']:.1f} dB | {r['linf_max']}"),
)
RATIO_COLUMNS: tuple[Column, ...] = (
    VICTIM, TOOL, SUCCESS,
    ("success ours/theirs", _cell("success_ratio_ours_over", "{:.2f}")),
    PROTECTIONS,
    ("protections/s ours/theirs", _cell("pps_ratio_ours_over", "{:.2f}")),
)


def _flags(text: str) -> list[bool]:
    values = {"off": False, "no": False, "on": True, "yes": True}
    try:
        return [values[item.strip()] for item in text.split(",") if item.strip()]
    except KeyError as exc:
        raise typer.BadParameter(f"--channels-last: {text!r} must be a comma-separated list of on/off") from exc


def table(title: str, rows: list[Row], columns: tuple[Column, ...]) -> Table:
    """``rows`` under ``columns``, as a grid or, on a narrow terminal, one record per row."""
    cells = [[cell(row) for _, cell in columns] for row in rows]
    return fitted(stdout, title, [header for header, _ in columns], cells)


def print_tables(result: dict[str, Any]) -> None:
    """The grid; with --compare every tool, then ours / theirs (ours is the first row per victim)."""
    stdout.print(table("camo-engine bench", result["grid"], GRID_COLUMNS))
    if not result["compare"]:
        return
    runs = result["settings"]["compare_runs"]
    title = f"--compare: same photos, victim and verdict (after JPEG, timed for every tool; median of {runs} runs)"
    stdout.print(table(title, result["compare"], COMPARE_COLUMNS))
    stdout.print(f"objective: {VERDICT!r} = the verdict's (torchattacks and ART see the victim as two logits, "
                 f"its verdict margin and 0); {PAPER_LOSS!r} = the published loop's own loss", markup=False)
    theirs = [r for r in result["compare"] if r["tool"] != OURS]
    ours = {r["victim"]: r for r in result["compare"] if r["tool"] == OURS}
    title = "ours / theirs; ours: " + "; ".join(
        f"{v}: {success_text(r)}, {r['protections_per_s']:.3f} protections/s" for v, r in ours.items()
    )
    stdout.print(table(title, theirs, RATIO_COLUMNS))
    for victim in ours:
        stdout.print(view_table(victim, [r for r in result["compare"] if r["victim"] == victim]))


def view_table(victim: str, rows: list[Row]) -> Table:
    """One row per view of the panel, one column per tool: the protected share under that view,
    with the share the view changes on its own beside it."""
    headers = ["view", *(f"{r['tool']} @ {r['setting']}" for r in rows)]
    cells = [
        [shares[0]["view"], *(f"{s['protected']:.0%} ({s['alone']:.0%})" for s in shares)]
        for shares in zip(*(r["views"] for r in rows))
    ]
    return fitted(stdout, f"{victim}: protected per view (alone)", headers, cells)


def bench_command(
    victim: Annotated[str, typer.Option("--victim", "-v", help="Victims, comma-separated.")] = "efficientnet-lite0",
    backend: Annotated[str, typer.Option(help="Gradient backends, comma-separated (torch, onnxruntime when installed).")] = "torch",
    precision: Annotated[str, typer.Option(help="Precisions of the attack steps, comma-separated: fp32, bf16.")] = "fp32",
    batch_size: Annotated[str, typer.Option("--batch-size", help="Batch sizes, comma-separated.")] = "8",
    threads: Annotated[str, typer.Option(help="torch thread counts, comma-separated (default: torch's current).")] = "",
    channels_last: Annotated[str, typer.Option("--channels-last", help="off, on, or off,on.")] = "off",
    images: Annotated[int, typer.Option("--images", help="Photos in the workload (samples, then crops of them).")] = DEFAULT_IMAGES,
    size: Annotated[int, typer.Option("--size", help="Short side the photos are resized to.")] = DEFAULT_SIZE,
    strength: StrengthOpt = "medium",
    panel: PanelOpt = None,
    eps: EpsOpt = None,
    alpha: AlphaOpt = None,
    alpha_start: AlphaStartOpt = None,
    steps: StepsOpt = None,
    jpeg_quality: JpegOpt = 90,
    seed: SeedOpt = 0,
    warmup: Annotated[int, typer.Option(help="Warm-up runs (on one batch) before timing.")] = 1,
    runs: Annotated[int, typer.Option(help="Timed runs over the whole workload.")] = 3,
    compare: Annotated[bool, typer.Option("--compare", help="Also run the tools a user would pick instead, on the same photos.")] = False,
    tools: Annotated[str, typer.Option(help=f"Tools for --compare, comma-separated: {', '.join(TOOLS)}.")] = ",".join(TOOLS),
    compare_runs: Annotated[int, typer.Option(help="Timed runs per tool in --compare: the median is reported, with the spread.")] = 3,
    out: Annotated[Path, typer.Option("--out", help="Folder for the CSV and JSON results.")] = Path("benchmarks/results"),
    name: Annotated[str, typer.Option(help="File stem of the results (default: bench_VICTIMS_DATE).")] = "",
) -> None:
    """Benchmark the attack: images/s, successful protections/s after JPEG, step costs, memory, FLOP rate."""
    try:
        config = attack_config(strength, eps, alpha, alpha_start, steps=steps, jpeg_quality=jpeg_quality, seed=seed, panel=panel)
        workload = bench_images(images, size)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc
    victims = parse_list(victim, str, "--victim")
    chosen = parse_list(tools, str, "--tools")
    for option, given, known in (("--victim", victims, REGISTRY), ("--tools", chosen, TOOLS)):
        if unknown := set(given) - set(known):
            raise typer.BadParameter(f"{option}: unknown {', '.join(sorted(unknown))}; known: {', '.join(known)}")
    points = [
        GridPoint(*values)
        for values in itertools.product(
            victims,
            parse_list(backend, str, "--backend"),
            parse_list(precision, str, "--precision"),
            parse_list(batch_size, int, "--batch-size"),
            parse_list(threads, int, "--threads") or [torch.get_num_threads()],
            _flags(channels_last),
        )
    ]
    result = run_bench(
        points,
        config,
        workload,
        Timing(warmup, runs),
        Timing(warmup, compare_runs),
        chosen if compare else None,
        log=lambda line: console.print(line),
    )
    print_tables(result)
    for note in result["notes"]:
        stdout.print(f"note: {note}", markup=False)
    stem = name or f"bench_{'+'.join(victims)}_{datetime.datetime.now():%Y%m%d-%H%M%S}"
    for path in write_results(result, out, stem):
        stdout.print(f"wrote {path}")


if __name__ == "__main__":
    typer.run(bench_command)
