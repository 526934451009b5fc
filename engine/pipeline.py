"""Files in, protected files and a report out: discover -> load -> protect -> encode -> write.

One bad file never stops the batch: it gets one report row and one stderr line naming the file
and the reason.  That holds for a photo the attack itself fails on: the photos that were in its
batch are retried one by one (:func:`camo_engine.resilient.protect_each`), and only the one
that fails alone gets the error row.  Outputs are written atomically, inputs are never
overwritten, and with ``resume`` the inputs whose output and report row are complete are
skipped.  :func:`write_outcomes` is the one writer: the local run and Ray workers
(:mod:`camo_engine.distributed`) hand it the same (job, bytes, row) outcomes.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from .io.discover import Job, output_path, refuse_overwrite
from .io.load import DEFAULT_MAX_PIXELS, ImageLoadError, LoadedImage, load_image
from .io.report import ReportWriter, Summary, read_rows, summarise, write_summary
from .io.write import MetadataPolicy, atomic_write, encode_output, pixels_to_protect
from .measure.contact_sheet import (
    Tile,
    amplified_difference,
    thumbnail,
    write_contact_sheet,
)
from .protector import Protected, Protector
from .resilient import protect_each


@dataclass(frozen=True)
class OutputOptions:
    """How protected photos are written."""

    fmt: Literal["jpeg", "png"] = "jpeg"
    metadata: MetadataPolicy = MetadataPolicy()
    max_pixels: int = DEFAULT_MAX_PIXELS
    resume: bool = False
    contact_sheet: Path | None = None  # PNG: original | enhanced | protected | difference


# A sheet is for looking at: past this many rows it is too tall to read (and to hold).
CONTACT_SHEET_ROWS = 24


def completed_inputs(outdir: Path) -> set[str]:
    """Inputs with an ``ok`` report row whose output file exists (what ``--resume`` skips)."""
    return {
        row["input"]
        for row in read_rows(outdir)
        if row.get("status") == "ok" and row.get("output") and Path(row["output"]).is_file()
    }


# One photo's outcome as a producer hands it over: the job, the output file's bytes (None for an
# error) and its report row, whose ``output`` the writer fills in once the file is stored.
Emit = Callable[[Job, bytes | None, dict[str, Any]], None]


def protect_files(
    protector: Protector,
    jobs: Sequence[Job],
    outdir: Path,
    options: OutputOptions = OutputOptions(),
    on_done: Callable[[dict[str, Any]], None] = lambda row: None,
) -> Summary:
    """Protect every job's file into ``outdir`` with ``report.jsonl``, ``report.csv`` and
    ``summary.json`` (this run's rows); returns that summary."""
    return write_outcomes(
        jobs, outdir, options, lambda todo, emit: _protect_locally(protector, todo, options, emit), on_done
    )


def write_outcomes(
    jobs: Sequence[Job],
    outdir: Path,
    options: OutputOptions,
    produce: Callable[[Sequence[Job], Emit], None],
    on_done: Callable[[dict[str, Any]], None] = lambda row: None,
) -> Summary:
    """Store what ``produce(jobs, emit)`` emits for the jobs to do: output files (atomically),
    report rows and the summary.  The overwrite and ``resume`` rules are applied here, so every
    way of producing (in this process, on Ray workers) writes the same folder."""
    refuse_overwrite(jobs, outdir, options.fmt)
    if options.resume:
        done = completed_inputs(outdir)
        jobs = [job for job in jobs if str(job.source) not in done]
    rows: list[dict[str, Any]] = []
    started = time.perf_counter()
    with ReportWriter(outdir) as report:

        def emit(job: Job, data: bytes | None, row: dict[str, Any]) -> None:
            if data is not None:
                row = _store(job, data, row, outdir, options.fmt)
            report.write(row)
            rows.append(row)
            if row["status"] != "ok":
                print(f"camo-engine: {row['input']}: {row['error']}", file=sys.stderr)
            on_done(row)

        produce(jobs, emit)
    summary = summarise(rows, time.perf_counter() - started)
    write_summary(outdir, summary)
    return summary


def _protect_locally(protector: Protector, jobs: Sequence[Job], options: OutputOptions, emit: Emit) -> None:
    victim = protector.victim.name
    sheet: list[list[Tile]] = []

    def photos() -> Iterator[tuple[tuple[Job, LoadedImage], np.ndarray]]:
        # Never raises: a generator that raised is finished, and every later file with it.
        for job in jobs:
            try:
                loaded = load_image(job.source, options.max_pixels)
                rgb = pixels_to_protect(loaded, options.fmt)
            except ImageLoadError as exc:
                emit(job, None, error_row(str(job.source), victim, exc.reason))
                continue
            except Exception as exc:  # noqa: BLE001
                emit(job, None, error_row(str(job.source), victim, f"cannot read: {type(exc).__name__}: {exc}"))
                continue
            yield (job, loaded), rgb

    for (job, loaded), outcome in protect_each(protector, photos()):
        if isinstance(outcome, Exception):
            reason = f"protecting failed: {type(outcome).__name__}: {outcome}"
            emit(job, None, error_row(str(job.source), victim, reason))
            continue
        data, row = encode_result(str(job.source), loaded, outcome, victim, protector.config.jpeg_quality, options)
        emit(job, data, row)
        if options.contact_sheet and len(sheet) < CONTACT_SHEET_ROWS:
            sheet.append(_sheet_row(job, loaded, outcome, row, protector.enhances))
    if options.contact_sheet:
        write_contact_sheet(sheet, options.contact_sheet, f"camo-engine protect: {victim}")


def _sheet_row(
    job: Job, loaded: LoadedImage, result: Protected, row: dict[str, Any], enhanced: bool
) -> list[Tile]:
    amplified, gain = amplified_difference(result.unattacked, result.rgb)
    verdict = "protected" if result.protected else "NOT protected"
    return [
        (str(job.relative), thumbnail(loaded.rgb)),
        ("enhanced" if enhanced else "not enhanced", thumbnail(result.unattacked)),
        (f"{verdict}: {result.before} -> {result.after}", thumbnail(result.rgb)),
        (f"difference x{gain:.0f}, PSNR {row.get('psnr', float('nan')):.1f} dB", thumbnail(amplified)),
    ]


def encode_result(
    source: str,
    loaded: LoadedImage,
    result: Protected,
    victim: str,
    quality: int,
    options: OutputOptions,
) -> tuple[bytes | None, dict[str, Any]]:
    """The output file's bytes (JPEG at ``quality``, or PNG) and report row for a protected
    photo (``output`` left empty until stored), or None and an error row when it cannot be
    encoded."""
    try:
        data, removed = encode_output(loaded, result.rgb, options.fmt, quality, options.metadata)
    except (OSError, ValueError) as exc:
        return None, error_row(source, victim, f"cannot encode: {exc}")
    return data, {
        "input": source,
        "output": "",
        "status": "ok",
        "error": "",
        "victim": victim,
        **result.report_fields(),
        "metadata_removed": removed,
        "warnings": loaded.warnings,
    }


def _store(job: Job, data: bytes, row: dict[str, Any], outdir: Path, fmt: str) -> dict[str, Any]:
    target = output_path(job, outdir, fmt)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(target, data)
    except OSError as exc:
        return error_row(row["input"], row["victim"], f"cannot write {target}: {exc}")
    return {**row, "output": str(target)}


def error_row(source: str, victim: str, reason: str) -> dict[str, Any]:
    """The report row of a photo that could not be protected."""
    return {"input": source, "output": "", "status": "error", "error": reason, "victim": victim}
