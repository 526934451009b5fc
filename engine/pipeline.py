"""Files in, protected files and a report out: discover -> load -> protect -> encode -> write.

One bad file never stops the batch: it gets one report row and one stderr line naming the file
and the reason.  That holds for a photo the attack itself fails on: the photos that were in its
batch are retried one by one, and only the one that fails alone gets the error row.  Outputs
are written atomically, inputs are never overwritten, and with ``resume`` the inputs whose
output and report row are complete are skipped.
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


def protect_files(
    protector: Protector,
    jobs: Sequence[Job],
    outdir: Path,
    options: OutputOptions = OutputOptions(),
    on_done: Callable[[dict[str, Any]], None] = lambda row: None,
) -> Summary:
    """Protect every job's file into ``outdir`` with ``report.jsonl``, ``report.csv`` and
    ``summary.json`` (this run's rows); returns that summary."""
    refuse_overwrite(jobs, outdir, options.fmt)
    if options.resume:
        done = completed_inputs(outdir)
        jobs = [job for job in jobs if str(job.source) not in done]
    victim = protector.victim.name
    rows: list[dict[str, Any]] = []
    sheet: list[list[Tile]] = []
    pending: list[tuple[Job, LoadedImage]] = []
    started = time.perf_counter()

    with ReportWriter(outdir) as report:

        def emit(row: dict[str, Any]) -> None:
            report.write(row)
            rows.append(row)
            if row["status"] != "ok":
                print(f"camo-engine: {row['input']}: {row['error']}", file=sys.stderr)
            on_done(row)

        def images() -> Iterator[np.ndarray]:
            # Never raises: a generator that raised is finished, and every later file with it.
            for job in jobs:
                try:
                    loaded = load_image(job.source, options.max_pixels)
                    rgb = pixels_to_protect(loaded, options.fmt)
                except ImageLoadError as exc:
                    emit(_error_row(job, victim, exc.reason))
                    continue
                except Exception as exc:  # noqa: BLE001
                    emit(_error_row(job, victim, f"cannot read: {type(exc).__name__}: {exc}"))
                    continue
                pending.append((job, loaded))
                yield rgb

        def finish(slot: int, result: Protected) -> None:
            job, loaded = pending[slot]
            row = _write(job, loaded, result, outdir, options, protector, victim)
            pending[slot] = None  # type: ignore[call-overload]  # free the pixels now
            emit(row)
            if options.contact_sheet and len(sheet) < CONTACT_SHEET_ROWS:
                sheet.append(_sheet_row(job, loaded, result, row, protector.enhances))

        stream, base = images(), 0
        while True:
            try:
                # Result indices count from the start of this call's stream.
                for result in protector.protect_iter(stream):
                    finish(base + result.index, result)
                break
            except Exception:  # noqa: BLE001 - one photo's failure must not end the batch
                # The photos in flight are lost with the attack that raised: each is retried
                # alone, so that only a photo that fails on its own gets an error row.
                failed = [slot for slot in range(base, len(pending)) if pending[slot] is not None]
                base = len(pending)
                for slot in failed:
                    job, loaded = pending[slot]
                    try:
                        [result] = protector.protect_iter([pixels_to_protect(loaded, options.fmt)])
                        finish(slot, result)
                    except Exception as exc:  # noqa: BLE001
                        pending[slot] = None  # type: ignore[call-overload]
                        emit(_error_row(job, victim, f"protecting failed: {type(exc).__name__}: {exc}"))
    if options.contact_sheet:
        write_contact_sheet(sheet, options.contact_sheet, f"camo-engine protect: {victim}")
    summary = summarise(rows, time.perf_counter() - started)
    write_summary(outdir, summary)
    return summary


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


def _write(
    job: Job,
    loaded: LoadedImage,
    result: Protected,
    outdir: Path,
    options: OutputOptions,
    protector: Protector,
    victim: str,
) -> dict[str, Any]:
    target = output_path(job, outdir, options.fmt)
    try:
        data, removed = encode_output(
            loaded, result.rgb, options.fmt, protector.config.jpeg_quality, options.metadata
        )
        target.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(target, data)
    except OSError as exc:
        return _error_row(job, victim, f"cannot write {target}: {exc}")
    return {
        "input": str(job.source),
        "output": str(target),
        "status": "ok",
        "error": "",
        "victim": victim,
        **result.report_fields(),
        "metadata_removed": removed,
        "warnings": loaded.warnings,
    }


def _error_row(job: Job, victim: str, reason: str) -> dict[str, Any]:
    return {"input": str(job.source), "output": "", "status": "error", "error": reason, "victim": victim}
