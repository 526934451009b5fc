"""Per-image report rows (JSON lines + CSV, appended and flushed row by row) and the summary.

Rows are flushed as they are written so that a killed batch keeps every finished row, which
is what ``--resume`` relies on.
"""

from __future__ import annotations

import csv
import json
import math
import statistics
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from . import strict_json

COLUMNS = (
    "input",
    "output",
    "status",
    "error",
    "victim",
    "strength",
    "panel",
    "before",
    "after",
    "protected",
    "already",
    "alone",
    "win",
    "views_protected",
    "failed_views",
    "steps",
    "method",
    "linf",
    "psnr",
    "ssim",
    "seconds",
    "metadata_removed",
    "warnings",
)

JSONL_NAME = "report.jsonl"
CSV_NAME = "report.csv"
SUMMARY_NAME = "summary.json"


def check_csv_header(path: Path) -> None:
    """Refuse to append to a ``report.csv`` whose header is not today's :data:`COLUMNS`: its
    rows would land under the wrong headings (a folder written by an older version)."""
    with open(path, encoding="utf-8", newline="") as f:
        header = next(csv.reader(f), [])
    if tuple(header) != COLUMNS:
        added = [c for c in COLUMNS if c not in header]
        dropped = [c for c in header if c not in COLUMNS]
        raise ValueError(
            f"{path}: its columns are not this version's (missing: {', '.join(added) or 'none'}; "
            f"unknown: {', '.join(dropped) or 'none'}; or in another order): appending would misalign "
            "the rows. Write to a new output folder, or move report.csv and report.jsonl away"
        )


class ReportWriter:
    """Appends rows to ``report.jsonl`` and ``report.csv`` in ``folder``."""

    def __init__(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        csv_path = folder / CSV_NAME
        new_csv = not csv_path.exists() or csv_path.stat().st_size == 0
        if not new_csv:
            check_csv_header(csv_path)
        self._jsonl: TextIO = open(folder / JSONL_NAME, "a", encoding="utf-8")
        self._csv_file: TextIO = open(csv_path, "a", encoding="utf-8", newline="")
        self._csv = csv.DictWriter(self._csv_file, fieldnames=COLUMNS, extrasaction="ignore")
        if new_csv:
            self._csv.writeheader()

    def write(self, row: dict[str, Any]) -> None:
        self._jsonl.write(strict_json.dumps(row) + "\n")
        self._jsonl.flush()
        flat = {k: "; ".join(map(str, v)) if isinstance(v, list) else v for k, v in row.items() if k in COLUMNS}
        self._csv.writerow(flat)
        self._csv_file.flush()

    def close(self) -> None:
        self._jsonl.close()
        self._csv_file.close()

    def __enter__(self) -> ReportWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_rows(folder: Path) -> list[dict[str, Any]]:
    """The complete rows of an existing ``report.jsonl`` (a torn last line is ignored)."""
    path = folder / JSONL_NAME
    if not path.exists():
        return []
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return rows


@dataclass(frozen=True)
class ViewSummary:
    """One view of the panel over a batch: how many photos it holds for, and how many the
    channel alone (or the original as it was) already gave."""

    view: str
    protected: int
    alone: int
    already: int


@dataclass(frozen=True)
class Summary:
    """What a batch achieved; every rate is over the photos that were processed."""

    processed: int
    failed: int
    protected: int
    already: int
    alone: int
    wins: int
    median_steps: float
    median_psnr: float
    seconds: float
    strength: str = ""
    panel: str = ""
    views: tuple[ViewSummary, ...] = ()

    def rate(self, count: int) -> float:
        return count / self.processed if self.processed else math.nan

    @property
    def success_rate(self) -> float:
        return self.rate(self.protected)

    @property
    def already_rate(self) -> float:
        return self.rate(self.already)

    @property
    def alone_rate(self) -> float:
        return self.rate(self.alone)

    @property
    def win_rate(self) -> float:
        return self.rate(self.wins)

    @property
    def images_per_second(self) -> float:
        return self.processed / self.seconds if self.seconds > 0 else math.nan

    def as_dict(self) -> dict[str, Any]:
        return {
            "processed": self.processed,
            "failed": self.failed,
            "strength": self.strength,
            "panel": self.panel,
            "success_rate": self.success_rate,
            "already_rate": self.already_rate,
            "alone_rate": self.alone_rate,
            "win_rate": self.win_rate,
            "median_steps": self.median_steps,
            "median_psnr": self.median_psnr,
            "images_per_second": self.images_per_second,
            "seconds": self.seconds,
            "views": [
                {
                    "view": v.view,
                    "protected_rate": self.rate(v.protected),
                    "alone_rate": self.rate(v.alone),
                    "already_rate": self.rate(v.already),
                }
                for v in self.views
            ],
        }


def write_summary(folder: Path, summary: Summary) -> Path:
    """``summary.json`` in ``folder`` (strict JSON: a rate over no photos is null)."""
    path = folder / SUMMARY_NAME
    path.write_text(strict_json.dumps(summary.as_dict(), indent=2))
    return path


def summarise(rows: Iterable[dict[str, Any]], seconds: float) -> Summary:
    """Summary of report rows (``status`` ok or error) over ``seconds`` of wall time."""
    rows = list(rows)
    ok = [r for r in rows if r["status"] == "ok"]
    psnrs = [r["psnr"] for r in ok if r.get("psnr") is not None]
    views: dict[str, list[int]] = {}
    for r in ok:
        for v in r.get("views", []):
            counts = views.setdefault(v["view"], [0, 0, 0])
            counts[0] += bool(v["protected"])
            counts[1] += bool(v["alone"])
            counts[2] += bool(v["already"])
    return Summary(
        processed=len(ok),
        failed=len(rows) - len(ok),
        protected=sum(bool(r["protected"]) for r in ok),
        already=sum(bool(r.get("already")) for r in ok),
        alone=sum(bool(r.get("alone")) for r in ok),
        wins=sum(bool(r["win"]) for r in ok),
        median_steps=statistics.median(r["steps"] for r in ok) if ok else math.nan,
        median_psnr=statistics.median(psnrs) if psnrs else math.nan,
        seconds=seconds,
        strength=",".join(sorted({r.get("strength", "") for r in ok})),
        panel=",".join(sorted({r.get("panel", "") for r in ok})),
        views=tuple(ViewSummary(name, *counts) for name, counts in views.items()),
    )
